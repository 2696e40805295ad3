"""SPEC.md, "The rule": every failed condition is a reason, all listed, in SPEC order."""

from __future__ import annotations

import itertools

import pytest

from stream.core.policy import DEFAULT_POLICY, EEA_EFTA, EU27, Policy
from stream.core.rule import Reason, Rule
from stream.core.state import AccountState
from stream.core.times import parse_date, parse_time
from tests.unit.builders import (
    delete_account,
    delete_post,
    msg,
    objection,
    post,
    profile,
    run,
)

SPEC_ORDER = [
    "private_conversation",
    "not_public",
    "post_deleted",
    "account_deleted",
    "objected",
    "quarantined",
    "age_unknown",
    "minor",
    "region_unknown",
    "out_of_region",
    "before_cutoff",
]
CREATED = "2025-06-01T10:00:00Z"
ADULT = "1990-01-01"
CHILD = "2010-01-01"


def test_reason_values_are_the_spec_words_in_spec_order() -> None:
    assert [r.value for r in Reason] == SPEC_ORDER


def test_default_regions_are_eu27_and_is_li_no() -> None:
    assert len(set(EU27)) == 27
    assert set(DEFAULT_POLICY.regions) == set(EU27) | {"IS", "LI", "NO"}
    assert EEA_EFTA == ("IS", "LI", "NO")
    for outside in ("CH", "GB", "US", "TR", "UA"):
        assert outside not in DEFAULT_POLICY.regions


# -- the rule alone, exhaustively ------------------------------------------------


def test_every_combination_lists_every_failed_condition_in_spec_order() -> None:
    """4 kinds x 3 audiences x every account fact x cutoff: 3456 cases."""
    rule = Rule(Policy(not_before="2025-01-01T00:00:00Z"))
    births = {"age_unknown": None, "minor": parse_date(CHILD), "adult": parse_date(ADULT)}
    countries = {"region_unknown": None, "out_of_region": "US", "in": "FR"}
    times = {"before_cutoff": parse_time("2024-12-31T23:59:59.999999Z"),
             "after": parse_time(CREATED)}
    checked = 0
    for (kind, audience, post_deleted, deleted, objected, quarantined, age, region,
         when) in itertools.product(
        ("post", "comment", "caption", "message"),
        ("public", "friends", "private"),
        (False, True), (False, True), (False, True), (False, True),
        births, countries, times,
    ):
        account = AccountState(
            objection_ts=1 if objected else None,
            objected=objected,
            profile_ts=1,
            birth_date=births[age],
            country=countries[region],
            deleted=deleted,
            quarantined_by=frozenset({"objections"}) if quarantined else frozenset(),
        )
        failed = {
            "private_conversation": kind == "message",
            "not_public": audience != "public",
            "post_deleted": post_deleted,
            "account_deleted": deleted,
            "objected": objected,
            "quarantined": quarantined,
            "age_unknown": age == "age_unknown",
            "minor": age == "minor",
            "region_unknown": region == "region_unknown",
            "out_of_region": region == "out_of_region",
            "before_cutoff": when == "before_cutoff",
        }
        expected = tuple(reason for reason in SPEC_ORDER if failed[reason])
        got = rule.reasons(kind, audience, post_deleted, account, times[when])
        assert got == expected, (kind, audience, post_deleted, account, when)
        checked += 1
    assert checked == 3456


def test_no_account_state_at_all() -> None:
    rule = Rule(DEFAULT_POLICY)
    assert rule.reasons("post", "public", False, None, parse_time(CREATED)) == (
        "age_unknown", "region_unknown",
    )
    cut = Rule(Policy(not_before="2030-01-01T00:00:00Z"))
    assert cut.reasons("message", "private", True, None, parse_time(CREATED)) == (
        "private_conversation", "not_public", "post_deleted",
        "age_unknown", "region_unknown", "before_cutoff",
    )


# -- each reason through the engine ------------------------------------------------


def reasons_for(*setup, policy: Policy = DEFAULT_POLICY, **post_fields) -> tuple[set[str], tuple]:
    r = run(*setup, post("p1", "a1", **post_fields), policy=policy)
    return r.ids, r.reasons_of("p1")


QUARANTINE = msg("objections", b"{not json", key="a1")


@pytest.mark.parametrize(
    ("setup", "post_fields", "policy", "reasons"),
    [
        ([profile("a1")], {}, DEFAULT_POLICY, ()),
        ([profile("a1")], {"kind": "comment"}, DEFAULT_POLICY, ()),
        ([profile("a1")], {"kind": "caption"}, DEFAULT_POLICY, ()),
        ([profile("a1")], {"kind": "message"}, DEFAULT_POLICY, ("private_conversation",)),
        ([profile("a1")], {"audience": "friends"}, DEFAULT_POLICY, ("not_public",)),
        ([profile("a1")], {"audience": "private"}, DEFAULT_POLICY, ("not_public",)),
        ([profile("a1"), objection("a1")], {}, DEFAULT_POLICY, ("objected",)),
        ([profile("a1"), QUARANTINE], {}, DEFAULT_POLICY, ("quarantined",)),
        ([profile("a1", birth=None)], {}, DEFAULT_POLICY, ("age_unknown",)),
        ([profile("a1", birth=CHILD)], {}, DEFAULT_POLICY, ("minor",)),
        ([profile("a1", country=None)], {}, DEFAULT_POLICY, ("region_unknown",)),
        ([profile("a1", country="US")], {}, DEFAULT_POLICY, ("out_of_region",)),
        ([profile("a1", country="CH")], {}, DEFAULT_POLICY, ("out_of_region",)),
        ([profile("a1", country="NO")], {}, DEFAULT_POLICY, ()),
        ([profile("a1", country="IS")], {}, DEFAULT_POLICY, ()),
        ([profile("a1", country="LI")], {}, DEFAULT_POLICY, ()),
        ([profile("a1")], {"created_at": "2024-12-31T23:59:59Z"},
         Policy(not_before="2025-01-01T00:00:00Z"), ("before_cutoff",)),
        ([profile("a1")], {"created_at": "2025-01-01T00:00:00Z"},
         Policy(not_before="2025-01-01T00:00:00Z"), ()),  # equal is not earlier
        ([profile("a1")], {"created_at": "2025-01-01T00:30:00+01:00"},
         Policy(not_before="2025-01-01T00:00:00Z"), ("before_cutoff",)),
        ([profile("a1")], {"created_at": "2024-12-31T23:59:59.9999999Z"},
         Policy(not_before="2025-01-01T00:00:00Z"), ("before_cutoff",)),
        ([profile("a1")], {"created_at": "2025-01-01T00:00:00Z"},
         Policy(not_before="2025-01-01T00:00:00.000001Z"), ("before_cutoff",)),
        ([], {}, DEFAULT_POLICY, ("age_unknown", "region_unknown")),  # no profile at all
        ([objection("a1", filed=False)], {}, DEFAULT_POLICY, ("age_unknown", "region_unknown")),
        ([profile("a1", birth=None, country=None)], {}, DEFAULT_POLICY,
         ("age_unknown", "region_unknown")),
        ([profile("a1", birth=CHILD, country="US")], {}, DEFAULT_POLICY,
         ("minor", "out_of_region")),
        ([], {"kind": "message", "audience": "friends"},
         Policy(not_before="2030-01-01T00:00:00Z"),
         ("private_conversation", "not_public", "age_unknown", "region_unknown", "before_cutoff")),
        ([profile("a1", birth=CHILD, country="US"), objection("a1"), QUARANTINE],
         {"kind": "message", "audience": "private", "created_at": "2024-06-01T00:00:00Z"},
         Policy(not_before="2025-01-01T00:00:00Z"),
         ("private_conversation", "not_public", "objected", "quarantined", "minor",
          "out_of_region", "before_cutoff")),
    ],
)
def test_reasons_through_the_engine(
    setup: list, post_fields: dict, policy: Policy, reasons: tuple[str, ...]
) -> None:
    ids, got = reasons_for(*setup, policy=policy, **post_fields)
    assert got == reasons
    assert ids == (set() if reasons else {"p1"})


def test_post_deleted_and_account_deleted_through_the_engine() -> None:
    r = run(profile("a1"), delete_post("p1", "a1"), post("p1", "a1"))
    assert (r.ids, r.audits[-1].outcome, r.reasons_of("p1")) == (
        set(), "ignored", ("post_deleted",),
    )
    r = run(profile("a1"), delete_account("a1"), post("p1", "a1"))
    assert (r.ids, r.audits[-1].outcome, r.reasons_of("p1")) == (
        set(), "ignored", ("account_deleted",),
    )


# -- per-country minimum ages and custom regions ------------------------------------

SEVENTEEN = "2008-01-01"  # 17 at CREATED
DE16 = Policy(min_age_by_country={"DE": 16})


@pytest.mark.parametrize(
    ("policy", "birth", "country", "reasons"),
    [
        (DE16, SEVENTEEN, "DE", ()),
        (DE16, SEVENTEEN, "FR", ("minor",)),  # the default 18 elsewhere
        (DE16, SEVENTEEN, None, ("minor", "region_unknown")),  # no country: the default
        (DE16, "2009-06-01", "DE", ()),  # 16 exactly at 00:00 UTC that day
        (DE16, "2009-06-02", "DE", ("minor",)),
        (Policy(min_age=16), SEVENTEEN, "FR", ()),
        (Policy(min_age=16), SEVENTEEN, None, ("region_unknown",)),
        (Policy(min_age=16, min_age_by_country={"FR": 21}), "2005-01-01", "FR", ("minor",)),
        (Policy(min_age=16, min_age_by_country={"FR": 21}), "2005-01-01", "DE", ()),
        (Policy(min_age_by_country={"US": 13}), SEVENTEEN, "US", ("out_of_region",)),
        (Policy(min_age_by_country={"US": 21}), SEVENTEEN, "US", ("minor", "out_of_region")),
        (Policy(regions=("DE",)), ADULT, "DE", ()),
        (Policy(regions=("DE",)), ADULT, "FR", ("out_of_region",)),
        (Policy(regions=("US", "DE")), ADULT, "US", ()),
        (Policy(regions=("US", "DE")), ADULT, "NO", ("out_of_region",)),
        (Policy(regions=()), ADULT, "DE", ("out_of_region",)),
        (Policy(regions=("DE",)), ADULT, None, ("region_unknown",)),
    ],
)
def test_policy_ages_and_regions(
    policy: Policy, birth: str, country: str | None, reasons: tuple[str, ...]
) -> None:
    ids, got = reasons_for(profile("a1", birth=birth, country=country), policy=policy,
                           created_at=CREATED)
    assert got == reasons
    assert ids == (set() if reasons else {"p1"})


# -- age boundaries ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("birth", "created_at", "minor"),
    [
        # 18 on 2025-06-01: from 00:00 UTC that day
        ("2007-06-01", "2025-06-01T00:00:00Z", False),
        ("2007-06-01", "2025-05-31T23:59:59.999999Z", True),
        ("2007-06-01", "2025-05-31T23:59:59.9999999Z", True),  # truncated, not rounded up
        ("2007-06-01", "2025-06-01T00:00:00.0000001Z", False),
        ("2007-06-01", "2025-06-01T01:00:00+02:00", True),  # 2025-05-31T23:00Z
        ("2007-06-01", "2025-06-01T02:00:00+02:00", False),  # 00:00Z exactly
        ("2007-06-01", "2025-05-31T23:00:00-01:00", False),  # 2025-06-01T00:00Z
        ("2007-06-01", "2025-05-31T22:59:59-01:00", True),
        ("2007-06-01", "2025-06-01T00:00:00-00:00", False),
        ("2007-03-01", "2025-03-01T01:00:00+02:00", True),  # 2025-02-28T23:00Z
        ("2007-03-01", "2025-03-01T00:00:00Z", False),
        # 17 years 364 days
        ("2007-06-02", "2025-06-01T23:59:59Z", True),
        ("2007-06-02", "2025-06-01T12:00:00Z", True),
        ("2007-01-01", "2024-12-31T23:59:59Z", True),
        ("2007-01-01", "2025-01-01T00:00:00Z", False),
        # born 29 February: 1 March in a common year
        ("2004-02-29", "2022-02-28T23:59:59.999999Z", True),
        ("2004-02-29", "2022-03-01T00:00:00Z", False),
        ("2000-02-29", "2018-03-01T00:00:00Z", False),
        ("2000-02-29", "2018-02-28T12:00:00Z", True),
        ("2007-02-28", "2025-02-28T00:00:00Z", False),
    ],
)
def test_age_boundary(birth: str, created_at: str, minor: bool) -> None:
    ids, got = reasons_for(profile("a1", birth=birth), created_at=created_at)
    assert got == (("minor",) if minor else ())
    assert ids == (set() if minor else {"p1"})


@pytest.mark.parametrize(
    ("policy", "created_at", "minor"),
    [
        # 16 in 2024, a leap year: 29 February
        (DE16, "2024-02-28T23:59:59.999999Z", True),
        (DE16, "2024-02-29T00:00:00Z", False),
        (DE16, "2024-02-29T01:00:00+02:00", True),  # 2024-02-28T23:00Z
        # 18 in 2026, a common year: 1 March
        (DEFAULT_POLICY, "2026-02-28T23:59:59.999999Z", True),
        (DEFAULT_POLICY, "2026-03-01T00:00:00Z", False),
        (DEFAULT_POLICY, "2026-03-01T01:00:00+02:00", True),  # 2026-02-28T23:00Z
    ],
)
def test_born_on_29_february(policy: Policy, created_at: str, minor: bool) -> None:
    r = run(
        profile("a1", birth="2008-02-29"),
        post("p1", "a1", "2026-05-01T00:00:00Z", created_at=created_at),
        policy=policy,
        now="2026-06-01T00:00:00Z",
    )
    assert r.reasons_of("p1") == (("minor",) if minor else ())
    assert r.ids == (set() if minor else {"p1"})


def test_the_age_is_judged_at_created_at_not_at_ts() -> None:
    # an adult now, a minor when the content was made
    r = run(profile("a1", birth="2007-06-01"),
            post("p1", "a1", "2025-12-01T00:00:00Z", created_at="2025-05-01T00:00:00Z"))
    assert (r.ids, r.reasons_of("p1")) == (set(), ("minor",))
    # a minor at ts is impossible for content made after coming of age; the reverse:
    r = run(profile("a1", birth="2007-06-01"),
            post("p2", "a1", "2025-05-01T00:00:00Z", created_at="2025-06-01T00:00:00Z"))
    assert (r.ids, r.reasons_of("p2")) == ({"p2"}, ())
