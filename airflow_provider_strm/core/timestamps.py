"""Record timestamps: Java ``DateTimeFormatter`` patterns → epoch milliseconds (UTC).

For the encrypt and validation jobs, which must put every record in the same
key window as STRM Privacy's Java batch jobs did. A config gives the timestamp
format as a Java pattern (``yyyy-MM-dd HH:mm:ss``, ``M/d/yyyy H:m``,
``yyyy-MM-dd'T'HH:mm:ss.SSSXXX``...) or none for ISO-8601. The pattern is
compiled once into a regular expression whose groups feed a small resolver that
follows Java's SMART resolver on the points that matter for event data; values
without an offset are read in the config's default IANA zone, with DST gaps and
overlaps resolved as ``ZonedDateTime.of`` does.

Deliberate differences from ``DateTimeFormatter.ofPattern`` + ``ZonedDateTime``:
one-letter numeric fields take one or two digits (Java takes up to 19); values
are range-checked strictly (Java SMART turns Feb 30 into Feb 28, 24:00 into the
next midnight and accepts clock hour 0; we report them); month names, day names
and AM/PM are English and case-insensitive; ``z`` takes zone ids, not names
such as ``PST``; a pattern without a time of day gives the start of the day;
years are 1-9999.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from functools import cache
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, available_timezones

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from airflow_provider_strm.core.columnar import flags, int64_column, integers
from airflow_provider_strm.core.errors import TimestampFormatError

__all__ = ["DAY_MS", "TimestampParser", "window_start"]

DAY_MS = 86_400_000
_CACHE_SIZE = 65_536
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_YEAR_ONE_S = (date(1, 1, 1).toordinal() - _EPOCH_ORDINAL) * 86_400
# Java pattern letters with an exact strftime twin (fixed width, numeric), and literals that need no quoting
_STRFTIME = {"yyyy": "%Y", "uuuu": "%Y", "MM": "%m", "dd": "%d", "HH": "%H", "mm": "%M", "ss": "%S"}
_STRFTIME_TOKEN = re.compile(r"yyyy|uuuu|MM|dd|HH|mm|ss|'T'|[-/ :.]")


def _strftime_format(pattern: str | None) -> str | None:
    """The strftime twin of a plain numeric pattern (``yyyy-MM-dd HH:mm:ss``, ``dd/MM/yyyy``...), else None."""
    if pattern is None:
        return None
    parts, end = [], 0
    for m in _STRFTIME_TOKEN.finditer(pattern):
        if m.start() != end:
            return None
        token = m.group()
        parts.append(_STRFTIME.get(token, "T" if token == "'T'" else token))
        end = m.end()
    if end != len(pattern) or "%Y" not in parts or "%m" not in parts or "%d" not in parts:
        return None
    return "".join(parts)


class _Layout(NamedTuple):
    """Where a plain numeric strftime format's fields and literals are in the (fixed-width) text it writes."""

    width: int
    fields: tuple[tuple[str, int, int], ...]  # (directive, start, digits)
    literals: tuple[tuple[int, int], ...]  # (position, character code)

    @classmethod
    def of(cls, strftime: str) -> _Layout:
        fields, literals, at, i = [], [], 0, 0
        while i < len(strftime):
            if strftime[i] == "%":
                size = 4 if strftime[i + 1] == "Y" else 2
                fields.append((strftime[i : i + 2], at, size))
                at, i = at + size, i + 2
            else:
                literals.append((at, ord(strftime[i])))
                at, i = at + 1, i + 1
        return cls(at, tuple(fields), tuple(literals))


_ONE_MS = timedelta(milliseconds=1)
_DIGIT = "[0-9]"

# Field slots that the regex groups fill, in the order the resolver unpacks them.
YEAR, MONTH, DAY, DAY_OF_YEAR, HOUR, HOUR_OF_AMPM, AMPM = range(7)
MINUTE, SECOND, NANO, DAY_OF_WEEK, OFFSET, ZONE = range(7, 13)
_FIELD_NAMES = (
    "year", "month", "day of month", "day of year", "hour", "hour of AM/PM", "AM/PM",
    "minute", "second", "fraction of second", "day of week", "offset", "zone",
)  # fmt: skip

_MONTHS_SHORT = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTHS_FULL = (
    "january", "february", "march", "april", "may", "june",
    "july", "august", "september", "october", "november", "december",
)  # fmt: skip
_DAYS_SHORT = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAYS_FULL = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

_MONTH_BY_NAME = {name: i + 1 for names in (_MONTHS_SHORT, _MONTHS_FULL) for i, name in enumerate(names)}
_MONTH_BY_NAME["sept"] = 9  # newer JDKs print "Sept" for some English locales
_DAY_BY_NAME = {name: i + 1 for names in (_DAYS_SHORT, _DAYS_FULL) for i, name in enumerate(names)}

# Java's offset layouts (DateTimeFormatterBuilder.appendOffset): upper case = required, lower case = optional.
_OFFSET_LAYOUTS = {
    "+HHmm": r"[+-][0-9]{2}(?:[0-9]{2})?",
    "+HHMM": r"[+-][0-9]{4}",
    "+HH:MM": r"[+-][0-9]{2}:[0-9]{2}",
    "+HHMMss": r"[+-][0-9]{4}(?:[0-9]{2})?",
    "+HH:MM:ss": r"[+-][0-9]{2}:[0-9]{2}(?::[0-9]{2})?",
}
_X_LAYOUTS = ("+HHmm", "+HHMM", "+HH:MM", "+HHMMss", "+HH:MM:ss")
_ZONE_ID = r"[A-Za-z][A-Za-z0-9_+\-:]*(?:/[A-Za-z0-9_+\-]+)*|[+-][0-9]{2}:[0-9]{2}"

Converter = Callable[[str], object]


def window_start(epoch_ms: int) -> int:
    """Start (epoch ms) of the UTC calendar day containing ``epoch_ms``: the key window of a record."""
    return epoch_ms // DAY_MS * DAY_MS


# --------------------------------------------------------------------- field converters


def _year2(text: str) -> int:
    return 2000 + int(text)  # Java's reduced "yy" parser has base year 2000


def _month_name(text: str) -> int:
    return _MONTH_BY_NAME[text.lower()]


def _day_name(text: str) -> int:
    return _DAY_BY_NAME[text.lower()]


def _narrow_day(text: str) -> None:
    return None  # "T" is Tuesday or Thursday: accepted, never checked


def _ampm(text: str) -> int:
    return 0 if text[0] in "aA" else 1


def _ranged(low: int, high: int, what: str, modulo: int | None = None) -> Converter:
    def convert(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise ValueError(f"{what} {value} is out of range {low}-{high}")
        return value % modulo if modulo else value

    return convert


def _fraction(text: str) -> int:
    return int(text.ljust(9, "0"))  # nanoseconds


def _nanos(text: str) -> int:
    value = int(text)
    if value > 999_999_999:
        raise ValueError(f"nano-of-second {value} is out of range")
    return value


def _offset_seconds(text: str) -> int:
    """``Z``, ``+H``, ``+HH``, ``+HHMM``, ``+HH:MM``, ``+HHMMSS``, ``+HH:MM:SS`` → seconds east of UTC."""
    if text in ("Z", "z"):
        return 0
    body = text[1:]
    pieces = body.split(":") if ":" in body else [body[k : k + 2] for k in range(0, len(body), 2)]
    if len(pieces) > 3 or not 1 <= len(pieces[0]) <= 2 or any(len(piece) != 2 for piece in pieces[1:]):
        raise ValueError(f"offset {text} is not +HH:MM:SS")
    hours, minutes, seconds = (int(piece) for piece in [*pieces, "0", "0"][:3])
    if hours > 18 or minutes > 59 or seconds > 59 or hours * 3600 + minutes * 60 + seconds > 18 * 3600:
        raise ValueError(f"offset {text} is out of range")
    return (-1 if text[0] == "-" else 1) * (hours * 3600 + minutes * 60 + seconds)


def _gmt_offset(text: str) -> int:
    return _offset_seconds(text[3:]) if len(text) > 3 else 0


_PREFIXED_OFFSET = re.compile(r"(?:UTC|GMT|UT)?([+-](?:[0-9]{1,2}|[0-9]{2}(?::?[0-9]{2}){1,2}))", re.ASCII)


@cache
def _region_ids() -> frozenset[str]:
    return frozenset(available_timezones())


def _resolve_zone(name: str) -> tzinfo:
    """A Java ``ZoneId`` string (IANA region, ``UTC``, ``Z``, ``+01:00``, ``GMT+1``) → tzinfo."""
    if name in ("UTC", "Z", "GMT", "UT"):
        return UTC
    prefixed = _PREFIXED_OFFSET.fullmatch(name)
    if prefixed:
        return timezone(timedelta(seconds=_offset_seconds(prefixed.group(1))))
    # Only known ids reach ZoneInfo: arbitrary keys make it probe the file system (and raise OSError).
    if name in _region_ids():
        return ZoneInfo(name)
    raise ValueError(f"unknown time zone {name!r}")


# --------------------------------------------------------------------- pattern compiler


@dataclass
class _Compiled:
    regex: re.Pattern[str]
    slots: tuple[tuple[int, Converter], ...]


def _names(words: tuple[str, ...], extra: tuple[str, ...] = ()) -> str:
    # longest first so that "sept" is tried before "sep"
    return "(?i:" + "|".join(sorted({*words, *extra}, key=lambda word: (-len(word), word))) + ")"


def _numeric(count: int, what: str, max_count: int = 2) -> str:
    if count > max_count:
        raise ValueError(f"too many pattern letters for {what}")
    # one letter takes one or two digits, two letters exactly two (Java's strict appendValue(field, 2))
    return f"{_DIGIT}{{1,2}}" if count == 1 else f"{_DIGIT}{{{count}}}"


def _compile(pattern: str) -> _Compiled:
    """Translate a Java pattern into a regex with one capturing group per field.

    :raises ValueError: the pattern has a letter Java or this parser does not support, an
        unbalanced quote or bracket, or cannot give a full date.
    """
    parts: list[str] = []
    slots: list[tuple[int, Converter]] = []
    depth = 0
    i, n = 0, len(pattern)

    def field(slot: int, regex: str, convert: Converter = int) -> None:
        parts.append(f"({regex})")
        slots.append((slot, convert))

    while i < n:
        ch = pattern[i]
        if ch == "'":
            j = i + 1
            while j < n:
                if pattern[j] == "'":
                    if j + 1 < n and pattern[j + 1] == "'":
                        j += 2
                        continue
                    break
                j += 1
            if j >= n:
                raise ValueError(f"timestamp pattern {pattern!r} has an unbalanced quote (')")
            text = pattern[i + 1 : j]
            parts.append(re.escape(text.replace("''", "'") if text else "'"))
            i = j + 1
            continue
        if ch == "[":
            parts.append("(?:")
            depth += 1
            i += 1
            continue
        if ch == "]":
            if depth == 0:
                raise ValueError(f"timestamp pattern {pattern!r} has ] without a previous [")
            parts.append(")?")
            depth -= 1
            i += 1
            continue
        if ch in "{}#":
            raise ValueError(f"timestamp pattern {pattern!r} uses the reserved character {ch!r}")
        if not ("a" <= ch <= "z" or "A" <= ch <= "Z"):
            parts.append(re.escape(ch))
            i += 1
            continue
        j = i
        while j < n and pattern[j] == ch:
            j += 1
        count, i = j - i, j
        try:
            _letter(ch, count, field)
        except ValueError as exc:
            raise ValueError(f"timestamp pattern {pattern!r}: {exc}") from None
    parts.append(")?" * depth)  # Java closes optional sections left open
    _check_complete(pattern, frozenset(slot for slot, _ in slots))
    return _Compiled(re.compile("".join(parts), re.ASCII), tuple(slots))


def _letter(ch: str, count: int, field: Callable[..., None]) -> None:
    """Append the regex of ``count`` repetitions of pattern letter ``ch``."""
    # Plain numeric fields convert with int: datetime() checks their ranges and names the wrong one.
    if ch in "yu":
        if count == 2:
            field(YEAR, f"{_DIGIT}{{2}}", _year2)
        elif count < 4:
            field(YEAR, f"{_DIGIT}{{{count},10}}")
        else:
            field(YEAR, f"{_DIGIT}{{{count}}}")  # years beyond 9999 cannot be represented anyway
    elif ch in "ML":
        if count <= 2:
            field(MONTH, _numeric(count, "month"))
        elif count == 3:
            field(MONTH, _names(_MONTHS_SHORT, ("sept",)), _month_name)
        elif count == 4:
            field(MONTH, _names(_MONTHS_FULL), _month_name)
        else:
            raise ValueError(f"{ch * count} (narrow month names) is ambiguous and not supported")
    elif ch == "d":
        field(DAY, _numeric(count, "day of month (d)"))
    elif ch == "D":
        if count > 3:
            raise ValueError("too many pattern letters for day of year (D)")
        field(DAY_OF_YEAR, f"{_DIGIT}{{1,3}}" if count == 1 else f"{_DIGIT}{{{count},3}}")
    elif ch == "H":
        field(HOUR, _numeric(count, "hour (H)"))
    elif ch == "k":
        field(HOUR, _numeric(count, "clock hour (k)"), _ranged(1, 24, "clock hour", 24))
    elif ch == "h":
        field(HOUR_OF_AMPM, _numeric(count, "clock hour of AM/PM (h)"), _ranged(1, 12, "clock hour", 12))
    elif ch == "K":
        field(HOUR_OF_AMPM, _numeric(count, "hour of AM/PM (K)"), _ranged(0, 11, "hour of AM/PM"))
    elif ch == "m":
        field(MINUTE, _numeric(count, "minute (m)"))
    elif ch == "s":
        field(SECOND, _numeric(count, "second (s)"))
    elif ch == "S":
        if count > 9:
            raise ValueError("a fraction of second (S) has at most 9 digits")
        field(NANO, f"{_DIGIT}{{{count}}}", _fraction)
    elif ch == "n":
        field(NANO, f"{_DIGIT}{{{count},9}}", _nanos)
    elif ch == "a":
        if count > 1:
            raise ValueError("AM/PM is a single letter a")
        field(AMPM, "(?i:am|pm)", _ampm)
    elif ch == "E":
        if count <= 3:
            field(DAY_OF_WEEK, _names(_DAYS_SHORT), _day_name)
        elif count == 4:
            field(DAY_OF_WEEK, _names(_DAYS_FULL), _day_name)
        elif count == 5:
            field(DAY_OF_WEEK, "[MTWFS]", _narrow_day)
        else:
            raise ValueError("too many pattern letters for day of week (E)")
    elif ch == "X" or ch == "x":
        if count > 5:
            raise ValueError(f"too many pattern letters for offset ({ch})")
        layout = _OFFSET_LAYOUTS[_X_LAYOUTS[count - 1]]
        field(OFFSET, f"Z|{layout}" if ch == "X" else layout, _offset_seconds)
    elif ch == "Z":
        if count <= 3:
            field(OFFSET, _OFFSET_LAYOUTS["+HHMM"], _offset_seconds)
        elif count == 4:
            field(OFFSET, "GMT(?:[+-][0-9]{2}:[0-9]{2}(?::[0-9]{2})?)?", _gmt_offset)
        elif count == 5:
            field(OFFSET, "Z|" + _OFFSET_LAYOUTS["+HH:MM:ss"], _offset_seconds)
        else:
            raise ValueError("too many pattern letters for offset (Z)")
    elif ch == "O":
        if count == 1:
            field(OFFSET, "GMT(?:[+-][0-9]{1,2}(?::[0-9]{2}(?::[0-9]{2})?)?)?", _gmt_offset)
        elif count == 4:
            field(OFFSET, "GMT(?:[+-][0-9]{2}:[0-9]{2}(?::[0-9]{2})?)?", _gmt_offset)
        else:
            raise ValueError("the localized offset is O or OOOO")
    elif ch == "V" or ch == "z":
        if ch == "V" and count != 2:
            raise ValueError("a zone id is VV")
        if count > 4:
            raise ValueError("too many pattern letters for zone (z)")
        field(ZONE, _ZONE_ID, _resolve_zone)
    elif ch == "Y":
        raise ValueError("letter 'Y' (week-based year) is not supported; the calendar year is 'y'")
    else:
        raise ValueError(f"letter {ch!r} is not supported")


def _check_complete(pattern: str, fields: frozenset[int]) -> None:
    """Refuse at construction what could never give an instant (Java would fail on every record)."""

    def refuse(why: str) -> None:
        raise ValueError(f"timestamp pattern {pattern!r} {why}")

    if YEAR not in fields:
        refuse("has no year (y)")
    if DAY_OF_YEAR not in fields and not {MONTH, DAY} <= fields:
        refuse("has no full date: it needs a year (y), a month (M) and a day of month (d)")
    if HOUR_OF_AMPM in fields and AMPM not in fields:
        refuse("uses a 12-hour clock (h/K) without an AM/PM field (a)")
    if MINUTE in fields and HOUR not in fields and HOUR_OF_AMPM not in fields:
        refuse("has minutes (m) but no hour (H, h, k or K)")
    if SECOND in fields and MINUTE not in fields:
        refuse("has seconds (s) but no minutes (m)")
    if NANO in fields and SECOND not in fields:
        refuse("has a fraction of second (S) but no seconds (s)")


# ISO-8601 as Java's ISO_DATE_TIME reads it, plus a space for the T and date-only values.
_ISO = _Compiled(
    re.compile(
        r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
        r"(?:[Tt ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:[.,]([0-9]{1,9}))?)?"
        r"([Zz]|[+-][0-9]{2}(?::?[0-9]{2}(?::?[0-9]{2})?)?)?"
        rf"(?:\[({_ZONE_ID})\])?)?",
        re.ASCII,
    ),
    (
        (YEAR, int),
        (MONTH, int),
        (DAY, int),
        (HOUR, int),
        (MINUTE, int),
        (SECOND, int),
        (NANO, _fraction),
        (OFFSET, _offset_seconds),
        (ZONE, _resolve_zone),
    ),
)


# --------------------------------------------------------------------- parser


class TimestampParser:
    """Parses a record's timestamp field to epoch milliseconds (UTC).

    Built once per job from the config's ``timestamp_config``; ``parse`` then runs on
    every record, so repeated values are answered from a cache.

    :param pattern: a Java ``DateTimeFormatter`` pattern, or None for ISO-8601.
    :param default_time_zone: the IANA zone id of values that carry no offset.
    :raises ValueError: an unsupported or invalid pattern, or an unknown zone, named in the message.
    """

    def __init__(self, pattern: str | None, default_time_zone: str = "UTC") -> None:
        self.pattern = pattern
        self.default_time_zone = default_time_zone
        try:
            self.zone = _resolve_zone(default_time_zone)
        except (ValueError, TypeError):
            raise ValueError(f"unknown IANA time zone {default_time_zone!r}") from None
        compiled = _ISO if pattern is None else _compile(pattern)
        self._match = compiled.regex.fullmatch
        self._slots = compiled.slots
        self._cache: dict[str, int] = {}
        # Fast path: exactly year, month, day, hour, minute, second as plain numbers, in UTC. A value
        # it cannot take (out of range, say) goes through the full resolver, which names the problem.
        order = {slot: i for i, (slot, convert) in enumerate(self._slots) if convert is int}
        plain = (YEAR, MONTH, DAY, HOUR, MINUTE, SECOND)
        self._fast: tuple[int, ...] | None = None
        if len(self._slots) == len(order) == 6 and set(order) == set(plain) and self.zone is UTC:
            self._fast = tuple(order[slot] for slot in plain)
        # Vector path (Arrow columns): plain numeric patterns in UTC
        self._strftime = _strftime_format(pattern) if self.zone is UTC else None
        self._layout = None if self._strftime is None else _Layout.of(self._strftime)

    def parse_array(self, values: pa.Array) -> np.ndarray:
        """Epoch milliseconds of each value of a string column, in order (an int64 array).

        Values Arrow parses to a date-time it writes back exactly as given (so: valid, canonical,
        fixed-width) are taken from Arrow; every other value goes through :meth:`parse`.

        :raises TimestampFormatError: for the first value that is missing or does not match.
        """
        # each distinct value once (a file has many records per second), then spread to the records
        encoded = values.dictionary_encode()
        stamps = self._parse_distinct(encoded.dictionary)
        return stamps[integers(encoded.indices)]

    def _parse_distinct(self, values: pa.Array) -> np.ndarray:
        n = len(values)
        out = np.zeros(n, dtype=np.int64)
        todo: np.ndarray | range = range(n)
        if self._strftime is not None and n:
            parsed = pc.strptime(values, format=self._strftime, unit="s", error_is_null=True)
            # (no Python scalars in these calls: making an Arrow scalar imports pandas)
            seconds = integers(parsed.cast(pa.int64()), null=_YEAR_ONE_S - 1)
            ok = (seconds >= _YEAR_ONE_S) & self._written_as(values, parsed, seconds)
            out[ok] = seconds[ok] * 1000
            todo = np.flatnonzero(~ok)
        if len(todo):
            parse = self.parse
            texts = values.take(int64_column(todo)).to_pylist() if len(todo) < n else values.to_pylist()
            for i, text in zip(todo, texts, strict=True):
                out[i] = parse(text)
        return out

    def _written_as(self, values: pa.Array, parsed: pa.Array, seconds: np.ndarray) -> np.ndarray:
        """Whether each value is exactly how the pattern writes its parsed time (strptime also takes a day 30 of
        February, or unpadded numbers): the pattern's width, literals and each field's digits, in numpy;
        values of other widths are written back with strftime (~1 µs a value) and compared."""
        layout = self._layout
        assert layout is not None and self._strftime is not None
        n, width = len(values), layout.width
        wide = pa.types.is_large_string(values.type)
        offsets = np.frombuffer(
            values.buffers()[1],
            dtype=np.int64 if wide else np.int32,
            count=n + 1,
            offset=values.offset * (8 if wide else 4),
        )
        if values.null_count or not np.all(np.diff(offsets) == width):
            return flags(pc.equal(pc.strftime(parsed, format=self._strftime), values))
        chars = np.frombuffer(values.buffers()[2], dtype=np.uint8, count=n * width, offset=int(offsets[0]))
        digits = chars.reshape(n, width).astype(np.int16) - ord("0")
        ok = np.ones(n, dtype=bool)
        for at, char in layout.literals:
            ok &= digits[:, at] == char - ord("0")
        stamp = seconds.astype("datetime64[s]")
        days, months, years = (
            stamp.astype("datetime64[D]"),
            stamp.astype("datetime64[M]"),
            stamp.astype("datetime64[Y]"),
        )
        in_day = (stamp - days).astype(np.int64)
        fields = {
            "%Y": years.astype(np.int64) + 1970,
            "%m": (months - years).astype(np.int64) + 1,
            "%d": (days - months).astype(np.int64) + 1,
            "%H": in_day // 3600,
            "%M": in_day // 60 % 60,
            "%S": in_day % 60,
        }
        for directive, at, size in layout.fields:
            number = np.zeros(n, dtype=np.int64)
            for k in range(at, at + size):
                column = digits[:, k]
                ok &= (column >= 0) & (column <= 9)
                number = number * 10 + column
            ok &= number == fields[directive]
        return ok

    def parse(self, value: str) -> int:
        """Epoch milliseconds of ``value``.

        :raises TimestampFormatError: for a missing value or one that does not match; never anything else.
        """
        cached = self._cache.get(value)
        if cached is not None:
            return cached
        if not value:
            raise TimestampFormatError(value or "", self.pattern, "missing timestamp")
        match = self._match(value)
        if match is None:
            raise TimestampFormatError(value, self.pattern)
        result = None if self._fast is None else self._resolve_plain(match.groups(), self._fast)
        if result is None:
            try:
                result = self._resolve(match.groups())
            except (ValueError, ArithmeticError, LookupError) as exc:
                raise TimestampFormatError(value, self.pattern, str(exc) or None) from None
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.clear()  # a sorted file moves on; old values rarely come back
        self._cache[value] = result
        return result

    def parse_many(self, values: list[str]) -> list[int]:
        """Epoch milliseconds of each value, in order.

        :raises TimestampFormatError: for the first value that is missing or does not match.
        """
        get, parse = self._cache.get, self.parse
        out: list[int] = []
        append = out.append
        for value in values:
            hit = get(value)
            append(hit if hit is not None else parse(value))
        return out

    @staticmethod
    def _resolve_plain(groups: tuple[str | None, ...], order: tuple[int, ...]) -> int | None:
        """Epoch ms of a valid plain UTC date-time; None for anything the full resolver must judge."""
        try:
            year, month, day, hour, minute, second = (int(groups[i]) for i in order)  # type: ignore[arg-type]
            if not (hour < 24 and minute < 60 and second < 60):
                return None
            days = date(year, month, day).toordinal() - _EPOCH_ORDINAL
        except (TypeError, ValueError):
            return None
        return days * DAY_MS + ((hour * 60 + minute) * 60 + second) * 1000

    def _resolve(self, groups: tuple[str | None, ...]) -> int:
        values: list[Any] = [None] * 13
        for text, (slot, convert) in zip(groups, self._slots, strict=True):
            if text is None:
                continue
            value = convert(text)
            if value is None:
                continue
            seen = values[slot]
            if seen is not None and seen != value:
                raise ValueError(f"conflicting values for {_FIELD_NAMES[slot]}: {seen} and {value}")
            values[slot] = value
        year, month, day, day_of_year, hour, hour_of_ampm, ampm = values[:7]
        minute, second, nano, dow, offset, zone = values[7:]

        if day_of_year is not None:
            if not 1 <= day_of_year <= 366:
                raise ValueError(f"day of year {day_of_year} is out of range 1-366")
            from_doy = date.fromordinal(date(year, 1, 1).toordinal() + day_of_year - 1)
            if from_doy.year != year:
                raise ValueError(f"day of year {day_of_year} is out of range for {year}")
            if month is None:
                month, day = from_doy.month, from_doy.day
            elif (month, day) != (from_doy.month, from_doy.day):
                raise ValueError(f"day of year {day_of_year} contradicts the date")
        if hour_of_ampm is not None:
            if ampm is None:
                raise ValueError("a 12-hour clock value needs AM or PM")
            from_ampm = ampm * 12 + hour_of_ampm
            if hour is not None and hour != from_ampm:
                raise ValueError(f"conflicting values for hour: {hour} and {from_ampm}")
            hour = from_ampm
        elif ampm is not None and hour is not None and hour // 12 != ampm:
            raise ValueError(f"hour {hour} contradicts {'PM' if ampm else 'AM'}")
        if hour is None:
            if minute is not None:
                raise ValueError("minutes without an hour")
            hour = 0
        if minute is None:
            if second is not None:
                raise ValueError("seconds without minutes")
            minute = 0
        if second is None:
            if nano is not None:
                raise ValueError("a fraction without seconds")
            second = 0
        if nano is None:
            nano = 0

        local = datetime(year, month, day, hour, minute, second, nano // 1000)
        if dow is not None and local.isoweekday() != dow:
            raise ValueError(f"{_DAYS_FULL[dow - 1].title()} is not the day of week of {local.date()}")
        local_ms = (
            (local.toordinal() - _EPOCH_ORDINAL) * DAY_MS
            + ((hour * 60 + minute) * 60 + second) * 1000
            + nano // 1_000_000
        )
        if offset is not None:
            # an offset in the value wins over a zone in it, as in Java's Parsed.resolveInstant
            return local_ms - offset * 1000
        tz = self.zone if zone is None else zone
        if tz is UTC:
            return local_ms
        # fold=0 is the earlier offset in an overlap and the offset before a gap; the latter gives the instant
        # Java's ZonedDateTime.of reaches by moving the local time forward by the gap.
        return local_ms - tz.utcoffset(local) // _ONE_MS
