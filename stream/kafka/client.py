"""Kafka client settings, read once from the environment and passed around.

Every client of a command gets its settings from one `KafkaSettings`, so a test (or a
shared cluster) can move all topics under a prefix with one variable and no client
ever disagrees with another about where the topics are.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from stream.kafka import KafkaToolError
from stream.kafka.topics import ALL_TOPICS, consumer_client_config, input_producer_config

DEFAULT_BROKERS: Final = "127.0.0.1:19092"
BROKERS_ENV: Final = "ELIGIBILITY_KAFKA_BROKERS"
PREFIX_ENV: Final = "ELIGIBILITY_TOPIC_PREFIX"
# Environment variable -> librdkafka property, passed through unchanged when set.
SECURITY_ENV: Final = {
    "ELIGIBILITY_KAFKA_SECURITY_PROTOCOL": "security.protocol",
    "ELIGIBILITY_KAFKA_SASL_MECHANISM": "sasl.mechanism",
    "ELIGIBILITY_KAFKA_SASL_USERNAME": "sasl.username",
    "ELIGIBILITY_KAFKA_SASL_PASSWORD": "sasl.password",
    "ELIGIBILITY_KAFKA_SSL_CA_LOCATION": "ssl.ca.location",
}
# Kafka's own rule for topic names; the prefix must keep every name legal.
_LEGAL_PREFIX: Final = re.compile(r"[A-Za-z0-9._-]*")
_MAX_TOPIC_CHARS: Final = 249

ClientConfig = dict[str, Any]


class _OncePerText(logging.Filter):
    """librdkafka repeats a failing connection's error every few milliseconds: let each
    distinct line through once (the command's own error says what went wrong)."""

    def __init__(self, limit: int = 1000) -> None:
        super().__init__()
        self._seen: set[str] = set()
        self._limit = limit

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if text in self._seen:
            return False
        if len(self._seen) < self._limit:
            self._seen.add(text)
        return True


LIBRDKAFKA_LOG: Final = logging.getLogger("stream.kafka.librdkafka")
LIBRDKAFKA_LOG.addFilter(_OncePerText())


class SettingsError(KafkaToolError, ValueError):
    """The environment names an unusable setting."""


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    """Where the cluster is, how to authenticate, and the topic-name prefix."""

    brokers: str = DEFAULT_BROKERS
    topic_prefix: str = ""
    # librdkafka security properties; kept out of repr (it holds the SASL password).
    security: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KafkaSettings:
        """The settings from ELIGIBILITY_KAFKA_* and ELIGIBILITY_TOPIC_PREFIX (empty = unset)."""
        env = os.environ if env is None else env
        brokers = env.get(BROKERS_ENV, "").strip() or DEFAULT_BROKERS
        prefix = env.get(PREFIX_ENV, "").strip()
        longest = max(len(name) for name in ALL_TOPICS)
        if not _LEGAL_PREFIX.fullmatch(prefix) or len(prefix) + longest > _MAX_TOPIC_CHARS:
            raise SettingsError(
                f"{PREFIX_ENV}={prefix!r}: topic names allow only A-Z a-z 0-9 . _ - and "
                f"{_MAX_TOPIC_CHARS} characters"
            )
        security = tuple(
            (prop, value)
            for var, prop in SECURITY_ENV.items()
            if (value := env.get(var, "").strip())
        )
        return cls(brokers=brokers, topic_prefix=prefix, security=security)

    def topic(self, name: str) -> str:
        """The real name of a contract topic (`posts` -> `<prefix>posts`)."""
        return self.topic_prefix + name

    def base_config(self) -> ClientConfig:
        """What every client needs: the brokers and the security settings."""
        config: ClientConfig = {"bootstrap.servers": self.brokers, "logger": LIBRDKAFKA_LOG}
        config.update(self.security)
        return config

    def admin_config(self) -> ClientConfig:
        return self.base_config()

    def producer_config(self) -> ClientConfig:
        """An upstream producer of the input topics, as their `client_config` asks.

        The partitioner must be murmur2_random (Java's and aiokafka's): an account's
        events then land on the same partition number in all three input topics.
        librdkafka's default (consistent_random, CRC32) would split accounts."""
        config = self.base_config()
        config.update(input_producer_config())
        config["partitioner"] = "murmur2_random"
        config["enable.idempotence"] = True
        # Never let a typo'd or missing topic be auto-created with the broker's defaults
        # (wrong partition count: accounts would land elsewhere).
        config["allow.auto.create.topics"] = False
        return config

    def reader_config(self, topic: str) -> ClientConfig:
        """A consumer that assigns partitions itself and never commits: a reader of
        `topic`'s contract (`client_config.consumer`), invisible to consumer groups."""
        config = self.base_config()
        config.update(consumer_client_config(topic))
        config.update(
            {
                # librdkafka wants a group id even for assign(); a fresh one, never committed.
                "group.id": f"eligibility-reader-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": True,
            }
        )
        return config

