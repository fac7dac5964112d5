"""STRM ``BatchJob`` configuration: load, validate, override.

Accepts the JSON document STRM's hosted batch jobs took, in snake_case or
lowerCamelCase, as a path, a JSON string or a dict. Everything is checked
before any data is read; a bad setting raises :class:`ConfigError` naming its
path (e.g. ``encryption.timestamp_config.format``).
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as default
from pathlib import Path, PurePosixPath
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from airflow_provider_strm.core.errors import ConfigError

CONSENT_LEVEL_TYPES = ("CUMULATIVE", "GRANULAR")
HASH_TYPES = {
    "MURMUR3": "MURMUR3",
    "MURMURHASH3": "MURMUR3",
    "MURMUR3_128": "MURMUR3",
    "HASH_TYPE_UNSPECIFIED": "MURMUR3",
    "HMAC_SHA256": "HMAC_SHA256",
}
DATA_FORMATS = ("csv", "json_lines", "parquet")
#: the extension of an output named without ``file_name``, per data type
EXTENSIONS = {"csv": "csv", "json_lines": "jsonl", "parquet": "parquet"}

_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")


def snake(key: str) -> str:
    """``dataConnectorRef`` → ``data_connector_ref``; snake_case keys are unchanged."""
    return _CAMEL.sub(r"_\1", key).lower()


@dataclass(frozen=True)
class ContractRef:
    handle: str
    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.handle}/{self.name}/{self.version}"


@dataclass(frozen=True)
class DataLocation:
    """A STRM *DataConnectorAndType*: an Airflow connection id, a path and a format.

    ``data_format`` is ``csv``, ``json_lines`` or ``parquet``; ``compression`` is ``gzip`` or None
    (a path ending in ``.gz`` is gzipped either way: see :meth:`gzipped`).
    """

    connection_id: str | None
    path_prefix: str = ""
    file_name: str | None = None
    data_format: str = "csv"
    charset: str = "UTF-8"
    compression: str | None = None

    @property
    def path(self) -> str:
        """The object path inside the connector (prefix + file name)."""
        if self.file_name is None:
            return self.path_prefix
        return f"{self.path_prefix}/{self.file_name}" if self.path_prefix else self.file_name

    def output_path(self, source_path: str, suffix: str) -> str:
        """This target's path for a job on ``source_path``.

        A ``file_name`` is used as given (``{stem}`` is replaced by the source's
        stem); without one, the name is ``<stem>-<suffix>.<csv|jsonl|parquet>``
        under the prefix, with ``.gz`` added when ``compression`` is ``gzip``.
        """
        stem = PurePosixPath(source_path).name.split(".")[0]
        if self.file_name:
            name = self.file_name.replace("{stem}", stem)
        else:
            name = f"{stem}-{suffix}.{EXTENSIONS[self.data_format]}" + (".gz" if self.compression == "gzip" else "")
        return f"{self.path_prefix}/{name}" if self.path_prefix else name

    def gzipped(self, path: str) -> bool:
        """Whether the file at ``path`` of this location is gzipped (``compression: gzip`` or a ``.gz`` name)."""
        return self.compression == "gzip" or path.lower().endswith(".gz")


@dataclass(frozen=True)
class ConsentConfig:
    default_consent_levels: tuple[int, ...] = ()
    field: str | None = None
    field_patterns: Mapping[str, tuple[int, ...]] = default(default_factory=dict)


@dataclass(frozen=True)
class TimestampConfig:
    field: str
    format: str | None = None
    default_time_zone: str = "UTC"


@dataclass(frozen=True)
class MaskedFields:
    hash_type: str = "MURMUR3"
    seed: str = ""
    #: contract ref ``handle/name/version`` → field names to mask
    field_patterns: Mapping[str, tuple[str, ...]] = default(default_factory=dict)
    #: Airflow connection whose password is the HMAC secret (``HMAC_SHA256`` only)
    secret_connection_id: str | None = None


@dataclass(frozen=True)
class DerivedDataConfig:
    target: DataLocation
    consent_levels: tuple[int, ...]
    consent_level_type: str = "CUMULATIVE"
    masked_fields: MaskedFields | None = None


@dataclass(frozen=True)
class DeadLetterConfig:
    """Where bad records go (verbatim, with row number and reason) and how many a job tolerates."""

    target: DataLocation
    max_bad_records: int | None = None
    max_bad_ratio: float | None = None


VALIDATION_TYPES = ("row_count", "null_check", "freshness")


@dataclass(frozen=True)
class ValidationRule:
    """A file-level check run before anything is committed. ``on_failure``: ``abort`` or ``warn``."""

    type: str
    on_failure: str = "abort"
    min: int | None = None
    max: int | None = None
    fields: tuple[str, ...] = ()
    threshold: float = 0.0
    field: str | None = None
    max_age_s: int | None = None


@dataclass(frozen=True)
class BatchJobConfig:
    source_data: DataLocation
    timestamp: TimestampConfig
    contract_ref: ContractRef
    encrypted_data: DataLocation
    encryption_keys_data: DataLocation | None
    consent: ConsentConfig = ConsentConfig()
    batch_job_group_id: str | None = None
    derived_data: tuple[DerivedDataConfig, ...] = ()
    policy_id: str | None = None
    retention_days: int | None = None
    dead_letter: DeadLetterConfig | None = None
    validations: tuple[ValidationRule, ...] = ()


# --------------------------------------------------------------------------- loading


def load_batch_job_config(
    config: str | Path | Mapping[str, Any],
    overrides: Mapping[str, Any] | None = None,
) -> BatchJobConfig:
    """Load a STRM BatchJob document (path, JSON text or dict) and apply ``overrides``.

    ``overrides`` maps dotted snake_case paths to values, e.g.
    ``{"encryption.batch_job_group_id": "...", "source_data.file_name": "x.csv"}``;
    each replaces the value at that path (``None`` removes it).
    """
    doc, source = read_json_document(config, "batch job config")
    doc = normalise_keys(doc, "")
    for dotted, value in (overrides or {}).items():
        _set_path(doc, dotted, value)
    return _parse(doc, source)


def read_json_document(config: str | Path | Mapping[str, Any], what: str) -> tuple[dict[str, Any], str | None]:
    if isinstance(config, Mapping):
        return copy.deepcopy(dict(config)), None
    text = str(config)
    if isinstance(config, str) and text.lstrip().startswith("{"):
        source = None
    else:
        source = str(config)
        try:
            text = Path(config).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError("(file)", f"cannot read {what} {config}: {exc.strerror}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError("(document)", f"{what} is not valid JSON: {exc}", source=source) from None
    if not isinstance(doc, dict):
        raise ConfigError("(document)", f"{what} must be a JSON object", source=source)
    return doc, source


# Maps whose keys are data (values or contract refs), not settings: their keys are kept as written.
_DATA_MAPS = {"consent.consent_level_extractor.field_patterns", "masked_fields.field_patterns"}


def normalise_keys(value: Any, path: str) -> Any:
    if isinstance(value, dict):
        keep = any(path.endswith(m) for m in _DATA_MAPS)
        out = {}
        for key, item in value.items():
            name = key if keep else snake(key)
            out[name] = normalise_keys(item, f"{path}.{name}" if path else name)
        return out
    if isinstance(value, list):
        return [normalise_keys(v, re.sub(r"\[\d+\]$", "", path)) for v in value]
    return value


_INDEXED = re.compile(r"^(?P<name>[^\[\]]+)\[(?P<index>\d+)\]$")


def _set_path(doc: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b[0].c`` in ``doc``; ``None`` removes the key. Missing objects are created."""
    node: Any = doc
    parts = dotted.split(".")
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        m = _INDEXED.match(part)
        if m:
            items = node.setdefault(m["name"], [])
            index = int(m["index"])
            if not isinstance(items, list) or index >= len(items):
                raise ConfigError(dotted, f"{m['name']} has no item [{index}] to override")
            if last:
                items[index] = value
                return
            node = items[index]
            continue
        if last:
            if value is None:
                node.pop(part, None)
            else:
                node[part] = value
            return
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]


#: When a set, every setting the loader reads is added to it (``a.b[].c``, ``*`` for data-map keys);
#: the configuration reference is checked against it.
RECORDED_SETTINGS: set[str] | None = None


class DocReader:
    """Walks one dict of the document, remembering what was read to reject the rest."""

    def __init__(self, doc: Any, path: str, source: str | None) -> None:
        self.path = path
        self.source = source
        if doc is None:
            doc = {}
        if not isinstance(doc, dict):
            raise ConfigError(path or "(document)", f"must be an object, got {type(doc).__name__}", source=source)
        self.doc = doc
        self.seen: set[str] = set()
        #: this object's path with list indexes as [] and data-map keys as * (for RECORDED_SETTINGS)
        self.generic_path = re.sub(r"\[\d+\]", "[]", path)

    def _generic(self, key: str) -> str:
        name = "*" if self.path.endswith("field_patterns") else key  # keys of data maps are values
        return f"{self.generic_path}.{name}" if self.generic_path else name

    def _record(self, key: str) -> None:
        if RECORDED_SETTINGS is not None and key in self.doc:
            RECORDED_SETTINGS.add(self._generic(key))

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(self.at(key), message, source=self.source)

    def get(self, key: str, default: Any = None) -> Any:
        self.seen.add(key)
        self._record(key)
        value = self.doc.get(key, default)
        return default if value is None else value

    def sub(self, key: str, required: bool = False) -> DocReader | None:
        self.seen.add(key)
        self._record(key)
        if key not in self.doc or self.doc[key] is None:
            if required:
                raise self.error(key, "is required")
            return None
        reader = DocReader(self.doc[key], self.at(key), self.source)
        reader.generic_path = self._generic(key)
        return reader

    def string(self, key: str, required: bool = False) -> str | None:
        value = self.get(key)
        if value is None or value == "":
            if required:
                raise self.error(key, "is required")
            return None
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, got {json.dumps(value)}")
        return value

    def ints(self, key: str) -> tuple[int, ...]:
        value = self.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise self.error(key, f"must be a list of integers, got {json.dumps(value)}")
        if any(v < 0 for v in value):
            raise self.error(key, "consent levels are non-negative integers")
        return tuple(value)

    def done(self, ignored: tuple[str, ...] = ()) -> None:
        unknown = sorted(set(self.doc) - self.seen - set(ignored))
        if unknown:
            raise self.error(unknown[0], "is not a known setting")


def _location(
    reader: DocReader | None, path: str, source: str | None, required: bool, plain_csv: bool = False
) -> DataLocation | None:
    """A location; ``plain_csv``: keys files and dead letters, which stay uncompressed CSV in STRM's layout."""
    if reader is None:
        if required:
            raise ConfigError(path, "is required", source=source)
        return None
    ref = reader.sub("data_connector_ref")
    conn_id = None
    if ref is not None:
        conn_id = ref.string("name")
        ref.done()
    prefix = reader.string("path_prefix") or ""
    if prefix.endswith("/"):
        raise reader.error("path_prefix", f"must not end with '/' (got {prefix!r})")
    file_name = reader.string("file_name")
    data_format, charset, compression = "csv", "UTF-8", None
    data_type = reader.sub("data_type")
    if data_type is not None:
        formats = [k for k in data_type.doc if data_type.doc[k] is not None]
        if len(formats) > 1:
            raise data_type.error(formats[1], f"only one data type may be set, got {formats}")
        if formats:
            data_format = formats[0]
            if data_format not in DATA_FORMATS:
                raise data_type.error(data_format, f"unsupported data type; supported: {', '.join(DATA_FORMATS)}")
            if plain_csv and data_format != "csv":
                raise data_type.error(data_format, "keys files and dead letters are CSV in STRM's layout")
            options = data_type.sub(data_format)
            assert options is not None
            if data_format != "parquet":  # Parquet is binary and compresses its own columns
                charset = options.string("charset") or "UTF-8"
                try:
                    "".encode(charset)
                except LookupError:
                    raise options.error("charset", f"unknown charset {charset!r}") from None
                compression = options.string("compression")
                if compression is not None and compression.lower() != "gzip":
                    raise options.error("compression", f"must be 'gzip', got {compression!r}")
                compression = compression and "gzip"
                if plain_csv and compression:
                    raise options.error("compression", "keys files and dead letters are not compressed")
            options.done()
        data_type.done()
    if plain_csv and file_name and file_name.lower().endswith(".gz"):
        raise reader.error("file_name", f"keys files and dead letters are not compressed: {file_name!r} ends in .gz")
    reader.done()
    return DataLocation(conn_id, prefix, file_name, data_format, charset, compression)


def _target(
    reader: DocReader | None, path: str, source: str | None, required: bool, plain_csv: bool = False
) -> DataLocation | None:
    if reader is None:
        if required:
            raise ConfigError(path, "is required", source=source)
        return None
    loc = _location(reader.sub("target", required=True), f"{path}.target", source, True, plain_csv)
    reader.done()
    return loc


def _parse(doc: dict[str, Any], source: str | None) -> BatchJobConfig:
    top = DocReader(doc, "", source)
    src = _location(top.sub("source_data", required=True), "source_data", source, True)
    assert src is not None

    consent = ConsentConfig()
    c = top.sub("consent")
    if c is not None:
        defaults = c.ints("default_consent_levels")
        extractor = c.sub("consent_level_extractor")
        cfield, patterns = None, {}
        if extractor is not None:
            cfield = extractor.string("field", required=True)
            fp = extractor.sub("field_patterns")
            if fp is not None:
                for value in fp.doc:
                    entry = fp.sub(value)
                    patterns[value] = entry.ints("consent_levels") if entry else ()
                    if entry:
                        entry.done()
                fp.done()
            extractor.done()
        c.done()
        consent = ConsentConfig(defaults, cfield, patterns)

    enc = top.sub("encryption", required=True)
    assert enc is not None
    group = enc.string("batch_job_group_id")
    if group is not None:
        try:
            uuid.UUID(group)
        except ValueError:
            raise enc.error("batch_job_group_id", f"must be a UUID, got {group!r}") from None
    ts = enc.sub("timestamp_config", required=True)
    assert ts is not None
    tfield = ts.string("field", required=True)
    tformat = ts.string("format")
    zone = "UTC"
    zone_reader = ts.sub("default_time_zone")
    if zone_reader is not None:
        zone = zone_reader.string("id") or "UTC"
        zone_reader.done()
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ts.error("default_time_zone.id", f"unknown IANA time zone {zone!r}") from None
    if tformat is not None:
        from airflow_provider_strm.core.timestamps import TimestampParser

        try:
            TimestampParser(tformat, zone)
        except ValueError as exc:
            raise ts.error("format", str(exc)) from None
    ts.done()
    enc.done()

    refs = [k for k in ("event_contract_ref", "data_contract_ref") if top.doc.get(k) is not None]
    if not refs:
        raise ConfigError("event_contract_ref", "is required (or data_contract_ref)", source=source)
    if len(refs) == 2 and top.doc[refs[0]] != top.doc[refs[1]]:
        raise ConfigError("data_contract_ref", "contradicts event_contract_ref", source=source)
    ref_reader = top.sub(refs[0])
    top.seen.update(refs)
    assert ref_reader is not None
    contract_ref = ContractRef(
        ref_reader.string("handle", required=True) or "",
        ref_reader.string("name", required=True) or "",
        ref_reader.string("version", required=True) or "",
    )
    ref_reader.done()

    encrypted = _target(top.sub("encrypted_data", required=True), "encrypted_data", source, True)
    assert encrypted is not None
    keys = _target(top.sub("encryption_keys_data"), "encryption_keys_data", source, False, plain_csv=True)

    derived: list[DerivedDataConfig] = []
    for i, item in enumerate(top.get("derived_data", [])):
        d = DocReader(item, f"derived_data[{i}]", source)
        target = _location(d.sub("target", required=True), f"derived_data[{i}].target", source, True)
        levels = d.ints("consent_levels")
        kind = (d.string("consent_level_type") or "CUMULATIVE").upper()
        if kind not in CONSENT_LEVEL_TYPES:
            raise d.error("consent_level_type", f"must be one of {CONSENT_LEVEL_TYPES}, got {kind!r}")
        if kind == "CUMULATIVE" and len(levels) != 1:
            raise d.error("consent_levels", f"CUMULATIVE takes exactly one level, got {list(levels)}")
        masked = None
        m = d.sub("masked_fields")
        if m is not None:
            hash_name = (m.string("hash_type") or "MURMUR3").upper()
            if hash_name not in HASH_TYPES:
                raise m.error("hash_type", f"must be one of {sorted(set(HASH_TYPES))}, got {hash_name!r}")
            fields: dict[str, tuple[str, ...]] = {}
            fp = m.sub("field_patterns")
            if fp is not None:
                for ref in fp.doc:
                    entry = fp.sub(ref)
                    names = entry.get("field_patterns", []) if entry else []
                    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                        raise fp.error(ref, "field_patterns must be a list of field names")
                    fields[ref] = tuple(names)
                    if entry:
                        entry.done()
                fp.done()
            secret_conn = m.string("secret_connection_id")
            if HASH_TYPES[hash_name] == "HMAC_SHA256" and not secret_conn:
                raise m.error("secret_connection_id", "HMAC_SHA256 needs a connection holding the secret")
            masked = MaskedFields(HASH_TYPES[hash_name], m.string("seed") or "", fields, secret_conn)
            m.done()
        d.done()
        assert target is not None
        derived.append(DerivedDataConfig(target, levels, kind, masked))

    dead_letter = None
    dl = top.sub("dead_letter")
    if dl is not None:
        dl_target = _location(dl.sub("target", required=True), "dead_letter.target", source, True, plain_csv=True)
        max_records = dl.get("max_bad_records")
        if max_records is not None and (not isinstance(max_records, int) or max_records < 0):
            raise dl.error("max_bad_records", f"must be a non-negative integer, got {json.dumps(max_records)}")
        max_ratio = dl.get("max_bad_ratio")
        if max_ratio is not None and (not isinstance(max_ratio, (int, float)) or not 0 <= max_ratio <= 1):
            raise dl.error("max_bad_ratio", f"must be a number between 0 and 1, got {json.dumps(max_ratio)}")
        dl.done()
        assert dl_target is not None
        dead_letter = DeadLetterConfig(dl_target, max_records, None if max_ratio is None else float(max_ratio))
    rules = [_validation(DocReader(v, f"validations[{i}]", source)) for i, v in enumerate(top.get("validations", []))]

    policy_id = top.string("policy_id")
    retention = top.get("retention_days")
    if retention is not None and (not isinstance(retention, int) or retention <= 0):
        raise top.error("retention_days", f"must be a positive number of days, got {json.dumps(retention)}")
    # STRM exports carry server-side metadata; it says nothing about how to run the job.
    top.done(ignored=("ref", "id", "state", "states", "creation_timestamp"))

    return BatchJobConfig(
        source_data=src,
        timestamp=TimestampConfig(tfield or "", tformat, zone),
        contract_ref=contract_ref,
        encrypted_data=encrypted,
        encryption_keys_data=keys,
        consent=consent,
        batch_job_group_id=group,
        derived_data=tuple(derived),
        policy_id=policy_id,
        retention_days=retention,
        dead_letter=dead_letter,
        validations=tuple(rules),
    )


_DURATION = re.compile(r"^P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+)S)?)?$")


def _validation(r: DocReader) -> ValidationRule:
    kind = r.string("type", required=True) or ""
    if kind not in VALIDATION_TYPES:
        raise r.error("type", f"must be one of {VALIDATION_TYPES}, got {kind!r}")
    on_failure = (r.string("on_failure") or "abort").lower()
    if on_failure not in ("abort", "warn"):
        raise r.error("on_failure", f"must be 'abort' or 'warn', got {on_failure!r}")
    rule: dict[str, Any] = {"type": kind, "on_failure": on_failure}
    if kind == "row_count":
        for bound in ("min", "max"):
            value = r.get(bound)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise r.error(bound, f"must be a non-negative integer, got {json.dumps(value)}")
            rule[bound] = value
    elif kind == "null_check":
        fields = r.get("fields", [])
        if not fields or not all(isinstance(f, str) for f in fields):
            raise r.error("fields", "must be a non-empty list of field names")
        threshold = r.get("threshold", 0.0)
        if not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
            raise r.error("threshold", f"must be a fraction between 0 and 1, got {json.dumps(threshold)}")
        rule.update(fields=tuple(fields), threshold=float(threshold))
    else:
        rule["field"] = r.string("field", required=True)
        max_age = r.get("max_age")
        if isinstance(max_age, int) and max_age > 0:
            rule["max_age_s"] = max_age
        else:
            m = _DURATION.match(str(max_age or ""))
            if not m or not any(m.groupdict().values()):
                raise r.error("max_age", f"must be seconds or an ISO-8601 duration like P2D or PT6H, got {max_age!r}")
            parts = {k: int(v or 0) for k, v in m.groupdict().items()}
            rule["max_age_s"] = parts["d"] * 86400 + parts["h"] * 3600 + parts["m"] * 60 + parts["s"]
    r.done()
    return ValidationRule(**rule)
