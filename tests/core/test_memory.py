"""The process-wide memory settings of a job and of its worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow as pa
import pytest
from reference_checks import reference_job

from airflow_provider_strm.core.encrypt import EncryptJob
from airflow_provider_strm.core.errors import StrmError
from airflow_provider_strm.core.keystore import KeyStore, new_kek
from airflow_provider_strm.core.memory import arrow_memory_pool, job_memory_pool

_SCRIPT = """
import sys
from airflow_provider_strm.core.memory import keep_freed_memory

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

kept = keep_freed_memory() if sys.argv[1] == "keep" else None
before = rss_mb()
chunk = bytearray(24 << 20)  # a buffer of a chunk: by default glibc maps it apart and unmaps it when freed
chunk[::4096] = b"x" * len(chunk[::4096])  # touch every page
del chunk
print(kept, round(rss_mb() - before))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator (Linux): elsewhere it does nothing")
def test_a_worker_process_keeps_freed_memory_for_its_next_chunk() -> None:
    def held_after_free(mode: str) -> tuple[str, int]:
        out = subprocess.run([sys.executable, "-c", _SCRIPT, mode], capture_output=True, text=True, check=True)
        kept, held = out.stdout.split()
        return kept, int(held)

    kept, held = held_after_free("keep")
    assert kept == "True" and held >= 20  # freed, but kept: the next chunk reuses it without page faults
    assert held_after_free("default") == ("None", pytest.approx(0, abs=10))  # glibc hands it back by default


# --------------------------------------------------------------------------- Arrow's allocator


def _reference_job(strm_reference: Path, tmp_path: Path) -> EncryptJob:
    bucket = tmp_path / "bucket"
    bucket.mkdir(parents=True)
    store = KeyStore(f"sqlite:///{tmp_path / 'keys.db'}", new_kek())
    store.ensure_schema()
    return reference_job(strm_reference, bucket, store, chunk_rows=5_000)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pyarrow's Linux wheels have jemalloc")
def test_a_job_allocates_with_jemalloc_and_leaves_arrows_default_as_it_was(
    strm_reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL", raising=False)
    seen: list[str] = []
    process_chunk = EncryptJob.process_chunk

    def observed(self: EncryptJob, chunk: object, result: object) -> None:
        seen.append(pa.default_memory_pool().backend_name)
        process_chunk(self, chunk, result)  # type: ignore[arg-type]

    monkeypatch.setattr(EncryptJob, "process_chunk", observed)
    before = pa.default_memory_pool()
    assert _reference_job(strm_reference, tmp_path).run().rows_out == 19_998
    assert len(seen) == 4 and set(seen) == {"jemalloc"}
    assert pa.default_memory_pool().backend_name == before.backend_name

    # a job that fails leaves it as it was too
    job = _reference_job(strm_reference, tmp_path / "failing")
    (tmp_path / "failing" / "bucket" / "uci_online_retail.csv").write_text("InvoiceNo,StockCode\n1,2\n")  # no key field
    with pytest.raises(StrmError):
        job.run()
    assert pa.default_memory_pool().backend_name == before.backend_name


def test_an_arrow_pool_set_in_the_environment_is_left_to_choose(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "mimalloc")
    assert job_memory_pool() is None
    before = pa.default_memory_pool().backend_name
    with arrow_memory_pool(job_memory_pool()):
        assert pa.default_memory_pool().backend_name == before


def test_jobs_running_at_once_switch_arrows_default_back_when_the_last_one_ends() -> None:
    before = pa.default_memory_pool().backend_name
    pool = pa.system_memory_pool() if before != "system" else pa.mimalloc_memory_pool()
    first, second = threading.Event(), threading.Event()
    during: list[str] = []

    def other_job() -> None:  # a second job in another thread of the process, ending before the first
        with arrow_memory_pool(pool):
            first.set()
            second.wait(10)
        during.append(pa.default_memory_pool().backend_name)

    with arrow_memory_pool(pool):
        thread = threading.Thread(target=other_job)
        thread.start()
        assert first.wait(10)
        second.set()
        thread.join(10)
        assert during == [pool.backend_name]  # the other job ended: this one still allocates with its pool
    assert pa.default_memory_pool().backend_name == before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pyarrow's Linux wheels have jemalloc")
def test_a_worker_process_allocates_with_jemalloc_for_its_life() -> None:
    script = (
        "import pyarrow as pa\n"
        "from airflow_provider_strm.core.memory import use_job_memory_pool\n"
        "before = pa.default_memory_pool().backend_name\n"
        "use_job_memory_pool()\n"
        "print(before, pa.default_memory_pool().backend_name)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env)
    before, after = out.stdout.split()
    assert (before, after) == ("mimalloc", "jemalloc")
