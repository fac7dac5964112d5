"""Daily STRM privacy job on a clickstream partition.

For the run's partition (``clickstream/dt={{ ds }}``): list its files →
encrypt each (mapped, one key group, so a session seen in two files of the
same day gets one key) → derive each consent-based output (mapped). Safe to
re-run and backfill: outputs are byte-identical and no key is created twice.

Connections (set as ``AIRFLOW_CONN_*`` by ``make demo``):
``strm_sample_data`` and ``strm_sample_output`` (conn type ``fs``, ``extra.path``)
and ``strm_keystore_default`` (``strm_keystore``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from airflow.sdk import dag

from airflow_provider_strm.operators.batch_job_group import strm_batch_job_group

HERE = Path(__file__).parent / "strm_example"
PARTITION = "dt={{ ds }}"


@dag(
    schedule="@daily",
    start_date=datetime(2026, 11, 19, tzinfo=UTC),
    catchup=False,
    max_active_runs=3,
    tags=["strm", "example"],
    doc_md=__doc__,
)
def strm_example_encrypt() -> None:
    strm_batch_job_group(
        "clickstream",
        batch_job_config=str(HERE / "clickstream-job.json"),
        data_contract=str(HERE / "clickstream-contract.json"),
        source_prefix=f"clickstream/{PARTITION}",
        config_overrides={
            "encrypted_data.target.path_prefix": f"encrypted/{PARTITION}",
            "encryption_keys_data.target.path_prefix": f"keys/{PARTITION}",
            "derived_data[0].target.path_prefix": f"derived/{PARTITION}",
            "derived_data[1].target.path_prefix": f"derived/{PARTITION}",
        },
    )


strm_example_encrypt()
