"""EncryptJob on local files: the STRM reference job, determinism, groups and bad records."""

from __future__ import annotations

import csv
import functools
import io
import random
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_checks import check_reference_outputs, reference_job

from airflow_provider_strm.core import encrypt as encrypt_module
from airflow_provider_strm.core.config import load_batch_job_config
from airflow_provider_strm.core.contract import load_data_contract
from airflow_provider_strm.core.encrypt import EncryptJob
from airflow_provider_strm.core.errors import RecordError
from airflow_provider_strm.core.keystore import KeyStore, new_kek
from airflow_provider_strm.core.seen import SeenSet
from airflow_provider_strm.core.storage import LocalStorage


@pytest.fixture
def bucket(tmp_path: Path) -> Path:
    root = tmp_path / "bucket"
    root.mkdir()
    return root


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    ks = KeyStore(f"sqlite:///{tmp_path / 'keys.db'}", new_kek())
    ks.ensure_schema()
    return ks


def test_the_strm_reference_job_runs_unchanged_on_local_files(strm_reference, strm_vectors, bucket, store) -> None:
    result = reference_job(strm_reference, bucket, store, chunk_rows=4096).run()
    assert result.state == "FINISHED"
    assert result.rows_in == result.rows_out == 19_998
    assert result.keys_created == store.count_keys() > 0
    check_reference_outputs(
        strm_reference / "uci_online_retail.csv",
        (bucket / "uci_online_retail/encrypted.csv").read_bytes(),
        (bucket / "uci_online_retail/keys.csv").read_bytes(),
        strm_vectors,
    )
    states = [s["state"] for s in store.job(result.job_id)["states"]]
    # exactly PENDING → STARTED → RUNNING… → FINISHED
    assert states[:3] == ["PENDING", "STARTED", "RUNNING"] and states[-1] == "FINISHED"
    assert set(states[2:-1]) == {"RUNNING"}
    assert store.job(result.job_id)["state"] == "FINISHED"
    assert result.message and result.message.startswith("Processed 19998 records in ")


def test_the_same_file_twice_gives_byte_identical_outputs_and_no_new_keys(strm_reference, bucket, store) -> None:
    reference_job(strm_reference, bucket, store).run()
    first = {p: (bucket / p).read_bytes() for p in ("uci_online_retail/encrypted.csv", "uci_online_retail/keys.csv")}
    keys_before = store.count_keys()
    again = reference_job(strm_reference, bucket, store, chunk_rows=777).run()
    assert again.keys_created == 0 and store.count_keys() == keys_before
    for path, data in first.items():
        assert (bucket / path).read_bytes() == data


def test_two_files_of_one_group_share_keys_for_the_same_value_and_day(strm_reference, bucket, store) -> None:
    lines = (strm_reference / "uci_online_retail.csv").read_bytes().split(b"\n")
    (bucket / "a.csv").write_bytes(b"\n".join(lines[:3000]) + b"\n")
    (bucket / "b.csv").write_bytes(b"\n".join([lines[0], *lines[2000:5000]]) + b"\n")
    config = load_batch_job_config(
        strm_reference / "batch-job-config.json",
        {
            "encrypted_data.target.file_name": "{stem}.enc.csv",
            "encryption_keys_data.target.file_name": "{stem}.keys.csv",
        },
    )
    contract = load_data_contract(strm_reference / "online-retail-contract.json")
    jobs = [
        EncryptJob(config, contract, store, lambda c: LocalStorage(bucket), source_path=f) for f in ("a.csv", "b.csv")
    ]
    first, second = (job.run() for job in jobs)
    assert first.keys_created > 0 and second.keys_reused > 0
    enc_a = (bucket / "a.enc.csv").read_bytes().split(b"\r\n")
    enc_b = (bucket / "b.enc.csv").read_bytes().split(b"\r\n")
    # source rows 2000..2999 are in both files: identical encrypted lines (same keyLink, same ciphertext)
    assert enc_a[2000:3000] == enc_b[1:1001]


def test_a_malformed_timestamp_fails_naming_row_value_and_pattern_and_writes_nothing(bucket, store) -> None:
    (bucket / "in.csv").write_text("id,ts\n1,2010-12-01 08:26:00\n2,2010/12/01 08:26\n")
    config = load_batch_job_config(
        {
            "source_data": {"file_name": "in.csv"},
            "encryption": {"timestamp_config": {"field": "ts", "format": "yyyy-MM-dd HH:mm:ss"}},
            "event_contract_ref": {"handle": "h", "name": "n", "version": "1"},
            "encrypted_data": {"target": {"path_prefix": "out"}},
            "encryption_keys_data": {"target": {"path_prefix": "out"}},
        }
    )
    contract = load_data_contract({"keyField": "id", "piiFields": {"id": 1}})
    job = EncryptJob(config, contract, store, lambda c: LocalStorage(bucket))
    with pytest.raises(RecordError) as err:
        job.run()
    assert err.value.row == 2
    assert "Invalid timestamp [2010/12/01 08:26 does not match yyyy-MM-dd HH:mm:ss] in row #2" in str(err.value)
    assert not (bucket / "out").exists() or list((bucket / "out").iterdir()) == []
    record = store.job(job.job_id)
    assert [s["state"] for s in record["states"]] == ["PENDING", "STARTED", "RUNNING", "ERROR"]
    assert "in row #2" in record["states"][-1]["message"]


def test_a_consent_function_replaces_strms_extraction(bucket, store) -> None:
    (bucket / "in.csv").write_text(
        "id,ts,marketing,analytics\na,2026-11-20T10:00:00Z,yes,no\nb,2026-11-20T10:00:00Z,yes,yes\n"
    )
    config = load_batch_job_config(
        {
            "source_data": {"file_name": "in.csv"},
            "encryption": {"timestamp_config": {"field": "ts"}},
            "event_contract_ref": {"handle": "h", "name": "n", "version": "1"},
            "encrypted_data": {"target": {"file_name": "out.csv"}},
        }
    )

    def consent(record):  # type: ignore[no-untyped-def]
        return [level for level, col in ((1, "marketing"), (2, "analytics")) if record[col] == "yes"]

    contract = load_data_contract({"keyField": "id", "piiFields": {"id": 1}})
    EncryptJob(config, contract, store, lambda c: LocalStorage(bucket), consent_function=consent).run()
    rows = (bucket / "out.csv").read_text().splitlines()
    assert rows[1].endswith('"[1]"') and rows[2].endswith('"[1,2]"')


def test_running_jobs_report_progress_on_a_clock(strm_reference, bucket, store, monkeypatch) -> None:
    from airflow_provider_strm.core import job as job_module

    monkeypatch.setattr(job_module, "PROGRESS_EVERY_S", 0.0)  # every chunk is "10 s later"
    result = reference_job(strm_reference, bucket, store, chunk_rows=5000).run()
    messages = [s["message"] for s in store.job(result.job_id)["states"] if s["state"] == "RUNNING"]
    progress = [m for m in messages if m and m.startswith("Processed ") and "records/s" not in m]
    assert [m.split(" records")[0] for m in progress] == [f"Processed {n}" for n in (5000, 10000, 15000, 19998)]


@pytest.mark.parametrize("first_workers", [1, 2])
def test_worker_processes_and_a_tiny_key_cache_give_byte_identical_outputs(
    strm_reference, bucket, store, first_workers, tmp_path, monkeypatch
) -> None:
    """The fast paths (worker processes, the job's key cache) change no byte of any output.

    The first run creates the keys, the others reuse them: the simple path (1 process, no
    cache to speak of, small chunks) and the fast path must then write the same bytes.
    Worker processes hand their chunks over in spool files: none is left behind.
    """
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    paths = ("uci_online_retail/encrypted.csv", "uci_online_retail/keys.csv")
    first = reference_job(strm_reference, bucket, store, workers=first_workers).run()
    expected = {p: (bucket / p).read_bytes() for p in paths}
    runs = [
        {"workers": 1, "key_cache_size": 1, "chunk_rows": 999},
        {"workers": 2, "chunk_rows": 1500},
        {"workers": 3, "key_cache_size": 10, "chunk_rows": 4096},
    ]
    for kwargs in runs:
        again = reference_job(strm_reference, bucket, store, **kwargs).run()
        assert again.rows_out == first.rows_out == 19_998 and again.keys_created == 0, kwargs
        for path in paths:
            assert (bucket / path).read_bytes() == expected[path], (kwargs, path)
    assert not any((tmp_path / "tmp").iterdir())


@pytest.mark.parametrize("workers", [1, 2])
def test_the_keys_file_lists_each_new_key_once_in_first_use_order_when_its_seen_set_spills(
    strm_reference, bucket, store, workers, monkeypatch
) -> None:
    """Keys made for a chunk skip the seen set's disk look-up; a key reused from the job's cache in a later
    chunk must still be found there, however few of the seen links stay in memory."""
    monkeypatch.setattr(encrypt_module, "SeenSet", functools.partial(SeenSet, memory_limit=3))
    result = reference_job(strm_reference, bucket, store, chunk_rows=500, workers=workers).run()
    assert result.keys_created == store.count_keys() > 0 and result.keys_reused > 0
    encrypted = list(csv.DictReader(io.StringIO((bucket / "uci_online_retail/encrypted.csv").read_text())))
    keys = list(csv.DictReader(io.StringIO((bucket / "uci_online_retail/keys.csv").read_text())))
    assert [k["keyLink"] for k in keys] == list(dict.fromkeys(r["strmMeta.keyLink"] for r in encrypted))


@pytest.mark.parametrize("first_workers", [1, 2])
def test_with_bad_records_in_some_chunks_worker_processes_still_write_the_keys_file_of_one_process(
    strm_reference, bucket, store, first_workers, monkeypatch
) -> None:
    """A chunk without bad records has its keys new to the file picked when it goes to a worker (which writes
    their lines); a chunk with some goes as it is and its worker's keys are picked when it comes back, and so
    are those of every chunk that went after it before it came back. Interleaved, all that writes the keys
    file (and the other outputs) byte for byte as one process does, whether the keys are created or reused."""
    lines = (strm_reference / "uci_online_retail.csv").read_bytes().split(b"\n")
    for row in (1200, 1201, 4500, 9100, 9900, 15000):  # chunks of 1000 records: some have bad records
        lines[row] = lines[row].replace(b"2010-", b"20X0-", 1)
    overrides = {"dead_letter": {"target": {"path_prefix": "dead"}, "max_bad_records": 100}}
    paths = ("uci_online_retail/encrypted.csv", "uci_online_retail/keys.csv")
    written_here: list[int] = []  # keys-file lines of planned chunks made in this process (not by a worker)
    real = encrypt_module.write_keys

    def spy(writer, keys):  # type: ignore[no-untyped-def]
        written_here.append(len(keys))
        return real(writer, keys)

    monkeypatch.setattr(encrypt_module, "write_keys", spy)

    def run(workers: int) -> dict[str, bytes]:
        job = reference_job(strm_reference, bucket, store, chunk_rows=1000, workers=workers, overrides=overrides)
        (bucket / "uci_online_retail.csv").write_bytes(b"\n".join(lines))
        result = job.run()
        assert result.rows_in == 19_998 and result.dead_lettered == 6 and result.rows_out == 19_992
        return {p: (bucket / p).read_bytes() for p in paths}

    first = run(first_workers)
    assert first == run(3 - first_workers)
    keys = list(csv.DictReader(io.StringIO(first[paths[1]].decode())))
    encrypted = list(csv.DictReader(io.StringIO(first[paths[0]].decode())))
    assert [k["keyLink"] for k in keys] == list(dict.fromkeys(r["strmMeta.keyLink"] for r in encrypted))
    written_here.clear()
    assert run(2) == first
    # 20 chunks, 4 with bad records: only the planned chunks that went before such a chunk came back
    assert 0 < len(written_here) < 16, written_here
    written_here.clear()
    assert reference_job(strm_reference, bucket, store, chunk_rows=1000, workers=2).run().rows_out == 19_998
    assert written_here == [], "no bad records: each chunk's new keys are picked as it goes, its worker writes them"
    assert run(1) == first and len(written_here) == 20, "one process: every chunk' new keys written as it goes"


def test_a_file_in_no_order_is_cut_in_smaller_chunks_that_change_no_byte(
    strm_reference, bucket, store, monkeypatch
) -> None:
    """Chunks hold about CHUNK_ENTITIES key-field values, so a file whose rows are in no order keeps an ordered file's
    memory per chunk. One process and worker processes cut a file alike; how it is cut changes no byte of the
    outputs; a job that keeps checkpoints keeps its chunks of chunk_rows (checkpoints fall between them)."""
    lines = (strm_reference / "uci_online_retail.csv").read_bytes().split(b"\n")
    rows = [line for line in lines[1:] if line]
    random.Random(6).shuffle(rows)
    paths = ("uci_online_retail/encrypted.csv", "uci_online_retail/keys.csv")

    def run(**kwargs):  # type: ignore[no-untyped-def]
        job = reference_job(strm_reference, bucket, store, chunk_rows=2000, **kwargs)
        (bucket / "uci_online_retail.csv").write_bytes(b"\n".join([lines[0], *rows, b""]))
        result = job.run()
        return result, {p: (bucket / p).read_bytes() for p in paths}

    monkeypatch.setattr(encrypt_module, "CHUNK_ENTITIES", 10**9)  # chunks of 2000 records: these create the keys
    first, expected = run()
    monkeypatch.setattr(encrypt_module, "CHUNK_ENTITIES", 60)
    monkeypatch.setattr(encrypt_module, "MIN_CHUNK_ROWS", 20)
    asked: list[tuple[int, int, int | None]] = []  # per chunk: records, key-field values, records asked of the next
    real = EncryptJob.next_chunk_rows

    def spy(self, chunk):  # type: ignore[no-untyped-def]
        rows = real(self, chunk)
        values = 0 if chunk is None else len(set(chunk.columns[self._key_idx]))
        asked.append((0 if chunk is None else len(chunk), values, rows))
        return rows

    monkeypatch.setattr(EncryptJob, "next_chunk_rows", spy)
    cuts = []
    for workers in (1, 2):
        asked.clear()
        again, outputs = run(workers=workers)
        assert again.rows_out == first.rows_out == 19_998 and again.keys_created == 0
        assert outputs == expected, workers
        cuts.append((list(asked), again.keys_reused))
    assert cuts[0] == cuts[1], "one process and worker processes cut the file alike (and so count alike)"
    (_, _, first_rows), *chunks = cuts[0][0]
    assert first_rows == 60 and chunks[0][0] == 60, "the first chunk holds at most CHUNK_ENTITIES records"
    assert sum(n for n, _, _ in chunks) == 19_998 and max(n for n, _, _ in chunks) < 500  # not 2000
    assert all(40 <= values <= 90 for n, values, _ in chunks[1:-1]), "about CHUNK_ENTITIES values a chunk"
    asked.clear()
    checkpointed, outputs = run(checkpoint_rows=4000)
    assert outputs == expected and asked == [] and checkpointed.rows_out == 19_998


def test_worker_processes_are_stopped_when_a_job_fails(strm_reference, bucket, store, tmp_path, monkeypatch) -> None:
    lines = (strm_reference / "uci_online_retail.csv").read_bytes().split(b"\n")
    lines[3000] = lines[3000].replace(b",", b";", 3)  # a record with the wrong number of columns
    (bucket / "uci_online_retail.csv").write_bytes(b"\n".join(lines))
    config = load_batch_job_config(strm_reference / "batch-job-config.json")
    contract = load_data_contract(strm_reference / "online-retail-contract.json")
    job = EncryptJob(config, contract, store, lambda conn_id: LocalStorage(bucket), workers=2, chunk_rows=1000)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    with pytest.raises(RecordError, match="row #3000"):
        job.run()
    assert job._pools == []  # shut down, no orphaned processes
    assert not any((tmp_path / "tmp").iterdir()), "chunks spooled by workers are deleted"
    assert not (bucket / "uci_online_retail/encrypted.csv").exists()


def _record_by_record(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Make every job read with Python's csv module: the simple path, one record at a time."""
    from airflow_provider_strm.core import job as job_module

    plain = job_module.record_reader
    monkeypatch.setattr(job_module, "record_reader", lambda *a, **kw: plain(*a, **{**kw, "reopen": None}))


def test_the_columnar_fast_path_writes_exactly_the_bytes_of_the_record_by_record_path(
    strm_reference, bucket, store, monkeypatch
) -> None:
    paths = ("uci_online_retail/encrypted.csv", "uci_online_retail/keys.csv")
    fast = reference_job(strm_reference, bucket, store, chunk_rows=3000)
    fast.run()
    assert fast.reader_parser == "arrow"
    expected = {p: (bucket / p).read_bytes() for p in paths}
    for p in paths:
        (bucket / p).unlink()
    _record_by_record(monkeypatch)
    simple = reference_job(strm_reference, bucket, store, chunk_rows=3000)
    simple.run()
    assert simple.reader_parser == "python"
    for p in paths:
        assert (bucket / p).read_bytes() == expected[p], p


_text = st.text(st.characters(codec="utf-8", exclude_characters="\r\x00"), max_size=6)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["", "a", "b", "ü", 'q"x']),  # key field: few entities, an empty one among them
            st.sampled_from(
                ["2026-11-20 23:59:59", "2026-11-21 00:00:00", "2024-02-29 12:00:00", "0001-01-01 00:00:00"]
            ),
            st.sampled_from(["", "[1,2]", "2", "x", "[]", "[0,1]"]),
            _text,
            _text,
        ),
        min_size=1,
        max_size=40,
    ),
    st.integers(1, 7),
)
def test_fast_and_simple_paths_agree_on_any_records(tmp_path_factory, records, chunk_rows) -> None:
    """Repeated and empty values, quotes, non-ASCII, several entities per chunk and per value: same bytes."""
    import csv
    import io

    from airflow_provider_strm.core import job as job_module

    root = tmp_path_factory.mktemp("prop")
    store = KeyStore(f"sqlite:///{root / 'keys.db'}", new_kek())
    store.ensure_schema()
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "ts", "consent", "name", "note"])
    writer.writerows(records)
    (root / "in.csv").write_bytes(buf.getvalue().encode())
    config = load_batch_job_config(
        {
            "source_data": {"file_name": "in.csv"},
            "consent": {"default_consent_levels": [0], "consent_level_extractor": {"field": "consent"}},
            "encryption": {"timestamp_config": {"field": "ts", "format": "yyyy-MM-dd HH:mm:ss"}},
            "event_contract_ref": {"handle": "h", "name": "n", "version": "1"},
            "encrypted_data": {"target": {"file_name": "out.csv"}},
            "encryption_keys_data": {"target": {"file_name": "keys.csv"}},
        }
    )
    contract = load_data_contract(
        {"keyField": "id", "dataSubjectField": "name", "piiFields": {"id": 1, "name": 1, "note": 2}}
    )
    outputs = []
    plain = job_module.record_reader
    for reopen in (True, False):
        job_module.record_reader = plain if reopen else (lambda *a, **kw: plain(*a, **{**kw, "reopen": None}))
        try:
            job = EncryptJob(config, contract, store, lambda c: LocalStorage(root), chunk_rows=chunk_rows)
            result = job.run()
        finally:
            job_module.record_reader = plain
        assert job.reader_parser == ("arrow" if reopen else "python")
        assert result.rows_out == len(records)
        outputs.append(((root / "out.csv").read_bytes(), (root / "keys.csv").read_bytes()))
    assert outputs[0] == outputs[1]


def test_encrypting_an_arrow_parsed_file_does_not_import_pandas(strm_reference, bucket, tmp_path) -> None:
    """pa.array imports pandas (seconds and tens of MB per task) to check its argument: no path of a job uses it."""
    import subprocess
    import sys

    shutil.copy(strm_reference / "uci_online_retail.csv", bucket / "uci_online_retail.csv")
    script = f"""
import sys
from airflow_provider_strm.core.config import load_batch_job_config
from airflow_provider_strm.core.contract import load_data_contract
from airflow_provider_strm.core.encrypt import EncryptJob
from airflow_provider_strm.core.keystore import KeyStore, new_kek
from airflow_provider_strm.core.storage import LocalStorage

config = load_batch_job_config({str(strm_reference / "batch-job-config.json")!r})
contract = load_data_contract({str(strm_reference / "online-retail-contract.json")!r})
store = KeyStore({f"sqlite:///{tmp_path / 'keys.db'}"!r}, new_kek())
store.ensure_schema()
result = EncryptJob(config, contract, store, lambda c: LocalStorage({str(bucket)!r}), workers=2).run()
assert result.rows_out == 19_998 and result.keys_created > 0
# and in this process (the keys now exist)
result = EncryptJob(config, contract, store, lambda c: LocalStorage({str(bucket)!r})).run()
assert result.rows_out == 19_998 and result.keys_reused > 0
# and a plain numeric pattern, which Arrow parses
open({str(bucket / "plain.csv")!r}, "w").write("id,ts\\na,2026-11-20 10:00:00\\nb,2026-02-30 10:00:00\\n")
plain = load_batch_job_config({{
    "source_data": {{"file_name": "plain.csv"}},
    "encryption": {{"timestamp_config": {{"field": "ts", "format": "yyyy-MM-dd HH:mm:ss"}}}},
    "event_contract_ref": {{"handle": "h", "name": "n", "version": "1"}},
    "encrypted_data": {{"target": {{"file_name": "plain-out.csv"}}}},
    "dead_letter": {{"target": {{"file_name": "plain-dead.csv"}}}},
}})
out = EncryptJob(plain, load_data_contract({{"keyField": "id", "piiFields": {{"id": 1}}}}), store,
                 lambda c: LocalStorage({str(bucket)!r})).run()
assert out.rows_out == 1 and out.dead_lettered == 1, out
print("pandas" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
    assert (bucket / "uci_online_retail/keys.csv").exists()


@given(ids=st.lists(st.integers(min_value=1, max_value=2**32 - 1), max_size=20))
def test_a_chunks_keys_reach_a_worker_process_as_they_are(ids: list[int]) -> None:
    # they are pickled as one array of ids and one string of key bytes, and built again on the other side
    import pickle

    import numpy as np

    from airflow_provider_strm.core.crypto import Keyset

    keysets = [Keyset(i, bytes([n % 256]) * 64) for n, i in enumerate(ids)]
    n = np.arange(len(ids))
    plan = encrypt_module._ChunkKeys(n, n, [f"l{i}" for i in ids], keysets)
    back = pickle.loads(pickle.dumps(plan))
    assert back.keysets == keysets and back.links == plan.links
    assert back.stamps.tolist() == plan.stamps.tolist() and back.entity_of.tolist() == plan.entity_of.tolist()
