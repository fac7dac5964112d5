"""BatchJobSensor and BatchJobTrigger over real job records."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from pathlib import Path

import pytest

from airflow_provider_strm.core.keystore import KeyStore, new_kek
from airflow_provider_strm.core.status import jobs_status
from airflow_provider_strm.triggers.batch_job import BatchJobTrigger

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store_conn(tmp_path, airflow_conn):  # type: ignore[no-untyped-def]
    kek, url = new_kek(), f"sqlite:///{tmp_path / 'keys.db'}"
    airflow_conn("strm_ks", {"conn_type": "strm_keystore", "extra": {"url": url, "kek_secret": kek}})
    store = KeyStore(url, kek)
    store.ensure_schema()
    return store


def test_jobs_are_done_when_every_file_finished_and_enough_exist(store_conn) -> None:
    a = store_conn.create_job(group_id="g", kind="encrypt", file="c:dt=1/a.csv")
    assert not jobs_status(store_conn, group_id="g", expected=2).done
    b = store_conn.create_job(group_id="g", kind="encrypt", file="c:dt=1/b.csv")
    store_conn.set_job_state(a, "FINISHED")
    assert not jobs_status(store_conn, group_id="g", expected=2).done
    store_conn.set_job_state(b, "ERROR_STARTING", "bucket unreachable")
    retry = store_conn.create_job(group_id="g", kind="encrypt", file="c:dt=1/b.csv")
    store_conn.set_job_state(retry, "FINISHED")
    status = jobs_status(store_conn, group_id="g", expected=2)
    assert status.done and status.summary == "2 of 2 jobs finished"
    assert jobs_status(store_conn, file_prefix="c:dt=2/").jobs == 0


def test_an_error_ends_the_wait_naming_the_job(store_conn) -> None:
    job = store_conn.create_job(group_id="g", kind="encrypt", file="c:x.csv")
    store_conn.set_job_state(job, "ERROR", "Invalid timestamp [x does not match y] in row #3")
    status = jobs_status(store_conn, job_id=job)
    assert not status.done and "row #3" in (status.error or "")


def test_the_trigger_serializes_exactly() -> None:
    trigger = BatchJobTrigger(keystore_conn_id="k", group_id="g", file_prefix="c:p/", expected=2, poll_interval=1)
    path, kwargs = trigger.serialize()
    assert path == "airflow_provider_strm.triggers.batch_job.BatchJobTrigger"
    assert BatchJobTrigger(**kwargs).serialize() == (path, kwargs)


@pytest.mark.parametrize(("final", "status"), [("FINISHED", "success"), ("ERROR", "error")])
def test_the_trigger_yields_one_event_when_the_jobs_end(store_conn, final, status) -> None:
    job = store_conn.create_job(group_id="g", kind="encrypt", file="c:x.csv")

    def finish_later() -> None:
        time.sleep(0.5)
        store_conn.set_job_state(job, final, "done" if final == "FINISHED" else "bad row")

    threading.Thread(target=finish_later).start()
    trigger = BatchJobTrigger(keystore_conn_id="strm_ks", job_id=job, poll_interval=0.1)

    async def first_event():  # type: ignore[no-untyped-def]
        async for event in trigger.run():
            return event

    event = asyncio.run(asyncio.wait_for(first_event(), timeout=30))
    assert event.payload["status"] == status


def test_the_downstream_example_dag_defers_until_the_partition_is_encrypted(tmp_path) -> None:
    """The downstream DAG starts first and defers; the upstream DAG then encrypts the partition."""
    import subprocess

    sys.path.insert(0, str(ROOT / "scripts"))
    from run_example import example_env, run_example

    home = tmp_path / "example"
    env = example_env(home)
    # the downstream run gets an Airflow home of its own (two `dags test` at once on one SQLite DB would lock)
    env["AIRFLOW_HOME"] = str(home / "airflow-downstream")
    airflow = str(Path(sys.executable).parent / "airflow")
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)
    downstream = subprocess.Popen(
        [airflow, "dags", "test", "strm_example_downstream", "2026-11-20"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(8)
        assert downstream.poll() is None, "the sensor is waiting while nothing is encrypted"
        assert run_example(home, "2026-11-20").returncode == 0
        out, _ = downstream.communicate(timeout=120)
    finally:
        downstream.kill()
    assert downstream.returncode == 0, out[-3000:]
    assert "deferred" in out.lower()
    assert "2 of 2 jobs finished" in out
