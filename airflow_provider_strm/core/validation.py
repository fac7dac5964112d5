"""File-level validation rules, checked before anything is committed.

``row_count`` (min/max records), ``null_check`` (at most ``threshold`` of a
field's values empty), ``freshness`` (the newest value of a timestamp field
is at most ``max_age`` old). A failing rule with ``on_failure: abort`` fails
the job (ERROR, no output); with ``warn`` it is reported in the result and
the job's state history.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from airflow_provider_strm.core.config import ValidationRule
from airflow_provider_strm.core.errors import CsvFormatError, TimestampFormatError, ValidationFailed
from airflow_provider_strm.core.timestamps import TimestampParser


class FileChecks:
    """Accumulates what the rules need over the good records of a file, then judges."""

    def __init__(
        self, rules: Sequence[ValidationRule], header: list[str], parser: TimestampParser, now_ms: int | None = None
    ) -> None:
        self.rules = list(rules)
        self.parser = parser
        self.now_ms = now_ms
        self.records = 0
        self.empties: dict[str, int] = {}
        self.newest: dict[str, int | None] = {}
        self._index: dict[str, int] = {}
        for rule in self.rules:
            for name in (*rule.fields, *([rule.field] if rule.field else [])):
                if name not in header:
                    raise CsvFormatError(f"validation {rule.type} names column {name!r}, which the file lacks")
                self._index[name] = header.index(name)
                self.empties.setdefault(name, 0)
                if rule.type == "freshness":
                    self.newest.setdefault(name, None)

    def observe(self, columns: list[list[str]]) -> None:
        if not self.rules:
            return
        self.records += len(columns[0]) if columns else 0
        for name in self.empties:
            self.empties[name] += sum(1 for v in columns[self._index[name]] if v == "")
        for name, newest in self.newest.items():
            for value in columns[self._index[name]]:
                try:
                    ms = self.parser.parse(value)
                except TimestampFormatError:
                    continue
                if newest is None or ms > newest:
                    newest = ms
            self.newest[name] = newest

    def merge(self, other: FileChecks) -> None:
        """Add what ``other`` observed (the same rules, over other records: a worker process's chunk)."""
        self.records += other.records
        for name, count in other.empties.items():
            self.empties[name] += count
        for name, newest in other.newest.items():
            mine = self.newest[name]
            if newest is not None and (mine is None or newest > mine):
                self.newest[name] = newest

    def failures(self, rows_in: int) -> list[tuple[ValidationRule, str]]:
        out: list[tuple[ValidationRule, str]] = []
        now = self.now_ms if self.now_ms is not None else int(time.time() * 1000)
        for rule in self.rules:
            if rule.type == "row_count":
                if rule.min is not None and rows_in < rule.min:
                    out.append((rule, f"row_count: {rows_in} records, fewer than min {rule.min}"))
                if rule.max is not None and rows_in > rule.max:
                    out.append((rule, f"row_count: {rows_in} records, more than max {rule.max}"))
            elif rule.type == "null_check":
                for name in rule.fields:
                    ratio = self.empties[name] / self.records if self.records else 0.0
                    if ratio > rule.threshold:
                        out.append((rule, f"null_check: {ratio:.1%} of {name} empty, above {rule.threshold:.1%}"))
            elif rule.type == "freshness":
                assert rule.field is not None and rule.max_age_s is not None
                newest = self.newest.get(rule.field)
                if newest is None or now - newest > rule.max_age_s * 1000:
                    age = "no timestamp" if newest is None else f"newest is {(now - newest) // 1000} s old"
                    out.append((rule, f"freshness: {rule.field} {age}, max_age {rule.max_age_s} s"))
        return out

    def evaluate(self, result, name: str) -> None:  # type: ignore[no-untyped-def]
        """Raise on an ``abort`` failure; record ``warn`` failures on the result."""
        failures = self.failures(result.rows_in)
        aborts = [text for rule, text in failures if rule.on_failure == "abort"]
        result.warnings.extend(text for rule, text in failures if rule.on_failure == "warn")
        if aborts:
            raise ValidationFailed(f"{name}: validation failed: " + "; ".join(aborts))
