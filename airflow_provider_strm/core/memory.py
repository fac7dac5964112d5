"""Keeping a job's time and memory per chunk flat: the garbage collector and Arrow's allocator.

Both are process-wide, so both are handled here, once, for the key store's bulk calls and the
jobs' chunks alike.
"""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Iterator
from contextlib import contextmanager

import pyarrow as pa


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector (if it runs) for a bulk call or one chunk of a job.

    A chunk or a call of 20k keys allocates some 100k small objects (values, ciphertexts, keysets,
    tuples) and makes no reference cycles; left running, the collector would start hundreds of
    times per call, each time walking the live objects (a third of a key call's time, ~8% of an
    encrypt job's). Cycles made meanwhile are collected after.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def release_arrow_memory() -> None:
    """Hand the buffers Arrow's allocator keeps for reuse back to the system (after each chunk)."""
    pa.default_memory_pool().release_unused()


# glibc's mallopt(3) parameters
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def keep_freed_memory() -> bool:
    """Have glibc's allocator keep freed memory for reuse instead of handing it back to the system.

    For a job's worker processes, which allocate about the same per chunk, chunk after chunk: memory
    handed back is faulted in again, a page at a time, by the next chunk (DeriveJob on 2 cores at 1M
    records: 365k page faults in its workers, 228k with this; ~0.3-0.5 s less system time). The peak,
    which is what counts, does not change. Returns False where the allocator is not glibc's (no effect).
    """
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = mallopt(_M_TRIM_THRESHOLD, 512 << 20)
    ok &= mallopt(_M_TOP_PAD, 64 << 20)
    ok &= mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # glibc's largest: bigger blocks are still mapped apart
    return bool(ok)
