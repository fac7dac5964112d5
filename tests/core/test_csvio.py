"""CSV in and out: STRM's layout exactly, messy input read record by record."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_strm.core import csvio
from airflow_provider_strm.core.csvio import CsvRecordReader, CsvRecordWriter
from airflow_provider_strm.core.errors import CsvFormatError


def read_all(data: bytes, **kwargs) -> tuple[list[str], list]:  # type: ignore[no-untyped-def]
    reader = CsvRecordReader(io.BytesIO(data), **kwargs)
    return reader.header, list(reader.chunks())


def test_writer_quotes_every_value_writes_null_as_nothing_and_ends_lines_crlf() -> None:
    buf = io.BytesIO()
    writer = CsvRecordWriter(buf, ["a", "b", "c"])
    writer.write_columns([["x", ""], ['say "hi"', "multi\nline"], [None, "3"]])
    assert buf.getvalue() == b'"a","b","c"\r\n"x","say ""hi""",\r\n"","multi\nline","3"\r\n'
    assert writer.rows_written == 2


def test_reader_strips_a_bom_and_keeps_quoted_newlines_and_crlf() -> None:
    header, chunks = read_all(b'\xef\xbb\xbfid,text\r\n1,"a\r\nb"\r\n2,""\r\n')
    assert header == ["id", "text"]
    (chunk,) = chunks
    assert chunk.columns == [["1", "2"], ["a\r\nb", ""]]
    assert chunk.rows == [1, 2]


def test_rows_are_numbered_from_one_after_the_header_across_chunks() -> None:
    data = b"a\n" + b"".join(f"{i}\n".encode() for i in range(1, 8))
    _, chunks = read_all(data, chunk_rows=3)
    assert [c.rows for c in chunks] == [[1, 2, 3], [4, 5, 6], [7]]
    assert [c.columns[0] for c in chunks][1] == ["4", "5", "6"]


def test_wrong_column_counts_and_undecodable_bytes_are_bad_rows_with_their_numbers() -> None:
    _, (chunk,) = read_all(b"a,b\n1,2\n3,4,5\n\xff,6\n7,8\n")
    assert chunk.rows == [1, 4]
    assert [(b.row, b.reason) for b in chunk.bad] == [
        (2, "expected 2 columns, got 3"),
        (3, "undecodable bytes for the file's charset"),
    ]
    assert chunk.bad[0].text == "3,4,5"


def test_another_charset_is_decoded() -> None:
    header, (chunk,) = read_all("naam,stad\nJosé,Zürich\n".encode("latin-1"), charset="ISO-8859-1")
    assert chunk.columns == [["José"], ["Zürich"]]


@pytest.mark.parametrize(("data", "message"), [(b"", "empty"), (b"a,a\n1,2\n", "duplicate"), (b"\n", "empty")])
def test_a_file_without_a_usable_header_is_refused(data: bytes, message: str) -> None:
    with pytest.raises(CsvFormatError, match=message):
        CsvRecordReader(io.BytesIO(data), name="x.csv")


def test_a_megabyte_field_is_read_whole() -> None:
    big = "x" * 1_048_576
    _, (chunk,) = read_all(f'a,b\n1,"{big}"\n'.encode())
    assert chunk.columns[1] == [big]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.lists(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=20), min_size=3, max_size=3),
        max_size=20,
    )
)
def test_what_the_writer_writes_the_reader_reads_back(rows: list[list[str]]) -> None:
    buf = io.BytesIO()
    CsvRecordWriter(buf, ["a", "b", "c"]).write_columns([list(c) for c in zip(*rows, strict=True)] or [[], [], []])
    _, chunks = read_all(buf.getvalue())
    got = [list(r) for c in chunks for r in zip(*c.columns, strict=True)]
    # a record of three empty strings is written as "","","" and read back as such
    assert got == rows


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_raise_nothing_but_named_errors(data: bytes) -> None:
    try:
        _, chunks = read_all(b"a,b\n" + data)
    except CsvFormatError:
        return
    for chunk in chunks:
        assert all(len(col) == len(chunk.rows) for col in chunk.columns)


def read_both(data: bytes, chunk_rows: int) -> tuple[CsvRecordReader, list, list]:
    """The chunks of the Arrow fast path (tiny blocks: many hand-over points) and of the Python path."""
    block, csvio._ARROW_BLOCK = csvio._ARROW_BLOCK, 64
    try:
        fast = CsvRecordReader(io.BytesIO(data), chunk_rows=chunk_rows, reopen=lambda: io.BytesIO(data))
        fast_chunks = list(fast.chunks())
    finally:
        csvio._ARROW_BLOCK = block
    slow = CsvRecordReader(io.BytesIO(data), chunk_rows=chunk_rows)
    return fast, fast_chunks, list(slow.chunks())


def test_a_clean_file_is_read_by_arrow_and_gives_the_python_paths_chunks() -> None:
    lines = [b'"id","note"'] + [b'%d,"line\nwith ""quotes"", commas %d"' % (i, i) for i in range(200)] + [b"", b"7,x"]
    data = b"\xef\xbb\xbf" + b"\r\n".join(lines) + b"\r\n"
    fast, fast_chunks, slow_chunks = read_both(data, 37)
    assert fast.parser == "arrow"
    assert fast_chunks == slow_chunks and sum(len(c) for c in fast_chunks) == 201


def test_a_carriage_return_inside_a_value_goes_to_python() -> None:
    """Arrow 26 loses the LF of a quoted CRLF that straddles two of its blocks: such files are read by Python."""
    lines = [b"id,note"] + [b'%d,"%s\r\nb"' % (i, b"x" * (i % 40)) for i in range(300)]
    fast, fast_chunks, slow_chunks = read_both(b"\n".join(lines) + b"\n", 50)
    assert fast.parser == "python"  # the very first batch has a CR in a value
    assert fast_chunks == slow_chunks
    assert all(v.endswith("\r\nb") for c in fast_chunks for v in c.columns[1])


def test_a_bad_record_deep_in_the_file_hands_over_to_python_at_the_next_record() -> None:
    lines = [b"id,email"] + [b"%d,u%d@example.com" % (i, i) for i in range(300)]
    lines[250] = b"249,\xff@example.com"  # undecodable
    lines[280] = b"279,a,b"  # too many columns
    fast, fast_chunks, slow_chunks = read_both(b"\n".join(lines) + b"\n", 40)
    assert fast.parser == "arrow+python"
    assert fast_chunks == slow_chunks
    assert [b.row for c in fast_chunks for b in c.bad] == [250, 280]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.lists(st.sampled_from(["a", "", "b c", '"q"', "x\r\ny", "é", "\n", ",", " "]), min_size=1, max_size=4),
        max_size=25,
    ),
    st.integers(1, 7),
    st.sampled_from([b"\n", b"\r\n"]),
    st.booleans(),
)
def test_the_arrow_path_and_the_python_path_read_any_file_alike(rows, chunk_rows, eol, raw) -> None:
    """Whatever the records (quoted or raw, wrong widths, blank lines): same chunks, numbers and bad rows."""

    def field(value: str) -> bytes:
        encoded = value.encode()
        return encoded if raw else b'"' + encoded.replace(b'"', b'""') + b'"'

    data = b"h1,h2,h3" + eol + b"".join(b",".join(field(v) for v in row) + eol for row in rows)
    _, fast_chunks, slow_chunks = read_both(data, chunk_rows)
    assert fast_chunks == slow_chunks
