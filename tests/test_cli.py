"""`strm-batch` runs the same jobs without a scheduler, connections resolved from AIRFLOW_CONN_* variables."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from reference_checks import parse_csv

from airflow_provider_strm.core.keystore import new_kek

CLI = str(Path(sys.executable).parent / "strm-batch")


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=120)


@pytest.fixture
def demo_bucket(tmp_path: Path, strm_reference: Path) -> tuple[Path, dict[str, str]]:
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    shutil.copy(strm_reference / "uci_online_retail.csv", bucket)
    env = {
        "AIRFLOW_CONN_S3-BATCH-DEMO": json.dumps({"conn_type": "fs", "extra": {"path": str(bucket)}}),
        "STRM_KEK_SECRET": new_kek(),
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
    }
    return bucket, env


def test_run_encrypts_and_derives_the_reference_job(demo_bucket, strm_reference, tmp_path) -> None:
    bucket, env = demo_bucket
    config, contract = strm_reference / "batch-job-config.json", strm_reference / "online-retail-contract.json"
    keystore = f"sqlite:///{tmp_path / 'keys.db'}"
    done = run_cli("run", str(config), "--contract", str(contract), "--keystore", keystore, "--workers", "2", env=env)
    assert done.returncode == 0, done.stderr
    encrypt, derive = json.loads(done.stdout)
    assert encrypt["state"] == derive["state"] == "FINISHED"
    assert encrypt["rows_in"] == 19_998 and derive["rows_out"] + derive["excluded"] == 19_998
    derived = parse_csv((bucket / "uci_online_retail/decrypted-0.csv").read_bytes())
    source = parse_csv((strm_reference / "uci_online_retail.csv").read_bytes())
    assert [row[:8] for row in derived] == [row[:8] for row in [source[0] + [], *source[1:]]]
    # a keys file is enough to derive again, without the key store
    (bucket / "uci_online_retail/decrypted-0.csv").unlink()
    keys_file = str(bucket / "uci_online_retail/keys.csv")
    again = run_cli("derive", str(config), "--contract", str(contract), "--keys-file", keys_file, env=env)
    assert again.returncode == 0, again.stderr
    assert parse_csv((bucket / "uci_online_retail/decrypted-0.csv").read_bytes()) == derived


def test_exit_codes_tell_config_errors_from_data_errors_from_start_errors(
    demo_bucket, strm_reference, tmp_path
) -> None:
    bucket, env = demo_bucket
    contract = str(strm_reference / "online-retail-contract.json")
    keystore = f"sqlite:///{tmp_path / 'keys.db'}"
    bad_config = tmp_path / "bad.json"
    doc = json.loads((strm_reference / "batch-job-config.json").read_text())
    doc["encryption"]["timestamp_config"]["format"] = "yyyy-MM-dd QQQ"
    bad_config.write_text(json.dumps(doc))
    done = run_cli("encrypt", str(bad_config), "--contract", contract, "--keystore", keystore, env=env)
    assert done.returncode == 2 and "encryption.timestamp_config.format" in done.stderr
    config = str(strm_reference / "batch-job-config.json")
    missing = run_cli(
        "encrypt", config, "--contract", contract, "--keystore", keystore, "--source-path", "nope.csv", env=env
    )
    assert missing.returncode == 75 and "nope.csv" in missing.stderr
    (bucket / "bad.csv").write_text("InvoiceNo,InvoiceDate,CustomerID\n1,yesterday,17850\n")
    bad = run_cli(
        "encrypt", config, "--contract", contract, "--keystore", keystore, "--source-path", "bad.csv", env=env
    )
    assert (
        bad.returncode == 1
        and "Invalid timestamp [yesterday does not match yyyy-MM-dd HH:mm:ss] in row #1" in bad.stderr
    )


def test_new_kek_prints_32_random_bytes_in_base64() -> None:
    import base64

    done = run_cli("keys", "new-kek", env={})
    assert done.returncode == 0 and len(base64.b64decode(done.stdout.strip())) == 32


def test_keys_commands_list_export_forget_rotate_and_purge(demo_bucket, strm_reference, tmp_path) -> None:
    bucket, env = demo_bucket
    config, contract = strm_reference / "batch-job-config.json", strm_reference / "online-retail-contract.json"
    ks = ["--keystore", f"sqlite:///{tmp_path / 'keys.db'}"]
    assert run_cli("encrypt", str(config), "--contract", str(contract), *ks, env=env).returncode == 0
    group = "7824e975-20e1-4995-b129-2f9582728ca5"
    (listed,) = json.loads(run_cli("keys", "list", *ks, env=env).stdout)
    assert listed["group_id"] == group and listed["keys"] > 0
    export = run_cli(
        "keys",
        "export",
        group,
        "--to-file",
        "s3-batch-demo:export/keys.csv",
        "--from-day",
        "2010-12-01",
        "--until-day",
        "2010-12-02",
        *ks,
        env=env,
    )
    assert export.returncode == 0, export.stderr
    exported = parse_csv((bucket / "export/keys.csv").read_bytes())
    assert exported[0] == ["keyLink", "encryptionKey", "policyId", "expiresAt"]
    assert 0 < len(exported) - 1 == json.loads(export.stdout)["keys"] < listed["keys"]
    forget = subprocess.run(
        [CLI, "keys", "forget", group, *ks],
        input="17850\n12583\n",
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    assert forget.returncode == 0 and json.loads(forget.stdout)["subjects"] == 2
    assert "17850" not in forget.stdout + forget.stderr
    new = new_kek()
    rotated = run_cli("keys", "rotate-kek", *ks, env={**env, "STRM_NEW_KEK_SECRET": new})
    assert json.loads(rotated.stdout)["keys_rewrapped"] == listed["keys"] - json.loads(forget.stdout)["keys_deleted"]
    stale = run_cli("keys", "purge", *ks, env=env)
    assert stale.returncode == 1 and "wrong KEK" in stale.stderr
    purged = run_cli("keys", "purge", *ks, env={**env, "STRM_KEK_SECRET": new})
    assert json.loads(purged.stdout) == {"keys_deleted": 0}  # this job set no retention
