"""EncryptBatchOperator: a STRM encryption batch job as an Airflow task."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_strm.core.csvio import DEFAULT_CHUNK_ROWS
from airflow_provider_strm.core.encrypt import ConsentFunction, EncryptJob
from airflow_provider_strm.hooks.connector import storage_for
from airflow_provider_strm.hooks.keystore import StrmKeyStoreHook
from airflow_provider_strm.operators._common import (
    ConfigArg,
    StrmJobDefaults,
    file_label,
    load_job,
    task_identity,
)
from airflow_provider_strm.operators.links import KeysFileLink, StrmOutputLink

if TYPE_CHECKING:
    from airflow.sdk import Context


class EncryptBatchOperator(StrmJobDefaults, BaseOperator):
    """Encrypts the PII fields of one file, STRM-compatibly, with keys kept in the key store.

    Writes the encrypted file and the keys file named by the config (or
    ``<stem>-encrypted.csv`` / ``<stem>-keys.csv`` under the targets' prefixes)
    and returns a summary (job id, state, counts, output paths; never keys or values).
    Map it over a partition's files with ``.partial(...).expand(source_path=...)``.

    :param batch_job_config: a STRM BatchJob JSON document: path, JSON text or dict. (templated)
    :param data_contract: the data contract: path, JSON text or dict. (templated)
    :param keystore_conn_id: the ``strm_keystore`` connection holding the keys.
    :param source_path: the file to encrypt, inside the source connector; overrides
        ``source_data.path_prefix``/``file_name``. (templated)
    :param batch_job_group_id: overrides ``encryption.batch_job_group_id``. (templated)
    :param config_overrides: dotted config paths → values, e.g.
        ``{"encrypted_data.target.path_prefix": "enc/{{ ds }}"}``; any config field. (templated)
    :param consent_function: replaces STRM's consent extraction: a callable taking the record
        (column → value) and returning its consent levels, e.g. to read consent from two columns.
    :param chunk_rows: records per chunk at most (memory stays flat whatever the file size); a file whose rows
        are in no key order is read in smaller chunks (about 10,000 key-field values each, as an ordered file's).
    :param checkpoint_rows: commit the outputs in parts every this many records, so a retried task
        resumes after the last part instead of starting over (default: off; costs one extra copy at the end).
    :param workers: processes encrypting chunks in parallel for one large file (default 1: in the task's
        own process). Size it to the worker slot's cores; the output is byte-identical for any value.
    """

    template_fields: Sequence[str] = (
        "batch_job_config",
        "data_contract",
        "source_path",
        "batch_job_group_id",
        "config_overrides",
    )
    template_fields_renderers = {"batch_job_config": "json", "data_contract": "json", "config_overrides": "json"}
    ui_color = "#e8f0fe"
    operator_extra_links = (StrmOutputLink(), KeysFileLink())

    def __init__(
        self,
        *,
        batch_job_config: ConfigArg,
        data_contract: ConfigArg,
        keystore_conn_id: str = StrmKeyStoreHook.default_conn_name,
        source_path: str | None = None,
        batch_job_group_id: str | None = None,
        config_overrides: Mapping[str, Any] | None = None,
        consent_function: ConsentFunction | None = None,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        checkpoint_rows: int | None = None,
        workers: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**self.with_defaults(kwargs))
        self.batch_job_config = batch_job_config
        self.data_contract = data_contract
        self.keystore_conn_id = keystore_conn_id
        self.source_path = source_path
        self.batch_job_group_id = batch_job_group_id
        self.config_overrides = dict(config_overrides or {})
        self.consent_function = consent_function
        self.chunk_rows = chunk_rows
        self.checkpoint_rows = checkpoint_rows
        self.workers = workers

    def _overrides(self) -> dict[str, Any]:
        overrides = dict(self.config_overrides)
        if self.batch_job_group_id:
            overrides["encryption.batch_job_group_id"] = self.batch_job_group_id
        return overrides

    def execute(self, context: Context) -> dict[str, object]:
        context["strm_file"] = file_label(self.source_path)  # type: ignore[typeddict-unknown-key]
        config, contract = load_job(self.batch_job_config, self.data_contract, self._overrides())
        key_store = StrmKeyStoreHook(self.keystore_conn_id).key_store
        job = EncryptJob(
            config,
            contract,
            key_store,
            storage_for,
            source_path=self.source_path,
            consent_function=self.consent_function,
            chunk_rows=self.chunk_rows,
            checkpoint_rows=self.checkpoint_rows,
            workers=self.workers,
            context=task_identity(context),
        )
        self.log.info("STRM encrypt job %s: %s (group %s)", job.job_id, job.source_path, job.group_id)
        return self.run_job(job)

    def get_openlineage_facets_on_complete(self, task_instance: Any):  # type: ignore[no-untyped-def]
        """Datasets in and out with column lineage (PII columns marked), from the job that ran."""
        from airflow_provider_strm.operators.lineage import encrypt_lineage

        return encrypt_lineage(self._job)
