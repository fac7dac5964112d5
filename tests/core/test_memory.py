"""The process-wide memory settings of a job's worker processes."""

from __future__ import annotations

import subprocess
import sys

import pytest

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
