"""Data connectors over real servers: local disk, S3 (moto's server) and GCS (the emulator)."""

from __future__ import annotations

import os

import pytest

from airflow_provider_strm.core.errors import JobStartError
from airflow_provider_strm.hooks.connector import StrmDataConnectorHook

MiB = 1024 * 1024


@pytest.fixture(params=["local", "s3", "gcs"])
def storage(request, airflow_conn, tmp_path):  # type: ignore[no-untyped-def]
    """The same Storage contract on each backend, built from an AIRFLOW_CONN_* variable only."""
    if request.param == "local":
        airflow_conn("strm-data", {"conn_type": "fs", "extra": {"path": str(tmp_path)}})
    elif request.param == "s3":
        server = request.getfixturevalue("s3_server")
        airflow_conn("strm-data", server.connection(server.create_bucket()))
    else:
        server = request.getfixturevalue("gcs_server")
        airflow_conn("strm-data", server.connection(server.create_bucket()))
    return StrmDataConnectorHook("strm-data").get_storage()


def test_a_large_object_streams_in_and_out_byte_identical(storage) -> None:
    data = os.urandom(MiB) * 20 + b"tail"
    pending = storage.open_write("big/object.bin")
    for i in range(0, len(data), MiB):
        pending.write(data[i : i + MiB])
    assert not storage.exists("big/object.bin"), "nothing is visible before commit"
    pending.commit()
    with storage.open_read("big/object.bin") as fh:
        got = bytearray()
        while chunk := fh.read(3 * MiB):
            got += chunk
    assert bytes(got) == data
    assert storage.list("big") == ["big/object.bin"]


def test_an_aborted_write_leaves_nothing_behind(storage) -> None:
    pending = storage.open_write("out/part.csv")
    pending.write(b"x" * (9 * MiB))
    pending.abort()
    assert not storage.exists("out/part.csv")
    assert storage.list("out") == []
    assert storage.list("") == []


def test_listing_a_prefix_is_recursive_and_sorted(storage) -> None:
    for name in ("dt=1/b.csv", "dt=1/a.csv", "dt=1/sub/c.csv", "dt=10/d.csv"):
        pending = storage.open_write(name)
        pending.write(b"a\n")
        pending.commit()
    assert storage.list("dt=1") == ["dt=1/a.csv", "dt=1/b.csv", "dt=1/sub/c.csv"]
    assert storage.list("dt=1/a.csv") == ["dt=1/a.csv"]


def test_a_missing_object_is_file_not_found(storage) -> None:
    with pytest.raises(FileNotFoundError):
        storage.open_read("nope.csv")


def test_an_unreachable_s3_endpoint_is_a_start_error(airflow_conn) -> None:
    airflow_conn(
        "dead-s3",
        {
            "conn_type": "aws",
            "login": "x",
            "password": "y",
            "extra": {
                "endpoint_url": "http://127.0.0.1:9",
                "region_name": "us-east-1",
                "service_config": {"s3": {"bucket_name": "strm-bucket"}},
                "config_kwargs": {"connect_timeout": 1, "retries": {"max_attempts": 1}},
            },
        },
    )
    with pytest.raises(JobStartError, match="strm-bucket"):
        StrmDataConnectorHook("dead-s3").get_storage().check()


def test_a_connection_without_a_bucket_is_a_start_error_naming_it(airflow_conn) -> None:
    airflow_conn("no-bucket", {"conn_type": "aws", "extra": {}})
    with pytest.raises(JobStartError, match="no-bucket.*bucket_name"):
        StrmDataConnectorHook("no-bucket").get_storage()


def test_an_undefined_connection_is_a_start_error() -> None:
    with pytest.raises(JobStartError, match="never-defined"):
        StrmDataConnectorHook("never-defined").get_storage()
