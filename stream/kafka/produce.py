"""Producing an event log to the input topics: `eligibility replay LOG` (no --offline).

The log's payloads go out as the bytes they stand for, in file order, so the filter on
Kafka sees what the offline replay sees: a lone surrogate in a payload is the invalid
byte it was dumped from, a null key is the account_id it stands for (SPEC.md, "Event
logs"), and all of an account's events share a partition number in the three inputs.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from tqdm import tqdm

from stream.core.decode import Message as LogMessage
from stream.core.events import INPUT_TOPICS
from stream.eventlog import read_messages
from stream.kafka import KafkaToolError
from stream.kafka.client import KafkaSettings

_POLL_EVERY: Final = 1000  # messages between polls: serves delivery reports, frees the queue
_FLUSH_TIMEOUT: Final = 300.0  # seconds; librdkafka's own message.timeout.ms is the same


class ProduceError(KafkaToolError):
    """The log cannot be produced at all (no cluster, missing or unequal input topics)."""


@dataclass(slots=True)
class ProduceSummary:
    """What a produce run did; `failed` counts deliveries the broker did not acknowledge."""

    produced: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    by_topic: dict[str, int] = field(default_factory=dict)
    first_error: str | None = None

    @property
    def events_per_second(self) -> float:
        return self.produced / self.seconds if self.seconds > 0 else 0.0

    def render(self) -> str:
        return (
            f"produced {self.produced}, skipped {self.skipped}, failed {self.failed} "
            f"in {self.seconds:.2f} s ({self.events_per_second:,.0f} events/s)"
        )


class TokenBucket:
    """At most `rate` events per second, with a burst of about 10 ms worth (at least
    one event): smooth enough for a test, cheap enough at 100k events/s."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._capacity = max(1.0, rate / 100)
        self._tokens = self._capacity
        self._clock = clock
        self._last = clock()

    def take(self) -> float:
        """Take one token; the seconds to wait before sending (0: at once)."""
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._last) * self._rate)
        self._last = now
        self._tokens -= 1
        return -self._tokens / self._rate if self._tokens < 0 else 0.0


def encode_text(text: str) -> bytes:
    """The bytes a log string stands for: lone surrogates from surrogateescape are the
    invalid bytes they were dumped from; any other lone surrogate is kept as
    surrogatepass writes it (invalid UTF-8 either way, as it was meant to be)."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def message_key(message: LogMessage) -> bytes | None:
    """The Kafka key of a log line: its key, or for a null key the string `account_id` of
    a JSON-object payload (in a log a null key stands for it), else null."""
    if message.key is not None:
        return encode_text(message.key)
    if message.value is None:
        return None
    try:
        value = orjson.loads(message.value)
    except orjson.JSONDecodeError:
        return None  # unparseable (lone surrogates too): names no account
    account = value.get("account_id") if isinstance(value, dict) else None
    return encode_text(account) if isinstance(account, str) else None


def message_value(message: LogMessage) -> bytes | None:
    value = message.value
    if value is None or isinstance(value, bytes):
        return value
    return encode_text(value)


def produce_log(
    path: Path,
    settings: KafkaSettings,
    rate: float = 0,
    progress: Callable[[int], None] | None = None,
) -> ProduceSummary:
    """Produce the log's messages to the (prefixed) input topics in file order; lines that
    name no input topic, or are no message at all, are skipped and counted.

    `rate` > 0 limits to that many events per second. `progress` gets the bytes of the
    log read so far. Delivery failures are counted, not raised: the caller decides."""
    summary = ProduceSummary()
    producer = Producer(settings.producer_config())
    _check_input_topics(producer, settings)
    topics = {name: settings.topic(name) for name in INPUT_TOPICS}
    bucket = TokenBucket(rate) if rate > 0 else None

    def delivered(error: KafkaError | None, _: Message | None) -> None:
        if error is None:
            summary.produced += 1
            return
        summary.failed += 1
        if summary.first_error is None:
            summary.first_error = error.str()

    start = time.monotonic()
    with path.open("rb") as source:
        for count, message in enumerate(read_messages(source), start=1):
            topic = topics.get(message.topic) if message.envelope_error is None else None
            if topic is None:
                summary.skipped += 1
                continue
            if bucket is not None:
                _wait(producer, bucket.take())
            refused = _produce(
                producer, topic, message_key(message), message_value(message), delivered
            )
            if refused is not None:
                delivered(refused, None)
                continue
            summary.by_topic[message.topic] = summary.by_topic.get(message.topic, 0) + 1
            if count % _POLL_EVERY == 0:
                producer.poll(0)
                if progress is not None:
                    progress(source.tell())
        if progress is not None:
            progress(source.tell())
    remaining = producer.flush(_FLUSH_TIMEOUT)
    if remaining:
        summary.failed += remaining
        summary.first_error = summary.first_error or f"{remaining} messages still unsent"
    summary.seconds = time.monotonic() - start
    return summary


def _produce(
    producer: Producer,
    topic: str,
    key: bytes | None,
    value: bytes | None,
    delivered: Callable[[KafkaError | None, Message | None], None],
) -> KafkaError | None:
    """Queue one message; the error if librdkafka refuses it at once (too large for
    message.max.bytes): a failed delivery like any other."""
    while True:
        try:
            producer.produce(topic, value=value, key=key, on_delivery=delivered)
            return None
        except BufferError:  # the local queue is full: let deliveries drain it
            producer.poll(0.1)
        except KafkaException as exc:
            error = exc.args[0]
            if isinstance(error, KafkaError):
                return error
            raise


def _wait(producer: Producer, seconds: float) -> None:
    """Sleep for the rate limit while serving delivery reports."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        producer.poll(left)


def _check_input_topics(producer: Producer, settings: KafkaSettings) -> None:
    """Fail before the first message, not after minutes of retries: the input topics
    must exist with equal partition counts, or accounts would be split."""
    try:
        metadata = producer.list_topics(timeout=10)
    except KafkaException as exc:
        error = exc.args[0]
        reason = error.str() if isinstance(error, KafkaError) else str(error)
        raise ProduceError(f"cannot reach Kafka at {settings.brokers}: {reason}") from None
    counts: dict[str, int] = {}
    for name in INPUT_TOPICS:
        real = settings.topic(name)
        topic = metadata.topics.get(real)
        if topic is None or topic.error is not None:
            raise ProduceError(f"topic {real} does not exist: run `eligibility topics create`")
        counts[real] = len(topic.partitions)
    if len(set(counts.values())) > 1:
        raise ProduceError(
            f"the input topics differ in partition count ({counts}): "
            "see `eligibility topics verify`"
        )


def replay_to_kafka(log: Path, rate: float) -> ProduceSummary:
    """The command's work: a byte-progress bar on a terminal, the summary line on stdout.
    Raises ProduceError; the caller turns failures into the exit code."""
    settings = KafkaSettings.from_env()
    size = log.stat().st_size
    with tqdm(
        total=size, unit="B", unit_scale=True, desc="produce", disable=None, file=sys.stderr
    ) as bar:
        summary = produce_log(log, settings, rate, lambda done: bar.update(done - bar.n))
    return summary
