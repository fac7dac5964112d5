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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

import pyarrow as pa
import pyarrow.csv as pacsv

from airflow_provider_strm.core.errors import CsvFormatError
from airflow_provider_strm.core.storage import PendingObject

DEFAULT_CHUNK_ROWS = 20_000
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


def _python_charset(charset: str) -> str:
    name = codecs.lookup(charset).name
    # utf-8-sig strips a leading BOM and reads plain UTF-8 the same.
    return "utf-8-sig" if name == "utf-8" else name


class CsvRecordReader:
    """Reads a CSV stream as chunks of records. The header is read at construction."""

    def __init__(
        self, stream: BinaryIO, *, charset: str = "UTF-8", name: str = "<stream>", chunk_rows: int = DEFAULT_CHUNK_ROWS
    ) -> None:
        self.name = name
        self.chunk_rows = chunk_rows
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
        width = len(self.header)
        reader = self._reader
        while True:
            good: list[list[str]] = []
            numbers: list[int] = []
            bad: list[BadRow] = []
            first = self.rows_read + 1
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
            self._emit(",".join('"' + h.replace('"', '""') + '"' for h in self.header).encode("utf-8") + b"\r\n")

    def write_columns(self, columns: Sequence[Sequence[str | None] | pa.Array]) -> None:
        data = self.encode_columns(columns)
        if data:
            self.write_encoded(data, len(columns[0]))

    def encode_columns(self, columns: Sequence[Sequence[str | None] | pa.Array]) -> bytes:
        """The CSV lines of these columns, in the writer's charset (written by :meth:`write_encoded`)."""
        arrays = [c if isinstance(c, pa.Array) else pa.array(c, type=pa.string()) for c in columns]
        batch = pa.RecordBatch.from_arrays(arrays, schema=self.schema)
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
