"""Run the example DAG end to end with embedded defaults: SQLite, local files.

    python scripts/run_example.py [--date 2026-11-20] [--home .demo]

Sets up an Airflow home under ``--home`` (SQLite metadata DB), the example's
connections as ``AIRFLOW_CONN_*`` variables (sample data bundled in
``dags/strm_example/data``, outputs in ``<home>/output``, key store
``<home>/strm_keystore.db`` with a key-encryption key kept in ``<home>/kek``),
then runs ``airflow dags test``. Used by ``make demo`` and by the test suite.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DAG_ID = "strm_example_encrypt"


def example_env(home: Path) -> dict[str, str]:
    """The environment the example DAG runs in (also used by tests)."""
    home.mkdir(parents=True, exist_ok=True)
    kek_file = home / "kek"
    if not kek_file.exists():
        kek_file.write_text(base64.b64encode(os.urandom(32)).decode())
        kek_file.chmod(0o600)
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(home / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW_CONN_STRM_SAMPLE_DATA": json.dumps(
                {"conn_type": "fs", "extra": {"path": str(ROOT / "dags" / "strm_example" / "data")}}
            ),
            "AIRFLOW_CONN_STRM_SAMPLE_OUTPUT": json.dumps({"conn_type": "fs", "extra": {"path": str(home / "output")}}),
            "AIRFLOW_CONN_STRM_KEYSTORE_DEFAULT": json.dumps(
                {
                    "conn_type": "strm_keystore",
                    "extra": {"path": str(home / "strm_keystore.db"), "kek_secret": kek_file.read_text().strip()},
                }
            ),
        }
    )
    (home / "output").mkdir(exist_ok=True)
    return env


def run_example(
    home: Path, date: str, dag_id: str = DAG_ID, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**example_env(home), **(extra_env or {})}
    airflow = str(Path(sys.executable).parent / "airflow")
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True, text=True)
    return subprocess.run([airflow, "dags", "test", dag_id, date], env=env, capture_output=True, text=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--date", default="2026-11-20", help="logical date of the run (partition dt=DATE)")
    parser.add_argument("--home", default=str(ROOT / ".demo"), help="folder for Airflow home, key store and outputs")
    parser.add_argument("--dag-id", default=DAG_ID)
    args = parser.parse_args()
    home = Path(args.home).resolve()
    done = run_example(home, args.date, args.dag_id)
    sys.stdout.write(done.stdout[-4000:])
    sys.stderr.write(done.stderr[-4000:])
    if done.returncode != 0:
        print(f"\nexample DAG failed (exit {done.returncode})", file=sys.stderr)
        return done.returncode
    print(f"\nexample DAG {args.dag_id} succeeded for {args.date}; outputs:")
    for path in sorted((home / "output").rglob("*.csv")):
        print(f"  {path.relative_to(home)}  ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
