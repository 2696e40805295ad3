"""SPEC.md, "Event logs": the kcat -J envelope, read line by line and applied in file order."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from stream.core.decode import Message
from stream.core.rule import Reason
from stream.eventlog import read_messages
from tests.unit.builders import Run, profile, run

TS = "2025-06-01T10:00:00Z"


def post_payload(post_id: str, account: str = "a", **changes: Any) -> str:
    value = {"event_id": f"e-{post_id}", "type": "post.created", "ts": TS, "post_id": post_id,
             "account_id": account, "created_at": TS, "kind": "post", "audience": "public",
             "text": "hi", "lang": "en", "surface": "facebook"}
    value.update(changes)
    return json.dumps(value, ensure_ascii=False)


def line(topic: str = "posts", key: str | None = "a", payload: str | None = None,
         *, ascii_only: bool = False, **extra: Any) -> bytes:
    """An envelope line; `ascii_only` writes non-ASCII characters (and lone
    surrogates) as escapes, as Python's json.dumps does by default."""
    envelope: dict[str, Any] = {"topic": topic, "key": key, "payload": payload, **extra}
    return json.dumps(envelope, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def read(*lines: bytes, end: bytes = b"\n") -> list[Message]:
    return list(read_messages(io.BytesIO(end.join(lines) + end)))


def replay(*lines: bytes, end: bytes = b"\n") -> Run:
    """Profiles for a and good, then the log's lines."""
    return run(profile("a"), profile("good"), *read(*lines, end=end))


def good_before_and_after(bad_line: bytes) -> Run:
    """A bad line between good posts of `a` (which it must not touch unless it names a)."""
    return replay(line(payload=post_payload("a-1")), bad_line,
                  line(payload=post_payload("a-2", ts="2025-06-01T10:01:00Z")))


def test_envelope_with_kafka_coordinates_and_extra_fields() -> None:
    messages = read(
        line(payload=post_payload("a-1"), partition=3, offset=41, ts=1748772000000,
             headers=[{"trace": "x"}], timestamp_type="CreateTime", broker=1),
        line(payload=post_payload("a-2"), partition=0, offset=0, headers={"h": "v"}),
    )
    first, second = messages
    assert (first.topic, first.key, first.partition, first.offset, first.line) == (
        "posts", "a", 3, 41, 1)
    assert (second.partition, second.offset, second.line) == (0, 0, 2)
    assert first.value == post_payload("a-1")  # the payload string, unchanged
    r = run(profile("a"), *messages)
    assert r.dead == []
    assert r.ids == {"a-1", "a-2"}
    assert [a.source.partition for a in r.audits if a.record == "post"] == [3, 0]  # type: ignore[union-attr]
    assert [a.source.line for a in r.audits if a.record == "post"] == [1, 2]  # type: ignore[union-attr]


def test_coordinates_are_optional() -> None:
    (message,) = read(b'{"topic": "posts", "key": "a", "payload": ' +
                      json.dumps(post_payload("a-1")).encode() + b"}")
    assert message.value == post_payload("a-1")
    assert run(profile("a"), message).ids == {"a-1"}


def test_null_payload_is_a_tombstone() -> None:
    r = good_before_and_after(line(payload=None))
    dead = r.dead[0]
    assert r.dead_reasons() == ["tombstone"]
    assert dead.accounts == ("a",)  # it names its key's account: a-1 retracted
    assert r.ids == {"a-2"}


def test_missing_payload_is_a_tombstone() -> None:
    r = good_before_and_after(b'{"topic": "objections", "key": "a"}')
    assert r.dead_reasons() == ["tombstone"]
    assert r.reasons_of("a-2") == (Reason.QUARANTINED,)


@pytest.mark.parametrize("payload", [
    post_payload("a-9")[:-1] + ', "note": "\udcff"}',  # invalid UTF-8 byte, surrogateescaped
    post_payload("a-9", text="caf\udcc3\udca9"),  # é split into two undecodable bytes
    '{"post_id": "a-9", "text": "\udcff\udcfe"}',
])
def test_payload_with_lone_surrogates_is_invalid_json(payload: str) -> None:
    bad = line(payload=payload, ascii_only=True)
    assert b"\\udc" in bad  # written as an escape
    (message,) = read(bad)
    assert message.envelope_error is None  # the line itself is a fine envelope
    assert message.value == payload
    r = good_before_and_after(bad)
    assert r.dead_reasons() == ["invalid_json"]
    # Unparseable, so its post_id names nothing: the key's account does.
    assert (r.dead[0].posts, r.dead[0].accounts) == ((), ("a",))
    assert r.ids == {"a-2"}
    assert "a-9" not in r.ids


def test_raw_invalid_utf8_bytes_in_a_line_are_read_as_lone_surrogates() -> None:
    bad = line(payload=post_payload("a-9", text="XX")).replace(b"XX", b"\xff\xc3")
    (message,) = read(bad)
    assert message.envelope_error is None
    assert isinstance(message.value, str) and "\udcff\udcc3" in message.value
    r = good_before_and_after(bad)
    assert r.dead_reasons() == ["invalid_json"]
    assert r.dead[0].accounts == ("a",)
    assert r.ids == {"a-2"}


def test_payload_with_a_valid_surrogate_pair_is_fine() -> None:
    r = good_before_and_after(line(payload=post_payload("a-9", text="\U0001F600"),
                                   ascii_only=True))
    assert r.dead == []
    assert r.view["a-9"].text == "\U0001F600"


@pytest.mark.parametrize("bad_line", [
    b"not json",
    b"",
    b"   ",
    b'{"topic": "posts", "key": "a", "payload": "{}"',  # cut short
    b'["posts", "a", "{}"]',
    b'"posts"',
    b"null",
    b"42",
    b'{"key": "a", "payload": "{\\"post_id\\": \\"a-1\\", \\"account_id\\": \\"a\\"}"}',
    b'{"topic": null, "key": "a", "payload": "{}"}',
    b'{"topic": ["posts"], "key": "a", "payload": "{}"}',
    b"\xef\xbb\xbf" + line(payload=post_payload("a-9")),  # a BOM before the envelope
], ids=["text", "empty", "blank", "cut", "array", "string", "null", "number", "no topic",
        "null topic", "list topic", "bom"])
def test_line_that_is_no_envelope_is_a_dead_letter_naming_nothing(bad_line: bytes) -> None:
    r = good_before_and_after(bad_line)
    assert len(r.dead) == 1
    dead = r.dead[0]
    assert (dead.posts, dead.accounts) == ((), ())
    assert dead.reason.value == "bad_envelope"
    assert r.ids == {"a-1", "a-2"}


@pytest.mark.parametrize("topic", ["users", "Posts", "posts ", "eligibility-dlq", ""])
def test_line_of_another_topic_is_a_dead_letter_naming_nothing(topic: str) -> None:
    r = good_before_and_after(line(topic, payload=post_payload("a-1", audience="private")))
    assert len(r.dead) == 1
    assert (r.dead[0].posts, r.dead[0].accounts) == ((), ())
    assert r.dead[0].reason.value in ("unknown_topic", "bad_envelope")
    assert r.ids == {"a-1", "a-2"}


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\u0085", "\x0b", "\x0c", "\x1c"])
def test_unicode_line_separators_inside_a_payload_do_not_split_the_line(separator: str) -> None:
    payload = post_payload("a-1", text=f"one{separator}two")
    raw_line = (
        '{"topic": "posts", "key": "a", "payload": ' + json.dumps(payload, ensure_ascii=False)
        + "}"
    ).encode("utf-8")
    if separator not in "\x0b\x0c\x1c":  # control characters are escaped by json.dumps
        assert separator.encode("utf-8") in raw_line
    messages = read(raw_line, line(payload=post_payload("a-2")))
    assert len(messages) == 2
    r = run(profile("a"), *messages)
    assert r.dead == []
    assert r.view["a-1"].text == f"one{separator}two"


def test_raw_line_separator_between_envelope_tokens_does_not_split_the_line() -> None:
    raw_line = ('{"topic": "posts",\u2028"key": "a", "payload": '
                + json.dumps(post_payload("a-1")) + "}").encode("utf-8")
    messages = read(raw_line)
    assert len(messages) == 1
    # U+2028 is not JSON whitespace: the line is no envelope, but it stays one line.
    assert messages[0].envelope_error is not None


def test_lines_split_on_newline_only_a_carriage_return_stays() -> None:
    first, second = line(payload=post_payload("a-1")), line(payload=post_payload("a-2"))
    # CRLF line ends: the \r stays in the line, where it is JSON whitespace.
    messages = read(first, second, end=b"\r\n")
    assert [m.line for m in messages] == [1, 2]
    assert run(profile("a"), *messages).ids == {"a-1", "a-2"}
    # A lone \r separates nothing: the two envelopes are one (bad) line.
    (joined,) = read(first + b"\r" + second)
    assert joined.envelope_error is not None
    r = run(profile("a"), joined)
    assert r.dead_reasons() == ["bad_envelope"]
    assert r.ids == set()


def test_carriage_return_inside_the_text_is_kept() -> None:
    r = replay(line(payload=post_payload("a-1", text="one\r\ntwo\r")))
    assert r.view["a-1"].text == "one\r\ntwo\r"


def test_last_line_without_newline_is_read() -> None:
    data = line(payload=post_payload("a-1")) + b"\n" + line(payload=post_payload("a-2"))
    messages = list(read_messages(io.BytesIO(data)))
    assert [m.line for m in messages] == [1, 2]
    assert run(profile("a"), *messages).ids == {"a-1", "a-2"}


def test_lines_are_applied_in_file_order() -> None:
    r = replay(line(payload=post_payload("a-1")),
               line("objections", payload=json.dumps(
                   {"event_id": "o", "type": "objection.filed", "ts": TS, "account_id": "a"})),
               line(payload=post_payload("a-2", ts="2025-06-01T10:01:00Z")))
    assert r.ids == set()
    assert r.reasons_of("a-2") == (Reason.OBJECTED,)


@pytest.mark.parametrize("envelope", [
    {"topic": "posts", "key": None},
    {"topic": "posts"},
], ids=["null key", "missing key"])
def test_null_or_missing_key_is_taken_as_the_account_id(envelope: dict[str, Any]) -> None:
    raw_line = json.dumps({**envelope, "payload": post_payload("a-1")}).encode()
    (message,) = read(raw_line)
    assert message.key is None
    r = run(profile("a"), message)
    assert r.dead == []
    assert r.ids == {"a-1"}


def test_keyless_dead_letter_names_the_account_id_of_its_value() -> None:
    bad_objection = json.dumps({"event_id": "o", "type": "objection.filed", "ts": "soon",
                                "account_id": "a"})
    r = good_before_and_after(json.dumps({"topic": "objections",
                                          "payload": bad_objection}).encode())
    assert r.dead_reasons() == ["bad_time"]
    assert r.dead[0].accounts == ("a",)
    assert r.ids == set()
    assert r.reasons_of("a-2") == (Reason.QUARANTINED,)


def test_keyless_unparseable_payload_names_nothing() -> None:
    r = good_before_and_after(json.dumps({"topic": "objections",
                                          "payload": '{"account_id": "a", NaN}'}).encode())
    assert r.dead_reasons() == ["invalid_json"]
    assert (r.dead[0].posts, r.dead[0].accounts) == ((), ())
    assert r.ids == {"a-1", "a-2"}


def test_key_that_differs_from_the_account_id_is_a_mismatch() -> None:
    r = good_before_and_after(line(key="b", payload=post_payload("a-9")))
    assert r.dead_reasons() == ["key_mismatch"]
    assert r.dead[0].posts == ("a-9",)
    assert r.ids == {"a-1", "a-2"}


def test_envelope_keys_with_escapes_and_non_ascii_account() -> None:
    account = "ä\u2028ö"
    r = run(profile(account), *read(line(key=account, payload=post_payload("x-1", account))))
    assert r.dead == []
    assert r.ids == {"x-1"}
