"""Consent levels of a record, read the way STRM reads them.

The consent field's value is looked up in ``field_patterns`` (exact match);
with no mapping it is parsed as an int array (``[1,2]``) or an int (``1``);
anything else, or an absent field, gives ``default_consent_levels``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from airflow_provider_strm.core.config import ConsentConfig

ConsentLevels = tuple[int, ...]
#: A replacement extractor: takes the record (field → value) and returns its consent levels.
ConsentCallable = Callable[[Mapping[str, Any]], "ConsentLevels | list[int]"]


def parse_consent_value(value: str) -> ConsentLevels | None:
    """``"[1,2]"`` → (1, 2); ``"1"`` → (1,); anything else → None. Sorted, unique, non-negative."""
    text = value.strip()
    if not text:
        return None
    if text.lstrip("+").isdigit() and text.isascii():
        return (int(text),)
    if text.startswith("[") and text.endswith("]"):
        try:
            items = json.loads(text)
        except (ValueError, RecursionError):
            return None
        if isinstance(items, list) and all(type(i) is int and i >= 0 for i in items):
            return tuple(sorted(set(items)))
    return None


class ConsentExtractor:
    """Maps a record's consent field value to its consent levels, caching per distinct value."""

    def __init__(self, config: ConsentConfig) -> None:
        self.field = config.field
        self.defaults: ConsentLevels = tuple(sorted(set(config.default_consent_levels)))
        self._patterns = {k: tuple(sorted(set(v))) for k, v in config.field_patterns.items()}
        self._cache: dict[str | None, ConsentLevels] = {}

    def levels(self, value: str | None) -> ConsentLevels:
        try:
            return self._cache[value]
        except KeyError:
            pass
        if value is None:
            found = self.defaults
        elif value in self._patterns:
            found = self._patterns[value]
        else:
            parsed = parse_consent_value(value)
            found = self.defaults if parsed is None else parsed  # "[]" is an explicit "no consent"
        if len(self._cache) < 65536:
            self._cache[value] = found
        return found


def format_levels(levels: ConsentLevels) -> str:
    """STRM's ``strmMeta.consentLevels`` text: ``[1,2]``."""
    return "[" + ",".join(str(i) for i in levels) + "]"
