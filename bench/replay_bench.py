"""Offline replay throughput, as ratios to a bare loop measured in the same run.

    python bench/replay_bench.py --events 200000 [--redis redis://127.0.0.1:16379/0]

Figures (events/s, median of --rounds interleaved rounds):
  bare      parse each envelope with orjson and write its payload back out
  decode    the bare loop plus decoding and validating each payload (no state)
  memory    the offline replay with the in-memory store
  redis     the offline replay with the Redis store (when --redis is given)
Absolute figures on a shared machine are noise; the ratios are the result.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path

import orjson

from stream.clock import SystemClock
from stream.core.engine import Engine
from stream.core.policy import DEFAULT_POLICY
from stream.core.pseudonym import Pseudonymizer
from stream.eventlog import read_messages
from stream.replay import Outputs, replay
from stream.store.base import StateStore
from stream.store.memory import MemoryStore
from stream.synthetic import write_log


def bare(log: Path) -> int:
    count = 0
    with log.open("rb") as source, open("/dev/null", "wb") as sink:
        for line in source:
            try:
                envelope = orjson.loads(line)
            except orjson.JSONDecodeError:
                envelope = json.loads(line.decode("utf-8", "surrogateescape"))
            payload = envelope.get("payload")
            if payload is not None:
                sink.write(payload.encode("utf-8", "surrogateescape") + b"\n")
            count += 1
    return count


def decode_only(log: Path) -> int:
    engine = _engine()
    count = 0
    with log.open("rb") as source, open("/dev/null", "wb") as sink:
        for message in read_messages(source):
            engine.decode(message)
            value = message.value
            if isinstance(value, str):
                sink.write(value.encode("utf-8", "surrogateescape") + b"\n")
            count += 1
    return count


def replay_with(make_store: Callable[[], StateStore]) -> Callable[[Path], int]:
    def run(log: Path) -> int:
        store = make_store()
        with log.open("rb") as source, open("/dev/null", "wb") as audit:
            outputs = Outputs(audit=audit)
            summary = replay(read_messages(source), _engine(), store, outputs)
        store.close()
        return summary.events

    return run


def _engine() -> Engine:
    return Engine(DEFAULT_POLICY, Pseudonymizer.development(), SystemClock())


def measure(name: str, fn: Callable[[Path], int], log: Path) -> float:
    gc.collect()
    started = time.perf_counter()
    events = fn(log)
    return events / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--redis", help="redis:// URL for the Redis store figure")
    args = parser.parse_args()
    gc.freeze()
    gc.set_threshold(100_000, 50, 1_000)  # as the CLI does

    prefixes: list[str] = []
    runs: dict[str, Callable[[Path], int]] = {
        "bare": bare,
        "decode": decode_only,
        "memory": replay_with(MemoryStore),
    }
    if args.redis:
        from stream.store.redis_store import RedisStore

        def redis_store() -> StateStore:
            prefixes.append(f"bench-{uuid.uuid4().hex[:8]}")
            return RedisStore.from_url(args.redis, prefix=prefixes[-1])

        runs["redis"] = replay_with(redis_store)
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "bench.jsonl"
        write_log(log, args.events, args.seed)
        rates: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.rounds):  # interleaved, so drift hits every figure alike
            for name, fn in runs.items():
                rates[name].append(measure(name, fn, log))
    base = statistics.median(rates["bare"])
    print(f"{args.events:,} events, seed {args.seed}, median of {args.rounds} rounds")
    print(f"{'':8}{'events/s':>12}{'x bare':>9}")
    for name, values in rates.items():
        rate = statistics.median(values)
        print(f"{name:8}{rate:>12,.0f}{rate / base:>9.2f}")
    if args.redis:
        import redis

        client = redis.Redis.from_url(args.redis)
        for prefix in prefixes:
            for keys in _chunks(client.scan_iter(match=f"{prefix}:*", count=1000)):
                client.delete(*keys)
        client.close()


def _chunks(keys: Iterator[bytes], size: int = 1000) -> Iterator[list[bytes]]:
    while chunk := list(islice(keys, size)):
        yield chunk


if __name__ == "__main__":
    main()
