"""STRM data contracts: which field keys the entity, which fields are PII and at what purpose level."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as default
from pathlib import Path
from typing import Any

from airflow_provider_strm.core.config import ContractRef, DocReader, normalise_keys, read_json_document
from airflow_provider_strm.core.errors import ConfigError


@dataclass(frozen=True)
class FieldValidation:
    field: str
    pattern: re.Pattern[str]


@dataclass(frozen=True)
class DataContract:
    """What a job needs from a contract.

    ``pii_fields`` maps each PII field (nested paths use ``/``) to its purpose
    level; ``key_field`` names the entity a key belongs to.
    """

    key_field: str
    pii_fields: Mapping[str, int]
    data_subject_field: str | None = None
    validations: tuple[FieldValidation, ...] = ()
    ref: ContractRef | None = None
    extra: Mapping[str, Any] = default(default_factory=dict)


def load_data_contract(contract: str | Path | Mapping[str, Any]) -> DataContract:
    """Load a STRM data contract (path, JSON text or dict); ``field_metadata`` wins over ``pii_fields``."""
    doc, source = read_json_document(contract, "data contract")
    # pii_fields is a map of field names: keep its keys as written.
    pii_legacy = doc.get("piiFields", doc.get("pii_fields"))
    doc = normalise_keys({k: v for k, v in doc.items() if k not in ("piiFields", "pii_fields")}, "")
    r = DocReader(doc, "", source)
    key_field = r.string("key_field", required=True)
    pii: dict[str, int] = {}
    if pii_legacy is not None:
        if not isinstance(pii_legacy, dict):
            raise ConfigError("pii_fields", "must map field names to purpose levels", source=source)
        for name, level in pii_legacy.items():
            if not isinstance(level, int) or isinstance(level, bool) or level < 0:
                raise ConfigError(f"pii_fields.{name}", f"purpose level must be a non-negative integer, got {level!r}")
            pii[name] = level
    for i, meta in enumerate(r.get("field_metadata", [])):
        m = DocReader(meta, f"field_metadata[{i}]", source)
        name = m.string("field_name", required=True)
        assert name is not None
        cfg = m.sub("personal_data_config")
        if cfg is not None:
            is_pii = cfg.get("is_pii", False)
            level = cfg.get("purpose_level", 0)
            if not isinstance(level, int) or isinstance(level, bool) or level < 0:
                raise cfg.error("purpose_level", f"must be a non-negative integer, got {level!r}")
            if is_pii:
                pii[name] = level
            else:
                pii.pop(name, None)
            cfg.done()
        m.done(ignored=("field_type", "description", "statistical_data_type", "nullable"))
    validations: list[FieldValidation] = []
    for i, v in enumerate(r.get("validations", [])):
        vr = DocReader(v, f"validations[{i}]", source)
        vfield = vr.string("field", required=True)
        vtype = (vr.string("type") or "regex").lower()
        if vtype != "regex":
            raise vr.error("type", f"only 'regex' validations are supported, got {vtype!r}")
        value = vr.string("value", required=True) or ""
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise vr.error("value", f"invalid regular expression: {exc}") from None
        vr.done()
        assert vfield is not None
        validations.append(FieldValidation(vfield, compiled))
    ref = None
    ref_reader = r.sub("ref")
    if ref_reader is not None:
        ref = ContractRef(
            ref_reader.string("handle") or "", ref_reader.string("name") or "", ref_reader.string("version") or ""
        )
        ref_reader.done(ignored=("id",))
    data_subject = r.string("data_subject_field")
    r.done(ignored=("schema_ref", "state", "is_public", "metadata", "project_id", "contract_type"))
    assert key_field is not None
    return DataContract(key_field, pii, data_subject, tuple(validations), ref)
