"""Event logs: JSON lines in the envelope `kcat -C -J` prints (SPEC.md, "Event logs").

Lines are split on `\\n` only. A payload may hold lone surrogates where the
original value was not UTF-8 (surrogateescape); orjson refuses those, so such
lines are read with the standard library and their payload is dead-lettered
downstream.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import IO, Any

import orjson

from stream.core.decode import Message


def read_messages(stream: IO[bytes]) -> Iterator[Message]:
    """The messages of an event log, in file order."""
    for number, line in enumerate(stream, start=1):
        yield parse_line(line[:-1] if line.endswith(b"\n") else line, number)


def parse_line(line: bytes, number: int) -> Message:
    try:
        envelope = orjson.loads(line)
    except orjson.JSONDecodeError:
        try:
            envelope = json.loads(line.decode("utf-8", "surrogateescape"))
        except ValueError as exc:
            return _bad(number, f"line {number} is not JSON: {exc}")
    if not isinstance(envelope, dict):
        return _bad(number, f"line {number} is not a JSON object")
    return _message(envelope, number)


def _message(envelope: dict[str, Any], number: int) -> Message:
    topic, key, payload = envelope.get("topic"), envelope.get("key"), envelope.get("payload")
    partition, offset = envelope.get("partition", 0), envelope.get("offset", -1)
    if not isinstance(topic, str):
        return _bad(number, f"line {number} has no string `topic`")
    if not isinstance(key, str | None) or not isinstance(payload, str | None):
        return _bad(number, f"line {number}: `key` and `payload` must be strings or null", topic)
    if type(partition) is not int or type(offset) is not int:
        return _bad(number, f"line {number}: `partition` and `offset` must be integers", topic)
    return Message(
        topic=topic,
        key=key,
        value=payload,
        partition=partition,
        offset=offset,
        null_key_ok=True,
        line=number,
    )


def _bad(number: int, error: str, topic: str = "") -> Message:
    return Message(topic=topic, key=None, value=None, envelope_error=error, line=number)
