"""A real, distributed Airflow for tests: api-server, scheduler, dag-processor and triggerer processes
on a PostgreSQL metadata database, LocalExecutor. Driven through the REST API and the CLI."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

AIRFLOW = str(Path(sys.executable).parent / "airflow")
COMPONENTS = (["api-server"], ["scheduler"], ["dag-processor"], ["triggerer"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class AirflowCluster:
    env: dict[str, str]
    port: int
    logs: Path
    procs: list[subprocess.Popen] = field(default_factory=list)
    token: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180) -> None:
        done = subprocess.run([AIRFLOW, "db", "migrate"], env=self.env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed: {done.stderr[-2000:]}")
        self.logs.mkdir(parents=True, exist_ok=True)
        for component in COMPONENTS:
            log = open(self.logs / f"{component[0]}.log", "w")  # noqa: SIM115 - closed by the process end
            args = [AIRFLOW, *component] + (["--port", str(self.port)] if component[0] == "api-server" else [])
            self.procs.append(subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc, component in zip(self.procs, COMPONENTS, strict=True):
                if proc.poll() is not None:
                    raise RuntimeError(f"{component[0]} exited: {self.log_tail(component[0])}")
            try:
                self.token = self._token()
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(1)
        raise RuntimeError(f"the api-server did not answer in {timeout} s: {self.log_tail('api-server')}")

    def log_tail(self, component: str, chars: int = 3000) -> str:
        path = self.logs / f"{component}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()

    def _token(self) -> str:
        request = urllib.request.Request(f"{self.url}/auth/token", method="GET")
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())["access_token"]

    def api(self, method: str, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.url}/api/v2{path}",
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"{}")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([AIRFLOW, *args], env=self.env, capture_output=True, text=True, timeout=120)

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.api("GET", f"/dags/{dag_id}")
                return
            except urllib.error.HTTPError:
                time.sleep(2)
        raise TimeoutError(f"DAG {dag_id} was not parsed in {timeout} s: {self.log_tail('dag-processor')}")

    def wait_for_runs(self, dag_id: str, count: int, timeout: float = 300) -> list[dict]:
        deadline = time.monotonic() + timeout
        runs: list[dict] = []
        while time.monotonic() < deadline:
            runs = self.api("GET", f"/dags/{dag_id}/dagRuns?limit=100")["dag_runs"]
            if len(runs) >= count and all(r["state"] in ("success", "failed") for r in runs):
                return runs
            time.sleep(2)
        raise TimeoutError(f"runs of {dag_id} not done in {timeout} s: {[r['state'] for r in runs]}")


def cluster_env(base: dict[str, str], home: Path, pg_url: str, dags: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in base.items() if not k.startswith("AIRFLOW__")}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg_url,
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
        }
    )
    return env


def make_cluster(base_env: dict[str, str], root: Path, pg_url: str, dags: Path) -> AirflowCluster:
    port = _free_port()
    return AirflowCluster(cluster_env(base_env, root / "airflow", pg_url, dags, port), port, root / "logs")


__all__ = ["AirflowCluster", "make_cluster", "os"]
