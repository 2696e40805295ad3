"""The input events of SPEC.md as typed structs: the one source of truth.

msgspec validates raw JSON against these while it decodes, and the JSON
Schemas in `topics/schemas/` are generated from them (`eligibility contract
generate`; a test fails when the two drift apart).
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

from stream.core.times import DATE_PATTERN, TIME_PATTERN

MAX_ID_CHARS: Final = 256

Id = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=MAX_ID_CHARS, description="a non-empty id"),
]
Time = Annotated[
    str,
    msgspec.Meta(pattern=TIME_PATTERN, description="RFC 3339 time with a zone"),
]
Date = Annotated[
    str,
    msgspec.Meta(
        pattern=DATE_PATTERN,
        min_length=10,
        max_length=10,
        description="YYYY-MM-DD",
        extra_json_schema={"format": "date"},
    ),
]
Country = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[A-Z]{2}$(?!\n)",
        min_length=2,
        max_length=2,
        description="ISO 3166-1 alpha-2",
    ),
]
Kind = Literal["post", "comment", "caption", "message"]
Audience = Literal["public", "friends", "private"]


class PostCreated(msgspec.Struct, frozen=True, tag_field="type", tag="post.created"):
    """A new post; carries the whole version."""

    event_id: Id
    ts: Time
    post_id: Id
    account_id: Id
    created_at: Time
    kind: Kind
    audience: Audience
    text: str
    lang: str | None = None
    surface: str | None = None


class PostUpdated(PostCreated, frozen=True, tag="post.updated"):
    """A new version of a post; carries the whole version."""


class PostDeleted(msgspec.Struct, frozen=True, tag_field="type", tag="post.deleted"):
    event_id: Id
    ts: Time
    post_id: Id
    account_id: Id


class ObjectionFiled(msgspec.Struct, frozen=True, tag_field="type", tag="objection.filed"):
    event_id: Id
    ts: Time
    account_id: Id
    channel: str | None = None


class ObjectionWithdrawn(ObjectionFiled, frozen=True, tag="objection.withdrawn"):
    pass


class AccountUpserted(msgspec.Struct, frozen=True, tag_field="type", tag="account.upserted"):
    """A profile; `birth_date` and `country` must be present, null means unknown."""

    event_id: Id
    ts: Time
    account_id: Id
    birth_date: Date | None
    country: Country | None


class AccountDeleted(msgspec.Struct, frozen=True, tag_field="type", tag="account.deleted"):
    event_id: Id
    ts: Time
    account_id: Id


PostEvent = PostCreated | PostUpdated | PostDeleted
ObjectionEvent = ObjectionFiled | ObjectionWithdrawn
AccountEvent = AccountUpserted | AccountDeleted
InputEvent = PostEvent | ObjectionEvent | AccountEvent

# The input topics by their contract name, with the events each may carry.
TOPIC_EVENTS: Final[dict[str, tuple[type[msgspec.Struct], ...]]] = {
    "posts": (PostCreated, PostUpdated, PostDeleted),
    "objections": (ObjectionFiled, ObjectionWithdrawn),
    "accounts": (AccountUpserted, AccountDeleted),
}
INPUT_TOPICS: Final = tuple(TOPIC_EVENTS)
