"""The always-on worker on the local broker: throughput as a ratio to a bare pipe, and latency.

    .venv/bin/python bench/worker_bench.py --events 50000 --partitions 3

One run, each phase on fresh uuid-named topics (and state prefix and group):
  (a) ceiling: a bare confluent-kafka pipe (one consumer in a group subscribed to the
      three inputs, producing every message unchanged to an output topic, awaiting the
      deliveries of each batch and committing as it goes) moves N pre-produced events
  (b) the worker (`python -m stream worker`) on the same pre-produced log, timed from its
      first audit record to its last once caught up (group lag 0); once per --settings
  (c) publication latency at --load x (b)'s rate for --seconds: Kafka timestamp of the
      training-ready record minus that of the input message it publishes
  (d) during (c), objections for accounts with posts in the view: objection's Kafka
      timestamp to the first tombstone it caused (matched through the audit's source)
If a target is missed (ratio >= 0.5, publication p99 <= 50 ms, objection p99 <= 1 s),
the worker is run once more under cProfile on the pre-produced log and the top functions
by cumulative time are printed. Absolute figures on a shared machine are noise; the
ratios are the result. Topics, consumer groups, Redis keys and processes are removed at
the end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import itertools
import os
import pstats
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from stream.eventlog import parse_line
from stream.kafka.client import KafkaSettings
from stream.kafka.produce import TokenBucket, message_key, message_value
from stream.kafka.topics import create_topics
from stream.synthetic import generate

ROOT = Path(__file__).resolve().parents[1]
INPUTS = ("posts", "objections", "accounts")
TARGET_RATIO = 0.5
TARGET_PUBLISH_P99_MS = 50.0
TARGET_RETRACT_P99_MS = 1000.0

Event = tuple[str, bytes | None, bytes | None]  # contract topic, key, value


@dataclass(frozen=True)
class WorkerConfig:
    batch_size: int
    within_ms: int
    commit_ms: int

    @classmethod
    def parse(cls, text: str) -> WorkerConfig:
        size, within, commit = (int(part) for part in text.split("/"))
        return cls(size, within, commit)

    def env(self) -> dict[str, str]:
        return {
            "ELIGIBILITY_BATCH_SIZE": str(self.batch_size),
            "ELIGIBILITY_BATCH_WITHIN_MS": str(self.within_ms),
            "ELIGIBILITY_COMMIT_INTERVAL_MS": str(self.commit_ms),
        }

    def __str__(self) -> str:
        return f"{self.batch_size}/{self.within_ms}/{self.commit_ms}"


@dataclass
class Delivered:
    """Input messages as the broker took them: (topic, partition, offset) -> CreateTime ms."""

    times: dict[tuple[str, int, int], int] = field(default_factory=dict)
    failed: int = 0


# -- the world: topics, groups, state, processes; all removed at the end ---------------


class Bench:
    def __init__(self, brokers: str, redis_url: str, partitions: int) -> None:
        self.brokers = brokers
        self.redis_url = redis_url
        self.partitions = partitions
        self.run_id = uuid.uuid4().hex[:8]
        self.admin = AdminClient({"bootstrap.servers": brokers})
        self.names: list[str] = []  # prefix, state prefix and group of each phase
        self.workers: list[subprocess.Popen[bytes]] = []
        self.tmp = Path(tempfile.mkdtemp(prefix=f"worker-bench-{self.run_id}-"))

    def fresh(self, phase: str) -> KafkaSettings:
        name = f"bench-{self.run_id}-{phase}"
        self.names.append(name)
        kafka = KafkaSettings(brokers=self.brokers, topic_prefix=f"{name}.")
        report = create_topics(self.admin, kafka, partitions=self.partitions)
        if report.problems:
            raise RuntimeError(f"topics of {name}: {report.problems}")
        return kafka

    def start_worker(
        self, kafka: KafkaSettings, config: WorkerConfig, profile: Path | None = None
    ) -> tuple[subprocess.Popen[bytes], Path]:
        name = kafka.topic_prefix.rstrip(".")
        env = dict(os.environ)
        env.update(
            ELIGIBILITY_KAFKA_BROKERS=self.brokers,
            ELIGIBILITY_TOPIC_PREFIX=kafka.topic_prefix,
            ELIGIBILITY_REDIS_URL=self.redis_url,
            ELIGIBILITY_STATE_PREFIX=name,
            ELIGIBILITY_GROUP_ID=name,
            ELIGIBILITY_PSEUDONYM_KEY=f"worker-bench-pseudonym-key-{uuid.uuid4().hex}",
            ELIGIBILITY_WEB_PORT=str(_free_port()),
            **config.env(),
        )
        command = [sys.executable]
        if profile is not None:
            command += ["-m", "cProfile", "-o", str(profile)]
        command += ["-m", "stream", "worker", "--loglevel", "info"]
        log = self.tmp / f"{name}.log"
        # Own session: a Ctrl-C reaches the bench only, which then stops the worker.
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.workers.append(process)
        return process, log

    def stop_worker(self, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)

    def cleanup(self) -> None:
        for process in self.workers:
            self.stop_worker(process)
        topics = [
            t for t in self.admin.list_topics(timeout=10).topics
            if any(t.startswith(f"{name}.") for name in self.names)
        ]
        if topics:
            for future in self.admin.delete_topics(topics, operation_timeout=30).values():
                try:
                    future.result()
                except Exception as exc:
                    print(f"cleanup: {exc}", file=sys.stderr)
        groups = [
            g.group_id
            for g in self.admin.list_consumer_groups(request_timeout=10).result().valid
            if any(g.group_id == name for name in self.names)
        ]
        if groups:
            for future in self.admin.delete_consumer_groups(groups, request_timeout=30).values():
                try:
                    future.result()
                except Exception as exc:
                    print(f"cleanup: {exc}", file=sys.stderr)
        client = redis.Redis.from_url(self.redis_url)
        for name in self.names:
            for key in client.scan_iter(match=f"{name}:*", count=1000):
                client.delete(key)
        client.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- input -------------------------------------------------------------------------------


def make_log(events: int, seed: int) -> list[Event]:
    """The synthetic log's input messages as Kafka keys and values (other lines skipped)."""
    out = []
    for number, line in enumerate(generate(events, seed), start=1):
        message = parse_line(line, number)
        if message.envelope_error is None and message.topic in INPUTS:
            out.append((message.topic, message_key(message), message_value(message)))
    return out


class InputProducer:
    """An upstream producer (murmur2, idempotent) that records each delivery's CreateTime."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.kafka = kafka
        self.producer = Producer(kafka.producer_config())
        self.delivered = Delivered()
        self._logical = {kafka.topic(name): name for name in INPUTS}

    def _report(self, error: KafkaError | None, message: Any) -> None:
        if error is not None:
            self.delivered.failed += 1
            return
        where = (self._logical[message.topic()], message.partition(), message.offset())
        self.delivered.times[where] = message.timestamp()[1]

    def send(
        self, topic: str, key: bytes | None, value: bytes | None,
        on_delivery: Callable[[KafkaError | None, Any], None] | None = None,
    ) -> None:
        def report(error: KafkaError | None, message: Any) -> None:
            self._report(error, message)
            if on_delivery is not None:
                on_delivery(error, message)

        while True:
            try:
                self.producer.produce(self.kafka.topic(topic), value=value, key=key,
                                      on_delivery=report)
                return
            except BufferError:
                self.producer.poll(0.05)

    def flush(self) -> None:
        left = self.producer.flush(120)
        if left or self.delivered.failed:
            raise RuntimeError(f"input: {left} unsent, {self.delivered.failed} failed")


def produce_all(kafka: KafkaSettings, log: list[Event]) -> int:
    producer = InputProducer(kafka)
    for count, (topic, key, value) in enumerate(log, start=1):
        producer.send(topic, key, value)
        if count % 1000 == 0:
            producer.producer.poll(0)
    producer.flush()
    return len(producer.delivered.times)


# -- reading -----------------------------------------------------------------------------


def read_topic(kafka: KafkaSettings, topic: str) -> list[Any]:
    """Every message of a topic from the beginning to its current end."""
    consumer = Consumer(kafka.reader_config(topic))
    name = kafka.topic(topic)
    metadata = consumer.list_topics(name, timeout=10)
    ends = {}
    for partition in metadata.topics[name].partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(name, partition), timeout=10)
        if high > low:
            ends[partition] = high
    consumer.assign([TopicPartition(name, p, 0) for p in ends])
    out = []
    deadline = time.monotonic() + 120
    while ends and time.monotonic() < deadline:
        for message in consumer.consume(1000, 0.5):
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise RuntimeError(message.error())
            out.append(message)
            if message.offset() + 1 >= ends.get(message.partition(), 0):
                ends.pop(message.partition(), None)
    consumer.close()
    if ends:
        raise RuntimeError(f"{name}: could not read to the end")
    return out


class Lag:
    """Input messages not yet committed by a group."""

    def __init__(self, kafka: KafkaSettings, group: str, partitions: int) -> None:
        self.consumer = Consumer({**kafka.base_config(), "group.id": group})
        self.tps = [
            TopicPartition(kafka.topic(t), p) for t in INPUTS for p in range(partitions)
        ]

    def __call__(self) -> int:
        total = 0
        for tp in self.consumer.committed(self.tps, timeout=10):
            _, high = self.consumer.get_watermark_offsets(tp, timeout=10)
            total += high - max(tp.offset, 0)
        return total

    def close(self) -> None:
        self.consumer.close()


def wait_caught_up(
    lag: Lag, process: subprocess.Popen[bytes], log: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while lag() > 0:
        if process.poll() is not None:
            raise RuntimeError(f"the worker ended ({process.returncode}): see {log}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"not caught up after {timeout:.0f} s: see {log}")
        time.sleep(0.25)


def wait_assigned(process: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while "assigned partitions" not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the worker did not start: {tail}")
        time.sleep(0.2)


# -- (a) the bare pipe -------------------------------------------------------------------


def bare_pipe(kafka: KafkaSettings, events: int, config: WorkerConfig) -> float:
    """Seconds from the first message consumed to the last delivered and committed."""
    group = kafka.topic_prefix.rstrip(".")
    consumer = Consumer({
        **kafka.base_config(),
        **kafka.reader_config("posts"),
        "group.id": group,
        "enable.auto.commit": True,
        "auto.commit.interval.ms": config.commit_ms,
        "enable.auto.offset.store": False,
        "enable.partition.eof": False,
        "auto.offset.reset": "earliest",
    })
    producer = Producer({
        **kafka.base_config(),
        "acks": "all",
        "enable.idempotence": True,
        "compression.type": "lz4",
        "message.max.bytes": 5_242_880,
    })
    out = kafka.topic("eligibility-audit")
    consumer.subscribe([kafka.topic(t) for t in INPUTS])
    moved, start = 0, None
    deadline = time.monotonic() + 600
    while moved < events and time.monotonic() < deadline:
        batch = consumer.consume(config.batch_size, config.within_ms / 1000)
        if not batch:
            continue
        if start is None:
            start = time.monotonic()
        for message in batch:
            if message.error():
                raise RuntimeError(message.error())
            while True:
                try:
                    producer.produce(out, value=message.value(), key=message.key(),
                                     headers=message.headers())
                    break
                except BufferError:
                    producer.poll(0.05)
        if producer.flush(60):  # every delivery of the batch acknowledged, as the worker does
            raise RuntimeError("pipe: deliveries not acknowledged")
        consumer.store_offsets(offsets=[
            TopicPartition(m.topic(), m.partition(), m.offset() + 1) for m in batch
        ])
        moved += len(batch)
    consumer.commit(asynchronous=False)
    seconds = time.monotonic() - (start or time.monotonic())
    consumer.close()
    if moved < events:
        raise RuntimeError(f"pipe moved {moved} of {events}")
    return seconds


# -- (b) the worker catching up ----------------------------------------------------------


def worker_catch_up(
    bench: Bench, kafka: KafkaSettings, log_events: list[Event], config: WorkerConfig,
    profile: Path | None = None,
) -> tuple[int, float, Path]:
    """(events, seconds from the first audit record to the last, worker log)."""
    events = produce_all(kafka, log_events)
    process, log = bench.start_worker(kafka, config, profile)
    lag = Lag(kafka, kafka.topic_prefix.rstrip("."), bench.partitions)
    try:
        wait_caught_up(lag, process, log, timeout=1800)
    finally:
        lag.close()
    bench.stop_worker(process, timeout=60)
    stamps = [m.timestamp()[1] for m in read_topic(kafka, "eligibility-audit")]
    return events, (max(stamps) - min(stamps)) / 1000, log


# -- (c) and (d): latency under load -----------------------------------------------------


class ViewWatcher(threading.Thread):
    """Follows training-ready while the load runs: the posts now in the view, newest last."""

    def __init__(self, kafka: KafkaSettings, partitions: int) -> None:
        super().__init__(daemon=True)
        self.consumer = Consumer(kafka.reader_config("training-ready"))
        name = kafka.topic("training-ready")
        self.consumer.assign([TopicPartition(name, p, 0) for p in range(partitions)])
        self.in_view: set[str] = set()
        self.recent: deque[str] = deque(maxlen=5000)
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for message in self.consumer.consume(500, 0.1):
                if message.error():
                    continue
                post_id = message.key().decode()
                with self.lock:
                    if message.value() is None:
                        self.in_view.discard(post_id)
                    else:
                        self.in_view.add(post_id)
                        self.recent.append(post_id)
        self.consumer.close()

    def pick(self, owner: dict[str, str], objected: set[str]) -> str | None:
        """An account with a post in the view that was not objected to yet."""
        with self.lock:
            for post_id in reversed(self.recent):
                account = owner.get(post_id)
                if post_id in self.in_view and account and account not in objected:
                    return account
        return None


@dataclass
class LatencyResult:
    rate: float
    events: int
    publish_ms: list[float]
    publish_unmatched: int
    retract_ms: list[float]
    objections: int
    objections_without_retraction: int
    log: Path
    worker_cpu: float  # cores used during the load (1.0: one core busy)
    bench_cpu: float  # the same for this process (producer and view watcher)


def latency_under_load(
    bench: Bench, kafka: KafkaSettings, config: WorkerConfig, rate: float, seconds: float,
    objections_per_s: float, seed: int, warmup: float,
) -> LatencyResult:
    """Inputs produced in the first `warmup` seconds are sent but not measured."""
    total = int(rate * (warmup + seconds))
    events = make_log(total + 1, seed)[:total]
    owner: dict[str, str] = {}  # post_id -> account_id, from the posts we send
    for topic, _, value in events:
        if topic == "posts" and value:
            try:
                payload = orjson.loads(value)
            except orjson.JSONDecodeError:
                continue
            if (isinstance(payload, dict) and isinstance(payload.get("post_id"), str)
                    and isinstance(payload.get("account_id"), str)):
                owner[payload["post_id"]] = payload["account_id"]
    process, log = bench.start_worker(kafka, config)
    wait_assigned(process, log)
    watcher = ViewWatcher(kafka, bench.partitions)
    watcher.start()
    producer = InputProducer(kafka)
    objection_at: dict[tuple[int, int], int] = {}  # (partition, offset) -> CreateTime

    def objection_sent(error: KafkaError | None, message: Any) -> None:
        if error is None:
            objection_at[(message.partition(), message.offset())] = message.timestamp()[1]

    objected: set[str] = set()
    bucket = TokenBucket(rate)
    every = 1 / objections_per_s if objections_per_s > 0 else float("inf")
    measured_from = time.monotonic() + warmup
    measured_from_ms = int((time.time() + warmup) * 1000)  # against CreateTime
    next_objection = measured_from
    cpu_start: tuple[float, float, float] | None = None
    try:
        for count, (topic, key, value) in enumerate(events):
            wait = bucket.take()
            # Sleep only in steps of 5 ms (the bucket keeps the debt): poll() counts whole
            # milliseconds, so waiting out each 0.3 ms would spin a core.
            if wait > 0.005:
                end = time.monotonic() + wait
                while (left := end - time.monotonic()) > 0:
                    producer.producer.poll(left)
            producer.send(topic, key, value)
            if count % 100 == 0:
                producer.producer.poll(0)
            if cpu_start is None and time.monotonic() >= measured_from:
                cpu_start = (_cpu_seconds(process.pid), time.process_time(), time.monotonic())
            if time.monotonic() >= next_objection:
                next_objection += every
                account = watcher.pick(owner, objected)
                if account is not None:
                    objected.add(account)
                    payload = orjson.dumps({
                        "event_id": f"bench-objection-{uuid.uuid4().hex}",
                        "type": "objection.filed",
                        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
                        + f".{int(time.time() * 1000) % 1000:03d}Z",
                        "account_id": account,
                    })
                    producer.send("objections", account.encode(), payload, objection_sent)
        producer.flush()
        if cpu_start is None:
            raise RuntimeError("the load ended within the warm-up")
        load_s = time.monotonic() - cpu_start[2]
        worker_cpu = (_cpu_seconds(process.pid) - cpu_start[0]) / load_s
        bench_cpu = (time.process_time() - cpu_start[1]) / load_s
        lag = Lag(kafka, kafka.topic_prefix.rstrip("."), bench.partitions)
        try:
            wait_caught_up(lag, process, log, timeout=600)
        finally:
            lag.close()
    finally:
        watcher.stop.set()
        watcher.join(5)
    bench.stop_worker(process)

    # Publications: audit "published" (post_id, event_id, source) -> training record.
    published_from: dict[tuple[str, str], tuple[str, int, int]] = {}
    retracted_by: dict[tuple[int, int], list[str]] = defaultdict(list)
    for message in read_topic(kafka, "eligibility-audit"):
        record = orjson.loads(message.value())
        source = record.get("source")
        if source is None:
            continue
        if record["record"] == "post" and record["outcome"] == "published":
            where = (source["topic"], source["partition"], source["offset"])
            published_from.setdefault((record["post_id"], record["event_id"]), where)
        elif record["record"] == "retraction" and source["topic"] == "objections":
            retracted_by[(source["partition"], source["offset"])].append(record["post_id"])
    publish_ms, unmatched = [], 0
    tombstones: dict[str, list[int]] = defaultdict(list)
    seen: set[tuple[str, str]] = set()
    for message in read_topic(kafka, "training-ready"):
        stamp = message.timestamp()[1]
        if message.value() is None:
            tombstones[message.key().decode()].append(stamp)
            continue
        record = orjson.loads(message.value())
        version = (record["post_id"], record["event_id"])
        if version in seen:
            continue
        seen.add(version)
        source_at = producer.delivered.times.get(published_from.get(version, ("", -1, -1)))
        if source_at is None:
            unmatched += 1  # e.g. a record forwarded to its key's partition first
            continue
        if source_at < measured_from_ms:
            continue  # warm-up
        publish_ms.append(stamp - source_at)
    retract_ms, without = [], 0
    for where, sent_at in objection_at.items():
        firsts = [
            min((t for t in tombstones.get(post_id, ()) if t >= sent_at), default=None)
            for post_id in retracted_by.get(where, ())
        ]
        firsts = [t for t in firsts if t is not None]
        if firsts:
            retract_ms.append(min(firsts) - sent_at)
        else:
            without += 1
    measured = sum(1 for t in producer.delivered.times.values() if t >= measured_from_ms)
    return LatencyResult(rate, measured, publish_ms, unmatched,
                         retract_ms, len(objection_at), without, log, worker_cpu, bench_cpu)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- reporting ---------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q / 100 * len(ordered) + 0.999999) - 1))]


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


BATCH_LINE = re.compile(
    r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})[^\]]*\].*batch: (\d+) applied"
    r"(?:.* in ([\d.]+) ms)?"
)


def batch_summary(log: Path) -> str:
    """From the worker's own log: batches, their mean size, the spacing between them and
    (when the worker logs it) the time each took."""
    stamps, sizes, took = [], [], []
    for line in log.read_text(errors="replace").splitlines():
        match = BATCH_LINE.search(line)
        if match:
            whole = time.mktime(time.strptime(match.group(1), "%Y-%m-%d %H:%M:%S"))
            stamps.append(whole + int(match.group(2)) / 1000)
            sizes.append(int(match.group(3)))
            if match.group(4):
                took.append(float(match.group(4)))
    if len(stamps) < 2:
        return "worker log: fewer than two batch lines"
    gaps = [(b - a) * 1000 for a, b in itertools.pairwise(stamps)]
    text = (
        f"worker log: {len(sizes)} batches, mean {sum(sizes) / len(sizes):.0f} applied/batch, "
        f"batch-to-batch p50 {percentile(gaps, 50):.0f} ms, p99 {percentile(gaps, 99):.0f} ms"
    )
    if took:
        text += (f"; time in a batch p50 {percentile(took, 50):.0f} ms, "
                 f"p99 {percentile(took, 99):.0f} ms")
    return text


SKIP_FRAMES = (
    "asyncio/", "runpy.py", "cProfile.py", "threading.py", "selectors.py", "<string>", "<frozen",
)


BREAKDOWN = {  # label -> (file, function) whose cumulative time it is
    "Faust fetch/dispatch": ("faust/transport/consumer.py", "_drain_messages"),
    "decode": ("stream/core/engine.py", "decode"),
    "Redis load": ("stream/store/redis_store.py", "load"),
    "engine apply": ("stream/core/engine.py", "apply_decoded"),
    "Redis commit": ("stream/store/redis_store.py", "commit_partitions"),
    "fence check": ("stream/store/redis_store.py", "fence_holds"),
    "output sends": ("stream/app.py", "_send"),
    "idle (epoll)": ("~", "<method 'poll' of 'select.epoll' objects>"),
}


def profile_summary(path: Path, top: int = 15) -> list[str]:
    stats = pstats.Stats(str(path))
    total = stats.total_tt  # type: ignore[attr-defined]
    rows = []
    for (filename, line, name), row in stats.stats.items():  # type: ignore[attr-defined]
        _, calls, _, cumulative, _ = row
        if any(part in filename for part in SKIP_FRAMES) or cumulative > 0.95 * total:
            continue  # the event loop and the wrappers around everything
        rows.append((cumulative, calls, _short(filename), line, name))
    rows.sort(key=lambda row: (-row[0], row[1]))
    kept: list[tuple[float, int, str, int, str]] = []
    for row in rows:  # a frame that only calls the next one says nothing new
        if kept and (row[1], round(row[0], 2)) == (kept[-1][1], round(kept[-1][0], 2)):
            kept[-1] = row
        else:
            kept.append(row)
    rows = kept
    parts = []
    for label, (suffix, function) in BREAKDOWN.items():
        seconds = sum(
            row[3] for (filename, _, name), row in stats.stats.items()  # type: ignore[attr-defined]
            if filename.endswith(suffix) and name == function
        )
        parts.append(f"{label} {100 * seconds / total:.0f}%")
    out = [f"cProfile of the worker catching up ({total:.1f} s profiled, wall, with start, "
           "stop and idle; event loop and wrappers at ~100% left out), top by cumulative:"]
    for cumulative, calls, filename, line, name in rows[:top]:
        out.append(f"  {cumulative:7.2f} s {100 * cumulative / total:5.1f}% {calls:>8} "
                   f"{filename}:{line}({name})")
    out.append("  in short: " + ", ".join(parts))
    return out


def _short(filename: str) -> str:
    for marker in ("site-packages/", str(ROOT) + "/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


# -- main --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--settings", default="500/50/1000,2000/50/1000",
                        help="BATCH_SIZE/BATCH_WITHIN_MS/COMMIT_INTERVAL_MS, comma-separated; "
                             "(a), (c), (d) and the profile use the first")
    parser.add_argument("--latency-settings", default=None,
                        help="the worker settings of (c) and (d) (default: the first of "
                             "--settings; the rate is still 0.5 x that one's)")
    parser.add_argument("--load", type=float, default=0.5, help="(c): fraction of (b)'s rate")
    parser.add_argument("--seconds", type=float, default=20.0, help="(c): measured load")
    parser.add_argument("--warmup", type=float, default=5.0,
                        help="(c): seconds of load before it, not measured")
    parser.add_argument("--objections-per-s", type=float, default=5.0)
    parser.add_argument("--profile", choices=("auto", "always", "never"), default="auto")
    parser.add_argument("--brokers", default=os.environ.get("ELIGIBILITY_KAFKA_BROKERS",
                                                            "127.0.0.1:19092"))
    parser.add_argument("--redis", default=os.environ.get("ELIGIBILITY_REDIS_URL",
                                                          "redis://127.0.0.1:16379/0"))
    args = parser.parse_args(argv)
    configs = [WorkerConfig.parse(s) for s in args.settings.split(",")]

    def interrupted(signum: int, _: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)  # also when started with SIGINT ignored
    bench = Bench(args.brokers, args.redis, args.partitions)
    try:
        for line in run(bench, args, configs, lambda text: print(text, flush=True)):
            print(line, flush=True)
    except KeyboardInterrupt:
        print("interrupted: cleaning up", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not stop cleanup
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        bench.cleanup()
    return 0


def run(
    bench: Bench, args: argparse.Namespace, configs: list[WorkerConfig],
    say: Callable[[str], None],
) -> Iterator[str]:
    load_at_start = os.getloadavg()[0]
    log_events = make_log(args.events, args.seed)
    say(f"run {bench.run_id}: {len(log_events)} input messages from {args.events} synthetic "
        f"events (seed {args.seed}), {args.partitions} partitions, worker logs in {bench.tmp}")

    kafka = bench.fresh("a")
    events = produce_all(kafka, log_events)
    pipe_s = bare_pipe(kafka, events, configs[0])
    pipe_rate = events / pipe_s
    say(f"(a) bare pipe: {events} in {pipe_s:.2f} s")
    rows = [("(a) bare confluent-kafka pipe", events, pipe_s, pipe_rate, 1.0, "")]
    worker_rates = []
    for index, config in enumerate(configs):
        kafka = bench.fresh(f"b{index}")
        done, seconds, _ = worker_catch_up(bench, kafka, log_events, config)
        rate = done / seconds
        worker_rates.append(rate)
        ratio = rate / pipe_rate
        say(f"(b) worker {config}: {done} in {seconds:.2f} s")
        rows.append((f"(b) worker {config}", done, seconds, rate, ratio,
                     f"target >= {TARGET_RATIO}: {verdict(ratio >= TARGET_RATIO)}"))

    config = WorkerConfig.parse(args.latency_settings) if args.latency_settings else configs[0]
    load = args.load * worker_rates[0]
    latency = latency_under_load(bench, bench.fresh("c"), config, load, args.seconds,
                                 args.objections_per_s, args.seed + 1, args.warmup)
    load_after_c = os.getloadavg()[0]
    p50, p99 = percentile(latency.publish_ms, 50), percentile(latency.publish_ms, 99)
    r50, r99 = percentile(latency.retract_ms, 50), percentile(latency.retract_ms, 99)
    ratio_ok = worker_rates[0] / pipe_rate >= TARGET_RATIO
    publish_ok = p99 <= TARGET_PUBLISH_P99_MS
    retract_ok = bool(latency.retract_ms) and r99 <= TARGET_RETRACT_P99_MS

    out = ["", f"{'phase':<34}{'events':>8}{'seconds':>9}{'events/s':>10}{'ratio':>7}  target"]
    for name, n, seconds, rate, ratio, note in rows:
        out.append(f"{name:<34}{n:>8}{seconds:>9.2f}{rate:>10.0f}{ratio:>7.2f}  {note}")
    out += [
        f"(c) publication latency, worker {config}, at {latency.rate:.0f} events/s "
        f"({args.load} x (b) {configs[0]}, "
        f"{latency.events} events in {args.seconds:.0f} s after {args.warmup:.0f} s warm-up): "
        f"n={len(latency.publish_ms)} "
        f"p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {max(latency.publish_ms, default=0):.0f} ms "
        f"[target p99 <= {TARGET_PUBLISH_P99_MS:.0f} ms: {verdict(publish_ok)}]"
        + (f" ({latency.publish_unmatched} unmatched)" if latency.publish_unmatched else ""),
        f"(d) objection -> first tombstone: {latency.objections} objections, "
        f"n={len(latency.retract_ms)} p50 {r50:.0f} ms, p99 {r99:.0f} ms, "
        f"max {max(latency.retract_ms, default=0):.0f} ms "
        f"[target p99 <= {TARGET_RETRACT_P99_MS:.0f} ms: {verdict(retract_ok)}]"
        + (f" ({latency.objections_without_retraction} retracted nothing)"
           if latency.objections_without_retraction else ""),
        "settings: ELIGIBILITY_BATCH_SIZE/BATCH_WITHIN_MS/COMMIT_INTERVAL_MS as in the rows; "
        "(a) used the first for its batch and commit interval",
        batch_summary(latency.log) + " (during (c))",
        f"CPU during (c): worker {latency.worker_cpu:.2f} cores, this bench's producer and "
        f"view watcher {latency.bench_cpu:.2f} cores ({os.cpu_count()} on the machine; 1-min "
        f"load average {load_at_start:.1f} at the start, {load_after_c:.1f} after (c))",
    ]
    yield from out
    missed = not (ratio_ok and publish_ok and retract_ok)
    if args.profile == "always" or (args.profile == "auto" and missed):
        profile = bench.tmp / "worker.prof"
        kafka = bench.fresh("p")
        say(f"profiling the worker {configs[0]} under cProfile on the same log ...")
        worker_catch_up(bench, kafka, log_events, configs[0], profile)
        if profile.exists():
            yield from profile_summary(profile)
        else:
            yield "cProfile wrote no profile (the worker did not exit normally)"


if __name__ == "__main__":
    sys.exit(main())
