"""The benchmark runs (small) and what it measures is correct; its times are never asserted."""

from __future__ import annotations

import base64
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from reference_checks import parse_csv, tink_keys

BENCH = Path(__file__).resolve().parents[2] / "bench" / "run.py"


def load_bench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("bench_run", BENCH)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_the_benchmarked_jobs_produce_correct_outputs(tmp_path: Path) -> None:
    bench = load_bench()
    bench.generate(tmp_path / "events.csv", 2000)
    (tmp_path / "kek").write_text(base64.b64encode(os.urandom(32)).decode())
    assert bench.case_encrypt(tmp_path)["rows"] == 2000
    assert bench.case_derive(tmp_path)["rows"] == 2000
    source = parse_csv((tmp_path / "events.csv").read_bytes())
    encrypted = parse_csv((tmp_path / "out/events-encrypted.csv").read_bytes())
    keys = tink_keys((tmp_path / "out/events-keys.csv").read_bytes())
    header = encrypted[0]
    link = header.index("strmMeta.keyLink")
    for src, enc in zip(source[1:], encrypted[1:], strict=True):
        for field in bench.PII:
            i = header.index(field)
            assert keys[enc[link]].decrypt_deterministically(base64.b64decode(enc[i]), b"").decode() == src[i]
    derived = parse_csv((tmp_path / "out/events-derived-1.csv").read_bytes())
    assert 0 < len(derived) - 1 < 2000


def test_the_benchmark_command_prints_its_table() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--rows", "1000", "--smoke"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    for case in ("cipher bound", "EncryptJob, 1 core", "DeriveJob, 1 core"):
        assert f"| {case}" in done.stdout
    assert "| case | rows | seconds | rows/s |" in done.stdout
