"""BatchJobTrigger: waits in the triggerer until batch jobs finish (or one errors)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


class BatchJobTrigger(BaseTrigger):
    """Polls the key store's job records; yields one event: ``success`` or ``error``.

    :param keystore_conn_id: the ``strm_keystore`` connection.
    :param job_id: one job, or
    :param group_id: / :param run_id: all jobs of a group and/or an Airflow run.
    :param expected: at least this many jobs must exist (e.g. the number of mapped files).
    :param poll_interval: seconds between polls.
    """

    def __init__(
        self,
        *,
        keystore_conn_id: str,
        job_id: str | None = None,
        group_id: str | None = None,
        run_id: str | None = None,
        file_prefix: str | None = None,
        expected: int = 1,
        poll_interval: float = 30.0,
    ) -> None:
        super().__init__()
        self.keystore_conn_id = keystore_conn_id
        self.job_id, self.group_id, self.run_id = job_id, group_id, run_id
        self.file_prefix = file_prefix
        self.expected, self.poll_interval = expected, poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airflow_provider_strm.triggers.batch_job.BatchJobTrigger",
            {
                "keystore_conn_id": self.keystore_conn_id,
                "job_id": self.job_id,
                "group_id": self.group_id,
                "run_id": self.run_id,
                "file_prefix": self.file_prefix,
                "expected": self.expected,
                "poll_interval": self.poll_interval,
            },
        )

    def _status(self):  # type: ignore[no-untyped-def]
        from airflow_provider_strm.core.status import jobs_status
        from airflow_provider_strm.hooks.keystore import StrmKeyStoreHook

        store = StrmKeyStoreHook(self.keystore_conn_id).key_store
        return jobs_status(
            store,
            job_id=self.job_id,
            group_id=self.group_id,
            run_id=self.run_id,
            file_prefix=self.file_prefix,
            expected=self.expected,
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while True:
            # the key store is a blocking SQL client: keep it off the triggerer's event loop
            status = await asyncio.to_thread(self._status)
            if status.error is not None:
                yield TriggerEvent({"status": "error", "message": status.error})
                return
            if status.done:
                yield TriggerEvent({"status": "success", "message": status.summary, "jobs": status.jobs})
                return
            self.log.info("waiting: %s", status.summary)
            await asyncio.sleep(self.poll_interval)
