"""RFC 3339 times and ISO dates as integers, the way SPEC.md compares them.

Instants are microseconds since the Unix epoch (UTC), finer fractions truncated.
Dates are proleptic Gregorian ordinals (`date.toordinal()`).
"""

from __future__ import annotations

import re
from datetime import date
from functools import lru_cache

# The layout the contract accepts. `T` and `Z` may be lower case; a space for
# `T`, a missing zone or missing seconds are invalid. Field ranges are checked
# by `datetime` itself (so `:60`, month 13 or 30 February fail).
# `[0-9]`, not `\d`, which takes any Unicode digit. In Python `$` also matches
# before a final newline: `(?!\n)` forbids it (and is a no-op in ECMA 262
# regexes, which JSON Schema validators use). The parsers check lengths too.
TIME_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})$(?!\n)"
)
DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$(?!\n)"
_DATE = re.compile(DATE_PATTERN)

_TIME = re.compile(TIME_PATTERN)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_DAYS: dict[str, int] = {}  # days since the epoch by date text: times cluster on few days
_DAY_US = 86_400_000_000
NEVER_US = (date.max.toordinal() + 1 - _EPOCH_ORDINAL) * _DAY_US


class BadTime(ValueError):
    """A time or date that matches no valid calendar instant."""


def parse_time(text: str) -> int:
    """Microseconds since the epoch of an RFC 3339 time with a zone."""
    if _TIME.match(text) is None:
        raise BadTime(f"not an RFC 3339 time with a zone: {text!r}")
    return parse_time_of_layout(text)


def parse_time_of_layout(text: str) -> int:
    """`parse_time` for a text already known to match TIME_PATTERN (the
    decoder's structs check it): only the field ranges are left to check."""
    days = _DAYS.get(text[:10])
    if days is None:
        days = parse_date(text[:10]) - _EPOCH_ORDINAL
        if len(_DAYS) < 100_000:
            _DAYS[text[:10]] = days
    hour, minute, second = int(text[11:13]), int(text[14:16]), int(text[17:19])
    if hour > 23 or minute > 59 or second > 59:
        raise BadTime(f"no such time of day: {text!r}")
    micros = 0
    zone = 19
    if text[19] == ".":
        zone = 20
        while text[zone] in "0123456789":
            zone += 1
        micros = int((text[20:zone] + "00000")[:6])
    offset_us = 0
    if len(text) != zone + (1 if text[zone] in "Zz" else 6):
        raise BadTime(f"not an RFC 3339 time with a zone: {text!r}")
    if text[zone] not in "Zz":
        hours, minutes = int(text[zone + 1 : zone + 3]), int(text[zone + 4 : zone + 6])
        if hours > 23 or minutes > 59:
            raise BadTime(f"no such zone offset: {text!r}")
        offset_us = (hours * 60 + minutes) * 60_000_000
        if text[zone] == "-":
            offset_us = -offset_us
    seconds = hour * 3600 + minute * 60 + second
    return days * _DAY_US + seconds * 1_000_000 + micros - offset_us


def parse_date(text: str) -> int:
    """The ordinal of a `YYYY-MM-DD` date."""
    if len(text) != 10 or _DATE.match(text) is None:
        raise BadTime(f"not a YYYY-MM-DD date: {text!r}")
    try:
        return date(int(text[0:4]), int(text[5:7]), int(text[8:10])).toordinal()
    except ValueError as exc:
        raise BadTime(f"no such date: {text!r} ({exc})") from None


def format_time(micros: int) -> str:
    """RFC 3339 in UTC with `Z`; the fraction only when it is not zero."""
    days, rest = divmod(micros, _DAY_US)
    seconds, fraction = divmod(rest, 1_000_000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    day = format_date(days + _EPOCH_ORDINAL)
    if fraction:
        return f"{day}T{hours:02d}:{minutes:02d}:{seconds:02d}.{fraction:06d}Z"
    return f"{day}T{hours:02d}:{minutes:02d}:{seconds:02d}Z"


@lru_cache(maxsize=4096)
def format_date(ordinal: int) -> str:
    return date.fromordinal(ordinal).isoformat()


def coming_of_age_us(birth_ordinal: int, age: int) -> int:
    """00:00 UTC on the birthday of `age`; 29 February births come of age on
    1 March in a year that is not a leap year."""
    born = date.fromordinal(birth_ordinal)
    year = born.year + age
    if year > 9999:  # beyond the calendar: never of age within it
        return NEVER_US
    try:
        birthday = born.replace(year=year)
    except ValueError:  # 29 February in a common year
        birthday = date(year, 3, 1)
    return (birthday.toordinal() - _EPOCH_ORDINAL) * _DAY_US
