"""Key-management operators in a real Airflow, and secrets hygiene: a full encrypt + derive + key-management
run at DEBUG leaves no plaintext PII and no key material in logs, XComs, rendered templates or exceptions."""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
from pathlib import Path

from reference_checks import parse_csv

from airflow_provider_strm.core.keystore import KeyStore, new_kek

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "dags" / "strm_example"

DAG = """
from datetime import datetime, timezone
from airflow.sdk import DAG
from airflow_provider_strm.operators.batch_job_group import strm_batch_job_group
from airflow_provider_strm.operators.keys import (
    ExportKeysOperator, ForgetDataSubjectsOperator, PurgeExpiredKeysOperator,
)

GROUP = "5b0f6f1e-2a53-4d7e-9c55-0f3d2e7a9b11"
with DAG("strm_hygiene", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)):
    jobs = strm_batch_job_group(
        "clickstream",
        batch_job_config={config!r},
        data_contract={contract!r},
        source_prefix="clickstream/dt={{{{ ds }}}}",
        keystore_conn_id="strm_keystore_test",
        config_overrides={{
            "retention_days": 30,
            "encrypted_data.target.path_prefix": "encrypted",
            "encryption_keys_data.target.path_prefix": "keys",
            "derived_data[0].target.path_prefix": "derived",
            "derived_data[1].target.path_prefix": "derived",
        }},
    )
    forget = ForgetDataSubjectsOperator(
        task_id="forget", group_id=GROUP, subjects_conn_id="strm_sample_output", subjects_path="requests/forget.txt",
        keystore_conn_id="strm_keystore_test",
    )
    export = ExportKeysOperator(
        task_id="export", group_id=GROUP, target_conn_id="strm_sample_output",
        target_path="export/{{{{ ds }}}}-keys.csv", window_from="{{{{ ds }}}}",
        window_to="{{{{ macros.ds_add(ds, 1) }}}}", keystore_conn_id="strm_keystore_test",
    )
    purge = PurgeExpiredKeysOperator(task_id="purge", keystore_conn_id="strm_keystore_test")
    jobs >> forget >> export >> purge
"""


def test_key_operators_run_and_nothing_secret_leaks(airflow_home, tmp_path) -> None:
    out = tmp_path / "output"
    (out / "requests").mkdir(parents=True)
    (out / "requests" / "forget.txt").write_text("user-0018\nuser-0027\n")
    kek = new_kek()
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    airflow_home.write_dag(
        "strm_hygiene",
        DAG.format(config=str(SAMPLE / "clickstream-job.json"), contract=str(SAMPLE / "clickstream-contract.json")),
    )
    done = airflow_home.dags_test(
        "strm_hygiene",
        connections={
            "strm_sample_data": {"conn_type": "fs", "extra": {"path": str(SAMPLE / "data")}},
            "strm_sample_output": {"conn_type": "fs", "extra": {"path": str(out)}},
            "strm_keystore_test": {"conn_type": "strm_keystore", "extra": {"url": url, "kek_secret": kek}},
        },
        extra_env={"AIRFLOW__LOGGING__LOGGING_LEVEL": "DEBUG"},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    states = airflow_home.task_states("strm_hygiene")
    assert {s for s, _ in states.values()} == {"success"}

    forgot = airflow_home.xcom("strm_hygiene", "forget")
    assert forgot["subjects"] == 2 and forgot["keys_deleted"] >= 2
    exported = parse_csv((out / "export/2026-11-20-keys.csv").read_bytes())
    store = KeyStore(url, kek)
    day = 1795132800000  # 2026-11-20T00:00Z: the export holds exactly that UTC day's keys
    in_window = list(
        store.export_keys("5b0f6f1e-2a53-4d7e-9c55-0f3d2e7a9b11", window_from=day, window_to=day + 86_400_000)
    )
    assert [r[0] for r in exported[1:]] == [k.key_link for k in in_window]
    assert store.audit_log()[0]["action"] == "forget_subjects"

    # --- hygiene: collect every log line, XCom value, rendered template and exception text
    texts = [done.stdout, done.stderr]
    for log in (airflow_home.home / "logs").rglob("*"):
        if log.is_file():
            texts.append(log.read_text(errors="replace"))
    with sqlite3.connect(airflow_home.home / "airflow.db") as db:
        for table in ("xcom", "rendered_task_instance_fields", "task_instance", "log"):
            for row in db.execute(f"SELECT * FROM {table}"):  # noqa: S608 - fixed table names
                texts.append(
                    json.dumps([c if not isinstance(c, bytes) else c.decode("latin-1") for c in row], default=str)
                )
    haystack = "\n".join(texts)

    secrets = [kek]
    for keys_file in (out / "keys").glob("*.csv"):
        for row in parse_csv(keys_file.read_bytes())[1:]:
            value = json.loads(row[1])["key"][0]["keyData"]["value"]
            raw = base64.b64decode(value)[2:]
            secrets += [value, base64.b64encode(raw).decode(), raw.hex()]
    pii: set[str] = set()
    for source in (SAMPLE / "data/clickstream/dt=2026-11-20").glob("*.csv"):
        for row in parse_csv(source.read_bytes())[1:]:
            pii.update(v for v in (row[2], row[3], row[4]) if v)  # user_id, email, ip_address
    assert len(haystack) > 10_000, "the run logged at DEBUG"
    # One exclusion, narrow on purpose: `airflow dags test` runs tasks with an in-process supervisor that logs
    # every request body at DEBUG, including the MaskSecret requests that *register* secrets for masking
    # (Airflow sends one for every connection's extra). A real worker's supervisor logs "(body omitted)".
    haystack = "\n".join(
        line for line in haystack.splitlines() if not ("Sending request" in line and "MaskSecret(" in line)
    )
    leaked_secrets = [s for s in secrets if s in haystack]
    leaked_pii = sorted(v for v in pii if v in haystack)
    assert not leaked_secrets, "key material in logs/XCom/rendered templates"
    assert not leaked_pii, f"plaintext PII in logs/XCom/rendered templates: {leaked_pii[:5]}"
    shutil.rmtree(out / "requests")
