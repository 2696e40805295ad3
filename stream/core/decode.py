"""Raw input messages into typed events, or into dead letters that say what they name.

The fast path parses each value twice in C (orjson for the generic structure,
msgspec for the typed struct) and checks duplicates and depth with byte
counts; only suspicious values take the slow, exact path.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

import msgspec
import orjson

from stream.core.events import (
    TOPIC_EVENTS,
    AccountUpserted,
    InputEvent,
    PostCreated,
)
from stream.core.policy import Policy
from stream.core.times import BadTime, parse_date, parse_time_of_layout

MAX_DEPTH: Final = 64
MAX_DETAIL_CHARS: Final = 300


class DeadReason(StrEnum):
    """Why a message went to the dead letters."""

    TOMBSTONE = "tombstone"
    TOO_LARGE = "too_large"
    INVALID_JSON = "invalid_json"
    TOO_DEEP = "too_deep"
    NOT_OBJECT = "not_object"
    DUPLICATE_KEY = "duplicate_key"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    BAD_VALUE = "bad_value"
    BAD_ID = "bad_id"
    UNKNOWN_TYPE = "unknown_type"
    BAD_TIME = "bad_time"
    FUTURE_TIME = "future_time"
    KEY_MISSING = "key_missing"
    KEY_MISMATCH = "key_mismatch"
    OWNER_MISMATCH = "owner_mismatch"
    UNKNOWN_TOPIC = "unknown_topic"
    BAD_ENVELOPE = "bad_envelope"


class Message(msgspec.Struct, frozen=True):
    """One input message, from Kafka or from an event log line.

    `key` is None for a null key (or a key that is not UTF-8); `value` is None
    for a tombstone. On Kafka a null key is an error; in an event log it
    stands for the value's `account_id` (`null_key_ok`). A struct, not a
    dataclass: one is built per message, and a frozen dataclass is slow to build."""

    topic: str
    key: str | None
    value: bytes | str | None
    partition: int = 0
    offset: int = -1
    timestamp_ms: int | None = None
    null_key_ok: bool = False
    envelope_error: str | None = None  # an event-log line that is no message
    line: int | None = None  # in an event log


class Decoded(msgspec.Struct, frozen=True):
    """A valid event with its times as integers."""

    event: InputEvent
    ts: int
    created_at: int | None = None  # post versions
    birth_date: int | None = None  # profiles


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that cannot be applied, and what it still names (SPEC.md:
    a dead letter still excludes what it names)."""

    reason: DeadReason
    detail: str
    posts: tuple[str, ...] = ()
    accounts: tuple[str, ...] = ()


_FIELD = re.compile(r"at `\$\.([A-Za-z_]+)")
_TIME_FIELDS: Final = frozenset({"ts", "created_at"})
_ID_FIELDS: Final = frozenset({"event_id", "post_id", "account_id"})


class Decoder:
    """Validates messages against the contract and the policy's limits."""

    def __init__(self, policy: Policy) -> None:
        self._max_bytes = policy.max_message_bytes
        self._skew_us = policy.clock_skew_seconds * 1_000_000
        self._decoders = {
            topic: msgspec.json.Decoder(_union(types)) for topic, types in TOPIC_EVENTS.items()
        }

    def decode(self, message: Message, now_us: int) -> Decoded | DeadLetter:
        if message.envelope_error is not None:
            return DeadLetter(DeadReason.BAD_ENVELOPE, message.envelope_error)
        if message.topic not in self._decoders:
            return DeadLetter(DeadReason.UNKNOWN_TOPIC, f"not an input topic: {message.topic!r}")
        value = message.value
        if value is None:
            return self._dead(message, DeadReason.TOMBSTONE, "null value on an input topic")
        if len(value) * (4 if isinstance(value, str) else 1) > self._max_bytes and (
            _byte_size(value) > self._max_bytes
        ):
            size = _byte_size(value)
            return self._dead(
                message, DeadReason.TOO_LARGE, f"{size} bytes > limit {self._max_bytes}"
            )
        problem = _structure_problem(value)
        if problem is not None:
            return self._dead(message, *problem)
        try:
            event: InputEvent = self._decoders[message.topic].decode(value)
        except msgspec.ValidationError as exc:
            return self._dead(message, *_validation_reason(str(exc)))
        return self._check(message, event, now_us)

    def _check(self, message: Message, event: InputEvent, now_us: int) -> Decoded | DeadLetter:
        try:
            ts = parse_time_of_layout(event.ts)
            created_at = None
            if isinstance(event, PostCreated):
                created_at = parse_time_of_layout(event.created_at)
            birth = None
            if isinstance(event, AccountUpserted) and event.birth_date is not None:
                birth = parse_date(event.birth_date)
        except BadTime as exc:
            return self._dead(message, DeadReason.BAD_TIME, str(exc))
        limit = now_us + self._skew_us
        if ts > limit or (created_at is not None and created_at > limit):
            return self._dead(
                message, DeadReason.FUTURE_TIME, "ts or created_at beyond now + clock skew"
            )
        if message.key is None and not message.null_key_ok:
            return self._dead(message, DeadReason.KEY_MISSING, "null key on Kafka")
        if message.key is not None and message.key != event.account_id:
            return self._dead(message, DeadReason.KEY_MISMATCH, "key differs from account_id")
        return Decoded(event, ts, created_at, birth)

    def _dead(self, message: Message, reason: DeadReason, detail: str) -> DeadLetter:
        """A dead letter with what it names (SPEC.md, "Bad input")."""
        if len(detail) > MAX_DETAIL_CHARS:  # errors may quote the bad value
            detail = detail[: MAX_DETAIL_CHARS - 1] + "…"
        posts: tuple[str, ...] = ()
        lenient = None if message.value is None else _lenient_object(message.value)
        within_limits = reason not in (DeadReason.TOO_LARGE, DeadReason.TOO_DEEP)
        if message.topic == "posts" and lenient is not None and within_limits:
            posts = _string_values(lenient, "post_id")
        if posts:
            return DeadLetter(reason, detail, posts=posts)
        if message.key is not None:
            return DeadLetter(reason, detail, accounts=(message.key,))
        if message.null_key_ok and lenient is not None:
            return DeadLetter(reason, detail, accounts=_string_values(lenient, "account_id"))
        return DeadLetter(reason, detail)


def _union(types: tuple[type[msgspec.Struct], ...]) -> Any:
    union: Any = types[0]
    for more in types[1:]:
        union = union | more
    return union


def _byte_size(value: bytes | str) -> int:
    """Bytes of the message value; an event log writes invalid UTF-8 as lone
    surrogates (surrogateescape)."""
    if isinstance(value, bytes):
        return len(value)
    try:
        return len(value.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:
        return len(value.encode("utf-8", "surrogatepass"))


def _structure_problem(value: bytes | str) -> tuple[DeadReason, str] | None:
    """Parse errors, non-objects, excessive depth and repeated keys."""
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc):
            return DeadReason.TOO_DEEP, f"nested deeper than {MAX_DEPTH} levels"
        # orjson also refuses valid JSON it cannot represent (1e400): ask the
        # standard library, which stays strict on NaN, BOMs and lone surrogates.
        strict = _strict_json(value)
        if strict is None:
            return DeadReason.INVALID_JSON, f"not valid UTF-8 JSON: {exc}"
        parsed = strict
    if type(parsed) is not dict:
        return DeadReason.NOT_OBJECT, f"JSON {type(parsed).__name__}, not an object"
    raw = value.encode("utf-8") if isinstance(value, str) else value
    if raw.count(b"{") + raw.count(b"[") > MAX_DEPTH and _depth(parsed) > MAX_DEPTH:
        return DeadReason.TOO_DEEP, f"nested deeper than {MAX_DEPTH} levels"
    if _has_duplicate_key(raw, parsed):
        return DeadReason.DUPLICATE_KEY, "an object repeats a key"
    return None


def _strict_json(value: bytes | str) -> Any:
    """The standard library's parse, or None where the value is not valid UTF-8 JSON."""
    try:
        text = value if isinstance(value, str) else value.decode("utf-8")
        text.encode("utf-8")  # lone surrogates
        if text.startswith("\ufeff"):
            return None
        parsed = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return None
    return None if _has_lone_surrogate(parsed) else parsed


def _depth(value: object) -> int:
    """Nesting levels of arrays and objects; iterative, as inputs may be deep."""
    deepest = 0
    todo: list[tuple[object, int]] = [(value, 1)]
    while todo:
        item, level = todo.pop()
        children = item.values() if isinstance(item, dict) else item
        deepest = max(deepest, level)
        todo.extend((c, level + 1) for c in children if isinstance(c, dict | list))  # type: ignore[attr-defined]
    return deepest


def _has_duplicate_key(raw: bytes, parsed: dict[str, Any]) -> bool:
    """Whether the source repeats a key that the parsed dict kept once.

    Outside strings every `:` of compact or pretty JSON follows a key, and
    orjson writes each kept key once and never escapes `:`. So the source has
    more colons than the re-serialised value exactly when keys (with their
    values) were dropped, unless an escape (`\\u003a`) wrote a colon that the
    source does not show: then the exact check decides."""
    if b"\\u003" not in raw:
        try:
            if raw.count(b":") == orjson.dumps(parsed).count(b":"):
                return False
        except orjson.JSONEncodeError:
            pass
    return _lenient_object(raw, reject_duplicates=True) is None


class _Duplicate(Exception):
    pass


class _Pairs(list[tuple[str, Any]]):
    """An object's (key, value) pairs, repeated keys kept."""


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _lenient_object(value: bytes | str, reject_duplicates: bool = False) -> _Pairs | None:
    """A JSON object as its (key, value) pairs, repeated keys kept (unless
    `reject_duplicates`); None when it is no JSON object (NaN, a BOM or a
    lone surrogate make it unparseable)."""

    def pairs(items: list[tuple[str, Any]]) -> _Pairs:
        if reject_duplicates and len({k for k, _ in items}) != len(items):
            raise _Duplicate
        return _Pairs(items)

    try:
        text = value if isinstance(value, str) else value.decode("utf-8")
        text.encode("utf-8")  # lone surrogates
        if text.startswith("\ufeff"):
            return None
        parsed = json.loads(text, object_pairs_hook=pairs, parse_constant=_reject_constant)
    except (ValueError, RecursionError, _Duplicate):
        return None
    if not isinstance(parsed, _Pairs) or _has_lone_surrogate(parsed):
        return None
    return parsed


def _has_lone_surrogate(value: object) -> bool:
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, list | tuple):
            todo.extend(item)
        elif isinstance(item, dict):
            todo.extend(item)
            todo.extend(item.values())
    return False


def _string_values(pairs: _Pairs, name: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for k, v in pairs if k == name and isinstance(v, str) and v))


def _validation_reason(message: str) -> tuple[DeadReason, str]:
    match = _FIELD.search(message)
    field = match.group(1) if match else ""
    if message.startswith("Object missing required field"):
        return DeadReason.MISSING_FIELD, message
    if field == "type" and message.startswith("Invalid value"):
        return DeadReason.UNKNOWN_TYPE, message
    if "matching regex" in message:
        if field in _TIME_FIELDS:
            return DeadReason.BAD_TIME, f"`{field}` is not an RFC 3339 time with a zone"
        if field == "birth_date":
            return DeadReason.BAD_TIME, "`birth_date` is not a YYYY-MM-DD date"
        return DeadReason.BAD_VALUE, f"`{field}` is not two upper-case letters"
    if "of length" in message:
        if field in _ID_FIELDS:
            return DeadReason.BAD_ID, message
        return DeadReason.BAD_TIME if field == "birth_date" else DeadReason.BAD_VALUE, message
    if message.startswith("Expected"):
        return DeadReason.WRONG_TYPE, message
    return DeadReason.BAD_VALUE, message

