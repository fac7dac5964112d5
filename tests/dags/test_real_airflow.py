"""The example DAGs on a real, distributed Airflow: api-server, scheduler, dag-processor and triggerer
processes, LocalExecutor, PostgreSQL metadata DB. Runs are started through the REST API and
`airflow backfill create`; the deferrable sensor waits in the real triggerer."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from airflow_cluster import AIRFLOW, make_cluster
from reference_checks import parse_csv

from airflow_provider_strm.core.keystore import KeyStore

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
from run_example import example_env  # noqa: E402

DAYS = ["2026-11-19", "2026-11-20", "2026-11-21"]
SENSOR_ERROR_DAG = """
from datetime import datetime, timezone
from airflow.sdk import DAG
from airflow_provider_strm.sensors.batch_job import BatchJobSensor

with DAG("strm_test_sensor_error", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)):
    BatchJobSensor(task_id="wait", file_prefix="test:never/", deferrable=True, poke_interval=2, timeout=600)
"""


def outputs(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.csv"))}


def key_count(home: Path) -> int:
    with sqlite3.connect(home / "strm_keystore.db") as db:
        return db.execute("SELECT count(*) FROM strm_keys").fetchone()[0]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, request):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("cluster")
    pg_url = request.getfixturevalue("pg_url_module")
    base = example_env(root / "example")
    dags = root / "dags"  # the example DAGs, plus one that waits for a job this test will fail
    dags.mkdir()
    for item in (ROOT / "dags").iterdir():
        (dags / item.name).symlink_to(item)
    (dags / "strm_test_sensor_error.py").write_text(SENSOR_ERROR_DAG)
    cluster = make_cluster(base, root, pg_url, dags)
    keystore = json.loads(base["AIRFLOW_CONN_STRM_KEYSTORE_DEFAULT"])["extra"]
    cluster.env["_STRM_KS_URL"] = f"sqlite:///{keystore['path']}"
    cluster.env["_STRM_KS_KEK"] = keystore["kek_secret"]
    try:
        cluster.start()
        cluster.wait_for_dag("strm_example_encrypt")
        cluster.wait_for_dag("strm_example_downstream")
        yield cluster, root / "example"
    finally:
        cluster.stop()


def ti_states(cluster, dag_id: str, run_id: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    tis = cluster.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
    return {f"{t['task_id']}[{t['map_index']}]": t["state"] for t in tis}


def wait_for(predicate, timeout: float, what):  # type: ignore[no-untyped-def]
    """``what`` (called on timeout, so logs are read then, not when the wait starts) says what did not happen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1)
    raise TimeoutError(what())


def logs(cluster, *components: str) -> str:  # type: ignore[no-untyped-def]
    return "\n".join(f"--- {c} log:\n{cluster.log_tail(c)}" for c in components)


def test_rest_api_run_backfill_rerun_and_the_deferred_sensor(cluster) -> None:
    cluster, home = cluster
    # 1. the downstream DAG, triggered through the REST API, defers: nothing is encrypted yet
    down = cluster.api(
        "POST", "/dags/strm_example_downstream/dagRuns", {"logical_date": "2026-11-21T00:00:00Z", "conf": {}}
    )["dag_run_id"]
    wait_for(
        lambda: ti_states(cluster, "strm_example_downstream", down).get("wait_for_partition[-1]") == "deferred",
        120,
        lambda: (
            f"the sensor did not defer: {ti_states(cluster, 'strm_example_downstream', down)} "
            f"{logs(cluster, 'scheduler', 'triggerer')}"
        ),
    )

    # 2. one day through the REST API, then a backfill of three days with the CLI
    run = cluster.api("POST", "/dags/strm_example_encrypt/dagRuns", {"logical_date": "2026-11-20T00:00:00Z"})
    wait_for(
        lambda: cluster.api("GET", f"/dags/strm_example_encrypt/dagRuns/{run['dag_run_id']}")["state"] == "success",
        180,
        lambda: f"REST run did not succeed: {logs(cluster, 'scheduler')}",
    )
    states = ti_states(cluster, "strm_example_encrypt", run["dag_run_id"])
    assert set(states.values()) == {"success"} and "clickstream.derive[1]" in states
    backfill = cluster.cli(
        "backfill", "create", "--dag-id", "strm_example_encrypt", "--from-date", DAYS[0], "--to-date", DAYS[-1]
    )
    assert backfill.returncode == 0, backfill.stderr[-2000:]
    wait_for(
        lambda: (
            all(
                r["state"] == "success"
                for r in cluster.api("GET", "/dags/strm_example_encrypt/dagRuns?limit=100")["dag_runs"]
                if r["logical_date"][:10] in DAYS
            )
            and len(list((home / "output" / "encrypted").glob("dt=*/*.csv"))) >= 6
        ),
        300,
        lambda: f"backfill did not finish: {logs(cluster, 'scheduler')}",
    )

    # 3. the deferred sensor completes through the triggerer once its partition is encrypted
    wait_for(
        lambda: cluster.api("GET", f"/dags/strm_example_downstream/dagRuns/{down}")["state"] == "success",
        120,
        lambda: f"the deferred sensor did not complete: {logs(cluster, 'triggerer')}",
    )

    # 4. the backfill equals three single runs on the same key store (`airflow dags test`, other outputs)
    backfilled = outputs(home / "output")
    keys_after_backfill = key_count(home)
    single_home = home.parent / "single"
    single_env = example_env(single_home)
    single_env["AIRFLOW_CONN_STRM_KEYSTORE_DEFAULT"] = cluster.env["AIRFLOW_CONN_STRM_KEYSTORE_DEFAULT"]
    subprocess.run([AIRFLOW, "db", "migrate"], env=single_env, check=True, capture_output=True)
    for day in DAYS:
        done = subprocess.run(
            [AIRFLOW, "dags", "test", "strm_example_encrypt", day], env=single_env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout[-2000:]
    assert outputs(single_home / "output") == backfilled
    assert key_count(home) == keys_after_backfill

    # 5. re-running a day from the "UI" (clear through the REST API) changes no byte and creates no key
    cluster.api(
        "POST",
        "/dags/strm_example_encrypt/clearTaskInstances",
        {"dry_run": False, "dag_run_id": run["dag_run_id"], "only_failed": False, "reset_dag_runs": True},
    )
    wait_for(
        lambda: (
            cluster.api("GET", f"/dags/strm_example_encrypt/dagRuns/{run['dag_run_id']}")["state"] == "success"
            and set(ti_states(cluster, "strm_example_encrypt", run["dag_run_id"]).values()) == {"success"}
        ),
        180,
        lambda: f"the cleared run did not succeed again: {logs(cluster, 'scheduler')}",
    )
    assert outputs(home / "output") == backfilled
    assert key_count(home) == keys_after_backfill
    derived = parse_csv((home / "output/derived/dt=2026-11-20/part-0000-derived-1.csv").read_bytes())
    assert len(derived) > 1

    # 6. job records carry the task's identity, and a deferred sensor fails when a job ends in ERROR
    store = KeyStore(cluster.env["_STRM_KS_URL"], cluster.env["_STRM_KS_KEK"])
    jobs = store.jobs(run_id=run["dag_run_id"])
    assert {(j["dag_id"], j["task_id"]) for j in jobs} == {
        ("strm_example_encrypt", "clickstream.encrypt"),
        ("strm_example_encrypt", "clickstream.derive"),
    }
    # each mapped task ran twice: once in the REST run, once after the clear
    assert sorted((j["task_id"], j["map_index"]) for j in jobs) == sorted(
        (task, index) for task in ("clickstream.encrypt", "clickstream.derive") for index in (0, 1, 0, 1)
    )
    cluster.wait_for_dag("strm_test_sensor_error")
    failing = cluster.api(
        "POST", "/dags/strm_test_sensor_error/dagRuns", {"logical_date": "2026-11-20T00:00:00Z", "conf": {}}
    )["dag_run_id"]
    wait_for(
        lambda: ti_states(cluster, "strm_test_sensor_error", failing).get("wait[-1]") == "deferred",
        120,
        lambda: f"the sensor did not defer: {logs(cluster, 'scheduler', 'triggerer')}",
    )
    bad = store.create_job(group_id="g", kind="encrypt", file="test:never/part-0000.csv")
    store.set_job_state(bad, "ERROR", "Invalid timestamp [x does not match y] in row #7")
    wait_for(
        lambda: cluster.api("GET", f"/dags/strm_test_sensor_error/dagRuns/{failing}")["state"] == "failed",
        120,
        lambda: f"the deferred sensor did not fail on ERROR: {logs(cluster, 'triggerer')}",
    )
