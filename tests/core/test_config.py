"""STRM BatchJob configs load in both spellings; bad ones are refused before any data is read."""

from __future__ import annotations

import json

import pytest

from airflow_provider_strm.core.config import load_batch_job_config
from airflow_provider_strm.core.contract import load_data_contract
from airflow_provider_strm.core.errors import ConfigError

MINIMAL = {
    "source_data": {"data_connector_ref": {"name": "src"}, "file_name": "in.csv"},
    "encryption": {"timestamp_config": {"field": "ts"}},
    "event_contract_ref": {"handle": "h", "name": "n", "version": "1.0.0"},
    "encrypted_data": {"target": {"data_connector_ref": {"name": "out"}}},
}


def camel(doc: object) -> object:
    if isinstance(doc, dict):
        out = {}
        for k, v in doc.items():
            head, *rest = k.split("_")
            out[head + "".join(p.title() for p in rest)] = camel(v)
        return out
    if isinstance(doc, list):
        return [camel(v) for v in doc]
    return doc


def test_the_strm_reference_config_loads_unchanged(strm_reference) -> None:
    config = load_batch_job_config(strm_reference / "batch-job-config.json")
    assert config.source_data.connection_id == "s3-batch-demo"
    assert config.source_data.path == "uci_online_retail.csv"
    assert config.timestamp.format == "yyyy-MM-dd HH:mm:ss"
    assert config.timestamp.default_time_zone == "Europe/Amsterdam"
    assert config.batch_job_group_id == "7824e975-20e1-4995-b129-2f9582728ca5"
    assert str(config.contract_ref) == "strmprivacy/online-retail/1.0.0"
    assert config.encrypted_data.path == "uci_online_retail/encrypted.csv"
    assert config.encryption_keys_data is not None
    assert config.encryption_keys_data.path == "uci_online_retail/keys.csv"
    assert config.consent.default_consent_levels == (2,)
    (derived,) = config.derived_data
    assert derived.consent_levels == (2,) and derived.consent_level_type == "CUMULATIVE"
    assert derived.target.path == "uci_online_retail/decrypted-0.csv"


def test_lower_camel_case_and_snake_case_give_the_same_config(strm_reference) -> None:
    doc = json.loads((strm_reference / "batch-job-config.json").read_text())
    assert load_batch_job_config(camel(doc)) == load_batch_job_config(doc)


def test_consent_field_patterns_keep_their_values_as_written() -> None:
    doc = dict(
        MINIMAL,
        consent={"consentLevelExtractor": {"field": "c", "fieldPatterns": {"optIn_All": {"consentLevels": [1, 2]}}}},
    )
    config = load_batch_job_config(doc)
    assert config.consent.field == "c"
    assert config.consent.field_patterns == {"optIn_All": (1, 2)}


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (
            {"encryption": {"timestamp_config": {"field": "ts", "format": "yyyy-MM-dd QQQ ppp"}}},
            "encryption.timestamp_config.format",
        ),
        (
            {"encryption": {"timestamp_config": {"field": "ts", "default_time_zone": {"id": "Mars/Olympus"}}}},
            "encryption.timestamp_config.default_time_zone.id",
        ),
        (
            {"encryption": {"batch_job_group_id": "not-a-uuid", "timestamp_config": {"field": "ts"}}},
            "encryption.batch_job_group_id",
        ),
        ({"encryption": {"timestamp_config": {}}}, "encryption.timestamp_config.field"),
        ({"encrypted_data": {"target": {"path_prefix": "out/"}}}, "encrypted_data.target.path_prefix"),
        (
            {"source_data": {"file_name": "a.csv", "data_type": {"csv": {"charset": "klingon-8"}}}},
            "source_data.data_type.csv.charset",
        ),
        ({"source_data": {"file_name": "a.csv", "colour": "blue"}}, "source_data.colour"),
        (
            {"derived_data": [{"target": {}, "consent_levels": [1, 2], "consent_level_type": "CUMULATIVE"}]},
            "derived_data[0].consent_levels",
        ),
        (
            {"derived_data": [{"target": {}, "consent_levels": [1], "consent_level_type": "SOMETIMES"}]},
            "derived_data[0].consent_level_type",
        ),
        ({"consent": {"default_consent_levels": ["2"]}}, "consent.default_consent_levels"),
        ({"data_contract_ref": {"handle": "other", "name": "n", "version": "1.0.0"}}, "data_contract_ref"),
    ],
)
def test_a_bad_setting_is_refused_naming_its_path(change: dict, path: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_batch_job_config({**MINIMAL, **change})
    assert err.value.path == path
    assert str(err.value).startswith(path)


def test_overrides_replace_any_field_by_dotted_path() -> None:
    config = load_batch_job_config(
        MINIMAL,
        {
            "encryption.batch_job_group_id": "7824e975-20e1-4995-b129-2f9582728ca5",
            "encrypted_data.target.path_prefix": "enc/dt=2026-11-20",
        },
    )
    assert config.batch_job_group_id == "7824e975-20e1-4995-b129-2f9582728ca5"
    assert (
        config.encrypted_data.output_path("raw/part-0001.csv", "encrypted")
        == "enc/dt=2026-11-20/part-0001-encrypted.csv"
    )


def test_an_unreadable_config_file_names_the_file(tmp_path) -> None:
    bad = tmp_path / "job.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="job.json"):
        load_batch_job_config(bad)


def test_the_reference_contract_loads(strm_reference) -> None:
    contract = load_data_contract(strm_reference / "online-retail-contract.json")
    assert contract.key_field == "CustomerID"
    assert contract.pii_fields == {"CustomerID": 1}
    assert contract.data_subject_field == "CustomerID"


def test_field_metadata_wins_over_legacy_pii_fields() -> None:
    contract = load_data_contract(
        {
            "keyField": "id",
            "piiFields": {"email": 1, "ip": 2},
            "fieldMetadata": [
                {"fieldName": "email", "personalDataConfig": {"isPii": True, "purposeLevel": 3}},
                {"fieldName": "ip", "personalDataConfig": {"isPii": False}},
            ],
            "validations": [{"field": "email", "type": "regex", "value": ".+@.+"}],
        }
    )
    assert contract.pii_fields == {"email": 3}
    assert contract.validations[0].pattern.fullmatch("a@b")


def test_a_contract_without_key_field_is_refused() -> None:
    with pytest.raises(ConfigError, match="key_field"):
        load_data_contract({"piiFields": {"a": 1}})
