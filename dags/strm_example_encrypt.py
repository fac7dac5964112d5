"""Daily STRM encryption of a clickstream partition.

Lists the files of the run's partition (``clickstream/dt={{ ds }}``) and
encrypts each one as a mapped task, all in one key group, so a session seen in
two files of the same day gets one key. Safe to re-run and backfill: outputs
are byte-identical and no key is created twice.

Connections (set as ``AIRFLOW_CONN_*`` by ``make demo``):
``strm_sample_data`` and ``strm_sample_output`` (conn type ``fs``, ``extra.path``)
and ``strm_keystore_default`` (``strm_keystore``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from airflow.sdk import dag, task, task_group

from airflow_provider_strm.operators.encrypt import EncryptBatchOperator

HERE = Path(__file__).parent / "strm_example"
SOURCE_CONN = "strm_sample_data"


@dag(
    schedule="@daily",
    start_date=datetime(2026, 11, 19, tzinfo=UTC),
    catchup=False,
    max_active_runs=3,
    tags=["strm", "example"],
    doc_md=__doc__,
)
def strm_example_encrypt() -> None:
    @task
    def list_partition_files(prefix: str) -> list[str]:
        """Object paths (not contents) of the partition's CSV files."""
        from airflow_provider_strm.hooks.connector import storage_for

        return [p for p in storage_for(SOURCE_CONN).list(prefix) if p.endswith(".csv")]

    @task_group
    def encrypt_partition() -> None:
        files = list_partition_files("clickstream/dt={{ ds }}")
        EncryptBatchOperator.partial(
            task_id="encrypt",
            batch_job_config=str(HERE / "clickstream-job.json"),
            data_contract=str(HERE / "clickstream-contract.json"),
            config_overrides={
                "encrypted_data.target.path_prefix": "encrypted/dt={{ ds }}",
                "encryption_keys_data.target.path_prefix": "keys/dt={{ ds }}",
            },
        ).expand(source_path=files)

    encrypt_partition()


strm_example_encrypt()
