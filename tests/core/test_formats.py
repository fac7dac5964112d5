"""JSON Lines and Parquet in and out, gzip transparently: every format reads and writes as CSV does."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_checks import parse_csv

from airflow_provider_strm.core.config import load_batch_job_config
from airflow_provider_strm.core.contract import load_data_contract
from airflow_provider_strm.core.csvio import RecordChunk
from airflow_provider_strm.core.derive import DeriveJob
from airflow_provider_strm.core.encrypt import EncryptJob
from airflow_provider_strm.core.errors import ConfigError, DataFormatError, RecordError
from airflow_provider_strm.core.formats import (
    GzipSink,
    JsonLinesRecordReader,
    ParquetRecordReader,
    gunzipped,
    record_reader,
    record_writer,
)
from airflow_provider_strm.core.keystore import KeyStore, new_kek
from airflow_provider_strm.core.storage import LocalStorage

GROUP = "7824e975-20e1-4995-b129-2f9582728ca5"


def read_all(reader) -> tuple[list[int], list[list[str]], list]:  # type: ignore[no-untyped-def]
    """Every record of a reader: numbers, rows (as lists) and bad records, in file order."""
    numbers, rows, bad = [], [], []
    for chunk in reader.chunks():
        numbers += chunk.rows
        rows += [list(r) for r in zip(*chunk.columns, strict=True)]
        bad += chunk.bad
    return numbers, rows, bad


def jsonl(text: str, **kwargs) -> JsonLinesRecordReader:  # type: ignore[no-untyped-def]
    return JsonLinesRecordReader(io.BytesIO(text.encode()), **kwargs)


class Unseekable(io.RawIOBase):
    """A stream read once from start to end, like an S3 body."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def,override]
        return self._data.readinto(buffer)


# --------------------------------------------------------------------------- JSON Lines


def test_json_lines_values_become_the_strings_a_csv_would_hold() -> None:
    reader = jsonl(
        '{"id": "a", "n": 1e3, "x": 1.50, "ok": true, "gone": null}\n{"id": "b", "n": -7, "x": 0, "ok": false}\n'
    )
    assert reader.header == ["id", "n", "x", "ok", "gone"]
    numbers, rows, bad = read_all(reader)
    assert numbers == [1, 2] and bad == []
    # numbers keep their text; null and a missing key are empty strings
    assert rows == [["a", "1e3", "1.50", "true", ""], ["b", "-7", "0", "false", ""]]


def test_bad_json_lines_are_bad_records_named_by_their_line() -> None:
    text = "\n".join(
        [
            '{"id": "1", "email": "a@x"}',  # 1 good
            "",  # 2 blank: no record
            '{"id": "2", "email": "b@x"',  # 3 not JSON
            '["3", "c@x"]',  # 4 not an object
            '{"id": "4", "mail": "d@x"}',  # 5 a key the header lacks
            '{"id": "5", "email": {"at": "x"}}',  # 6 a nested value
            '{"id": "6", "id": "7", "email": "e@x"}',  # 7 a key twice
            '{"id": "8", "email": NaN}',  # 8 not JSON either
            '{"email": "f@x"}',  # 9 good: a missing key is empty
        ]
    )
    numbers, rows, bad = read_all(jsonl(text + "\n", chunk_rows=4))
    assert numbers == [1, 9] and rows == [["1", "a@x"], ["", "f@x"]]
    assert [(b.row, b.field) for b in bad] == [(3, None), (4, None), (5, "mail"), (6, "email"), (7, None), (8, None)]
    assert "not valid JSON" in bad[0].reason and bad[0].text == '{"id": "2", "email": "b@x"'
    assert bad[1].reason == "not a JSON object (a JSON array)"
    assert bad[2].reason == "keys the first record does not have: ['mail']"
    assert bad[3].reason == "a JSON object is not a field value"
    assert "key 'id' appears twice" in bad[4].reason
    assert "NaN is not a JSON value" in bad[5].reason


def test_json_lines_chunks_count_records_and_number_them_by_line() -> None:
    reader = jsonl('{"a": "1"}\n\n{"a": "2"}\n{"a": "3"}\n', chunk_rows=2)
    chunks = list(reader.chunks())
    assert [(c.first_row, c.rows) for c in chunks] == [(1, [1, 3]), (4, [4])]
    assert reader.rows_read == 4


def test_undecodable_json_lines_bytes_are_a_bad_record_and_a_bom_is_skipped() -> None:
    data = b'\xef\xbb\xbf{"id": "1"}\r\n{"id": "2\xff"}\r\n'
    numbers, rows, bad = read_all(JsonLinesRecordReader(io.BytesIO(data)))
    assert rows == [["1"]] and [(b.row, b.field) for b in bad] == [(2, "id")]
    assert "undecodable" in bad[0].reason and bad[0].text == '{"id": "2\ufffd"}'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("\n\n", "is empty"),
        ('["a"]\n', "line 1 is not a JSON object"),
        ("{}\n", "line 1 is not a JSON object"),
        ("\n{oops\n", "line 2 is not valid JSON"),
    ],
)
def test_a_json_lines_file_needs_a_first_object_to_name_its_columns(text: str, message: str) -> None:
    with pytest.raises(DataFormatError, match=message):
        jsonl(text, name="in.jsonl")


def test_json_lines_are_written_as_objects_of_strings_and_nulls() -> None:
    out = io.BytesIO()
    writer = record_writer(out, ["id", "note"], data_format="json_lines")
    writer.write_columns([["1", "2"], ['say "hi"\n', None]])
    writer.write_columns([pa.array(["3"]), pa.array(["é"])])
    assert (
        out.getvalue()
        == '{"id":"1","note":"say \\"hi\\"\\n"}\n{"id":"2","note":null}\n{"id":"3","note":"é"}\n'.encode()
    )
    assert writer.rows_written == 3 and writer.bytes_written == len(out.getvalue())


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=8), min_size=1, max_size=4, unique=True
    ),
    st.data(),
)
def test_json_lines_round_trip_any_text(header: list[str], data: st.DataObject) -> None:
    value = st.one_of(st.none(), st.text(st.characters(exclude_categories=("Cs",)), max_size=20))
    rows = data.draw(st.lists(st.lists(value, min_size=len(header), max_size=len(header)), min_size=1, max_size=20))
    out = io.BytesIO()
    record_writer(out, header, data_format="json_lines").write_columns([list(c) for c in zip(*rows, strict=True)])
    reader = record_reader(io.BytesIO(out.getvalue()), data_format="json_lines", chunk_rows=7)
    numbers, back, bad = read_all(reader)
    assert reader.header == header and bad == []
    assert numbers == list(range(1, len(rows) + 1))
    assert back == [["" if v is None else v for v in row] for row in rows]


# --------------------------------------------------------------------------- Parquet


def parquet_bytes(table: pa.Table, **kwargs) -> bytes:  # type: ignore[no-untyped-def]
    buf = io.BytesIO()
    pq.write_table(table, buf, **kwargs)
    return buf.getvalue()


def test_parquet_columns_are_read_as_strings_and_nulls_as_empty_strings() -> None:
    table = pa.table({"id": ["a", None], "n": [1, 2], "x": [1.5, None], "ok": [True, False]})
    reader = ParquetRecordReader(io.BytesIO(parquet_bytes(table)))
    assert reader.header == ["id", "n", "x", "ok"]
    assert read_all(reader) == ([1, 2], [["a", "1", "1.5", "true"], ["", "2", "", "false"]], [])


def test_a_large_parquet_file_is_read_in_chunks_of_chunk_rows_whatever_its_row_groups() -> None:
    n = 25_000
    table = pa.table({"id": [str(i) for i in range(n)], "v": list(range(n))})
    data = parquet_bytes(table, row_group_size=7_000)
    reader = record_reader(Unseekable(data), data_format="parquet", chunk_rows=4_000)  # type: ignore[arg-type]
    chunks: list[RecordChunk] = list(reader.chunks())
    assert [len(c) for c in chunks] == [4_000] * 6 + [1_000]
    assert [c.first_row for c in chunks] == [1 + 4_000 * i for i in range(7)]
    assert chunks[-1].rows[-1] == n == reader.rows_read
    assert chunks[3].columns[0][0] == "12000" and chunks[3].columns[1][-1] == "15999"


def test_parquet_is_written_one_row_group_per_chunk_as_strings_and_nulls_stay_null() -> None:
    out = io.BytesIO()
    writer = record_writer(out, ["id", "note"], data_format="parquet")
    writer.write_columns([["1", "2"], ["", None]])
    writer.write_columns([pa.array(["3"]), pa.array(["x"])])
    writer.close()  # type: ignore[attr-defined]
    parquet = pq.ParquetFile(io.BytesIO(out.getvalue()))
    assert parquet.metadata.num_row_groups == 2 and writer.rows_written == 3
    assert parquet.schema_arrow == pa.schema([("id", pa.string()), ("note", pa.string())])
    assert parquet.read().to_pylist() == [{"id": "1", "note": ""}, {"id": "2", "note": None}, {"id": "3", "note": "x"}]
    assert writer.bytes_written == len(out.getvalue())


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"id,email\n1,a\n", "is not a Parquet file"),
        (parquet_bytes(pa.table({"id": ["1"], "tags": [["a", "b"]]})), r"nested columns .*\['tags'\]"),
    ],
)
def test_what_is_not_flat_parquet_is_refused_naming_the_file(data: bytes, message: str) -> None:
    with pytest.raises(DataFormatError, match=message):
        ParquetRecordReader(io.BytesIO(data), name="in.parquet")


# --------------------------------------------------------------------------- gzip


def test_gzip_sink_writes_one_member_per_committed_part_and_gunzips_to_the_data(tmp_path: Path) -> None:
    from airflow_provider_strm.core.checkpoint import PartedOutput

    storage = LocalStorage(tmp_path)
    sink = GzipSink(PartedOutput(storage, "out.csv.gz", "job"))
    sink.write(b"a,b\r\n")
    sink.checkpoint()
    sink.write(b"1,2\r\n")
    assert sink.part == 1
    sink.commit()
    data = (tmp_path / "out.csv.gz").read_bytes()
    assert gzip.decompress(data) == b"a,b\r\n1,2\r\n"
    assert data.count(b"\x1f\x8b\x08") == 2  # two gzip members
    with gunzipped(open(tmp_path / "out.csv.gz", "rb")) as stream:  # noqa: SIM115
        assert stream.read() == b"a,b\r\n1,2\r\n"


def test_a_truncated_gzip_input_fails_naming_the_file() -> None:
    data = gzip.compress(b"id\n" + b"1\n" * 10_000)[:-20]
    with pytest.raises(DataFormatError, match="in.csv.gz: cannot gunzip it"):
        gunzipped(io.BytesIO(data), "in.csv.gz").read()


# --------------------------------------------------------------------------- configuration


def minimal(**locations) -> dict:  # type: ignore[no-untyped-def]
    return {
        "source_data": {"file_name": "in.csv"},
        "encryption": {"timestamp_config": {"field": "ts"}},
        "event_contract_ref": {"handle": "h", "name": "n", "version": "1"},
        "encrypted_data": {"target": {"path_prefix": "out"}},
        **locations,
    }


def test_outputs_without_a_file_name_take_their_formats_extension() -> None:
    config = load_batch_job_config(
        minimal(
            encrypted_data={"target": {"path_prefix": "out", "data_type": {"json_lines": {"compression": "gzip"}}}},
            derived_data=[
                {"target": {"data_type": {"parquet": {}}}, "consent_levels": [1]},
                {"target": {"data_type": {"csv": {"compression": "GZIP"}}}, "consent_levels": [2]},
            ],
        )
    )
    assert config.encrypted_data.output_path("raw/in.csv.gz", "encrypted") == "out/in-encrypted.jsonl.gz"
    assert config.derived_data[0].target.output_path("in.jsonl", "derived-1") == "in-derived-1.parquet"
    assert config.derived_data[1].target.output_path("in.jsonl", "derived-2") == "in-derived-2.csv.gz"
    assert config.encrypted_data.gzipped("whatever.jsonl") and config.source_data.gzipped("in.CSV.GZ")
    assert not config.source_data.gzipped("in.csv")


KEYS, DEAD, SOURCE_TYPE = "encryption_keys_data.target", "dead_letter.target", "source_data.data_type"
GZIP = {"csv": {"compression": "gzip"}}


@pytest.mark.parametrize(
    ("locations", "path"),
    [
        ({"encryption_keys_data": {"target": {"data_type": {"json_lines": {}}}}}, f"{KEYS}.data_type.json_lines"),
        ({"dead_letter": {"target": {"file_name": "dead.csv.gz"}}}, f"{DEAD}.file_name"),
        ({"dead_letter": {"target": {"data_type": GZIP}}}, f"{DEAD}.data_type.csv.compression"),
        ({"source_data": {"data_type": {"parquet": {"charset": "UTF-8"}}}}, f"{SOURCE_TYPE}.parquet.charset"),
        ({"source_data": {"data_type": {"csv": {"compression": "zstd"}}}}, f"{SOURCE_TYPE}.csv.compression"),
        ({"source_data": {"data_type": {"avro": {}}}}, f"{SOURCE_TYPE}.avro"),
    ],
)  # fmt: skip
def test_keys_files_and_dead_letters_stay_plain_csv_and_unknown_options_are_refused(locations, path) -> None:
    with pytest.raises(ConfigError) as err:
        load_batch_job_config(minimal(**locations))
    assert err.value.path == path


# --------------------------------------------------------------------------- jobs

CONTRACT = {"keyField": "id", "piiFields": {"email": 1, "name": 2}}
SOURCE = [
    {"id": f"u{i % 7}", "email": f"user{i}@example.com", "name": f"Näme {i}", "ts": f"2026-11-{10 + i % 9}T10:00:00Z"}
    for i in range(50)
]
EXTENSION = {"csv": "csv", "json_lines": "jsonl", "parquet": "parquet"}


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    ks = KeyStore(f"sqlite:///{tmp_path / 'keys.db'}", new_kek())
    ks.ensure_schema()
    return ks


def write_source(
    path: Path, fmt: str, records: list[dict[str, str]], extra_lines: dict[int, str] | None = None
) -> None:
    """``records`` in ``fmt`` (``extra_lines``: JSON Lines inserted as that line number)."""
    header = list(records[0])
    columns = [[r[h] for r in records] for h in header]
    sink = io.BytesIO()
    writer = record_writer(sink, header, data_format=fmt)
    writer.write_columns(columns)
    if fmt == "parquet":
        writer.close()  # type: ignore[attr-defined]
    data = sink.getvalue()
    if extra_lines:
        lines = data.decode().splitlines()
        for number, line in sorted(extra_lines.items()):
            lines.insert(number - 1, line)
        data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)


def read_records(path: Path, fmt: str) -> list[dict[str, str]]:
    stream = open(path, "rb")  # noqa: SIM115 - closed below
    if path.name.endswith(".gz"):
        stream = gunzipped(stream)  # type: ignore[assignment]
    with stream:
        reader = record_reader(stream, data_format=fmt)
        _, rows, bad = read_all(reader)
    assert bad == []
    return [dict(zip(reader.header, row, strict=True)) for row in rows]


def formats_config(source: str, src: str, enc: str, derived: str, derived_name: str | None = None) -> dict:
    derived_target: dict = {"path_prefix": "out", "data_type": {derived: {}}}
    if derived_name:
        derived_target["file_name"] = derived_name
    return {
        "source_data": {"file_name": source, "data_type": {src: {}}},
        "consent": {"default_consent_levels": [2]},
        "encryption": {"batch_job_group_id": GROUP, "timestamp_config": {"field": "ts"}},
        "event_contract_ref": {"handle": "h", "name": "n", "version": "1"},
        "encrypted_data": {"target": {"path_prefix": "out", "data_type": {enc: {}}}},
        "encryption_keys_data": {"target": {"path_prefix": "out"}},
        "derived_data": [{"target": derived_target, "consent_levels": [2]}],
        "dead_letter": {"target": {"path_prefix": "dead"}},
    }


@pytest.mark.parametrize(
    ("src", "enc", "derived"),
    [
        ("json_lines", "json_lines", "json_lines"),
        ("parquet", "parquet", "parquet"),
        ("json_lines", "parquet", "csv"),
        ("parquet", "json_lines", "parquet"),
    ],
)
def test_encrypt_then_derive_gives_back_the_source_in_any_format(tmp_path, store, src, enc, derived) -> None:
    source = f"in.{EXTENSION[src]}"
    write_source(tmp_path / source, src, SOURCE)
    config = load_batch_job_config(formats_config(source, src, enc, derived))
    contract = load_data_contract(CONTRACT)
    storages = lambda c: LocalStorage(tmp_path)  # noqa: E731
    encrypted = EncryptJob(config, contract, store, storages, chunk_rows=16).run()
    assert (encrypted.rows_in, encrypted.rows_out, encrypted.dead_lettered) == (50, 50, 0)
    enc_path = tmp_path / f"out/in-encrypted.{EXTENSION[enc]}"
    assert encrypted.outputs["encrypted"] == f"out/in-encrypted.{EXTENSION[enc]}"
    ciphertexts = read_records(enc_path, enc)
    assert [r["id"] for r in ciphertexts] == [r["id"] for r in SOURCE]
    assert all(r["email"] != s["email"] and r["name"] != s["name"] for r, s in zip(ciphertexts, SOURCE, strict=True))
    assert parse_csv((tmp_path / "out/in-keys.csv").read_bytes())[0][0] == "keyLink"  # keys stay STRM's CSV

    derived_result = DeriveJob(config, contract, store, storages, chunk_rows=16).run()
    assert derived_result.rows_in == derived_result.rows_out == 50
    back = read_records(tmp_path / f"out/in-derived-2.{EXTENSION[derived]}", derived)
    assert [{k: r[k] for k in SOURCE[0]} for r in back] == SOURCE


def test_a_bad_json_line_is_dead_lettered_with_its_line_number(tmp_path, store) -> None:
    write_source(tmp_path / "in.jsonl", "json_lines", SOURCE[:5], {3: '{"id": "x", "email": "x@example.com"', 5: "[]"})
    config = load_batch_job_config(formats_config("in.jsonl", "json_lines", "json_lines", "json_lines"))
    result = EncryptJob(config, load_data_contract(CONTRACT), store, lambda c: LocalStorage(tmp_path)).run()
    assert (result.rows_in, result.rows_out, result.dead_lettered) == (7, 5, 2)
    assert result.rows_in == result.rows_out + result.dead_lettered
    dead = parse_csv((tmp_path / "dead/in-encrypt-dead-letters.csv").read_bytes())
    assert [row[0] for row in dead[1:]] == ["3", "5"]
    assert dead[1][1].startswith("not valid JSON") and dead[1][3] == '{"id": "x", "email": "x@example.com"'
    assert dead[2][1] == "not a JSON object (a JSON array)"
    assert len(read_records(tmp_path / "out/in-encrypted.jsonl", "json_lines")) == 5


def test_gzipped_csv_in_and_out_holds_exactly_the_plain_csv_bytes(tmp_path, store) -> None:
    write_source(tmp_path / "in.csv", "csv", SOURCE)
    write_source(tmp_path / "in.csv.gz", "csv", SOURCE)
    contract = load_data_contract(CONTRACT)
    storages = lambda c: LocalStorage(tmp_path)  # noqa: E731
    plain = load_batch_job_config(formats_config("in.csv", "csv", "csv", "csv"))
    EncryptJob(plain, contract, store, storages).run()
    DeriveJob(plain, contract, store, storages).run()
    doc = formats_config("in.csv.gz", "csv", "csv", "csv", derived_name="{stem}-derived.csv.gz")
    doc["encrypted_data"]["target"]["data_type"] = {"csv": {"compression": "gzip"}}
    zipped = load_batch_job_config(doc)
    # checkpoints: each committed part of the gzipped output is a gzip member of its own
    result = EncryptJob(zipped, contract, store, storages, chunk_rows=10, checkpoint_rows=20).run()
    assert result.outputs["encrypted"] == "out/in-encrypted.csv.gz" and result.keys_created == 0
    derived = DeriveJob(zipped, contract, store, storages, chunk_rows=10).run()
    assert derived.outputs["derived-2"] == "out/in-derived.csv.gz"
    encrypted_gz = (tmp_path / "out/in-encrypted.csv.gz").read_bytes()
    assert gzip.decompress(encrypted_gz) == (tmp_path / "out/in-encrypted.csv").read_bytes()
    assert encrypted_gz.count(b"\x1f\x8b\x08\x00\x00\x00\x00\x00") == 3  # parts of 20, 20 and 10 records
    assert (
        gzip.decompress((tmp_path / "out/in-derived.csv.gz").read_bytes())
        == (tmp_path / "out/in-derived-2.csv").read_bytes()
    )
    assert not (tmp_path / "out/.strm-parts").exists()


def test_a_parquet_output_cannot_be_checkpointed(tmp_path, store) -> None:
    write_source(tmp_path / "in.jsonl", "json_lines", SOURCE)
    config = load_batch_job_config(formats_config("in.jsonl", "json_lines", "parquet", "csv"))
    job = EncryptJob(config, load_data_contract(CONTRACT), store, lambda c: LocalStorage(tmp_path), checkpoint_rows=10)
    with pytest.raises(ConfigError, match="out/in-encrypted.parquet is Parquet, which cannot be committed in parts"):
        job.run()
    assert not (tmp_path / "out/in-encrypted.parquet").exists()


def test_json_lines_written_by_a_job_are_one_object_per_line(tmp_path, store) -> None:
    write_source(tmp_path / "in.jsonl", "json_lines", SOURCE[:2])
    config = load_batch_job_config(formats_config("in.jsonl", "json_lines", "json_lines", "json_lines"))
    EncryptJob(config, load_data_contract(CONTRACT), store, lambda c: LocalStorage(tmp_path)).run()
    lines = (tmp_path / "out/in-encrypted.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    assert len(lines) == 2 and list(first)[:4] == ["id", "email", "name", "ts"]
    assert first["strmMeta.eventContractRef"] == "h/n/1" and first["id"] == "u0"


def test_a_resumed_gzipped_json_lines_output_is_byte_identical_to_an_uninterrupted_one(tmp_path, store) -> None:
    contract = load_data_contract(CONTRACT)
    storages = lambda c: LocalStorage(tmp_path)  # noqa: E731

    def job(name: str) -> EncryptJob:
        doc = formats_config("in.jsonl", "json_lines", "json_lines", "csv")
        del doc["dead_letter"], doc["encryption_keys_data"]
        doc["encrypted_data"]["target"]["file_name"] = name
        config = load_batch_job_config(doc)
        return EncryptJob(config, contract, store, storages, chunk_rows=10, checkpoint_rows=20)

    write_source(tmp_path / "in.jsonl", "json_lines", SOURCE)
    job("whole.jsonl.gz").run()
    write_source(tmp_path / "in.jsonl", "json_lines", SOURCE[:34], {35: "[]"})  # fails after a checkpoint
    with pytest.raises(RecordError, match="row #35"):
        job("resumed.jsonl.gz").run()
    assert not (tmp_path / "out/resumed.jsonl.gz").exists()
    write_source(tmp_path / "in.jsonl", "json_lines", SOURCE)
    resumed = job("resumed.jsonl.gz").run()
    assert resumed.rows_resumed == 20 and resumed.rows_in == resumed.rows_out == 50
    assert (tmp_path / "out/resumed.jsonl.gz").read_bytes() == (tmp_path / "out/whole.jsonl.gz").read_bytes()


def test_a_gz_name_on_a_file_that_is_not_gzipped_fails_the_job_naming_it(tmp_path, store) -> None:
    write_source(tmp_path / "in.csv", "csv", SOURCE)
    (tmp_path / "in.csv").rename(tmp_path / "in.csv.gz")
    config = load_batch_job_config(formats_config("in.csv.gz", "csv", "csv", "csv"))
    job = EncryptJob(config, load_data_contract(CONTRACT), store, lambda c: LocalStorage(tmp_path))
    with pytest.raises(DataFormatError, match=r"in.csv.gz: cannot gunzip it .*Not a gzipped file"):
        job.run()
    assert store.job(job.job_id)["state"] == "ERROR"


@pytest.mark.parametrize(("src", "out", "gz"), [("json_lines", "json_lines", False), ("parquet", "csv", True)])
def test_worker_processes_write_json_lines_and_gzipped_csv_byte_identically(tmp_path, store, src, out, gz) -> None:
    source = f"in.{EXTENSION[src]}"
    write_source(tmp_path / source, src, SOURCE)
    doc = formats_config(source, src, out, out)
    if gz:
        doc["encrypted_data"]["target"]["data_type"] = {out: {"compression": "gzip"}}
        doc["derived_data"][0]["target"]["data_type"] = {out: {"compression": "gzip"}}
    config = load_batch_job_config(doc)
    contract = load_data_contract(CONTRACT)
    storages = lambda c: LocalStorage(tmp_path)  # noqa: E731
    outputs = []
    for workers in (1, 2):
        EncryptJob(config, contract, store, storages, chunk_rows=16, workers=workers).run()
        DeriveJob(config, contract, store, storages, chunk_rows=16, workers=workers).run()
        files = sorted(p for p in (tmp_path / "out").iterdir() if p.is_file())
        outputs.append(
            {p.name: gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes() for p in files}
        )
    assert outputs[1] == outputs[0]
    names = set(outputs[0])
    suffix = EXTENSION[out] + (".gz" if gz else "")
    assert {f"in-encrypted.{suffix}", f"in-derived-2.{suffix}", "in-keys.csv"} <= names


def _csv_bytes(rows: int) -> bytes:
    return ("id,v\r\n" + "".join(f"{i},value-{i}\r\n" for i in range(rows))).encode()


@pytest.mark.parametrize("fmt", ["csv (Arrow)", "csv (Python)", "json_lines", "parquet"])
def test_every_reader_takes_a_new_chunk_size_between_chunks(fmt: str) -> None:
    """A job may change ``chunk_rows`` after each chunk (EncryptJob does for files in no order): the next chunk
    has that many records, and no record is lost or repeated."""
    rows = 5000
    if fmt.startswith("csv"):
        data = _csv_bytes(rows)
        reopen = (lambda: io.BytesIO(data)) if fmt == "csv (Arrow)" else None
        reader = record_reader(io.BytesIO(data), chunk_rows=1000, reopen=reopen)
    elif fmt == "json_lines":
        text = "".join(json.dumps({"id": str(i), "v": f"value-{i}"}) + "\n" for i in range(rows))
        reader = jsonl(text, chunk_rows=1000)
    else:
        table = pa.table({"id": [str(i) for i in range(rows)], "v": [f"value-{i}" for i in range(rows)]})
        reader = ParquetRecordReader(io.BytesIO(parquet_bytes(table, row_group_size=700)), chunk_rows=1000)
    sizes, ids = [], []
    wanted = iter([300, 300, 50, 2000, 1000, 1000, 1000, 1000])
    for chunk in reader.chunks():
        sizes.append(len(chunk))
        ids += chunk.columns[0]
        reader.chunk_rows = next(wanted)
    assert sizes == [1000, 300, 300, 50, 2000, 1000, 350]
    assert ids == [str(i) for i in range(rows)]
    if fmt.startswith("csv"):
        assert reader.parser == ("arrow" if fmt == "csv (Arrow)" else "python")
