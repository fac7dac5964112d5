"""OpenLineage events of a real run (the provider's listener, file transport): datasets and column lineage."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_encrypt_and_derive_events_carry_datasets_and_column_lineage(tmp_path) -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    from run_example import run_example

    events_file = tmp_path / "openlineage.jsonl"
    transport = {"type": "file", "log_file_path": str(events_file), "append": True}
    done = run_example(
        tmp_path / "example",
        "2026-11-20",
        extra_env={"AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(transport), "AIRFLOW__OPENLINEAGE__NAMESPACE": "strm"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    events = [json.loads(line) for line in events_file.read_text().splitlines() if line.strip()]
    complete = {
        e["job"]["name"].split(".", 1)[1]
        + f"[{e['run']['facets'].get('airflow', {}).get('taskInstance', {}).get('map_index', '')}]": e
        for e in events
        if e["eventType"] == "COMPLETE" and e["job"]["name"].count(".") >= 2
    }
    encrypt = next(e for name, e in complete.items() if name.startswith("clickstream.encrypt"))
    output_root = f"file://{(tmp_path / 'example' / 'output').resolve()}"
    assert encrypt["inputs"][0]["name"].startswith("clickstream/dt=2026-11-20/part-")
    enc_out, keys_out = encrypt["outputs"]
    assert enc_out["namespace"] == keys_out["namespace"] == output_root
    assert enc_out["name"].startswith("encrypted/dt=2026-11-20/") and keys_out["name"].startswith("keys/")
    columns = enc_out["facets"]["columnLineage"]["fields"]
    assert columns["email"]["inputFields"][0]["transformations"][0]["masking"] is True
    assert "encrypted" in columns["email"]["transformationDescription"]
    assert columns["url"]["transformationDescription"] == "copied unchanged"

    derive = next(e for name, e in complete.items() if name.startswith("clickstream.derive"))
    assert derive["inputs"][0]["name"].startswith("encrypted/dt=2026-11-20/")
    by_name = {o["name"].rsplit("/", 1)[1].split("-derived-")[1]: o for o in derive["outputs"]}
    level1 = by_name["1.csv"]["facets"]["columnLineage"]["fields"]
    assert level1["user_id"]["transformationDescription"].startswith("decrypted (CUMULATIVE consent 1)")
    assert level1["email"]["transformationDescription"] == "left encrypted (no consent)"
    granular = by_name["1-2.csv"]["facets"]["columnLineage"]["fields"]
    assert granular["email"]["transformationDescription"] == "masked (hashed)"
    assert granular["ip_address"]["transformationDescription"].startswith("decrypted (GRANULAR consent 1,2)")
