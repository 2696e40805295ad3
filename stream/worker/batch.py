"""The worker's batch loop: records in, state and outputs out, crash-safe without transactions.

What is guaranteed, and where:

1. One writer per account. An account's events all sit on one partition of
   the three co-partitioned inputs (the worker forwards a record that sits
   elsewhere to the partition its key hashes to, never applies it where it
   landed); a partition has one owner at a time; the batch of an owner is
   applied in order.
2. State, applied offsets and outputs are written together. `commit` writes,
   in ONE Redis transaction (a Lua script), the batch's state changes, each
   input partition's last applied offset, and the batch's output messages
   (the *outbox* of each partition, replacing the previous one). Only then
   are the outputs sent to Kafka, each delivery awaited, and only then is the
   batch acknowledged to Faust.
   - A crash before the commit: nothing happened; Kafka redelivers.
   - A crash after the commit, before or during the sends: the next owner of
     the partition sends its outbox again before anything else (the same
     messages: sends are idempotent) — the tombstones of an objection reach
     Kafka even though the redelivered objection changes no state.
   - Redelivered records at or below the applied offset are skipped, so a
     redelivery never applies an event twice (a dead letter applied twice
     would quarantine an account anew).
3. No zombies. Each owner claims its partitions in Redis with its consumer
   group generation; `commit` checks, inside the same script, that every
   partition of the batch is still claimed by that generation, and writes
   nothing otherwise. A worker that finds itself fenced (or whose fence fails
   the check right before sending) ends hard, acknowledging nothing: what it
   committed is in the outbox, which the new owner sends first.
   Left open: a worker paused between that last check and its sends can
   still send the (committed, identical) outbox late; Kafka transactions
   would close that window and are off on purpose (see README).
4. Nothing ineligible stays published by a cross-partition effect: a dead
   letter naming a post of an account owned by another partition does not
   touch that account's state here; a retraction request is forwarded to the
   owning partition (through the outbox, so it is not lost either).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import msgspec

from stream.core.decode import DeadLetter, Decoded, Message
from stream.core.engine import Engine, Footprint, Outcome, footprint
from stream.core.state import StateAccess
from stream.store.base import PartitionState
from stream.worker.changelog import (
    ChangelogReader,
    Progress,
    marker_message,
    rebuild_partition,
    state_message,
)
from stream.worker.outputs import OutputMessage, decode_outbox, encode_outbox, output_messages
from stream.worker.partitioning import partition_for

log = logging.getLogger(__name__)

RETRACT_HEADER = "eligibility-retract-posts"  # value: JSON list of post ids
FORWARDED_HEADER = "eligibility-forwarded-from"  # value: "partition:offset" where it landed
POSTS = "posts"


@dataclass(frozen=True, slots=True)
class Incoming:
    """One input record as the broker gave it (`topic` is the contract name)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None
    headers: tuple[tuple[str, bytes], ...] = ()

    def header(self, name: str) -> bytes | None:
        return next((v for k, v in self.headers if k == name), None)


class WorkerStore(Protocol):
    """The state table as the worker needs it (RedisStore implements it)."""

    def load(
        self, footprints: Iterable[Footprint], owns: Callable[[str], bool] | None = None
    ) -> StateAccess: ...

    def commit_partitions(
        self,
        batch: StateAccess | None,
        fence: Mapping[int, int],
        offsets: Mapping[tuple[str, int], int],
        outbox: Mapping[int, bytes],
        policies: Mapping[int, str] | None = None,
        sequences: Mapping[int, int] | None = None,
    ) -> bool: ...

    def claim(self, fence: Mapping[int, int]) -> None: ...

    def fence_holds(self, fence: Mapping[int, int]) -> bool: ...

    def partition_state(self, partition: int) -> PartitionState: ...

    def accounts_in_view(self) -> Iterable[list[str]]: ...

    def changelog(self, batch: StateAccess) -> list[tuple[str, bytes, bytes | None]]: ...

    def restore(self, entries: Mapping[bytes, bytes | None]) -> None: ...

    def restore_partition(
        self, partition: int, offsets: Mapping[str, int], seq: int, policy: str | None
    ) -> None: ...


Publish = Callable[[Sequence[OutputMessage]], Awaitable[None]]
T = TypeVar("T")


class Retry(Protocol):
    """Runs a blocking state-table call until it succeeds (transient errors
    retried with backoff; the worker publishes nothing meanwhile)."""

    def __call__(self, fn: Callable[..., T], /, *args: Any) -> Awaitable[T]: ...


class Fenced(RuntimeError):
    """Another worker owns a partition of this batch now."""


@dataclass(slots=True)
class BatchStats:
    """What one batch did, for logs and metrics."""

    applied: int = 0
    skipped: int = 0  # redelivered at or below the applied offset
    forwarded: int = 0  # on a partition its key does not hash to
    outcomes: list[tuple[Incoming, Outcome]] = field(default_factory=list)
    sent: int = 0


@dataclass(slots=True)
class Applied:
    """A batch applied in memory, not yet committed."""

    state: StateAccess
    outboxes: dict[int, list[OutputMessage]] = field(
        default_factory=lambda: defaultdict(list)
    )
    outcomes: list[tuple[Incoming, Outcome]] = field(default_factory=list)
    sequences: dict[int, int] = field(default_factory=dict)  # partition -> last seq used


class BatchWorker:
    """Applies batches for the partitions this worker owns (no Faust here:
    the app hands it records and a publisher)."""

    def __init__(
        self,
        engine: Engine,
        store: WorkerStore,
        publish: Publish,
        partitions: int,
        retry: Retry,
        changelog: ChangelogReader | None = None,
        after_commit: Callable[[], None] | None = None,
    ) -> None:
        self.engine = engine
        self._changelog = changelog  # None: no changelog written or read (tests)
        self._after_commit = after_commit  # tests: a crash between commit and sends
        self.store = store
        self._publish = publish
        self.partitions = partitions
        self._retry = retry
        self.owned: dict[int, int] = {}  # partition -> generation
        self._ready: set[int] = set()  # recovered in the current generation
        self._applied: dict[tuple[str, int], int] = {}
        self._seq: dict[int, int] = {}  # partition -> messages applied so far

    # -- ownership -------------------------------------------------------------

    def assign(self, partitions: Iterable[int], generation: int) -> None:
        """Claim the partitions in Redis (fencing out their previous owner)."""
        fence = {p: generation for p in partitions}
        self.store.claim(fence)
        self.owned = fence
        self._ready.clear()

    def revoke(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self.owned.pop(partition, None)
            self._ready.discard(partition)

    def owns_account(self, account_id: str) -> bool:
        return partition_for(account_id.encode(), self.partitions) in self.owned

    async def _recover(self, partition: int) -> None:
        """First thing for a partition in a generation: send what the last
        owner committed but may not have sent, then judge the view anew if
        the policy changed."""
        state: PartitionState = await self._retry(self.store.partition_state, partition)
        if self._changelog is not None:
            progress = await asyncio.to_thread(self._changelog.last_progress, partition)
            if progress is not None and progress.ahead_of(state):
                log.warning("partition %d: Redis is behind its changelog, rebuilding", partition)
                await asyncio.to_thread(rebuild_partition, self._changelog, self.store, partition)
                state = await self._retry(self.store.partition_state, partition)
        for topic, offset in state.offsets.items():
            self._applied[(topic, partition)] = offset
        self._seq[partition] = state.seq
        if state.outbox:
            await self._send(decode_outbox(state.outbox), {partition: self.owned[partition]})
        if state.policy != self.engine.policy_version:
            await self._sweep(partition)
        self._ready.add(partition)

    async def _sweep(self, partition: int) -> None:
        fence = {partition: self.owned[partition]}
        policy = {partition: self.engine.policy_version}
        sweeper = Message(topic="policy-sweep", key=None, value=None, partition=partition)
        for chunk in self.store.accounts_in_view():
            mine = [a for a in chunk if partition_for(a.encode(), self.partitions) == partition]
            if not mine:
                continue
            batch = await self._retry(
                self.store.load, [Footprint(accounts=(a,), views=(a,)) for a in mine]
            )
            outputs = output_messages(sweeper, None, self.engine.sweep(batch, mine))
            outputs += self._state_messages(batch)[partition]
            await self._commit(batch, fence, {}, {partition: encode_outbox(outputs)})
            await self._send(outputs, fence)
        marker = self._markers(fence)
        await self._commit(None, fence, {}, {partition: encode_outbox(marker)}, policy)
        await self._send(marker, fence)

    # -- batches ---------------------------------------------------------------

    async def process(self, records: Sequence[Incoming]) -> BatchStats:
        stats = BatchStats()
        for partition in sorted({r.partition for r in records} - self._ready):
            if partition not in self.owned:
                raise Fenced(f"partition {partition} is not assigned to this worker")
            await self._recover(partition)
        fence = {r.partition: self.owned[r.partition] for r in records}
        outboxes: dict[int, list[OutputMessage]] = defaultdict(list)
        offsets: dict[tuple[str, int], int] = {}
        work: list[Incoming] = []
        for record in records:
            where = (record.topic, record.partition)
            if record.offset <= self._applied.get(where, -1):
                stats.skipped += 1
                continue
            offsets[where] = max(offsets.get(where, -1), record.offset)
            target = self._home(record)
            if target != record.partition:
                outboxes[record.partition].append(_forward(record, target))
                stats.forwarded += 1
            else:
                work.append(record)
        batch = None
        sequences: dict[int, int] = {}
        if work:
            applied: Applied = await self._retry(self._apply, work, dict(self._seq))
            sequences = applied.sequences
            batch = applied.state
            for partition, messages in applied.outboxes.items():
                outboxes[partition].extend(messages)
            stats.applied = len(work)
            stats.outcomes = applied.outcomes
        if offsets:
            if batch is not None:
                for partition, messages in self._state_messages(batch).items():
                    outboxes[partition].extend(messages)
            pending = dict(self._applied)
            pending.update(offsets)
            seq = {**self._seq, **sequences}
            for message in self._markers(fence, pending, seq):
                outboxes[message.partition or 0].append(message)
            encoded = {p: encode_outbox(messages) for p, messages in outboxes.items()}
            for partition in fence:  # partitions that sent nothing: an empty outbox
                encoded.setdefault(partition, encode_outbox([]))
            await self._commit(batch, fence, offsets, encoded, None, sequences)
            self._applied.update(offsets)
            self._seq.update(sequences)
            if self._after_commit is not None:
                self._after_commit()
            await self._send([m for p in sorted(outboxes) for m in outboxes[p]], fence)
        stats.sent = sum(len(m) for m in outboxes.values())
        return stats

    def _state_messages(self, batch: StateAccess) -> dict[int, list[OutputMessage]]:
        """The batch's state changes as changelog messages, by input partition."""
        by_partition: dict[int, list[OutputMessage]] = defaultdict(list)
        if self._changelog is None:
            return by_partition
        for account_id, key, value in self.store.changelog(batch):
            partition = partition_for(account_id.encode(), self.partitions)
            by_partition[partition].append(state_message(partition, key, value))
        return by_partition

    def _markers(
        self,
        fence: Mapping[int, int],
        applied: Mapping[tuple[str, int], int] | None = None,
        seq: Mapping[int, int] | None = None,
    ) -> list[OutputMessage]:
        """Each partition's progress (by default as it stands), the last
        changelog message of its batch."""
        if self._changelog is None:
            return []
        applied = self._applied if applied is None else applied
        seq = self._seq if seq is None else seq
        return [
            marker_message(
                partition,
                Progress(
                    {t: o for (t, p), o in applied.items() if p == partition},
                    seq.get(partition, 0),
                    self.engine.policy_version,
                ),
            )
            for partition in fence
        ]

    def _home(self, record: Incoming) -> int:
        """The partition a record belongs to: its key's (null keys stay put:
        the decoder dead-letters them where they are)."""
        if record.key is None:
            return record.partition
        return partition_for(record.key, self.partitions)

    def _apply(self, work: list[Incoming], seq: dict[int, int]) -> Applied:
        """Decode, load the batch's state in one go, apply in order. Retried
        whole on a Redis error: nothing is kept from a failed try."""
        messages = [_message(r) for r in work]
        retracts = [_retract_request(r) for r in work]
        decoded: list[Decoded | DeadLetter | None] = [
            None if posts is not None else self.engine.decode(m)
            for m, posts in zip(messages, retracts, strict=True)
        ]
        footprints = [
            footprint(d) if d is not None else Footprint(posts=tuple(posts or ()))
            for d, posts in zip(decoded, retracts, strict=True)
        ]
        state = self.store.load(footprints, self.owns_account)
        applied = Applied(state)
        for record, message, item, posts in zip(work, messages, decoded, retracts, strict=True):
            if item is None:
                outcome = self.engine.retract_named(message, posts or (), state)
            else:
                outcome = self.engine.apply_decoded(message, item, state)
            seq[record.partition] = number = seq.get(record.partition, 0) + 1
            outbox = applied.outboxes[record.partition]
            outbox.extend(output_messages(message, record.key, outcome, number))
            outbox.extend(self._foreign_retractions(outcome, state, record))
            applied.outcomes.append((record, outcome))
        applied.sequences = {p: seq[p] for p in {r.partition for r in work}}
        return applied

    def _foreign_retractions(
        self, outcome: Outcome, state: StateAccess, record: Incoming
    ) -> list[OutputMessage]:
        dead = outcome.dead_letter
        if dead is None or not dead.posts:
            return []
        by_owner: dict[str, list[str]] = defaultdict(list)
        for post_id in dead.posts:
            post = state.get_post(post_id)
            if post is not None and not self.owns_account(post.owner):
                by_owner[post.owner].append(post_id)
        return [
            OutputMessage(
                POSTS,
                owner.encode(),
                None,
                (
                    (RETRACT_HEADER, msgspec.json.encode(posts)),
                    (FORWARDED_HEADER, f"{record.partition}:{record.offset}".encode()),
                ),
                partition=partition_for(owner.encode(), self.partitions),
            )
            for owner, posts in by_owner.items()
        ]

    async def _commit(
        self,
        batch: StateAccess | None,
        fence: Mapping[int, int],
        offsets: Mapping[tuple[str, int], int],
        outbox: Mapping[int, bytes],
        policies: Mapping[int, str] | None = None,
        sequences: Mapping[int, int] | None = None,
    ) -> None:
        done = await self._retry(
            self.store.commit_partitions, batch, fence, offsets, outbox, policies, sequences
        )
        if not done:
            raise Fenced(f"partitions {sorted(fence)} were claimed by another worker")

    async def _send(self, messages: Sequence[OutputMessage], fence: Mapping[int, int]) -> None:
        if not messages:
            return
        if not await self._retry(self.store.fence_holds, fence):
            raise Fenced(f"partitions {sorted(fence)} were claimed before sending")
        await self._publish(messages)


def _message(record: Incoming) -> Message:
    key = None
    if record.key is not None:
        try:
            key = record.key.decode("utf-8")
        except UnicodeDecodeError:
            key = record.key.decode("utf-8", "surrogateescape")  # never equals an account_id
    return Message(
        topic=record.topic,
        key=key,
        value=record.value,
        partition=record.partition,
        offset=record.offset,
        timestamp_ms=record.timestamp_ms,
    )


def _retract_request(record: Incoming) -> list[str] | None:
    """The posts a retraction forwarded by another partition names, or None."""
    raw = record.header(RETRACT_HEADER) if record.topic == POSTS else None
    if raw is None:
        return None
    try:
        posts = msgspec.json.decode(raw, type=list[str])
    except msgspec.DecodeError:
        return None  # not ours: decoded as an ordinary record (and dead-lettered)
    return posts


def _forward(record: Incoming, target: int) -> OutputMessage:
    headers = (*record.headers, (FORWARDED_HEADER, f"{record.partition}:{record.offset}".encode()))
    return OutputMessage(record.topic, record.key, record.value, headers, partition=target)
