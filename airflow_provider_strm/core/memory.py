"""Keeping a job's time and memory per chunk flat: the garbage collector and Arrow's allocator.

Both are process-wide, so both are handled here, once, for the key store's bulk calls and the
jobs' chunks alike.
"""

from __future__ import annotations

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
