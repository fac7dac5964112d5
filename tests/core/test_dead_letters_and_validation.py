"""Bad records go to dead letters with their row and reason; file validations abort or warn."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest
from reference_checks import parse_csv, tink_keys

from airflow_provider_strm.core.config import load_batch_job_config
from airflow_provider_strm.core.contract import load_data_contract
from airflow_provider_strm.core.encrypt import EncryptJob
from airflow_provider_strm.core.errors import RecordError, TooManyBadRecords, ValidationFailed
from airflow_provider_strm.core.keystore import KeyStore, new_kek
from airflow_provider_strm.core.storage import LocalStorage

BIG = "x" * 1_048_576 + "@example.com"


def messy_file() -> tuple[bytes, dict[int, str]]:
    """A file with every kind of trouble; returns its bytes and the expected reason per bad row."""
    rows = [
        b'"id","email","consent","ts"',
        b'"1","a@example.com","[1]","2026-11-20 10:00:00"',  # 1 good
        b'"2","multi\r\nline@example.com","garbage","2026-11-20 11:00:00"',  # 2 good: quoted CRLF, garbage consent
        b'"3","c@example.com","[1]"',  # 3 wrong column count
        b'"4","d\xff@example.com","[1]","2026-11-20 12:00:00"',  # 4 undecodable
        b'"5","e@example.com","[1]",""',  # 5 missing timestamp
        b'"6","f@example.com","[1]","20/11/2026"',  # 6 malformed timestamp
        b'"7","' + BIG.encode() + b'","2","2026-11-20 13:00:00"',  # 7 good, a 1 MB field
        b'"8","not-an-email","[1]","2026-11-20 14:00:00"',  # 8 fails the contract regex
        b'"9","","[0,1]","2026-11-21 00:30:00"',  # 9 good, empty PII stays empty
    ]
    reasons = {
        3: "expected 4 columns, got 3",
        4: "undecodable bytes",
        5: "missing timestamp",
        6: "Invalid timestamp [20/11/2026 does not match yyyy-MM-dd HH:mm:ss]",
        8: "does not match the contract's validation",
    }
    return b"\xef\xbb\xbf" + b"\r\n".join(rows) + b"\r\n", reasons


def job_doc(**extra) -> dict:  # type: ignore[no-untyped-def]
    return {
        "source_data": {"file_name": "messy.csv"},
        "consent": {"default_consent_levels": [0], "consent_level_extractor": {"field": "consent"}},
        "encryption": {"timestamp_config": {"field": "ts", "format": "yyyy-MM-dd HH:mm:ss"}},
        "event_contract_ref": {"handle": "h", "name": "n", "version": "1"},
        "encrypted_data": {"target": {"path_prefix": "out"}},
        "encryption_keys_data": {"target": {"path_prefix": "out"}},
        **extra,
    }


def job(tmp_path: Path, **extra) -> EncryptJob:  # type: ignore[no-untyped-def]
    store = KeyStore(f"sqlite:///{tmp_path / 'keys.db'}", new_kek())
    store.ensure_schema()
    doc = job_doc(**extra)
    contract = load_data_contract(
        {
            "keyField": "id",
            "piiFields": {"email": 1},
            "validations": [{"field": "email", "type": "regex", "value": "[^@]+@[^@]+"}],
        }
    )
    return EncryptJob(load_batch_job_config(doc), contract, store, lambda c: LocalStorage(tmp_path))


def test_a_messy_file_balances_and_every_bad_row_is_dead_lettered_with_its_reason(tmp_path) -> None:
    data, reasons = messy_file()
    (tmp_path / "messy.csv").write_bytes(data)
    result = job(tmp_path, dead_letter={"target": {"path_prefix": "dead"}, "max_bad_records": 10}).run()
    assert result.state == "FINISHED"
    assert (result.rows_in, result.rows_out, result.dead_lettered, result.excluded) == (9, 4, 5, 0)
    assert result.rows_in == result.rows_out + result.dead_lettered + result.excluded
    dead = parse_csv((tmp_path / "dead/messy-encrypt-dead-letters.csv").read_bytes())
    assert dead[0] == ["row", "reason", "field", "record"]
    assert [int(r[0]) for r in dead[1:]] == sorted(reasons)
    for row in dead[1:]:
        assert reasons[int(row[0])] in row[1]
    assert dead[4][2] == "ts" and dead[5][2] == "email"
    assert dead[1][3].startswith("3,c@example.com")  # the record as it was read
    encrypted = parse_csv((tmp_path / "out/messy-encrypted.csv").read_bytes())
    keys = tink_keys((tmp_path / "out/messy-keys.csv").read_bytes())
    source = {"1": "a@example.com", "2": "multi\r\nline@example.com", "7": BIG, "9": ""}
    assert [r[0] for r in encrypted[1:]] == list(source)
    for row in encrypted[1:]:
        plain = keys[row[7]].decrypt_deterministically(base64.b64decode(row[1]), b"").decode() if row[1] else ""
        assert plain == source[row[0]]
    assert encrypted[2][-1] == "[0]", "garbage consent falls back to the default levels"


def test_without_a_dead_letter_target_the_first_bad_row_fails_the_job(tmp_path) -> None:
    (tmp_path / "messy.csv").write_bytes(messy_file()[0])
    with pytest.raises(RecordError) as err:
        job(tmp_path).run()
    assert err.value.row == 3 and "expected 4 columns" in str(err.value)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("limit", [{"max_bad_records": 4}, {"max_bad_ratio": 0.5}])
def test_past_the_bad_record_limit_the_job_fails_and_commits_nothing(tmp_path, limit) -> None:
    (tmp_path / "messy.csv").write_bytes(messy_file()[0])
    with pytest.raises(TooManyBadRecords):
        job(tmp_path, dead_letter={"target": {"path_prefix": "dead"}, **limit}).run()
    assert not any(p.is_file() for p in tmp_path.rglob("*.csv") if p.name != "messy.csv")


def good_file(tmp_path: Path, rows: int = 10) -> None:
    lines = ["id,email,consent,ts"] + [f"{i},u{i}@example.com,[1],2026-11-20 10:00:00" for i in range(rows)]
    (tmp_path / "messy.csv").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    "rule",
    [
        {"type": "row_count", "min": 11},
        {"type": "row_count", "max": 9},
        {"type": "freshness", "field": "ts", "max_age": "P1D"},
    ],
)
def test_an_aborting_validation_fails_the_job_and_commits_nothing(tmp_path, rule) -> None:
    good_file(tmp_path)
    with pytest.raises(ValidationFailed, match=rule["type"]):
        job(tmp_path, validations=[rule]).run()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_warning_validation_is_reported_and_the_job_finishes(tmp_path) -> None:
    lines = ["id,email,consent,ts"] + [f"{i},{'' if i % 2 else 'u@x.y'},[1],2026-11-20 10:00:00" for i in range(10)]
    (tmp_path / "messy.csv").write_text("\n".join(lines) + "\n")
    j = job(tmp_path, validations=[{"type": "null_check", "fields": ["email"], "threshold": 0.2, "on_failure": "warn"}])
    result = j.run()
    assert result.state == "FINISHED" and result.warnings == ["null_check: 50.0% of email empty, above 20.0%"]
    states = j.key_store.job(result.job_id)["states"]
    assert any("Validation warnings" in (s["message"] or "") for s in states)
    assert states[-1]["message"].startswith("Processed 10 records in ")


def test_passing_validations_change_nothing(tmp_path) -> None:
    good_file(tmp_path)
    rules = [{"type": "row_count", "min": 1, "max": 10}, {"type": "null_check", "fields": ["email"]}]
    assert job(tmp_path, validations=rules).run().warnings == []


def test_worker_processes_dead_letter_and_validate_exactly_like_one_process(tmp_path) -> None:
    """Bad rows found in worker processes keep their row numbers and order; validations see every chunk."""
    data, reasons = messy_file()
    header, *rows = data.split(b"\r\n")[:-1]
    (tmp_path / "messy.csv").write_bytes(header + b"\r\n" + b"\r\n".join(rows * 7) + b"\r\n")
    base = job(tmp_path)
    store = base.key_store
    config = load_batch_job_config(
        job_doc(
            dead_letter={"target": {"path_prefix": "dead"}},
            validations=[{"type": "null_check", "fields": ["email"], "threshold": 0.1, "on_failure": "warn"}],
        )
    )
    outputs = ("out/messy-encrypted.csv", "out/messy-keys.csv", "dead/messy-encrypt-dead-letters.csv")
    seen = []
    # workers first, on a fresh store: workers given chunks with bad rows create keys and link subjects
    # themselves while this process holds its key-store transaction (it must commit before waiting on them)
    for workers in (3, 1, 2):
        j = EncryptJob(config, base.contract, store, lambda c: LocalStorage(tmp_path), chunk_rows=5, workers=workers)
        result = j.run()
        counts = (result.rows_in, result.rows_out, result.dead_lettered, result.warnings)
        seen.append((counts, [(tmp_path / p).read_bytes() for p in outputs]))
    assert seen[0][0] == (63, 28, 35, ["null_check: 25.0% of email empty, above 10.0%"])
    assert seen[1] == seen[0] and seen[2] == seen[0]
    dead = parse_csv(seen[0][1][2])
    assert [int(r[0]) for r in dead[1:]] == [r + 9 * k for k in range(7) for r in sorted(reasons)]


def test_workers_creating_keys_do_not_wait_on_the_reading_process(tmp_path) -> None:
    """Chunk 1 is clean: this process creates its keys (in its batched key-store transaction). Chunk 2 has a bad
    row: its worker creates keys itself, and this process must commit before it waits on that worker (else both
    wait until SQLite's busy timeout and the job fails)."""
    header = b'"id","email","consent","ts"'
    rows = [b'"%d","u%d@example.com","[1]","2026-11-20 10:00:00"' % (i, i) for i in range(1, 16)]
    rows[7] = b'"8","not-an-email","[1]","2026-11-20 14:00:00"'  # chunk 2 (rows 6-10): dead-lettered
    (tmp_path / "messy.csv").write_bytes(b"\r\n".join([header, *rows]) + b"\r\n")
    base = job(tmp_path, dead_letter={"target": {"path_prefix": "dead"}})
    started = time.monotonic()
    result = EncryptJob(
        base.config, base.contract, base.key_store, lambda c: LocalStorage(tmp_path), chunk_rows=5, workers=2
    ).run()
    assert (result.rows_in, result.rows_out, result.dead_lettered) == (15, 14, 1)
    assert result.keys_created == base.key_store.count_keys() == 14
    assert time.monotonic() - started < 30, "a worker waited on this process's key-store transaction"
