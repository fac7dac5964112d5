"""EncryptBatchOperator in a real Airflow (`airflow dags test`), on S3 and GCS servers."""

from __future__ import annotations

import json
import os

import pytest
from reference_checks import check_reference_outputs

from airflow_provider_strm.core.errors import ConfigError, JobStartError, RecordError
from airflow_provider_strm.core.keystore import KeyStore, new_kek
from airflow_provider_strm.operators._common import STRM_RETRY_POLICY

REFERENCE_DAG = """
from datetime import datetime, timezone
from airflow.sdk import DAG
from airflow_provider_strm.operators.encrypt import EncryptBatchOperator

with DAG("{dag_id}", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)):
    EncryptBatchOperator(
        task_id="encrypt",
        batch_job_config={config!r},
        data_contract={contract!r},
        keystore_conn_id="strm_keystore_test",
        retries=2,
        {extra}
    )
"""


@pytest.fixture
def keystore_conn(tmp_path):  # type: ignore[no-untyped-def]
    kek = new_kek()
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    return url, kek, {"conn_type": "strm_keystore", "extra": {"url": url, "kek_secret": kek}}


def run_reference_dag(airflow_home, strm_reference, dag_id, connections, extra_env=None, extra=""):  # type: ignore[no-untyped-def]
    airflow_home.write_dag(
        dag_id,
        REFERENCE_DAG.format(
            dag_id=dag_id,
            config=str(strm_reference / "batch-job-config.json"),
            contract=str(strm_reference / "online-retail-contract.json"),
            extra=extra,
        ),
    )
    return airflow_home.dags_test(dag_id, connections=connections, extra_env=extra_env)


def test_the_strm_reference_job_runs_unchanged_against_s3(
    airflow_home, s3_server, strm_reference, strm_vectors, keystore_conn
) -> None:
    bucket = s3_server.create_bucket()
    s3 = s3_server.client()
    s3.upload_file(str(strm_reference / "uci_online_retail.csv"), bucket, "uci_online_retail.csv")
    url, kek, ks_conn = keystore_conn
    done = run_reference_dag(
        airflow_home,
        strm_reference,
        "strm_reference_s3",
        {"s3-batch-demo": s3_server.connection(bucket), "strm_keystore_test": ks_conn},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert airflow_home.task_states("strm_reference_s3")[("encrypt", -1)][0] == "success"
    encrypted = s3.get_object(Bucket=bucket, Key="uci_online_retail/encrypted.csv")["Body"].read()
    keys = s3.get_object(Bucket=bucket, Key="uci_online_retail/keys.csv")["Body"].read()
    check_reference_outputs(strm_reference / "uci_online_retail.csv", encrypted, keys, strm_vectors)
    summary = airflow_home.xcom("strm_reference_s3", "encrypt")
    assert summary["state"] == "FINISHED" and summary["rows_in"] == summary["rows_out"] == 19_998
    assert summary["outputs"]["encrypted"] == "s3-batch-demo:uci_online_retail/encrypted.csv"
    assert "encryptionKey" not in json.dumps(summary) and kek not in json.dumps(summary)
    store = KeyStore(url, kek)
    assert summary["keys_created"] == store.count_keys("7824e975-20e1-4995-b129-2f9582728ca5")


def test_the_strm_reference_job_runs_unchanged_against_gcs(
    airflow_home, gcs_server, strm_reference, strm_vectors, keystore_conn
) -> None:
    bucket = gcs_server.create_bucket()
    client = gcs_server.client()
    client.bucket(bucket).blob("uci_online_retail.csv").upload_from_filename(
        str(strm_reference / "uci_online_retail.csv")
    )
    done = run_reference_dag(
        airflow_home,
        strm_reference,
        "strm_reference_gcs",
        {"s3-batch-demo": gcs_server.connection(bucket), "strm_keystore_test": keystore_conn[2]},
        extra_env={"STORAGE_EMULATOR_HOST": os.environ["STORAGE_EMULATOR_HOST"]},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    encrypted = client.bucket(bucket).blob("uci_online_retail/encrypted.csv").download_as_bytes()
    keys = client.bucket(bucket).blob("uci_online_retail/keys.csv").download_as_bytes()
    check_reference_outputs(strm_reference / "uci_online_retail.csv", encrypted, keys, strm_vectors)


def test_a_malformed_timestamp_fails_the_task_at_once_naming_row_value_and_pattern(
    airflow_home, s3_server, strm_reference, keystore_conn
) -> None:
    bucket = s3_server.create_bucket()
    s3 = s3_server.client()
    lines = (strm_reference / "uci_online_retail.csv").read_bytes().split(b"\n")
    lines[5] = lines[5].replace(b"2010-12-01 08:26:00", b"2010-12-01T08:26")
    s3.put_object(Bucket=bucket, Key="uci_online_retail.csv", Body=b"\n".join(lines))
    done = run_reference_dag(
        airflow_home,
        strm_reference,
        "strm_reference_bad_ts",
        {"s3-batch-demo": s3_server.connection(bucket), "strm_keystore_test": keystore_conn[2]},
    )
    output = done.stdout + done.stderr
    assert "Invalid timestamp [2010-12-01T08:26 does not match yyyy-MM-dd HH:mm:ss] in row #5" in output
    state, tries = airflow_home.task_states("strm_reference_bad_ts")[("encrypt", -1)]
    assert state == "failed" and tries == 1, "a processing error is not retried"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])] == ["uci_online_retail.csv"]
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_start_failures_retry_and_processing_failures_fail_at_once() -> None:
    retry = STRM_RETRY_POLICY.evaluate(JobStartError("bucket unreachable"), 1, 4)
    assert retry.action.value == "retry"
    for exc in (RecordError("f.csv", 3, "bad"), ConfigError("encryption", "bad")):
        assert STRM_RETRY_POLICY.evaluate(exc, 1, 4).action.value == "fail"
    assert STRM_RETRY_POLICY.evaluate(RuntimeError("?"), 1, 4).action.value == "default"


def test_an_unreachable_source_is_error_starting_and_the_task_is_retried(
    airflow_home, strm_reference, keystore_conn
) -> None:
    url, kek, ks_conn = keystore_conn
    dead_s3 = {
        "conn_type": "aws",
        "login": "x",
        "password": "y",
        "extra": {
            "endpoint_url": "http://127.0.0.1:9",
            "region_name": "us-east-1",
            "service_config": {"s3": {"bucket_name": "strm-unreachable"}},
            "config_kwargs": {"connect_timeout": 1, "retries": {"max_attempts": 1}},
        },
    }
    done = run_reference_dag(
        airflow_home,
        strm_reference,
        "strm_reference_unreachable",
        {"s3-batch-demo": dead_s3, "strm_keystore_test": ks_conn},
        extra="retry_delay=__import__('datetime').timedelta(seconds=1),",
    )
    assert done.returncode != 0
    state, tries = airflow_home.task_states("strm_reference_unreachable")[("encrypt", -1)]
    assert state == "failed" and tries == 3, "retries=2: three tries in all"
    jobs = KeyStore(url, kek).jobs()
    assert [j["state"] for j in jobs] == ["ERROR_STARTING"] * 3
    assert "could not" not in (jobs[0]["message"] or "") and "strm-unreachable" in (jobs[0]["message"] or "")
