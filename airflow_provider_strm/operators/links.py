"""Extra links on the STRM operators: open an output in its cloud console (S3, GCS)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from airflow.sdk import BaseOperatorLink


def console_url(location: str) -> str | None:
    """``s3://bucket/key`` or ``gs://bucket/key`` → the object's page in the console; else None."""
    scheme, _, rest = location.partition("://")
    bucket, _, key = rest.partition("/")
    if scheme == "s3" and key:
        return f"https://s3.console.aws.amazon.com/s3/object/{bucket}?prefix={quote(key)}"
    if scheme == "gs" and key:
        return f"https://console.cloud.google.com/storage/browser/_details/{bucket}/{quote(key)}"
    return None


class StrmOutputLink(BaseOperatorLink):
    """A link to one output of the job (read from the task's summary in XCom)."""

    name = "Encrypted output"
    output = "encrypted"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        summary = XCom.get_value(ti_key=ti_key, key="return_value") or {}
        location = (summary.get("locations") or {}).get(self.output, "")
        return console_url(location) or ""


class KeysFileLink(StrmOutputLink):
    name = "Keys file"
    output = "keys"
