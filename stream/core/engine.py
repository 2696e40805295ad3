"""Applies input messages one at a time to the state and says what the view must do.

Inclusion is prospective, exclusion retroactive (SPEC.md): a post event may
publish the version it carries; any event may retract. The same engine runs
in the offline replay and in the worker; both hand it a `StateAccess`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Protocol

from stream.core.decode import DeadLetter, DeadReason, Decoded, Decoder, Message
from stream.core.events import (
    MAX_ID_CHARS,
    AccountDeleted,
    AccountUpserted,
    ObjectionFiled,
    PostCreated,
    PostDeleted,
)
from stream.core.policy import Policy
from stream.core.pseudonym import Pseudonymizer
from stream.core.records import AuditRecord, Source, TrainingRecord
from stream.core.rule import Reason, Rule
from stream.core.state import (
    NEW_ACCOUNT,
    QUARANTINE_TOPICS,
    AccountState,
    StateAccess,
    apply_version,
    delete_account,
    delete_post,
    file_objection,
    quarantine,
    upsert_profile,
)
from stream.core.times import format_time

# A post in the view whose earliest created_at moved back (a stale version
# carried an earlier one) is retracted: its record no longer says the truth,
# and without the stored version's text it cannot be rewritten.
CREATED_AT_CHANGED: Final = "created_at_changed"


class Clock(Protocol):
    def now_us(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Publish:
    post_id: str
    record: TrainingRecord


@dataclass(frozen=True, slots=True)
class Retract:
    post_id: str


ViewChange = Publish | Retract


@dataclass(slots=True)
class Outcome:
    """What applying one message asks of the outputs, in order."""

    changes: list[ViewChange] = field(default_factory=list)
    audits: list[AuditRecord] = field(default_factory=list)
    dead_letter: DeadLetter | None = None


@dataclass(frozen=True, slots=True)
class Footprint:
    """The state one message may touch, so a store can fetch it in one go.

    `views` are accounts whose whole view index is needed; `memberships` are
    (account, post) pairs whose view entry is. Posts named by a dead letter
    need the entry of their owner, known only once the post is read."""

    accounts: tuple[str, ...] = ()
    posts: tuple[str, ...] = ()
    views: tuple[str, ...] = ()
    memberships: tuple[tuple[str, str], ...] = ()


class Engine:
    def __init__(self, policy: Policy, pseudonyms: Pseudonymizer, clock: Clock) -> None:
        self.rule = Rule(policy)
        self.decoder = Decoder(policy)
        self._pseudonyms = pseudonyms
        self._clock = clock

    @property
    def policy_version(self) -> str:
        return self.rule.version

    def min_age_for(self, country: str | None) -> int:
        return self.rule.policy.min_age_for(country)

    def decode(self, message: Message) -> Decoded | DeadLetter:
        return self.decoder.decode(message, self._clock.now_us())

    def apply(self, message: Message, state: StateAccess) -> Outcome:
        return self.apply_decoded(message, self.decode(message), state)

    def apply_decoded(
        self, message: Message, decoded: Decoded | DeadLetter, state: StateAccess
    ) -> Outcome:
        source = Source(message.topic, message.partition, message.offset, message.line)
        out = Outcome()
        if isinstance(decoded, DeadLetter):
            self._dead_letter(source, decoded, state, out)
            return out
        event = decoded.event
        if isinstance(event, PostCreated):
            self._post_version(source, decoded, state, out)
        elif isinstance(event, PostDeleted):
            self._post_deleted(source, decoded, state, out)
        else:
            self._account_event(source, decoded, state, out)
        return out

    def sweep(self, state: StateAccess, accounts: Iterable[str]) -> Outcome:
        """Re-evaluate every post in the view under this engine's policy (a new
        policy at start): what fails is retracted; nothing is published."""
        out = Outcome()
        for account_id in accounts:
            account = state.get_account(account_id)
            self._reevaluate(None, account_id, account, state, out)
        return out

    # -- post events ------------------------------------------------------

    def _post_version(
        self, source: Source, decoded: Decoded, state: StateAccess, out: Outcome
    ) -> None:
        event = decoded.event
        assert isinstance(event, PostCreated) and decoded.created_at is not None
        post_id, account_id = event.post_id, event.account_id
        post = state.get_post(post_id)
        if post is not None and post.owner != account_id:
            self._owner_mismatch(source, post_id, state, out)
            return
        account = state.get_account(account_id)
        author = self._pseudonyms.author(account_id)
        if account is not None and account.deleted:
            self._audit_post(out, source, event, author, "ignored", (Reason.ACCOUNT_DELETED,))
            return
        if post is not None and post.deleted:
            self._audit_post(out, source, event, author, "ignored", (Reason.POST_DELETED,))
            return
        earliest = decoded.created_at
        if post is not None and post.created_at is not None:
            earliest = min(earliest, post.created_at)
        reasons = self.rule.reasons(event.kind, event.audience, False, account, earliest)
        result = apply_version(post, account_id, decoded.ts, decoded.created_at, not reasons)
        state.put_post(post_id, result.state)
        in_view = state.view_get(account_id, post_id)
        if result.replaced and not reasons:
            assert account is not None and account.country is not None
            record = TrainingRecord(
                post_id=post_id,
                author=author,
                text=event.text,
                lang=event.lang,
                kind=event.kind,
                surface=event.surface,
                country=account.country,
                created_at=format_time(earliest),
                policy=self.rule.version,
                event_id=event.event_id,
            )
            state.view_put(account_id, post_id, earliest)
            out.changes.append(Publish(post_id, record))
            self._audit_post(out, source, event, author, "published", ())
            return
        if result.replaced:
            self._audit_post(out, source, event, author, "excluded", reasons)
            if in_view is not None:
                self._retract(source, account_id, post_id, reasons, state, out)
            return
        self._audit_post(out, source, event, author, "stale", reasons)
        if in_view is not None and earliest < in_view:
            cause = self.rule.account_reasons(account, earliest) or (CREATED_AT_CHANGED,)
            self._retract(source, account_id, post_id, cause, state, out)

    def _post_deleted(
        self, source: Source, decoded: Decoded, state: StateAccess, out: Outcome
    ) -> None:
        event = decoded.event
        assert isinstance(event, PostDeleted)
        post_id, account_id = event.post_id, event.account_id
        post = state.get_post(post_id)
        if post is not None and post.owner != account_id:
            self._owner_mismatch(source, post_id, state, out)
            return
        account = state.get_account(account_id)
        author = self._pseudonyms.author(account_id)
        if account is not None and account.deleted:
            self._audit_post(out, source, event, author, "ignored", (Reason.ACCOUNT_DELETED,))
            return
        if post is not None and post.deleted:
            self._audit_post(out, source, event, author, "ignored", (Reason.POST_DELETED,))
            return
        state.put_post(post_id, delete_post(post, account_id))
        self._audit_post(out, source, event, author, "excluded", (Reason.POST_DELETED,))
        if state.view_get(account_id, post_id) is not None:
            self._retract(source, account_id, post_id, (Reason.POST_DELETED,), state, out)

    def _owner_mismatch(
        self, source: Source, post_id: str, state: StateAccess, out: Outcome
    ) -> None:
        dead = DeadLetter(
            DeadReason.OWNER_MISMATCH,
            "the post belongs to another account than this event's account_id",
            posts=(post_id,),
        )
        self._dead_letter(source, dead, state, out)

    # -- account and objection events ----------------------------------------

    def _account_event(
        self, source: Source, decoded: Decoded, state: StateAccess, out: Outcome
    ) -> None:
        event = decoded.event
        account_id = event.account_id
        account = state.get_account(account_id) or NEW_ACCOUNT
        author = self._pseudonyms.author(account_id)
        if account.deleted:
            self._audit_account(out, source, event.event_id, event_type(event), author, "ignored")
            return
        if isinstance(event, ObjectionFiled):
            filed = event_type(event) == "objection.filed"
            changed = file_objection(account, decoded.ts, filed)
        elif isinstance(event, AccountUpserted):
            changed = upsert_profile(account, decoded.ts, decoded.birth_date, event.country)
        else:
            assert isinstance(event, AccountDeleted)
            changed = delete_account(account)
        if changed == account:
            self._audit_account(
                out, source, event.event_id, event_type(event), author, "unchanged"
            )
            return
        state.put_account(account_id, changed)
        self._audit_account(out, source, event.event_id, event_type(event), author, "changed")
        self._reevaluate(source, account_id, changed, state, out)

    def _reevaluate(
        self,
        source: Source | None,
        account_id: str,
        account: AccountState | None,
        state: StateAccess,
        out: Outcome,
    ) -> None:
        """Retract the account's posts in the view that are no longer eligible.
        Posts in the view are public and not messages, so only the account's
        facts and the post's created_at can make them fail now."""
        for post_id, created_at in sorted(state.view_items(account_id)):
            reasons = self.rule.account_reasons(account, created_at)
            if reasons:
                self._retract(source, account_id, post_id, reasons, state, out)

    # -- dead letters ----------------------------------------------------------

    def _dead_letter(
        self, source: Source, dead: DeadLetter, state: StateAccess, out: Outcome
    ) -> None:
        out.dead_letter = dead
        first_account = dead.accounts[0] if dead.accounts else None
        out.audits.append(
            AuditRecord(
                record="dead_letter",
                outcome="dead_letter",
                policy=self.rule.version,
                source=source,
                # the audit key: a named id that cannot be a post's stays out of it
                post_id=next((p for p in dead.posts if len(p) <= MAX_ID_CHARS), None),
                author=None if first_account is None else self._pseudonyms.author(first_account),
                reasons=(dead.reason.value,),
                detail=dead.detail,
            )
        )
        self._retract_named(source, dead.posts, state, out)
        cause = (Reason.QUARANTINED,)
        for account_id in dead.accounts:
            account = state.get_account(account_id)
            if source.topic in QUARANTINE_TOPICS:
                account = quarantine(account or NEW_ACCOUNT, source.topic)
                state.put_account(account_id, account)
            for post_id, _ in sorted(state.view_items(account_id)):
                self._retract(source, account_id, post_id, cause, state, out)

    def retract_named(
        self, message: Message, post_ids: Iterable[str], state: StateAccess
    ) -> Outcome:
        """Posts a dead letter named where their owner's state is not written
        (the worker of another partition forwards them here)."""
        out = Outcome()
        source = Source(message.topic, message.partition, message.offset, message.line)
        self._retract_named(source, post_ids, state, out)
        return out

    def _retract_named(
        self, source: Source, post_ids: Iterable[str], state: StateAccess, out: Outcome
    ) -> None:
        for post_id in post_ids:
            post = state.get_post(post_id)
            if post is not None and state.view_get(post.owner, post_id) is not None:
                self._retract(source, post.owner, post_id, (Reason.QUARANTINED,), state, out)

    # -- outputs ---------------------------------------------------------------

    def _retract(
        self,
        source: Source | None,
        account_id: str,
        post_id: str,
        cause: tuple[str, ...],
        state: StateAccess,
        out: Outcome,
    ) -> None:
        state.view_del(account_id, post_id)
        out.changes.append(Retract(post_id))
        out.audits.append(
            AuditRecord(
                record="retraction",
                outcome="retracted",
                policy=self.rule.version,
                source=source,
                post_id=post_id,
                author=self._pseudonyms.author(account_id),
                reasons=tuple(cause),
            )
        )

    def _audit_post(
        self,
        out: Outcome,
        source: Source,
        event: PostCreated | PostDeleted,
        author: str,
        outcome: str,
        reasons: tuple[str, ...],
    ) -> None:
        out.audits.append(
            AuditRecord(
                record="post",
                outcome=outcome,  # type: ignore[arg-type]
                policy=self.rule.version,
                source=source,
                event_id=event.event_id,
                event_type=event_type(event),
                post_id=event.post_id,
                author=author,
                reasons=tuple(reasons),
            )
        )

    def _audit_account(
        self,
        out: Outcome,
        source: Source,
        event_id: str,
        type_: str,
        author: str,
        outcome: str,
    ) -> None:
        out.audits.append(
            AuditRecord(
                record="account",
                outcome=outcome,  # type: ignore[arg-type]
                policy=self.rule.version,
                source=source,
                event_id=event_id,
                event_type=type_,
                author=author,
            )
        )


def event_type(event: object) -> str:
    """The `type` tag of a decoded event."""
    return type(event).__struct_config__.tag  # type: ignore[attr-defined,no-any-return]


def footprint(decoded: Decoded | DeadLetter) -> Footprint:
    """What `Engine.apply_decoded` may read for this message (see `Footprint`)."""
    if isinstance(decoded, DeadLetter):
        return Footprint(accounts=decoded.accounts, posts=decoded.posts, views=decoded.accounts)
    event = decoded.event
    account_id = event.account_id
    if isinstance(event, PostCreated | PostDeleted):
        return Footprint(
            accounts=(account_id,),
            posts=(event.post_id,),
            memberships=((account_id, event.post_id),),
        )
    return Footprint(accounts=(account_id,), views=(account_id,))
