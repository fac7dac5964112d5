"""Keys files: the fast line encoder writes the bytes of the CSV writer."""

from __future__ import annotations

import io

from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_strm.core.crypto import Keyset
from airflow_provider_strm.core.csvio import CsvRecordWriter
from airflow_provider_strm.core.keyfiles import KEYS_HEADER, key_lines, key_rows, write_keys
from airflow_provider_strm.core.keystore import StoredKey


@given(
    st.lists(
        st.tuples(
            st.uuids().map(str) | st.text(alphabet=st.characters(codec="latin-1"), min_size=1, max_size=8),
            st.integers(1, 2**31 - 1),
            st.binary(min_size=64, max_size=64),
            st.none() | st.text(alphabet=st.characters(codec="latin-1"), max_size=12),  # quotes, commas, newlines
            st.none() | st.integers(0, 2**62),
        ),
        max_size=20,
    ),
    st.sampled_from(["UTF-8", "ISO-8859-1"]),
)
def test_key_lines_are_the_csv_writers_lines_of_the_key_rows(keys: list[tuple], charset: str) -> None:
    stored = [StoredKey(link, Keyset(key_id, key), 0, policy, expires)
              for link, key_id, key, policy, expires in keys]  # fmt: skip
    sink, fast = io.BytesIO(), io.BytesIO()
    rows = key_rows(stored)
    if rows:  # what keys files were written with before: Arrow's CSV writer, every value quoted
        columns = [list(column) for column in zip(*rows, strict=True)]
        CsvRecordWriter(sink, KEYS_HEADER, charset=charset, write_header=False).write_columns(columns)
    write_keys(CsvRecordWriter(fast, KEYS_HEADER, charset=charset, write_header=False), stored)
    lines = key_lines(
        [k.key_link for k in stored], [k.keyset for k in stored],
        [k.policy_id for k in stored], [k.expires_at for k in stored], charset,
    )  # fmt: skip
    assert lines == sink.getvalue() == fast.getvalue()
