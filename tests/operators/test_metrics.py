"""Operators report Airflow Stats metrics with stable names; received here by a real UDP StatsD listener."""

from __future__ import annotations

import socket
import sys
import threading
from pathlib import Path

from airflow_provider_strm.operators._common import DURATION_METRIC, METRICS

ROOT = Path(__file__).resolve().parents[2]


def test_the_example_dag_reports_records_keys_bytes_and_duration(tmp_path) -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    from run_example import run_example

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.5)
    received: list[str] = []
    stop = threading.Event()

    def listen() -> None:
        while not stop.is_set():
            try:
                received.append(sock.recv(65535).decode())
            except TimeoutError:
                continue

    listener = threading.Thread(target=listen)
    listener.start()
    try:
        done = run_example(
            tmp_path / "example",
            "2026-11-20",
            extra_env={
                "AIRFLOW__METRICS__STATSD_ON": "True",
                "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
                "AIRFLOW__METRICS__STATSD_PORT": str(sock.getsockname()[1]),
                "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
            },
        )
    finally:
        stop.set()
        listener.join()
        sock.close()
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for packet in received for line in packet.splitlines()]
    names = {line.split(":", 1)[0] for line in lines}
    for kind in ("encrypt", "derive"):
        for name in (*METRICS.values(), DURATION_METRIC):
            assert f"airflow.{name.format(kind=kind)}" in names, name.format(kind=kind)
    records = [
        int(line.split(":")[1].split("|")[0]) for line in lines if line.startswith("airflow.strm.encrypt.records:")
    ]
    assert sum(records) == 300  # two files of 150 records
