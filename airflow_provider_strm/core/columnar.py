"""Whole-column work on Arrow chunks: distinct values, groups and gathers without a Python loop per record.

The jobs' fast paths use these so that Python runs once per distinct thing
(entity, value, consent text) in a chunk rather than once per record; their
outputs are exactly those of the record-by-record path (tested).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa


def as_array(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """One contiguous array of a column."""
    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    return column


def distinct(column: pa.Array) -> tuple[list[str], np.ndarray]:
    """The column's distinct values (Python strings) and, for each record, the index of its value."""
    encoded = column.dictionary_encode()
    return encoded.dictionary.to_pylist(), encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)


def distinct_bytes(column: pa.Array) -> tuple[list[bytes], np.ndarray]:
    """:func:`distinct` with the values as their UTF-8 bytes (no decoding)."""
    encoded = column.dictionary_encode()
    values = encoded.dictionary.cast(pa.binary()).to_pylist()
    return values, encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)


def groups_in_order(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Groups of equal codes numbered in order of first appearance.

    Returns the record index where each group first appears, and each record's group number.
    """
    _, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order), dtype=np.int64)
    return first[order], rank[inverse.reshape(-1)]


def gather(values: Sequence[str | None], index: np.ndarray) -> pa.Array:
    """``values[index[i]]`` for each record, as an Arrow string column."""
    return pa.array(values, type=pa.string()).take(pa.array(index, type=pa.int64()))


def gather_utf8(values: Sequence[bytes], index: np.ndarray) -> pa.Array:
    """:func:`gather` of UTF-8 bytes, as an Arrow string column (checked to be UTF-8)."""
    return pa.array(values, type=pa.binary()).cast(pa.string()).take(pa.array(index, type=pa.int64()))


def repeat(value: str | None, n: int) -> pa.Array:
    """A string column of ``n`` copies of ``value`` (nulls for None)."""
    if value is None:
        return pa.nulls(n, type=pa.string())
    return pa.array([value], type=pa.string()).take(pa.array(np.zeros(n, dtype=np.int64)))
