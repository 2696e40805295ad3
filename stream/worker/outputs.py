"""What one applied message sends: training records or tombstones, audit records, a dead letter.

Built from the engine's outcome alone, so re-sending the same outcome
rewrites the same messages (every effect is idempotent).
"""

from __future__ import annotations

import msgspec

from stream.core.decode import Message
from stream.core.engine import Outcome, Publish

TRAINING_READY = "training-ready"
AUDIT = "eligibility-audit"
DLQ = "eligibility-dlq"
_encode = msgspec.json.Encoder().encode


class OutputMessage(msgspec.Struct, frozen=True, array_like=True):
    """A message to send, to a topic by its contract name; `value` None is a
    tombstone. `partition` is set only for records the worker forwards to the
    input partition their key belongs to; otherwise the key decides."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    partition: int | None = None


def output_messages(
    message: Message, raw_key: bytes | None, outcome: Outcome, seq: int | None = None
) -> list[OutputMessage]:
    out: list[OutputMessage] = []
    for change in outcome.changes:
        key = change.post_id.encode()
        if isinstance(change, Publish):
            out.append(OutputMessage(TRAINING_READY, key, _encode(change.record)))
        else:
            out.append(OutputMessage(TRAINING_READY, key, None))
    for record in outcome.audits:
        audit = record if seq is None else msgspec.structs.replace(record, seq=seq)
        audit_key = audit.key
        out.append(
            OutputMessage(AUDIT, None if audit_key is None else audit_key.encode(), _encode(audit))
        )
    dead = outcome.dead_letter
    if dead is not None:
        value = message.value
        raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
        headers = (
            ("source_topic", message.topic.encode()),
            ("source_partition", str(message.partition).encode()),
            ("source_offset", str(message.offset).encode()),
            ("error", dead.reason.value.encode()),
            ("detail", dead.detail.encode("utf-8", "replace")),
        )
        out.append(OutputMessage(DLQ, raw_key, raw, headers))
    return out


encode_outbox = msgspec.msgpack.Encoder().encode
_outbox_decoder = msgspec.msgpack.Decoder(list[OutputMessage])


def decode_outbox(data: bytes) -> list[OutputMessage]:
    return _outbox_decoder.decode(data)

