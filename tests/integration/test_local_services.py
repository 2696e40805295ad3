"""Smoke tests of the real local services (deploy/services.sh): what the rest of the
integration suite takes for granted about Kafka and Redis."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest
import redis
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from confluent_kafka import Consumer, KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient, ConfigResource

NewTopicFactory = Callable[..., str]  # the `new_topic` fixture (conftest.py)

pytestmark = pytest.mark.services


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2), as a signed 32-bit int."""
    length = len(data)
    seed, m, r = 0x9747B28C, 0x5BD1E995, 24
    h = (seed ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = length % 4
    base = length - tail
    if tail == 3:
        h ^= data[base + 2] << 16
    if tail >= 2:
        h ^= data[base + 1] << 8
    if tail >= 1:
        h ^= data[base]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def kafka_partition(key: bytes, partitions: int) -> int:
    """The Java client's (and aiokafka's) default partition for a keyed record."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def produce_all(
    bootstrap: str, topic: str, records: list[tuple[bytes, bytes]], **extra: object
) -> list[Message]:
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            # librdkafka's default is consistent_random (CRC32); murmur2_random is the Java
            # client's / aiokafka's partitioner, so every client puts a key on the same partition.
            "partitioner": "murmur2_random",
            "linger.ms": 5,
            **extra,
        }
    )
    delivered: list[Message] = []
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(err)
        else:
            delivered.append(msg)

    for key, value in records:
        producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
        producer.poll(0)
    assert producer.flush(30) == 0, "messages still in the producer queue after 30 s"
    assert not errors, errors
    return delivered


def consume(bootstrap: str, topic: str, expected: int, timeout: float = 60) -> list[Message]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            # Needs the broker's group.min.session.timeout.ms lowered (deploy/kafka.sh: 1000).
            "session.timeout.ms": 1000,
            "heartbeat.interval.ms": 300,
        }
    )
    out: list[Message] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout
        while len(out) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            out.append(msg)
        if out:
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return out


def test_murmur2_matches_kafka_and_aiokafka() -> None:
    # Reference values from the Java client (kafka UtilsTest.testMurmur2).
    assert murmur2(b"21") == -973932308
    assert murmur2(b"foobar") == -790332482
    assert murmur2(b"a-little-bit-long-string") == -985981536
    assert murmur2(b"a-little-bit-longer-string") == -1486304829
    assert murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") == -58897971
    assert murmur2(b"abc") == 479470107
    for i in range(1000):
        key = f"account-{i}".encode()
        assert murmur2(key) & 0x7FFFFFFF == aiokafka_murmur2(key) & 0x7FFFFFFF


def test_kafka_keyed_roundtrip_and_partitioning(
    kafka_bootstrap: str, new_topic: NewTopicFactory
) -> None:
    partitions = 3
    topic = new_topic(partitions=partitions)
    records = [(f"account-{i}".encode(), f"value-{i}".encode()) for i in range(100)]

    delivered = produce_all(kafka_bootstrap, topic, records)
    assert len(delivered) == 100
    produced_on = {m.key(): m.partition() for m in delivered}
    for key, partition in produced_on.items():
        assert key is not None
        assert partition == kafka_partition(key, partitions), key
    assert len(set(produced_on.values())) == partitions, "100 keys should hit all 3 partitions"

    # The same key again goes to the same partition.
    second = {b"account-7": b"again", b"account-42": b"x"}
    again = produce_all(kafka_bootstrap, topic, list(second.items()))
    for msg in again:
        assert msg.partition() == produced_on[msg.key()]

    consumed = consume(kafka_bootstrap, topic, expected=102)
    assert len(consumed) == 102
    by_key: dict[bytes, list[bytes]] = {}
    for msg in consumed:
        key, value = msg.key(), msg.value()
        assert key is not None and value is not None
        assert msg.partition() == produced_on[key]
        by_key.setdefault(key, []).append(value)
    assert set(by_key) == {k for k, _ in records}
    for key, value in records:
        # Per-partition order is preserved, so per-key order is too.
        assert by_key[key] == [value, *([second[key]] if key in second else [])]


def test_kafka_accepts_2mib_messages(kafka_bootstrap: str, new_topic: NewTopicFactory) -> None:
    topic = new_topic()
    big = b"x" * (2 * 1024 * 1024)
    produce_all(kafka_bootstrap, topic, [(b"big", big)], **{"message.max.bytes": 4 * 1024 * 1024})
    [msg] = consume(kafka_bootstrap, topic, expected=1)
    assert msg.value() == big


def test_kafka_broker_settings(kafka_bootstrap: str, kafka_admin: AdminClient) -> None:
    broker_id = next(iter(kafka_admin.list_topics(timeout=10).brokers))
    resource = ConfigResource(ConfigResource.Type.BROKER, str(broker_id))
    configs = kafka_admin.describe_configs([resource])[resource].result(timeout=30)
    assert configs["auto.create.topics.enable"].value == "false"
    assert configs["group.min.session.timeout.ms"].value == "1000"
    assert configs["group.initial.rebalance.delay.ms"].value == "0"
    assert int(configs["message.max.bytes"].value) >= 4 * 1024 * 1024


def test_redis_basics(redis_client: redis.Redis, key_prefix: str) -> None:
    assert redis_client.ping() is True
    key = f"{key_prefix}greeting"
    assert redis_client.set(key, "hello") is True
    assert redis_client.get(key) == b"hello"
    assert redis_client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
