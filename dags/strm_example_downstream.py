"""Downstream of `strm_example_encrypt`: waits for the day's partition to be encrypted, then reports.

The deferrable `BatchJobSensor` waits in the triggerer (no worker slot held) until
both files of `clickstream/dt={{ ds }}` have an encrypt job in FINISHED, and fails
at once if one ended in ERROR.
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import dag, task

from airflow_provider_strm.sensors.batch_job import BatchJobSensor

GROUP = "5b0f6f1e-2a53-4d7e-9c55-0f3d2e7a9b11"  # encryption.batch_job_group_id of clickstream-job.json


@dag(
    schedule="@daily",
    start_date=datetime(2026, 11, 19, tzinfo=UTC),
    catchup=False,
    tags=["strm", "example"],
    doc_md=__doc__,
)
def strm_example_downstream() -> None:
    wait = BatchJobSensor(
        task_id="wait_for_partition",
        group_id=GROUP,
        file_prefix="strm_sample_data:clickstream/dt={{ ds }}/",
        expected=2,
        deferrable=True,
        poke_interval=5,
        timeout=6 * 60 * 60,
    )

    @task
    def report() -> str:
        return "partition encrypted"

    wait >> report()


strm_example_downstream()
