"""A fix to faust-streaming 0.15 / aiokafka 0.14 that the filter cannot run without.

Records fetched while a rebalance is under way are dropped by Faust ("getmany
called while flow not active"), which then seeks every partition back to its
committed offset. aiokafka's `seek_to_committed` only seeks partitions whose
committed offset is above 0: a partition never committed keeps its fetch
position *after* the dropped records, so they are never applied, and the next
commit goes past them (an objection lost: its posts stay published). Found by
tests/system/test_worker_faults.py.

The fix: partitions without a committed offset go back to their beginning.
Re-fetched records the worker already applied are skipped by its applied
offsets (stream/worker/batch.py), so nothing is applied twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread


async def _seek_to_committed(self: Any) -> Mapping[Any, int]:
    consumer = self._ensure_consumer()
    committed: Mapping[Any, int] = await self.call_thread(consumer.seek_to_committed)
    never = [tp for tp, offset in committed.items() if not offset]
    if never:
        await self.call_thread(consumer.seek_to_beginning, *never)
    return committed


def install() -> None:
    """Idempotent; called by the app factory."""
    AIOKafkaConsumerThread.seek_to_committed = _seek_to_committed  # type: ignore[method-assign]
