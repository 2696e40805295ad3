"""Sends the worker's output messages with confluent-kafka and waits for every delivery.

librdkafka does the per-message work in C (Faust's producer costs more per
message than the worker's whole decision); the idempotent producer keeps each
partition's order across retries, so a retraction never overtakes the record
it retracts. `flush` blocks, so it runs in a thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, Producer

from stream.kafka.client import KafkaSettings
from stream.kafka.topics import load_specs
from stream.worker.outputs import TRAINING_READY, OutputMessage

log = logging.getLogger("eligibility.worker")


class PublishError(RuntimeError):
    """Some messages of a batch were not delivered."""


class KafkaPublisher:
    def __init__(self, kafka: KafkaSettings, flush_timeout: float = 30.0) -> None:
        specs = load_specs()
        config = kafka.base_config()
        config.update(specs[TRAINING_READY].producer)  # the filter's one producer, all outputs
        config.update(
            {
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 2,
                "partitioner": "murmur2_random",  # keyed like Java clients: stable per key
            }
        )
        self._producer = Producer(config)
        self._kafka = kafka
        self._flush_timeout = flush_timeout

    async def __call__(self, messages: Sequence[OutputMessage]) -> None:
        """Deliver them all, retrying failed deliveries (they are idempotent)."""
        delay = 0.1
        pending = list(messages)
        while pending:
            pending = await self._send(pending)
            if pending:
                log.warning("%d messages not delivered; retrying", len(pending))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _send(self, messages: list[OutputMessage]) -> list[OutputMessage]:
        failed: list[tuple[int, KafkaError]] = []
        for index, message in enumerate(messages):
            def delivered(error: KafkaError | None, _: Any, index: int = index) -> None:
                if error is not None:
                    failed.append((index, error))

            kwargs: dict[str, Any] = {
                "key": message.key,
                "value": message.value,
                "on_delivery": delivered,
            }
            if message.partition is not None:
                kwargs["partition"] = message.partition
            if message.headers:
                kwargs["headers"] = list(message.headers)
            while True:
                try:
                    self._producer.produce(self._kafka.topic(message.topic), **kwargs)
                    break
                except BufferError:  # the local queue is full: let deliveries drain it
                    await asyncio.to_thread(self._producer.poll, 0.1)
        left = await asyncio.to_thread(self._producer.flush, self._flush_timeout)
        if left:
            raise PublishError(f"{left} messages still queued after {self._flush_timeout} s")
        if failed:
            log.warning("delivery failed: %s", failed[0][1])
        return [messages[i] for i, _ in sorted(failed)]
