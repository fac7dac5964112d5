"""A real Airflow for tests: its own home, SQLite metadata DB, and `airflow dags test` in a subprocess."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

AIRFLOW = str(Path(sys.executable).parent / "airflow")


@dataclass
class AirflowHome:
    home: Path
    dags: Path
    env: dict[str, str]

    def write_dag(self, name: str, source: str) -> Path:
        path = self.dags / f"{name}.py"
        path.write_text(textwrap.dedent(source))
        return path

    def dags_test(
        self,
        dag_id: str,
        date: str = "2026-11-20",
        connections: dict[str, dict] | None = None,
        extra_env: dict[str, str] | None = None,
        timeout: int = 300,
    ) -> subprocess.CompletedProcess[str]:
        env = {**self.env, **(extra_env or {})}
        for conn_id, conn in (connections or {}).items():
            env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(conn)
        return subprocess.run(
            [AIRFLOW, "dags", "test", dag_id, date], env=env, capture_output=True, text=True, timeout=timeout
        )

    def task_states(self, dag_id: str) -> dict[tuple[str, int], tuple[str, int]]:
        """(task_id, map_index) → (state, try_number) of the DAG's latest run."""
        with sqlite3.connect(self.home / "airflow.db") as db:
            run_id = db.execute(
                "SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
            ).fetchone()[0]
            rows = db.execute(
                "SELECT task_id, map_index, state, try_number FROM task_instance WHERE dag_id = ? AND run_id = ?",
                (dag_id, run_id),
            ).fetchall()
        return {(t, m): (s, n) for t, m, s, n in rows}

    def xcom(self, dag_id: str, task_id: str, map_index: int = -1) -> object:
        with sqlite3.connect(self.home / "airflow.db") as db:
            row = db.execute(
                "SELECT value FROM xcom WHERE dag_id = ? AND task_id = ? AND map_index = ? AND key = 'return_value' "
                "ORDER BY dag_run_id DESC LIMIT 1",
                (dag_id, task_id, map_index),
            ).fetchone()
        if row is None:
            return None
        value = row[0]
        return json.loads(value) if isinstance(value, (str, bytes)) else value


def make_airflow_home(root: Path) -> AirflowHome:
    home = root / "airflow"
    dags = root / "dags"
    dags.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    for key in [k for k in env if k.startswith("AIRFLOW")]:
        del env[key]
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        }
    )
    done = subprocess.run([AIRFLOW, "db", "migrate"], env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{done.stderr[-3000:]}")
    return AirflowHome(home, dags, env)
