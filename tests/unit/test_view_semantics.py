"""The view as SPEC.md defines it: state per account and per post, "Inclusion is
prospective, exclusion retroactive", final deletions, records, audits, new policies."""

from __future__ import annotations

import re

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.core.decode import Message
from stream.core.engine import Engine, Outcome, Publish, Retract
from stream.core.policy import DEFAULT_POLICY, Policy
from stream.core.pseudonym import Pseudonymizer
from stream.core.records import AuditRecord, TrainingRecord
from stream.core.times import format_time, parse_time
from tests.unit.builders import (
    FixedClock,
    Run,
    delete_account,
    delete_post,
    msg,
    objection,
    post,
    profile,
    run,
    update,
)

AUTHOR = Pseudonymizer.development().author
CHILD = "2010-01-01"
T0, T1, T2, T3 = (
    "2025-06-01T10:00:00Z",
    "2025-06-01T11:00:00Z",
    "2025-06-01T12:00:00Z",
    "2025-06-01T13:00:00Z",
)


def step(r: Run, *messages: Message) -> list[AuditRecord]:
    """Apply messages; the audit records they produced."""
    before = len(r.audits)
    r.apply(*messages)
    return r.audits[before:]


def outcomes(audits: list[AuditRecord]) -> list[tuple[str, str, str | None, tuple[str, ...]]]:
    return [(a.record, a.outcome, a.post_id, a.reasons) for a in audits]


def retractions(audits: list[AuditRecord]) -> dict[str, tuple[str, ...]]:
    return {a.post_id: a.reasons for a in audits if a.record == "retraction"}  # type: ignore[misc]


def published(audits: list[AuditRecord]) -> list[str | None]:
    return [a.post_id for a in audits if a.outcome == "published"]


# -- objections --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("events", "objected"),
    [
        ([(T1, True)], True),
        ([(T1, False)], False),
        ([(T1, True), (T2, False)], False),
        ([(T2, False), (T1, True)], False),  # stale filed does nothing
        ([(T1, False), (T2, True)], True),
        ([(T2, True), (T1, False)], True),  # stale withdrawn does nothing
        ([(T1, True), (T1, False)], True),  # a tie: filed wins ...
        ([(T1, False), (T1, True)], True),  # ... whatever the arrival order
        ([(T1, True), (T2, False), (T2, True)], True),
        ([(T3, False), (T1, True), (T2, True)], False),
    ],
)
def test_latest_objection_by_ts_decides(events: list[tuple[str, bool]], objected: bool) -> None:
    r = run(profile("a1"), *(objection("a1", ts, filed) for ts, filed in events),
            post("p1", "a1"))
    assert r.ids == (set() if objected else {"p1"})
    assert r.reasons_of("p1") == (("objected",) if objected else ())


@pytest.mark.parametrize("withdrawn_first", [False, True])
def test_tie_between_filed_and_withdrawn_retracts(withdrawn_first: bool) -> None:
    r = run(profile("a1"), post("p1", "a1"))
    pair = [objection("a1", T1, filed=True), objection("a1", T1, filed=False)]
    if withdrawn_first:
        pair.reverse()
    audits = step(r, *pair)
    assert r.ids == set()
    assert retractions(audits) == {"p1": ("objected",)}


def test_stale_withdrawal_does_nothing() -> None:
    r = run(profile("a1"), post("p1", "a1"), objection("a1", T2))
    assert r.ids == set()
    audits = step(r, objection("a1", T1, filed=False), post("p2", "a1"))
    assert outcomes(audits) == [
        ("account", "unchanged", None, ()),
        ("post", "excluded", "p2", ("objected",)),
    ]
    assert r.ids == set()


def test_withdrawal_is_prospective() -> None:
    r = run(profile("a1"), post("p1", "a1", T0), objection("a1", T1))
    assert r.ids == set()
    audits = step(r, objection("a1", T2, filed=False))
    assert outcomes(audits) == [("account", "changed", None, ())]
    assert r.ids == set()  # not brought back
    r.apply(post("p2", "a1", T2))
    assert r.ids == {"p2"}  # new posts are published
    r.apply(update("p1", "a1", T3, text="edited"))  # evaluated afresh
    assert r.ids == {"p1", "p2"}
    assert r.view["p1"].text == "edited"


def test_objection_covers_content_made_before_it() -> None:
    r = run(profile("a1"), post("p1", "a1", T2, created_at="2020-01-01T00:00:00Z"))
    assert r.ids == {"p1"}
    audits = step(r, objection("a1", "2019-01-01T00:00:00Z"))
    assert r.ids == set()
    assert retractions(audits) == {"p1": ("objected",)}


def test_objection_before_any_profile() -> None:
    r = run(objection("a1", T0), profile("a1"), post("p1", "a1"))
    assert (r.ids, r.reasons_of("p1")) == (set(), ("objected",))


# -- profiles ----------------------------------------------------------------------


def test_greatest_profile_ts_decides() -> None:
    r = run(profile("a1", ts=T2), post("p1", "a1"))
    audits = step(r, profile("a1", birth=CHILD, country="US", ts=T1))  # stale
    assert outcomes(audits) == [("account", "unchanged", None, ())]
    r.apply(post("p2", "a1"))
    assert r.ids == {"p1", "p2"}
    audits = step(r, profile("a1", birth=CHILD, ts=T3))
    assert retractions(audits) == {"p1": ("minor",), "p2": ("minor",)}
    assert r.ids == set()


def test_newer_null_birth_date_makes_the_age_unknown_again() -> None:
    r = run(profile("a1", ts=T0), post("p1", "a1"))
    audits = step(r, profile("a1", birth=None, ts=T1))
    assert retractions(audits) == {"p1": ("age_unknown",)}
    r.apply(post("p2", "a1"))
    assert (r.ids, r.reasons_of("p2")) == (set(), ("age_unknown",))


def test_newer_null_country_makes_the_region_unknown() -> None:
    r = run(profile("a1", ts=T0), post("p1", "a1"))
    audits = step(r, profile("a1", country=None, ts=T1))
    assert retractions(audits) == {"p1": ("region_unknown",)}


@pytest.mark.parametrize(
    "other",
    [
        {"birth": "1991-01-01"},
        {"country": "FR"},
        {"birth": None},
        {"country": None},
        {"birth": "1991-01-01", "country": "AT"},
    ],
)
def test_equal_ts_conflicting_profiles_make_both_unknown(other: dict) -> None:
    r = run(profile("a1", ts=T1), post("p1", "a1"), profile("a1", "1995-01-01", "DE", ts=T0))
    assert r.ids == {"p1"}
    audits = step(r, profile("a1", **{"birth": "1990-01-01", "country": "DE", **other}, ts=T1))
    assert retractions(audits) == {"p1": ("age_unknown", "region_unknown")}
    # the first profile again at the same ts does not settle it
    r.apply(profile("a1", ts=T1), post("p2", "a1"))
    assert (r.ids, r.reasons_of("p2")) == (set(), ("age_unknown", "region_unknown"))
    # a greater ts does, prospectively
    r.apply(profile("a1", ts=T2), post("p3", "a1"))
    assert r.ids == {"p3"}


def test_profile_redelivery_changes_nothing() -> None:
    again = profile("a1", ts=T1)
    r = run(again, post("p1", "a1"))
    before = dict(r.view)
    audits = step(r, again, profile("a1", ts=T1))  # the same message, then an identical one
    assert outcomes(audits) == [("account", "unchanged", None, ())] * 2
    assert r.view == before


def test_stale_profile_is_ignored() -> None:
    r = run(profile("a1", ts=T2), post("p1", "a1"))
    audits = step(r, profile("a1", birth=None, country=None, ts=T1))
    assert outcomes(audits) == [("account", "unchanged", None, ())]
    assert r.ids == {"p1"}


def test_a_move_within_the_regions_keeps_the_record() -> None:
    r = run(profile("a1", country="DE", ts=T0), post("p1", "a1"))
    record = r.view["p1"]
    audits = step(r, profile("a1", country="FR", ts=T1))
    assert outcomes(audits) == [("account", "changed", None, ())]  # nothing re-published
    assert r.view == {"p1": record}
    assert r.view["p1"].country == "DE"
    r.apply(post("p2", "a1"))
    assert r.view["p2"].country == "FR"


def test_a_move_out_of_the_regions_retracts() -> None:
    r = run(profile("a1", country="DE", ts=T0), post("p1", "a1"))
    audits = step(r, profile("a1", country="US", ts=T1))
    assert retractions(audits) == {"p1": ("out_of_region",)}
    assert r.ids == set()
    r.apply(profile("a1", country="DE", ts=T2))
    assert r.ids == set()  # not brought back


def test_a_move_to_a_country_with_a_higher_minimum_age_retracts() -> None:
    policy = Policy(min_age_by_country={"DE": 16})
    r = run(profile("a1", birth="2008-01-01", country="DE", ts=T0), post("p1", "a1"),
            policy=policy)
    assert r.ids == {"p1"}
    audits = step(r, profile("a1", birth="2008-01-01", country="FR", ts=T1))
    assert retractions(audits) == {"p1": ("minor",)}


def test_a_birth_date_arriving_late_does_not_bring_posts_back() -> None:
    r = run(post("p1", "a1"), profile("a1"))
    assert (r.ids, r.reasons_of("p1")) == (set(), ("age_unknown", "region_unknown"))
    r.apply(post("p2", "a1"))
    assert r.ids == {"p2"}


def test_favourable_changes_retract_and_publish_nothing() -> None:
    r = run(profile("a1", ts=T0), post("p1", "a1"))
    record = r.view["p1"]
    audits = step(r, profile("a1", birth="1980-05-05", ts=T1), objection("a1", T1, filed=False))
    assert outcomes(audits) == [("account", "changed", None, ())] * 2
    assert r.view == {"p1": record}


# -- post versions -------------------------------------------------------------------


def test_greatest_version_ts_wins() -> None:
    r = run(profile("a1"), post("p1", "a1", T0, text="one"))
    v2 = update("p1", "a1", T2, text="two")
    r.apply(v2)
    assert r.view["p1"].text == "two"
    assert r.view["p1"].event_id == msgspec.json.decode(v2.value)["event_id"]  # type: ignore[arg-type]
    audits = step(r, update("p1", "a1", T1, text="stale"))
    assert outcomes(audits) == [("post", "stale", "p1", ())]
    assert r.view["p1"].text == "two"


def test_stale_ineligible_version_does_nothing() -> None:
    r = run(profile("a1"), post("p1", "a1", T2))
    audits = step(r, update("p1", "a1", T1, created_at=T2, audience="private", kind="message"))
    assert outcomes(audits) == [
        ("post", "stale", "p1", ("private_conversation", "not_public")),
    ]
    assert r.ids == {"p1"}


def test_equal_ts_private_version_retracts_the_public_one() -> None:
    r = run(profile("a1"), post("p1", "a1", T1, text="public"))
    audits = step(r, update("p1", "a1", T1, audience="private"))
    assert outcomes(audits) == [
        ("post", "excluded", "p1", ("not_public",)),
        ("retraction", "retracted", "p1", ("not_public",)),
    ]
    assert r.ids == set()
    # and a public one at that ts again publishes nothing
    audits = step(r, update("p1", "a1", T1, text="public"))
    assert outcomes(audits) == [("post", "stale", "p1", ())]
    assert r.ids == set()


def test_equal_ts_public_version_after_a_private_one_publishes_nothing() -> None:
    r = run(profile("a1"), post("p1", "a1", T1, audience="friends"))
    audits = step(r, update("p1", "a1", T1))
    assert outcomes(audits) == [("post", "stale", "p1", ())]
    assert r.ids == set()
    r.apply(update("p1", "a1", T2))
    assert r.ids == {"p1"}


def test_equal_ts_eligible_version_does_not_overwrite() -> None:
    r = run(profile("a1"), post("p1", "a1", T1, text="first"))
    audits = step(r, update("p1", "a1", T1, text="second"))
    assert outcomes(audits) == [("post", "stale", "p1", ())]
    assert r.view["p1"].text == "first"


def test_earliest_created_at_is_kept_across_versions() -> None:
    r = run(profile("a1"), post("p1", "a1", T0, created_at="2025-05-01T00:00:00Z"))
    r.apply(update("p1", "a1", T1, created_at="2025-05-20T00:00:00Z", text="later"))
    assert r.view["p1"].created_at == "2025-05-01T00:00:00Z"
    assert r.view["p1"].text == "later"


def test_earliest_created_at_counts_from_versions_that_did_not_replace() -> None:
    r = run(profile("a1"), post("p1", "a1", T2, created_at="2025-05-20T00:00:00Z",
                               audience="friends"))
    stale = update("p1", "a1", T1, created_at="2025-05-01T02:00:00+02:00")  # 05-01T00:00Z
    assert outcomes(step(r, stale)) == [("post", "stale", "p1", ())]  # not in the view
    r.apply(update("p1", "a1", T3, created_at="2025-05-25T00:00:00Z"))
    assert r.view["p1"].created_at == "2025-05-01T00:00:00Z"


def test_stale_version_with_earlier_created_at_retracts_the_record() -> None:
    # the record can no longer be rewritten without the stored text (design note)
    r = run(profile("a1"), post("p1", "a1", T2, created_at="2025-05-20T00:00:00Z"))
    audits = step(r, update("p1", "a1", T1, created_at="2025-05-01T00:00:00Z"))
    assert outcomes(audits) == [
        ("post", "stale", "p1", ()),
        ("retraction", "retracted", "p1", ("created_at_changed",)),
    ]
    assert r.ids == set()
    r.apply(update("p1", "a1", T3, created_at="2025-05-30T00:00:00Z", text="new"))
    assert r.view["p1"].created_at == "2025-05-01T00:00:00Z"


def test_equal_ts_eligible_version_with_earlier_created_at_retracts_the_record() -> None:
    r = run(profile("a1"), post("p1", "a1", T2, created_at="2025-05-20T00:00:00Z"))
    audits = step(r, update("p1", "a1", T2, created_at="2025-05-01T00:00:00Z"))
    assert retractions(audits) == {"p1": ("created_at_changed",)}
    assert r.ids == set()


def test_stale_version_with_earlier_created_at_making_a_minor_retracts() -> None:
    r = run(profile("a1", birth="2007-06-01"),
            post("p1", "a1", T2, created_at="2025-06-01T00:00:00Z"))
    assert r.ids == {"p1"}
    audits = step(r, update("p1", "a1", T1, created_at="2025-05-31T23:59:59Z"))
    assert outcomes(audits) == [
        ("post", "stale", "p1", ("minor",)),
        ("retraction", "retracted", "p1", ("minor",)),
    ]
    r.apply(update("p1", "a1", T3, created_at="2025-06-01T09:00:00Z"))
    assert (r.ids, r.reasons_of("p1")) == (set(), ("minor",))


def test_stale_version_with_later_created_at_keeps_the_record() -> None:
    r = run(profile("a1"), post("p1", "a1", T2, created_at="2025-05-01T00:00:00Z"))
    record = r.view["p1"]
    audits = step(r, update("p1", "a1", T1, created_at="2025-05-20T00:00:00Z"))
    assert outcomes(audits) == [("post", "stale", "p1", ())]
    assert r.view == {"p1": record}


def test_newer_version_with_earlier_created_at_making_a_minor_retracts() -> None:
    r = run(profile("a1", birth="2007-06-01"),
            post("p1", "a1", T1, created_at="2025-06-01T00:00:00Z"))
    audits = step(r, update("p1", "a1", T2, created_at="2025-05-01T00:00:00Z"))
    assert outcomes(audits) == [
        ("post", "excluded", "p1", ("minor",)),
        ("retraction", "retracted", "p1", ("minor",)),
    ]


def test_update_of_a_post_never_created_is_applied() -> None:
    r = run(profile("a1"), update("p1", "a1", T1))
    assert r.ids == {"p1"}
    assert r.audits[-1].event_type == "post.updated"
    assert r.audits[-1].outcome == "published"


# -- final deletions -------------------------------------------------------------------


@pytest.mark.parametrize("later_ts", ["2025-01-01T00:00:00Z", T0, "2025-12-01T00:00:00Z"])
def test_post_deleted_is_final(later_ts: str) -> None:
    r = run(profile("a1"), post("p1", "a1", T0), post("p2", "a1", T0))
    audits = step(r, delete_post("p1", "a1", T1))
    assert outcomes(audits) == [
        ("post", "excluded", "p1", ("post_deleted",)),
        ("retraction", "retracted", "p1", ("post_deleted",)),
    ]
    audits = step(r, post("p1", "a1", later_ts), update("p1", "a1", later_ts),
                  delete_post("p1", "a1", later_ts))
    assert outcomes(audits) == [("post", "ignored", "p1", ("post_deleted",))] * 3
    assert r.ids == {"p2"}


def test_post_deleted_before_the_first_version() -> None:
    r = run(profile("a1"), delete_post("p1", "a1", T0), post("p1", "a1", T2))
    assert r.ids == set()
    assert outcomes(r.audits[-2:]) == [
        ("post", "excluded", "p1", ("post_deleted",)),
        ("post", "ignored", "p1", ("post_deleted",)),
    ]


def test_account_deleted_is_final() -> None:
    r = run(profile("a1"), profile("a2"), post("p1", "a1"), post("p2", "a1", T1),
            post("p3", "a2"))
    audits = step(r, delete_account("a1", T2))
    assert outcomes(audits)[0] == ("account", "changed", None, ())
    assert retractions(audits) == {"p1": ("account_deleted",), "p2": ("account_deleted",)}
    assert r.ids == {"p3"}
    later = [
        post("p4", "a1", T3),
        update("p1", "a1", T3),
        post("p5", "a1", "2025-01-01T00:00:00Z"),
        delete_post("p2", "a1", T3),
        objection("a1", T3, filed=False),
        profile("a1", ts=T3),
        delete_account("a1", T3),
    ]
    audits = step(r, *later)
    assert [a.outcome for a in audits] == ["ignored"] * len(later)
    assert [a.reasons for a in audits if a.record == "post"] == [("account_deleted",)] * 4
    assert r.ids == {"p3"}
    assert r.store.accounts["a1"].deleted


@pytest.mark.parametrize(
    ("setup", "message", "second"),
    [
        ([profile("a1")], post("p1", "a1"), "stale"),
        ([profile("a1")], update("p1", "a1", T1), "stale"),
        ([], profile("a1"), "unchanged"),
        ([profile("a1")], objection("a1"), "unchanged"),
        ([profile("a1")], objection("a1", filed=False), "unchanged"),
        ([profile("a1"), post("p1", "a1")], delete_post("p1", "a1"), "ignored"),
        ([profile("a1"), post("p1", "a1")], delete_account("a1"), "ignored"),
    ],
)
def test_redelivery_changes_nothing(setup: list, message: Message, second: str) -> None:
    r = run(*setup, message)
    view, posts, accounts = dict(r.view), dict(r.store.posts), dict(r.store.accounts)
    audits = step(r, message)
    assert [a.outcome for a in audits] == [second]
    assert (r.view, r.store.posts, r.store.accounts) == (view, posts, accounts)


def test_redelivery_of_an_ineligible_version_changes_nothing() -> None:
    message = post("p1", "a1", audience="private")
    r = run(profile("a1"), message)
    posts = dict(r.store.posts)
    audits = step(r, message)
    assert outcomes(audits) == [("post", "excluded", "p1", ("not_public",))]
    assert (r.ids, r.store.posts) == (set(), posts)


# -- exclusion is retroactive -------------------------------------------------------------

EXCLUSIONS = [
    (objection("a1", T3), ("objected",)),
    (profile("a1", birth=CHILD, ts=T3), ("minor",)),
    (profile("a1", birth=None, ts=T3), ("age_unknown",)),
    (profile("a1", country="GB", ts=T3), ("out_of_region",)),
    (delete_account("a1", T3), ("account_deleted",)),
    (msg("accounts", b'{"type": "account.upserted"', key="a1"), ("quarantined",)),
    (msg("objections", b"[]", key="a1"), ("quarantined",)),
    (msg("posts", b'{"type": "post.created"}', key="a1"), ("quarantined",)),
]


@pytest.mark.parametrize(("message", "cause"), EXCLUSIONS)
def test_exclusion_retracts_every_post_of_the_account(
    message: Message, cause: tuple[str, ...]
) -> None:
    r = run(profile("a1", ts=T0), profile("a2", ts=T0),
            post("p1", "a1", T0), post("p2", "a1", T1, created_at="2024-01-01T00:00:00Z"),
            post("p3", "a1", T1, audience="friends"), post("p4", "a2", T1))
    kept = r.view["p4"]
    assert r.ids == {"p1", "p2", "p4"}
    audits = step(r, message)
    assert retractions(audits) == {"p1": cause, "p2": cause}
    for audit in audits:
        if audit.record == "retraction":
            assert audit.author == AUTHOR("a1")
            assert audit.source is not None
            assert audit.source.topic == message.topic
            assert audit.policy == DEFAULT_POLICY.version
    assert r.ids == {"p4"}
    assert r.view["p4"] == kept


def test_quarantine_is_lifted_by_a_valid_event_of_that_topic_prospectively() -> None:
    r = run(profile("a1", ts=T1), post("p1", "a1"), msg("accounts", b"{", key="a1"))
    assert r.ids == set()
    r.apply(objection("a1", T0, filed=False), post("p2", "a1"))  # another topic: still
    assert (r.ids, r.reasons_of("p2")) == (set(), ("quarantined",))
    r.apply(profile("a1", ts=T0), post("p3", "a1"))  # stale, but valid and of that topic
    assert r.ids == {"p3"}
    assert r.store.accounts["a1"].birth_date is not None  # the ts-T1 profile still decides


# -- records and audits ------------------------------------------------------------------


def test_training_record_fields() -> None:
    created = post("p1", "acct-7", T1, created_at="2025-06-01T01:30:00.1234567+02:00",
                   kind="caption", text="  Caf\u00e9 \u2028 cafe\u0301\t ")
    r = run(profile("acct-7", country="NO"), created)
    event_id = msgspec.json.decode(created.value)["event_id"]  # type: ignore[arg-type]
    assert r.view == {
        "p1": TrainingRecord(
            post_id="p1",
            author=AUTHOR("acct-7"),
            text="  Caf\u00e9 \u2028 cafe\u0301\t ",
            lang="en",
            kind="caption",
            surface="facebook",
            country="NO",
            created_at="2025-05-31T23:30:00.123456Z",
            policy=DEFAULT_POLICY.version,
            event_id=event_id,
        )
    }
    author = r.view["p1"].author
    assert re.fullmatch(r"dev-[0-9a-f]{32}", author)
    assert "acct-7" not in author
    assert AUTHOR("acct-8") != author
    assert Pseudonymizer(b"another key of 16 bytes+").author("acct-7") != author


def test_record_event_id_is_that_of_the_published_version() -> None:
    v1, v2 = post("p1", "a1", T0), update("p1", "a1", T1)
    r = run(profile("a1"), v1, v2)
    assert r.view["p1"].event_id == msgspec.json.decode(v2.value)["event_id"]  # type: ignore[arg-type]
    assert r.view["p1"].policy == DEFAULT_POLICY.version


def test_audits_never_carry_the_raw_account_id() -> None:
    raw = "RawAccount-4711"
    r = run(
        profile(raw, ts=T0),
        profile(raw, ts=T0),
        post("p1", raw, T0),
        post("p2", raw, T0, audience="private"),
        update("p1", raw, T1),
        update("p1", raw, T0),
        objection(raw, T1),
        objection(raw, T2, filed=False),
        post("p3", raw, T2),
        profile(raw, country="US", ts=T2),
        msg("accounts", b'{"account_id": "RawAccount-4711"', key=raw),
        msg("objections", b'{"type": "objection.filed"}', key=raw),
        msg("posts", b'{"type": "post.created", "post_id": "p3"}', key=raw),
        profile(raw, ts=T3),
        post("p4", raw, T3),
        delete_post("p4", raw, T3),
        delete_account(raw, T3),
        objection(raw, T3),
        post("p5", raw, T3),
    )
    kinds = {a.record for a in r.audits}
    assert kinds == {"post", "retraction", "account", "dead_letter"}
    for audit in r.audits:
        encoded = msgspec.json.encode(audit)
        assert raw.encode() not in encoded
        assert raw.lower().encode() not in encoded.lower()
        assert audit.author in (AUTHOR(raw), None)
        assert audit.policy == DEFAULT_POLICY.version
        assert audit.source is not None
    for record in r.view.values():
        assert raw not in msgspec.json.encode(record).decode()


# -- a new policy --------------------------------------------------------------------------


def sweep(r: Run, policy: Policy) -> Outcome:
    engine = Engine(policy, Pseudonymizer.development(), FixedClock())
    accounts = [a for chunk in r.store.accounts_in_view() for a in chunk]
    out = engine.sweep(r.store, accounts)
    for change in out.changes:
        if isinstance(change, Publish):
            r.view[change.post_id] = change.record
        else:
            r.view.pop(change.post_id, None)
    return out


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (Policy(), DEFAULT_POLICY),
        (Policy(regions=("DE", "FR")), Policy(regions=("FR", "DE"))),
        (Policy(regions=("DE", "FR")), Policy(regions=("FR", "DE", "FR"))),
        (Policy(min_age_by_country={"DE": 16, "FR": 17}),
         Policy(min_age_by_country={"FR": 17, "DE": 16})),
        (Policy(not_before="2025-01-01T00:00:00Z"), Policy(not_before="2025-01-01t01:00:00+01:00")),
        (Policy(not_before="2025-01-01T00:00:00Z"), Policy(not_before="2025-01-01T00:00:00-00:00")),
        # an override equal to the default age decides nothing
        (Policy(min_age_by_country={"DE": 18}), DEFAULT_POLICY),
        # input limits are not part of the rule
        (Policy(clock_skew_seconds=60), DEFAULT_POLICY),
        (Policy(max_message_bytes=2048), DEFAULT_POLICY),
    ],
)
def test_equal_policies_have_equal_versions(a: Policy, b: Policy) -> None:
    assert a.version == b.version
    assert re.fullmatch(r"p1-[0-9a-f]{16}", a.version)


def test_every_rule_field_changes_the_version() -> None:
    variants = [
        DEFAULT_POLICY,
        Policy(min_age=17),
        Policy(min_age_by_country={"DE": 16}),
        Policy(min_age_by_country={"DE": 17}),
        Policy(regions=("DE",)),
        Policy(regions=(*DEFAULT_POLICY.regions, "CH")),
        Policy(not_before="2025-01-01T00:00:00Z"),
        Policy(not_before="2025-01-01T00:00:00.000001Z"),
    ]
    assert len({p.version for p in variants}) == len(variants)


def existing_state() -> Run:
    return run(
        profile("a1", birth="1990-01-01", country="DE"),
        profile("a2", birth="2000-01-01", country="SE"),
        profile("a3", birth="2008-01-01", country="DE", ts=T0),
        post("p1", "a1", T0, created_at="2024-06-01T00:00:00Z"),
        post("p2", "a1", T0, created_at="2025-06-01T00:00:00Z"),
        post("p3", "a2", T0, created_at="2025-06-01T00:00:00Z"),
        post("p4", "a3", T1),  # a minor under the default policy
        post("p5", "a2", T0, audience="friends"),
    )


@pytest.mark.parametrize(
    ("policy", "retracted"),
    [
        (Policy(min_age=30), {"p3": ("minor",)}),
        (Policy(min_age_by_country={"SE": 26}), {"p3": ("minor",)}),
        (Policy(regions=tuple(c for c in DEFAULT_POLICY.regions if c != "DE")),
         {"p1": ("out_of_region",), "p2": ("out_of_region",)}),
        (Policy(not_before="2025-01-01T00:00:00Z"), {"p1": ("before_cutoff",)}),
        (Policy(min_age=40, regions=("SE",), not_before="2025-01-01T00:00:00Z"),
         {"p1": ("minor", "out_of_region", "before_cutoff"),
          "p2": ("minor", "out_of_region"),
          "p3": ("minor",)}),
    ],
)
def test_a_stricter_policy_retracts_what_fails(
    policy: Policy, retracted: dict[str, tuple[str, ...]]
) -> None:
    r = existing_state()
    before = dict(r.view)
    assert set(before) == {"p1", "p2", "p3"}
    out = sweep(r, policy)
    assert all(isinstance(c, Retract) for c in out.changes)
    assert retractions(out.audits) == retracted
    assert all(a.policy == policy.version and a.source is None for a in out.audits)
    assert r.view == {k: v for k, v in before.items() if k not in retracted}
    assert sweep(r, policy).changes == []  # a second sweep finds nothing more


@pytest.mark.parametrize(
    "policy",
    [
        DEFAULT_POLICY,
        Policy(min_age=16),
        Policy(regions=(*DEFAULT_POLICY.regions, "US", "CH")),
        Policy(not_before="2000-01-01T00:00:00Z"),
        Policy(min_age_by_country={"DE": 14}),
    ],
)
def test_a_looser_policy_retracts_and_publishes_nothing(policy: Policy) -> None:
    r = existing_state()
    before = dict(r.view)
    out = sweep(r, policy)
    assert (out.changes, out.audits) == ([], [])
    assert r.view == before  # p4 (minor under the old policy) is not brought back
    # new events are then judged under the new policy
    after = Run(Engine(policy, Pseudonymizer.development(), FixedClock()), r.store, r.view)
    after.apply(update("p4", "a3", T2))
    assert ("p4" in after.ids) is (policy.min_age_for("DE") <= 17)
    if "p4" in after.ids:
        assert after.view["p4"].policy == policy.version


# -- the invariant, over random histories ------------------------------------------------

OWNERS = {"p1": "a1", "p2": "a1", "p3": "a2"}
TIMES = ["2025-05-31T23:59:59Z", "2025-06-01T00:00:00Z", "2025-06-01T02:00:00+02:00",
         "2025-06-02T00:00:00Z"]
post_events = st.builds(
    lambda pid, ts, created, kind, audience, kind_of: (update if kind_of else post)(
        pid, OWNERS[pid], ts, created_at=created, kind=kind, audience=audience),
    st.sampled_from(sorted(OWNERS)), st.sampled_from(TIMES), st.sampled_from(TIMES),
    st.sampled_from(["post", "post", "post", "message"]),
    st.sampled_from(["public", "public", "public", "friends"]),
    st.booleans(),
)
account_events = st.one_of(
    st.builds(objection, st.sampled_from(["a1", "a2"]), st.sampled_from(TIMES),
              st.sampled_from([True, False, False, False])),
    st.builds(profile, st.sampled_from(["a1", "a2"]),
              st.sampled_from([None, "1990-01-01", "1990-01-01", "2007-06-01", "2007-06-01"]),
              st.sampled_from([None, "DE", "DE", "DE", "FR", "US"]), st.sampled_from(TIMES)),
)
rare_events = st.one_of(
    st.builds(lambda pid, ts: delete_post(pid, OWNERS[pid], ts),
              st.sampled_from(sorted(OWNERS)), st.sampled_from(TIMES)),
    st.builds(delete_account, st.sampled_from(["a1", "a2"]), st.sampled_from(TIMES)),
    st.builds(lambda a, topic: msg(topic, b"{", key=a), st.sampled_from(["a1", "a2"]),
              st.sampled_from(["posts", "accounts", "objections"])),
)


histories = st.lists(
    st.integers(0, 39).flatmap(
        lambda i: post_events if i < 24 else account_events if i < 37 else rare_events
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(histories)
def test_the_view_only_keeps_eligible_stored_versions(messages: list[Message]) -> None:
    policy = Policy(min_age_by_country={"FR": 21})
    r = run(profile("a1", ts="2025-05-01T00:00:00Z"), profile("a2", ts="2025-05-01T00:00:00Z"),
            policy=policy)
    sent: dict[str, dict] = {}
    for message in messages:
        if message.topic == "posts" and message.value != b"{":
            value = msgspec.json.decode(message.value)  # type: ignore[arg-type]
            sent[value["event_id"]] = value
        before = set(r.ids)
        audits = step(r, message)
        # inclusion only through a post event that publishes; never by account state
        assert r.ids - before <= set(published(audits))
        if message.topic != "posts":
            assert published(audits) == []
        assert before - r.ids == set(retractions(audits))
        in_index = {p for posts in r.store.views.values() for p in posts}
        assert in_index == r.ids
        for post_id, record in r.view.items():
            stored = r.store.posts[post_id]
            account = r.store.accounts[OWNERS[post_id]]
            version = sent[record.event_id]
            assert not stored.deleted
            assert stored.created_at is not None
            assert r.engine.rule.reasons(
                version["kind"], version["audience"], stored.deleted, account,
                stored.created_at,
            ) == ()
            assert parse_time(version["ts"]) == stored.version_ts
            assert record.created_at == format_time(stored.created_at)
            assert record.author == AUTHOR(OWNERS[post_id])
