"""Worker processes on the real Kafka and Redis, and the checks every system test makes.

Each test gets a `Deployment`: its own topic prefix, state prefix and consumer
group (uuid-named), topics created from `topics/`, and helpers to start and
kill workers, produce input, and read back the view, the audit and the
dead letters. The two checks of the worker issue live here:

- the Kafka view equals the offline replay of the input messages in the order
  the workers applied them (rebuilt from the audit records' source and seq);
- the Kafka view holds no post that is ineligible under the final state.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
import redis
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from stream.core.decode import Message
from stream.core.engine import Engine, Publish
from stream.core.policy import DEFAULT_POLICY
from stream.core.pseudonym import Pseudonymizer
from stream.kafka.client import KafkaSettings
from stream.kafka.topics import create_topics
from stream.store.memory import MemoryStore
from tests.integration.conftest import kafka_bootstrap, redis_url  # noqa: F401 (fixtures)

ROOT = Path(__file__).parents[2]
TEST_KEY = "system-test-pseudonym-key-0123456789"
INPUTS = ("posts", "objections", "accounts")
RETRACT_HEADER = "eligibility-retract-posts"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.services)


def free_port() -> int:
    """A free local port below the kernel's ephemeral range (32768-60999 here),
    so no client socket takes it meanwhile: the harness's random web ports
    (20000-39999) made a worker fail to bind once."""
    for _ in range(100):
        port = random.randrange(20_000, 32_768)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise AssertionError("no free port")


def wait_for(what: str, predicate: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)
    return result


def terminate(process: subprocess.Popen[bytes] | None) -> None:
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


class FixedClock:
    def __init__(self, now_us: int) -> None:
        self._now = now_us

    def now_us(self) -> int:
        return self._now


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log: Path
    stopped: bool = False  # on purpose: its exit is no failure
    web_port: int = 0  # its /metrics

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)

    def stop(self) -> None:
        self.stopped = True
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def text(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Deployment:
    bootstrap: str
    redis_url: str
    tmp: Path
    partitions: int = 3
    name: str = field(default_factory=lambda: f"sys-{uuid.uuid4().hex[:10]}")
    workers: list[Worker] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.kafka = KafkaSettings(brokers=self.bootstrap, topic_prefix=f"{self.name}.")
        admin = AdminClient(self.kafka.admin_config())
        report = create_topics(admin, self.kafka, partitions=self.partitions)
        assert not report.problems, report.problems

    # -- workers ---------------------------------------------------------------

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            ELIGIBILITY_KAFKA_BROKERS=self.bootstrap,
            ELIGIBILITY_TOPIC_PREFIX=f"{self.name}.",
            ELIGIBILITY_REDIS_URL=self.redis_url,
            ELIGIBILITY_STATE_PREFIX=self.name,
            ELIGIBILITY_GROUP_ID=self.name,
            ELIGIBILITY_PSEUDONYM_KEY=TEST_KEY,
            ELIGIBILITY_SESSION_TIMEOUT_MS="6000",
            ELIGIBILITY_COMMIT_INTERVAL_MS="200",
            # below the ephemeral port range (32768-60999), where a clash could occur
            ELIGIBILITY_WEB_PORT=str(free_port()),
        )
        env.update(extra)
        return env

    def start_worker(self, **extra: str) -> Worker:
        log = self.tmp / f"worker-{len(self.workers)}.log"
        env = self.env(**extra)
        process = subprocess.Popen(
            [sys.executable, "-m", "stream", "worker", "--loglevel", "info"],
            cwd=ROOT,
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        worker = Worker(process, log, web_port=int(env["ELIGIBILITY_WEB_PORT"]))
        self.workers.append(worker)
        return worker

    def wait_assigned(self, worker: Worker, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while "assigned partitions" not in worker.text():
            assert worker.process.poll() is None, worker.text()[-3000:]
            assert time.monotonic() < deadline, worker.text()[-3000:]
            time.sleep(0.2)

    def stop_all(self) -> None:
        for worker in self.workers:
            worker.stop()

    # -- input -------------------------------------------------------------------

    def producer(self) -> Producer:
        return Producer(self.kafka.producer_config())

    def produce(self, messages: list[Message], producer: Producer | None = None) -> None:
        """Input messages as an upstream producer sends them (murmur2, keyed)."""
        own = producer is None
        producer = producer or self.producer()
        for message in messages:
            value = message.value
            raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
            producer.produce(
                self.kafka.topic(message.topic),
                value=raw,
                key=None if message.key is None else message.key.encode(),
            )
            producer.poll(0)
        if own:
            assert producer.flush(60) == 0

    def produce_located(self, topic: str, key: bytes | None, value: bytes | None,
                        partition: int | None = None,
                        headers: list[tuple[str, bytes]] | None = None) -> tuple[int, int]:
        """Produce one raw message (the upstream producer's config) and return the
        (partition, offset) the broker gave it."""
        producer = self.producer()
        where: list[tuple[int, int]] = []
        errors: list[Any] = []

        def delivered(error: Any, message: Any) -> None:
            if error is not None:
                errors.append(error)
            else:
                where.append((message.partition(), message.offset()))

        kwargs: dict[str, Any] = {"key": key, "value": value, "on_delivery": delivered}
        if partition is not None:
            kwargs["partition"] = partition
        if headers:
            kwargs["headers"] = headers
        producer.produce(self.kafka.topic(topic), **kwargs)
        assert producer.flush(30) == 0
        assert not errors and len(where) == 1, errors
        return where[0]

    def produce_raw(self, topic: str, key: bytes | None, value: bytes | None,
                    partition: int | None = None) -> None:
        producer = self.producer()
        kwargs: dict[str, Any] = {"key": key, "value": value}
        if partition is not None:
            kwargs["partition"] = partition
        producer.produce(self.kafka.topic(topic), **kwargs)
        assert producer.flush(30) == 0

    # -- output ------------------------------------------------------------------

    def read(self, topic: str) -> list[Any]:
        """Every message of a topic, from the beginning to its current end."""
        consumer = Consumer(self.kafka.reader_config(topic))
        name = self.kafka.topic(topic)
        metadata = consumer.list_topics(name, timeout=10)
        ends = {}
        for partition in metadata.topics[name].partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(name, partition), timeout=10)
            if high > low:
                ends[partition] = high
        consumer.assign([TopicPartition(name, p, 0) for p in ends])
        out = []
        deadline = time.monotonic() + 60
        while ends and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise AssertionError(message.error())
            out.append(message)
            if message.offset() + 1 >= ends.get(message.partition(), 0):
                ends.pop(message.partition(), None)
        consumer.close()
        assert not ends, f"{topic}: could not read to the end"
        return out

    def view(self) -> dict[str, bytes]:
        view: dict[str, bytes] = {}
        for message in self.read("training-ready"):
            key = message.key().decode()
            if message.value() is None:
                view.pop(key, None)
            else:
                view[key] = message.value()
        return view

    def audit(self) -> list[dict[str, Any]]:
        return [orjson.loads(m.value()) for m in self.read("eligibility-audit")]

    def lag(self) -> int:
        """Messages of the inputs not yet committed by the workers' group."""
        consumer = Consumer({**self.kafka.base_config(), "group.id": self.name})
        total = 0
        for topic in INPUTS:
            name = self.kafka.topic(topic)
            tps = [TopicPartition(name, p) for p in range(self.partitions)]
            for tp in consumer.committed(tps, timeout=10):
                _, high = consumer.get_watermark_offsets(tp, timeout=10)
                total += high - max(tp.offset, 0)
        consumer.close()
        return total

    def wait_caught_up(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while (lag := self.lag()) > 0:
            for worker in self.workers:
                if not worker.stopped and worker.process.poll() not in (None, -9, -15):
                    raise AssertionError(f"a worker died: {worker.text()[-3000:]}")
            assert time.monotonic() < deadline, f"lag {lag} after {timeout} s"
            time.sleep(0.5)

    # -- the two checks ------------------------------------------------------------

    def inputs(self) -> dict[tuple[str, int, int], tuple[Message, list[str] | None]]:
        """Every input message by (topic, partition, offset), with the posts it
        names if it is a retraction request another partition's worker sent."""
        inputs = {}
        for topic in INPUTS:
            for m in self.read(topic):
                key = m.key()
                headers = dict(m.headers() or [])
                request = headers.get(RETRACT_HEADER)
                inputs[(topic, m.partition(), m.offset())] = (
                    Message(
                        topic=topic,
                        key=None if key is None else key.decode("utf-8", "surrogateescape"),
                        value=m.value(),
                        partition=m.partition(),
                        offset=m.offset(),
                    ),
                    None if request is None else orjson.loads(request),
                )
        return inputs

    def check(self) -> dict[str, bytes]:
        """Both checks, for workers run with the default policy; returns the view."""
        return self.check_with(DEFAULT_POLICY)

    def check_with(self, policy: Any, earlier: tuple[Any, ...] = ()) -> dict[str, bytes]:
        """The two checks (module docstring) for workers run with `policy`;
        returns the view. Messages are replayed in the order the workers
        applied them: per input partition by the audit's seq (accounts of
        different partitions are independent, so their interleaving does not
        matter). With `earlier` policies (the workers ran with them before),
        each message is replayed under the policy its audit record names and,
        as SPEC "A new policy" says, a partition's view is swept by the new
        policy where its version changes, and at the end by `policy` (the one
        in force) if the partition was last judged by another."""
        from stream.worker.partitioning import partition_for

        view = self.view()
        clock = FixedClock(time.time_ns() // 1000)
        engines = {
            p.version: Engine(p, Pseudonymizer(TEST_KEY.encode()), clock)
            for p in (*earlier, policy)
        }
        engine = engines[policy.version]
        judged: dict[tuple[str, int, int], tuple[int, str]] = {}
        for record in self.audit():
            source, seq = record.get("source"), record.get("seq")
            if source is None or seq is None:
                continue
            where = (source["topic"], source["partition"], source["offset"])
            judged.setdefault(where, (seq, record["policy"]))
        unknown = {v for _, v in judged.values()} - set(engines)
        assert not unknown, f"messages applied under unexpected policy versions {unknown}"
        inputs = self.inputs()
        store = MemoryStore()
        offline: dict[str, bytes] = {}

        def play(changes: list[Any]) -> None:
            for change in changes:
                if isinstance(change, Publish):
                    offline[change.post_id] = msgspec.json.encode(change.record)
                else:
                    offline.pop(change.post_id, None)

        def sweep(partition: int, by: Engine) -> None:
            mine = [a for a, posts in store.views.items()
                    if posts and partition_for(a.encode(), self.partitions) == partition]
            play(by.sweep(store, mine).changes)

        version: dict[int, str] = {}
        for where in sorted(judged, key=lambda w: (w[1], judged[w][0])):
            partition, (_, applied_by) = where[1], judged[where]
            if version.setdefault(partition, applied_by) != applied_by:
                sweep(partition, engines[applied_by])
                version[partition] = applied_by
            message, request = inputs[where]
            by = engines[applied_by]
            if request is not None:
                play(by.retract_named(message, request, store).changes)
            else:
                play(by.apply(message, store).changes)
        for partition in range(self.partitions):
            if version.get(partition, engine.policy_version) != engine.policy_version:
                sweep(partition, engine)
        assert set(view) == set(offline), (
            f"only in Kafka: {sorted(set(view) - set(offline))[:10]}, "
            f"only offline: {sorted(set(offline) - set(view))[:10]}"
        )
        assert view == offline
        for post_id in view:
            post = store.posts[post_id]
            assert not post.deleted
            assert store.view_get(post.owner, post_id) is not None
            account = store.accounts.get(post.owner)
            assert engine.rule.account_reasons(account, post.created_at) == (), post_id
        return view


class RedisServer:
    """A redis-server of this test only, with an append-only file: stopped and started
    again, it has its data back."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.directory.mkdir(exist_ok=True)
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = (self.directory / "redis.log").open("ab")
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--daemonize", "no", "--save", "", "--appendonly", "yes",
             "--appendfsync", "always", "--dir", str(self.directory)],
            stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        try:
            wait_for("redis-server answering", lambda: self._ping(client), timeout=20)
        finally:
            client.close()

    def _ping(self, client: redis.Redis) -> bool:
        assert self.process is not None and self.process.poll() is None, "redis-server died"
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        terminate(self.process)  # SIGTERM: a clean shutdown, the AOF flushed

    def keys(self) -> int:
        client = redis.Redis.from_url(self.url)
        try:
            return int(client.dbsize())
        finally:
            client.close()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        if server.process is not None and server.process.poll() is None:
            server.process.kill()
            server.process.wait(10)


def drop_deployment(deployment: Deployment, redis_url: str) -> None:  # noqa: F811
    deployment.stop_all()
    admin = AdminClient(deployment.kafka.admin_config())
    names = [n for n in admin.list_topics(timeout=10).topics if n.startswith(deployment.name)]
    if names:
        for future in admin.delete_topics(names).values():
            future.result()
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"{deployment.name}:*", count=1000):
        client.delete(key)
    client.close()


@pytest.fixture
def deployment(kafka_bootstrap: str, redis_url: str, tmp_path: Path) -> Iterator[Deployment]:  # noqa: F811
    deployment = Deployment(kafka_bootstrap, redis_url, tmp_path)
    yield deployment
    drop_deployment(deployment, redis_url)
