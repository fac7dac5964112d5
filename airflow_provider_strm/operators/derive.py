"""DeriveDataOperator: STRM derived data (consent-based decryption and masking) as an Airflow task."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_strm.core.derive import DERIVE_CHUNK_ROWS, DeriveJob
from airflow_provider_strm.core.keyfiles import keys_file_lookup
from airflow_provider_strm.hooks.connector import storage_for
from airflow_provider_strm.hooks.keystore import StrmKeyStoreHook
from airflow_provider_strm.operators._common import (
    ConfigArg,
    StrmJobDefaults,
    connection_secret,
    file_label,
    load_job,
    task_identity,
)

if TYPE_CHECKING:
    from airflow.sdk import Context


class DeriveDataOperator(StrmJobDefaults, BaseOperator):
    """Writes every ``derived_data`` target of a STRM config from one encrypted file.

    Each output keeps the records whose consent suffices (the others are
    excluded and counted), decrypts exactly the PII fields that consent
    covers, and masks the configured fields. Keys come from the key store, or
    from a STRM keys file when ``keystore_conn_id`` is None (e.g. a file
    encrypted by STRM itself).

    :param batch_job_config: a STRM BatchJob JSON document: path, JSON text or dict. (templated)
    :param data_contract: the data contract: path, JSON text or dict. (templated)
    :param keystore_conn_id: the ``strm_keystore`` connection, or None to read keys from ``keys_path``.
    :param source_path: the original file; names the encrypted input and the outputs as the
        encrypt job named them. (templated)
    :param encrypted_path: the encrypted file inside ``encrypted_data``'s connector
        (default: derived from ``source_path`` or the config). (templated)
    :param keys_path: a STRM keys file inside ``encryption_keys_data``'s connector, used
        when ``keystore_conn_id`` is None (default: the config's keys file). (templated)
    :param config_overrides: dotted config paths → values; any config field. (templated)
    :param checkpoint_rows: commit the outputs in parts every this many records, so a retried task
        resumes after the last part instead of starting over (default: off; costs one extra copy at the end).
    :param workers: processes decrypting chunks in parallel for one large file (default 1). Needs the
        key store (not ``keys_path``) and CSV or JSON Lines targets; outputs are byte-identical for any value.
    """

    template_fields: Sequence[str] = (
        "batch_job_config",
        "data_contract",
        "source_path",
        "encrypted_path",
        "keys_path",
        "config_overrides",
    )
    template_fields_renderers = {"batch_job_config": "json", "data_contract": "json", "config_overrides": "json"}
    ui_color = "#e6f4ea"

    def __init__(
        self,
        *,
        batch_job_config: ConfigArg,
        data_contract: ConfigArg,
        keystore_conn_id: str | None = StrmKeyStoreHook.default_conn_name,
        source_path: str | None = None,
        encrypted_path: str | None = None,
        keys_path: str | None = None,
        config_overrides: Mapping[str, Any] | None = None,
        chunk_rows: int = DERIVE_CHUNK_ROWS,
        checkpoint_rows: int | None = None,
        workers: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**self.with_defaults(kwargs))
        self.batch_job_config = batch_job_config
        self.data_contract = data_contract
        self.keystore_conn_id = keystore_conn_id
        self.source_path = source_path
        self.encrypted_path = encrypted_path
        self.keys_path = keys_path
        self.config_overrides = dict(config_overrides or {})
        self.chunk_rows = chunk_rows
        self.checkpoint_rows = checkpoint_rows
        self.workers = workers

    def execute(self, context: Context) -> dict[str, object]:
        context["strm_file"] = file_label(self.source_path or self.encrypted_path)  # type: ignore[typeddict-unknown-key]
        config, contract = load_job(self.batch_job_config, self.data_contract, self.config_overrides)
        if self.keystore_conn_id:
            keys = StrmKeyStoreHook(self.keystore_conn_id).key_store
        else:
            keys = self._keys_file(config)
        job = DeriveJob(
            config, contract, keys, storage_for,
            source_path=self.source_path, encrypted_path=self.encrypted_path, secrets=connection_secret,
            chunk_rows=self.chunk_rows, workers=self.workers,
            checkpoint_rows=self.checkpoint_rows, context=task_identity(context),
        )  # fmt: skip
        self.log.info("STRM derive job %s: %s → %d outputs", job.job_id, job.input_name, len(config.derived_data))
        return self.run_job(job)

    def get_openlineage_facets_on_complete(self, task_instance: Any):  # type: ignore[no-untyped-def]
        """Datasets in and out with column lineage (PII columns marked), from the job that ran."""
        from airflow_provider_strm.operators.lineage import derive_lineage

        return derive_lineage(self._job)

    def _keys_file(self, config):  # type: ignore[no-untyped-def]
        from airflow_provider_strm.core.errors import ConfigError

        loc = config.encryption_keys_data
        if loc is None:
            raise ConfigError("encryption_keys_data", "needed to find the keys file when keystore_conn_id is None")
        path = self.keys_path or loc.output_path(self.source_path or config.source_data.path, "keys")
        with storage_for(loc.connection_id).open_read(path) as fh:
            return keys_file_lookup(fh.read(), name=path)
