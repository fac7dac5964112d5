"""Timestamps are read with Java DateTimeFormatter patterns, as STRM's Java batch jobs read them.

Expected instants marked "java" were produced by java.time (JDK 17, ``ZonedDateTime.parse`` with
``DateTimeFormatter.ofPattern(pattern).withZone(zone)``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from airflow_provider_strm.core.errors import TimestampFormatError
from airflow_provider_strm.core.timestamps import DAY_MS, TimestampParser, window_start

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ms(instant: str) -> int:
    """Epoch milliseconds of an ISO-8601 instant that carries its offset."""
    return (datetime.fromisoformat(instant) - EPOCH) // timedelta(milliseconds=1)


def parse(pattern: str | None, value: str, zone: str = "UTC") -> int:
    return TimestampParser(pattern, zone).parse(value)


# --------------------------------------------------------------------- what STRM gave


def test_the_strm_reference_timestamps() -> None:
    parser = TimestampParser("yyyy-MM-dd HH:mm:ss", "Europe/Amsterdam")
    assert parser.parse("2010-12-01 08:26:00") == 1291188360000
    assert parser.parse("2010-12-01 11:52:00") == 1291200720000


def test_one_letter_fields_take_one_or_two_digits_two_letters_exactly_two() -> None:
    assert parse("M/d/yyyy H:m", "12/1/2010 8:26") == ms("2010-12-01T08:26:00+00:00")
    assert parse("M/d/yyyy H:m", "2/9/2011 14:05") == ms("2011-02-09T14:05:00+00:00")
    assert parse("M/d/yyyy H:m", "02/09/2011 14:05") == ms("2011-02-09T14:05:00+00:00")
    with pytest.raises(TimestampFormatError):
        parse("M/d/yyyy H:m", "012/1/2010 8:26")
    with pytest.raises(TimestampFormatError):
        parse("MM/dd/yyyy HH:mm", "12/1/2010 08:26")


# --------------------------------------------------------------------- every letter


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        # years: y and u alike; yy is 2000-2099 (Java's base year 2000)
        ("y-M-d", "2026-11-20", "2026-11-20T00:00:00+00:00"),
        ("yyyy-MM-dd", "2026-11-20", "2026-11-20T00:00:00+00:00"),
        ("uuuu-MM-dd", "2026-11-20", "2026-11-20T00:00:00+00:00"),
        ("yy-MM-dd", "26-11-20", "2026-11-20T00:00:00+00:00"),
        ("yy-MM-dd", "99-11-20", "2099-11-20T00:00:00+00:00"),
        ("yy-MM-dd", "00-01-01", "2000-01-01T00:00:00+00:00"),
        ("yyyyMMddHHmmss", "20261120100000", "2026-11-20T10:00:00+00:00"),
        # months: numbers, English names in any case, stand-alone L
        ("dd MMM yyyy", "20 Nov 2026", "2026-11-20T00:00:00+00:00"),
        ("dd MMM yyyy", "20 nov 2026", "2026-11-20T00:00:00+00:00"),
        ("dd MMM yyyy", "20 MAY 2026", "2026-05-20T00:00:00+00:00"),
        ("dd MMMM yyyy", "20 November 2026", "2026-11-20T00:00:00+00:00"),
        ("dd MMMM yyyy", "01 september 2026", "2026-09-01T00:00:00+00:00"),
        ("LL/dd/yyyy", "11/20/2026", "2026-11-20T00:00:00+00:00"),
        # days: of month, of year (leap years have 366)
        ("yyyy-DDD", "2026-324", "2026-11-20T00:00:00+00:00"),
        ("yyyy-D", "2024-60", "2024-02-29T00:00:00+00:00"),
        ("yyyy-DDD", "2024-366", "2024-12-31T00:00:00+00:00"),
        # hours: H 0-23, k 1-24 (24 is midnight starting the day), h 1-12 and K 0-11 with a
        ("yyyy-MM-dd H", "2026-11-20 0", "2026-11-20T00:00:00+00:00"),
        ("yyyy-MM-dd HH", "2026-11-20 23", "2026-11-20T23:00:00+00:00"),
        ("yyyy-MM-dd kk:mm", "2026-11-20 24:00", "2026-11-20T00:00:00+00:00"),
        ("yyyy-MM-dd k:mm", "2026-11-20 1:30", "2026-11-20T01:30:00+00:00"),
        ("yyyy-MM-dd hh:mm a", "2026-11-20 07:45 PM", "2026-11-20T19:45:00+00:00"),
        ("yyyy-MM-dd K:mm a", "2026-11-20 0:05 PM", "2026-11-20T12:05:00+00:00"),
        # minutes, seconds; S is a fraction of exactly that many digits, n whole nanoseconds
        ("yyyy-MM-dd H:m:s", "2026-11-20 7:5:9", "2026-11-20T07:05:09+00:00"),
        ("yyyy-MM-dd HH:mm:ss.S", "2026-11-20 07:00:00.5", "2026-11-20T07:00:00.500+00:00"),
        ("yyyy-MM-dd HH:mm:ss.SS", "2026-11-20 07:00:00.25", "2026-11-20T07:00:00.250+00:00"),
        ("yyyy-MM-dd HH:mm:ss.SSS", "2026-11-20 07:00:00.007", "2026-11-20T07:00:00.007+00:00"),
        ("yyyy-MM-dd HH:mm:ss.SSSSSS", "2026-11-20 07:00:00.123999", "2026-11-20T07:00:00.123+00:00"),
        ("yyyy-MM-dd HH:mm:ss.SSSSSSSSS", "2026-11-20 07:00:00.123456789", "2026-11-20T07:00:00.123+00:00"),
        ("yyyy-MM-dd HH:mm:ss.n", "2026-11-20 07:00:00.123456789", "2026-11-20T07:00:00.123+00:00"),
        # day of week: parsed, and must be the date's
        ("E yyyy-MM-dd", "Fri 2026-11-20", "2026-11-20T00:00:00+00:00"),
        ("EEE, dd MMMM yyyy", "fri, 20 November 2026", "2026-11-20T00:00:00+00:00"),
        ("EEEE dd/MM/yyyy", "Friday 20/11/2026", "2026-11-20T00:00:00+00:00"),
        ("EEEEE dd/MM/yyyy", "F 20/11/2026", "2026-11-20T00:00:00+00:00"),
        # offsets
        ("yyyy-MM-dd HH:mmX", "2026-11-20 10:00Z", "2026-11-20T10:00:00+00:00"),
        ("yyyy-MM-dd HH:mmX", "2026-11-20 10:00+05", "2026-11-20T10:00:00+05:00"),
        ("yyyy-MM-dd HH:mmX", "2026-11-20 10:00+0530", "2026-11-20T10:00:00+05:30"),
        ("yyyy-MM-dd HH:mmXX", "2026-11-20 10:00-0230", "2026-11-20T10:00:00-02:30"),
        ("yyyy-MM-dd HH:mmXXX", "2026-11-20 10:00+05:30", "2026-11-20T10:00:00+05:30"),
        ("yyyy-MM-dd HH:mmXXX", "2026-11-20 10:00Z", "2026-11-20T10:00:00+00:00"),
        ("yyyy-MM-dd HH:mmXXXXX", "2026-11-20 10:00+01:00:30", "2026-11-20T10:00:00+01:00:30"),
        ("yyyy-MM-dd HH:mmx", "2026-11-20 10:00+00", "2026-11-20T10:00:00+00:00"),
        ("yyyy-MM-dd HH:mmxx", "2026-11-20 10:00+0100", "2026-11-20T10:00:00+01:00"),
        ("yyyy-MM-dd HH:mmxxx", "2026-11-20 10:00-03:00", "2026-11-20T10:00:00-03:00"),
        ("yyyy-MM-dd HH:mmxxxx", "2026-11-20 10:00+010030", "2026-11-20T10:00:00+01:00:30"),
        ("yyyyMMddHHmmssZ", "20261120100000-0230", "2026-11-20T10:00:00-02:30"),
        ("yyyy-MM-dd HH:mm ZZZZ", "2026-11-20 10:00 GMT+08:30", "2026-11-20T10:00:00+08:30"),
        ("yyyy-MM-dd HH:mm ZZZZZ", "2026-11-20 10:00 Z", "2026-11-20T10:00:00+00:00"),
        ("yyyy-MM-dd HH:mm ZZZZZ", "2026-11-20 10:00 +01:00", "2026-11-20T10:00:00+01:00"),
        ("yyyy-MM-dd HH:mm O", "2026-11-20 10:00 GMT+8", "2026-11-20T10:00:00+08:00"),
        ("yyyy-MM-dd HH:mm O", "2026-11-20 10:00 GMT", "2026-11-20T10:00:00+00:00"),
        # zone ids
        ("yyyy-MM-dd HH:mm VV", "2026-11-20 10:00 Asia/Tokyo", "2026-11-20T10:00:00+09:00"),
        ("yyyy-MM-dd HH:mm VV", "2026-11-20 10:00 UTC+01:00", "2026-11-20T10:00:00+01:00"),
        ("yyyy-MM-dd HH:mm z", "2026-11-20 10:00 Europe/Amsterdam", "2026-11-20T10:00:00+01:00"),
        ("yyyy-MM-dd HH:mm VVXXX", "2026-11-20 10:00 Asia/Tokyo+01:00", "2026-11-20T10:00:00+01:00"),
        # literals: quoted text, '' for a quote, other non-letters as they are
        ("yyyy-MM-dd'T'HH:mm:ss", "2026-11-20T10:00:00", "2026-11-20T10:00:00+00:00"),
        ("yyyy-MM-dd''HH", "2026-11-20'07", "2026-11-20T07:00:00+00:00"),
        ("h 'o''clock' a, yyyy-MM-dd", "5 o'clock PM, 2026-11-20", "2026-11-20T17:00:00+00:00"),
        ("'at' HH:mm 'on' dd.MM.yyyy", "at 10:00 on 20.11.2026", "2026-11-20T10:00:00+00:00"),
        # optional sections
        ("yyyy-MM-dd['T'HH:mm[:ss]]", "2026-11-20", "2026-11-20T00:00:00+00:00"),
        ("yyyy-MM-dd['T'HH:mm[:ss]]", "2026-11-20T10:00", "2026-11-20T10:00:00+00:00"),
        ("yyyy-MM-dd['T'HH:mm[:ss]]", "2026-11-20T10:00:05", "2026-11-20T10:00:05+00:00"),
    ],
)
def test_each_pattern_letter(pattern: str, value: str, expected: str) -> None:
    assert parse(pattern, value) == ms(expected)


def test_a_time_of_day_field_left_out_is_zero() -> None:
    assert parse("yyyy-MM-dd HH", "2024-03-01 10") == ms("2024-03-01T10:00:00+00:00")
    assert parse("yyyy-MM-dd", "2024-03-01", "Europe/Amsterdam") == ms("2024-03-01T00:00:00+01:00")


# --------------------------------------------------------------------- offsets and zones


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("yyyy-MM-dd HH:mmX", "2026-11-20 10:00Z", "2026-11-20T10:00:00+00:00"),
        ("yyyy-MM-dd HH:mmXXX", "2026-11-20 10:00+01:00", "2026-11-20T10:00:00+01:00"),
        ("yyyy-MM-dd HH:mmZ", "2026-11-20 10:00-0500", "2026-11-20T10:00:00-05:00"),
        ("yyyy-MM-dd'T'HH:mm:ss.SSSXXX", "2026-11-20T10:00:00.123+01:00", "2026-11-20T09:00:00.123+00:00"),
    ],
)
def test_an_offset_in_the_value_wins_over_the_default_zone(pattern: str, value: str, expected: str) -> None:
    assert parse(pattern, value, "Asia/Tokyo") == ms(expected)


def test_a_value_without_offset_is_read_in_the_default_zone() -> None:
    assert parse("yyyy-MM-dd HH:mm", "2026-11-20 10:00", "Asia/Tokyo") == ms("2026-11-20T10:00:00+09:00")
    summer = parse("yyyy-MM-dd HH:mm", "2026-07-20 10:00", "Europe/Amsterdam")
    assert summer == ms("2026-07-20T10:00:00+02:00")


@pytest.mark.parametrize(
    ("pattern", "value"),
    [
        ("yyyy-MM-dd HH:mmX", "2026-11-20 10:00+05:30"),  # X has no colon
        ("yyyy-MM-dd HH:mmXX", "2026-11-20 10:00+05"),  # XX needs minutes
        ("yyyy-MM-dd HH:mmXXX", "2026-11-20 10:00+0530"),  # XXX needs the colon
        ("yyyy-MM-dd HH:mmxxx", "2026-11-20 10:00Z"),  # x never takes Z
        ("yyyy-MM-dd HH:mmZ", "2026-11-20 10:00Z"),  # nor does Z
        ("yyyy-MM-dd HH:mmZ", "2026-11-20 10:00+01:00"),
        ("yyyy-MM-dd HH:mmX", "2026-11-20 10:00+1900"),  # beyond +18:00
        ("yyyy-MM-dd HH:mmX", "2026-11-20 10:00z"),
        ("yyyy-MM-dd HH:mm z", "2026-11-20 10:00 PST"),  # zone names are not zone ids
        ("yyyy-MM-dd HH:mm VV", "2026-11-20 10:00 Europe"),
        ("yyyy-MM-dd HH:mm VV", "2026-11-20 10:00 Mars/Base"),
    ],
)
def test_offsets_and_zones_must_have_the_pattern_layout(pattern: str, value: str) -> None:
    with pytest.raises(TimestampFormatError):
        parse(pattern, value)


# --------------------------------------------------------------------- 12-hour clock


@pytest.mark.parametrize(
    ("value", "hour"),
    [("12:00 AM", 0), ("12:30 am", 0), ("01:00 AM", 1), ("11:59 AM", 11), ("12:00 PM", 12), ("01:00 pm", 13)],
)
def test_a_12_hour_clock_with_am_pm(value: str, hour: int) -> None:
    expected = datetime(2026, 11, 20, hour, int(value[3:5]), tzinfo=UTC)
    assert parse("yyyy-MM-dd hh:mm a", f"2026-11-20 {value}") == ms(expected.isoformat())


@pytest.mark.parametrize(
    ("pattern", "value"),
    [
        ("yyyy-MM-dd hh:mm a", "2026-11-20 13:00 PM"),
        ("yyyy-MM-dd hh:mm a", "2026-11-20 00:00 AM"),
        ("yyyy-MM-dd K:mm a", "2026-11-20 12:00 PM"),
        ("yyyy-MM-dd HH:mm a", "2026-11-20 13:00 AM"),  # H and a must agree
        ("yyyy-MM-dd hh:mm a", "2026-11-20 10:00 XM"),
    ],
)
def test_impossible_12_hour_values_are_refused(pattern: str, value: str) -> None:
    with pytest.raises(TimestampFormatError):
        parse(pattern, value)


# --------------------------------------------------------------------- DST


@pytest.mark.parametrize(
    ("zone", "local", "java"),
    [
        ("Europe/Amsterdam", "2026-03-29 02:30", 1774747800000),  # gap: read as 03:30+02:00
        ("Europe/Amsterdam", "2026-10-25 02:30", 1792888200000),  # overlap: the earlier offset, +02:00
        ("America/New_York", "2026-03-08 02:30", 1772955000000),
        ("America/New_York", "2026-11-01 01:30", 1793511000000),
        ("Australia/Lord_Howe", "2026-10-04 02:15", 1791042300000),  # a 30-minute gap
        ("Pacific/Apia", "2011-12-30 12:00", 1325282400000),  # a day Samoa skipped
    ],
)
def test_dst_gaps_move_forward_and_overlaps_take_the_earlier_offset(zone: str, local: str, java: int) -> None:
    assert parse("yyyy-MM-dd HH:mm", local, zone) == java


def test_the_amsterdam_gap_and_overlap_in_wall_clock_terms() -> None:
    parser = TimestampParser("yyyy-MM-dd HH:mm", "Europe/Amsterdam")
    assert parser.parse("2026-03-29 02:30") == ms("2026-03-29T03:30:00+02:00")
    assert parser.parse("2026-03-29 02:30") == parser.parse("2026-03-29 03:30")
    assert parser.parse("2026-10-25 02:30") == ms("2026-10-25T02:30:00+02:00")


# --------------------------------------------------------------------- ISO-8601


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2010-12-01T08:26:00Z", "2010-12-01T08:26:00+00:00"),
        ("2010-12-01T08:26:00.123+01:00", "2010-12-01T07:26:00.123+00:00"),
        ("2010-12-01T08:26:00.5-03:30", "2010-12-01T11:56:00.500+00:00"),
        ("2010-12-01T08:26:00", "2010-12-01T08:26:00+01:00"),
        ("2010-12-01 08:26:00", "2010-12-01T08:26:00+01:00"),
        ("2010-12-01T08:26", "2010-12-01T08:26:00+01:00"),
        ("2010-12-01", "2010-12-01T00:00:00+01:00"),
        ("2010-12-01T08:26:00+01:00[Europe/Paris]", "2010-12-01T08:26:00+01:00"),
        ("2010-12-01T08:26:00[Asia/Tokyo]", "2010-12-01T08:26:00+09:00"),
    ],
)
def test_iso_8601_without_a_pattern(value: str, expected: str) -> None:
    assert parse(None, value, "Europe/Amsterdam") == ms(expected)


def test_the_iso_golden_values_match_the_pattern_ones() -> None:
    assert parse(None, "2010-12-01 08:26:00", "Europe/Amsterdam") == 1291188360000


NOT_ISO = ["2010-12-01T08", "2010-12-1", "2010/12/01", "20101201", "2010-12-01X08", " 2010-12-01"]


@pytest.mark.parametrize("value", [*NOT_ISO, "2010-12-32", "2010-12-01T08:26+25:00"])
def test_what_is_not_iso_8601_is_refused(value: str) -> None:
    with pytest.raises(TimestampFormatError, match="ISO-8601"):
        parse(None, value)


# --------------------------------------------------------------------- configuration errors


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("yyyy-MM-dd QQ", "letter 'Q' is not supported"),
        ("yyyy-MM-dd'T", "unbalanced quote"),
        ("yyyy-MM-dd]", "without a previous"),
        ("yyyy-MM-dd #", "reserved character"),
        ("YYYY-MM-dd", "week-based year"),
        ("yyyy-MM-dd hh:mm", "12-hour clock"),
        ("yyyy-MM-dd HH:mm aa", "single letter a"),
        ("yyyy-MMM-ddd", "too many pattern letters"),
        ("yyyy-MM-dd HHH", "too many pattern letters"),
        ("yyyy-MM-dd HH:mm:ss.SSSSSSSSSS", "at most 9 digits"),
        ("yyyy-MM-dd HH:mmXXXXXX", "too many pattern letters"),
        ("yyyy-MMMMM-dd", "narrow month"),
        ("hh:mm a", "no year"),
        ("yyyy-MM", "no full date"),
        ("yyyy-MM-dd mm", "no hour"),
        ("yyyy-MM-dd HH:ss", "no minutes"),
        ("", "no year"),
    ],
)
def test_unsupported_patterns_are_refused_at_construction(pattern: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        TimestampParser(pattern)
    assert repr(pattern) in str(err.value)


@pytest.mark.parametrize("zone", ["Mars/Base", "Europe", "", "../etc/passwd", "a" * 300])
def test_an_unknown_zone_is_refused_and_named(zone: str) -> None:
    with pytest.raises(ValueError, match="unknown IANA time zone") as err:
        TimestampParser(None, zone)
    assert repr(zone) in str(err.value)


# --------------------------------------------------------------------- bad values


@pytest.mark.parametrize(
    "value", ["2010/12/01 08:26:00", "2010-12-01 08:26", "2010-12-01 08:26:00 ", "2010-12-01t08:26:00", "x"]
)
def test_a_value_that_does_not_match_names_value_and_pattern(value: str) -> None:
    with pytest.raises(TimestampFormatError) as err:
        parse("yyyy-MM-dd HH:mm:ss", value)
    assert str(err.value) == f"{value} does not match yyyy-MM-dd HH:mm:ss"
    assert (err.value.value, err.value.pattern) == (value, "yyyy-MM-dd HH:mm:ss")


@pytest.mark.parametrize(
    "value",
    [
        "2010-13-01 08:26:00",
        "2010-00-01 08:26:00",
        "2010-12-32 08:26:00",
        "2010-02-30 08:26:00",  # java.time's SMART resolver reads Feb 28: here an impossible date is an error
        "2011-02-29 08:26:00",
        "2010-12-01 25:00:00",
        "2010-12-01 24:00:00",
        "2010-12-01 08:60:00",
        "2010-12-01 08:26:60",
        "0000-12-01 08:26:00",
    ],
)
def test_out_of_range_values_are_refused_with_a_reason(value: str) -> None:
    with pytest.raises(TimestampFormatError) as err:
        parse("yyyy-MM-dd HH:mm:ss", value)
    assert str(err.value).startswith(f"{value} does not match yyyy-MM-dd HH:mm:ss (")


def test_digits_of_other_scripts_are_not_digits() -> None:
    with pytest.raises(TimestampFormatError):
        parse("yyyy-MM-dd", "٢٠١٠-١٢-٠١")


def test_a_day_of_week_must_be_the_dates() -> None:
    with pytest.raises(TimestampFormatError, match="Saturday is not the day of week of 2026-11-20"):
        parse("EEE yyyy-MM-dd", "Sat 2026-11-20")


def test_a_day_of_year_must_exist_and_agree_with_the_date() -> None:
    with pytest.raises(TimestampFormatError):
        parse("yyyy-DDD", "2025-366")
    with pytest.raises(TimestampFormatError):
        parse("yyyy-MM-dd-DDD", "2024-03-01-062")
    assert parse("yyyy-MM-dd-DDD", "2024-03-01-061") == ms("2024-03-01T00:00:00+00:00")


@pytest.mark.parametrize("pattern", ["yyyy-MM-dd", None])
def test_a_missing_value_is_a_named_error(pattern: str | None) -> None:
    parser = TimestampParser(pattern)
    for missing in ("", None):
        with pytest.raises(TimestampFormatError, match="missing timestamp") as err:
            parser.parse(missing)  # type: ignore[arg-type]
        assert err.value.value == ""


# --------------------------------------------------------------------- windows, cache, many values


def test_windows_are_utc_days() -> None:
    assert DAY_MS == 86_400_000
    assert window_start(1291188360000) == ms("2010-12-01T00:00:00+00:00")
    assert window_start(ms("2010-12-01T23:59:59.999+00:00")) == ms("2010-12-01T00:00:00+00:00")
    assert window_start(0) == 0
    assert window_start(DAY_MS - 1) == 0
    assert window_start(-1) == -DAY_MS
    assert window_start(-DAY_MS) == -DAY_MS
    assert window_start(ms("1969-07-20T20:17:40+00:00")) == ms("1969-07-20T00:00:00+00:00")


def test_repeated_values_give_the_same_answer_and_the_cache_stays_bounded() -> None:
    parser = TimestampParser("yyyy-MM-dd HH:mm:ss", "Europe/Amsterdam")
    first = parser.parse("2010-12-01 08:26:00")
    start = datetime(2010, 1, 1)
    for second in range(70_000):
        parser.parse((start + timedelta(seconds=second)).strftime("%Y-%m-%d %H:%M:%S"))
    assert len(parser._cache) <= 65_536  # memory bound over a long file
    assert parser.parse("2010-12-01 08:26:00") == first == 1291188360000


def test_parse_many_is_parse_for_each_value() -> None:
    parser = TimestampParser("M/d/yyyy H:m", "Europe/Amsterdam")
    values = ["12/1/2010 8:26", "12/1/2010 11:52", "12/1/2010 8:26", "1/31/2011 23:59"]
    fresh = TimestampParser("M/d/yyyy H:m", "Europe/Amsterdam")
    assert parser.parse_many(values) == [fresh.parse(v) for v in values]
    assert parser.parse_many([]) == []
    with pytest.raises(TimestampFormatError, match="13/1/2010"):
        parser.parse_many(["12/1/2010 8:26", "13/1/2010 8:26", ""])


# --------------------------------------------------------------------- properties

ZONES = ["UTC", "Europe/Amsterdam", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]
INSTANTS = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2100, 12, 31)).map(
    lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000, tzinfo=UTC)
)


def _java_offset(moment: datetime, colon: bool) -> str:
    total = int(moment.utcoffset().total_seconds())  # type: ignore[union-attr]
    sign, total = ("-" if total < 0 else "+"), abs(total)
    parts = [f"{total // 3600:02d}", f"{total % 3600 // 60:02d}"]
    if total % 60:
        parts.append(f"{total % 60:02d}")
    return sign + (":" if colon else "").join(parts)


# (Java pattern, renders a local moment); offsets of old local mean times have seconds, so +HH:MM:ss layouts
RENDERINGS: list[tuple[str, Callable[[datetime], str]]] = [
    ("yyyy-MM-dd HH:mm:ss.SSS", lambda d: d.strftime("%Y-%m-%d %H:%M:%S.") + f"{d.microsecond // 1000:03d}"),
    ("M/d/yyyy H:m:s", lambda d: f"{d.month}/{d.day}/{d.year} {d.hour}:{d.minute}:{d.second}"),
    ("dd/MM/yyyy hh:mm:ss a", lambda d: d.strftime("%d/%m/%Y %I:%M:%S %p")),
    ("EEE, dd MMM yyyy HH:mm:ss", lambda d: d.strftime("%a, %d %b %Y %H:%M:%S")),
    ("yyyyMMddHHmmss", lambda d: d.strftime("%Y%m%d%H%M%S")),
    (
        "yyyy-MM-dd'T'HH:mm:ss.SSSXXXXX",
        lambda d: d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}" + _java_offset(d, True),
    ),
    ("yyyyMMddHHmmssxxxx", lambda d: d.strftime("%Y%m%d%H%M%S") + _java_offset(d, False)),
]


@settings(max_examples=400, deadline=None)
@given(INSTANTS, st.sampled_from(ZONES), st.sampled_from(RENDERINGS))
def test_formatted_instants_parse_back_to_themselves(
    instant: datetime, zone: str, rendering: tuple[str, Callable[[datetime], str]]
) -> None:
    pattern, render = rendering
    local = instant.astimezone(ZoneInfo(zone))
    # the second pass of a repeated wall-clock hour reads as the first one (Java's earlier offset)
    assume(local.fold == 0 or "x" in pattern.lower())
    expected = (instant - EPOCH) // timedelta(milliseconds=1)
    if "SSS" not in pattern:
        expected -= expected % 1000
    assert TimestampParser(pattern, zone).parse(render(local)) == expected


@given(st.integers(min_value=0, max_value=99), st.integers(min_value=1, max_value=12), st.integers(1, 28))
def test_two_digit_years_are_2000_to_2099(yy: int, month: int, day: int) -> None:
    expected = datetime(2000 + yy, month, day, tzinfo=UTC)
    assert parse("yy-MM-dd", f"{yy:02d}-{month:02d}-{day:02d}") == ms(expected.isoformat())


NEAR_MISS = "0123456789-/: .T+ZzaApPmMGTEuropeAsia[]"  # what timestamps are made of
FUZZED_PATTERNS = [
    "yyyy-MM-dd HH:mm:ss",
    "M/d/yyyy H:m",
    "dd MMM yy hh:mm a",
    "EEE, dd MMMM yyyy HH:mm:ss.SSSXXX",
    "yyyyMMddHHmmssZ",
    "yyyy-DDD['T'kk:mm[:ss]] O",
    "yyyy-MM-dd HH:mm VV",
    None,
]


@settings(max_examples=600, deadline=None)
@given(st.text(max_size=40), st.sampled_from(FUZZED_PATTERNS))
def test_any_text_raises_nothing_but_timestamp_format_error(value: str, pattern: str | None) -> None:
    try:
        assert isinstance(TimestampParser(pattern, "Europe/Amsterdam").parse(value), int)
    except TimestampFormatError:
        pass


@settings(max_examples=600, deadline=None)
@given(st.text(alphabet=NEAR_MISS, max_size=34), st.sampled_from(FUZZED_PATTERNS))
def test_near_misses_raise_nothing_but_timestamp_format_error(value: str, pattern: str | None) -> None:
    try:
        assert isinstance(TimestampParser(pattern, "Europe/Amsterdam").parse(value), int)
    except TimestampFormatError:
        pass


@settings(max_examples=400)
@given(
    st.integers(0, 10_000),
    st.integers(0, 13),
    st.integers(0, 32),
    st.integers(0, 25),
    st.integers(0, 61),
    st.integers(0, 61),
    st.sampled_from(["yyyy-MM-dd HH:mm:ss", "dd/MM/yyyy HH:mm:ss", "HH:mm:ss yyyy-MM-dd"]),
)
def test_the_plain_utc_fast_path_agrees_with_the_full_resolver(year, month, day, hour, minute, second, pattern) -> None:
    fast = TimestampParser(pattern)
    assert fast._fast is not None
    full = TimestampParser(pattern)
    full._fast = None
    value = (
        pattern.replace("yyyy", f"{year:04d}")
        .replace("MM", f"{month:02d}")
        .replace("dd", f"{day:02d}")
        .replace("HH", f"{hour:02d}")
        .replace("mm", f"{minute:02d}")
        .replace("ss", f"{second:02d}")
    )
    try:
        expected: object = full.parse(value)
    except TimestampFormatError as exc:
        expected = str(exc)
    try:
        got: object = fast.parse(value)
    except TimestampFormatError as exc:
        got = str(exc)
    assert got == expected


_near_dates = st.builds(
    lambda y, mo, d, h, mi, s, sep: f"{y}{sep}{mo}{sep}{d} {h}:{mi}:{s}",
    st.sampled_from(["2026", "2024", "1900", "0000", "0001", "9999", "12026", "26", "-001"]),
    st.sampled_from(["01", "02", "12", "13", "00", "1", "2"]),
    st.sampled_from(["01", "28", "29", "30", "31", "32", "00", "7"]),
    st.sampled_from(["00", "23", "24", "9", "12"]),
    st.sampled_from(["00", "59", "60", "5"]),
    st.sampled_from(["00", "59", "60", "61", "5", "00.5"]),
    st.sampled_from(["-", "/"]),
)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["yyyy-MM-dd HH:mm:ss", "yyyy/MM/dd HH:mm:ss", "M/d/yyyy H:m", None]),
    st.lists(_near_dates | st.text(max_size=12), min_size=1, max_size=12),
)
def test_the_column_parser_agrees_with_the_value_parser_value_for_value(pattern, values) -> None:
    """parse_array (Arrow, distinct values, a strict round trip) = parse on each value, or the same error."""
    import pyarrow as pa

    parser = TimestampParser(pattern, "UTC")
    try:
        expected: list[int] | str = [parser.parse(v) for v in values]
    except TimestampFormatError as exc:
        expected = str(exc)
    fresh = TimestampParser(pattern, "UTC")  # no cache shared with the run above
    try:
        got: list[int] | str = fresh.parse_array(pa.array(values, type=pa.string())).tolist()
    except TimestampFormatError as exc:
        got = str(exc)
    assert got == expected


_same_width_dates = st.builds(
    lambda y, mo, d, h, mi, s, sep, t: f"{y}{sep}{mo}{sep}{d}{t}{h}:{mi}:{s}",
    st.sampled_from(["2026", "2024", "1900", "1970", "0000", "0001", "9999", "20x6"]),
    st.sampled_from(["01", "02", "12", "13", "00", "1 "]),
    st.sampled_from(["01", "28", "29", "30", "31", "32", "00"]),
    st.sampled_from(["00", "23", "24", "09"]),
    st.sampled_from(["00", "59", "60"]),
    st.sampled_from(["00", "59", "60", "61"]),
    st.sampled_from(["-", "/"]),
    st.sampled_from([" ", "T", "\t", "\n", "_"]),
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["yyyy-MM-dd HH:mm:ss", "dd/MM/yyyy HH:mm", "yyyy-MM-dd'T'HH:mm:ss"]), st.data())
def test_the_column_parser_reads_values_of_the_patterns_width_as_a_strftime_round_trip_would(pattern, data) -> None:
    """Values all as wide as the pattern writes them are checked digit by digit in numpy: the same verdict as
    writing each parsed time back with strftime, and parse_array still agrees with parse on each value."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from airflow_provider_strm.core.columnar import flags, integers

    layouts = {
        "yyyy-MM-dd HH:mm:ss": lambda v: v,
        "dd/MM/yyyy HH:mm": lambda v: f"{v[8:10]}/{v[5:7]}/{v[0:4]} {v[11:16]}",
        "yyyy-MM-dd'T'HH:mm:ss": lambda v: v[:10] + {" ": "T", "T": " "}.get(v[10], v[10]) + v[11:],
    }
    values = [layouts[pattern](v) for v in data.draw(st.lists(_same_width_dates, min_size=1, max_size=12))]
    parser = TimestampParser(pattern, "UTC")
    column = pa.array(values, type=pa.string())
    fmt = parser._strftime
    parsed = pc.strptime(column, format=fmt, unit="s", error_is_null=True)
    seconds = integers(parsed.cast(pa.int64()), null=-(10**12))
    round_trip = flags(pc.equal(pc.strftime(parsed, format=fmt), column)) & (seconds > -(10**12))
    numbers = parser._written_as(column, parsed, seconds) & (seconds > -(10**12))
    assert numbers.tolist() == round_trip.tolist()
    try:
        expected: list[int] | str = [parser.parse(v) for v in values]
    except TimestampFormatError as exc:
        expected = str(exc)
    try:
        got: list[int] | str = TimestampParser(pattern, "UTC").parse_array(column).tolist()
    except TimestampFormatError as exc:
        got = str(exc)
    assert got == expected
