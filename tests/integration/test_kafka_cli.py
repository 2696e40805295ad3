"""`eligibility topics create|verify`, `replay LOG` (to Kafka) and `view` on the real broker.

Each test puts its topics under a fresh ELIGIBILITY_TOPIC_PREFIX and deletes them afterwards.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from click.testing import CliRunner, Result
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from stream.cli import main
from stream.kafka.client import SECURITY_ENV, KafkaSettings
from stream.kafka.produce import produce_log
from stream.kafka.topics import ALL_TOPICS, load_specs
from stream.kafka.view import read_view

pytestmark = pytest.mark.services
EXAMPLES = Path(__file__).parents[2] / "examples"
INPUTS = ("posts", "objections", "accounts")

Record = tuple[int, bytes | None, bytes | None]  # partition, key, value


@pytest.fixture
def prefix(
    kafka_bootstrap: str, kafka_admin: AdminClient, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """A fresh topic prefix in the environment; its topics are deleted afterwards."""
    prefix = f"test-{uuid.uuid4().hex[:16]}."
    monkeypatch.setenv("ELIGIBILITY_KAFKA_BROKERS", kafka_bootstrap)
    monkeypatch.setenv("ELIGIBILITY_TOPIC_PREFIX", prefix)
    for var in SECURITY_ENV:
        monkeypatch.delenv(var, raising=False)
    yield prefix
    names = [t for t in kafka_admin.list_topics(timeout=10).topics if t.startswith(prefix)]
    if names:
        for future in kafka_admin.delete_topics(names, operation_timeout=30).values():
            future.result(timeout=30)


def cli(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def create_topics() -> None:
    result = cli("topics", "create")
    assert result.exit_code == 0, result.output


def topic_config(admin: AdminClient, topic: str) -> dict[str, str | None]:
    resource = ConfigResource("topic", topic)
    entries = admin.describe_configs([resource])[resource].result(timeout=30)
    return {key: entry.value for key, entry in entries.items()}


def partition_counts(admin: AdminClient, prefix: str) -> dict[str, int]:
    topics = admin.list_topics(timeout=10).topics
    return {
        name: len(topics[prefix + name].partitions)
        for name in ALL_TOPICS
        if prefix + name in topics
    }


def read_all(bootstrap: str, topic: str) -> list[Record]:
    """Every record of `topic`, partition by partition, in offset order."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                         "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in partitions}
        pending = {p for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in pending])
        records: dict[int, list[tuple[int, bytes | None, bytes | None]]] = {}
        deadline = time.monotonic() + 30
        while pending:
            assert time.monotonic() < deadline, f"{topic}: partitions {pending} not read"
            for message in consumer.consume(1000, timeout=0.5):
                assert message.error() is None, message.error()
                partition, offset = message.partition(), message.offset()
                assert partition is not None and offset is not None
                records.setdefault(partition, []).append((offset, message.key(), message.value()))
                if offset + 1 >= ends[partition]:
                    pending.discard(partition)
    finally:
        consumer.close()
    return [
        (partition, key, value)
        for partition in sorted(records)
        for _, key, value in sorted(records[partition], key=lambda r: r[0])
    ]


def java_partition(key: bytes, partitions: int) -> int:
    """The Java client's (and aiokafka's) default partition of a keyed record."""
    return (aiokafka_murmur2(key) & 0x7FFFFFFF) % partitions


def write_log(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


# --- topics create / verify ---


def test_topics_create_makes_every_topic_as_specified(
    prefix: str, kafka_admin: AdminClient
) -> None:
    result = cli("topics", "create")
    assert result.exit_code == 0, result.output
    assert sorted(result.stdout.split()[1::2]) == sorted(prefix + n for n in ALL_TOPICS)
    assert result.stdout.split()[0::2] == ["created"] * len(ALL_TOPICS)

    specs = load_specs()
    counts = partition_counts(kafka_admin, prefix)
    assert counts == {name: specs[name].partitions for name in ALL_TOPICS}
    assert len({counts[name] for name in INPUTS}) == 1

    training = topic_config(kafka_admin, prefix + "training-ready")
    assert training["cleanup.policy"] == "compact"
    assert training["delete.retention.ms"] == "604800000"
    assert training["max.message.bytes"] == "1114112"
    assert training["min.insync.replicas"] == "1"  # the spec's 2, capped at 1 replica
    posts = topic_config(kafka_admin, prefix + "posts")
    assert (posts["cleanup.policy"], posts["max.message.bytes"]) == ("delete", "2097152")


def test_a_second_create_is_idempotent_and_verify_passes(
    prefix: str, kafka_admin: AdminClient
) -> None:
    create_topics()
    before = partition_counts(kafka_admin, prefix)
    again = cli("topics", "create")
    assert again.exit_code == 0, again.output
    assert again.stdout.split()[0::2] == ["exists"] * len(ALL_TOPICS)
    assert partition_counts(kafka_admin, prefix) == before

    verify = cli("topics", "verify")
    assert verify.exit_code == 0, verify.output
    assert "ok" in verify.stdout and verify.stderr == ""


def test_the_partition_override_applies_to_all_topics(
    prefix: str, kafka_admin: AdminClient
) -> None:
    result = cli("topics", "create", "--partitions", "3")
    assert result.exit_code == 0, result.output
    assert set(partition_counts(kafka_admin, prefix).values()) == {3}
    assert cli("topics", "verify", "--partitions", "3").exit_code == 0
    spec = cli("topics", "verify")  # against the spec's 12 (and the DLQ's 3)
    assert spec.exit_code == 1
    assert f"{prefix}posts: 3 partitions, expected 12" in spec.stderr
    assert f"{prefix}eligibility-dlq" not in spec.stderr


def test_verify_reports_a_missing_topic(prefix: str, kafka_admin: AdminClient) -> None:
    create_topics()
    gone = prefix + "objections"
    kafka_admin.delete_topics([gone], operation_timeout=30)[gone].result(timeout=30)
    deadline = time.monotonic() + 30
    while gone in kafka_admin.list_topics(timeout=10).topics:
        assert time.monotonic() < deadline, f"{gone} still listed after deletion"
        time.sleep(0.1)

    result = cli("topics", "verify")
    assert result.exit_code == 1
    assert f"{gone}: missing" in result.stderr.splitlines()
    assert "1 problem(s)" in result.stderr


def test_verify_reports_unequal_partitions_and_a_wrong_config(
    prefix: str, kafka_admin: AdminClient
) -> None:
    # made by hand before `create`: a wrong partition count, and a delete-policy
    # training-ready; create leaves them alone and reports them
    config = load_specs()["accounts"].creation_config(1)
    odd = {
        prefix + "accounts": NewTopic(prefix + "accounts", 5, 1, config=config),
        prefix + "training-ready": NewTopic(prefix + "training-ready", 12, 1),
    }
    for future in kafka_admin.create_topics(list(odd.values())).values():
        future.result(timeout=30)

    created = cli("topics", "create")
    assert created.exit_code == 1
    assert created.stdout.count("created") == len(ALL_TOPICS) - 2
    assert created.stdout.count("exists") == 2

    result = cli("topics", "verify")
    assert result.exit_code == 1
    problems = result.stderr.splitlines()
    assert f"{prefix}accounts: 5 partitions, expected 12" in problems
    assert any(p.startswith("input and state topics differ in partition count") for p in problems)
    assert f"{prefix}training-ready: cleanup.policy is delete, expected compact" in problems
    assert any(p.startswith(f"{prefix}training-ready: delete.retention.ms is 86400000")
               for p in problems)


# --- replay LOG to Kafka ---


def test_replay_produces_the_walkthrough_co_partitioned_and_unchanged(
    prefix: str, kafka_bootstrap: str
) -> None:
    create_topics()
    log = EXAMPLES / "walkthrough.jsonl"
    result = cli("replay", log)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("produced 16, skipped 0, failed 0 in ")
    assert result.stdout.count("\n") == 1

    lines = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    partitions = load_specs()["posts"].partitions
    per_key: dict[bytes, set[int]] = {}
    total = 0
    for topic in INPUTS:
        records = read_all(kafka_bootstrap, prefix + topic)
        total += len(records)
        expected = [(line["key"].encode(), line["payload"].encode())
                    for line in lines if line["topic"] == topic]
        # file order within each partition, the bytes of the payload unchanged
        for partition in {p for p, _, _ in records}:
            got = [(k, v) for p, k, v in records if p == partition]
            assert got == [kv for kv in expected
                           if java_partition(kv[0], partitions) == partition]
        assert sorted((k or b"", v or b"") for _, k, v in records) == sorted(expected)
        for partition, key, _ in records:
            assert key is not None
            assert partition == java_partition(key, partitions)  # Java's/aiokafka's partitioner
            per_key.setdefault(key, set()).add(partition)
    assert total == 16
    assert all(len(found) == 1 for found in per_key.values()), per_key  # co-partitioned
    assert len({p for found in per_key.values() for p in found}) > 1  # and spread out


def test_replay_produces_odd_payloads_byte_exact(
    prefix: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    create_topics()
    event = {"event_id": "e-1", "type": "objection.filed", "ts": "2025-06-01T08:00:00Z",
             "account_id": "zoé"}
    log = write_log(tmp_path / "odd.jsonl", [
        # a null key stands for the payload's account_id
        json.dumps({"topic": "objections", "key": None, "payload": json.dumps(event)}),
        # invalid UTF-8 as the dump wrote it (surrogateescape), key and all
        '{"topic": "objections", "key": "zo\\u00e9", "payload": "{\\"a\\": \\"\\udcff\\udcfe\\"}"}',
        # a lone surrogate surrogateescape cannot stand for: kept as surrogatepass writes it
        '{"topic": "objections", "key": "zo\\u00e9", "payload": "\\ud800"}',
        # no key and no account_id: a null key; a null payload: a tombstone
        json.dumps({"topic": "objections", "payload": "[1, 2]"}),
        json.dumps({"topic": "objections", "key": "zoé", "payload": None}),
        # not an input topic, not a message: skipped
        json.dumps({"topic": "training-ready", "key": "p", "payload": "{}"}),
        "not json at all",
        json.dumps({"topic": "posts", "key": 7, "payload": "{}"}),
    ])
    result = cli("replay", log)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("produced 5, skipped 3, failed 0")

    records = read_all(kafka_bootstrap, prefix + "objections")
    values = [(key, value) for _, key, value in records]
    # one key, one partition: file order (the null-keyed record goes to any partition)
    keyed = [kv for kv in values if kv[0] is not None]
    assert keyed == [
        ("zoé".encode(), json.dumps(event).encode()),
        ("zoé".encode(), b'{"a": "\xff\xfe"}'),
        ("zoé".encode(), b"\xed\xa0\x80"),
        ("zoé".encode(), None),
    ]
    assert (None, b"[1, 2]") in values and len(values) == 5
    assert read_all(kafka_bootstrap, prefix + "training-ready") == []


def test_rate_limits_the_produce(prefix: str, tmp_path: Path) -> None:
    create_topics()
    lines = [json.dumps({"topic": "posts", "key": f"a-{i}", "payload": "{}"}) for i in range(40)]
    log = write_log(tmp_path / "forty.jsonl", lines)
    start = time.monotonic()
    result = cli("replay", log, "--rate", "100")
    elapsed = time.monotonic() - start
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("produced 40, skipped 0, failed 0")
    assert 0.3 <= elapsed < 10

    limited = produce_log(log, KafkaSettings.from_env(), rate=100)
    assert limited.produced == 40 and limited.seconds >= 0.3

    summary = produce_log(log, KafkaSettings.from_env(), rate=0)
    assert (summary.produced, summary.failed) == (40, 0)


def test_a_failed_delivery_exits_1_with_the_error(prefix: str, tmp_path: Path) -> None:
    create_topics()
    huge = "x" * 3_000_000  # over the producer's and the topic's 2 MiB
    log = write_log(tmp_path / "huge.jsonl", [
        json.dumps({"topic": "posts", "key": "a", "payload": "{}"}),
        json.dumps({"topic": "posts", "key": "a", "payload": huge}),
    ])
    result = cli("replay", log)
    assert result.exit_code == 1
    assert "produced 1, skipped 0, failed 1" in result.stdout
    assert "1 deliveries failed" in result.stderr and "Traceback" not in result.output


def test_replay_to_missing_topics_fails_at_once(prefix: str) -> None:
    start = time.monotonic()
    result = cli("replay", EXAMPLES / "walkthrough.jsonl")
    assert result.exit_code == 1
    assert f"topic {prefix}posts does not exist" in result.stderr
    assert time.monotonic() - start < 15


# --- view ---


def produce_records(bootstrap: str, topic: str, records: list[tuple[str, bytes | None]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    errors: list[KafkaError] = []
    for key, value in records:
        producer.produce(topic, key=key.encode(), value=value,
                         on_delivery=lambda err, _: errors.append(err) if err else None)
    assert producer.flush(30) == 0 and not errors, errors


def test_view_keeps_the_latest_value_per_post_and_drops_tombstones(
    prefix: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    create_topics()
    empty = cli("view")
    assert empty.exit_code == 0, empty.output
    assert empty.stdout_bytes == b""

    def record(post_id: str, text: str) -> bytes:
        return json.dumps({"post_id": post_id, "text": text}, separators=(",", ":")).encode()

    produce_records(kafka_bootstrap, prefix + "training-ready", [
        ("p-3", record("p-3", "three")),
        ("p-1", record("p-1", "one")),
        ("p-2", record("p-2", "two")),
        ("p-1", record("p-1", "one, edited é")),  # overwrite
        ("p-2", None),  # tombstone: retracted
        ("p-0", None),  # tombstone of a post never published
        ("p-4", None),
        ("p-4", record("p-4", "four, back")),  # published again after a retraction
    ])
    expected = (record("p-1", "one, edited é") + b"\n" + record("p-3", "three") + b"\n"
                + record("p-4", "four, back") + b"\n")

    result = cli("view")
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == expected
    out = tmp_path / "view.jsonl"
    assert cli("view", "--view", out).exit_code == 0
    assert out.read_bytes() == expected
    assert sorted(read_view(KafkaSettings.from_env())) == ["p-1", "p-3", "p-4"]


def test_view_is_byte_identical_to_the_offline_view(
    prefix: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    create_topics()
    offline = tmp_path / "offline-view.jsonl"
    result = CliRunner().invoke(
        main, ["replay", str(EXAMPLES / "sample.jsonl"), "--offline", "--view", str(offline)],
        env={"ELIGIBILITY_PSEUDONYM_KEY": "integration-test-key-0123456789"},
    )
    assert result.exit_code == 0, result.output
    lines = offline.read_bytes().splitlines()
    assert lines
    records = [(json.loads(line)["post_id"], line) for line in reversed(lines)]
    produce_records(kafka_bootstrap, prefix + "training-ready",
                    [*records, ("gone", b"{}"), ("gone", None)])
    view = cli("view")
    assert view.exit_code == 0, view.output
    assert view.stdout_bytes == offline.read_bytes()
