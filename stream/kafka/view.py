"""The view read back from `training-ready`: `eligibility view`.

SPEC.md: reading the topic from the beginning, keeping the latest value per key and
dropping keys whose latest value is a tombstone gives the training set. The output is
byte for byte what `eligibility replay --offline --view` writes, so the two can be
compared with `cmp`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import IO, Final

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from stream.kafka import KafkaToolError
from stream.kafka.client import KafkaSettings
from stream.kafka.topics import TRAINING_READY

_IDLE_TIMEOUT: Final = 60.0  # seconds without progress before giving up
_SETTLE_TIMEOUT: Final = 30.0  # seconds a retriable metadata error may last
_SETTLING: Final = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._TIMED_OUT,
    }
)


class ViewError(KafkaToolError):
    """The topic cannot be read to its end."""


def read_view(settings: KafkaSettings, idle_timeout: float = _IDLE_TIMEOUT) -> dict[str, bytes]:
    """The latest non-null value per post_id, read from offset 0 of every partition up to
    the high watermark seen at the start (later records are not waited for).

    Partitions are assigned, never subscribed: no group, no commits, no rebalance."""
    topic = settings.topic(TRAINING_READY)
    consumer = Consumer(settings.reader_config(TRAINING_READY))
    try:
        pending = {p: high for p, (low, high) in _watermarks(consumer, topic).items() if high > low}
        view: dict[str, bytes | None] = {}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(pending)])
        progress = time.monotonic()
        while pending:
            for message in consumer.consume(num_messages=10_000, timeout=0.5):
                error, partition = message.error(), message.partition()
                offset = message.offset()
                if error is not None and error.code() != KafkaError._PARTITION_EOF:
                    raise ViewError(f"reading {topic}: {error.str()}")
                if partition not in pending or offset is None:
                    continue
                if error is None and offset < pending[partition]:
                    key = message.key()
                    if key is not None:  # the contract forbids null keys; nothing to keep
                        view[key.decode("utf-8", "surrogateescape")] = message.value()
                    progress = time.monotonic()
                # a record's offset, or at end of partition the next offset
                if offset + (error is None) >= pending[partition]:
                    del pending[partition]
            # A compacted or transactional partition may end in offsets that carry no
            # record (control markers): the position, not the last record, tells the end.
            for done in consumer.position([TopicPartition(topic, p) for p in pending]):
                if done.offset >= pending.get(done.partition, 0):
                    pending.pop(done.partition, None)
            if pending and time.monotonic() - progress > idle_timeout:
                raise ViewError(
                    f"{topic}: no progress for {idle_timeout:.0f} s, partitions "
                    f"{sorted(pending)} short of their end"
                )
    except KafkaException as exc:
        error = exc.args[0]
        reason = error.str() if isinstance(error, KafkaError) else str(error)
        raise ViewError(f"reading {topic}: {reason}") from None
    finally:
        consumer.close()
    return {key: value for key, value in view.items() if value is not None}


def write_view(view: Mapping[str, bytes], out: IO[bytes]) -> None:
    """One record per line, sorted by post_id: the offline replay's `--view` format."""
    for post_id in sorted(view):
        out.write(view[post_id] + b"\n")


def _watermarks(consumer: Consumer, topic: str) -> dict[int, tuple[int, int]]:
    """The low and high watermark of every partition of `topic`, as of now."""
    metadata = consumer.list_topics(topic, timeout=10)
    found = metadata.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        raise ViewError(f"topic {topic} does not exist: run `eligibility topics create`")
    return {
        partition: _watermark(consumer, TopicPartition(topic, partition))
        for partition in found.partitions
    }


def _watermark(consumer: Consumer, partition: TopicPartition) -> tuple[int, int]:
    """A partition's watermarks; retried while the broker settles (a topic just created
    is in the metadata before its leader answers: NOT_LEADER_FOR_PARTITION)."""
    deadline = time.monotonic() + _SETTLE_TIMEOUT
    while True:
        try:
            return consumer.get_watermark_offsets(partition, timeout=10, cached=False)
        except KafkaException as exc:
            error = exc.args[0]
            retriable = isinstance(error, KafkaError) and (
                error.retriable() or error.code() in _SETTLING
            )
            if not retriable or time.monotonic() > deadline:
                raise
        time.sleep(0.1)
