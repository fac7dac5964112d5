"""Data files beyond STRM's CSV: JSON Lines and Parquet, and gzip around any of them.

Every format reads as the CSV reader does (a ``header``, then :class:`RecordChunk`
s of string columns with numbered records and :class:`BadRow` s) and writes as
the CSV writer does (``write_columns`` of strings, ``None`` = null), so a job
never knows which format it reads or writes. Memory stays flat: JSON Lines is
read line by line, Parquet a batch of rows at a time, and both are written
chunk by chunk.

How values become strings (what the CSV path would see):

- JSON Lines: a JSON string as is; a number as written in the file (``1e3``
  stays ``1e3``); ``true``/``false``; ``null`` and a missing key as an empty
  string. Records are numbered by their line in the file (there is no header
  line; blank lines are skipped). A line that is not a JSON object, repeats a
  key, has a key the first record did not have, or holds an array or object
  value is a bad record (its dead letter keeps the line as it was; a record
  failing a later check, a timestamp or a regex, is kept as a CSV line of its
  values, as for CSV input). Written back, every value is a JSON string and a
  null is ``null``.
- Parquet: every column is cast to a string by Arrow (``1.5``, ``true``,
  ``2026-01-02``, ``2026-01-02 03:04:05.000000Z``); a null is an empty string,
  as an empty CSV field is. Nested columns (lists, structs, maps) are refused.
  Written back, every column is a string column and a null stays null.
- gzip: a gzipped input is read through :func:`gunzipped`; :class:`GzipSink`
  gzips an output, one gzip member per committed part so checkpoints still work.
"""

from __future__ import annotations

import codecs
import gzip
import io
import json
import tempfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import BinaryIO, Protocol

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from airflow_provider_strm.core.columnar import string_column
from airflow_provider_strm.core.csvio import (
    DEFAULT_CHUNK_ROWS,
    BadRow,
    CsvRecordReader,
    CsvRecordWriter,
    RecordChunk,
    TableChunker,
    _has_undecodable,
    _python_charset,
)
from airflow_provider_strm.core.errors import DataFormatError
from airflow_provider_strm.core.storage import PendingObject

#: Parquet input that is not seekable (an S3 or gzip stream) is copied here first; past this many bytes, to disk
SPOOL_IN_MEMORY_BYTES = 64 << 20


class RecordReader(Protocol):
    """What a job reads: the column names, then chunks of records."""

    header: list[str]
    rows_read: int
    chunk_rows: int  # records per chunk; may change between chunks (see BatchJob.next_chunk_rows)

    def chunks(self) -> Iterator[RecordChunk]: ...


class RecordWriter(Protocol):
    """What a job writes to; ``sink`` is the pending object that publishes what was written."""

    sink: PendingObject | BinaryIO
    rows_written: int
    bytes_written: int

    def write_columns(self, columns: Sequence[Sequence[str | None] | pa.Array]) -> None: ...


def record_reader(
    stream: BinaryIO,
    *,
    data_format: str = "csv",
    charset: str = "UTF-8",
    name: str = "<stream>",
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    reopen: Callable[[], BinaryIO] | None = None,
) -> RecordReader:
    """A reader of ``stream`` (already gunzipped) in ``data_format``; the header is read now.

    ``reopen`` opens the input again from its start (the CSV reader's fast path uses it).
    """
    if data_format == "csv":
        return CsvRecordReader(stream, charset=charset, name=name, chunk_rows=chunk_rows, reopen=reopen)
    if data_format == "json_lines":
        return JsonLinesRecordReader(stream, charset=charset, name=name, chunk_rows=chunk_rows)
    if data_format == "parquet":
        return ParquetRecordReader(stream, name=name, chunk_rows=chunk_rows)
    raise ValueError(f"unknown data format {data_format!r}")


def record_writer(
    sink: PendingObject | BinaryIO,
    header: Sequence[str],
    *,
    data_format: str = "csv",
    charset: str = "UTF-8",
    gzipped: bool = False,
    write_header: bool = True,
) -> RecordWriter:
    """A writer of ``header``'s columns onto ``sink`` in ``data_format``, gzipped if asked.

    With ``gzipped`` the writer's ``sink`` is a :class:`GzipSink` around ``sink``; for Parquet it is a pending
    object that writes the file's footer before it commits. Commit (or abort) the writer's ``sink``.
    ``write_header=False`` (a resumed output) only matters to CSV: the other formats have no header line.
    """
    if gzipped:
        if not isinstance(sink, PendingObject):
            raise ValueError("gzip needs a pending object to write to")
        sink = GzipSink(sink)
    if data_format == "csv":
        return CsvRecordWriter(sink, header, charset=charset, write_header=write_header)
    if data_format == "json_lines":
        return JsonLinesRecordWriter(sink, header, charset=charset)
    if data_format == "parquet":
        return ParquetRecordWriter(sink, header)
    raise ValueError(f"unknown data format {data_format!r}")


# --------------------------------------------------------------------------- gzip


class _GunzipRaw(io.RawIOBase):
    def __init__(self, stream: BinaryIO, name: str) -> None:
        self._stream = stream
        self._gz = gzip.GzipFile(fileobj=stream, mode="rb")
        self._name = name

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def,override]
        try:
            return self._gz.readinto(buffer)
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise DataFormatError(f"{self._name}: cannot gunzip it (a broken or truncated gzip file: {exc})") from None

    def close(self) -> None:
        if not self.closed:
            try:
                self._gz.close()
            finally:
                self._stream.close()
        super().close()


def gunzipped(stream: BinaryIO, name: str = "<stream>") -> BinaryIO:
    """``stream`` decompressed; closing it closes ``stream``. Not seekable (Parquet spools it)."""
    return io.BufferedReader(_GunzipRaw(stream, name), buffer_size=1 << 20)  # type: ignore[return-value]


class GzipSink(PendingObject):
    """Gzips what is written to it into another pending object.

    Each committed part (a checkpoint) ends a gzip member, so the parts of a checkpointed output
    concatenate to a valid multi-member gzip file, identical whether or not the job was resumed.
    """

    def __init__(self, inner: PendingObject) -> None:
        self.inner = inner
        self.path = inner.path
        self._zip = _compressor()

    def write(self, data: bytes) -> int:
        packed = self._zip.compress(data)
        if packed:
            self.inner.write(packed)
        return len(data)

    def _end_member(self) -> None:
        self.inner.write(self._zip.flush())
        self._zip = _compressor()

    def checkpoint(self) -> None:
        self._end_member()
        self.inner.checkpoint()  # type: ignore[attr-defined]

    @property
    def part(self) -> int:
        return self.inner.part  # type: ignore[attr-defined,no-any-return]

    def commit(self) -> None:
        self._end_member()
        self.inner.commit()

    def abort(self) -> None:
        self.inner.abort()


def _compressor():  # type: ignore[no-untyped-def]
    # wbits 31: a gzip header and trailer (mtime 0, so the same data always gives the same bytes)
    return zlib.compressobj(6, zlib.DEFLATED, 31)


# --------------------------------------------------------------------------- JSON Lines


class _NotARecord(ValueError):
    pass


def _object(pairs: list[tuple[str, object]]) -> dict[str, object]:
    record = dict(pairs)
    if len(record) != len(pairs):
        keys = [k for k, _ in pairs]
        dupe = next(k for i, k in enumerate(keys) if k in keys[:i])
        raise _NotARecord(f"key {dupe!r} appears twice")
    return record


def _no_constant(name: str) -> object:
    raise _NotARecord(f"{name} is not a JSON value")


def _loads(line: str) -> object:
    # numbers keep the text they were written with: no float rounding on the way to a string
    return json.loads(line, parse_int=str, parse_float=str, parse_constant=_no_constant, object_pairs_hook=_object)


def _printable(text: str) -> str:
    """Text as a dead letter can hold it (undecodable bytes shown as U+FFFD)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


class JsonLinesRecordReader:
    """Reads JSON Lines (one JSON object per line) as chunks of records; see the module docstring.

    The header is the keys of the first record, in order. Records are numbered by their line.
    """

    parser = "json"

    def __init__(
        self,
        stream: BinaryIO,
        *,
        charset: str = "UTF-8",
        name: str = "<stream>",
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
    ) -> None:
        self.name = name
        self.chunk_rows = chunk_rows
        self.charset = charset
        # newline=None: "\n", "\r\n" and "\r" all end a line (a JSON string cannot hold a raw one)
        self._lines = io.TextIOWrapper(stream, encoding=_python_charset(charset), errors="surrogateescape")
        self._line = 0
        first = self._next_line()
        if first is None:
            raise DataFormatError(f"{name} is empty: a JSON Lines file needs a first record to name the columns")
        try:
            record = _loads(first)
        except (ValueError, RecursionError) as exc:
            raise DataFormatError(f"{name}: line {self._line} is not valid JSON ({_reason(exc)})") from None
        if not isinstance(record, dict) or not record:
            raise DataFormatError(
                f"{name}: line {self._line} is not a JSON object with keys; the first record names the columns"
            )
        header = list(record)
        if _has_undecodable(header):
            raise DataFormatError(f"{name}: the keys on line {self._line} are not valid {charset}")
        self.header: list[str] = header
        self._columns = set(header)
        self._first: tuple[int, str] | None = (self._line, first)
        self.rows_read = 0

    def _next_line(self) -> str | None:
        """The next non-blank line (its number in ``self._line``), or None at the end."""
        for line in self._lines:
            self._line += 1
            if line.strip():
                return line.rstrip("\n")
        return None

    def chunks(self) -> Iterator[RecordChunk]:
        width = len(self.header)
        while True:
            first = self.rows_read + 1
            numbers: list[int] = []
            good: list[list[str]] = []
            bad: list[BadRow] = []
            while len(good) + len(bad) < self.chunk_rows:
                if self._first is not None:
                    number, line = self._first
                    self._first = None
                else:
                    line = self._next_line()  # type: ignore[assignment]
                    if line is None:
                        break
                    number = self._line
                if not numbers and not bad:
                    first = number  # blank lines before it belong to no record
                self.rows_read = number
                values, reason, field = self._record(line)
                if values is None:
                    bad.append(BadRow(number, reason, _printable(line), field))
                else:
                    good.append(values)
                    numbers.append(number)
            if not good and not bad:
                return
            columns = [list(c) for c in zip(*good, strict=True)] if good else [[] for _ in range(width)]
            yield RecordChunk(first, numbers, columns, bad)

    def _record(self, line: str) -> tuple[list[str] | None, str, str | None]:
        """The record's values in header order, or None with why and the field at fault."""
        try:
            record = _loads(line)
        except (ValueError, RecursionError) as exc:
            return None, f"not valid JSON ({_reason(exc)})", None
        if not isinstance(record, dict):
            return None, f"not a JSON object (a JSON {_json_type(record)})", None
        extra = [k for k in record if k not in self._columns]
        if extra:
            return None, f"keys the first record does not have: {[_printable(k) for k in extra]}", _printable(extra[0])
        values: list[str] = []
        for name in self.header:
            value = record.get(name)
            if isinstance(value, str):
                if not value.isascii() and _has_undecodable((value,)):
                    return None, "undecodable bytes for the file's charset", name
                values.append(value)
            elif value is None:
                values.append("")
            elif value is True or value is False:
                values.append("true" if value else "false")
            else:
                return None, f"a JSON {_json_type(value)} is not a field value", name
        return values, "", None


def _reason(exc: ValueError | RecursionError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at column {exc.colno}"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc)


def _json_type(value: object) -> str:
    return {dict: "object", list: "array", str: "string"}.get(type(value), "literal")


_NULL = "null"


class JsonLinesRecordWriter:
    """Writes records as JSON Lines: one object per line, keys in header order, every value a string or null."""

    def __init__(self, sink: PendingObject | BinaryIO, header: Sequence[str], *, charset: str = "UTF-8") -> None:
        self.sink = sink
        self.header = list(header)
        self._encoding = codecs.lookup(charset).name
        self._keys = [encode_basestring(name) + ":" for name in self.header]
        self.rows_written = 0
        self.bytes_written = 0

    def write_columns(self, columns: Sequence[Sequence[str | None] | pa.Array]) -> None:
        data = self.encode_columns(columns)
        if data:
            self.write_encoded(data, len(columns[0]))

    def encode_columns(self, columns: Sequence[Sequence[str | None] | pa.Array]) -> bytes:
        """The JSON lines of these columns, in the writer's charset (written by :meth:`write_encoded`)."""
        if len(columns) != len(self.header):
            raise ValueError(f"expected {len(self.header)} columns, got {len(columns)}")
        encoded = [
            [_NULL if v is None else encode_basestring(v) for v in (c.to_pylist() if isinstance(c, pa.Array) else c)]
            for c in columns
        ]
        keys = self._keys
        lines = [
            "{" + ",".join([k + v for k, v in zip(keys, row, strict=True)]) + "}\n"
            for row in zip(*encoded, strict=True)
        ]
        return "".join(lines).encode(self._encoding)

    def write_encoded(self, data: bytes, rows: int) -> None:
        self.sink.write(data)
        self.bytes_written += len(data)
        self.rows_written += rows


# --------------------------------------------------------------------------- Parquet


def _seekable(stream: BinaryIO) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, ValueError, OSError):
        return False


def _spooled(stream: BinaryIO) -> BinaryIO:
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES)  # noqa: SIM115 - the reader closes it
    while block := stream.read(1 << 20):
        spool.write(block)
    spool.seek(0)
    return spool  # type: ignore[return-value]


class ParquetRecordReader:
    """Reads a Parquet file a batch of rows at a time, every column as strings; see the module docstring.

    Records are numbered from 1 in file order. Needs a seekable stream: any other is copied to a
    temporary file first (in memory up to :data:`SPOOL_IN_MEMORY_BYTES`).
    """

    parser = "parquet"

    def __init__(self, stream: BinaryIO, *, name: str = "<stream>", chunk_rows: int = DEFAULT_CHUNK_ROWS) -> None:
        self.name = name
        self.chunk_rows = chunk_rows
        self._spool = None if _seekable(stream) else _spooled(stream)
        try:
            # buffer_size: column chunks are read a buffer at a time, not whole (a row group may be large)
            self._file = pq.ParquetFile(self._spool or stream, buffer_size=1 << 20)
        except (pa.ArrowException, OSError) as exc:
            self.close()
            raise DataFormatError(f"{name} is not a Parquet file: {exc}") from None
        schema = self._file.schema_arrow
        header = list(schema.names)
        if not header:
            self.close()
            raise DataFormatError(f"{name}: the Parquet file has no columns")
        dupes = sorted({h for h in header if header.count(h) > 1})
        if dupes:
            self.close()
            raise DataFormatError(f"{name}: duplicate column names: {dupes}")
        nested = [f.name for f in schema if pa.types.is_nested(f.type)]
        if nested:
            self.close()
            raise DataFormatError(f"{name}: nested columns cannot be read as field values: {nested}")
        self.header: list[str] = header
        self.rows_read = 0

    def chunks(self) -> Iterator[RecordChunk]:
        chunker = TableChunker(lambda: self.chunk_rows, self._file.schema_arrow)
        try:
            for batch in self._file.iter_batches(batch_size=self.chunk_rows, use_threads=False):
                for table in chunker.push(batch):
                    yield self._chunk(table)
            if chunker.held:
                yield self._chunk(chunker.rest())
        finally:
            self.close()

    def _chunk(self, table: pa.Table) -> RecordChunk:
        first, n = self.rows_read + 1, table.num_rows
        columns: list[list[str]] = []
        for name, column in zip(self.header, table.columns, strict=True):
            try:
                text = column if pa.types.is_string(column.type) else pc.cast(column, pa.string())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise DataFormatError(
                    f"{self.name}: column {name!r} ({column.type}) of records {first}..{first + n - 1} "
                    f"cannot be read as text: {exc}"
                ) from None
            columns.append(pc.fill_null(text, "").to_pylist())
        self.rows_read += n
        return RecordChunk(first, list(range(first, first + n)), columns, [])

    def close(self) -> None:
        if self._spool is not None:
            self._spool.close()


class _Position:
    """A write-only file for Arrow onto a pending object: counts what was written (Arrow asks ``tell``)."""

    def __init__(self, sink: PendingObject | BinaryIO) -> None:
        self.sink = sink
        self.position = 0
        self.discard = False
        self.closed = False

    def write(self, data: bytes) -> int:
        if not self.discard:
            self.sink.write(bytes(data))
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True


class _ParquetOutput(PendingObject):
    """The pending object of a Parquet output: the file's footer is written just before the commit."""

    def __init__(self, inner: PendingObject | BinaryIO, writer: ParquetRecordWriter) -> None:
        self.inner = inner
        self.path = getattr(inner, "path", "<stream>")
        self._writer = writer

    def write(self, data: bytes) -> int:
        raise TypeError("write a Parquet output through its ParquetRecordWriter")

    def commit(self) -> None:
        self._writer.close()
        self.inner.commit()  # type: ignore[union-attr]

    def abort(self) -> None:
        self._writer.close(discard=True)
        self.inner.abort()  # type: ignore[union-attr]


class ParquetRecordWriter:
    """Writes records to a Parquet file, one row group per chunk, every column a string column (null stays null).

    ``sink`` commits the file (writing its footer first); the file is never held in memory.
    """

    def __init__(self, sink: PendingObject | BinaryIO, header: Sequence[str]) -> None:
        self.header = list(header)
        self.schema = pa.schema([(name, pa.string()) for name in self.header])
        self._out = _Position(sink)
        self._writer = pq.ParquetWriter(self._out, self.schema)
        self._open = True
        self.sink: PendingObject | BinaryIO = _ParquetOutput(sink, self) if isinstance(sink, PendingObject) else sink
        self.rows_written = 0

    @property
    def bytes_written(self) -> int:
        """Bytes written so far (the footer is written on commit)."""
        return self._out.position

    def write_columns(self, columns: Sequence[Sequence[str | None] | pa.Array]) -> None:
        arrays = [c if isinstance(c, pa.Array) else string_column(c) for c in columns]
        table = pa.Table.from_arrays(arrays, schema=self.schema)
        if table.num_rows:
            self._writer.write_table(table)
            self.rows_written += table.num_rows

    def close(self, *, discard: bool = False) -> None:
        """Write the footer (``discard``: write nothing more, the output is being thrown away)."""
        if self._open:
            self._open = False
            self._out.discard = discard
            self._writer.close()
