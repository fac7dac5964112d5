"""What the STRM operators share: config loading, retry policy, task identity."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from airflow.sdk import ExceptionRetryPolicy, RetryAction, RetryRule

from airflow_provider_strm.core.config import BatchJobConfig, load_batch_job_config
from airflow_provider_strm.core.contract import DataContract, load_data_contract
from airflow_provider_strm.core.errors import JobStartError, StrmError

#: Start failures (connector or key store unreachable) retry; anything wrong with the data fails at once.
STRM_RETRY_POLICY = ExceptionRetryPolicy(
    rules=[
        RetryRule(exception=JobStartError, action=RetryAction.RETRY, reason="job could not start (ERROR_STARTING)"),
        RetryRule(exception=StrmError, action=RetryAction.FAIL, reason="job failed while processing (ERROR)"),
    ],
    default=RetryAction.DEFAULT,
)
DEFAULT_RETRIES = 3

ConfigArg = str | os.PathLike[str] | Mapping[str, Any]

#: Task defaults of the STRM job operators: retries for start failures, mapped instances named by file.
JOB_TASK_DEFAULTS: dict[str, Any] = {
    "retries": DEFAULT_RETRIES,
    "retry_policy": STRM_RETRY_POLICY,
    "map_index_template": "{{ strm_file }}",
}


class StrmJobDefaults:
    """Applies :data:`JOB_TASK_DEFAULTS` to direct and to ``.partial()`` (mapped) construction alike."""

    @classmethod
    def with_defaults(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        for key, value in JOB_TASK_DEFAULTS.items():
            kwargs.setdefault(key, value)
        return kwargs

    def run_job(self, job: Any) -> dict[str, object]:
        """Run a job, report it (log, metrics) and return its summary with each output's location."""
        self._job = job  # kept for OpenLineage, which asks after execute
        result = job.run()
        self.log.info("%s", result.message)  # type: ignore[attr-defined]
        emit_metrics(result)
        from airflow_provider_strm.hooks.connector import storage_for

        locations = {n: storage_for(loc.connection_id).describe(path) for n, (loc, path) in job.locations.items()}
        return {**result.to_dict(), "locations": locations}

    @classmethod
    def partial(cls, **kwargs: Any):  # type: ignore[no-untyped-def]
        # A mapped task takes these from partial()'s kwargs, never from __init__'s defaults.
        return super().partial(**cls.with_defaults(kwargs))  # type: ignore[misc]


def load_job(
    batch_job_config: ConfigArg, data_contract: ConfigArg, overrides: Mapping[str, Any]
) -> tuple[BatchJobConfig, DataContract]:
    config = load_batch_job_config(_as_doc(batch_job_config), {k: v for k, v in overrides.items()})
    return config, load_data_contract(_as_doc(data_contract))


def _as_doc(value: ConfigArg) -> str | Mapping[str, Any]:
    return value if isinstance(value, Mapping) else str(Path(value)) if isinstance(value, os.PathLike) else value


def task_identity(context: Mapping[str, Any]) -> dict[str, object]:
    """The identifiers recorded with a job so it can be found from the Airflow UI."""
    ti = context.get("ti") or context.get("task_instance")
    return {
        "dag_id": getattr(ti, "dag_id", None),
        "task_id": getattr(ti, "task_id", None),
        "run_id": getattr(ti, "run_id", None) or context.get("run_id"),
        "map_index": getattr(ti, "map_index", None),
        # Airflow's own name for the worker ([core] hostname_callable), as the UI shows it
        "hostname": getattr(ti, "hostname", None) or socket.gethostname(),
    }


def file_label(path: str | None) -> str:
    return PurePosixPath(path).name if path else ""


def connection_secret(conn_id: str) -> bytes:
    """The secret of an Airflow connection (its password), masked in logs from here on."""
    from airflow.sdk import BaseHook
    from airflow.sdk.log import mask_secret

    conn = BaseHook.get_connection(conn_id)
    secret = conn.password or conn.extra_dejson.get("secret")
    if not secret:
        raise JobStartError(f"connection {conn_id!r} holds no secret (set its password)")
    mask_secret(secret)
    return secret.encode("utf-8")


#: Metric names (Airflow Stats; with StatsD they arrive prefixed by ``[metrics] statsd_prefix``).
METRICS = {
    "rows_in": "strm.{kind}.records",
    "rows_out": "strm.{kind}.records_out",
    "dead_lettered": "strm.{kind}.bad_records",
    "excluded": "strm.{kind}.excluded_records",
    "keys_created": "strm.{kind}.keys_created",
    "keys_reused": "strm.{kind}.keys_reused",
    "bytes_out": "strm.{kind}.bytes",
}
DURATION_METRIC = "strm.{kind}.duration"


def emit_metrics(result: Any) -> None:
    """Counters and a timer per finished job, tagged with the job kind (``encrypt`` / ``derive``)."""
    from datetime import timedelta

    from airflow.sdk.observability.stats import Stats

    tags = {"kind": result.kind}
    for field, name in METRICS.items():
        Stats.incr(name.format(kind=result.kind), count=int(getattr(result, field)), tags=tags)
    Stats.timing(DURATION_METRIC.format(kind=result.kind), timedelta(seconds=result.seconds), tags=tags)
