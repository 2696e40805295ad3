"""The six topics as `topics/*.yaml` describes them: create them, or check a cluster's.

The YAML files are the contract as data; nothing here repeats a partition count or a
config value, so changing a topic is changing its file.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

import yaml
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import ConfigResource  # not re-exported for mypy
from confluent_kafka.admin._resource import ResourceType
from confluent_kafka.cimpl import NewTopic

from stream.core.events import INPUT_TOPICS
from stream.kafka import KafkaToolError

if TYPE_CHECKING:
    from stream.kafka.client import ClientConfig, KafkaSettings

TOPICS_DIR: Final = Path(__file__).resolve().parents[2] / "topics"
TRAINING_READY: Final = "training-ready"
OUTPUT_TOPICS: Final = (TRAINING_READY, "eligibility-audit", "eligibility-dlq")
STATE_TOPIC: Final = "eligibility-state"  # the worker's changelog: internal, co-partitioned
ALL_TOPICS: Final = (*INPUT_TOPICS, *OUTPUT_TOPICS, STATE_TOPIC)
CO_PARTITIONED: Final = (*INPUT_TOPICS, STATE_TOPIC)
# A broker refuses acks=all writes when fewer replicas than this are in sync (Kafka < 4.0
# even when the topic has fewer replicas in all): capped at the replication factor.
_MIN_ISR: Final = "min.insync.replicas"


class TopicSpecError(KafkaToolError, ValueError):
    """topics/*.yaml is missing a file or a setting this module relies on."""


class TopicError(KafkaToolError):
    """The cluster refused or did not answer an admin request."""


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic's `topic_creation_config` and librdkafka `client_config`."""

    name: str
    partitions: int
    replication_factor: int
    config: Mapping[str, str]
    producer: Mapping[str, Any] = field(default_factory=dict)
    consumer: Mapping[str, Any] = field(default_factory=dict)

    def creation_config(self, replication_factor: int) -> dict[str, str]:
        """The topic config to create with, min.insync.replicas capped at the replicas."""
        config = dict(self.config)
        if _MIN_ISR in config:
            config[_MIN_ISR] = str(min(int(config[_MIN_ISR]), replication_factor))
        return config


@dataclass(slots=True)
class CreateReport:
    """What `create_topics` did: real (prefixed) names, and problems of existing topics."""

    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@functools.cache
def load_specs(topics_dir: Path = TOPICS_DIR) -> Mapping[str, TopicSpec]:
    """The specs of the topics, by contract name (read once: they never change at
    run time)."""
    specs: dict[str, TopicSpec] = {}
    for name in ALL_TOPICS:
        path = topics_dir / f"{name}.yaml"
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            creation = data["topic_creation_config"]
            clients = data.get("client_config") or {}
            specs[name] = TopicSpec(
                name=name,
                partitions=int(creation["num_partitions"]),
                replication_factor=int(creation["replication_factor"]),
                config={k: _config_value(v) for k, v in (creation.get("config") or {}).items()},
                producer=dict((clients.get("producer") or {}).get("librdkafka") or {}),
                consumer=dict((clients.get("consumer") or {}).get("librdkafka") or {}),
            )
        except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
            raise TopicSpecError(f"{path}: {exc}") from None
    return MappingProxyType(specs)


def _config_value(value: object) -> str:
    """Broker configs are strings; YAML may have read `true` or a number."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def input_producer_config() -> ClientConfig:
    """The producer settings the three input topics ask of their producers. They must
    agree, as one producer writes all three (a log holds events of all of them)."""
    specs = load_specs()
    configs = [dict(specs[name].producer) for name in INPUT_TOPICS]
    if any(config != configs[0] for config in configs[1:]):
        raise TopicSpecError(
            "the input topics' client_config.producer.librdkafka differ: "
            + "; ".join(f"{n}: {c}" for n, c in zip(INPUT_TOPICS, configs, strict=True))
        )
    return configs[0]


def consumer_client_config(name: str) -> ClientConfig:
    """The consumer settings a topic asks of its readers (fetch sizes >= its largest
    record, so a maximal record never stalls a reader)."""
    return dict(load_specs()[name].consumer)


def create_topics(
    admin: AdminClient,
    settings: KafkaSettings,
    partitions: int | None = None,
    replication_factor: int = 1,
    timeout: float = 30.0,
) -> CreateReport:
    """Create the six topics as specified (`partitions` overrides every topic's count, so
    the inputs stay equal). Idempotent: topics that exist already are verified instead,
    and their problems reported, never altered."""
    specs = load_specs()
    report = CreateReport()
    new = [
        NewTopic(
            settings.topic(name),
            num_partitions=partitions or spec.partitions,
            replication_factor=replication_factor,
            config=spec.creation_config(replication_factor),
        )
        for name, spec in specs.items()
    ]
    futures = admin.create_topics(new, operation_timeout=timeout, request_timeout=timeout)
    for topic in new:
        try:
            futures[topic.topic].result(timeout=timeout)
        except KafkaException as exc:
            error = exc.args[0]
            if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                report.existing.append(topic.topic)
                continue
            raise TopicError(f"cannot create {topic.topic}: {_describe(exc)}") from None
        report.created.append(topic.topic)
    _wait_for_leaders(admin, report.created, timeout)
    if report.existing:
        # All six, not only the existing ones: a new input topic must still match the
        # partition count of an old one.
        report.problems = verify_topics(admin, settings, ALL_TOPICS, partitions, timeout)
    return report


def verify_topics(
    admin: AdminClient,
    settings: KafkaSettings,
    names: Iterable[str] = ALL_TOPICS,
    partitions: int | None = None,
    timeout: float = 30.0,
) -> list[str]:
    """Problems of the named topics on the cluster, in words (empty: all as specified).

    Checked: the topic exists; its partition count is the spec's (or `partitions`); the
    input topics all have the same count (co-partitioning); every config value of the
    spec is the topic's (min.insync.replicas capped at the topic's replicas)."""
    specs = load_specs()
    names = list(names)
    unknown = [name for name in names if name not in specs]
    if unknown:
        raise TopicSpecError(f"no spec for {', '.join(unknown)} in topics/")
    metadata = _list_topics(admin, timeout)
    problems: list[str] = []
    replicas: dict[str, int] = {}
    for name in names:
        real = settings.topic(name)
        topic = metadata.topics.get(real)
        if topic is None or topic.error is not None:
            problems.append(f"{real}: missing")
            continue
        expected = partitions or specs[name].partitions
        if len(topic.partitions) != expected:
            problems.append(f"{real}: {len(topic.partitions)} partitions, expected {expected}")
        replicas[name] = min((len(p.replicas) for p in topic.partitions.values()), default=0)
    if any(name in CO_PARTITIONED for name in names):
        counts = {}
        for name in CO_PARTITIONED:
            topic = metadata.topics.get(settings.topic(name))
            if topic is not None and topic.error is None:
                counts[settings.topic(name)] = len(topic.partitions)
        if len(set(counts.values())) > 1:
            listed = ", ".join(f"{real} {count}" for real, count in counts.items())
            problems.append(
                f"input and state topics differ in partition count ({listed}): an "
                "account's events and state would be on different partitions"
            )
    problems += _config_problems(admin, settings, replicas, timeout)
    return problems


def _config_problems(
    admin: AdminClient, settings: KafkaSettings, replicas: Mapping[str, int], timeout: float
) -> list[str]:
    if not replicas:
        return []
    specs = load_specs()
    resources = {
        name: ConfigResource(ResourceType.TOPIC, settings.topic(name)) for name in replicas
    }
    futures = admin.describe_configs(list(resources.values()), request_timeout=timeout)
    problems = []
    for name, resource in resources.items():
        real = settings.topic(name)
        try:
            entries = futures[resource].result(timeout=timeout)
        except KafkaException as exc:
            problems.append(f"{real}: cannot describe its config: {_describe(exc)}")
            continue
        for key, want in specs[name].creation_config(replicas[name]).items():
            entry = entries.get(key)
            actual = None if entry is None else entry.value
            if actual != want:
                problems.append(f"{real}: {key} is {actual}, expected {want}")
    return problems


def _list_topics(admin: AdminClient, timeout: float) -> Any:
    try:
        return admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise TopicError(f"cannot list topics: {_describe(exc)}") from None


def _wait_for_leaders(admin: AdminClient, names: list[str], timeout: float) -> None:
    """Block until every partition of the new topics has a leader: a producer or a
    `verify` right after `create` then sees them whole."""
    deadline = time.monotonic() + timeout
    pending = set(names)
    while pending:
        metadata = _list_topics(admin, timeout)
        for name in list(pending):
            topic = metadata.topics.get(name)
            if (
                topic is not None
                and topic.error is None
                and topic.partitions
                and all(p.leader >= 0 for p in topic.partitions.values())
            ):
                pending.discard(name)
        if pending and time.monotonic() > deadline:
            raise TopicError(f"no leader after {timeout} s for {', '.join(sorted(pending))}")
        if pending:
            time.sleep(0.1)


def _describe(exc: KafkaException) -> str:
    error = exc.args[0] if exc.args else exc
    return error.str() if isinstance(error, KafkaError) else str(error)
