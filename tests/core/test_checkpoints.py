"""A worker killed mid-file: no partial output, the retry resumes after the last committed part,
and the outputs are byte-identical to an uninterrupted run."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from reference_checks import parse_csv

from airflow_provider_strm.core.config import load_batch_job_config
from airflow_provider_strm.core.contract import load_data_contract
from airflow_provider_strm.core.encrypt import EncryptJob
from airflow_provider_strm.core.errors import RecordError, StrmError
from airflow_provider_strm.core.keystore import KeyStore, new_kek
from airflow_provider_strm.core.storage import LocalStorage

CHUNK, CHECKPOINT = 5_000, 20_000

RUNNER = """
import sys
from airflow_provider_strm.core.config import load_batch_job_config
from airflow_provider_strm.core.contract import load_data_contract
from airflow_provider_strm.core.encrypt import EncryptJob
from airflow_provider_strm.core.errors import RecordError, StrmError
from airflow_provider_strm.core.keystore import KeyStore
from airflow_provider_strm.core.storage import LocalStorage
ref, bucket, url, kek = sys.argv[1:5]
store = KeyStore(url, kek)
store.ensure_schema()
config = load_batch_job_config(ref + "/batch-job-config.json", {{"source_data.file_name": "big.csv"}})
contract = load_data_contract(ref + "/online-retail-contract.json")
EncryptJob(config, contract, store, lambda c: LocalStorage(bucket), chunk_rows={chunk}, checkpoint_rows={ckpt}).run()
"""


def job(strm_reference: Path, bucket: Path, store: KeyStore, prefix: str | None = None) -> EncryptJob:
    overrides = {"source_data.file_name": "big.csv"}
    if prefix:
        overrides |= {
            "encrypted_data.target.file_name": f"{prefix}/encrypted.csv",
            "encryption_keys_data.target.file_name": f"{prefix}/keys.csv",
        }
    config = load_batch_job_config(strm_reference / "batch-job-config.json", overrides)
    contract = load_data_contract(strm_reference / "online-retail-contract.json")
    return EncryptJob(
        config, contract, store, lambda c: LocalStorage(bucket), chunk_rows=CHUNK, checkpoint_rows=CHECKPOINT
    )


def test_a_killed_job_resumes_and_ends_byte_identical(strm_reference, tmp_path) -> None:
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    lines = (strm_reference / "uci_online_retail.csv").read_bytes().rstrip(b"\n").split(b"\n")
    (bucket / "big.csv").write_bytes(b"\n".join([lines[0], *(lines[1:] * 5)]) + b"\n")  # 99,990 records
    url, kek = f"sqlite:///{tmp_path / 'keys.db'}", new_kek()
    KeyStore(url, kek).ensure_schema()
    script = tmp_path / "runner.py"
    script.write_text(textwrap.dedent(RUNNER.format(chunk=CHUNK, ckpt=CHECKPOINT)))
    child = subprocess.Popen([sys.executable, str(script), str(strm_reference), str(bucket), url, kek])
    deadline = time.monotonic() + 120
    part = 0
    while time.monotonic() < deadline and child.poll() is None:
        with sqlite3.connect(tmp_path / "keys.db", timeout=30) as db:
            row = db.execute("SELECT part FROM strm_checkpoints").fetchone()
        part = row[0] if row else 0
        if part >= 2:
            break
        time.sleep(0.05)
    assert child.poll() is None, "the job ended before it could be killed"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert part >= 2

    # nothing at the targets, only the committed parts in the hidden folder
    out = bucket / "uci_online_retail"
    assert sorted(p.name for p in out.iterdir()) == [".strm-parts"]
    store = KeyStore(url, kek)
    store.ensure_schema()
    keys_before = store.count_keys()

    resumed = job(strm_reference, bucket, store).run()
    assert resumed.state == "FINISHED"
    assert resumed.rows_resumed >= 2 * CHECKPOINT, "committed parts are not processed again"
    assert resumed.rows_in == resumed.rows_out == 99_990
    assert not (out / ".strm-parts").exists() or not any((out / ".strm-parts").rglob("*"))
    keys_after = store.count_keys()
    assert keys_after >= keys_before

    clean = job(strm_reference, bucket, store, prefix="clean").run()
    assert clean.keys_created == 0 and store.count_keys() == keys_after, "no key is duplicated"
    assert (out / "encrypted.csv").read_bytes() == (bucket / "clean/encrypted.csv").read_bytes()
    assert (out / "keys.csv").read_bytes() == (bucket / "clean/keys.csv").read_bytes()
    assert len(parse_csv((out / "encrypted.csv").read_bytes())) == 99_991


def test_a_changed_input_is_not_resumed_and_the_next_run_starts_over(strm_reference, tmp_path) -> None:
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    lines = (strm_reference / "uci_online_retail.csv").read_bytes().rstrip(b"\n").split(b"\n")
    broken = [lines[0], *(lines[1:] * 2)]
    broken[25_000] = broken[25_000].replace(b"-", b"/", 2)  # fails after the first checkpoint (20,000)
    (bucket / "big.csv").write_bytes(b"\n".join(broken) + b"\n")
    store = KeyStore(f"sqlite:///{tmp_path / 'keys.db'}", new_kek())
    store.ensure_schema()
    with pytest.raises(RecordError, match="row #25000"):
        job(strm_reference, bucket, store).run()
    # the file is replaced by another one before the re-run: the checkpoint must not be trusted
    (bucket / "big.csv").write_bytes(b"\n".join([lines[0], *lines[4001:], *lines[1:8001]]) + b"\n")
    with pytest.raises(StrmError, match="changed since the checkpoint"):
        job(strm_reference, bucket, store).run()
    result = job(strm_reference, bucket, store).run()
    assert result.rows_resumed == 0 and result.rows_in == result.rows_out == 23_998
