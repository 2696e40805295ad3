"""Which partition owns an account: Kafka's default partitioner (murmur2), as
the project's producers and Java clients use it."""

from __future__ import annotations

from functools import lru_cache

from aiokafka.partitioner import murmur2


@lru_cache(maxsize=262_144)
def partition_for(key: bytes, partitions: int) -> int:
    return (int(murmur2(key)) & 0x7FFFFFFF) % partitions
