"""Mapped encrypt tasks on the CeleryExecutor: a Redis broker, two Celery workers, one PostgreSQL key store.
Both workers process files and no key is duplicated."""

from __future__ import annotations

import csv
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa
from airflow_cluster import AIRFLOW, make_cluster

from airflow_provider_strm.core.timestamps import TimestampParser, window_start

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
sys.path.insert(0, str(ROOT / "scripts"))
from run_example import example_env  # noqa: E402

DAYS = ["2026-11-19", "2026-11-20", "2026-11-21"]


def redis_available() -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


def worker_logs(tmp_path: Path) -> str:
    """What each worker received and finished, for a failing assertion."""
    lines = []
    for name in ("worker-a", "worker-b"):
        text = (tmp_path / f"{name}.log").read_text()
        lines += [f"{name}: {line[:160]}" for line in text.splitlines() if " received" in line or "succeeded" in line]
        lines.append(f"{name} log tail: {text[-1500:]}")
    return "\n".join(lines)


def test_two_celery_workers_share_the_work_and_the_key_store(tmp_path, pg_url_module, pg_url) -> None:
    if not redis_available():
        from conftest import unavailable

        unavailable("Redis is not reachable at 127.0.0.1:6379")
    import json

    from airflow_provider_strm.core.keystore import KeyStore, new_kek

    kek = new_kek()
    base = example_env(tmp_path / "example")
    base["AIRFLOW_CONN_STRM_KEYSTORE_DEFAULT"] = json.dumps(
        {"conn_type": "strm_keystore", "extra": {"url": pg_url, "kek_secret": kek}}
    )
    cluster = make_cluster(base, tmp_path, pg_url_module, ROOT / "dags")
    redis_db = random.randrange(1, 16)
    cluster.env.update(
        {
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:6379/{redis_db}",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{pg_url_module}",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "strm_test_hostname.hostname",
            "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        }
    )
    workers: list[subprocess.Popen] = []
    try:
        cluster.start()
        for name in ("worker-a", "worker-b"):
            log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115
            # each encrypt task holds 3 s as it starts: the two mapped encrypt tasks of a run, queued together, overlap
            env = {**cluster.env, "STRM_TEST_WORKER_NAME": name, "STRM_TEST_HOLD_TASK": ".encrypt"}
            workers.append(
                subprocess.Popen(
                    [AIRFLOW, "celery", "worker", "--celery-hostname", f"{name}@%h", "--concurrency", "1"],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        cluster.wait_for_dag("strm_example_encrypt")
        # both workers must be consuming before the runs start, or the first one up may take every task
        ready_by = time.monotonic() + 120
        while time.monotonic() < ready_by:
            logs = [(tmp_path / f"{name}.log").read_text() for name in ("worker-a", "worker-b")]
            if all(" ready." in text for text in logs):
                break
            time.sleep(1)
        else:
            raise AssertionError("the Celery workers did not start: " + " | ".join(t[-500:] for t in logs))
        backfill = cluster.cli(
            "backfill", "create", "--dag-id", "strm_example_encrypt", "--from-date", DAYS[0], "--to-date", DAYS[-1]
        )
        assert backfill.returncode == 0, backfill.stderr[-2000:]
        deadline = time.monotonic() + 400
        runs: list[dict] = []
        while time.monotonic() < deadline:
            runs = [
                r
                for r in cluster.api("GET", "/dags/strm_example_encrypt/dagRuns?limit=100")["dag_runs"]
                if r["logical_date"][:10] in DAYS
            ]
            if len(runs) == 3 and all(r["state"] in ("success", "failed") for r in runs):
                break
            time.sleep(3)
        assert [r["state"] for r in runs] == ["success"] * 3, (tmp_path / "worker-a.log").read_text()[-3000:]
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                worker.kill()
        cluster.stop()

    store = KeyStore(pg_url, kek)
    jobs = [j for j in store.jobs() if j["kind"] == "encrypt"]
    assert len(jobs) == 6 and {j["state"] for j in jobs} == {"FINISHED"}
    assert {j["hostname"] for j in jobs} == {"worker-a", "worker-b"}, worker_logs(tmp_path)
    # one key per (session, UTC day) across every file and worker: no duplicates
    parser = TimestampParser("yyyy-MM-dd'T'HH:mm:ss", "Europe/Amsterdam")
    entities = set()
    for day in DAYS:
        for part in sorted((ROOT / f"dags/strm_example/data/clickstream/dt={day}").glob("*.csv")):
            with part.open(newline="") as fh:
                for row in csv.DictReader(fh):
                    entities.add((row["session_id"], window_start(parser.parse(row["event_time"]))))
    with store.engine.connect() as conn:
        keys = conn.execute(sa.text("SELECT count(*) FROM strm_keys")).scalar_one()
    assert keys == len(entities)
