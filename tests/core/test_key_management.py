"""Key management beyond STRM: KEK providers and rotation, forgetting subjects, retention, export, hygiene."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from reference_checks import parse_csv

from airflow_provider_strm.core.config import load_batch_job_config
from airflow_provider_strm.core.contract import load_data_contract
from airflow_provider_strm.core.derive import DeriveJob
from airflow_provider_strm.core.encrypt import EncryptJob
from airflow_provider_strm.core.errors import KeyStoreError
from airflow_provider_strm.core.kek import AwsKmsKek, GcpKmsKek, LocalKek, aead_unwrap, aead_wrap
from airflow_provider_strm.core.keystore import KeyStore, keys_table, metadata, new_kek, subject_keys_table
from airflow_provider_strm.core.storage import LocalStorage

GROUP = "7824e975-20e1-4995-b129-2f9582728ca5"
DAY = 86_400_000


class Reference:
    """The STRM reference job on local files with a given key store."""

    def __init__(self, strm_reference: Path, root: Path, store: KeyStore, **overrides: Any) -> None:
        self.root = root
        root.mkdir(exist_ok=True)
        shutil.copy(strm_reference / "uci_online_retail.csv", root)
        self.config = load_batch_job_config(strm_reference / "batch-job-config.json", overrides or None)
        self.contract = load_data_contract(strm_reference / "online-retail-contract.json")
        self.store = store

    def storages(self, conn_id: str | None) -> LocalStorage:
        return LocalStorage(self.root)

    def encrypt(self):  # type: ignore[no-untyped-def]
        return EncryptJob(self.config, self.contract, self.store, self.storages).run()

    def derive(self):  # type: ignore[no-untyped-def]
        result = DeriveJob(self.config, self.contract, self.store, self.storages).run()
        return result, parse_csv((self.root / "uci_online_retail/decrypted-0.csv").read_bytes())


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    ks = KeyStore(f"sqlite:///{tmp_path / 'keys.db'}", new_kek())
    ks.ensure_schema()
    return ks


def all_cells(store: KeyStore) -> list[bytes]:
    cells: list[bytes] = []
    with store.engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(sa.select(table)):
                for value in row:
                    if isinstance(value, bytes):
                        cells.append(value)
                    elif value is not None:
                        cells.append(
                            json.dumps(value).encode() if isinstance(value, (dict, list)) else str(value).encode()
                        )
    return cells


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_no_key_bytes_and_no_raw_identifier_is_stored_anywhere(strm_reference, tmp_path, backend, request) -> None:
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else f"sqlite:///{tmp_path / 'k.db'}"
    store = KeyStore(url, new_kek())
    store.ensure_schema()
    job = Reference(strm_reference, tmp_path / "bucket", store)
    job.encrypt()
    keys = list(store.export_keys(GROUP))
    assert keys
    cells = all_cells(store)
    needles: list[bytes] = []
    for key in keys:
        raw = key.keyset.key_bytes
        needles += [raw, base64.b64encode(raw), base64.b64encode(b"\x12\x40" + raw), raw.hex().encode()]
    customer_ids = {r[6] for r in parse_csv((strm_reference / "uci_online_retail.csv").read_bytes())[1:] if r[6]}
    for cell in cells:
        assert not any(n in cell for n in needles), "key material in the key store"
        assert cell.decode("latin-1") not in customer_ids, "a raw CustomerID in the key store"


def test_kek_rotation_rewraps_every_key_and_old_ciphertexts_still_decrypt(strm_reference, tmp_path) -> None:
    url, old = f"sqlite:///{tmp_path / 'keys.db'}", new_kek()
    store = KeyStore(url, old)
    store.ensure_schema()
    job = Reference(strm_reference, tmp_path / "bucket", store)
    job.encrypt()
    _, before = job.derive()
    with store.engine.connect() as conn:
        blobs_before = dict(conn.execute(sa.select(keys_table.c.key_link, keys_table.c.wrapped_keyset)).all())
    new = new_kek()
    assert store.rotate_kek(new) == len(blobs_before)
    with store.engine.connect() as conn:
        blobs_after = dict(conn.execute(sa.select(keys_table.c.key_link, keys_table.c.wrapped_keyset)).all())
    assert blobs_after.keys() == blobs_before.keys()
    assert all(blobs_after[k] != blobs_before[k] for k in blobs_before), "every wrapped blob changed"
    reopened = KeyStore(url, new)
    reopened.ensure_schema()
    job.store = reopened
    (tmp_path / "bucket/uci_online_retail/decrypted-0.csv").unlink()
    _, after = job.derive()
    assert after == before
    with pytest.raises(KeyStoreError, match="wrong KEK"):
        KeyStore(url, old).ensure_schema()
    assert reopened.audit_log()[-1]["action"] == "rotate_kek"


def test_forgetting_a_subject_shreds_only_their_keys(strm_reference, tmp_path, store) -> None:
    job = Reference(strm_reference, tmp_path / "bucket", store)
    job.encrypt()
    _, before = job.derive()
    counts = store.forget_subjects(GROUP, ["17850"], actor="dpo@example.com")
    assert counts["subjects"] == 1 and counts["keys_deleted"] >= 1
    (tmp_path / "bucket/uci_online_retail/decrypted-0.csv").unlink()
    result, after = job.derive()
    forgotten_rows = [r for r in before[1:] if r[6] == "17850"]
    assert result.excluded_by_reason == {"forgotten": len(forgotten_rows)}
    assert after == [before[0]] + [r for r in before[1:] if r[6] != "17850"], "every other row derives as before"
    assert result.rows_in == result.rows_out + result.excluded
    audit = store.audit_log()[-1]
    assert audit["action"] == "forget_subjects" and audit["actor"] == "dpo@example.com"
    assert audit["details"] == counts and "17850" not in json.dumps(audit, default=str)
    # the encrypted file still holds X's ciphertexts, but no key opens them any more
    encrypted = parse_csv((tmp_path / "bucket/uci_online_retail/encrypted.csv").read_bytes())
    links = {r[11] for r, src in zip(encrypted[1:], before[1:], strict=True) if src[6] == "17850"}
    assert store.keys_by_link(links) == {} and store.keysets_by_link(links) == {}


def test_worker_processes_link_the_same_subjects_to_the_same_keys(strm_reference, tmp_path, store) -> None:
    # with workers, each worker digests its chunks' data subjects and this process records them
    job = Reference(strm_reference, tmp_path / "bucket", store)
    job.encrypt()

    def links() -> list[tuple]:
        with store.engine.begin() as conn:
            rows = sorted(conn.execute(sa.select(subject_keys_table)).all())
            conn.execute(subject_keys_table.delete())
        return rows

    one = links()
    assert len(one) > 500 and {r.group_id for r in one} == {GROUP}
    EncryptJob(job.config, job.contract, store, job.storages, workers=2, chunk_rows=1_500).run()  # same keys
    assert links() == one
    EncryptJob(job.config, job.contract, store, job.storages).run()
    assert links() == one


def test_purging_removes_exactly_the_expired_keys(tmp_path, store) -> None:
    store.get_or_create("g", [("a", 0), ("b", 0)], expires_at=1_000)
    store.get_or_create("g", [("c", 0)], expires_at=5_000)
    store.get_or_create("g", [("d", 0)])
    assert store.purge_expired(now_ms=1_000) == 2
    remaining = {k.key_link for k in store.export_keys("g")}
    assert len(remaining) == 2
    assert store.purge_expired(now_ms=4_999) == 0
    assert store.purge_expired(now_ms=5_000) == 1


def test_retention_days_set_expires_at_after_the_window(strm_reference, tmp_path, store) -> None:
    job = Reference(strm_reference, tmp_path / "bucket", store, retention_days=30, policy_id="p-30")
    job.encrypt()
    for key in store.export_keys(GROUP):
        assert key.expires_at == key.window_start + 31 * DAY and key.policy_id == "p-30"
    keys_file = parse_csv((tmp_path / "bucket/uci_online_retail/keys.csv").read_bytes())
    assert {r[2] for r in keys_file[1:]} == {"p-30"}


def test_export_takes_a_window_range(store) -> None:
    store.get_or_create("g", [("a", 0), ("a", DAY), ("a", 2 * DAY)])
    assert [k.window_start for k in store.export_keys("g", window_from=DAY, window_to=2 * DAY)] == [DAY]


def test_aws_kms_as_kek_against_motos_kms(s3_server, tmp_path, strm_reference) -> None:
    import boto3

    kms = boto3.client(
        "kms",
        endpoint_url=s3_server.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="y",
    )
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    store = KeyStore(url, AwsKmsKek(kms, key_id))
    store.ensure_schema()
    job = Reference(strm_reference, tmp_path / "bucket", store)
    job.encrypt()
    _, before = job.derive()
    other = kms.create_key()["KeyMetadata"]["KeyId"]
    store.rotate_kek(AwsKmsKek(kms, other))
    reopened = KeyStore(url, AwsKmsKek(kms, other))
    reopened.ensure_schema()
    job.store = reopened
    _, after = job.derive()
    assert after == before
    with pytest.raises(KeyStoreError, match="wrong KEK"):
        KeyStore(url, AwsKmsKek(kms, key_id)).ensure_schema()


class FakeCloudKms:
    """A FAKE of google.cloud.kms.KeyManagementServiceClient (no Cloud KMS can run here).

    It mimics the two calls we make — encrypt/decrypt with name, plaintext/ciphertext and
    additional_authenticated_data — with AES-GCM under one random key per CryptoKey name.
    """

    class _Response:
        def __init__(self, **fields: bytes) -> None:
            self.__dict__.update(fields)

    def __init__(self) -> None:
        import os

        self.keys: dict[str, bytes] = {}
        self._random = os.urandom
        self.calls = 0

    def _key(self, name: str) -> bytes:
        return self.keys.setdefault(name, self._random(32))

    def encrypt(self, request: dict) -> _Response:
        self.calls += 1
        blob = aead_wrap(self._key(request["name"]), request["plaintext"], request["additional_authenticated_data"])
        return self._Response(ciphertext=blob)

    def decrypt(self, request: dict) -> _Response:
        self.calls += 1
        plain = aead_unwrap(self._key(request["name"]), request["ciphertext"], request["additional_authenticated_data"])
        return self._Response(plaintext=plain)


def test_google_cloud_kms_as_kek_through_a_fake_client(tmp_path) -> None:
    fake = FakeCloudKms()
    name = "projects/p/locations/global/keyRings/r/cryptoKeys/k"
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    store = KeyStore(url, GcpKmsKek(fake, name))
    store.ensure_schema()
    created = store.get_or_create("g", [("a", 0)])[("a", 0)]
    reopened = KeyStore(url, GcpKmsKek(fake, name))
    reopened.ensure_schema()
    assert reopened.keys_by_link([created.key_link])[created.key_link].keyset == created.keyset
    assert fake.calls <= 3, "KMS is called when the store opens, not per key"
    with pytest.raises(KeyStoreError, match="wrong KEK"):
        KeyStore(url, GcpKmsKek(fake, name + "-other")).ensure_schema()
    with pytest.raises(KeyStoreError, match="wrong KEK"):
        KeyStore(url, LocalKek(new_kek())).ensure_schema()
