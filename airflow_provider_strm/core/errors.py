"""Named errors of the engine.

Two families matter to the scheduler: a :class:`JobStartError` happens before a
job could start (a connector or the key store cannot be reached) and is worth a
retry; every other :class:`StrmError` happens while processing data and retrying
will not help.
"""

from __future__ import annotations


class StrmError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(StrmError):
    """A job configuration or data contract is invalid; ``path`` names the setting."""

    def __init__(self, path: str, message: str, *, source: str | None = None) -> None:
        self.path = path
        self.source = source
        where = f" in {source}" if source else ""
        super().__init__(f"{path}: {message}{where}")


class TimestampFormatError(StrmError):
    """A value does not match the timestamp pattern; the record it came from is named by the caller."""

    def __init__(self, value: str, pattern: str | None, reason: str | None = None) -> None:
        self.value = value
        self.pattern = pattern
        self.reason = reason
        shown = pattern if pattern is not None else "ISO-8601"
        super().__init__(f"{value} does not match {shown}" + (f" ({reason})" if reason else ""))


class RecordError(StrmError):
    """One record of a file cannot be processed. ``row`` counts records from 1 after the header."""

    def __init__(self, file: str, row: int, reason: str, *, field: str | None = None) -> None:
        self.file = file
        self.row = row
        self.field = field
        self.reason = reason
        field_part = f" field {field!r}" if field else ""
        super().__init__(f"{reason} in row #{row}{field_part} of {file}")


class TooManyBadRecords(StrmError):
    """More records were dead-lettered than ``max_bad_records`` / ``max_bad_ratio`` allow."""


class ValidationFailed(StrmError):
    """A validation rule with ``on_failure: abort`` failed; nothing was committed."""


class DataFormatError(StrmError):
    """A data file cannot be read in its format (no header, not JSON Lines, not Parquet, broken gzip)."""


class CsvFormatError(DataFormatError):
    """A CSV file cannot be read (bad header, bad charset, unparseable layout)."""


class DecryptionError(StrmError):
    """A ciphertext does not decrypt under the key it names. Never returned as an empty value."""


class KeyStoreError(StrmError):
    """The key store refused an operation (wrong key-encryption key, schema from the future...)."""


class JobStartError(StrmError):
    """The job could not start: a data connector or the key store is unreachable. Retryable."""
