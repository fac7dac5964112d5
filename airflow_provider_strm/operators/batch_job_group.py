"""One STRM config → a task group: list the partition's files → encrypt each → derive each."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow.sdk import TaskGroup

from airflow_provider_strm.core.config import load_batch_job_config
from airflow_provider_strm.operators._common import ConfigArg, _as_doc
from airflow_provider_strm.operators.derive import DeriveDataOperator
from airflow_provider_strm.operators.encrypt import EncryptBatchOperator
from airflow_provider_strm.operators.files import ListFilesOperator


def strm_batch_job_group(
    group_id: str,
    *,
    batch_job_config: ConfigArg,
    data_contract: ConfigArg,
    source_prefix: str,
    keystore_conn_id: str = "strm_keystore_default",
    config_overrides: Mapping[str, Any] | None = None,
    derive: bool = True,
    operator_kwargs: Mapping[str, Any] | None = None,
) -> TaskGroup:
    """Build the usual STRM task group inside the current DAG.

    ``list_files`` lists ``source_prefix`` (templated, e.g. ``events/dt={{ ds }}``)
    on the config's source connector; ``encrypt`` and ``derive`` are mapped
    over the listed files (one task instance per file, labelled with the
    file name). ``config_overrides`` (templated) apply to both jobs, e.g. to
    put the outputs under the run's partition.
    """
    overrides = dict(config_overrides or {})
    config = load_batch_job_config(_as_doc(batch_job_config), overrides)  # fail at parse time on a bad config
    common = {
        "batch_job_config": batch_job_config,
        "data_contract": data_contract,
        "keystore_conn_id": keystore_conn_id,
        "config_overrides": overrides,
        **dict(operator_kwargs or {}),
    }
    with TaskGroup(group_id=group_id) as group:
        files = ListFilesOperator(
            task_id="list_files", connection_id=config.source_data.connection_id, prefix=source_prefix
        )
        encrypt = EncryptBatchOperator.partial(task_id="encrypt", **common).expand(source_path=files.output)
        if derive and config.derived_data:
            derived = DeriveDataOperator.partial(task_id="derive", **common).expand(source_path=files.output)
            encrypt >> derived
    return group
