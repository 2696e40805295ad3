"""SPEC.md, "Bad input" and "Field details": what goes to the dead letters, with
which reason, what each dead letter still names, and that the filter goes on.

Most tests run the bad message inside one scenario (`around`): account `a` has
`a-0` and `a-1` in the view and account `good` has `g-1`; after the bad
message come `g-2` of `good` and `a-2` of `a`. So each test sees what the dead
letter retracted (`a-1` only: it named the post; `a-0` too: it named the
account) and whether it quarantined `a` (`a-2` excluded), and that the good
events before and after it were applied.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.core.decode import DeadLetter, Message
from stream.core.engine import Publish
from stream.core.policy import Policy
from stream.core.rule import Reason
from tests.unit.builders import (
    ABSENT,
    NOW,
    Run,
    delete_account,
    msg,
    objection,
    post,
    profile,
    run,
    update,
)

TS = "2025-06-01T11:00:00Z"  # after the scenario's own events
MIB = 1_048_576
POST_FIELDS = ("event_id", "type", "ts", "post_id", "account_id", "created_at", "kind",
               "audience", "text")


def post_value(**changes: Any) -> dict[str, Any]:
    """A valid `post.updated` of `a-1` by `a`; a change to ABSENT leaves the field out."""
    value: dict[str, Any] = {
        "event_id": "e-bad", "type": "post.updated", "ts": TS, "post_id": "a-1",
        "account_id": "a", "created_at": TS, "kind": "post", "audience": "public",
        "text": "hi", "lang": "en", "surface": "facebook",
    }
    value.update(changes)
    return {k: v for k, v in value.items() if v is not ABSENT}


def objection_value(**changes: Any) -> dict[str, Any]:
    value = {"event_id": "e-bad", "type": "objection.filed", "ts": TS, "account_id": "a"}
    value.update(changes)
    return {k: v for k, v in value.items() if v is not ABSENT}


def profile_value(**changes: Any) -> dict[str, Any]:
    value = {"event_id": "e-bad", "type": "account.upserted", "ts": TS, "account_id": "a",
             "birth_date": "1990-01-01", "country": "DE"}
    value.update(changes)
    return {k: v for k, v in value.items() if v is not ABSENT}


def raw(value: dict[str, Any]) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


def spliced(value: dict[str, Any], extra: bytes) -> bytes:
    """The JSON text of `value` with `extra` (raw JSON members) added at its end."""
    text = raw(value)
    return text[:-1] + b", " + extra + b"}"


def bad(value: bytes | str | None, topic: str = "posts", key: str | None = "a",
        kafka: bool = True) -> Message:
    return msg(topic, value, key=key, kafka=kafka)


def around(bad_message: Message, **kw: Any) -> Run:
    return run(
        profile("a"), profile("good"),
        post("a-0", "a"), post("a-1", "a"), post("g-1", "good"),
        bad_message,
        post("g-2", "good", "2025-06-01T10:30:00Z"), post("a-2", "a", "2025-06-01T10:30:00Z"),
        **kw,
    )


def only_dead(r: Run) -> DeadLetter:
    assert len(r.dead) == 1, r.dead
    dead = r.dead[0]
    audits = [a for a in r.audits if a.record == "dead_letter"]
    assert [a.reasons for a in audits] == [(dead.reason.value,)]
    assert all(a.author is None or a.author.startswith("dev-") for a in audits)  # no raw id
    return dead


def assert_dead(r: Run, reason: str, *, posts: tuple[str, ...] = (),
                accounts: tuple[str, ...] = ()) -> None:
    dead = only_dead(r)
    assert (dead.reason.value, dead.posts, dead.accounts) == (reason, posts, accounts)
    assert {"g-1", "g-2"} <= r.ids  # the good events before and after were applied


def names_post_a1(r: Run, reason: str) -> None:
    """The dead letter named post a-1 only: a-1 retracted, a-0 stays, a not quarantined."""
    assert_dead(r, reason, posts=("a-1",))
    assert r.ids == {"a-0", "a-2", "g-1", "g-2"}
    assert retraction_causes(r, "a-1") == [(Reason.QUARANTINED,)]


def names_account_a_on_posts(r: Run, reason: str) -> None:
    """Named account a on `posts`: its posts retracted, but no quarantine."""
    assert_dead(r, reason, accounts=("a",))
    assert r.ids == {"a-2", "g-1", "g-2"}
    assert retraction_causes(r, "a-0") == [(Reason.QUARANTINED,)]


def quarantines_a(r: Run, reason: str) -> None:
    assert_dead(r, reason, accounts=("a",))
    assert r.ids == {"g-1", "g-2"}
    assert r.reasons_of("a-2") == (Reason.QUARANTINED,)


def retraction_causes(r: Run, post_id: str) -> list[tuple[str, ...]]:
    return [a.reasons for a in r.audits if a.record == "retraction" and a.post_id == post_id]


def published(r: Run) -> list[str]:
    return [a.post_id for a in r.audits if a.outcome == "published" and a.post_id]


# -- not valid UTF-8 JSON -------------------------------------------------------------

UNPARSEABLE = {
    "truncated": b'{"post_id": "a-1", "type": "post.updated", ',
    "trailing garbage": raw(post_value()) + b" x",
    "single quotes": b"{'post_id': 'a-1'}",
    "invalid UTF-8 in a string": spliced(post_value(), b'"note": "\xff"'),
    "invalid UTF-8 in the text": raw(post_value(text="ab")).replace(b"ab", b"a\xc3b"),
    "lone high surrogate escape": spliced(post_value(), b'"note": "\\ud800"'),
    "lone low surrogate escape in the text": raw(post_value()).replace(b'"hi"', b'"\\udc00"'),
    "NaN": spliced(post_value(), b'"score": NaN'),
    "Infinity": spliced(post_value(), b'"score": Infinity'),
    "-Infinity": spliced(post_value(), b'"score": -Infinity'),
    "UTF-8 BOM before the object": b"\xef\xbb\xbf" + raw(post_value()),
}


@pytest.mark.parametrize("value", UNPARSEABLE.values(), ids=UNPARSEABLE.keys())
def test_unparseable_value_names_the_key_account_not_its_post_id(value: bytes) -> None:
    # SPEC: NaN, a BOM or a lone surrogate make it unparseable, so the post_id
    # it seems to carry names nothing: the key's account does.
    names_account_a_on_posts(around(bad(value)), "invalid_json")


def test_unparseable_value_on_objections_quarantines_the_key_account() -> None:
    quarantines_a(around(bad(b'{"type": "objection.filed", NaN', "objections")), "invalid_json")


@pytest.mark.parametrize("value", [b"[]", b'[{"post_id": "a-1"}]', b'"a-1"', b"42", b"-1.5e3",
                                   b"null", b"true", b'  "x"  '])
def test_json_that_is_not_an_object(value: bytes) -> None:
    names_account_a_on_posts(around(bad(value)), "not_object")


def test_text_value_is_checked_like_bytes() -> None:
    # An event-log payload arrives as str.
    names_account_a_on_posts(around(bad("\ufeff" + raw(post_value()).decode())), "invalid_json")


# -- repeated keys -----------------------------------------------------------------

def test_duplicate_audience_is_dead_lettered_and_never_published() -> None:
    for first, second in (("private", "public"), ("public", "private")):
        value = (b'{"event_id": "e-x", "type": "post.created", "ts": "' + TS.encode()
                 + b'", "post_id": "a-9", "account_id": "a", "created_at": "' + TS.encode()
                 + b'", "kind": "post", "audience": "' + first.encode()
                 + b'", "audience": "' + second.encode() + b'", "text": "t"}')
        r = around(bad(value))
        assert_dead(r, "duplicate_key", posts=("a-9",))
        assert "a-9" not in r.ids
        assert "a-9" not in published(r)


def test_bare_duplicate_audience_object() -> None:
    names_account_a_on_posts(
        around(bad(b'{"audience":"private","audience":"public"}')), "duplicate_key"
    )


DUPLICATES = {
    "same key and value": spliced(post_value(), b'"audience": "public"'),
    "nested in an unknown extra field": spliced(post_value(), b'"extra": {"x": 1, "x": 2}'),
    "nested in an array deep inside": spliced(
        post_value(), b'"extra": [1, {"y": [{"x": "1", "x": "1"}]}]'
    ),
    "written with an escape": spliced(post_value(), b'"\\u0061udience": "private"'),
    "whole key escaped": spliced(post_value(), b'"\\u0074\\u0065\\u0078\\u0074": "other"'),
    "key with an escaped colon, twice": spliced(post_value(), b'"a\\u003ab": 1, "a:b": 2'),
    "key with an escaped colon, upper case": spliced(
        post_value(), b'"a\\u003Ab": 1, "a\\u003ab": 2'
    ),
    "empty key twice": spliced(post_value(), b'"": 1, "": 1'),
}


@pytest.mark.parametrize("value", DUPLICATES.values(), ids=DUPLICATES.keys())
def test_repeated_key_anywhere(value: bytes) -> None:
    names_post_a1(around(bad(value)), "duplicate_key")


@pytest.mark.parametrize("extra", [
    b'"a\\u003ab": 1',
    b'"a\\u003ab": 1, "a\\u003bb": 2',
    b'"note": "x\\u003ay:z", "b:c": {"d:e": ":"}',
    b'"extra": [{"x": 1}, {"x": 1}]',  # one key in two objects is no repetition
])
def test_keys_that_only_look_repeated_are_accepted(extra: bytes) -> None:
    r = around(bad(spliced(post_value(), extra)))
    assert r.dead == []
    assert r.ids == {"a-0", "a-1", "a-2", "g-1", "g-2"}


def test_two_post_id_keys_name_both_posts() -> None:
    value = spliced(post_value(post_id="a-0"), b'"post_id": "a-1"')
    r = around(bad(value))
    assert_dead(r, "duplicate_key", posts=("a-0", "a-1"))
    assert r.ids == {"a-2", "g-1", "g-2"}


@settings(max_examples=60, deadline=None)
@given(field=st.sampled_from((*POST_FIELDS, "lang", "surface")),
       again=st.one_of(st.text(max_size=5), st.integers(), st.none(), st.booleans()))
def test_any_repeated_top_level_key_is_dead_lettered(field: str, again: object) -> None:
    value = spliced(post_value(), json.dumps(field).encode() + b": " + json.dumps(again).encode())
    r = around(bad(value))
    assert r.dead_reasons() == ["duplicate_key"]
    assert "a-1" not in r.ids


# -- size and depth ----------------------------------------------------------------

def sized(total: int, text_char: str = "x") -> bytes:
    """A valid post.updated of a-1 of exactly `total` bytes."""
    base = len(raw(post_value(text="")))
    per_char = len(text_char.encode("utf-8"))
    count, rest = divmod(total - base, per_char)
    value = raw(post_value(text=text_char * count + "y" * rest))
    assert len(value) == total
    return value


def test_value_of_exactly_the_default_limit_is_accepted() -> None:
    r = around(bad(sized(MIB)))
    assert r.dead == []
    assert "a-1" in r.ids


def test_value_one_byte_over_the_default_limit() -> None:
    # Over the limit, the value is not parsed: the key's account is named.
    names_account_a_on_posts(around(bad(sized(MIB + 1))), "too_large")


@pytest.mark.parametrize("limit", [1024, 2048])
def test_policy_sets_the_size_limit(limit: int) -> None:
    policy = Policy(max_message_bytes=limit)
    r = around(bad(sized(limit)), policy=policy)
    assert r.dead == []
    names_account_a_on_posts(around(bad(sized(limit + 1)), policy=policy), "too_large")


def test_size_counts_utf8_bytes_not_characters() -> None:
    policy = Policy(max_message_bytes=2048)
    over = sized(2049, "é").decode("utf-8")  # fewer than 2048 characters
    assert len(over) < 2048
    names_account_a_on_posts(around(bad(over), policy=policy), "too_large")
    at_limit = sized(2048, "€").decode("utf-8")
    r = around(bad(at_limit), policy=policy)
    assert r.dead == []


def nested(levels: int, opener: str = "[") -> bytes:
    """A valid post whose extra field makes the value `levels` levels deep."""
    inner = levels - 1
    if opener == "[":
        deep = "[" * inner + "]" * inner
    else:
        deep = '{"k": ' * (inner - 1) + "{}" + "}" * (inner - 1)
    return spliced(post_value(), b'"extra": ' + deep.encode())


@pytest.mark.parametrize("opener", ["[", "{"])
def test_64_levels_are_accepted(opener: str) -> None:
    r = around(bad(nested(64, opener)))
    assert r.dead == []
    assert "a-1" in r.ids


@pytest.mark.parametrize("opener", ["[", "{"])
@pytest.mark.parametrize("levels", [65, 66, 1_000, 10_000])
def test_deeper_than_64_levels(levels: int, opener: str) -> None:
    # Beyond the depth limit the value's post_id names nothing: the key's account.
    names_account_a_on_posts(around(bad(nested(levels, opener))), "too_deep")


def test_ten_thousand_unclosed_levels_do_not_crash() -> None:
    r = around(bad(b'{"post_id": "a-1", "x": ' + b"[" * 10_000))
    assert r.dead_reasons() in (["too_deep"], ["invalid_json"])
    assert r.ids == {"a-2", "g-1", "g-2"}


def test_depth_counts_mixed_arrays_and_objects() -> None:
    deep = '[{"k": ' * 31 + "[]" + "}]" * 31  # 62 levels + [] = 63, + top level = 64
    r = around(bad(spliced(post_value(), b'"extra": ' + deep.encode())))
    assert r.dead == []
    deeper = '[{"k": ' * 32 + "1" + "}]" * 32  # 64 + top level = 65
    names_account_a_on_posts(
        around(bad(spliced(post_value(), b'"extra": ' + deeper.encode()))), "too_deep"
    )


def test_brackets_inside_strings_are_not_levels() -> None:
    r = around(bad(raw(post_value(text="[" * 100 + "{" * 100))))
    assert r.dead == []
    assert "a-1" in r.ids


# -- fields, types, enums, types of event ---------------------------------------------

@pytest.mark.parametrize("field", [f for f in POST_FIELDS if f != "post_id"])
def test_missing_required_post_field(field: str) -> None:
    value = post_value(**{"type": "post.created", field: ABSENT})
    names_post_a1(around(bad(raw(value))), "missing_field")


def test_missing_post_id_names_the_key_account() -> None:
    names_account_a_on_posts(around(bad(raw(post_value(post_id=ABSENT)))), "missing_field")


@pytest.mark.parametrize("field", ["event_id", "type", "ts", "post_id", "account_id"])
def test_missing_required_post_deleted_field(field: str) -> None:
    value = {"event_id": "e-d", "type": "post.deleted", "ts": TS, "post_id": "a-1",
             "account_id": "a"}
    del value[field]
    r = around(bad(raw(value)))
    assert r.dead_reasons() == ["missing_field"]
    assert "a-1" not in r.ids


@pytest.mark.parametrize("changes", [
    {"text": 5},
    {"text": None},
    {"kind": None},
    {"ts": True},
    {"created_at": 1748772000},
    {"account_id": ["a"]},
    {"event_id": 7},
    {"lang": 1},
    {"surface": {"x": 1}},
], ids=str)
def test_wrong_type(changes: dict[str, Any]) -> None:
    names_post_a1(around(bad(raw(post_value(**changes)))), "wrong_type")


def test_optional_fields_may_be_null_or_absent_and_text_empty() -> None:
    for changes in ({"lang": None, "surface": None}, {"lang": ABSENT, "surface": ABSENT},
                    {"text": ""}):
        r = around(bad(raw(post_value(**changes))))
        assert r.dead == []
        assert "a-1" in r.ids


@pytest.mark.parametrize("changes", [
    {"audience": "Public"},
    {"audience": "PUBLIC"},
    {"audience": "public "},
    {"audience": "everyone"},
    {"kind": "Post"},
    {"kind": "story"},
    {"kind": ""},
], ids=str)
def test_value_outside_its_enum(changes: dict[str, Any]) -> None:
    names_post_a1(around(bad(raw(post_value(**changes)))), "bad_value")


@pytest.mark.parametrize("type_", ["post.frobbed", "Post.created", "POST.UPDATED", "",
                                   "objection.filed", "account.upserted", "account.deleted"])
def test_unknown_type_or_type_of_another_topic_on_posts(type_: str) -> None:
    names_post_a1(around(bad(raw(post_value(type=type_)))), "unknown_type")


@pytest.mark.parametrize(("topic", "type_"), [
    ("objections", "post.created"),
    ("objections", "account.upserted"),
    ("objections", "objection.Filed"),
    ("accounts", "objection.filed"),
    ("accounts", "post.deleted"),
])
def test_unknown_type_on_account_topics_quarantines(topic: str, type_: str) -> None:
    quarantines_a(around(bad(raw(profile_value(type=type_)), topic)), "unknown_type")


def test_type_that_is_not_a_string() -> None:
    r = around(bad(raw(post_value(type=1))))
    assert r.dead_reasons()[0] in ("unknown_type", "wrong_type")
    assert r.ids == {"a-0", "a-2", "g-1", "g-2"}


# -- times and dates -----------------------------------------------------------------

BAD_TIMES = [
    "2025-06-01 10:00:00Z",  # space for T
    "2025-06-01T10:00:00",  # no zone
    "2025-06-01T10:00Z",  # no seconds
    "2025-06-01T10:00:60Z",  # leap second
    "2025-06-30T23:59:60Z",
    "2025-13-01T10:00:00Z",
    "2025-00-01T10:00:00Z",
    "2025-02-30T10:00:00Z",
    "2025-02-29T10:00:00Z",  # not a leap year
    "2025-06-01T24:00:00Z",
    "2025-06-01T10:00:00+24:00",
    "2025-06-01T10:00:00+0200",
    "2025-06-01T10:00:00.Z",
    "2025-06-01",
    "",
    "now",
]


@pytest.mark.parametrize("field", ["ts", "created_at"])
@pytest.mark.parametrize("value", BAD_TIMES)
def test_bad_time(field: str, value: str) -> None:
    names_post_a1(around(bad(raw(post_value(**{field: value})))), "bad_time")


@pytest.mark.parametrize("value", [
    "2025-06-01t10:00:00z",
    "2025-06-01T10:00:00-00:00",
    "2025-06-01T12:00:00+02:00",
    "2025-06-01T10:00:00.123456789Z",
    "2024-02-29T10:00:00Z",
])
def test_valid_time_forms(value: str) -> None:
    r = around(bad(raw(post_value(type="post.created", post_id="a-9", ts=value,
                                  created_at=value))))
    assert r.dead == []
    assert "a-9" in r.ids


@pytest.mark.parametrize("value", ["٢٠٢٥-06-01T10:00:00Z", "２０２５-06-01T10:00:00Z"])
def test_non_ascii_digits_in_a_time(value: str) -> None:
    names_post_a1(around(bad(raw(post_value(ts=value)))), "bad_time")


@pytest.mark.parametrize("field", ["ts", "created_at"])
def test_time_with_a_trailing_newline(field: str) -> None:
    names_post_a1(around(bad(raw(post_value(**{field: TS + "\n"})))), "bad_time")


@pytest.mark.parametrize("value", ["1990-13-01", "1990-02-30", "2001-02-29", "1990-00-10",
                                   "19900101", "1990-1-1", "1990/01/01", "",
                                   "1990-01-01T00:00:00Z", "+1990-01-01", "1990-01-01\n"])
def test_bad_birth_date_quarantines(value: str) -> None:
    quarantines_a(around(bad(raw(profile_value(birth_date=value)), "accounts")), "bad_time")


def test_non_ascii_digits_in_a_birth_date() -> None:
    quarantines_a(around(bad(raw(profile_value(birth_date="١٩٩٠-٠١-٠١")), "accounts")),
                  "bad_time")


@pytest.mark.parametrize("field", ["birth_date", "country"])
def test_profile_field_missing_vs_null(field: str) -> None:
    quarantines_a(around(bad(raw(profile_value(**{field: ABSENT})), "accounts")),
                  "missing_field")
    r = around(bad(raw(profile_value(**{field: None})), "accounts"))
    assert r.dead == []
    unknown = Reason.AGE_UNKNOWN if field == "birth_date" else Reason.REGION_UNKNOWN
    assert r.reasons_of("a-2") == (unknown,)
    assert r.ids == {"g-1", "g-2"}  # a-0, a-1 retracted by the now unknown field


@pytest.mark.parametrize("country", ["de", "De", "DEU", "D", "", "D1", "ÄÖ"])
def test_bad_country(country: str) -> None:
    quarantines_a(around(bad(raw(profile_value(country=country)), "accounts")), "bad_value")


def test_country_with_a_trailing_newline() -> None:
    quarantines_a(around(bad(raw(profile_value(country="DE\n")), "accounts")), "bad_value")


def test_any_two_letter_country_is_accepted_and_out_of_region() -> None:
    r = around(bad(raw(profile_value(country="ZZ")), "accounts"))
    assert r.dead == []
    assert r.reasons_of("a-2") == (Reason.OUT_OF_REGION,)


# -- ids ---------------------------------------------------------------------------

@pytest.mark.parametrize("char", ["x", "é", "😀"])
@pytest.mark.parametrize("field", ["post_id", "account_id", "event_id"])
def test_ids_of_256_code_points_are_accepted(field: str, char: str) -> None:
    long_id = char * 256
    value = post_value(type="post.created", **{field: long_id})
    account = value["account_id"]
    r = run(profile(account), msg("posts", raw(value), key=account))
    assert r.dead == []
    assert r.ids == {value["post_id"]}


@pytest.mark.parametrize("char", ["x", "é", "😀"])
@pytest.mark.parametrize("field", ["post_id", "account_id", "event_id"])
def test_ids_of_257_code_points_are_rejected(field: str, char: str) -> None:
    long_id = char * 257
    value = post_value(**{field: long_id})
    r = around(bad(raw(value), key=value["account_id"]))
    # The message still names its top-level string post_id, however long.
    assert_dead(r, "bad_id", posts=(value["post_id"],))
    assert "a-1" not in r.ids or field == "post_id"


@pytest.mark.parametrize("field", ["account_id", "event_id"])
def test_empty_id_is_rejected(field: str) -> None:
    names_post_a1(around(bad(raw(post_value(**{field: ""})))), "bad_id")


def test_empty_post_id_names_the_key_account() -> None:
    names_account_a_on_posts(around(bad(raw(post_value(post_id="")))), "bad_id")


def test_empty_account_id_in_an_objection() -> None:
    r = around(bad(raw(objection_value(account_id="")), "objections", key=""))
    assert r.dead_reasons() == ["bad_id"]
    assert r.ids == {"a-0", "a-1", "a-2", "g-1", "g-2"}


# -- tombstones --------------------------------------------------------------------

def test_tombstone_on_posts_names_the_key_account() -> None:
    names_account_a_on_posts(around(bad(None)), "tombstone")


@pytest.mark.parametrize("topic", ["objections", "accounts"])
def test_tombstone_on_account_topics_quarantines(topic: str) -> None:
    quarantines_a(around(bad(None, topic)), "tombstone")


def test_tombstone_without_key_names_nothing() -> None:
    r = around(bad(None, key=None, kafka=False))
    assert_dead(r, "tombstone")
    assert r.ids == {"a-0", "a-1", "a-2", "g-1", "g-2"}


# -- future times --------------------------------------------------------------------

SKEW_LIMIT = "2026-01-01T00:05:00Z"  # NOW + 5 minutes


@pytest.mark.parametrize("field", ["ts", "created_at"])
@pytest.mark.parametrize("value", ["2026-01-01T00:05:00.000001Z", "2026-01-01T00:05:01Z",
                                   "2026-01-01T01:05:01+01:00", "2030-01-01T00:00:00Z"])
def test_future_time(field: str, value: str) -> None:
    changes = {field: value}
    if field == "ts":
        changes["created_at"] = TS
    names_post_a1(around(bad(raw(post_value(**changes)))), "future_time")


@pytest.mark.parametrize("value", [SKEW_LIMIT, "2026-01-01T01:05:00+01:00",
                                   "2026-01-01T00:05:00.0000009Z"])
def test_exactly_at_the_skew_limit_is_accepted(value: str) -> None:
    assert NOW == "2026-01-01T00:00:00Z"
    r = around(bad(raw(post_value(ts=value, created_at=value))))
    assert r.dead == []
    assert "a-1" in r.ids


def test_policy_sets_the_clock_skew() -> None:
    policy = Policy(clock_skew_seconds=0)
    names_post_a1(
        around(bad(raw(post_value(ts="2026-01-01T00:00:00.000001Z"))), policy=policy),
        "future_time",
    )
    r = around(bad(raw(post_value(ts=NOW))), policy=policy)
    assert r.dead == []


def test_future_objection_quarantines() -> None:
    quarantines_a(around(bad(raw(objection_value(ts="2026-01-01T00:05:01Z")), "objections")),
                  "future_time")


# -- keys and owners -----------------------------------------------------------------

def test_key_mismatch_on_posts_names_the_post() -> None:
    names_post_a1(around(bad(raw(post_value()), key="b")), "key_mismatch")


def test_key_mismatch_on_objections_quarantines_the_key_account() -> None:
    # Key b, account_id a: the message names the account of its key (b).
    r = run(profile("a"), profile("b"), post("a-1", "a"), post("b-1", "b"),
            bad(raw(objection_value(account_id="a")), "objections", key="b"),
            post("b-2", "b", "2025-06-01T10:30:00Z"), post("a-2", "a", "2025-06-01T10:30:00Z"))
    dead = only_dead(r)
    assert (dead.reason.value, dead.posts, dead.accounts) == ("key_mismatch", (), ("b",))
    assert r.ids == {"a-1", "a-2"}
    assert r.reasons_of("b-2") == (Reason.QUARANTINED,)


def test_key_missing_on_kafka() -> None:
    names_post_a1(around(bad(raw(post_value()), key=None, kafka=True)), "key_missing")


def test_key_missing_on_kafka_objections_names_nothing() -> None:
    # Only in an event log does a keyless value name its account_id.
    r = around(bad(raw(objection_value()), "objections", key=None, kafka=True))
    assert_dead(r, "key_missing")
    assert r.ids == {"a-0", "a-1", "a-2", "g-1", "g-2"}


def test_null_key_in_an_event_log_is_the_account_id() -> None:
    r = around(bad(raw(post_value(post_id="a-9")), key=None, kafka=False))
    assert r.dead == []
    assert "a-9" in r.ids


@pytest.mark.parametrize("bad_event", [
    update("a-1", "b", "2025-06-01T10:40:00Z"),
    post("a-1", "b", "2025-06-01T10:40:00Z"),
    msg("posts", {"event_id": "e-d", "type": "post.deleted", "ts": TS, "post_id": "a-1",
                  "account_id": "b"}),
], ids=["updated", "created", "deleted"])
def test_owner_mismatch(bad_event: Message) -> None:
    r = run(profile("a"), profile("b"), post("a-0", "a"), post("a-1", "a"), post("b-1", "b"),
            bad_event, post("b-2", "b", "2025-06-01T10:30:00Z"))
    dead = only_dead(r)
    assert (dead.reason.value, dead.posts, dead.accounts) == ("owner_mismatch", ("a-1",), ())
    assert r.ids == {"a-0", "b-1", "b-2"}
    assert retraction_causes(r, "a-1") == [(Reason.QUARANTINED,)]
    # b's event did not take the post over: a later valid version of a publishes it again.
    r.apply(update("a-1", "a", "2025-06-01T10:50:00Z"))
    assert "a-1" in r.ids


def test_owner_mismatch_on_a_post_never_in_the_view() -> None:
    r = run(profile("a"), profile("b"), post("a-1", "a", audience="friends"),
            post("a-1", "b", "2025-06-01T10:40:00Z"))
    assert r.dead_reasons() == ["owner_mismatch"]
    assert r.ids == set()


# -- a dead letter still excludes what it names ----------------------------------------

def test_bad_update_with_a_post_id_retracts_that_post_only() -> None:
    names_post_a1(around(bad(raw(post_value(audience="Private")))), "bad_value")


def test_dead_letter_keyed_by_another_account_still_retracts_the_post_it_names() -> None:
    r = around(bad(b'{"type": "post.gone", "post_id": "a-1", "account_id": "b"}', key="b"))
    assert_dead(r, "unknown_type", posts=("a-1",))
    assert r.ids == {"a-0", "a-2", "g-1", "g-2"}


def test_dead_letter_names_a_post_not_yet_seen_without_harm() -> None:
    r = around(bad(raw(post_value(post_id="a-9", kind="?"))))
    assert_dead(r, "bad_value", posts=("a-9",))
    r.apply(post("a-9", "a"))
    assert "a-9" in r.ids


@pytest.mark.parametrize("value", [
    b'{"type": "post.updated", "extra": {"post_id": "a-1"}}',  # not top level
    b'{"type": "post.updated", "post_id": 17}',  # not a string
    b'{"type": "post.updated", "post_id": ["a-1"]}',
    b'{"type": "post.updated", "post_id": null}',
])
def test_post_id_that_names_no_post_names_the_key_account(value: bytes) -> None:
    r = around(bad(value))
    assert only_dead(r).accounts == ("a",)
    assert only_dead(r).posts == ()
    assert r.ids == {"a-2", "g-1", "g-2"}


def test_dead_letter_on_posts_without_post_id_does_not_quarantine() -> None:
    r = around(bad(b"garbage"))
    names_account_a_on_posts(r, "invalid_json")
    assert "a-2" in published(r)


def test_bad_objection_quarantines_until_a_valid_objection_event() -> None:
    r = run(profile("a"), post("a-0", "a"), post("a-1", "a"),
            objection("a", ts="2025-06-01T10:10:00Z", filed=False),
            bad(raw(objection_value(ts="yesterday")), "objections"),
            post("a-2", "a", "2025-06-01T10:30:00Z"))
    quarantine = only_dead(r)
    assert (quarantine.reason.value, quarantine.accounts) == ("bad_time", ("a",))
    assert r.ids == set()
    assert retraction_causes(r, "a-0") == [(Reason.QUARANTINED,)]
    assert retraction_causes(r, "a-1") == [(Reason.QUARANTINED,)]
    assert r.reasons_of("a-2") == (Reason.QUARANTINED,)
    # Valid events of other topics do not lift it.
    r.apply(profile("a", ts="2025-06-01T10:20:00Z"), post("a-3", "a", "2025-06-01T10:31:00Z"))
    assert r.reasons_of("a-3") == (Reason.QUARANTINED,)
    # A valid objection event, even one older than the deciding one, lifts it; the
    # account's state stays what the valid events say (the newer withdrawal decides).
    r.apply(objection("a", ts="2025-01-01T00:00:00Z", filed=True),
            post("a-4", "a", "2025-06-01T10:32:00Z"))
    assert r.ids == {"a-4"}
    # What was excluded is not brought back.
    assert not {"a-0", "a-1", "a-2", "a-3"} & r.ids


def test_quarantine_lifted_by_an_objection_leaves_the_account_objected() -> None:
    r = run(profile("a"), post("a-0", "a"),
            objection("a", ts="2025-06-01T10:10:00Z", filed=True),
            objection("a", ts="2025-06-01T10:11:00Z", filed=False),
            bad(raw(objection_value(type="objection.filed", ts="soon")), "objections"),
            objection("a", ts="2025-06-01T10:12:00Z", filed=True),
            post("a-1", "a", "2025-06-01T10:30:00Z"))
    assert r.dead_reasons() == ["bad_time"]
    assert r.reasons_of("a-1") == (Reason.OBJECTED,)
    assert r.ids == set()


def test_bad_accounts_message_quarantines_until_a_valid_accounts_event() -> None:
    r = run(profile("a", country="DE", ts="2025-06-01T09:00:00Z"), post("a-0", "a"),
            bad(raw(profile_value(country="Germany")), "accounts"),
            post("a-1", "a", "2025-06-01T10:30:00Z"))
    dead = only_dead(r)
    assert (dead.reason.value, dead.accounts) == ("bad_value", ("a",))
    assert r.ids == set()
    assert r.reasons_of("a-1") == (Reason.QUARANTINED,)
    # A valid objection event does not lift an accounts quarantine.
    r.apply(objection("a", ts="2025-06-01T10:00:00Z", filed=False),
            post("a-2", "a", "2025-06-01T10:31:00Z"))
    assert r.reasons_of("a-2") == (Reason.QUARANTINED,)
    # An older valid profile lifts it, but the newer profile (DE) still decides.
    r.apply(profile("a", country="US", ts="2025-01-01T00:00:00Z"),
            post("a-3", "a", "2025-06-01T10:32:00Z"))
    assert r.ids == {"a-3"}
    assert r.view["a-3"].country == "DE"


def test_account_deleted_is_a_valid_accounts_event_after_quarantine() -> None:
    r = run(profile("a"), post("a-0", "a"), bad(None, "accounts"), delete_account("a"),
            post("a-1", "a", "2025-06-01T10:30:00Z"))
    assert r.dead_reasons() == ["tombstone"]
    assert r.reasons_of("a-1") == (Reason.ACCOUNT_DELETED,)
    assert r.ids == set()


def test_both_quarantines_must_be_lifted() -> None:
    r = run(profile("a"), post("a-0", "a"),
            bad(b"{", "objections"), bad(b"{", "accounts"),
            objection("a", filed=False), post("a-1", "a", "2025-06-01T10:30:00Z"))
    assert r.reasons_of("a-1") == (Reason.QUARANTINED,)
    r.apply(profile("a", ts="2025-06-01T08:30:00Z"), post("a-2", "a", "2025-06-01T10:31:00Z"))
    assert r.ids == {"a-2"}


def test_quarantine_of_an_account_never_seen_before() -> None:
    r = run(bad(b"[", "objections", key="new"), profile("new"),
            post("n-1", "new", "2025-06-01T10:30:00Z"))
    assert r.reasons_of("n-1") == (Reason.QUARANTINED,)
    r.apply(objection("new", filed=False), post("n-2", "new", "2025-06-01T10:31:00Z"))
    assert r.ids == {"n-2"}


def test_message_that_names_nothing_is_only_a_dead_letter() -> None:
    for topic in ("posts", "objections", "accounts"):
        r = around(bad(b'{"account_id": "a", "post_id": "a-1", NaN}', topic, key=None,
                       kafka=False))
        assert_dead(r, "invalid_json")
        assert r.ids == {"a-0", "a-1", "a-2", "g-1", "g-2"}


def test_event_log_without_key_names_the_values_account_id() -> None:
    r = around(bad(raw(objection_value(ts="later")), "objections", key=None, kafka=False))
    quarantines_a(r, "bad_time")


@pytest.mark.parametrize("topic", ["users", "Posts", "", "eligibility-dlq", "training-ready"])
def test_unknown_topic_names_nothing(topic: str) -> None:
    r = around(bad(raw(post_value()), topic, key="a"))
    assert_dead(r, "unknown_topic")
    assert r.ids == {"a-0", "a-1", "a-2", "g-1", "g-2"}


# -- whatever the bytes, nothing bad is published ----------------------------------------

def _mutations() -> st.SearchStrategy[bytes]:
    base = raw(post_value(post_id="a-9", audience="private"))
    return st.one_of(
        st.binary(max_size=300),
        st.text(max_size=200).map(lambda s: s.encode("utf-8", "surrogatepass")),
        st.tuples(st.integers(0, len(base)), st.binary(min_size=1, max_size=8)).map(
            lambda t: base[: t[0]] + t[1] + base[t[0]:]
        ),
        st.integers(0, len(base) - 1).map(lambda i: base[:i] + base[i + 1:]),
    )


@settings(max_examples=300, deadline=None)
@given(value=_mutations(), topic=st.sampled_from(["posts", "objections", "accounts"]),
       kafka=st.booleans())
def test_arbitrary_bytes_never_crash_and_never_publish_a_private_post(
    value: bytes, topic: str, kafka: bool
) -> None:
    r = run(profile("a"), post("a-0", "a"))
    outcome = r.engine.apply(msg(topic, value, key="a", kafka=kafka), r.store)
    published_ids = [c.post_id for c in outcome.changes if isinstance(c, Publish)]
    if outcome.dead_letter is not None:
        assert published_ids == []
    # A private post (the base value) is never published, however it was mangled.
    decoded = orjson.loads(value) if _is_object(value) else None
    if decoded is None or decoded.get("audience") != "public":
        assert published_ids == []


def _is_object(value: bytes) -> bool:
    try:
        return isinstance(orjson.loads(value), dict)
    except orjson.JSONDecodeError:
        return False
