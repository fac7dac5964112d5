"""The docker deployment is well-formed (no Docker engine runs here, so it is validated, not started)."""

from __future__ import annotations

import json
import re
from importlib.metadata import version
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]
# The Compose Specification's JSON schema, as shipped in docker-compose 1.29.2 (compose/config/compose_spec.json).
SCHEMA = json.loads((ROOT / "tests" / "data" / "compose_spec.json").read_text())


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker" / "docker-compose.yaml").read_text())


def test_the_compose_file_validates_against_the_compose_specification() -> None:
    jsonschema.validate(compose(), SCHEMA)


def test_the_compose_file_runs_every_airflow_service_and_the_stores() -> None:
    services = compose()["services"]
    commands = {name: svc.get("command") for name, svc in services.items()}
    for command in (["api-server"], ["scheduler"], ["dag-processor"], ["triggerer"], ["celery", "worker"]):
        assert command in commands.values(), command
    assert {"postgres", "minio", "minio-init", "redis"} <= set(services)
    env = services["airflow-scheduler"]["environment"]
    keystore = json.loads(env["AIRFLOW_CONN_STRM_KEYSTORE_DEFAULT"])
    assert keystore["conn_type"] == "strm_keystore" and keystore["host"] == "postgres"
    output = json.loads(env["AIRFLOW_CONN_STRM_SAMPLE_OUTPUT"])
    assert output["extra"]["service_config"]["s3"]["bucket_name"] == "strm-output"
    assert "mc mb --ignore-existing local/strm-output" in services["minio-init"]["entrypoint"]
    assert services["airflow-worker"]["shm_size"] == "1gb"  # room for jobs' worker processes (shared memory)


def test_the_image_is_built_on_the_airflow_version_we_test_with() -> None:
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    tag = re.search(r"^FROM apache/airflow:(\S+)-python(\S+)$", dockerfile, re.MULTILINE)
    assert tag is not None
    assert tag.group(1) == version("apache-airflow")
    assert tag.group(2) == "3.11"


def test_the_schema_check_would_catch_a_mistake() -> None:
    broken = compose()
    broken["services"]["airflow-worker"]["comand"] = ["celery", "worker"]
    try:
        jsonschema.validate(broken, SCHEMA)
    except jsonschema.ValidationError as exc:
        assert "comand" in exc.message
    else:
        raise AssertionError("a misspelt service key passed the schema")
