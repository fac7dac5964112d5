"""Data connectors: a STRM ``data_connector_ref.name`` is an Airflow connection id.

``aws`` → an S3 bucket (``extra.service_config.s3.bucket_name``, the S3Hook
convention, or ``extra.bucket_name``), ``google_cloud_platform`` → a GCS
bucket (``extra.bucket_name``), ``fs`` → a local folder (``extra.path``); no
connection id → plain local paths. Reads stream; writes are invisible until
committed (S3: a multipart upload completed on commit; GCS: a temporary
object copied into place on commit; local: a temporary file renamed).
"""

from __future__ import annotations

import io
import uuid
from typing import Any, BinaryIO

from airflow.sdk import BaseHook

from airflow_provider_strm.core.errors import JobStartError
from airflow_provider_strm.core.storage import LocalStorage, PendingObject, Storage

PART_SIZE = 8 * 1024 * 1024  # S3 multipart parts and GCS upload chunks
TMP_MARK = ".strm-tmp-"


class _RawStream(io.RawIOBase):
    """Adapts a botocore StreamingBody to io so TextIOWrapper and pyarrow can read it."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._body.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        try:
            self._body.close()
        finally:
            super().close()


class _S3Pending(PendingObject):
    def __init__(self, client: Any, bucket: str, key: str) -> None:
        self.path = key
        self._client, self._bucket, self._key = client, bucket, key
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []

    def write(self, data: bytes) -> int:
        self._buffer += data
        while len(self._buffer) >= PART_SIZE:
            self._upload_part(bytes(self._buffer[:PART_SIZE]))
            del self._buffer[:PART_SIZE]
        return len(data)

    def _upload_part(self, data: bytes) -> None:
        if self._upload_id is None:
            self._upload_id = self._client.create_multipart_upload(Bucket=self._bucket, Key=self._key)["UploadId"]
        number = len(self._parts) + 1
        etag = self._client.upload_part(
            Bucket=self._bucket, Key=self._key, UploadId=self._upload_id, PartNumber=number, Body=data
        )["ETag"]
        self._parts.append({"ETag": etag, "PartNumber": number})

    def commit(self) -> None:
        if self._upload_id is None:
            self._client.put_object(Bucket=self._bucket, Key=self._key, Body=bytes(self._buffer))
        else:
            if self._buffer or not self._parts:
                self._upload_part(bytes(self._buffer))
            self._client.complete_multipart_upload(
                Bucket=self._bucket, Key=self._key, UploadId=self._upload_id, MultipartUpload={"Parts": self._parts}
            )
        self._buffer.clear()

    def abort(self) -> None:
        self._buffer.clear()
        if self._upload_id is not None:
            self._client.abort_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=self._upload_id)
            self._upload_id = None


class S3Storage(Storage):
    """An S3 bucket through a boto3 client."""

    def __init__(self, client: Any, bucket: str) -> None:
        self.client, self.bucket = client, bucket
        self.url = f"s3://{bucket}"

    def open_read(self, path: str) -> BinaryIO:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=path)["Body"]
        except self.client.exceptions.NoSuchKey:
            raise FileNotFoundError(f"s3://{self.bucket}/{path}") from None
        return io.BufferedReader(_RawStream(body), buffer_size=1 << 20)  # type: ignore[return-value]

    def open_write(self, path: str) -> PendingObject:
        return _S3Pending(self.client, self.bucket, path)

    def list(self, prefix: str) -> list[str]:
        folder = prefix.rstrip("/") + "/" if prefix else ""
        keys: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=folder):
            keys += [o["Key"] for o in page.get("Contents", []) if not o["Key"].endswith("/")]
        if prefix and not keys and self.exists(prefix):
            keys = [prefix]
        return sorted(keys)

    def exists(self, path: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=path)
            return True
        except self.client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def delete(self, path: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=path)

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as exc:
            endpoint = getattr(self.client.meta, "endpoint_url", "")
            raise JobStartError(f"S3 bucket {self.bucket} at {endpoint} is not reachable: {exc}") from None


class _GCSPending(PendingObject):
    def __init__(self, bucket: Any, path: str) -> None:
        self.path = path
        self._bucket = bucket
        self._tmp = bucket.blob(f"{path}{TMP_MARK}{uuid.uuid4().hex}")
        self._writer = self._tmp.open("wb", chunk_size=PART_SIZE, ignore_flush=True)

    def write(self, data: bytes) -> int:
        return self._writer.write(data)

    def commit(self) -> None:
        self._writer.close()
        self._bucket.copy_blob(self._tmp, self._bucket, self.path)
        self._tmp.delete()

    def abort(self) -> None:
        # Closing finalises the temporary object; it is deleted at once and never had the final name.
        try:
            self._writer.close()
        finally:
            if self._tmp.exists():
                self._tmp.delete()


class GCSStorage(Storage):
    """A GCS bucket through a google-cloud-storage client."""

    def __init__(self, client: Any, bucket: str) -> None:
        self.client, self.bucket_name = client, bucket
        self.bucket = client.bucket(bucket)
        self.url = f"gs://{bucket}"

    def open_read(self, path: str) -> BinaryIO:
        blob = self.bucket.blob(path)
        if not blob.exists():
            raise FileNotFoundError(f"gs://{self.bucket_name}/{path}")
        return blob.open("rb", chunk_size=PART_SIZE)  # type: ignore[no-any-return]

    def open_write(self, path: str) -> PendingObject:
        return _GCSPending(self.bucket, path)

    def list(self, prefix: str) -> list[str]:
        folder = prefix.rstrip("/") + "/" if prefix else ""
        names = [b.name for b in self.client.list_blobs(self.bucket_name, prefix=folder)]
        names = [n for n in names if TMP_MARK not in n and not n.endswith("/")]
        if prefix and not names and self.exists(prefix):
            names = [prefix]
        return sorted(names)

    def exists(self, path: str) -> bool:
        return bool(self.bucket.blob(path).exists())

    def delete(self, path: str) -> None:
        self.bucket.blob(path).delete()

    def check(self) -> None:
        try:
            if not self.bucket.exists():
                raise JobStartError(f"GCS bucket {self.bucket_name} does not exist")
        except JobStartError:
            raise
        except Exception as exc:
            raise JobStartError(f"GCS bucket {self.bucket_name} is not reachable: {exc}") from None


class StrmDataConnectorHook(BaseHook):
    """Builds the :class:`Storage` of a data connector from its Airflow connection.

    :param conn_id: the connection id (a STRM ``data_connector_ref.name``); None for plain local paths.
    """

    def __init__(self, conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id

    def get_storage(self) -> Storage:
        if not self.conn_id:
            return LocalStorage(None)
        try:
            conn = self.get_connection(self.conn_id)
        except Exception as exc:
            raise JobStartError(f"data connector {self.conn_id!r}: connection cannot be loaded: {exc}") from None
        extra = conn.extra_dejson
        kind = conn.conn_type
        if kind in ("fs", "file", "local"):
            path = extra.get("path")
            if not path:
                raise JobStartError(f"data connector {self.conn_id!r} (fs) has no extra.path")
            return LocalStorage(path)
        if kind in ("aws", "s3"):
            bucket = extra.get("service_config", {}).get("s3", {}).get("bucket_name") or extra.get("bucket_name")
            if not bucket:
                raise JobStartError(
                    f"data connector {self.conn_id!r} (aws) names no bucket: set extra.service_config.s3.bucket_name"
                )
            from airflow.providers.amazon.aws.hooks.s3 import S3Hook

            return S3Storage(S3Hook(aws_conn_id=self.conn_id).get_conn(), bucket)
        if kind in ("google_cloud_platform", "gcs", "gcp"):
            bucket = extra.get("bucket_name")
            if not bucket:
                raise JobStartError(f"data connector {self.conn_id!r} (google_cloud_platform) has no extra.bucket_name")
            from airflow.providers.google.cloud.hooks.gcs import GCSHook

            return GCSStorage(GCSHook(gcp_conn_id=self.conn_id).get_conn(), bucket)
        raise JobStartError(
            f"data connector {self.conn_id!r} has conn type {kind!r}; expected aws, google_cloud_platform or fs"
        )

    def get_conn(self) -> Storage:
        return self.get_storage()


def storage_for(conn_id: str | None) -> Storage:
    """The storage of a data connector (an Airflow connection id, or None for local paths)."""
    return StrmDataConnectorHook(conn_id).get_storage()
