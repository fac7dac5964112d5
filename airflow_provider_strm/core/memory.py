"""Keeping a job's time and memory per chunk flat: the garbage collector and Arrow's allocator.

Both are process-wide, so both are handled here, once, for the key store's bulk calls and the
jobs' chunks alike.
"""

from __future__ import annotations

import ctypes
import gc
import os
import threading
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


def job_memory_pool() -> pa.MemoryPool | None:
    """The Arrow allocator a job works with: jemalloc where this pyarrow has it (None: keep the default).

    Against Arrow's default mimalloc, measured on the 1M-record benchmark: an EncryptJob peaks ~20 MB lower
    (262-275 MB against 286-292; each worker 191-196 against 210) in the same time, and a DeriveJob
    page-faults half as often (~95k against ~185k minor faults: chunk after chunk, mimalloc hands its
    pages back at :func:`release_arrow_memory` and faults them in again) for ~0.4 s less system time.
    An ``ARROW_DEFAULT_MEMORY_POOL`` set in the environment is left to choose.
    """
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return None
    try:
        return pa.jemalloc_memory_pool()
    except NotImplementedError:  # a pyarrow built without jemalloc (Windows, for one)
        return None


_pool_lock = threading.Lock()
_pool_users = 0
_pool_before: pa.MemoryPool | None = None


@contextmanager
def arrow_memory_pool(pool: pa.MemoryPool | None) -> Iterator[None]:
    """``pool`` as Arrow's default allocator in this block (None: the default stays), then the one before.

    Process-wide, as Arrow's default is: jobs switch it while any of them runs (threads of one process
    alike: the first one in switches, the last one out switches back), so an Airflow task's process is
    left as it was. A buffer is always freed by the pool that allocated it, whichever is the default then.
    """
    global _pool_users, _pool_before
    if pool is None:
        yield
        return
    with _pool_lock:
        if _pool_users == 0:
            _pool_before = pa.default_memory_pool()
            pa.set_memory_pool(pool)
        _pool_users += 1
    try:
        yield
    finally:
        with _pool_lock:
            _pool_users -= 1
            if _pool_users == 0 and _pool_before is not None:
                pa.set_memory_pool(_pool_before)
                _pool_before = None


def use_job_memory_pool() -> None:
    """:func:`job_memory_pool` as Arrow's default for the rest of this process's life (a job's worker process)."""
    pool = job_memory_pool()
    if pool is not None:
        pa.set_memory_pool(pool)


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
