"""The benchmark command runs (2000 rows, --smoke) and what it measures is correct; its times are never asserted."""

from __future__ import annotations

import base64
import csv
import os
import subprocess
import sys
from pathlib import Path

from reference_checks import parse_csv, tink_keys

BENCH = Path(__file__).resolve().parents[2] / "bench"
ROWS = 2000
CASES = (
    "cipher bound",
    "EncryptJob, 1 core",
    "EncryptJob, 1 core, a file like it with rows in random order",
    "DeriveJob, 1 core",
    "EncryptJob, all cores",
    "DeriveJob, all cores",
    "key store: distinct keys created in PostgreSQL",
    "naive: pandas",
    "presidio-anonymizer",
    "Spark",
)


def data_rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))[1:]


def test_the_benchmark_command_prints_its_table_and_its_jobs_are_correct(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--rows", str(ROWS), "--smoke", "--keep", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    header = "| case | rows | seconds | CPU s | rows/s | MB/s | peak RSS MB | keys created/reused | vs cipher bound |"
    assert header in out
    assert "CPU: " in out and "Python " in out
    assert "Against issue #6's targets:" in out and "EncryptJob 1 core vs the cipher's bound" in out
    assert "cores did " in out and "x the work of one on a pure-Python loop" in out  # this machine's ceiling
    for case in CASES:
        assert f"| {case}" in out, case
    table = [line for line in out.splitlines() if line.startswith("| ") and "| case |" not in line]
    assert len(table) == len(CASES)
    measured = {line.split(" | ")[0][2:]: line for line in table if " | not " not in line and "skipped" not in line}
    assert any(label.startswith("EncryptJob, 1 core") for label in measured)
    assert any(label.startswith("DeriveJob, 1 core") for label in measured)
    assert any(label.startswith("EncryptJob, all cores") for label in measured)
    assert any(label.startswith("DeriveJob, all cores") for label in measured)
    # our jobs' rows give their CPU time (their workers' too), a number
    assert all(float(line.split(" | ")[3]) > 0 for label, line in measured.items() if label.startswith(("Enc", "Der")))
    # the all-cores rows show the workers' memory too, not only the reading process's
    assert all(" + largest worker " in line for label, line in measured.items() if "all cores" in label)
    assert "largest worker peak RSS MB" in out
    if os.environ.get("CI") == "true":  # PostgreSQL runs on our machines: the row must be measured there
        assert any(label.startswith("key store: distinct keys created in PostgreSQL") for label in measured), out
    assert "failed" not in out and "WRONG" not in out

    work = tmp_path / str(ROWS)
    source = data_rows(work / "events.csv")
    encrypted = data_rows(work / "out/events-encrypted.csv")
    derived = work / "out/events-derived-1.csv"
    assert len(source) == ROWS
    assert len(encrypted) == len(source)
    assert derived.exists()
    assert 0 < len(data_rows(derived)) < ROWS  # consent "[0]" rows are left out of a level-1 target

    # every PII value decrypts back with Tink, using the keys file the job wrote (the all-cores run wrote both last)
    header = parse_csv((work / "out/events-encrypted.csv").read_bytes())[0]
    keys = tink_keys((work / "out/events-keys.csv").read_bytes())
    link = header.index("strmMeta.keyLink")
    pii = [header.index(f) for f in ("user_id", "email", "ip_address", "user_agent", "url")]
    for src, enc in zip(source, encrypted, strict=True):
        for i in pii:
            assert enc[i] != src[i]
            assert keys[enc[link]].decrypt_deterministically(base64.b64decode(enc[i]), b"").decode() == src[i]

    # the random-order file (same sessions and values, rows in no order) decrypts back to its source too
    shuffled = data_rows(work / "events-random-order.csv")
    assert len(shuffled) == ROWS
    rows_out = data_rows(work / "out/events-random-order-encrypted.csv")
    keys = tink_keys((work / "out/events-random-order-keys.csv").read_bytes())
    assert len(rows_out) == ROWS
    for src, enc in zip(shuffled, rows_out, strict=True):
        for i in pii:
            assert keys[enc[link]].decrypt_deterministically(base64.b64decode(enc[i]), b"").decode() == src[i]
