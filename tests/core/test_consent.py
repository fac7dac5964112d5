"""Consent levels are read as STRM reads them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_strm.core.config import ConsentConfig
from airflow_provider_strm.core.consent import ConsentExtractor, format_levels, parse_consent_value


@pytest.mark.parametrize(
    ("value", "levels"),
    [
        ("[1,2]", (1, 2)),
        ("[2, 1, 2]", (1, 2)),
        ("1", (1,)),
        (" 3 ", (3,)),
        ("[]", ()),
        ("yes", None),
        ("", None),
        ("[1,true]", None),
        ("[-1]", None),
        ("1.5", None),
        ("[1", None),
    ],
)
def test_values_parse_as_an_int_array_or_an_int(value: str, levels) -> None:  # type: ignore[no-untyped-def]
    assert parse_consent_value(value) == levels


def test_field_patterns_win_then_parsing_then_the_defaults() -> None:
    extractor = ConsentExtractor(ConsentConfig((0,), "consent", {"all": (3, 1, 2), "1": (9,)}))
    assert extractor.levels("all") == (1, 2, 3)
    assert extractor.levels("1") == (9,)
    assert extractor.levels("[1,2]") == (1, 2)
    assert extractor.levels("garbage") == (0,)
    assert extractor.levels(None) == (0,)


def test_levels_format_as_strm_writes_them() -> None:
    assert format_levels((1, 2)) == "[1,2]"
    assert format_levels(()) == "[]"


@given(st.text(max_size=50))
def test_any_text_gives_levels_never_an_error(value: str) -> None:
    levels = ConsentExtractor(ConsentConfig((2,), "c")).levels(value)
    assert all(isinstance(i, int) and i >= 0 for i in levels)
    assert list(levels) == sorted(set(levels))
