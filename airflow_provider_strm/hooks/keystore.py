"""Airflow hook for the STRM key store (connection type ``strm_keystore``)."""

from __future__ import annotations

import os
from functools import cached_property
from typing import Any

from airflow.sdk import BaseHook

from airflow_provider_strm.core.errors import JobStartError, StrmError
from airflow_provider_strm.core.kek import AwsKmsKek, GcpKmsKek, KekProvider, LocalKek
from airflow_provider_strm.core.keystore import KeyStore


class StrmKeyStoreHook(BaseHook):
    """Opens the key store named by a ``strm_keystore`` connection.

    The database is, in order of precedence: ``extra.url`` (any SQLAlchemy URL,
    ``sqlite:///...`` or ``postgresql+psycopg2://...``); a PostgreSQL server
    given by host/port/login/password/schema; else an embedded SQLite file at
    ``extra.path`` (default ``$AIRFLOW_HOME/strm_keystore.db``).
    The key-encryption key (KEK) is chosen by ``extra.kek_provider``:

    - ``local`` (default): ``extra.kek_secret``, 32 bytes base64 (``strm-batch keys new-kek``),
      masked in logs and the UI;
    - ``aws_kms``: ``extra.kms_key_id`` through the ``aws`` connection ``extra.aws_conn_id``;
    - ``gcp_kms``: ``extra.kms_key_name`` through the ``google_cloud_platform`` connection
      ``extra.gcp_conn_id``.

    :param keystore_conn_id: the connection id (default ``strm_keystore_default``).
    """

    conn_name_attr = "keystore_conn_id"
    default_conn_name = "strm_keystore_default"
    conn_type = "strm_keystore"
    hook_name = "STRM key store"

    def __init__(self, keystore_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.keystore_conn_id = keystore_conn_id

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": [],
            "relabeling": {"schema": "Database"},
            "placeholders": {
                "host": "PostgreSQL host (leave empty for embedded SQLite)",
                "extra": '{"kek_secret": "<base64 32 bytes>", "url": "sqlite:////path/keys.db"}',
            },
        }

    def url(self) -> str:
        conn = self._connection()
        extra = conn.extra_dejson
        if extra.get("url"):
            return str(extra["url"])
        if conn.host:
            auth = conn.login or "postgres"
            if conn.password:
                from urllib.parse import quote

                auth += ":" + quote(conn.password, safe="")
            port = f":{conn.port}" if conn.port else ""
            return f"postgresql+psycopg2://{auth}@{conn.host}{port}/{conn.schema or 'postgres'}"
        path = extra.get("path") or os.path.join(os.environ.get("AIRFLOW_HOME", "."), "strm_keystore.db")
        return f"sqlite:///{os.path.abspath(path)}"

    def _connection(self):  # type: ignore[no-untyped-def]
        try:
            return self.get_connection(self.keystore_conn_id)
        except Exception as exc:
            raise JobStartError(f"key-store connection {self.keystore_conn_id!r} cannot be loaded: {exc}") from None

    def kek_provider(self) -> KekProvider:
        """The KEK named by the connection (see the class docstring)."""
        extra = self._connection().extra_dejson
        kind = extra.get("kek_provider", "local")
        if kind == "local":
            kek = extra.get("kek_secret")
            if not kek:
                raise JobStartError(
                    f"key-store connection {self.keystore_conn_id!r} has no extra.kek_secret "
                    "(a base64 32-byte key-encryption key; `strm-batch keys new-kek` makes one)"
                )
            self._mask(kek)
            return LocalKek(kek)
        if kind == "aws_kms":
            from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

            client = AwsBaseHook(aws_conn_id=extra.get("aws_conn_id", "aws_default"), client_type="kms").get_conn()
            return AwsKmsKek(client, self._require(extra, "kms_key_id"))
        if kind == "gcp_kms":
            from airflow.providers.google.common.hooks.base_google import GoogleBaseHook
            from google.cloud.kms import KeyManagementServiceClient

            google = GoogleBaseHook(gcp_conn_id=extra.get("gcp_conn_id", "google_cloud_default"))
            client = KeyManagementServiceClient(credentials=google.get_credentials())
            return GcpKmsKek(client, self._require(extra, "kms_key_name"))
        raise JobStartError(f"key-store connection {self.keystore_conn_id!r}: unknown kek_provider {kind!r}")

    def _require(self, extra: dict[str, Any], name: str) -> str:
        if not extra.get(name):
            raise JobStartError(f"key-store connection {self.keystore_conn_id!r} needs extra.{name}")
        return str(extra[name])

    @cached_property
    def key_store(self) -> KeyStore:
        """The opened key store, its schema created or checked."""
        store = KeyStore(self.url(), self.kek_provider())
        store.ensure_schema()
        return store

    def get_conn(self) -> KeyStore:
        return self.key_store

    def test_connection(self) -> tuple[bool, str]:
        try:
            store = self.key_store
            store.check()
            return True, f"Key store reachable; {store.count_keys()} keys."
        except StrmError as exc:
            return False, str(exc)

    @staticmethod
    def _mask(secret: str) -> None:
        try:
            from airflow.sdk.log import mask_secret
        except ImportError:  # pragma: no cover - older task SDKs
            return
        mask_secret(secret)
