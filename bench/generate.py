"""Deterministic synthetic clickstream for the benchmark, with its STRM job config and data contract.

    .venv/bin/python bench/generate.py --rows 100000 --out /tmp/bench   # events.csv, job.json, contract.json

Rows are written one at a time (the file is never held in memory). The same
``rows`` and ``seed`` always give the same bytes. About 100k distinct sessions
(the key field) of two hours each, 5 PII fields, event times over 3 days, rows
in time order like an event log (or in random order: ``--order random``).
"""

from __future__ import annotations

import argparse
import csv
import json
import random
from datetime import datetime, timedelta
from pathlib import Path

COLUMNS = ["event_id", "session_id", "user_id", "email", "ip_address", "user_agent", "url", "consent", "event_time"]
#: PII field → purpose level
PII = {"user_id": 1, "email": 2, "ip_address": 2, "user_agent": 1, "url": 1}
KEY_FIELD = "session_id"
SESSIONS = 100_000
DAYS = 3
SOURCE_FILE = "events.csv"
OUTPUT_PREFIX = "out"
CONSENTS = ["[0,1,2]", "[1]", "2", "[0]", "[1,2]", "[0,1]"]
AGENTS = [
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
    "curl/8.5.0",
]
START = datetime(2026, 11, 18)


def generate_csv(path: Path, rows: int, *, sessions: int = SESSIONS, seed: int = 7, order: str = "time") -> int:
    """Write ``rows`` events to ``path``; returns the file size in bytes.

    Session ``s`` is active for two hours from second ``s * 7919 mod 3 days`` (distinct starts).
    ``order="time"``: events in time order, as an event log is written (each row at the next instant
    of the 3 days, from one of the sessions active then). ``order="random"``: each row from any
    session at a random moment of its two hours, rows in no order, so every part of the file holds
    nearly every key (the worst case for key locality).
    """
    if order not in ("time", "random"):
        raise ValueError(f"order must be 'time' or 'random', not {order!r}")
    rng = random.Random(seed)
    span = DAYS * 86_400
    starting_at: dict[int, int] = {(s * 7919) % span: s for s in range(sessions)}
    with path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(COLUMNS)
        for i in range(rows):
            if order == "time":
                second = i * span // rows
                s = None
                while s is None:  # a session that started within the last two hours
                    s = starting_at.get((second - rng.randrange(7200)) % span)
            else:
                s = rng.randrange(sessions)
                second = (s * 7919 + rng.randrange(7200)) % span
            user = f"user-{s % 40_000:05d}"  # a user has several sessions
            when = START + timedelta(seconds=second)
            out.writerow(
                [
                    f"e{i:010d}",
                    f"session-{s:06d}",
                    user,
                    f"{user}@example.com",
                    f"10.{s % 256}.{(s // 256) % 256}.{rng.randrange(1, 255)}",
                    AGENTS[s % len(AGENTS)],
                    f"https://shop.example.com/p/{rng.randrange(5000)}?ref=s{s % 97}",
                    rng.choice(CONSENTS),
                    when.strftime("%Y-%m-%d %H:%M:%S"),
                ]
            )
    return path.stat().st_size


def job_config() -> dict:
    """The STRM batch job config (same shape as dags/strm_example/clickstream-job.json)."""
    target = {"data_connector_ref": {"name": "bench_output"}, "path_prefix": OUTPUT_PREFIX}
    return {
        "source_data": {
            "data_connector_ref": {"name": "bench_input"},
            "path_prefix": "",
            "file_name": SOURCE_FILE,
            "data_type": {"csv": {"charset": "UTF-8"}},
        },
        "consent": {"default_consent_levels": [0], "consent_level_extractor": {"field": "consent"}},
        "encryption": {
            "batch_job_group_id": "00000000-0000-4000-8000-00000000be4c",
            "timestamp_config": {
                "field": "event_time",
                "format": "yyyy-MM-dd HH:mm:ss",
                "default_time_zone": {"id": "UTC"},
            },
        },
        "event_contract_ref": {"handle": "bench", "name": "clickstream", "version": "1.0.0"},
        "encrypted_data": {"target": dict(target)},
        "encryption_keys_data": {"target": dict(target)},
        "derived_data": [{"target": dict(target), "consent_levels": [1], "consent_level_type": "CUMULATIVE"}],
    }


def data_contract() -> dict:
    """The data contract (same shape as dags/strm_example/clickstream-contract.json)."""
    return {
        "ref": {"handle": "bench", "name": "clickstream", "version": "1.0.0"},
        "keyField": KEY_FIELD,
        "dataSubjectField": "user_id",
        "fieldMetadata": [
            {"fieldName": name, "personalDataConfig": {"isPii": True, "purposeLevel": level}}
            for name, level in PII.items()
        ],
    }


def generate(workdir: Path, rows: int, *, seed: int = 7, order: str = "time", name: str = SOURCE_FILE) -> int:
    """events.csv, job.json and contract.json in ``workdir``; returns the CSV's size in bytes."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "job.json").write_text(json.dumps(job_config(), indent=2) + "\n")
    (workdir / "contract.json").write_text(json.dumps(data_contract(), indent=2) + "\n")
    return generate_csv(workdir / name, rows, seed=seed, order=order)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=Path("."))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--order", choices=["time", "random"], default="time", help="rows in time order or none")
    args = parser.parse_args()
    size = generate(args.out, args.rows, seed=args.seed, order=args.order)
    print(f"{args.out / SOURCE_FILE}: {args.rows} rows, {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
