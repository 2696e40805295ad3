"""Builders of input messages and a one-call run of the core, for the unit tests."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from stream.core.decode import DeadLetter, Message
from stream.core.engine import Engine, Publish
from stream.core.policy import DEFAULT_POLICY, Policy
from stream.core.pseudonym import Pseudonymizer
from stream.core.records import AuditRecord, TrainingRecord
from stream.core.times import parse_time
from stream.store.memory import MemoryStore

NOW = "2026-01-01T00:00:00Z"
_ids = itertools.count(1)


class FixedClock:
    def __init__(self, now: str = NOW) -> None:
        self.now = parse_time(now)

    def now_us(self) -> int:
        return self.now


def _event(**fields: Any) -> dict[str, Any]:
    fields.setdefault("event_id", f"e-{next(_ids)}")
    return {k: v for k, v in fields.items() if v is not _ABSENT}


_ABSENT: Any = object()
ABSENT = _ABSENT  # pass as a field value to leave the field out


def msg(topic: str, payload: dict[str, Any] | bytes | str | None, key: Any = _ABSENT,
        kafka: bool = False) -> Message:
    """A message; the key defaults to the payload's account_id."""
    if isinstance(payload, dict):
        if key is _ABSENT:
            key = payload.get("account_id")
        value: bytes | str | None = orjson.dumps(payload)
    else:
        value = payload
        key = None if key is _ABSENT else key
    return Message(topic=topic, key=key, value=value, null_key_ok=not kafka)


def post(post_id: str, account: str, ts: str = "2025-06-01T10:00:00Z", *,
         created_at: str | None = None, kind: str = "post", audience: str = "public",
         text: str = "hello", type: str = "post.created", **extra: Any) -> Message:
    return msg("posts", _event(type=type, ts=ts, post_id=post_id, account_id=account,
                               created_at=created_at or ts, kind=kind, audience=audience,
                               text=text, lang="en", surface="facebook", **extra))


def update(post_id: str, account: str, ts: str, **kw: Any) -> Message:
    return post(post_id, account, ts, type="post.updated", **kw)


def delete_post(post_id: str, account: str, ts: str = "2025-06-02T00:00:00Z") -> Message:
    return msg("posts", _event(type="post.deleted", ts=ts, post_id=post_id, account_id=account))


def objection(account: str, ts: str = "2025-06-01T12:00:00Z", filed: bool = True,
              channel: str | None = "in_app") -> Message:
    kind = "objection.filed" if filed else "objection.withdrawn"
    return msg("objections", _event(type=kind, ts=ts, account_id=account, channel=channel))


def profile(account: str, birth: str | None = "1990-01-01", country: str | None = "DE",
            ts: str = "2025-06-01T08:00:00Z") -> Message:
    return msg("accounts", _event(type="account.upserted", ts=ts, account_id=account,
                                  birth_date=birth, country=country))


def delete_account(account: str, ts: str = "2025-06-03T00:00:00Z") -> Message:
    return msg("accounts", _event(type="account.deleted", ts=ts, account_id=account))


@dataclass
class Run:
    """The result of applying messages with the in-memory store."""

    engine: Engine
    store: MemoryStore
    view: dict[str, TrainingRecord] = field(default_factory=dict)
    audits: list[AuditRecord] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)

    def apply(self, *messages: Message) -> Run:
        for message in messages:
            outcome = self.engine.apply(message, self.store)
            for change in outcome.changes:
                if isinstance(change, Publish):
                    self.view[change.post_id] = change.record
                else:
                    self.view.pop(change.post_id, None)
            self.audits.extend(outcome.audits)
            if outcome.dead_letter is not None:
                self.dead.append(outcome.dead_letter)
        return self

    @property
    def ids(self) -> set[str]:
        return set(self.view)

    def reasons_of(self, post_id: str) -> tuple[str, ...]:
        """Reasons of the last post-event audit of this post."""
        for audit in reversed(self.audits):
            if audit.record == "post" and audit.post_id == post_id:
                return audit.reasons
        raise AssertionError(f"no post audit for {post_id}")

    def dead_reasons(self) -> list[str]:
        return [d.reason.value for d in self.dead]


def run(*messages: Message, policy: Policy = DEFAULT_POLICY, now: str = NOW,
        store: MemoryStore | None = None) -> Run:
    engine = Engine(policy, Pseudonymizer.development(), FixedClock(now))
    return Run(engine, store or MemoryStore()).apply(*messages)


def run_all(messages: Iterable[Message], **kw: Any) -> Run:
    return run(*messages, **kw)
