"""Whole-column work on Arrow chunks: distinct values, groups and gathers without a Python loop per record.

The jobs' fast paths use these so that Python runs once per distinct thing
(entity, value, consent text) in a chunk rather than once per record; their
outputs are exactly those of the record-by-record path (tested).

Arrays are built from their buffers and read into numpy from their buffers, never
with ``pa.array`` or ``to_numpy``: both import pandas (when installed), which costs
a task seconds and tens of megabytes.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from itertools import compress

import numpy as np
import pyarrow as pa


def as_array(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """One contiguous array of a column."""
    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    return column


_INTEGERS = {pa.int8(): np.int8, pa.int16(): np.int16, pa.int32(): np.int32, pa.int64(): np.int64}


def integers(column: pa.Array, *, null: int | None = None) -> np.ndarray:
    """The values of an integer column as int64 numpy; nulls become ``null`` (refused when it is None)."""
    if column.null_count and null is None:
        raise ValueError("integers() of a column with nulls needs a value for them")
    dtype = np.dtype(_INTEGERS[column.type])
    data = np.frombuffer(column.buffers()[1], dtype=dtype, count=len(column), offset=column.offset * dtype.itemsize)
    out = data.astype(np.int64)
    if column.null_count:
        out[~_bits(column.buffers()[0], column.offset, len(column))] = null
    return out


def flags(column: pa.Array) -> np.ndarray:
    """The values of a boolean column as numpy bools, nulls as False."""
    out = _bits(column.buffers()[1], column.offset, len(column))
    if column.null_count:
        out &= _bits(column.buffers()[0], column.offset, len(column))
    return out


def _bits(buffer: pa.Buffer, offset: int, n: int) -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(buffer, dtype=np.uint8), bitorder="little")
    return bits[offset : offset + n].astype(bool)


def distinct(column: pa.Array) -> tuple[list[str], np.ndarray]:
    """The column's distinct values (Python strings) and, for each record, the index of its value."""
    encoded = column.dictionary_encode()
    return encoded.dictionary.to_pylist(), integers(encoded.indices)


def distinct_binary(column: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """:func:`distinct` with the values left in Arrow, as binary (their UTF-8 bytes)."""
    encoded = column.dictionary_encode()
    return encoded.dictionary.cast(pa.binary()), integers(encoded.indices)


def groups_in_order(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Groups of equal codes numbered in order of first appearance.

    Returns the record index where each group first appears, and each record's group number.
    """
    _, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order), dtype=np.int64)
    return first[order], rank[inverse.reshape(-1)]


def int64_column(values: np.ndarray | Sequence[int]) -> pa.Array:
    """An int64 array, from its buffer."""
    data = np.ascontiguousarray(values, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(data), [None, pa.py_buffer(data)])


def bool_column(flags: Sequence[bool]) -> pa.Array:
    """A boolean array, from its bitmap."""
    bitmap = bytearray((len(flags) + 7) // 8)
    for i in compress(range(len(flags)), flags):
        bitmap[i >> 3] |= 1 << (i & 7)
    return pa.Array.from_buffers(pa.bool_(), len(flags), [None, pa.py_buffer(bitmap)])


def utf8_column(values: Sequence[bytes]) -> pa.Array:
    """A string array of UTF-8 byte strings, from its buffers (checked to be UTF-8)."""
    return packed_utf8_column(b"".join(values), array("q", map(len, values)))


def packed_utf8_column(data: bytes | bytearray, lengths: Sequence[int], *, check: bool = True) -> pa.Array:
    """A string array of values given as one buffer and each value's length (``check``: that it is UTF-8).

    The buffer is not copied. Past 2 GiB (beyond a string array's offsets), Arrow's cast refuses it.
    """
    sizes = np.frombuffer(lengths, dtype=np.int64) if isinstance(lengths, array) else np.asarray(lengths, np.int64)
    large = len(data) >= 2**31
    offsets = np.zeros(len(sizes) + 1, dtype=np.int64 if large else np.int32)
    np.cumsum(sizes, out=offsets[1:])
    kind = pa.large_string() if large else pa.string()
    column = pa.Array.from_buffers(kind, len(sizes), [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    column.validate(full=check)
    return column.cast(pa.string()) if large else column


def string_column(values: Sequence[str | None]) -> pa.Array:
    """A string array of Python strings, ``None`` as null, from its buffers."""
    if None not in values:
        return utf8_column([v.encode("utf-8") for v in values])  # type: ignore[union-attr]
    data = utf8_column([b"" if v is None else v.encode("utf-8") for v in values])
    valid = bool_column([v is not None for v in values])
    return pa.Array.from_buffers(pa.string(), len(values), [valid.buffers()[1], *data.buffers()[1:]])


def gather(values: Sequence[str], index: np.ndarray) -> pa.Array:
    """``values[index[i]]`` for each record, as an Arrow string column."""
    return utf8_column([v.encode("utf-8") for v in values]).take(int64_column(index))


def repeat(value: str | None, n: int) -> pa.Array:
    """A string column of ``n`` copies of ``value`` (nulls for None)."""
    if value is None:
        return pa.nulls(n, type=pa.string())
    return gather([value], np.zeros(n, dtype=np.int64))
