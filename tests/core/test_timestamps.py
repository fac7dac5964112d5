"""Timestamps are read with Java DateTimeFormatter patterns, as STRM read them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_strm.core.errors import TimestampFormatError
from airflow_provider_strm.core.timestamps import DAY_MS, TimestampParser, window_start


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def test_the_strm_reference_timestamps() -> None:
    parser = TimestampParser("yyyy-MM-dd HH:mm:ss", "Europe/Amsterdam")
    assert parser.parse("2010-12-01 08:26:00") == 1291188360000
    assert parser.parse("2010-12-01 11:52:00") == 1291200720000


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("M/d/yyyy H:m", "12/1/2010 8:26", "2010-12-01T08:26:00+00:00"),
        ("M/d/yyyy H:m", "02/09/2011 14:05", "2011-02-09T14:05:00+00:00"),
        ("yyyy-MM-dd'T'HH:mm:ss.SSSXXX", "2026-11-20T10:00:00.123+01:00", "2026-11-20T09:00:00.123+00:00"),
        ("yyyy-MM-dd'T'HH:mm:ssX", "2026-11-20T10:00:00Z", "2026-11-20T10:00:00+00:00"),
        ("yyyyMMddHHmmssZ", "20261120100000-0230", "2026-11-20T12:30:00+00:00"),
        ("dd/MM/yy hh:mm a", "20/11/26 12:15 AM", "2026-11-20T00:15:00+00:00"),
        ("dd/MM/yy hh:mm a", "20/11/26 12:15 pm", "2026-11-20T12:15:00+00:00"),
        ("dd MMM yyyy HH:mm", "20 Nov 2026 07:00", "2026-11-20T07:00:00+00:00"),
        ("EEE, dd MMMM yyyy", "Fri, 20 November 2026", "2026-11-20T00:00:00+00:00"),
        ("yyyy-MM-dd HH:mm:ss.SS", "2026-11-20 07:00:00.25", "2026-11-20T07:00:00.250+00:00"),
        ("yyyy-MM-dd''HH", "2026-11-20'07", "2026-11-20T07:00:00+00:00"),
        ("yyyy-MM-dd kk:mm", "2026-11-20 24:00", "2026-11-20T00:00:00+00:00"),
        ("yyyy-DDD", "2026-324", "2026-11-20T00:00:00+00:00"),
    ],
)
def test_java_patterns(pattern: str, value: str, expected: str) -> None:
    assert TimestampParser(pattern, "UTC").parse(value) == ms(expected)


def test_iso_8601_without_a_pattern() -> None:
    parser = TimestampParser(None, "Europe/Amsterdam")
    assert parser.parse("2010-12-01T08:26:00Z") == ms("2010-12-01T08:26:00+00:00")
    assert parser.parse("2010-12-01T08:26:00.5+02:00") == ms("2010-12-01T06:26:00.5+00:00")
    assert parser.parse("2010-12-01 08:26:00") == 1291188360000
    assert parser.parse("2010-12-01") == ms("2010-11-30T23:00:00+00:00")


def test_an_offset_in_the_value_wins_over_the_default_zone() -> None:
    assert TimestampParser("yyyy-MM-dd HH:mmXXX", "Asia/Tokyo").parse("2026-11-20 10:00+00:00") == ms(
        "2026-11-20T10:00:00+00:00"
    )


def test_dst_gap_moves_forward_and_overlap_takes_the_earlier_offset_like_java() -> None:
    parser = TimestampParser("yyyy-MM-dd HH:mm", "Europe/Amsterdam")
    assert parser.parse("2026-03-29 02:30") == ms("2026-03-29T03:30:00+02:00")
    assert parser.parse("2026-10-25 02:30") == ms("2026-10-25T02:30:00+02:00")


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("yyyy-MM-dd QQ", "not supported"),
        ("yyyy-MM-dd'T", "unbalanced"),
        ("yyyy-MM-dd hh:mm", "AM/PM|12-hour|clock"),
        ("MM-dd", "year"),
    ],
)
def test_unsupported_patterns_are_refused_at_construction(pattern: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TimestampParser(pattern)


def test_an_unknown_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="Mars/Base"):
        TimestampParser(None, "Mars/Base")


@pytest.mark.parametrize(
    "value", ["2010/12/01 08:26:00", "2010-13-01 08:26:00", "2010-02-30 08:26:00", "2010-12-01 25:00:00", "x"]
)
def test_a_value_that_does_not_match_names_value_and_pattern(value: str) -> None:
    with pytest.raises(TimestampFormatError) as err:
        TimestampParser("yyyy-MM-dd HH:mm:ss").parse(value)
    assert str(err.value).startswith(f"{value} does not match yyyy-MM-dd HH:mm:ss")


def test_a_missing_value_is_a_named_error() -> None:
    with pytest.raises(TimestampFormatError, match="missing"):
        TimestampParser("yyyy-MM-dd").parse("")


def test_windows_are_utc_days() -> None:
    assert window_start(1291188360000) == ms("2010-12-01T00:00:00+00:00")
    assert window_start(-1) == -DAY_MS
    assert window_start(0) == 0


MOMENTS = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2100, 1, 1)).map(
    lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000)
)


@settings(max_examples=300, deadline=None)
@given(MOMENTS, st.sampled_from(["UTC", "Europe/Amsterdam", "America/New_York", "Asia/Kolkata"]))
def test_formatted_moments_parse_back_to_their_instant(moment: datetime, zone: str) -> None:
    aware = moment.replace(tzinfo=UTC).astimezone(ZoneInfo(zone))
    expected = int((moment.replace(tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(milliseconds=1))
    text = aware.strftime("%Y-%m-%dT%H:%M:%S.") + f"{aware.microsecond // 1000:03d}" + aware.strftime("%z")
    assert TimestampParser("yyyy-MM-dd'T'HH:mm:ss.SSSxx", "UTC").parse(text) == expected
    local = aware.replace(tzinfo=None)
    if aware.fold == 0 and local.replace(tzinfo=ZoneInfo(zone)).utcoffset() == aware.utcoffset():
        plain = TimestampParser("yyyy-MM-dd HH:mm:ss.SSS", zone).parse(local.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3])
        assert plain == expected


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=40), st.sampled_from(["yyyy-MM-dd HH:mm:ss", "M/d/yyyy H:m", "dd MMM yy hh:mm a", None]))
def test_any_text_raises_nothing_but_timestamp_format_error(value: str, pattern: str | None) -> None:
    try:
        assert isinstance(TimestampParser(pattern, "Europe/Amsterdam").parse(value), int)
    except TimestampFormatError:
        pass
