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
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, Protocol, TypeVar

import msgspec

from stream.core.decode import DeadLetter, Decoded, Message
from stream.core.engine import Engine, Footprint, Outcome, footprint
from stream.core.ids import id_bytes
from stream.core.state import AccountState, StateAccess
from stream.core.times import coming_of_age_us
from stream.store.base import PartitionProgress, PartitionState
from stream.worker.changelog import (
    ChangelogReader,
    ahead_of,
    marker_message,
    rebuild_partition,
    state_message,
)
from stream.worker.outputs import OutputMessage, decode_outbox, encode_outbox, output_messages
from stream.worker.partitioning import partition_for

log = logging.getLogger(__name__)

RETRACT_HEADER = "eligibility-retract-posts"  # value: JSON list of post ids
FORWARDED_HEADER = "eligibility-forwarded-from"  # value: "topic:partition:offset" of its origin
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
        progress: Mapping[int, PartitionProgress],
        outbox: Mapping[int, bytes],
    ) -> bool: ...

    def claim(self, fence: Mapping[int, int]) -> None: ...

    def fence_holds(self, fence: Mapping[int, int]) -> bool: ...

    def partition_state(self, partition: int) -> PartitionState: ...

    def accounts_in_view(self) -> Iterable[list[str]]: ...

    def changelog(self, batch: StateAccess) -> list[tuple[str, bytes, bytes | None]]: ...

    def restore(self, entries: Mapping[bytes, bytes | None]) -> None: ...

    def restore_partition(self, partition: int, progress: PartitionProgress) -> None: ...

    def size_changes(
        self, batch: StateAccess
    ) -> tuple[list[tuple[str, AccountState | None, AccountState]], dict[str, int]]: ...


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
    outcomes: list[Applied.Item] = field(default_factory=list)
    sent: int = 0  # messages sent: outputs, forwards, changelog
    seconds: float = 0.0


@dataclass(slots=True)
class Applied:
    """A batch applied in memory, not yet committed."""

    # a record, what applying it did, and its event's ts (None: a dead letter)
    Item = tuple[Incoming, Outcome, int | None]

    state: StateAccess
    outboxes: dict[int, list[OutputMessage]] = field(
        default_factory=lambda: defaultdict(list)
    )
    outcomes: list[Item] = field(default_factory=list)
    sequences: dict[int, int] = field(default_factory=dict)  # partition -> last seq used


def _objected(engine: Engine, state: AccountState | None, now: int) -> int:
    return int(state is not None and state.objected and not state.deleted)


def _quarantined(engine: Engine, state: AccountState | None, now: int) -> int:
    return int(state is not None and state.quarantined and not state.deleted)


def _minor(engine: Engine, state: AccountState | None, now: int) -> int:
    """A minor by the profile, at the time the profile is applied."""
    if state is None or state.deleted or state.birth_date is None:
        return 0
    return int(now < coming_of_age_us(state.birth_date, engine.min_age_for(state.country)))


_SIZE_FLAGS: Final = {"objected": _objected, "quarantined": _quarantined, "minor": _minor}


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
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.store = store
        self._publish = publish
        self.partitions = partitions
        self._retry = retry
        self._changelog = changelog  # None: no changelog written or read (tests)
        self._after_commit = after_commit  # tests: a crash between commit and sends
        self._clock = clock
        self.owned: dict[int, int] = {}  # partition -> generation
        self._ready: set[int] = set()  # recovered in the current generation
        self.progress: dict[int, PartitionProgress] = {}

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
            self.progress.pop(partition, None)

    def _partition(self, account_id: str) -> int:
        return partition_for(id_bytes(account_id), self.partitions)

    async def recover_all(self) -> None:
        """Recover every owned partition now (after a rebalance), so a new
        policy's sweep and a predecessor's outbox do not wait for new input."""
        for partition in sorted(set(self.owned) - self._ready):
            await self._recover(partition)

    async def _recover(self, partition: int) -> None:
        """First thing for a partition in a generation: rebuild Redis from the
        changelog if it is behind, send what the last owner committed but may
        not have sent, then judge the view anew if the policy changed."""
        state: PartitionState = await self._retry(self.store.partition_state, partition)
        if self._changelog is not None:
            known = await asyncio.to_thread(self._changelog.last_progress, partition)
            if known is not None and ahead_of(known, state.progress):
                log.warning("partition %d: Redis is behind its changelog, rebuilding", partition)
                await asyncio.to_thread(rebuild_partition, self._changelog, self.store, partition)
                state = await self._retry(self.store.partition_state, partition)
        self.progress[partition] = state.progress
        fence = {partition: self.owned[partition]}
        if state.outbox:
            await self._send(decode_outbox(state.outbox), fence)
        if state.progress.policy != self.engine.policy_version:
            await self._sweep(partition, fence)
        self._ready.add(partition)

    async def _sweep(self, partition: int, fence: Mapping[int, int]) -> None:
        sweeper = Message(topic="policy-sweep", key=None, value=None, partition=partition)
        for chunk in self.store.accounts_in_view():
            mine = [a for a in chunk if self._partition(a) == partition]
            if not mine:
                continue
            batch = await self._retry(
                self.store.load, [Footprint(accounts=(a,), views=(a,)) for a in mine]
            )
            outcome = self.engine.sweep(batch, mine)
            outboxes = {partition: output_messages(sweeper, None, outcome)}
            progress = self._counted(batch, {partition: self.progress[partition]}, {})
            await self._finish(batch, fence, progress, outboxes)
        swept = replace(self.progress[partition], policy=self.engine.policy_version)
        await self._finish(None, fence, {partition: swept}, {partition: []})

    # -- batches ---------------------------------------------------------------

    async def process(self, records: Sequence[Incoming]) -> BatchStats:
        started = time.perf_counter()
        stats = BatchStats()
        for partition in sorted({r.partition for r in records} - self._ready):
            if partition not in self.owned:
                raise Fenced(f"partition {partition} is not assigned to this worker")
            await self._recover(partition)
        fence = {r.partition: self.owned[r.partition] for r in records}
        offsets = {p: dict(self.progress[p].offsets) for p in fence}
        outboxes: dict[int, list[OutputMessage]] = {p: [] for p in fence}
        work: list[Incoming] = []
        for record in records:
            applied = offsets[record.partition]
            if record.offset <= applied.get(record.topic, -1):
                stats.skipped += 1
                continue
            applied[record.topic] = record.offset
            origin = _origin(record)
            if origin is not None:
                # a forward that its sender's outbox sent again after a crash
                if origin[1] <= applied.get(origin[0], -1):
                    stats.skipped += 1
                    continue
                applied[origin[0]] = origin[1]
            target = self._home(record)
            if target != record.partition:
                outboxes[record.partition].append(_forward(record, target))
                stats.forwarded += 1
            else:
                work.append(record)
        if stats.skipped == len(records):
            return stats
        progress = {p: replace(self.progress[p], offsets=offsets[p]) for p in fence}
        batch = None
        if work:
            first_seq = {p: progress[p].seq for p in fence}
            result: Applied = await self._retry(self._apply, work, first_seq, set(fence))
            batch = result.state
            for partition, messages in result.outboxes.items():
                outboxes[partition].extend(messages)
            progress = self._counted(batch, progress, result.sequences)
            stats.applied, stats.outcomes = len(work), result.outcomes
        stats.sent = await self._finish(batch, fence, progress, outboxes)
        stats.seconds = time.perf_counter() - started
        return stats

    async def _finish(
        self,
        batch: StateAccess | None,
        fence: Mapping[int, int],
        progress: Mapping[int, PartitionProgress],
        outboxes: Mapping[int, list[OutputMessage]],
    ) -> int:
        """Commit (state, progress, outboxes with the changelog), then send."""
        if self._changelog is not None:
            outboxes = {p: list(m) for p, m in outboxes.items()}
            if batch is not None:
                for account_id, key, value in self.store.changelog(batch):
                    partition = self._partition(account_id)
                    outboxes[partition].append(state_message(partition, key, value))
            for partition in fence:  # the progress marker: last of the partition's batch
                outboxes[partition].append(marker_message(partition, progress[partition]))
        encoded = {p: encode_outbox(outboxes.get(p, [])) for p in fence}
        done = await self._retry(
            self.store.commit_partitions, batch, fence, {p: progress[p] for p in fence}, encoded
        )
        if not done:
            raise Fenced(f"partitions {sorted(fence)} were claimed by another worker")
        self.progress.update({p: progress[p] for p in fence})
        if self._after_commit is not None:
            self._after_commit()
        messages = [m for p in sorted(outboxes) for m in outboxes[p]]
        await self._send(messages, fence)
        return len(messages)

    def _counted(
        self,
        batch: StateAccess,
        progress: dict[int, PartitionProgress],
        seq: Mapping[int, int],
    ) -> dict[int, PartitionProgress]:
        """The partitions' progress with the batch's sequence numbers and
        state sizes (accounts objected, quarantined, minor; posts in view)."""
        counts = {p: dict(progress[p].counts) for p in progress}
        accounts, views = self.store.size_changes(batch)
        now = int(self._clock() * 1_000_000)
        for account_id, before, after in accounts:
            tally = counts.setdefault(self._partition(account_id), {})
            for name, flag in _SIZE_FLAGS.items():
                change = flag(self.engine, after, now) - flag(self.engine, before, now)
                if change:
                    tally[name] = tally.get(name, 0) + change
        for account_id, change in views.items():
            tally = counts.setdefault(self._partition(account_id), {})
            tally["in_view"] = tally.get("in_view", 0) + change
        return {
            p: replace(progress[p], seq=seq.get(p, progress[p].seq), counts=counts[p])
            for p in progress
        }

    def _home(self, record: Incoming) -> int:
        """The partition a record belongs to: its key's (null keys stay put:
        the decoder dead-letters them where they are)."""
        if record.key is None:
            return record.partition
        return partition_for(record.key, self.partitions)

    def _apply(
        self, work: list[Incoming], first_seq: Mapping[int, int], partitions: set[int]
    ) -> Applied:
        """Decode, load the batch's state in one go, apply in order. Retried
        whole on a Redis error: nothing is kept from a failed try. Only the
        accounts of the batch's `partitions` are written: a post of another
        partition that a dead letter names gets a retraction request instead
        (even when this worker owns that partition too, as its progress and
        outbox are committed with its own batches)."""
        seq = dict(first_seq)

        def owns(account_id: str) -> bool:
            return self._partition(account_id) in partitions

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
        state = self.store.load(footprints, owns)
        applied = Applied(state)
        for record, message, item, posts in zip(work, messages, decoded, retracts, strict=True):
            if item is None:
                outcome = self.engine.retract_named(message, posts or (), state)
            else:
                outcome = self.engine.apply_decoded(message, item, state)
            seq[record.partition] = number = seq.get(record.partition, 0) + 1
            outbox = applied.outboxes[record.partition]
            outbox.extend(output_messages(message, record.key, outcome, number))
            outbox.extend(self._foreign_retractions(outcome, state, record, owns))
            ts = item.ts if isinstance(item, Decoded) else None
            applied.outcomes.append((record, outcome, ts))
        applied.sequences = {p: seq[p] for p in {r.partition for r in work}}
        return applied

    def _foreign_retractions(
        self,
        outcome: Outcome,
        state: StateAccess,
        record: Incoming,
        owns: Callable[[str], bool],
    ) -> list[OutputMessage]:
        dead = outcome.dead_letter
        if dead is None or not dead.posts:
            return []
        by_owner: dict[str, list[str]] = defaultdict(list)
        for post_id in dead.posts:
            post = state.get_post(post_id)
            if post is not None and not owns(post.owner):
                by_owner[post.owner].append(post_id)
        return [
            OutputMessage(
                POSTS,
                id_bytes(owner),
                None,
                (
                    (RETRACT_HEADER, msgspec.json.encode(posts)),
                    (FORWARDED_HEADER, _where(record)),
                ),
                partition=self._partition(owner),
            )
            for owner, posts in by_owner.items()
        ]

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


def _where(record: Incoming) -> bytes:
    return f"{record.topic}:{record.partition}:{record.offset}".encode()


def _origin(record: Incoming) -> tuple[str, int] | None:
    """For a record another partition's worker forwarded here: a progress key
    naming this topic and the origin's topic and partition (forwards from one
    origin reach one topic in the origin's order), and the origin offset."""
    raw = record.header(FORWARDED_HEADER)
    if raw is None:
        return None
    topic, partition, offset = [*raw.decode("ascii", "replace").split(":"), "", ""][:3]
    if not (partition.isdigit() and offset.isdigit()):
        return None
    return f"fwd:{record.topic}<{topic}:{partition}", int(offset)


def _forward(record: Incoming, target: int) -> OutputMessage:
    headers = (*record.headers, (FORWARDED_HEADER, _where(record)))
    return OutputMessage(record.topic, record.key, record.value, headers, partition=target)
