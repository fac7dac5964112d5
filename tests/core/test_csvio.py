"""CSV in and out: STRM's layout exactly, messy input read record by record."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
