"""Streaming CSV in and out, in STRM's layout.

Reading yields chunks of records as columns, numbering records from 1 after
the header (STRM's ``row #1``) so every error can name its row. Handles a
byte-order mark, CRLF, quoted newlines and any Python charset; undecodable
bytes and wrong column counts become per-row :class:`BadRow` entries instead
of failing the whole file. Writing uses Arrow's CSV writer with every valid
value quoted, nulls as nothing and CRLF line ends, which is exactly STRM's
output layout.
"""

from __future__ import annotations

import codecs
import csv
import io
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from airflow_provider_strm.core.columnar import string_column
from airflow_provider_strm.core.errors import CsvFormatError
from airflow_provider_strm.core.storage import PendingObject

DEFAULT_CHUNK_ROWS = 40_000
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # one field may legitimately hold megabytes


@dataclass(frozen=True)
class BadRow:
    """A record that could not be read: its number, why, and its text as close to verbatim as we have it."""

    row: int
    reason: str
    text: str
    field: str | None = None


@dataclass(frozen=True)
class RecordChunk:
    """Records ``first_row`` .. ``first_row + len - 1`` (1-based, bad rows included in the numbering)."""

    first_row: int
    rows: list[int]  # the record number of each good record, in order
    columns: list[list[str]]  # one list per header column, good records only
    bad: list[BadRow]

    def __len__(self) -> int:
        return len(self.rows)

    def record_text(self, index: int) -> str:
        """The record at ``index`` written back as a CSV line (what a dead letter keeps)."""
        return _as_text([col[index] for col in self.columns])

    def without(self, rows: set[int]) -> RecordChunk:
        """This chunk minus the records numbered ``rows`` (they are accounted for elsewhere)."""
        keep = [i for i, row in enumerate(self.rows) if row not in rows]
        return RecordChunk(
            self.first_row, [self.rows[i] for i in keep], [[col[i] for i in keep] for col in self.columns], []
        )


class ArrowRecordChunk(RecordChunk):
    """A chunk Arrow parsed: its Python lists are made on first use, and it pickles as the Arrow table.

    So a job's own process, which only counts a chunk before a worker process takes it, never
    converts it, and the chunk crosses to the worker as Arrow buffers, not as Python strings.
    """

    def __init__(self, first_row: int, table: pa.Table) -> None:  # noqa: D107 - frozen dataclass
        object.__setattr__(self, "first_row", first_row)
        object.__setattr__(self, "bad", [])
        object.__setattr__(self, "_table", table)

    def __len__(self) -> int:
        return self._table.num_rows  # type: ignore[no-any-return]

    @property
    def table(self) -> pa.Table:
        """The chunk's records as Arrow parsed them (string columns, in header order)."""
        return self._table  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> object:
        if name == "rows":
            value: object = list(range(self.first_row, self.first_row + len(self)))
        elif name == "columns":
            value = [c.to_pylist() for c in self._table.columns]
        else:
            raise AttributeError(name)
        object.__setattr__(self, name, value)
        return value

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RecordChunk):
            return NotImplemented
        return (self.first_row, self.rows, self.columns, self.bad) == (
            other.first_row,
            other.rows,
            other.columns,
            other.bad,
        )

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> tuple[object, ...]:
        return (ArrowRecordChunk, (self.first_row, self._table))


def _python_charset(charset: str) -> str:
    name = codecs.lookup(charset).name
    # utf-8-sig strips a leading BOM and reads plain UTF-8 the same.
    return "utf-8-sig" if name == "utf-8" else name


class CsvRecordReader:
    """Reads a CSV stream as chunks of records. The header is read at construction."""

    def __init__(
        self,
        stream: BinaryIO,
        *,
        charset: str = "UTF-8",
        name: str = "<stream>",
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        reopen: Callable[[], BinaryIO] | None = None,
    ) -> None:
        self.name = name
        self.chunk_rows = chunk_rows
        self.charset = charset
        # Arrow's parser (C++, threaded) reads UTF-8 files it can open again from the start; anything
        # it will not take (a malformed record, undecodable bytes) hands over to Python's csv module at
        # the first record Arrow did not deliver, so records, numbers and bad rows are the same either way.
        self._reopen = reopen if codecs.lookup(charset).name == "utf-8" else None
        #: which parser delivered the records: "arrow", "python" or "arrow+python" (handed over mid-file)
        self.parser = "python"
        text = io.TextIOWrapper(stream, encoding=_python_charset(charset), errors="surrogateescape", newline="")
        self._reader = csv.reader(text)
        try:
            header = next(self._reader)
        except StopIteration:
            raise CsvFormatError(f"{name} is empty: a CSV file needs a header line") from None
        except csv.Error as exc:
            raise CsvFormatError(f"{name}: cannot read the header line: {exc}") from None
        if _has_undecodable(header):
            raise CsvFormatError(f"{name}: the header line is not valid {charset}")
        if not header or all(h == "" for h in header):
            raise CsvFormatError(f"{name}: the header line is empty")
        dupes = sorted({h for h in header if header.count(h) > 1})
        if dupes:
            raise CsvFormatError(f"{name}: duplicate column names in the header: {dupes}")
        self.header: list[str] = header
        self.rows_read = 0

    def chunks(self) -> Iterator[RecordChunk]:
        if self._reopen is None:
            yield from self._python_chunks(self._reader)
            return
        self.parser = "arrow"
        carry: list[list[str]] = []
        try:
            yield from self._arrow_chunks()
            return
        except _HandOver as handover:
            carry = handover.records
        self.parser = "arrow+python" if self.rows_read or carry else "python"
        with self._reopen() as stream:
            text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
            reader = csv.reader(text)
            next(reader)  # the header, checked at construction
            skip = self.rows_read + len(carry)
            while skip:  # records Arrow delivered, counted as _python_chunks counts them
                try:
                    record = next(reader)
                except csv.Error:
                    skip -= 1
                    continue
                if record:
                    skip -= 1
            yield from self._python_chunks(reader, carry)

    def _arrow_chunks(self) -> Iterator[RecordChunk]:
        assert self._reopen is not None
        header = self.header
        with self._reopen() as stream:
            try:
                reader = pacsv.open_csv(
                    stream,
                    read_options=pacsv.ReadOptions(block_size=_ARROW_BLOCK, use_threads=False),
                    parse_options=pacsv.ParseOptions(newlines_in_values=True),
                    convert_options=pacsv.ConvertOptions(
                        column_types={name: pa.string() for name in header},
                        strings_can_be_null=False,
                        quoted_strings_can_be_null=False,
                    ),
                )
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise _HandOver([]) from None
            if reader.schema.names != header:
                raise _HandOver([])
            chunker = TableChunker(lambda: self.chunk_rows, reader.schema)
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    break
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    batch = None
                # Arrow 26 can lose the "\n" after a quoted "\r" where a block ends; such a value always
                # keeps its "\r", so a batch with a carriage return in any value goes to Python.
                if batch is None or any(_has_carriage_return(c) for c in batch.columns):
                    # records parsed but not yet in a chunk start the first chunk of the Python path
                    columns = [c.to_pylist() for c in chunker.rest().columns]
                    raise _HandOver([list(r) for r in zip(*columns, strict=True)])
                for table in chunker.push(batch):
                    yield self._arrow_chunk(table)
            if chunker.held:
                yield self._arrow_chunk(chunker.rest())

    def _arrow_chunk(self, table: pa.Table) -> RecordChunk:
        first, n = self.rows_read + 1, table.num_rows
        self.rows_read += n
        return ArrowRecordChunk(first, table)

    def _python_chunks(self, reader: Iterator[list[str]], carry: list[list[str]] = ()) -> Iterator[RecordChunk]:  # type: ignore[assignment]
        width = len(self.header)
        while True:
            first = self.rows_read + 1
            good: list[list[str]] = list(carry)
            numbers: list[int] = list(range(first, first + len(carry)))
            bad: list[BadRow] = []
            self.rows_read += len(carry)
            carry = []
            while len(good) + len(bad) < self.chunk_rows:
                try:
                    record = next(reader)
                except StopIteration:
                    break
                except csv.Error as exc:
                    self.rows_read += 1
                    bad.append(BadRow(self.rows_read, f"unreadable CSV ({exc})", ""))
                    continue
                if not record:
                    continue  # blank line: not a record
                self.rows_read += 1
                if len(record) != width:
                    bad.append(BadRow(self.rows_read, f"expected {width} columns, got {len(record)}", _as_text(record)))
                else:
                    good.append(record)
                    numbers.append(self.rows_read)
            if not good and not bad:
                return
            columns = [list(c) for c in zip(*good, strict=True)] if good else [[] for _ in range(width)]
            chunk = RecordChunk(first, numbers, columns, bad)
            undecodable = _undecodable_rows(columns)
            if undecodable:
                reason = "undecodable bytes for the file's charset"
                bad += [BadRow(numbers[i], reason, chunk.record_text(i)) for i in undecodable]
                bad.sort(key=lambda b: b.row)
                chunk = chunk.without({numbers[i] for i in undecodable})
                chunk = RecordChunk(first, chunk.rows, chunk.columns, bad)
            yield chunk


class TableChunker:
    """Re-cuts Arrow record batches into tables of exactly ``size()`` rows (what is left: :meth:`rest`).

    ``size`` is asked again for each table: a job may change its reader's ``chunk_rows`` between chunks.
    """

    def __init__(self, size: Callable[[], int], schema: pa.Schema) -> None:
        self.size = size
        self.schema = schema
        self.held = 0
        self._pending: list[pa.RecordBatch] = []

    def push(self, batch: pa.RecordBatch) -> Iterator[pa.Table]:
        self._pending.append(batch)
        self.held += batch.num_rows
        while self.held >= (size := self.size()):
            table = pa.Table.from_batches(self._pending, self.schema)
            yield table.slice(0, size)
            rest = table.slice(size)
            self._pending, self.held = rest.to_batches(), rest.num_rows

    def rest(self) -> pa.Table:
        return pa.Table.from_batches(self._pending, self.schema)


class _HandOver(Exception):
    """Arrow will not take the rest of the file: Python's csv module goes on from the next record."""

    def __init__(self, records: list[list[str]]) -> None:
        super().__init__("hand over to Python's csv module")
        self.records = records  # parsed by Arrow, not yet delivered in a chunk


_ARROW_BLOCK = 256 << 10  # bytes Arrow parses at a time (more costs memory); a longer record goes to Python


def _has_carriage_return(column: pa.Array) -> bool:
    """Whether any value of a string column holds a carriage return (searched in its values' bytes)."""
    if column.type != pa.string():  # large strings have 64-bit offsets
        return bool(pc.any(pc.match_substring(column, "\r")).as_py())
    _, offsets, data = column.buffers()
    if data is None or len(column) == 0:
        return False
    bounds = memoryview(offsets).cast("i")  # int32 value offsets of a (non-large) string array
    start, end = bounds[column.offset], bounds[column.offset + len(column)]
    # a batch's bytes (~256 KB): copied, then searched with memchr (~4x faster than a regular expression)
    return b"\r" in memoryview(data)[start:end].tobytes()


def _undecodable_rows(columns: list[list[str]]) -> list[int]:
    """Indexes of the records holding bytes the charset could not decode (surrogate escapes)."""
    rows: set[int] = set()
    for column in columns:
        if "".join(column).isascii():
            continue  # the usual case: one pass over the whole column
        rows.update(i for i, value in enumerate(column) if _has_undecodable((value,)))
    return sorted(rows)


def _has_undecodable(record: Sequence[str]) -> bool:
    for value in record:
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return True
    return False


def _as_text(record: Sequence[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(
        [v.encode("utf-8", "surrogateescape").decode("utf-8", "replace") for v in record]
    )
    return buf.getvalue()


def quoted(value: str | None) -> str:
    """A value as :class:`CsvRecordWriter` writes it: quoted, quotes doubled; a missing value empty."""
    return "" if value is None else '"' + value.replace('"', '""') + '"'


_WRITE_ROWS = 5000  # records encoded and written at a time
_WRITE_OPTIONS = pacsv.WriteOptions(quoting_style="all_valid", eol="\r\n", include_header=False)


class CsvRecordWriter:
    """Writes columns of strings (``None`` = null) to a pending object in STRM's CSV layout."""

    def __init__(
        self,
        sink: PendingObject | BinaryIO,
        header: Sequence[str],
        *,
        charset: str = "UTF-8",
        write_header: bool = True,
    ) -> None:
        self.sink = sink
        self._encoding = codecs.lookup(charset).name
        self.header = list(header)
        self.schema = pa.schema([(name, pa.string()) for name in self.header])
        self.rows_written = 0
        self.bytes_written = 0
        if write_header:  # a resumed output already has its header in an earlier part
            self._emit(",".join(map(quoted, self.header)).encode("utf-8") + b"\r\n")

    @property
    def charset(self) -> str:
        """The charset the writer encodes lines in (Python's name for it)."""
        return self._encoding

    def write_columns(self, columns: Sequence[Sequence[str | None] | pa.Array]) -> None:
        batch = self._batch(columns)
        for start in range(0, batch.num_rows, _WRITE_ROWS):  # a slice at a time: one chunk's text is never held
            part = batch.slice(start, _WRITE_ROWS)
            self.write_encoded(self._encode_batch(part), part.num_rows)

    def encode_columns(self, columns: Sequence[Sequence[str | None] | pa.Array]) -> bytes:
        """The CSV lines of these columns, in the writer's charset (written by :meth:`write_encoded`)."""
        return self._encode_batch(self._batch(columns))

    def _batch(self, columns: Sequence[Sequence[str | None] | pa.Array]) -> pa.RecordBatch:
        arrays = [c if isinstance(c, pa.Array) else string_column(c) for c in columns]
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)

    def _encode_batch(self, batch: pa.RecordBatch) -> bytes:
        if batch.num_rows == 0:
            return b""
        buf = io.BytesIO()
        pacsv.write_csv(batch, buf, write_options=_WRITE_OPTIONS)
        return self._encode(buf.getvalue())

    def write_encoded(self, data: bytes, rows: int) -> None:
        """Write lines made by :meth:`encode_columns` (possibly in another process)."""
        self.sink.write(data)
        self.bytes_written += len(data)
        self.rows_written += rows

    def _emit(self, data: bytes) -> None:
        data = self._encode(data)
        self.sink.write(data)
        self.bytes_written += len(data)

    def _encode(self, data: bytes) -> bytes:
        return data if self._encoding == "utf-8" else data.decode("utf-8").encode(self._encoding)
