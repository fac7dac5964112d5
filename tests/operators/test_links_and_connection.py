"""Extra links to the consoles, and the key-store connection test the UI offers."""

from __future__ import annotations

from airflow_provider_strm.core.keystore import new_kek
from airflow_provider_strm.hooks.keystore import StrmKeyStoreHook
from airflow_provider_strm.operators.encrypt import EncryptBatchOperator
from airflow_provider_strm.operators.links import console_url


def test_console_links_for_s3_and_gcs_objects_and_none_for_local_files() -> None:
    assert (
        console_url("s3://lake/enc/dt=1/a b.csv")
        == "https://s3.console.aws.amazon.com/s3/object/lake?prefix=enc/dt%3D1/a%20b.csv"
    )
    assert (
        console_url("gs://lake/enc/a.csv") == "https://console.cloud.google.com/storage/browser/_details/lake/enc/a.csv"
    )
    assert console_url("file:///tmp/out/a.csv") is None
    assert [link.name for link in EncryptBatchOperator.operator_extra_links] == ["Encrypted output", "Keys file"]


def test_test_connection_reports_a_reachable_store_and_a_broken_one(tmp_path, airflow_conn) -> None:
    airflow_conn(
        "ks-ok", {"conn_type": "strm_keystore", "extra": {"path": str(tmp_path / "k.db"), "kek_secret": new_kek()}}
    )
    ok, message = StrmKeyStoreHook("ks-ok").test_connection()
    assert ok and message == "Key store reachable; 0 keys."
    airflow_conn("ks-nokek", {"conn_type": "strm_keystore", "extra": {"path": str(tmp_path / "k2.db")}})
    ok, message = StrmKeyStoreHook("ks-nokek").test_connection()
    assert not ok and "kek_secret" in message
    airflow_conn(
        "ks-down", {"conn_type": "strm_keystore", "host": "127.0.0.1", "port": 9, "extra": {"kek_secret": new_kek()}}
    )
    ok, message = StrmKeyStoreHook("ks-down").test_connection()
    assert not ok and "not reachable" in message
