"""Per-account and per-post eligibility facts, and their transitions (SPEC.md, "State").

Pure: frozen values in, frozen values out. Whether an event changes anything
is answered here; what to publish or retract is the engine's business.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final, Protocol

QUARANTINE_TOPICS: Final = ("objections", "accounts")


@dataclass(frozen=True, slots=True)
class AccountState:
    """What the rule needs to know of an account. `None` means unknown."""

    objection_ts: int | None = None  # ts of the deciding objection.* event
    objected: bool = False  # that event is objection.filed
    profile_ts: int | None = None  # ts of the deciding account.upserted
    birth_date: int | None = None  # date ordinal
    country: str | None = None
    deleted: bool = False  # account.deleted applied: final
    quarantined_by: frozenset[str] = frozenset()  # topics whose dead letter quarantined it

    @property
    def quarantined(self) -> bool:
        return bool(self.quarantined_by)


@dataclass(frozen=True, slots=True)
class PostState:
    owner: str  # account_id of the post's first applied event
    version_ts: int | None = None  # ts of the stored version; None: no version yet
    created_at: int | None = None  # earliest created_at among applied versions
    deleted: bool = False  # post.deleted applied: final


NEW_ACCOUNT: Final = AccountState()


def file_objection(state: AccountState, ts: int, filed: bool) -> AccountState:
    """The latest objection event by `ts` decides; on a tie `filed` wins.

    Any valid objection event lifts a quarantine set by a dead letter on
    `objections`, even a stale one."""
    lifted = state.quarantined_by - {"objections"}
    newer = state.objection_ts is None or ts > state.objection_ts
    tie_won = ts == state.objection_ts and filed and not state.objected
    if newer or tie_won:
        return replace(state, objection_ts=ts, objected=filed, quarantined_by=lifted)
    return replace(state, quarantined_by=lifted)


def upsert_profile(
    state: AccountState, ts: int, birth_date: int | None, country: str | None
) -> AccountState:
    """The profile with the greatest `ts` decides; two different ones with the
    same `ts` make both fields unknown until a greater `ts` arrives."""
    lifted = state.quarantined_by - {"accounts"}
    if state.profile_ts is None or ts > state.profile_ts:
        return replace(
            state, profile_ts=ts, birth_date=birth_date, country=country, quarantined_by=lifted
        )
    if ts == state.profile_ts and (birth_date, country) != (state.birth_date, state.country):
        return replace(state, birth_date=None, country=None, quarantined_by=lifted)
    return replace(state, quarantined_by=lifted)


def delete_account(state: AccountState) -> AccountState:
    return replace(state, deleted=True)


def quarantine(state: AccountState, topic: str) -> AccountState:
    return replace(state, quarantined_by=state.quarantined_by | {topic})


@dataclass(frozen=True, slots=True)
class VersionResult:
    state: PostState
    replaced: bool  # the event became the stored version


def apply_version(
    state: PostState | None, owner: str, ts: int, created_at: int, eligible: bool
) -> VersionResult:
    """Store a post version if it is the latest by `ts`; an equal `ts` replaces
    the stored version only if the newcomer is not eligible. The earliest
    `created_at` of every applied version is kept, replaced or not."""
    if state is None:
        return VersionResult(PostState(owner, ts, created_at), replaced=True)
    earliest = created_at if state.created_at is None else min(state.created_at, created_at)
    current = state.version_ts
    if current is None or ts > current or (ts == current and not eligible):
        return VersionResult(replace(state, version_ts=ts, created_at=earliest), replaced=True)
    return VersionResult(replace(state, created_at=earliest), replaced=False)


def delete_post(state: PostState | None, owner: str) -> PostState:
    if state is None:
        return PostState(owner, deleted=True)
    return replace(state, deleted=True)


class StateAccess(Protocol):
    """The state table as the engine sees it during one batch.

    The view index maps an account to its posts in the view, with the
    `created_at` each was published under, so account-level changes can be
    re-evaluated without reading the posts themselves."""

    def get_account(self, account_id: str) -> AccountState | None: ...

    def put_account(self, account_id: str, state: AccountState) -> None: ...

    def get_post(self, post_id: str) -> PostState | None: ...

    def put_post(self, post_id: str, state: PostState) -> None: ...

    def view_get(self, account_id: str, post_id: str) -> int | None: ...

    def view_put(self, account_id: str, post_id: str, created_at: int) -> None: ...

    def view_del(self, account_id: str, post_id: str) -> None: ...

    def view_items(self, account_id: str) -> list[tuple[str, int]]: ...
