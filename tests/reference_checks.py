"""Checks of a STRM reference job's outputs, shared by the core, operator and connector tests."""

from __future__ import annotations

import base64
import csv
import io
import json
import shutil
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import tink
from tink import daead, secret_key_access

from airflow_provider_strm.core.config import load_batch_job_config
from airflow_provider_strm.core.contract import load_data_contract
from airflow_provider_strm.core.encrypt import EncryptJob
from airflow_provider_strm.core.keystore import KeyStore
from airflow_provider_strm.core.storage import LocalStorage

daead.register()

META = [
    "strmMeta.eventContractRef",
    "strmMeta.nonce",
    "strmMeta.timestamp",
    "strmMeta.keyLink",
    "strmMeta.billingId",
    "strmMeta.consentLevels",
]


def reference_job(strm_reference: Path, bucket: Path, store: KeyStore, **kwargs) -> EncryptJob:  # type: ignore[no-untyped-def]
    """The STRM reference job as an EncryptJob on local files: its source copied into ``bucket``."""
    shutil.copy(strm_reference / "uci_online_retail.csv", bucket / "uci_online_retail.csv")
    config = load_batch_job_config(strm_reference / "batch-job-config.json", kwargs.pop("overrides", None))
    contract = load_data_contract(strm_reference / "online-retail-contract.json")
    return EncryptJob(config, contract, store, lambda conn_id: LocalStorage(bucket), **kwargs)


def parse_csv(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


def tink_keys(keys_file: bytes) -> dict[str, daead.DeterministicAead]:
    rows = parse_csv(keys_file)
    assert rows[0] == ["keyLink", "encryptionKey", "policyId", "expiresAt"]
    out = {}
    for link, keyset, _policy, _expires in rows[1:]:
        handle = tink.json_proto_keyset_format.parse(keyset, secret_key_access.TOKEN)
        out[link] = handle.primitive(daead.DeterministicAead)
    return out


def check_reference_outputs(source_csv: Path, encrypted: bytes, keys_file: bytes, vectors: dict) -> None:
    """Everything the foundation issue promises about the STRM reference job's outputs."""
    source = parse_csv(source_csv.read_bytes())
    header, rows = source[0], source[1:]
    lines = encrypted.split(b"\r\n")
    assert lines[-1] == b"", "the file ends with CRLF"
    expected_header = vectors["expected_output_head"][0]
    assert lines[0].decode() == expected_header
    out = parse_csv(encrypted)
    assert out[0] == header + META
    assert len(out) - 1 == len(rows), "row count preserved"
    keys = tink_keys(keys_file)
    cust = header.index("CustomerID")
    date = header.index("InvoiceDate")
    amsterdam = ZoneInfo("Europe/Amsterdam")
    link_of: dict[tuple[str, str], str] = {}
    ct_of: dict[tuple[str, str], str] = {}
    for i, (src, enc) in enumerate(zip(rows, out[1:], strict=True), start=1):
        assert enc[: len(header)][:cust] == src[:cust] and enc[cust + 1 : len(header)] == src[cust + 1 :]
        contract, nonce, ts, link, billing, consent = enc[len(header) :]
        assert (contract, nonce, billing, consent) == ("strmprivacy/online-retail/1.0.0", "0", "", "[2]")
        local = datetime.strptime(src[date], "%Y-%m-%d %H:%M:%S").replace(tzinfo=amsterdam)
        assert int(ts) == int(local.timestamp() * 1000), f"row {i}: strmMeta.timestamp"
        day = int(ts) // 86_400_000
        entity = (src[cust], str(day))
        # rows sharing (CustomerID, UTC day) share one keyLink and ciphertext; others don't
        assert link_of.setdefault(entity, link) == link, f"row {i}: a second keyLink for one entity-day"
        if src[cust] == "":
            assert enc[cust] == ""
        else:
            assert ct_of.setdefault(entity, enc[cust]) == enc[cust]
            plain = keys[link].decrypt_deterministically(base64.b64decode(enc[cust]), b"")
            assert plain.decode() == src[cust], f"row {i} does not decrypt with Tink"
    assert len(set(link_of.values())) == len(link_of), "different entity-days never share a keyLink"
    assert set(keys) == set(link_of.values()), "the keys file holds exactly the keys used"
    first = out[1]
    assert first[len(header) + 2] == "1291188360000"
    # line 2 of the file is laid out as STRM's, bar the ciphertext and the keyLink
    strm_line = vectors["expected_output_head"][1]
    ours = lines[1].decode()
    assert ours.replace(first[cust], "17850").replace(first[len(header) + 3], vectors["keyLink"]) == strm_line
    json.dumps(vectors)  # vectors stay JSON (guards accidental mutation)
