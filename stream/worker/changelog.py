"""The state changelog on Kafka (topic `eligibility-state`): what the worker
writes after each committed batch, and how Redis is rebuilt from it.

Partition n of the changelog holds the state of input partition n; the last
message of every batch on it is the partition's progress marker (`o:<n>`), so
the newest marker is always the partition's last message: one read tells
whether Redis is behind.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Protocol

import msgspec
from confluent_kafka import Consumer, KafkaError, TopicPartition

from stream.kafka.client import KafkaSettings
from stream.kafka.topics import STATE_TOPIC
from stream.store.base import PartitionProgress
from stream.worker.outputs import OutputMessage


def ahead_of(progress: PartitionProgress, state: PartitionProgress) -> bool:
    """Whether the changelog knows more of a partition than Redis does."""
    return progress.seq > state.seq or any(
        offset > state.offsets.get(topic, -1) for topic, offset in progress.offsets.items()
    )


_encode = msgspec.msgpack.Encoder().encode
_decode_progress = msgspec.msgpack.Decoder(PartitionProgress).decode


def marker_key(partition: int) -> bytes:
    return b"o:%d" % partition


def state_message(partition: int, key: bytes, value: bytes | None) -> OutputMessage:
    return OutputMessage(STATE_TOPIC, key, value, partition=partition)


def marker_message(partition: int, progress: PartitionProgress) -> OutputMessage:
    return state_message(partition, marker_key(partition), _encode(progress))


class ChangelogReader:
    """Reads changelog partitions with confluent-kafka (blocking: run it in a thread)."""

    def __init__(self, kafka: KafkaSettings, timeout: float = 60.0) -> None:
        self._kafka = kafka
        self._topic = kafka.topic(STATE_TOPIC)
        self._timeout = timeout

    def _consumer(self) -> Consumer:
        return Consumer(self._kafka.reader_config(STATE_TOPIC))

    def last_progress(self, partition: int) -> PartitionProgress | None:
        """The newest marker of a partition, or None when it has none."""
        consumer = self._consumer()
        try:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(self._topic, partition), timeout=self._timeout
            )
            if high <= low:
                return None
            for key, value in self._read(consumer, partition, high - 1, high):
                if key == marker_key(partition) and value is not None:
                    return _decode_progress(value)
            return None
        finally:
            consumer.close()

    def read_partition(self, partition: int) -> dict[bytes, bytes | None]:
        """The latest value of every key of a partition (None: a deletion)."""
        consumer = self._consumer()
        try:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(self._topic, partition), timeout=self._timeout
            )
            latest: dict[bytes, bytes | None] = {}
            for key, value in self._read(consumer, partition, low, high):
                latest[key] = value
            return latest
        finally:
            consumer.close()

    def _read(
        self, consumer: Consumer, partition: int, start: int, end: int
    ) -> list[tuple[bytes, bytes | None]]:
        if end <= start:
            return []
        consumer.assign([TopicPartition(self._topic, partition, start)])
        out: list[tuple[bytes, bytes | None]] = []
        deadline = time.monotonic() + self._timeout
        position = start
        while position < end:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self._topic}[{partition}]: read stalled at {position}")
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    break  # compaction may leave the last offsets empty
                raise RuntimeError(f"{self._topic}[{partition}]: {error}")
            key, offset = message.key(), message.offset()
            if key is not None:
                out.append((key, message.value()))
            position = end if offset is None else offset + 1
        return out


def progress_of(
    entries: Mapping[bytes, bytes | None], partition: int
) -> PartitionProgress | None:
    value = entries.get(marker_key(partition))
    return None if value is None else _decode_progress(value)


class RestorableStore(Protocol):
    def restore(self, entries: Mapping[bytes, bytes | None]) -> None: ...

    def restore_partition(self, partition: int, progress: PartitionProgress) -> None: ...


def rebuild_partition(
    reader: ChangelogReader, store: RestorableStore, partition: int
) -> PartitionProgress | None:
    """Write a partition's state back into Redis from the changelog; its progress."""
    entries = reader.read_partition(partition)
    store.restore(entries)
    progress = progress_of(entries, partition)
    if progress is not None:
        store.restore_partition(partition, progress)
    return progress
