"""Times and dates as SPEC.md compares them ("Field details", "Times are compared
at microsecond precision (finer fractions truncated); `-00:00` is UTC")."""

from __future__ import annotations

import calendar
import re
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.core.times import (
    NEVER_US,
    BadTime,
    coming_of_age_us,
    format_date,
    format_time,
    parse_date,
    parse_time,
)
from tests.unit.builders import post, profile, run

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DAY_US = 86_400_000_000


def us(text: str) -> int:
    """Microseconds since the epoch of an ISO time, computed by the standard library."""
    return (datetime.fromisoformat(text) - EPOCH) // timedelta(microseconds=1)


def midnight(day: str) -> int:
    return us(day + "T00:00:00+00:00")


# -- parse_time: accepted ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        ("2025-05-27T10:00:00Z", "2025-05-27T10:00:00+00:00"),
        ("2025-05-27t10:00:00z", "2025-05-27T10:00:00+00:00"),
        ("2025-05-27t10:00:00Z", "2025-05-27T10:00:00+00:00"),
        ("2025-05-27T10:00:00z", "2025-05-27T10:00:00+00:00"),
        ("2025-05-27T12:00:00+02:00", "2025-05-27T10:00:00+00:00"),
        ("2025-05-27T05:30:00-04:30", "2025-05-27T10:00:00+00:00"),
        ("2025-05-27T10:00:00+00:00", "2025-05-27T10:00:00+00:00"),
        ("2025-05-27T10:00:00-00:00", "2025-05-27T10:00:00+00:00"),
        ("2025-05-27T23:59:00+23:59", "2025-05-27T00:00:00+00:00"),
        ("2025-05-27T00:00:00-23:59", "2025-05-27T23:59:00+00:00"),
        ("2025-03-01T01:00:00+02:00", "2025-02-28T23:00:00+00:00"),
        ("2024-02-29T23:59:59Z", "2024-02-29T23:59:59+00:00"),
        ("1969-12-31T23:59:59Z", "1969-12-31T23:59:59+00:00"),
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00+00:00"),
        ("9999-12-31T23:59:59Z", "9999-12-31T23:59:59+00:00"),
    ],
)
def test_parse_time_accepts(text: str, utc: str) -> None:
    assert parse_time(text) == us(utc)


@pytest.mark.parametrize(
    ("fraction", "micros"),
    [
        ("", 0),
        (".0", 0),
        (".1", 100_000),
        (".000001", 1),
        (".123456", 123_456),
        (".1234567", 123_456),  # truncated ...
        (".9999999", 999_999),  # ... never rounded up to the next second
        (".999999999999", 999_999),
        (".0000009", 0),
        (".5000000000000000000001", 500_000),
    ],
)
def test_parse_time_truncates_fractions(fraction: str, micros: int) -> None:
    base = us("2025-05-27T10:00:00+00:00")
    assert parse_time(f"2025-05-27T10:00:00{fraction}Z") == base + micros
    assert parse_time(f"2025-05-27T12:00:00{fraction}+02:00") == base + micros


def test_minus_zero_offset_is_utc() -> None:
    assert parse_time("2025-01-01T00:00:00-00:00") == parse_time("2025-01-01T00:00:00Z")
    assert parse_time("2025-01-01T00:00:00.5-00:00") == parse_time("2025-01-01T00:00:00.5Z")


# -- parse_time: rejected ------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "2025-05-27 10:00:00Z",  # a space for T
        "2025-05-27_10:00:00Z",
        "2025-05-27T10:00:00",  # no zone
        "2025-05-27T10:00:00.5",
        "2025-05-27T10:00Z",  # no seconds
        "2025-05-27T10:00+02:00",
        "2025-05-27T10:00:60Z",  # leap second
        "2016-12-31T23:59:60Z",
        "2025-13-01T10:00:00Z",  # month 13
        "2025-00-01T10:00:00Z",
        "2025-02-30T10:00:00Z",  # 30 February
        "2025-02-29T10:00:00Z",  # 29 February of a common year
        "2025-04-31T10:00:00Z",
        "2025-05-00T10:00:00Z",
        "2025-05-27T24:00:00Z",  # hour 24
        "2025-05-27T10:60:00Z",
        "2025-05-27T10:00:00+24:00",  # offset out of range
        "2025-05-27T10:00:00-24:00",
        "2025-05-27T10:00:00+01:60",
        "2025-05-27T10:00:00+0200",
        "2025-05-27T10:00:00+02",
        "2025-05-27T10:00:00.Z",  # empty fraction
        "2025-05-27T10:00:00,5Z",
        "2025-5-27T10:00:00Z",
        "25-05-27T10:00:00Z",
        "2025-05-27T10:00:00UTC",
        "2025-05-27T10:00:00 Z",
        " 2025-05-27T10:00:00Z",
        "2025-05-27T10:00:00Z ",
        "2025-05-27",
        "",
        "0000-01-01T00:00:00Z",  # no year 0 in the proleptic Gregorian calendar used
    ],
)
def test_parse_time_rejects(text: str) -> None:
    with pytest.raises(BadTime):
        parse_time(text)


# Regression (was a bug): TIME_PATTERN ends in `$`, which also matches
# before a trailing newline, so parse_time (and the msgspec `Time` pattern) accept a time followed
# by '\n'
def test_parse_time_rejects_trailing_newline() -> None:
    with pytest.raises(BadTime):
        parse_time("2025-05-27T10:00:00Z\n")


# Regression (was a bug): `\d` in TIME_PATTERN matches any Unicode digit
# and int() converts it, so non-ASCII digits are accepted as an RFC 3339 time
@pytest.mark.parametrize(
    "text",
    [
        "\uff12\uff10\uff12\uff15-05-27T10:00:00Z",  # full-width digits
        "2025-05-27T10:00:00.\u0663Z",  # Arabic-Indic digit in the fraction
    ],
)
def test_parse_time_rejects_non_ascii_digits(text: str) -> None:
    with pytest.raises(BadTime):
        parse_time(text)


# Regression (was a bug): a post whose ts ends in '\n' passes decoding
# (Time pattern `$`) and is published instead of going to the DLQ as bad_time
def test_time_with_trailing_newline_is_a_dead_letter() -> None:
    r = run(profile("a1"), post("p1", "a1", ts="2025-06-01T10:00:00Z\n"))
    assert r.ids == set()
    assert r.dead_reasons() == ["bad_time"]


# -- parse_date ----------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["2000-01-01", "2024-02-29", "2000-02-29", "1900-02-28", "0001-01-01", "9999-12-31"]
)
def test_parse_date_accepts(text: str) -> None:
    assert parse_date(text) == date.fromisoformat(text).toordinal()
    assert format_date(parse_date(text)) == text


@pytest.mark.parametrize(
    "text",
    [
        "2025-02-29",
        "1900-02-29",
        "2025-02-30",
        "2025-13-01",
        "2025-00-10",
        "2025-01-00",
        "2025-01-32",
        "2025-1-01",
        "2025-01-1",
        "20250101",
        "2025/01/01",
        "2025-01-01T00:00:00Z",
        "2025-01-01 ",
        "0000-01-01",
        "",
    ],
)
def test_parse_date_rejects(text: str) -> None:
    with pytest.raises(BadTime):
        parse_date(text)


# Regression (was a bug): parse_date only checks length and dashes, then
# int() accepts signs, blanks, underscores and non-ASCII digits; the full-width one also passes
# the Date pattern, so a profile with birth_date '\uff11\uff19\uff19\uff10-01-01' is applied
# as 1990
@pytest.mark.parametrize(
    "text",
    ["+202-01-01", " 202-01-01", "2025-+1-01", "1_00-01-01", "\uff12\uff10\uff12\uff15-01-01"],
)
def test_parse_date_rejects_non_digits(text: str) -> None:
    with pytest.raises(BadTime):
        parse_date(text)


# Regression (was a bug): a profile with birth_date
# '\uff11\uff19\uff19\uff10-01-01' (full-width digits) passes the Date pattern and parse_date,
# and its account's posts are published
def test_birth_date_with_non_ascii_digits_is_a_dead_letter() -> None:
    r = run(profile("a1", birth="\uff11\uff19\uff19\uff10-01-01"), post("p1", "a1"))
    assert r.dead_reasons() == ["bad_time"]
    assert r.ids == set()


# -- format_time ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("micros", "text"),
    [
        (0, "1970-01-01T00:00:00Z"),
        (1, "1970-01-01T00:00:00.000001Z"),
        (-1, "1969-12-31T23:59:59.999999Z"),
        (us("2025-02-28T23:00:00+00:00"), "2025-02-28T23:00:00Z"),
        (us("2025-02-28T23:00:00.5+00:00"), "2025-02-28T23:00:00.500000Z"),
        (us("9999-12-31T23:59:59.999999+00:00"), "9999-12-31T23:59:59.999999Z"),
        (us("1000-01-01T00:00:00+00:00"), "1000-01-01T00:00:00Z"),
    ],
)
def test_format_time(micros: int, text: str) -> None:
    assert format_time(micros) == text
    assert parse_time(text) == micros


def test_format_time_is_utc_z_whatever_the_input_offset() -> None:
    assert format_time(parse_time("2025-03-01T01:00:00+02:00")) == "2025-02-28T23:00:00Z"
    assert format_time(parse_time("2025-03-01T01:00:00.1234567-00:00")) == (
        "2025-03-01T01:00:00.123456Z"
    )


# Regression (was a bug): format_time uses strftime('%Y'), which writes
# years below 1000 without zero padding ('999-01-01T00:00:00Z'): not RFC 3339, and parse_time
# rejects it
def test_format_time_pads_years_below_1000() -> None:
    micros = parse_time("0999-01-01T00:00:00Z")
    assert format_time(micros) == "0999-01-01T00:00:00Z"
    assert parse_time(format_time(micros)) == micros


# Regression (was a bug): a published record with created_at
# '0999-01-01T00:00:00Z' carries created_at '999-01-01T00:00:00Z' (format_time does not pad the
# year)
def test_record_created_at_of_an_early_year_is_rfc3339() -> None:
    r = run(profile("a1", birth="0900-01-01"), post("p1", "a1", created_at="0999-01-01T00:00:00Z"))
    assert r.view["p1"].created_at == "0999-01-01T00:00:00Z"


instants = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)  # noqa: DTZ001
)
offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59)


@given(instants, offsets)
def test_parse_format_round_trip(moment: datetime, offset_minutes: int) -> None:
    zone = timezone(timedelta(minutes=offset_minutes))
    local = moment.replace(tzinfo=UTC).astimezone(zone)
    micros = (moment.replace(tzinfo=UTC) - EPOCH) // timedelta(microseconds=1)
    assert parse_time(local.isoformat()) == micros
    text = format_time(micros)
    assert text.endswith("Z")
    assert parse_time(text) == micros
    assert format_time(parse_time(text)) == text


@given(instants, st.integers(min_value=0, max_value=999), st.sampled_from(["Z", "z", "-00:00"]))
def test_extra_fraction_digits_are_truncated(moment: datetime, extra: int, zone: str) -> None:
    base = moment.replace(tzinfo=UTC)
    text = base.isoformat(timespec="microseconds").removesuffix("+00:00") + f"{extra:03d}" + zone
    assert parse_time(text) == (base - EPOCH) // timedelta(microseconds=1)


def reference_parse(text: str) -> int | None:
    """SPEC.md's layout, checked independently: ASCII digits only, the whole text."""
    m = re.fullmatch(
        r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})"
        r"(?:\.([0-9]+))?([Zz]|[+-][0-9]{2}:[0-9]{2})",
        text,
    )
    if m is None:
        return None
    try:
        moment = datetime(*(int(g) for g in m.groups()[:6]), tzinfo=UTC)
    except ValueError:
        return None
    micros = int(((m.group(7) or "") + "000000")[:6])
    zone = m.group(8)
    offset = 0
    if zone not in "Zz":
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        if hours > 23 or minutes > 59:
            return None
        offset = (1 if zone[0] == "+" else -1) * (hours * 60 + minutes) * 60_000_000
    return (moment - EPOCH) // timedelta(microseconds=1) + micros - offset


def two(low: int, high: int) -> st.SearchStrategy[str]:
    return st.integers(low, high).map(lambda n: f"{n:02d}")


near_times = st.builds(
    lambda y, mo, d, sep, h, mi, sec, frac, zone, tail: (
        f"{y:04d}-{mo}-{d}{sep}{h}:{mi}:{sec}{frac}{zone}{tail}"
    ),
    st.integers(0, 9999), two(0, 13), two(0, 32), st.sampled_from(["T", "t", " ", "TT"]),
    two(0, 25), two(0, 61), two(0, 61),
    st.one_of(st.just(""), st.just("."), st.text("0123456789", min_size=1, max_size=10).map(
        lambda f: "." + f)),
    st.one_of(st.sampled_from(["Z", "z", "", "+", "-00:00", "UTC", "+0200"]),
              st.builds(lambda sign, hh, mm: f"{sign}{hh}:{mm}", st.sampled_from("+-"),
                        two(0, 25), two(0, 61))),
    st.sampled_from(["", "", "", "\n", " ", "Z", "\u0663"]),
)


@settings(max_examples=500)
@given(st.one_of(near_times, st.text("0123456789-:.+TtZz \n", max_size=32)))
def test_parse_time_agrees_with_an_independent_reading(text: str) -> None:
    expected = reference_parse(text)
    if expected is None:
        with pytest.raises(BadTime):
            parse_time(text)
    else:
        assert parse_time(text) == expected


# -- coming_of_age_us --------------------------------------------------------------


@pytest.mark.parametrize(
    ("birth", "age", "day"),
    [
        ("2007-06-01", 18, "2025-06-01"),
        ("2007-12-31", 18, "2025-12-31"),
        ("2007-01-01", 18, "2025-01-01"),
        ("2008-02-29", 18, "2026-03-01"),  # common year: 1 March
        ("2004-02-29", 21, "2025-03-01"),
        ("2004-02-29", 20, "2024-02-29"),  # leap year: 29 February
        ("2008-02-29", 16, "2024-02-29"),
        ("1996-02-29", 104, "2100-03-01"),  # 2100 is not a leap year
        ("1984-02-29", 16, "2000-02-29"),  # 2000 is a leap year
        ("2008-02-28", 18, "2026-02-28"),
        ("2008-03-01", 18, "2026-03-01"),
        ("2000-01-01", 0, "2000-01-01"),
        ("9981-12-31", 18, "9999-12-31"),
    ],
)
def test_coming_of_age(birth: str, age: int, day: str) -> None:
    assert coming_of_age_us(parse_date(birth), age) == midnight(day)


def test_coming_of_age_beyond_the_calendar_is_never() -> None:
    assert coming_of_age_us(parse_date("9982-01-01"), 18) == NEVER_US
    assert coming_of_age_us(parse_date("9999-12-31"), 1) == NEVER_US
    assert parse_time("9999-12-31T23:59:59.999999Z") < NEVER_US


births = st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31))
ages = st.integers(min_value=0, max_value=150)


@given(births, births, ages)
def test_coming_of_age_is_monotonic_in_birth(a: date, b: date, age: int) -> None:
    early, late = sorted((a, b))
    assert coming_of_age_us(early.toordinal(), age) <= coming_of_age_us(late.toordinal(), age)


@given(births, ages, ages)
def test_coming_of_age_is_monotonic_in_age(born: date, a: int, b: int) -> None:
    low, high = sorted((a, b))
    assert coming_of_age_us(born.toordinal(), low) <= coming_of_age_us(born.toordinal(), high)


@given(births, ages)
def test_coming_of_age_is_midnight_utc_of_the_birthday(born: date, age: int) -> None:
    at = coming_of_age_us(born.toordinal(), age)
    if born.year + age > 9999:
        assert at == NEVER_US
        return
    assert at % DAY_US == 0
    day = (EPOCH + timedelta(microseconds=at)).date()
    assert day.year == born.year + age
    if (born.month, born.day) == (2, 29) and not calendar.isleap(day.year):
        assert (day.month, day.day) == (3, 1)
    else:
        assert (day.month, day.day) == (born.month, born.day)
