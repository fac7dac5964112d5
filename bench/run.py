"""Benchmark: our jobs against the cipher's bound and what users would pick instead.

    .venv/bin/python bench/run.py                  # 100k and 1M rows
    .venv/bin/python bench/run.py --rows 100000    # one size
    .venv/bin/python bench/run.py --with-10m       # adds 10M rows (slow)

Generates a synthetic clickstream (5 PII fields, ~100k sessions, 3 days), runs
each case in a fresh subprocess (so peak RSS is per case) and prints a Markdown
table, also written to bench/latest.md. Times are printed, never asserted.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
PII = {"user_id": 1, "email": 2, "ip_address": 2, "user_agent": 1, "url": 1}
COLUMNS = ["event_id", "session_id", "user_id", "email", "ip_address", "user_agent", "url", "consent", "event_time"]
AGENTS = ["Mozilla/5.0 (X11; Linux x86_64)", "Mozilla/5.0 (Macintosh)", "curl/8.5", "Mozilla/5.0 (iPhone)"]
SMALL_ONLY = 100_000  # the naive and presidio cases are too slow beyond this


def generate(path: Path, rows: int, sessions: int = 100_000, seed: int = 7) -> None:
    rng = random.Random(seed)
    start = datetime(2026, 11, 18)
    with path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(COLUMNS)
        for i in range(rows):
            s = rng.randrange(sessions)
            user = f"user-{s % 40_000:05d}"
            when = start + timedelta(seconds=(s * 7919 + i) % (3 * 86_400))
            out.writerow(
                [
                    f"e{i:09d}",
                    f"session-{s:06d}",
                    user,
                    f"{user}@example.com",
                    f"10.{s % 256}.{(s // 256) % 256}.{i % 250 + 1}",
                    AGENTS[s % len(AGENTS)],
                    f"https://shop.example.com/p/{rng.randrange(5000)}",
                    rng.choice(["[0,1,2]", "[1]", "2", "[0]", "[1,2]"]),
                    when.strftime("%Y-%m-%d %H:%M:%S"),
                ]
            )


def job_documents(workdir: Path) -> tuple[dict, dict]:
    config = {
        "source_data": {"file_name": "events.csv"},
        "consent": {"default_consent_levels": [0], "consent_level_extractor": {"field": "consent"}},
        "encryption": {
            "batch_job_group_id": "00000000-0000-4000-8000-000000000001",
            "timestamp_config": {
                "field": "event_time",
                "format": "yyyy-MM-dd HH:mm:ss",
                "default_time_zone": {"id": "UTC"},
            },
        },
        "event_contract_ref": {"handle": "bench", "name": "clickstream", "version": "1.0.0"},
        "encrypted_data": {"target": {"path_prefix": "out"}},
        "encryption_keys_data": {"target": {"path_prefix": "out"}},
        "derived_data": [{"target": {"path_prefix": "out"}, "consent_levels": [1], "consent_level_type": "CUMULATIVE"}],
    }
    contract = {"keyField": "session_id", "piiFields": PII, "dataSubjectField": "user_id"}
    return config, contract


# --------------------------------------------------------------------------- cases (run in a child process)


def _job(kind: str, workdir: Path):  # type: ignore[no-untyped-def]
    from airflow_provider_strm.core.config import load_batch_job_config
    from airflow_provider_strm.core.contract import load_data_contract
    from airflow_provider_strm.core.derive import DeriveJob
    from airflow_provider_strm.core.encrypt import EncryptJob
    from airflow_provider_strm.core.keystore import KeyStore
    from airflow_provider_strm.core.storage import LocalStorage

    config, contract = job_documents(workdir)
    store = KeyStore(f"sqlite:///{workdir / 'keys.db'}", (workdir / "kek").read_text())
    store.ensure_schema()
    job_class = EncryptJob if kind == "encrypt" else DeriveJob
    return job_class(
        load_batch_job_config(config), load_data_contract(contract), store, lambda c: LocalStorage(workdir)
    )


def case_encrypt(workdir: Path) -> dict:
    job = _job("encrypt", workdir)
    t = time.perf_counter()
    result = job.run()
    return {
        "seconds": time.perf_counter() - t,
        "rows": result.rows_in,
        "keys": f"{result.keys_created}/{result.keys_reused}",
    }


def case_derive(workdir: Path) -> dict:
    job = _job("derive", workdir)
    t = time.perf_counter()
    result = job.run()
    return {"seconds": time.perf_counter() - t, "rows": result.rows_in, "keys": "-"}


def _pii_values(workdir: Path) -> list[tuple[int, bytes]]:
    with (workdir / "events.csv").open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        idx = [header.index(f) for f in PII]
        key_idx = header.index("session_id")
        return [(hash(row[key_idx]) % 1024, row[i].encode()) for row in reader for i in idx if row[i]]


def case_cipher_bound(workdir: Path) -> dict:
    from cryptography.hazmat.primitives.ciphers.aead import AESSIV

    values = _pii_values(workdir)
    ciphers = [AESSIV(os.urandom(64)) for _ in range(1024)]  # one cipher per key, as the job does
    t = time.perf_counter()
    for k, v in values:
        ciphers[k].encrypt(v, [b""])
    rows = sum(1 for _ in (workdir / "events.csv").open()) - 1
    return {"seconds": time.perf_counter() - t, "rows": rows, "keys": "-"}


def case_naive(workdir: Path) -> dict:
    import base64

    import pandas as pd

    from airflow_provider_strm.core.keystore import KeyStore

    store = KeyStore(f"sqlite:///{workdir / 'naive-keys.db'}", (workdir / "kek").read_text())
    store.ensure_schema()
    t = time.perf_counter()
    frame = pd.read_csv(workdir / "events.csv", dtype=str, keep_default_na=False)

    def encrypt_row(row):  # type: ignore[no-untyped-def]
        day = int(pd.Timestamp(row["event_time"]).timestamp() * 1000) // 86_400_000 * 86_400_000
        key = store.get_or_create("naive", [(row["session_id"], day)])[(row["session_id"], day)]
        cipher = key.keyset.cipher()
        for field in PII:
            if row[field]:
                row[field] = cipher.encrypt(row[field])
        row["strmMeta.keyLink"] = key.key_link
        return row

    frame = frame.apply(encrypt_row, axis=1)
    frame.to_csv(workdir / "naive-out.csv", index=False)
    base64.b64encode(b"")
    return {"seconds": time.perf_counter() - t, "rows": len(frame), "keys": "-"}


def case_presidio(workdir: Path) -> dict:
    from presidio_anonymizer import AnonymizerEngine
    from presidio_anonymizer.entities import OperatorConfig, RecognizerResult

    engine = AnonymizerEngine()
    operators = {"DEFAULT": OperatorConfig("encrypt", {"key": "WmZq4t7w!z%C&F)J"})}
    t = time.perf_counter()
    rows = 0
    with (
        (workdir / "events.csv").open(newline="", encoding="utf-8") as fh,
        (workdir / "presidio-out.csv").open("w", newline="", encoding="utf-8") as out_fh,
    ):
        reader, writer = csv.reader(fh), csv.writer(out_fh)
        header = next(reader)
        writer.writerow(header)
        idx = [header.index(f) for f in PII]
        for row in reader:
            for i in idx:
                if row[i]:
                    span = [RecognizerResult("PII", 0, len(row[i]), 1.0)]
                    row[i] = engine.anonymize(text=row[i], analyzer_results=span, operators=operators).text
            writer.writerow(row)
            rows += 1
    return {"seconds": time.perf_counter() - t, "rows": rows, "keys": "-"}


CASES = {
    "encrypt": case_encrypt,
    "derive": case_derive,
    "cipher_bound": case_cipher_bound,
    "naive": case_naive,
    "presidio": case_presidio,
}
LABELS = {
    "encrypt": "EncryptJob, 1 core",
    "derive": "DeriveJob, 1 core",
    "cipher_bound": "cipher bound (bare AES-SIV loop, same values)",
    "naive": "naive pandas + per-row key lookup",
    "presidio": "presidio-anonymizer encrypt per value (analyzer left out)",
}


def run_case(case: str, workdir: Path) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--case", case, "--workdir", str(workdir)], capture_output=True, text=True
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["failed"])[-1]
        return {"error": last[:90]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="100000,1000000", help="comma-separated sizes")
    parser.add_argument("--with-10m", action="store_true", help="also 10M rows")
    parser.add_argument("--smoke", action="store_true", help="only our jobs and the cipher bound (for the tests)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        result = CASES[args.case](Path(args.workdir))
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return 0

    sizes = [int(s) for s in args.rows.split(",")] + ([10_000_000] if args.with_10m else [])
    lines = [
        f"Machine: {machine()}",
        "",
        "| case | rows | seconds | rows/s | MB/s | peak RSS MB | keys created/reused | vs cipher bound |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    print("\n".join(lines), flush=True)
    for rows in sizes:
        with tempfile.TemporaryDirectory(prefix="strm-bench-") as tmp:
            workdir = Path(tmp)
            generate(workdir / "events.csv", rows)
            (workdir / "kek").write_text(__import__("base64").b64encode(os.urandom(32)).decode())
            megabytes = (workdir / "events.csv").stat().st_size / 1e6
            cases = ["cipher_bound", "encrypt", "derive"] + ([] if args.smoke else ["naive", "presidio"])
            bound = None
            for case in cases:
                if case in ("naive", "presidio") and rows > SMALL_ONLY:
                    line = f"| {LABELS[case]} | {rows} | skipped: too slow beyond {SMALL_ONLY} rows | | | | | |"
                else:
                    r = run_case(case, workdir)
                    if "error" in r:
                        line = f"| {LABELS[case]} | {rows} | not run: {r['error']} | | | | | |"
                    else:
                        rate = r["rows"] / r["seconds"]
                        bound = rate if case == "cipher_bound" else bound
                        ratio = f"{rate / bound:.0%}" if bound else "-"
                        line = (
                            f"| {LABELS[case]} | {r['rows']} | {r['seconds']:.2f} | {rate:,.0f} | "
                            f"{megabytes / r['seconds']:.1f} | {r['peak_rss_mb']:.0f} | {r['keys']} | {ratio} |"
                        )
                lines.append(line)
                print(line, flush=True)
            for label in ("EncryptJob, all cores", "Spark local aes_encrypt"):
                reason = "not implemented yet" if "cores" in label else _spark_reason()
                line = f"| {label} | {rows} | {reason} | | | | | |"
                lines.append(line)
                print(line, flush=True)
    if not args.smoke:
        (HERE / "latest.md").write_text("\n".join(lines) + "\n")
    return 0


def _spark_reason() -> str:
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "not run: pyspark is not installed (and needs a JVM download)"
    return "not run: not implemented yet"


if __name__ == "__main__":
    sys.exit(main())
