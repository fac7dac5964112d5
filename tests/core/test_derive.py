"""DeriveJob: consent decides which records and which PII fields a derived output shows."""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from murmur3_reference import strm_mask
from reference_checks import META, parse_csv

from airflow_provider_strm.core import derive as derive_module
from airflow_provider_strm.core.config import load_batch_job_config
from airflow_provider_strm.core.contract import load_data_contract
from airflow_provider_strm.core.crypto import Keyset, decrypt_columns
from airflow_provider_strm.core.derive import DeriveJob
from airflow_provider_strm.core.encrypt import EncryptJob
from airflow_provider_strm.core.errors import DecryptionError, RecordError
from airflow_provider_strm.core.keyfiles import keys_file_lookup
from airflow_provider_strm.core.keystore import KeyStore, new_kek
from airflow_provider_strm.core.masking import hmac_sha256_masker, murmur3_masker
from airflow_provider_strm.core.storage import LocalStorage


def test_strm_murmur3_masking_vectors_reproduce() -> None:
    assert murmur3_masker("hi-there")("unique-5") == "1083e8169d7138e990cc30095578452"
    assert murmur3_masker("")("strm_demo_user") == "788d082a29fd07f61e1df95bbe98ef9f"


@given(st.text(max_size=40), st.text(max_size=40))
def test_murmur3_masking_equals_the_reference_algorithm_for_any_seed_and_value(seed: str, value: str) -> None:
    assert murmur3_masker(seed)(value) == strm_mask(seed, value)
    assert strm_mask("hi-there", "unique-5") == "1083e8169d7138e990cc30095578452"


def test_hmac_masking_needs_a_real_secret() -> None:
    with pytest.raises(ValueError):
        hmac_sha256_masker(b"short")
    assert hmac_sha256_masker(b"k" * 32)("a") != hmac_sha256_masker(b"j" * 32)("a")


@settings(max_examples=100, deadline=None)
@given(secret=st.binary(min_size=16, max_size=100), values=st.lists(st.text(max_size=30), max_size=5))
def test_hmac_masking_is_the_hmac_sha256_of_each_value(secret: bytes, values: list[str]) -> None:
    mask = hmac_sha256_masker(secret)  # one masker, many values: each is the HMAC of that value alone
    assert [mask(v) for v in values] == [hmac.new(secret, v.encode(), hashlib.sha256).hexdigest() for v in values]


@pytest.fixture
def bucket(tmp_path: Path) -> Path:
    (tmp_path / "bucket").mkdir()
    return tmp_path / "bucket"


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    ks = KeyStore(f"sqlite:///{tmp_path / 'keys.db'}", new_kek())
    ks.ensure_schema()
    return ks


def test_the_strm_reference_job_derives_strms_output(strm_reference, strm_vectors, bucket, store) -> None:
    shutil.copy(strm_reference / "uci_online_retail.csv", bucket)
    config = load_batch_job_config(strm_reference / "batch-job-config.json")
    contract = load_data_contract(strm_reference / "online-retail-contract.json")
    storages = lambda conn_id: LocalStorage(bucket)  # noqa: E731
    EncryptJob(config, contract, store, storages).run()
    result = DeriveJob(config, contract, store, storages).run()
    assert result.state == "FINISHED"
    assert result.rows_in == result.rows_out + result.excluded == 19_998
    derived = (bucket / "uci_online_retail/decrypted-0.csv").read_bytes()
    lines = derived.split(b"\r\n")
    expected = strm_vectors["expected_output_head"]
    assert lines[0].decode() == expected[0]
    rows = parse_csv(derived)
    link = rows[0].index("strmMeta.keyLink")

    def without_link(line: str) -> list[str]:
        row = next(csv.reader([line]))
        return row[:link] + row[link + 1 :]

    assert without_link(lines[1].decode()) == without_link(expected[1])
    line_536414 = next(line.decode() for line in lines if line.startswith(b'"536414"'))
    assert without_link(line_536414) == without_link(expected[2])
    source = parse_csv((strm_reference / "uci_online_retail.csv").read_bytes())[1:]
    assert [r[: -len(META)] for r in rows[1:]] == source


def test_the_real_strm_ciphertext_derives_to_its_plaintext_with_a_strm_keys_file(strm_vectors, bucket) -> None:
    header = ["CustomerID", *META]
    row = [
        strm_vectors["ciphertext"],
        "strmprivacy/online-retail/1.0.0",
        "0",
        "1291188360000",
        strm_vectors["keyLink"],
        None,
        "[2]",
    ]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerows([header, row])
    (bucket / "enc.csv").write_text(buf.getvalue())
    keys = io.StringIO()
    csv.writer(keys).writerows(
        [
            ["keyLink", "encryptionKey", "policyId", "expiresAt"],
            [strm_vectors["keyLink"], strm_vectors["encryptionKey"], "", ""],
        ]
    )
    config = load_batch_job_config(
        {
            "source_data": {"file_name": "x.csv"},
            "encryption": {"timestamp_config": {"field": "ts"}},
            "event_contract_ref": {"handle": "strmprivacy", "name": "online-retail", "version": "1.0.0"},
            "encrypted_data": {"target": {"file_name": "enc.csv"}},
            "derived_data": [
                {"target": {"file_name": "out.csv"}, "consent_levels": [1], "consent_level_type": "CUMULATIVE"}
            ],
        }
    )
    contract = load_data_contract({"keyField": "CustomerID", "piiFields": {"CustomerID": 1}})
    lookup = keys_file_lookup(keys.getvalue().encode())
    DeriveJob(config, contract, lookup, lambda c: LocalStorage(bucket), encrypted_path="enc.csv").run()
    assert parse_csv((bucket / "out.csv").read_bytes())[1][0] == "17850"


def _clickstream(root: Path, records: list[dict[str, str]], pii: dict[str, int], derived: list[dict], **extra):  # type: ignore[no-untyped-def]
    """Write ``records`` as ``root/in.csv``; its header, encrypt+derive config and contract (``extra``: more config)."""
    header = ["id", "ts", "consent", *pii, "plain"]
    buf = io.StringIO()
    csv.writer(buf).writerows([header, *([r[h] for h in header] for r in records)])
    (root / "in.csv").write_text(buf.getvalue())
    config = load_batch_job_config(
        {
            "source_data": {"file_name": "in.csv"},
            "consent": {"default_consent_levels": [], "consent_level_extractor": {"field": "consent"}},
            "encryption": {"timestamp_config": {"field": "ts"}},
            "event_contract_ref": {"handle": "h", "name": "n", "version": "1"},
            "encrypted_data": {"target": {"path_prefix": "enc"}},
            "derived_data": derived,
            **extra,
        }
    )
    return header, config, load_data_contract({"keyField": "id", "piiFields": pii})


def _encrypt_and_derive(
    bucket: Path, store: KeyStore, records: list[dict[str, str]], pii: dict[str, int], derived: list[dict]
):  # type: ignore[no-untyped-def]
    header, config, contract = _clickstream(bucket, records, pii, derived)
    storages = lambda c: LocalStorage(bucket)  # noqa: E731
    EncryptJob(config, contract, store, storages).run()
    result = DeriveJob(config, contract, store, storages).run()
    encrypted = parse_csv((bucket / "enc/in-encrypted.csv").read_bytes())
    outputs = [parse_csv((bucket / f"out{i}.csv").read_bytes()) for i in range(len(derived))]
    return header, encrypted, outputs, result


TIMES = ["2026-11-20T10:00:00Z", "2026-11-21T23:59:59Z"]
FIELDS = st.dictionaries(st.sampled_from(["email", "ip", "name", "phone"]), st.integers(0, 3), min_size=1)
CONSENT = st.one_of(
    st.lists(st.integers(0, 3), max_size=4).map(lambda xs: json.dumps(sorted(set(xs)), separators=(",", ":"))),
    st.integers(0, 3).map(str),
    st.sampled_from(["", "garbage", "[1,"]),
)
TARGET = st.one_of(
    st.builds(lambda n: {"consent_levels": [n], "consent_level_type": "CUMULATIVE"}, st.integers(0, 3)),
    st.builds(
        lambda s: {"consent_levels": sorted(s), "consent_level_type": "GRANULAR"},
        st.sets(st.integers(0, 3), min_size=1),
    ),
)


def _admits(target: dict, levels: set[int]) -> bool:
    if target["consent_level_type"] == "CUMULATIVE":
        return bool(levels) and max(levels) >= target["consent_levels"][0]
    return set(target["consent_levels"]) <= levels


def _permitted(target: dict, purpose: int) -> bool:
    if target["consent_level_type"] == "CUMULATIVE":
        return purpose <= target["consent_levels"][0]
    return purpose in target["consent_levels"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    pii=FIELDS,
    targets=st.lists(TARGET, min_size=1, max_size=3),
    data=st.data(),
    masked=st.booleans(),
)
def test_derived_outputs_hold_exactly_what_consent_permits(tmp_path_factory, pii, targets, data, masked) -> None:
    root = tmp_path_factory.mktemp("derive")
    store = KeyStore(f"sqlite:///{root / 'keys.db'}", new_kek())
    store.ensure_schema()
    value = st.text(alphabet=st.characters(blacklist_categories=["Cs", "Cc"]), max_size=12)
    records = data.draw(
        st.lists(
            st.fixed_dictionaries(
                {"id": st.sampled_from(["a", "b", ""]), "ts": st.sampled_from(TIMES),
                 "consent": CONSENT, "plain": value, **{f: value for f in pii}}
            ),
            min_size=1, max_size=12,
        )
    )  # fmt: skip
    mask_field = sorted(pii)[0]
    derived = []
    for i, t in enumerate(targets):
        d = {"target": {"file_name": f"out{i}.csv"}, **t}
        if masked:
            d["masked_fields"] = {
                "seed": "s33d",
                "field_patterns": {"h/n/1": {"field_patterns": [mask_field, "plain"]}},
            }
        derived.append(d)
    header, encrypted, outputs, result = _encrypt_and_derive(root, store, records, pii, derived)
    masker = lambda v: strm_mask("s33d", v)  # noqa: E731 - the reference hash, not our code
    for t, out, summary in zip(targets, outputs, result.targets, strict=True):
        levels_of = [set(json.loads(r[-1])) for r in encrypted[1:]]
        kept = [i for i, lv in enumerate(levels_of) if _admits(t, lv)]
        assert summary["rows_out"] == len(out) - 1 == len(kept)
        assert summary["rows_out"] + summary["excluded"] == len(records)
        for row, i in zip(out[1:], kept, strict=True):
            source, enc = records[i], encrypted[1 + i]
            for col, name in enumerate(header):
                got = row[col]
                if name in pii and _permitted(t, pii[name]):
                    want = source[name]
                    if masked and name == mask_field and want != "":
                        want = masker(want)
                    assert got == want
                elif name in pii:
                    assert got == enc[col]  # stays the original ciphertext
                    assert got == "" or got != source[name] or source[name] == ""
                elif name == "plain" and masked:
                    assert got == (masker(source[name]) if source[name] else "")
                else:
                    assert got == enc[col]


def test_a_tampered_ciphertext_fails_naming_row_and_field(bucket, store) -> None:
    records = [
        {"id": "a", "ts": "2026-11-20T10:00:00Z", "consent": "[1]", "email": f"a{i}@x", "plain": "p"} for i in range(3)
    ]
    derived = [{"target": {"file_name": "out0.csv"}, "consent_levels": [1], "consent_level_type": "CUMULATIVE"}]
    _encrypt_and_derive(bucket, store, records, {"email": 1}, derived)
    path = bucket / "enc/in-encrypted.csv"
    rows = parse_csv(path.read_bytes())
    raw = bytearray(base64.b64decode(rows[2][3]))
    raw[-1] ^= 0x55
    rows[2][3] = base64.b64encode(bytes(raw)).decode()
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerows(rows)
    path.write_text(buf.getvalue())
    (bucket / "out0.csv").unlink()
    config = load_batch_job_config(
        {
            "source_data": {"file_name": "in.csv"},
            "encryption": {"timestamp_config": {"field": "ts"}},
            "event_contract_ref": {"handle": "h", "name": "n", "version": "1"},
            "encrypted_data": {"target": {"path_prefix": "enc"}},
            "derived_data": derived,
        }
    )
    job = DeriveJob(
        config, load_data_contract({"keyField": "id", "piiFields": {"email": 1}}), store, lambda c: LocalStorage(bucket)
    )
    with pytest.raises(RecordError) as err:
        job.run()
    assert (err.value.row, err.value.field) == (2, "email")
    assert "does not authenticate" in str(err.value)
    assert not (bucket / "out0.csv").exists()


def test_an_unknown_key_link_fails_naming_row_and_field(bucket, strm_vectors) -> None:
    header = ["CustomerID", *META]
    row = [
        strm_vectors["ciphertext"],
        "strmprivacy/online-retail/1.0.0",
        "0",
        "1",
        "00000000-0000-4000-8000-000000000000",
        None,
        "[2]",
    ]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerows([header, row])
    (bucket / "enc.csv").write_text(buf.getvalue())
    config = load_batch_job_config(
        {
            "source_data": {"file_name": "x.csv"},
            "encryption": {"timestamp_config": {"field": "ts"}},
            "event_contract_ref": {"handle": "h", "name": "n", "version": "1"},
            "encrypted_data": {"target": {"file_name": "enc.csv"}},
            "derived_data": [{"target": {"file_name": "out.csv"}, "consent_levels": [1]}],
        }
    )
    contract = load_data_contract({"keyField": "CustomerID", "piiFields": {"CustomerID": 1}})
    job = DeriveJob(config, contract, keys_file_lookup(b"keyLink,encryptionKey\r\n"), lambda c: LocalStorage(bucket))
    with pytest.raises(RecordError) as err:
        job.run()
    assert (err.value.row, err.value.field) == (1, "CustomerID") and "no key for keyLink" in str(err.value)
    assert not (bucket / "out.csv").exists()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_worker_processes_derive_byte_identical_outputs(strm_reference, bucket, tmp_path, backend, request) -> None:
    # the workers read keys on the database's own driver (sqlite3, psycopg2), not through SQLAlchemy
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else f"sqlite:///{tmp_path / 'keys.db'}"
    store = KeyStore(url, new_kek())
    store.ensure_schema()
    shutil.copy(strm_reference / "uci_online_retail.csv", bucket)
    config = load_batch_job_config(strm_reference / "batch-job-config.json")
    contract = load_data_contract(strm_reference / "online-retail-contract.json")
    storages = lambda conn_id: LocalStorage(bucket)  # noqa: E731
    EncryptJob(config, contract, store, storages).run()
    # a few keys removed: their records are excluded with a reason, in the worker processes too
    links = [row[-3] for row in parse_csv((bucket / "uci_online_retail/encrypted.csv").read_bytes())[1:50]]
    group = DeriveJob(config, contract, store, storages).group_id
    with store.engine.begin() as conn:
        store._remove_keys(conn, group, sorted(set(links))[:3], "forgotten")
    outputs, results = [], []
    for workers, chunk_rows in ((1, 20_000), (2, 1_000), (3, 4_096)):
        result = DeriveJob(config, contract, store, storages, workers=workers, chunk_rows=chunk_rows).run()
        results.append((result.rows_in, result.rows_out, result.excluded, result.excluded_by_reason, result.targets))
        outputs.append((bucket / "uci_online_retail/decrypted-0.csv").read_bytes())
    assert results[0][3].get("forgotten", 0) > 0
    assert results[0][0] == results[0][1] + results[0][2] == 19_998
    assert results[1] == results[0] and results[2] == results[0]
    assert outputs[1] == outputs[0] and outputs[2] == outputs[0]


# Two keys share a key id, so a ciphertext of the other one passes the prefix check and fails authentication.
KEYS = {"a": Keyset(7, bytes(range(64))), "b": Keyset(7, bytes(range(1, 65))), "c": Keyset(9, bytes(64))}
_SPOILED = {
    "tampered": lambda ct: ct[:-4] + ("AAAA" if ct[-4:] != "AAAA" else "BBBB"),
    "not base64": lambda ct: ct[:-1] + "*",
    "not ascii": lambda ct: ct + "é",
    "too short": lambda ct: ct[:12],
}


@st.composite
def _ciphertext_cells(draw: st.DrawFn, link: str) -> str:
    how = draw(st.sampled_from(["empty", "own", "own", "own", "other key", *_SPOILED]))
    if how == "empty":
        return ""
    plain = draw(st.sampled_from(["x", "y", "é", "a longer value, repeated"]))  # repeats: the memo path
    keyset = KEYS[draw(st.sampled_from(sorted(KEYS)))] if how == "other key" else KEYS.get(link, KEYS["c"])
    ciphertext = keyset.cipher().encrypt(plain)
    return _SPOILED[how](ciphertext) if how in _SPOILED else ciphertext


def _decrypt_one_at_a_time(links, columns, keysets, wanted):  # type: ignore[no-untyped-def]
    """The simple path: each row's wanted values in order, one cipher call each, stopping at the first error."""
    outs = [list(column) for column in columns]
    errors = {}
    for i, link in enumerate(links):
        for col in wanted[i]:
            value = columns[col][i]
            if value == "":
                continue
            try:
                if link not in keysets:
                    raise DecryptionError(f"no key for keyLink {link}")
                outs[col][i] = keysets[link].cipher().decrypt(value)
            except DecryptionError as exc:
                errors[i] = (col, str(exc))
                break
    return outs, errors


@settings(max_examples=300, deadline=None)
@given(data=st.data(), width=st.integers(1, 3))
def test_column_decryption_equals_decrypting_value_by_value(data: st.DataObject, width: int) -> None:
    links = data.draw(st.lists(st.sampled_from(["a", "b", "c", "gone"]), max_size=12))
    keysets = {link: KEYS[link] for link in ("a", "b", "c")}
    columns = [[data.draw(_ciphertext_cells(link)) for link in links] for _ in range(width)]
    subsets = st.sets(st.integers(0, width - 1)).map(lambda s: tuple(sorted(s)))
    wanted = [data.draw(subsets) for _ in links]
    outs, errors = decrypt_columns(links, columns, keysets, wanted)
    want_outs, want_errors = _decrypt_one_at_a_time(links, columns, keysets, wanted)
    assert {i: (col, str(exc)) for i, (col, exc) in errors.items()} == want_errors
    for col in range(width):
        for i in range(len(links)):
            if i not in errors:
                assert outs[col][i] == want_outs[col][i]


def _mess_up(path: Path, data: st.DataObject, pii: list[str]) -> None:
    """Spoil some records of an encrypted file the ways real files go wrong."""
    rows = parse_csv(path.read_bytes())
    header, records = rows[0], rows[1:]
    link, consent = header.index("strmMeta.keyLink"), header.index("strmMeta.consentLevels")
    for record in records:
        how = data.draw(st.sampled_from(["none", "none", "none", "tamper", "unknown key", "other row", "consent"]))
        col = header.index(data.draw(st.sampled_from(pii)))
        if how == "tamper" and record[col]:
            record[col] = record[col][:-2] + ("AA" if record[col][-2:] != "AA" else "BB")
        elif how == "unknown key":
            record[link] = "00000000-0000-4000-8000-000000000000"
        elif how == "other row":
            record[col] = data.draw(st.sampled_from(records))[col]
        elif how == "consent":
            record[consent] = data.draw(st.sampled_from(["garbage", "", "[1,"]))
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n", quoting=csv.QUOTE_ALL).writerows(rows)
    path.write_text(buf.getvalue())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    pii=FIELDS,
    targets=st.lists(TARGET, min_size=1, max_size=3),
    data=st.data(),
    masked=st.booleans(),
    chunk_rows=st.integers(1, 8),
)
def test_the_columnar_path_writes_the_bytes_of_the_record_by_record_path(
    tmp_path_factory, pii, targets, data, masked, chunk_rows
) -> None:
    root = tmp_path_factory.mktemp("paths")
    store = KeyStore(f"sqlite:///{root / 'keys.db'}", new_kek())
    store.ensure_schema()
    value = st.text(alphabet=st.characters(blacklist_categories=["Cs", "Cc"]), max_size=6)
    records = data.draw(
        st.lists(
            st.fixed_dictionaries(
                {"id": st.sampled_from(["a", "b", "c", ""]), "ts": st.sampled_from(TIMES),
                 "consent": CONSENT, "plain": st.sampled_from(["", "p", "q"]), **{f: value for f in pii}}
            ),
            min_size=1, max_size=20,
        )
    )  # fmt: skip
    derived = []
    for i, t in enumerate(targets):
        d = {"target": {"file_name": f"out{i}.csv"}, **t}
        if masked:
            d["masked_fields"] = {"field_patterns": {"h/n/1": {"field_patterns": [sorted(pii)[0], "plain"]}}}
        derived.append(d)
    _, config, contract = _clickstream(root, records, pii, derived, dead_letter={"target": {"path_prefix": "dead"}})
    storages = lambda c: LocalStorage(root)  # noqa: E731
    EncryptJob(config, contract, store, storages).run()
    _mess_up(root / "enc/in-encrypted.csv", data, sorted(pii))
    links = sorted({r[-3] for r in parse_csv((root / "enc/in-encrypted.csv").read_bytes())[1:]})
    forgotten = data.draw(st.lists(st.sampled_from(links), unique=True))
    with store.engine.begin() as conn:
        store._remove_keys(conn, DeriveJob(config, contract, store, storages).group_id, forgotten, "forgotten")

    def derive(columnar: bool):  # type: ignore[no-untyped-def]
        job = DeriveJob(config, contract, store, storages, chunk_rows=chunk_rows)
        with mock.patch.object(derive_module, "_ArrowRecords", wraps=derive_module._ArrowRecords) as arrow:
            if columnar:
                result = job.run()
            else:
                with mock.patch.object(derive_module, "_table_of", lambda chunk: None):
                    result = job.run()
        assert arrow.called == columnar
        files = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.glob("**/*.csv"))}
        summary = (result.rows_in, result.rows_out, result.dead_lettered, result.excluded, result.excluded_by_reason)
        return files, summary, result.targets

    assert derive(columnar=True) == derive(columnar=False)


@pytest.mark.parametrize("columnar", [True, False])
def test_only_the_keys_of_records_an_output_decrypts_are_read(tmp_path, columnar, monkeypatch) -> None:
    """A derive job reads and unwraps only the keys it needs; a removed key excludes its records all the same,
    whether an output decrypts them or not (u0: decrypted; u1: no output decrypts it; u2, u3: forgotten)."""
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    store = KeyStore(f"sqlite:///{tmp_path / 'keys.db'}", new_kek())
    store.ensure_schema()
    records = [
        {"id": f"u{i % 4}", "ts": TIMES[0], "consent": ["[1]", "[0]"][i % 2], "email": f"{i}@x", "plain": ""}
        for i in range(40)
    ]
    derived = [{"target": {"file_name": "out0.csv"}, "consent_levels": [1], "consent_level_type": "CUMULATIVE"}]
    _, config, contract = _clickstream(bucket, records, {"email": 1}, derived)
    storages = lambda c: LocalStorage(bucket)  # noqa: E731
    EncryptJob(config, contract, store, storages).run()
    link = {row[0]: row[-3] for row in parse_csv((bucket / "enc/in-encrypted.csv").read_bytes())[1:]}
    with store.engine.begin() as conn:
        group = DeriveJob(config, contract, store, storages).group_id
        store._remove_keys(conn, group, [link["u2"], link["u3"]], "forgotten")
    asked: set[str] = set()
    read = store.keysets_by_link

    def spy(links):  # type: ignore[no-untyped-def]
        links = set(links)
        asked.update(links)
        return read(links)

    monkeypatch.setattr(store, "keysets_by_link", spy)
    if not columnar:
        monkeypatch.setattr(derive_module, "_table_of", lambda chunk: None)
    result = DeriveJob(config, contract, store, storages).run()
    assert asked == {link["u0"], link["u2"]}, "u1's key is not read: no output decrypts its records"
    assert result.rows_out == 10 and result.excluded_by_reason == {"forgotten": 20}
    out = parse_csv((bucket / "out0.csv").read_bytes())
    assert sorted(row[3] for row in out[1:]) == sorted(f"{i}@x" for i in range(0, 40, 4))


def test_deriving_an_arrow_parsed_file_does_not_import_pandas(tmp_path) -> None:
    """pa.array imports pandas (seconds without a bytecode cache) to check its argument: the columnar path avoids it."""
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    kek = new_kek()
    store = KeyStore(f"sqlite:///{tmp_path / 'keys.db'}", kek)
    store.ensure_schema()
    records = [
        {"id": f"u{i % 3}", "ts": TIMES[i % 2], "consent": ["[1]", "[0]", "x"][i % 3], "email": f"{i}@x", "plain": "p"}
        for i in range(30)
    ]
    derived = [
        {
            "target": {"file_name": "out0.csv"},
            "consent_levels": [1],
            "consent_level_type": "CUMULATIVE",
            "masked_fields": {"field_patterns": {"h/n/1": {"field_patterns": ["email", "plain"]}}},
        }
    ]
    _, _, (expected,), _ = _encrypt_and_derive(bucket, store, records, {"email": 1}, derived)
    (bucket / "out0.csv").unlink()
    script = f"""
import sys
from airflow_provider_strm.core.config import load_batch_job_config
from airflow_provider_strm.core.contract import load_data_contract
from airflow_provider_strm.core.derive import DeriveJob
from airflow_provider_strm.core.keystore import KeyStore
from airflow_provider_strm.core.storage import LocalStorage

config = load_batch_job_config({{
    "source_data": {{"file_name": "in.csv"}},
    "consent": {{"default_consent_levels": [], "consent_level_extractor": {{"field": "consent"}}}},
    "encryption": {{"timestamp_config": {{"field": "ts"}}}},
    "event_contract_ref": {{"handle": "h", "name": "n", "version": "1"}},
    "encrypted_data": {{"target": {{"path_prefix": "enc"}}}},
    "derived_data": {derived!r},
    "dead_letter": {{"target": {{"path_prefix": "dead"}}}},
}})
contract = load_data_contract({{"keyField": "id", "piiFields": {{"email": 1}}}})
store = KeyStore({f"sqlite:///{tmp_path / 'keys.db'}"!r}, {kek!r})
DeriveJob(config, contract, store, lambda c: LocalStorage({str(bucket)!r}), chunk_rows=7).run()
print("pandas" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
    assert parse_csv((bucket / "out0.csv").read_bytes()) == expected
