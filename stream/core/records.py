"""The records the filter writes: training records and audit records (SPEC.md, "Output topics")."""

from __future__ import annotations

from typing import Literal

import msgspec

from stream.core.events import Country, Id, Kind


class TrainingRecord(msgspec.Struct, frozen=True):
    """The value of a `training-ready` message, keyed by `post_id`."""

    post_id: Id
    author: str  # keyed pseudonym of the account, never the raw id
    text: str
    lang: str | None
    kind: Kind
    surface: str | None
    country: Country  # the author's country when the record was published
    created_at: str  # the earliest created_at of the post, UTC
    policy: str  # policy version
    event_id: Id  # of the post version


class Source(msgspec.Struct, frozen=True, omit_defaults=True):
    """Where an input message came from: enough to rebuild the order of
    application. Event logs without Kafka coordinates give the line number."""

    topic: str
    partition: int
    offset: int
    line: int | None = None


AuditKind = Literal["post", "retraction", "account", "dead_letter"]
Outcome = Literal[
    "published",  # post version put in the view
    "excluded",  # post version not eligible
    "ignored",  # post, account or objection event after a final deletion
    "stale",  # post version older than the stored one, or an equal eligible one
    "retracted",  # a post taken out of the view
    "changed",  # account state changed
    "unchanged",  # account state already said so (e.g. a redelivery)
    "dead_letter",
]


class AuditRecord(msgspec.Struct, frozen=True, omit_defaults=True):
    """One decision. `source` is None only for a policy sweep at start."""

    record: AuditKind
    outcome: Outcome
    policy: str
    source: Source | None = None
    event_id: str | None = None
    event_type: str | None = None
    post_id: str | None = None
    author: str | None = None
    reasons: tuple[str, ...] = ()  # rule reasons, a retraction's cause, or the dead-letter reason
    detail: str | None = None  # dead letters: the error in words
    # The worker's order of application within the source's partition (the
    # audit topic is partitioned by post and author, so its own order is
    # lost); offline, the order of the audit file is the order.
    seq: int | None = None

    @property
    def key(self) -> str | None:
        return self.post_id if self.post_id is not None else self.author
