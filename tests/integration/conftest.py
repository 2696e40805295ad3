"""Fixtures for tests that need the real local Kafka and Redis.

Start them with ``deploy/services.sh start`` (or ``make services-up``) and point the tests at
them with::

    ELIGIBILITY_TEST_KAFKA=127.0.0.1:19092 ELIGIBILITY_TEST_REDIS=redis://127.0.0.1:16379/0

(``make test`` does both). Without these variables the tests are skipped, except in CI
(``CI`` set), where the services are required and the tests fail instead.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

KAFKA_ENV = "ELIGIBILITY_TEST_KAFKA"
REDIS_ENV = "ELIGIBILITY_TEST_REDIS"
_HERE = Path(__file__).parent

NewTopicFactory = Callable[..., str]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/integration needs the services: mark it ``services``."""
    for item in items:
        if _HERE in item.path.parents:
            item.add_marker(pytest.mark.services)


def _required_env(name: str, what: str) -> str:
    value = os.environ.get(name, "").strip()
    if value:
        return value
    msg = (
        f"{name} is not set: {what} is needed (run `deploy/services.sh start` and set "
        f"{name}, or use `make test`)"
    )
    if os.environ.get("CI"):
        pytest.fail(f"{msg}; services are required in CI", pytrace=False)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """``host:port`` of the local Kafka broker; checked with a real metadata request."""
    bootstrap = _required_env(KAFKA_ENV, "a Kafka broker")
    try:
        metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    except KafkaException as exc:
        pytest.fail(f"Kafka at {bootstrap} ({KAFKA_ENV}) does not answer: {exc}", pytrace=False)
    if not metadata.brokers:
        pytest.fail(f"Kafka at {bootstrap} ({KAFKA_ENV}) reports no brokers", pytrace=False)
    return bootstrap


@pytest.fixture(scope="session")
def redis_url() -> str:
    """``redis://`` URL of the local Redis; checked with PING."""
    url = _required_env(REDIS_ENV, "a Redis server")
    client = redis.Redis.from_url(url, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at {url} ({REDIS_ENV}) does not answer: {exc}", pytrace=False)
    finally:
        client.close()
    return url


@pytest.fixture
def key_prefix() -> str:
    """A fresh namespace for Redis keys, unique per test (``test:<uuid>:``)."""
    return f"test:{uuid.uuid4().hex}:"


@pytest.fixture
def redis_client(redis_url: str, key_prefix: str) -> Iterator[redis.Redis]:
    """A client on the test Redis. Use ``key_prefix`` for every key: the keys under it are
    deleted afterwards (the DB is shared with other tests and developers, so no FLUSHDB)."""
    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        keys = list(client.scan_iter(match=f"{key_prefix}*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
        client.close()


@pytest.fixture
def kafka_admin(kafka_bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": kafka_bootstrap})


@pytest.fixture
def new_topic(kafka_admin: AdminClient) -> Iterator[NewTopicFactory]:
    """Factory: ``new_topic(partitions=1, config=None, prefix="test")`` creates a uuid-named
    topic, waits until every partition has a leader, returns its name; the topics are deleted
    at teardown."""
    created: list[str] = []

    def create(
        partitions: int = 1, config: dict[str, str] | None = None, prefix: str = "test"
    ) -> str:
        name = f"{prefix}-{uuid.uuid4().hex}"
        spec = NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})
        kafka_admin.create_topics([spec], operation_timeout=30)[name].result(timeout=30)
        created.append(name)
        _wait_for_leaders(kafka_admin, name, partitions)
        return name

    yield create

    if created:
        for future in kafka_admin.delete_topics(created, operation_timeout=30).values():
            future.result(timeout=30)


def _wait_for_leaders(admin: AdminClient, topic: str, partitions: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        meta = admin.list_topics(topic, timeout=10).topics.get(topic)
        if (
            meta is not None
            and meta.error is None
            and len(meta.partitions) == partitions
            and all(p.leader >= 0 for p in meta.partitions.values())
        ):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topic {topic}: partitions have no leader after {timeout} s")
        time.sleep(0.1)
