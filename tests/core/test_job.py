"""The job lifecycle's worker processes (core/job.py), as a user's program starts them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


def test_worker_processes_do_not_import_the_programs_main_module(strm_reference, tmp_path: Path) -> None:
    """In an Airflow task the main module is the ``airflow`` command: a spawned worker would import Airflow."""
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    shutil.copy(strm_reference / "uci_online_retail.csv", bucket)
    imported = tmp_path / "imported-as"
    program = tmp_path / "program.py"
    program.write_text(
        f"""
import resource
if __name__ != "__main__":  # what a spawned process that imports this file as its parent's main module runs
    with open({str(imported)!r}, "a") as f:
        f.write(__name__ + "\\n")
else:
    from airflow_provider_strm.core.config import load_batch_job_config
    from airflow_provider_strm.core.contract import load_data_contract
    from airflow_provider_strm.core.encrypt import EncryptJob
    from airflow_provider_strm.core.keystore import KeyStore, new_kek
    from airflow_provider_strm.core.storage import LocalStorage

    config = load_batch_job_config({str(strm_reference / "batch-job-config.json")!r})
    contract = load_data_contract({str(strm_reference / "online-retail-contract.json")!r})
    store = KeyStore({f"sqlite:///{tmp_path / 'keys.db'}"!r}, new_kek())
    store.ensure_schema()
    storages = lambda c: LocalStorage({str(bucket)!r})
    result = EncryptJob(config, contract, store, storages, workers=2, chunk_rows=5_000).run()
    assert result.rows_out == 19_998, result
    print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime)  # the worker processes' CPU, once ended
"""
    )
    done = subprocess.run([sys.executable, str(program)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert float(done.stdout.strip().splitlines()[-1]) > 0.1, "the job ran worker processes"
    assert not imported.exists(), f"a worker imported the program as {imported.read_text()!r}"


def test_worker_processes_start_no_blas_threads_and_leave_the_parents_environment(monkeypatch) -> None:
    """numpy's OpenBLAS would start threads that spin in each worker; a user's own setting is kept."""
    from concurrent.futures import ProcessPoolExecutor

    from airflow_provider_strm.core.job import _WorkerContext

    def in_worker() -> str | None:
        with ProcessPoolExecutor(1, mp_context=_WorkerContext()) as pool:
            return pool.submit(os.getenv, "OPENBLAS_NUM_THREADS").result(timeout=60)

    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    assert in_worker() == "1"
    assert "OPENBLAS_NUM_THREADS" not in os.environ
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")
    assert in_worker() == "3"
    assert os.environ["OPENBLAS_NUM_THREADS"] == "3"
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "")  # set, but empty: OpenBLAS's own default
    assert in_worker() == "1"
    assert os.environ["OPENBLAS_NUM_THREADS"] == ""
