"""Record timestamps: Java ``DateTimeFormatter`` patterns → epoch milliseconds (UTC).

STRM configs give the timestamp format as a Java pattern (``yyyy-MM-dd HH:mm:ss``,
``M/d/yyyy H:m``, ``yyyy-MM-dd'T'HH:mm:ss.SSSXXX``...). A pattern is compiled
once into a regular expression; values without an offset are read in the
config's default IANA zone, resolving DST gaps and overlaps as Java's
``ZonedDateTime.of`` does. No pattern means ISO-8601.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from airflow_provider_strm.core.errors import TimestampFormatError

DAY_MS = 86_400_000
_CACHE_SIZE = 65_536

_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_MONTHS_FULL = [
    "january", "february", "march", "april", "may", "june",
    "july", "august", "september", "october", "november", "december",
]  # fmt: skip
_DAYS = "mon|tue|wed|thu|fri|sat|sun"
_DAYS_FULL = "monday|tuesday|wednesday|thursday|friday|saturday|sunday"


def window_start(epoch_ms: int) -> int:
    """Start (epoch ms) of the UTC calendar day containing ``epoch_ms``."""
    return epoch_ms - epoch_ms % DAY_MS


def _numeric(name: str, count: int, max_digits: int = 2) -> str:
    # Java SMART parsing: one letter takes 1..max digits, a doubled letter exactly that many.
    width = f"{{1,{max_digits}}}" if count == 1 else f"{{{count}}}"
    return f"(?P<{name}>\\d{width})"


def _compile(pattern: str) -> tuple[re.Pattern[str], set[str]]:
    out: list[str] = []
    fields: set[str] = set()
    i, n = 0, len(pattern)

    def add(name: str, regex: str) -> None:
        if name in fields:
            raise ValueError(f"timestamp pattern {pattern!r} sets {name} twice")
        fields.add(name)
        out.append(regex)

    while i < n:
        ch = pattern[i]
        if ch == "'":
            end = pattern.find("'", i + 1)
            if end == -1:
                raise ValueError(f"timestamp pattern {pattern!r} has an unbalanced quote")
            literal = pattern[i + 1 : end] or "'"  # '' is a literal quote
            out.append(re.escape(literal))
            i = end + 1
            continue
        if not ch.isalpha():
            out.append(re.escape(ch))
            i += 1
            continue
        j = i
        while j < n and pattern[j] == ch:
            j += 1
        count = j - i
        i = j
        if ch in "yu":
            if count == 2:
                add("year2", r"(?P<year2>\d{2})")
            else:
                add("year", rf"(?P<year>[+-]?\d{{{count if count > 2 else 1},9}})")
        elif ch in "ML":
            if count <= 2:
                add("month", _numeric("month", count))
            elif count == 3:
                add("month_name", r"(?P<month_name>[A-Za-z]{3})")
            else:
                add("month_full", r"(?P<month_full>[A-Za-z]{3,9})")
        elif ch == "d":
            add("day", _numeric("day", count))
        elif ch == "D":
            add("day_of_year", _numeric("day_of_year", count, 3))
        elif ch == "H":
            add("hour", _numeric("hour", count))
        elif ch == "k":
            add("hour_k", _numeric("hour_k", count))
        elif ch == "h":
            add("hour12", _numeric("hour12", count))
        elif ch == "K":
            add("hour_K", _numeric("hour_K", count))
        elif ch == "m":
            add("minute", _numeric("minute", count))
        elif ch == "s":
            add("second", _numeric("second", count))
        elif ch == "S":
            add("fraction", rf"(?P<fraction>\d{{{count}}})")
        elif ch == "n":
            add("nano", r"(?P<nano>\d{1,9})")
        elif ch == "a":
            add("ampm", r"(?P<ampm>[AaPp][Mm])")
        elif ch in "EecB":
            out.append(f"(?:{_DAYS_FULL}|{_DAYS})" if count >= 4 else f"(?:{_DAYS})")
        elif ch == "X":
            add("offset", r"(?P<offset>Z|[+-]\d{2}(?::?\d{2})?)")
        elif ch == "x":
            add("offset", r"(?P<offset>[+-]\d{2}(?::?\d{2})?)")
        elif ch == "Z":
            add("offset", r"(?P<offset>Z|[+-]\d{2}:?\d{2})")
        elif ch == "O":
            add("offset", r"(?:GMT|UTC)(?P<offset>[+-]\d{1,2}(?::?\d{2})?)?")
        elif ch == "V" and count == 2:
            add("zone", r"(?P<zone>[A-Za-z_]+(?:/[A-Za-z_+-]+)*|Z)")
        elif ch == "z":
            add("zone", r"(?P<zone>[A-Za-z_]+(?:/[A-Za-z_+-]+)*)")
        else:
            raise ValueError(f"timestamp pattern {pattern!r}: letter {ch!r} is not supported")
    if ("hour12" in fields or "hour_K" in fields) and "ampm" not in fields:
        raise ValueError(f"timestamp pattern {pattern!r} uses a 12-hour clock (h/K) without an AM/PM field (a)")
    if not ({"year", "year2"} & fields):
        raise ValueError(f"timestamp pattern {pattern!r} has no year (y)")
    if not ({"month", "month_name", "month_full", "day_of_year"} & fields):
        raise ValueError(f"timestamp pattern {pattern!r} has no month (M)")
    return re.compile("".join(out), re.IGNORECASE), fields


def _offset(text: str) -> timezone:
    if text in ("Z", "z"):
        return UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours = int(digits[:2]) if len(digits) >= 2 else int(digits)
    minutes = int(digits[2:4]) if len(digits) >= 4 else 0
    if hours > 18 or minutes > 59:
        raise ValueError("offset out of range")
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


class TimestampParser:
    """Parses a record's timestamp field to epoch milliseconds (UTC).

    :param pattern: a Java ``DateTimeFormatter`` pattern, or None for ISO-8601.
    :param default_time_zone: the IANA zone of values that carry no offset.
    :raises ValueError: at construction, for an unsupported pattern or unknown zone.
    """

    def __init__(self, pattern: str | None, default_time_zone: str = "UTC") -> None:
        self.pattern = pattern
        try:
            self.zone = ZoneInfo(default_time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {default_time_zone!r}") from None
        self._regex, self._fields = _compile(pattern) if pattern is not None else (None, set())
        self._cache: dict[str, int] = {}

    def parse(self, value: str) -> int:
        cached = self._cache.get(value)
        if cached is not None:
            return cached
        if value is None or value == "":
            raise TimestampFormatError("", self.pattern, "missing timestamp")
        try:
            result = self._parse_iso(value) if self._regex is None else self._parse_pattern(value)
        except TimestampFormatError:
            raise
        except (ValueError, OverflowError, KeyError, IndexError, ZoneInfoNotFoundError) as exc:
            raise TimestampFormatError(value, self.pattern, str(exc) or None) from None
        if len(self._cache) < _CACHE_SIZE:
            self._cache[value] = result
        return result

    def parse_many(self, values: list[str]) -> list[int]:
        return [self.parse(v) for v in values]

    # ------------------------------------------------------------------ internals

    def _parse_pattern(self, value: str) -> int:
        assert self._regex is not None
        m = self._regex.fullmatch(value)
        if m is None:
            raise TimestampFormatError(value, self.pattern)
        g = m.groupdict()
        if g.get("year") is not None:
            year = int(g["year"])
        else:
            year = 2000 + int(g["year2"])
        if g.get("day_of_year") is not None:
            base = datetime(year, 1, 1) + timedelta(days=int(g["day_of_year"]) - 1)
            if base.year != year:
                raise ValueError("day of year out of range")
            month, day = base.month, base.day
        else:
            month = self._month(g)
            day = int(g["day"]) if g.get("day") is not None else 1
        hour = 0
        if g.get("hour") is not None:
            hour = int(g["hour"])
        elif g.get("hour_k") is not None:
            hour = int(g["hour_k"])
            if not 1 <= hour <= 24:
                raise ValueError("clock hour k out of range 1-24")
            hour %= 24
        elif g.get("hour12") is not None or g.get("hour_K") is not None:
            h12 = int(g["hour12"]) if g.get("hour12") is not None else int(g["hour_K"])
            if g.get("hour12") is not None and not 1 <= h12 <= 12:
                raise ValueError("clock hour h out of range 1-12")
            if g.get("hour_K") is not None and not 0 <= h12 <= 11:
                raise ValueError("hour K out of range 0-11")
            hour = h12 % 12 + (12 if g["ampm"].lower() == "pm" else 0)
        minute = int(g["minute"]) if g.get("minute") is not None else 0
        second = int(g["second"]) if g.get("second") is not None else 0
        micro = 0
        if g.get("fraction") is not None:
            micro = int((g["fraction"] + "000000")[:6])
        elif g.get("nano") is not None:
            micro = int(g["nano"]) // 1000
        naive = datetime(year, month, day, hour, minute, second, micro)
        if g.get("offset") is not None:
            return _epoch_ms(naive.replace(tzinfo=_offset(g["offset"])))
        if g.get("zone") is not None:
            zone = UTC if g["zone"] in ("Z", "UTC", "GMT") else ZoneInfo(g["zone"])
            return _epoch_ms(_java_local(naive, zone))
        return _epoch_ms(_java_local(naive, self.zone))

    @staticmethod
    def _month(g: dict[str, str | None]) -> int:
        if g.get("month") is not None:
            return int(g["month"])  # type: ignore[arg-type]
        if g.get("month_name") is not None:
            return _MONTHS.index(g["month_name"].lower()) + 1  # type: ignore[union-attr]
        if g.get("month_full") is not None:
            return _MONTHS_FULL.index(g["month_full"].lower()) + 1  # type: ignore[union-attr]
        return 1

    def _parse_iso(self, value: str) -> int:
        text = value.strip()
        if not text or not text[0].isdigit() or not text.isascii():
            raise TimestampFormatError(value, None)
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            return _epoch_ms(_java_local(parsed, self.zone))
        return _epoch_ms(parsed)


def _java_local(naive: datetime, zone: ZoneInfo | timezone) -> datetime:
    """Attach a zone as Java's ZonedDateTime.of: overlap → earlier offset; gap → shift forward by the gap."""
    if isinstance(zone, timezone):
        return naive.replace(tzinfo=zone)
    earlier = naive.replace(tzinfo=zone, fold=0)
    # A local time in a gap does not survive a round trip through UTC.
    roundtrip = earlier.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
    if roundtrip == naive:
        return earlier
    gap = naive.replace(tzinfo=zone, fold=1).utcoffset() - naive.replace(tzinfo=zone, fold=0).utcoffset()  # type: ignore[operator]
    shifted = naive + abs(gap)
    return shifted.replace(tzinfo=zone, fold=0)


def _epoch_ms(moment: datetime) -> int:
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return delta.days * DAY_MS + delta.seconds * 1000 + delta.microseconds // 1000
