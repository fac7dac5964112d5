"""BatchJobSensor: wait until STRM batch jobs reach FINISHED; fail when one ends in ERROR."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_strm.core.status import jobs_status
from airflow_provider_strm.hooks.keystore import StrmKeyStoreHook
from airflow_provider_strm.triggers.batch_job import BatchJobTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context


class BatchJobSensor(BaseSensorOperator):
    """Waits for one job (``job_id``) or all jobs of a group and/or run to finish.

    E.g. a downstream DAG waits for the day's partition: ``group_id=<the dataset's group>``,
    ``run_id="{{ ... }}"`` of the upstream run, ``expected=<number of files>``.

    :param keystore_conn_id: the ``strm_keystore`` connection holding the job records.
    :param job_id: a job id (from an operator's summary). (templated)
    :param group_id: a ``batch_job_group_id``. (templated)
    :param run_id: an Airflow run id: only jobs of that run. (templated)
    :param file_prefix: only jobs whose input (``conn_id:path``) starts with this, e.g. a partition. (templated)
    :param expected: at least this many jobs must exist before the wait can end. (templated)
    :param deferrable: hand the wait to the triggerer instead of holding a worker slot.
    """

    template_fields: Sequence[str] = ("job_id", "group_id", "run_id", "file_prefix", "expected")

    def __init__(
        self,
        *,
        keystore_conn_id: str = StrmKeyStoreHook.default_conn_name,
        job_id: str | None = None,
        group_id: str | None = None,
        run_id: str | None = None,
        file_prefix: str | None = None,
        expected: int | str = 1,
        deferrable: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not (job_id or group_id or run_id or file_prefix):
            raise ValueError("BatchJobSensor needs job_id, group_id, run_id or file_prefix")
        self.keystore_conn_id = keystore_conn_id
        self.job_id, self.group_id, self.run_id = job_id, group_id, run_id
        self.file_prefix = file_prefix
        self.expected = expected
        self.deferrable = deferrable

    def poke(self, context: Context) -> bool:
        status = jobs_status(
            StrmKeyStoreHook(self.keystore_conn_id).key_store,
            job_id=self.job_id or None,
            group_id=self.group_id or None,
            run_id=self.run_id or None,
            file_prefix=self.file_prefix or None,
            expected=int(self.expected),
        )
        if status.error:
            raise AirflowFailException(status.error)
        self.log.info("%s", status.summary)
        return status.done

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        if self.poke(context):
            return None
        self.defer(
            trigger=BatchJobTrigger(
                keystore_conn_id=self.keystore_conn_id,
                job_id=self.job_id or None,
                group_id=self.group_id or None,
                run_id=self.run_id or None,
                file_prefix=self.file_prefix or None,
                expected=int(self.expected),
                poll_interval=self.poke_interval,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout) if self.timeout else None,
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> None:
        if event.get("status") != "success":
            raise AirflowFailException(event.get("message", "batch job failed"))
        self.log.info("%s", event.get("message"))
