"""The offline replay: an event log through the core into files.

Messages are applied in file order, in batches: each batch's state is loaded
from the store in one go and committed in one go, as the worker does.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import IO

import msgspec

from stream.core.decode import Message
from stream.core.engine import Engine, Footprint, Outcome, Publish, footprint
from stream.store.base import StateStore
from stream.summary import Summary

POLICY_META = "policy_version"
_encode = msgspec.json.Encoder().encode


@dataclass(slots=True)
class Outputs:
    """Where the replay writes: the view stays in memory until the end (latest
    record per post, as a reader of the compacted topic would keep it)."""

    audit: IO[bytes] | None = None
    dlq: IO[bytes] | None = None
    view: dict[str, bytes] = field(default_factory=dict, init=False)

    def write(self, message: Message | None, outcome: Outcome) -> None:
        for change in outcome.changes:
            if isinstance(change, Publish):
                self.view[change.post_id] = _encode(change.record)
            else:
                self.view.pop(change.post_id, None)
        if self.audit is not None:
            for audit in outcome.audits:
                self.audit.write(_encode(audit) + b"\n")
        if self.dlq is not None and message is not None and outcome.dead_letter is not None:
            self.dlq.write(dead_letter_line(message, outcome) + b"\n")

    def write_view(self, out: IO[bytes]) -> None:
        for post_id in sorted(self.view):
            out.write(self.view[post_id] + b"\n")


def dead_letter_line(message: Message, outcome: Outcome) -> bytes:
    """A dead letter as an event-log line: the input unchanged, the error in headers."""
    dead = outcome.dead_letter
    assert dead is not None
    value = message.value
    payload = value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value
    line = {
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "key": message.key,
        "payload": payload,
        "headers": {
            "error": dead.reason.value,
            "detail": dead.detail,
            "source_line": message.line,
        },
    }
    try:
        return _encode(line)
    except UnicodeEncodeError:  # lone surrogates: escaped by the standard library
        return json.dumps(line).encode()


def sweep_if_policy_changed(
    engine: Engine, store: StateStore, outputs: Outputs, summary: Summary
) -> None:
    """SPEC.md, "A new policy": before any event is applied, retract what the
    policy now in force rejects among the posts in the view."""
    stored = store.get_meta(POLICY_META)
    if stored is not None and stored != engine.policy_version:
        for accounts in store.accounts_in_view():
            batch = store.load(Footprint(accounts=(a,), views=(a,)) for a in accounts)
            outcome = engine.sweep(batch, accounts)
            store.commit(batch)
            outputs.write(None, outcome)
            for audit in outcome.audits:
                summary.count(audit)
    store.set_meta(POLICY_META, engine.policy_version)


def replay(
    messages: Iterable[Message],
    engine: Engine,
    store: StateStore,
    outputs: Outputs,
    batch_size: int = 500,
    progress: Callable[[int], None] | None = None,
) -> Summary:
    summary = Summary()
    started = time.perf_counter()
    sweep_if_policy_changed(engine, store, outputs, summary)
    for batch in _batches(iter(messages), batch_size):
        decoded = [engine.decode(message) for message in batch]
        state = store.load(footprint(d) for d in decoded)
        for message, item in zip(batch, decoded, strict=True):
            outcome = engine.apply_decoded(message, item, state)
            outputs.write(message, outcome)
            for audit in outcome.audits:
                summary.count(audit)
        store.commit(state)
        summary.events += len(batch)
        if progress is not None:
            progress(len(batch))
    summary.seconds = time.perf_counter() - started
    return summary


def _batches(messages: Iterator[Message], size: int) -> Iterator[list[Message]]:
    while batch := list(islice(messages, size)):
        yield batch
