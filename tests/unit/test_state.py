"""The pure state transitions of SPEC.md, "State, per account and per post"."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.core.state import (
    NEW_ACCOUNT,
    AccountState,
    PostState,
    apply_version,
    delete_account,
    delete_post,
    file_objection,
    quarantine,
    upsert_profile,
)

FILED, WITHDRAWN = True, False
D1990, D2000 = 726_468, 730_120  # date ordinals of 1990-01-01 and 2000-01-01

# -- objections ----------------------------------------------------------------


def objections(*events: tuple[int, bool], start: AccountState = NEW_ACCOUNT) -> AccountState:
    state = start
    for ts, filed in events:
        state = file_objection(state, ts, filed)
    return state


@pytest.mark.parametrize(
    ("events", "objected", "decided_at"),
    [
        ((), False, None),
        (((10, FILED),), True, 10),
        (((10, WITHDRAWN),), False, 10),
        (((10, FILED), (20, WITHDRAWN)), False, 20),  # latest by ts decides
        (((20, WITHDRAWN), (10, FILED)), False, 20),  # stale filed does nothing
        (((10, WITHDRAWN), (20, FILED)), True, 20),
        (((20, FILED), (10, WITHDRAWN)), True, 20),  # stale withdrawn does nothing
        (((10, FILED), (10, WITHDRAWN)), True, 10),  # tie: filed wins ...
        (((10, WITHDRAWN), (10, FILED)), True, 10),  # ... in both arrival orders
        (((10, FILED), (10, WITHDRAWN), (10, WITHDRAWN)), True, 10),
        (((10, WITHDRAWN), (10, FILED), (10, WITHDRAWN)), True, 10),
        (((10, FILED), (20, WITHDRAWN), (15, FILED)), False, 20),
        (((10, FILED), (20, WITHDRAWN), (20, FILED)), True, 20),
        (((30, FILED), (20, WITHDRAWN), (25, WITHDRAWN), (10, WITHDRAWN)), True, 30),
    ],
)
def test_objection(
    events: tuple[tuple[int, bool], ...], objected: bool, decided_at: int | None
) -> None:
    state = objections(*events)
    assert state.objected is objected
    assert state.objection_ts == decided_at


@pytest.mark.parametrize("filed", [FILED, WITHDRAWN])
def test_objection_redelivery_changes_nothing(filed: bool) -> None:
    once = objections((10, filed))
    assert file_objection(once, 10, filed) == once


@given(st.lists(st.tuples(st.integers(0, 5), st.booleans()), min_size=1, max_size=8))
def test_objection_is_order_independent(events: list[tuple[int, bool]]) -> None:
    """The latest ts decides and filed wins ties, so any arrival order agrees."""
    latest = max(ts for ts, _ in events)
    expected = any(filed for ts, filed in events if ts == latest)
    for order in (events, list(reversed(events)), sorted(events)):
        state = objections(*order)
        assert (state.objected, state.objection_ts) == (expected, latest)


# -- profiles ------------------------------------------------------------------


def profiles(*events: tuple[int, int | None, str | None]) -> AccountState:
    state = NEW_ACCOUNT
    for ts, birth, country in events:
        state = upsert_profile(state, ts, birth, country)
    return state


@pytest.mark.parametrize(
    ("events", "birth", "country", "decided_at"),
    [
        ((), None, None, None),
        (((10, D1990, "DE"),), D1990, "DE", 10),
        (((10, None, None),), None, None, 10),
        (((10, D1990, "DE"), (20, D2000, "FR")), D2000, "FR", 20),  # greatest ts
        (((20, D2000, "FR"), (10, D1990, "DE")), D2000, "FR", 20),  # stale ignored
        (((10, D1990, "DE"), (20, None, "DE")), None, "DE", 20),  # null birth: unknown again
        (((10, D1990, "DE"), (20, D1990, None)), D1990, None, 20),
        (((10, D1990, "DE"), (10, D1990, "DE")), D1990, "DE", 10),  # redelivery
        (((10, D1990, "DE"), (10, D2000, "DE")), None, None, 10),  # equal ts, other birth
        (((10, D1990, "DE"), (10, D1990, "FR")), None, None, 10),  # equal ts, other country
        (((10, D1990, "DE"), (10, None, "DE")), None, None, 10),
        (((10, None, None), (10, D1990, "DE")), None, None, 10),
        # the conflict lasts until a greater ts ...
        (((10, D1990, "DE"), (10, D2000, "DE"), (10, D1990, "DE")), None, None, 10),
        (((10, D1990, "DE"), (10, D2000, "DE"), (5, D1990, "DE")), None, None, 10),
        # ... and a greater ts ends it
        (((10, D1990, "DE"), (10, D2000, "DE"), (11, D1990, "DE")), D1990, "DE", 11),
    ],
)
def test_profile(
    events: tuple[tuple[int, int | None, str | None], ...],
    birth: int | None,
    country: str | None,
    decided_at: int | None,
) -> None:
    state = profiles(*events)
    assert (state.birth_date, state.country, state.profile_ts) == (birth, country, decided_at)


@given(
    st.lists(
        st.tuples(
            st.integers(0, 4), st.sampled_from([None, D1990, D2000]), st.sampled_from([None, "DE"])
        ),
        min_size=1,
        max_size=8,
    )
)
def test_profile_is_order_independent(events: list[tuple[int, int | None, str | None]]) -> None:
    """The greatest ts decides; differing profiles at that ts make both unknown."""
    latest = max(ts for ts, _, _ in events)
    at_latest = {(birth, country) for ts, birth, country in events if ts == latest}
    expected = at_latest.pop() if len(at_latest) == 1 else (None, None)
    for order in (events, list(reversed(events)), sorted(events, key=repr)):
        state = profiles(*order)
        assert (state.birth_date, state.country, state.profile_ts) == (*expected, latest)


def test_profile_redelivery_returns_an_equal_state() -> None:
    once = profiles((10, D1990, "DE"))
    assert upsert_profile(once, 10, D1990, "DE") == once


def test_profile_does_not_touch_the_objection() -> None:
    objected = objections((10, FILED))
    assert upsert_profile(objected, 20, D1990, "DE") == replace(
        objected, profile_ts=20, birth_date=D1990, country="DE"
    )
    assert file_objection(profiles((10, D1990, "DE")), 5, FILED).birth_date == D1990


# -- final deletions and quarantine ----------------------------------------------


def test_delete_account_is_final_and_keeps_the_rest() -> None:
    state = profiles((10, D1990, "DE"))
    deleted = delete_account(state)
    assert deleted == replace(state, deleted=True)
    assert delete_account(deleted) == deleted


@pytest.mark.parametrize(
    ("topics", "then", "left"),
    [
        (("objections",), "objection", frozenset()),
        (("objections",), "profile", frozenset({"objections"})),
        (("accounts",), "profile", frozenset()),
        (("accounts",), "objection", frozenset({"accounts"})),
        (("accounts", "objections"), "profile", frozenset({"objections"})),
        (("accounts", "objections"), "objection", frozenset({"accounts"})),
    ],
)
def test_quarantine_is_lifted_by_any_valid_event_of_that_topic(
    topics: tuple[str, ...], then: str, left: frozenset[str]
) -> None:
    # decided at ts 100 first, so the event that follows (ts 1) is stale
    state = file_objection(upsert_profile(NEW_ACCOUNT, 100, D1990, "DE"), 100, FILED)
    for topic in topics:
        state = quarantine(state, topic)
    assert state.quarantined
    after = (
        file_objection(state, 1, WITHDRAWN)
        if then == "objection"
        else upsert_profile(state, 1, None, None)
    )
    assert after.quarantined_by == left
    assert after.quarantined is bool(left)
    # a stale event lifts the quarantine but does not decide anything else
    assert (after.objected, after.objection_ts) == (True, 100)
    assert (after.birth_date, after.country, after.profile_ts) == (D1990, "DE", 100)


# -- post versions ---------------------------------------------------------------


@pytest.mark.parametrize(
    # stored (version_ts, created_at); incoming (ts, created_at, eligible);
    # expected (replaced, version_ts, created_at)
    ("stored", "incoming", "expected"),
    [
        (None, (10, 500, True), (True, 10, 500)),
        (None, (10, 500, False), (True, 10, 500)),
        ((10, 500), (20, 600, True), (True, 20, 500)),  # newer replaces, earliest kept
        ((10, 500), (20, 400, True), (True, 20, 400)),
        ((10, 500), (20, 600, False), (True, 20, 500)),
        ((20, 500), (10, 600, True), (False, 20, 500)),  # stale
        ((20, 500), (10, 400, True), (False, 20, 400)),  # stale, yet its created_at counts
        ((20, 500), (10, 400, False), (False, 20, 400)),
        ((10, 500), (10, 500, True), (False, 10, 500)),  # equal ts, eligible: no
        ((10, 500), (10, 500, False), (True, 10, 500)),  # equal ts, not eligible: yes
        ((10, 500), (10, 400, True), (False, 10, 400)),
        ((10, 500), (10, 600, False), (True, 10, 500)),
    ],
)
def test_apply_version(
    stored: tuple[int, int] | None,
    incoming: tuple[int, int, bool],
    expected: tuple[bool, int, int],
) -> None:
    state = None if stored is None else PostState("a1", *stored)
    result = apply_version(state, "a1", *incoming)
    assert (result.replaced, result.state.version_ts, result.state.created_at) == expected
    assert result.state.owner == "a1"
    assert result.state.deleted is False


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 9), st.booleans()), min_size=1))
def test_apply_version_keeps_the_greatest_ts_and_the_earliest_created_at(
    versions: list[tuple[int, int, bool]],
) -> None:
    state: PostState | None = None
    for ts, created_at, eligible in versions:
        state = apply_version(state, "a1", ts, created_at, eligible).state
    assert state is not None
    assert state.version_ts == max(ts for ts, _, _ in versions)
    assert state.created_at == min(created_at for _, created_at, _ in versions)


def test_delete_post() -> None:
    assert delete_post(None, "a1") == PostState("a1", None, None, deleted=True)
    stored = PostState("a1", 10, 500)
    assert delete_post(stored, "a1") == PostState("a1", 10, 500, deleted=True)
