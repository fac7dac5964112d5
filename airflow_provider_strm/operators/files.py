"""ListFilesOperator: the object paths of a partition, to map jobs over."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_strm.hooks.connector import storage_for

if TYPE_CHECKING:
    from airflow.sdk import Context


class ListFilesOperator(BaseOperator):
    """Lists the files under a prefix of a data connector and returns their paths (never their contents).

    :param connection_id: the data connector (Airflow connection id; None = local paths).
    :param prefix: the folder to list, e.g. ``clickstream/dt={{ ds }}``. (templated)
    :param suffixes: keep only paths ending with one of these (default ``.csv``).
    :param fail_if_empty: fail the task when the partition holds no file (default: return an empty list,
        so the mapped jobs are skipped).
    """

    template_fields: Sequence[str] = ("connection_id", "prefix")

    def __init__(
        self,
        *,
        connection_id: str | None,
        prefix: str,
        suffixes: Sequence[str] = (".csv",),
        fail_if_empty: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.connection_id = connection_id
        self.prefix = prefix
        self.suffixes = tuple(suffixes)
        self.fail_if_empty = fail_if_empty

    def execute(self, context: Context) -> list[str]:
        paths = [p for p in storage_for(self.connection_id).list(self.prefix) if p.endswith(self.suffixes)]
        self.log.info("%d files under %s:%s", len(paths), self.connection_id, self.prefix)
        if not paths and self.fail_if_empty:
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(f"no {self.suffixes} files under {self.connection_id}:{self.prefix}")
        return paths
