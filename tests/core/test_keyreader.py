"""A job's worker processes read the key store on the database's own driver, without SQLAlchemy."""

from __future__ import annotations

import csv
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_strm.core.config import load_batch_job_config
from airflow_provider_strm.core.contract import load_data_contract
from airflow_provider_strm.core.derive import DeriveJob
from airflow_provider_strm.core.encrypt import EncryptJob
from airflow_provider_strm.core.keyreader import LINK_BATCH, WorkerKeyStore, open_worker_store
from airflow_provider_strm.core.keystore import KeyStore, new_kek
from airflow_provider_strm.core.storage import LocalStorage

DAY = 86_400_000
UNKNOWN = "00000000-0000-0000-0000-000000000000"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_worker_process_store_reads_what_the_key_store_reads(tmp_path, backend, request) -> None:
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else f"sqlite:///{tmp_path / 'k.db'}"
    store = KeyStore(url, new_kek())
    store.ensure_schema()
    created = store.get_or_create("g", [(f"v{i}", DAY * (i % 3)) for i in range(LINK_BATCH + 500)])
    links = sorted(k.key_link for k in created.values())
    store.link_subjects("g", [("alice", links[0]), ("alice", links[1]), ("bob", links[2])])
    store.forget_subjects("g", ["alice"])

    worker = open_worker_store(store.worker_spec())

    assert isinstance(worker, WorkerKeyStore)
    found = worker.keysets_by_link([*links, UNKNOWN, links[5]])
    assert found == store.keysets_by_link(links)
    assert set(found) == set(links[2:])  # alice's two keys are gone, the unknown link is absent
    assert worker.removed([*links, UNKNOWN]) == store.removed(links) == {links[0]: "forgotten", links[1]: "forgotten"}
    assert worker.keysets_by_link([]) == {} and worker.removed([]) == {}
    assert worker.subject_digester("g")("carol") == store.subject_digester("g")("carol")
    assert worker.digest("g", "v1") == store.digest("g", "v1")
    if backend == "postgresql":  # no transaction held open between a job's chunks
        import psycopg2.extensions

        assert worker._connection.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_IDLE
    # what a reader does not do (the record-by-record path creates keys in the worker) goes to the full store
    again = worker.get_or_create("g", [("v1", DAY)])
    assert again[("v1", DAY)].key_link == created[("v1", DAY)].key_link and not again[("v1", DAY)].created


def test_a_store_whose_driver_is_not_read_directly_gives_workers_the_full_key_store(tmp_path) -> None:
    store = KeyStore(f"sqlite:///{tmp_path / 'k.db'}", new_kek())
    spec = {**store.worker_spec(), "driver": None}
    assert isinstance(open_worker_store(spec), KeyStore)


def test_a_worker_process_builds_its_job_and_reads_keys_without_importing_sqlalchemy(strm_reference, tmp_path) -> None:
    """What a worker process runs: it unpickles its job's spec, builds the job and reads keys."""
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    shutil.copy(strm_reference / "uci_online_retail.csv", bucket)
    config = load_batch_job_config(strm_reference / "batch-job-config.json")
    contract = load_data_contract(strm_reference / "online-retail-contract.json")
    storages = lambda conn_id: LocalStorage(bucket)  # noqa: E731
    store = KeyStore(f"sqlite:///{tmp_path / 'keys.db'}", new_kek())
    store.ensure_schema()
    encrypt = EncryptJob(config, contract, store, storages, workers=2)
    encrypt.run()
    derive = DeriveJob(config, contract, store, storages, workers=2)
    encrypt.check_header(_header(bucket / "uci_online_retail.csv"))
    derive.check_header(_header(bucket / "uci_online_retail/encrypted.csv"))
    links = sorted({k.key_link for k in store.export_keys(encrypt.group_id)})[:50]
    specs = tmp_path / "specs.pickle"
    specs.write_bytes(pickle.dumps((encrypt.worker_spec(), derive.worker_spec(), links)))
    script = f"""
import pickle, sys
encrypt, derive, links = pickle.loads(open({str(specs)!r}, "rb").read())
digest = encrypt.build().key_store.subject_digester({encrypt.group_id!r})("alice")
found = derive.build().lookup(links)
print(digest, len(found), "sqlalchemy" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    assert out == [store.subject_digester(encrypt.group_id)("alice"), str(len(links)), "False"]


def _header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        return next(csv.reader(f))


def test_derive_workers_are_refused_an_in_memory_key_store(tmp_path: Path, strm_reference) -> None:
    config = load_batch_job_config(strm_reference / "batch-job-config.json")
    contract = load_data_contract(strm_reference / "online-retail-contract.json")
    store = KeyStore("sqlite://", new_kek())
    job = DeriveJob(config, contract, store, lambda conn_id: LocalStorage(tmp_path), workers=2)
    assert job.parallel_reason() == "worker processes cannot read an in-memory SQLite key store (use a database file)"
    assert not KeyStore(f"sqlite:///{tmp_path / 'k.db'}", new_kek()).in_memory
