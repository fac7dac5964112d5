"""Shared fixtures: the STRM reference job, and real servers (PostgreSQL, moto's S3, the GCS emulator).

Servers are started per session on free ports and stopped afterwards. When one
cannot be reached the test is skipped with the reason, except under CI=true,
where it fails: CI must never silently skip what it is meant to test.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
ROOT = TESTS.parent
sys.path.insert(0, str(TESTS))  # shared test modules: reference_checks, airflow_harness
sys.path.insert(0, str(TESTS / "core"))  # murmur3_reference

# Airflow reads its home at import: give the test process one of its own before anything imports airflow.
_HOME = Path(tempfile.mkdtemp(prefix="strm-test-airflow-"))
os.environ.setdefault("AIRFLOW_HOME", str(_HOME))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

IN_CI = os.environ.get("CI", "").lower() == "true"
BIN = Path(sys.executable).parent


def unavailable(reason: str) -> None:
    """Skip, or under CI=true fail: a missing dependency must not pass unnoticed in CI."""
    if IN_CI:
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


# --------------------------------------------------------------------------- STRM reference


@pytest.fixture(scope="session")
def strm_reference() -> Path:
    candidates = [ROOT.parent / "shared" / "strm-reference"]
    if os.environ.get("STRM_REFERENCE_DIR"):
        candidates.insert(0, Path(os.environ["STRM_REFERENCE_DIR"]))
    for candidate in candidates:
        if (candidate / "vectors.json").exists():
            return candidate.resolve()
    unavailable("the STRM reference job (../shared/strm-reference) is not next to this checkout")
    raise AssertionError  # unreachable


@pytest.fixture(scope="session")
def strm_vectors(strm_reference: Path) -> dict:
    return json.loads((strm_reference / "vectors.json").read_text())


# --------------------------------------------------------------------------- PostgreSQL


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test (dropped afterwards): each key store has its own KEK."""
    yield from _fresh_database()


@pytest.fixture(scope="module")
def pg_url_module() -> Iterator[str]:
    """A fresh PostgreSQL database shared by one test module (e.g. an Airflow metadata DB)."""
    yield from _fresh_database()


def _fresh_database() -> Iterator[str]:
    import sqlalchemy as sa

    admin_url = os.environ.get("STRM_TEST_PG_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
    name = f"strm_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
    except Exception as exc:  # noqa: BLE001 - any failure means "no PostgreSQL here"
        unavailable(f"PostgreSQL is not reachable at {admin_url}: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


# --------------------------------------------------------------------------- S3 (moto server)


@dataclass
class S3Server:
    endpoint_url: str

    def client(self):  # type: ignore[no-untyped-def]
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id="x",
            aws_secret_access_key="y",
            region_name="us-east-1",
        )

    def create_bucket(self, name: str | None = None) -> str:
        name = name or f"strm-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def connection(self, bucket: str) -> dict:
        return {
            "conn_type": "aws",
            "login": "x",
            "password": "y",
            "extra": {
                "endpoint_url": self.endpoint_url,
                "region_name": "us-east-1",
                "service_config": {"s3": {"bucket_name": bucket}},
            },
        }


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    exe = BIN / "moto_server"
    if not exe.exists():
        unavailable("moto_server is not installed (pip install 'moto[server]')")
    port = free_port()
    proc = subprocess.Popen(
        [str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        if not wait_for_port(port, proc):
            unavailable(f"moto_server did not start on port {port}")
        yield S3Server(f"http://127.0.0.1:{port}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# --------------------------------------------------------------------------- GCS (gcp-storage-emulator)


@dataclass
class GCSServer:
    endpoint_url: str

    def client(self):  # type: ignore[no-untyped-def]
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(project="p", credentials=AnonymousCredentials())

    def create_bucket(self, name: str | None = None) -> str:
        name = name or f"strm-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(name)
        return name

    def connection(self, bucket: str) -> dict:
        return {
            "conn_type": "google_cloud_platform",
            "extra": {"project": "p", "is_anonymous": True, "bucket_name": bucket},
        }


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[GCSServer]:
    exe = BIN / "gcp-storage-emulator"
    if not exe.exists():
        unavailable("gcp-storage-emulator is not installed")
    port = free_port()
    proc = subprocess.Popen(
        [str(exe), "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    previous = os.environ.get("STORAGE_EMULATOR_HOST")
    try:
        if not wait_for_port(port, proc):
            unavailable(f"gcp-storage-emulator did not start on port {port}")
        os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{port}"
        yield GCSServer(f"http://127.0.0.1:{port}")
    finally:
        if previous is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = previous
        proc.terminate()
        proc.wait(timeout=10)


# --------------------------------------------------------------------------- Airflow connections


def conn_env_name(conn_id: str) -> str:
    """Airflow's environment variable for a connection id (EnvironmentVariablesBackend: upper-cased)."""
    return f"AIRFLOW_CONN_{conn_id.upper()}"


@pytest.fixture
def airflow_conn(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, dict], None]:
    """Define an Airflow connection for this test only, the way users do: an AIRFLOW_CONN_* variable."""

    def define(conn_id: str, conn: dict) -> None:
        monkeypatch.setenv(conn_env_name(conn_id), json.dumps(conn))

    return define


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A migrated Airflow home (SQLite) with a DAGs folder, for `airflow dags test` runs."""
    from airflow_harness import make_airflow_home

    return make_airflow_home(tmp_path_factory.mktemp("airflow"))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_HOME, ignore_errors=True)
