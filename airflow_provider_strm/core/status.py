"""Is a set of batch jobs done? The one rule the sensor and its trigger share."""

from __future__ import annotations

from dataclasses import dataclass

from airflow_provider_strm.core.keystore import KeyStore

FINAL_OK = "FINISHED"
FINAL_ERROR = "ERROR"


@dataclass(frozen=True)
class JobsStatus:
    """``done`` when every matching job FINISHED (and at least ``expected`` exist); ``error`` names a failed one."""

    done: bool
    error: str | None
    jobs: int
    finished: int

    @property
    def summary(self) -> str:
        return f"{self.finished} of {self.jobs} jobs finished"


def jobs_status(
    store: KeyStore,
    *,
    job_id: str | None = None,
    group_id: str | None = None,
    run_id: str | None = None,
    file_prefix: str | None = None,
    expected: int = 1,
) -> JobsStatus:
    """The status of the jobs matching the filters.

    ERROR fails at once. ERROR_STARTING does not: the task retries, and a retry
    records a new job for the same file; a file whose latest job FINISHED counts as done.
    """
    jobs = store.jobs(job_id=job_id, group_id=group_id, run_id=run_id, file_prefix=file_prefix)
    latest: dict[object, dict[str, object]] = {}
    for job in jobs:  # oldest first: later attempts of the same file win
        latest[(job["file"], job["kind"], job.get("map_index"))] = job
    for job in latest.values():
        if job["state"] == FINAL_ERROR:
            return JobsStatus(
                False, f"job {job['job_id']} ({job['file']}) ended in ERROR: {job['message']}", len(latest), 0
            )
    finished = sum(1 for j in latest.values() if j["state"] == FINAL_OK)
    return JobsStatus(len(latest) >= expected and finished == len(latest), None, len(latest), finished)
