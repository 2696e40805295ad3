"""The worker under faults, on real Kafka and Redis: SIGKILLs mid-replay, a crash
between the Redis commit and the sends, a paused zombie, Redis going away.

Each test ends with `Deployment.check()` (the Kafka view equals the offline
replay in the applied order, and holds no ineligible post) and, where records
were redelivered, with `assert_applied_once`: every input message was applied
exactly once (one audit `seq` per source offset, no `seq` used twice in a
partition).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from stream.core.decode import Message
from stream.core.engine import Footprint
from stream.eventlog import parse_line
from stream.store.redis_store import RedisStore
from stream.synthetic import generate
from stream.worker.batch import RETRACT_HEADER
from stream.worker.outputs import decode_outbox
from stream.worker.partitioning import partition_for
from tests.integration.conftest import kafka_bootstrap, redis_url  # noqa: F401 (fixtures)
from tests.system.conftest import (
    INPUTS,
    Deployment,
    RedisServer,
    Worker,
    drop_deployment,
    free_port,
    wait_for,
)
from tests.unit.builders import objection, post, profile

EXIT_FENCED, EXIT_BUG, EXIT_TEST_CRASH = 75, 70, 86
BATCH_LINE = re.compile(r"batch: (\d+) applied, (\d+) skipped, (\d+) forwarded, (\d+) sent")
ASSIGNED_LINE = re.compile(r"assigned partitions \[([\d, ]*)\] in generation (\d+)")


# -- helpers -----------------------------------------------------------------------


def synthetic(n: int, seed: int, partitions: int) -> list[Message]:
    """The generated mix, minus the few `posts` dead letters keyed by another
    account than the one whose post they name, on another partition. Their
    retraction depends on how far the two partitions have got relative to
    each other, which the audit does not record: `Deployment.check()` replays
    partition after partition and would disagree with the worker whenever a
    fault delays one partition (seen: a key_mismatch on partition 3 applied
    before the post it names on paused partition 1; check() retracts it)."""
    messages = [parse_line(line, i) for i, line in enumerate(generate(n, seed=seed), 1)]
    return [m for m in messages if m.topic in INPUTS and not _names_across(m, partitions)]


def _names_across(message: Message, partitions: int) -> bool:
    if message.topic != "posts" or message.value is None:
        return False
    try:
        value = json.loads(message.value)
    except ValueError:
        return False
    if not isinstance(value, dict) or not isinstance(value.get("post_id"), str):
        return False
    owner = value.get("account_id")
    return not isinstance(owner, str) or message.key is None or (
        partition_for(owner.encode("utf-8", "surrogatepass"), partitions)
        != partition_for(message.key.encode("utf-8", "surrogatepass"), partitions)
    )


def batches(text: str) -> list[tuple[int, int, int, int]]:
    """(applied, skipped, forwarded, sent) of every batch a worker log reports."""
    return [tuple(int(g) for g in m.groups()) for m in BATCH_LINE.finditer(text)]  # type: ignore[misc]


def assignments(text: str) -> list[tuple[list[int], int]]:
    return [
        ([int(p) for p in m.group(1).split(",") if p.strip()], int(m.group(2)))
        for m in ASSIGNED_LINE.finditer(text)
    ]


def launch(deployment: Deployment, **env: str) -> Worker:
    """`Deployment.start_worker` on a web port from `free_port`."""
    return deployment.start_worker(ELIGIBILITY_WEB_PORT=str(free_port()), **env)


def wait_exit(worker: Worker, timeout: float) -> int:
    try:
        return worker.process.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"worker still running: {worker.text()[-3000:]}") from None


def caught_up(deployment: Deployment, *running: Worker, timeout: float = 120) -> None:
    """`Deployment.wait_caught_up`, watching only the workers meant to run (the
    harness's own treats a worker that exited on purpose, 75 or 86, as died)."""
    deadline = time.monotonic() + timeout
    while (lag := deployment.lag()) > 0:
        for worker in running:
            assert worker.process.poll() is None, f"a worker died: {worker.text()[-3000:]}"
        assert time.monotonic() < deadline, f"lag {lag} after {timeout} s"
        time.sleep(0.5)


def assert_applied_once(deployment: Deployment) -> None:
    """Every input message (the worker's own forwarded retraction requests
    aside) has audit records, all with one `seq`; no `seq` of a partition
    belongs to two messages. A message applied twice (after a crash, or by a
    zombie) would show two seqs, or a seq shared with another message."""
    seqs: dict[tuple[str, int, int], set[int]] = defaultdict(set)
    for record in deployment.audit():
        source, seq = record.get("source"), record.get("seq")
        if source is not None and seq is not None:
            seqs[(source["topic"], source["partition"], source["offset"])].add(seq)
    twice = {where: s for where, s in seqs.items() if len(s) > 1}
    assert not twice, f"applied more than once: {sorted(twice.items())[:10]}"
    owner: dict[tuple[int, int], tuple[str, int, int]] = {}
    for where, (seq,) in ((w, tuple(s)) for w, s in seqs.items()):
        other = owner.setdefault((where[1], seq), where)
        assert other == where, f"seq {seq} of partition {where[1]} used by {other} and {where}"
    inputs = {
        (topic, m.partition(), m.offset())
        for topic in INPUTS
        for m in deployment.read(topic)
        if not any(k == RETRACT_HEADER for k, _ in (m.headers() or ()))
    }
    missing = inputs - set(seqs)
    assert not missing, f"{len(missing)} input messages never applied: {sorted(missing)[:10]}"


@pytest.fixture
def deployment4(kafka_bootstrap: str, redis_url: str, tmp_path: Path) -> Iterator[Deployment]:  # noqa: F811
    deployment = Deployment(kafka_bootstrap, redis_url, tmp_path, partitions=4)
    yield deployment
    drop_deployment(deployment, redis_url)


# -- 1. SIGKILL three times during a replay ------------------------------------------


def test_three_sigkills_during_a_replay_lose_and_repeat_nothing(deployment: Deployment) -> None:
    messages = synthetic(50_000, seed=11, partitions=deployment.partitions)
    deployment.produce(messages)
    total = deployment.lag()
    assert total == len(messages)

    worker = launch(deployment)
    kills: list[dict[str, int]] = []
    for _ in range(3):
        deployment.wait_assigned(worker)
        start = deployment.lag()
        # kill once this worker has visibly applied a good part (and acked it),
        # while much is still left: a kill in the middle of the work
        target = start - max(total // 5, 1)
        lag = wait_for(
            "progress before a kill",
            lambda target=target: (lag := deployment.lag()) <= target and lag,
            timeout=120,
            interval=0.1,
        )
        assert worker.process.poll() is None, worker.text()[-3000:]
        worker.kill(signal.SIGKILL)
        assert wait_exit(worker, 10) == -signal.SIGKILL
        applied_before_kill = sum(b[0] for b in batches(worker.text()))
        kills.append({"lag_at_start": start, "lag_before_kill": lag,
                      "lag_after_kill": deployment.lag(), "applied": applied_before_kill})
        assert lag > 0 and kills[-1]["lag_after_kill"] > 0, kills
        assert applied_before_kill > 0, kills
        worker = launch(deployment)

    deployment.wait_caught_up(timeout=180)
    restarted = deployment.workers[1:]
    skipped = sum(b[1] for w in restarted for b in batches(w.text()))
    print(f"kills: {kills}; skipped after restarts: {skipped}")
    # Faust acks offsets every 200 ms, the Redis commit is per batch: a kill
    # leaves applied-but-unacked records, redelivered to the next owner and
    # skipped there (never applied twice)
    assert skipped > 0, (kills, [batches(w.text())[:5] for w in restarted])
    assert all(w.process.poll() in (None, -signal.SIGKILL) for w in deployment.workers)
    view = deployment.check()
    assert len(view) > 5_000
    assert_applied_once(deployment)


# -- 2. a crash between the Redis commit and the sends ---------------------------------


def test_a_crash_after_commit_still_sends_the_tombstones(deployment: Deployment) -> None:
    account = "acct-crash-1"
    posts = ["p-crash-1", "p-crash-2"]
    first = launch(deployment)
    deployment.wait_assigned(first)
    # the profile first: the inputs are separate topics, read in no set order
    deployment.produce([profile(account, birth="1990-01-01", country="DE",
                                ts="2025-06-01T08:00:00Z")])
    deployment.wait_caught_up()
    deployment.produce([
        post(posts[0], account, ts="2025-06-01T09:00:00Z"),
        post(posts[1], account, ts="2025-06-01T09:30:00Z"),
    ])
    deployment.wait_caught_up()
    assert set(posts) <= set(deployment.view())
    first.stop()

    crashing = launch(deployment, ELIGIBILITY_TEST_CRASH_AFTER_COMMIT="1")
    deployment.wait_assigned(crashing)
    deployment.produce([objection(account, ts="2025-06-01T12:00:00Z")])
    assert wait_exit(crashing, 60) == EXIT_TEST_CRASH, crashing.text()[-3000:]

    # committed to Redis ...
    partition = partition_for(account.encode(), deployment.partitions)
    store = RedisStore.from_url(deployment.redis_url, prefix=deployment.name)
    try:
        account_state = store.load([Footprint(accounts=(account,))]).get_account(account)
    finally:
        store.close()
    assert account_state is not None and account_state.objected, account_state
    client = redis.Redis.from_url(deployment.redis_url)
    try:  # the partition's record: applied offsets (off:<topic>) and outbox
        record = client.hgetall(f"{deployment.name}:part:{partition}")
    finally:
        client.close()
    assert record.get(b"off:objections") == b"0", record.keys()
    outbox = decode_outbox(record.get(b"outbox") or b"")
    assert {(m.key, m.value) for m in outbox if m.topic == "training-ready"} == {
        (p.encode(), None) for p in posts
    }, outbox
    # ... but nothing sent, nothing acknowledged
    assert set(posts) <= set(deployment.view())
    assert not [a for a in deployment.audit() if a.get("event_type") == "objection.filed"]
    assert deployment.lag() == 1

    recovering = launch(deployment)
    deployment.wait_assigned(recovering)
    caught_up(deployment, recovering)
    wait_for("the outbox re-sent", lambda: not set(posts) & set(deployment.view()), timeout=30)
    deployment.check()
    filed = [
        a for a in deployment.audit()
        if a.get("event_type") == "objection.filed" and a.get("outcome") == "changed"
    ]
    assert len(filed) == 1, filed  # the redelivered objection was skipped, not applied again
    retractions = [a for a in deployment.audit() if a.get("record") == "retraction"]
    assert sorted(a["post_id"] for a in retractions) == posts
    assert sum(b[1] for b in batches(recovering.text())) >= 1, recovering.text()[-3000:]
    assert sum(b[0] for b in batches(recovering.text())) == 0, recovering.text()[-3000:]
    assert_applied_once(deployment)


# -- 3. no zombies ------------------------------------------------------------------------


class Feeder:
    """Produces synthetic input at a steady pace in a background thread."""

    def __init__(self, deployment: Deployment, messages: list[Message], per_second: int,
                 tick: float = 0.1) -> None:
        self._deployment = deployment
        self._messages = messages
        self._tick = tick
        self._per_tick = max(int(per_second * tick), 1)
        self._stop = threading.Event()
        self.sent = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Feeder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        try:
            producer = self._deployment.producer()
            while not self._stop.is_set() and self.sent < len(self._messages):
                chunk = self._messages[self.sent:self.sent + self._per_tick]
                self._deployment.produce(chunk, producer)
                self.sent += len(chunk)
                self._stop.wait(self._tick)
            assert producer.flush(30) == 0
        except BaseException as exc:  # reported by the test
            self.error = exc


def test_a_paused_worker_never_acts_for_partitions_it_lost(deployment4: Deployment) -> None:
    deployment = deployment4
    zombie, survivor = launch(deployment), launch(deployment)

    def split() -> bool:
        za, sa = assignments(zombie.text()), assignments(survivor.text())
        return bool(za and sa and za[-1][0] and sa[-1][0] and za[-1][1] == sa[-1][1])

    wait_for("both workers assigned in one generation", split, timeout=90)
    # No warm-up: some moved partitions (objections, mostly) have never been
    # committed, the case of the record loss fixed in stream/faust_fixes.py
    # (assert_applied_once below caught it here, about one run in ten).
    lost, generation = assignments(zombie.text())[-1]
    messages = synthetic(6_000, seed=23, partitions=deployment.partitions)
    with Feeder(deployment, messages, per_second=400) as feeder:
        time.sleep(2)  # both workers busy
        zombie.kill(signal.SIGSTOP)
        # the group drops the paused member after the 6 s session timeout; the
        # survivor takes every partition and applies them
        wait_for(
            "the survivor owning every partition",
            lambda: (a := assignments(survivor.text())) and a[-1][0] == list(range(4)),
            timeout=60,
        )
        taken_at = len(survivor.text())
        wait_for("the survivor applying the moved partitions",
                 lambda: any(b[0] for b in batches(survivor.text()[taken_at:])), timeout=30)
        zombie.kill(signal.SIGCONT)
        resumed_at = len(zombie.text())
        time.sleep(8)  # the zombie runs on while input keeps coming
    assert feeder.error is None, feeder.error

    code = zombie.process.poll()
    after = zombie.text()[resumed_at:]
    # What the zombie did, for the record (pytest -rA / on failure)
    print(f"zombie exit code: {code}; lost partitions {lost} of generation {generation}")
    print("zombie log after SIGCONT:\n" + "\n".join(after.splitlines()[-25:]))
    # until it is given partitions anew (a later generation), it completes no
    # batch that applies or sends anything
    reassigned = ASSIGNED_LINE.search(after)
    before = after[: reassigned.start()] if reassigned else after
    assert all(b[0] == 0 and b[3] == 0 for b in batches(before)), before[-3000:]
    if reassigned:
        assert int(reassigned.group(2)) > generation, after[-3000:]
    if code is not None:  # or it ended hard, fenced
        assert code == EXIT_FENCED, after[-3000:]
        assert "fenced" in after, after[-3000:]

    running = [w for w in (zombie, survivor) if w.process.poll() is None]
    assert survivor in running, survivor.text()[-3000:]
    caught_up(deployment, *running)
    deployment.check()
    assert_applied_once(deployment)


# -- 4. Redis goes away ---------------------------------------------------------------------


def test_the_worker_pauses_while_redis_is_down(
    deployment: Deployment, own_redis: RedisServer
) -> None:
    messages = synthetic(3_000, seed=31, partitions=deployment.partitions)
    worker = launch(deployment, ELIGIBILITY_REDIS_URL=own_redis.url)
    deployment.wait_assigned(worker)
    deployment.produce(messages[:1_500])
    deployment.wait_caught_up()
    keys = own_redis.keys()
    assert keys > 100
    published = len(deployment.read("training-ready"))
    audited = len(deployment.read("eligibility-audit"))

    own_redis.stop()
    down_at = len(worker.text())
    deployment.produce(messages[1_500:])
    wait_for("the worker noticing", lambda: "Redis unavailable" in worker.text()[down_at:],
             timeout=20)
    time.sleep(5)
    assert worker.process.poll() is None, worker.text()[-3000:]
    assert len(deployment.read("training-ready")) == published
    assert len(deployment.read("eligibility-audit")) == audited
    assert deployment.lag() > 0
    paused = worker.text()[down_at:]
    assert "paused" in paused, paused[-3000:]

    own_redis.start()
    assert own_redis.keys() >= keys  # the same data back
    deployment.wait_caught_up(timeout=90)
    assert worker.process.poll() is None, worker.text()[-3000:]
    assert len(deployment.workers) == 1
    assert len(deployment.read("training-ready")) > published
    deployment.check()
    assert_applied_once(deployment)
