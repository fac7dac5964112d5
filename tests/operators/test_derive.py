"""DeriveDataOperator pieces that need Airflow: HMAC masking with a secret from a connection."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from reference_checks import parse_csv

from airflow_provider_strm.core.config import load_batch_job_config
from airflow_provider_strm.core.contract import load_data_contract
from airflow_provider_strm.core.derive import DeriveJob
from airflow_provider_strm.core.encrypt import EncryptJob
from airflow_provider_strm.core.errors import JobStartError
from airflow_provider_strm.core.keystore import KeyStore, new_kek
from airflow_provider_strm.core.storage import LocalStorage
from airflow_provider_strm.operators._common import connection_secret

SECRET = "a-long-secret-for-masking-0123456789"


def test_hmac_masking_takes_its_secret_from_a_connection(tmp_path, airflow_conn) -> None:
    airflow_conn("mask-secret", {"conn_type": "generic", "password": SECRET})
    (tmp_path / "in.csv").write_text("id,ts,email\na,2026-11-20T10:00:00Z,a@example.com\n")
    config = load_batch_job_config(
        {
            "source_data": {"file_name": "in.csv"},
            "consent": {"default_consent_levels": [0]},
            "encryption": {"timestamp_config": {"field": "ts"}},
            "event_contract_ref": {"handle": "h", "name": "n", "version": "1"},
            "encrypted_data": {"target": {"file_name": "enc.csv"}},
            "derived_data": [
                {
                    "target": {"file_name": "out.csv"},
                    "consent_levels": [0],
                    "masked_fields": {
                        "hash_type": "HMAC_SHA256",
                        "secret_connection_id": "mask-secret",
                        "field_patterns": {"h/n/1": {"field_patterns": ["email"]}},
                    },
                }
            ],
        }
    )
    contract = load_data_contract({"keyField": "id", "piiFields": {"email": 0}})
    store = KeyStore(f"sqlite:///{tmp_path / 'k.db'}", new_kek())
    store.ensure_schema()
    storages = lambda c: LocalStorage(tmp_path)  # noqa: E731
    EncryptJob(config, contract, store, storages).run()
    DeriveJob(config, contract, store, storages, secrets=connection_secret).run()
    masked = parse_csv((tmp_path / "out.csv").read_bytes())[1][2]
    assert masked == hmac.new(SECRET.encode(), b"a@example.com", hashlib.sha256).hexdigest()


def test_a_connection_without_a_secret_is_a_start_error(airflow_conn) -> None:
    airflow_conn("empty-secret", {"conn_type": "generic"})
    with pytest.raises(JobStartError, match="empty-secret"):
        connection_secret("empty-secret")
