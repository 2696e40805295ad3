"""The live demo: local Kafka and Redis, a worker, a synthetic event stream, counts until Ctrl-C.

Everything it starts it stops: the worker always, the local services only if
they were not running before. Its topics (`demo.*`) and state (`demo:*`) are
made afresh at every start.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import click
import msgspec
import redis
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient

from stream.core.records import AuditRecord
from stream.eventlog import parse_line
from stream.kafka.client import KafkaSettings
from stream.kafka.produce import message_key, message_value
from stream.kafka.topics import create_topics
from stream.settings import DEFAULT_REDIS_URL
from stream.summary import Summary
from stream.synthetic import generate

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ROOT / "deploy" / "services.sh"
PREFIX = "demo"
_audit = msgspec.json.Decoder(AuditRecord)


def run_demo(rate: int, partitions: int) -> None:
    started_services = _ensure_services()
    kafka = KafkaSettings.from_env({"ELIGIBILITY_TOPIC_PREFIX": f"{PREFIX}."})
    worker: subprocess.Popen[bytes] | None = None
    stop = threading.Event()
    try:
        _fresh(kafka, partitions)
        worker = _start_worker(kafka)
        producer = threading.Thread(
            target=_produce_forever, args=(kafka, rate, stop), daemon=True
        )
        producer.start()
        _show_counts(kafka, worker, stop)
    except KeyboardInterrupt:
        click.echo("\nstopping…", err=True)
    finally:
        stop.set()
        if worker is not None and worker.poll() is None:
            worker.terminate()
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
        if started_services:
            subprocess.run([str(SERVICES), "stop"], check=False)


def _ensure_services() -> bool:
    """Start local Kafka and Redis unless they run; True when this started them."""
    if subprocess.run([str(SERVICES), "status"], capture_output=True, check=False).returncode == 0:
        return False
    click.echo("starting local Kafka and Redis (deploy/services.sh)…", err=True)
    subprocess.run([str(SERVICES), "start"], check=True)
    return True


def _fresh(kafka: KafkaSettings, partitions: int) -> None:
    admin = AdminClient(kafka.admin_config())
    old = [n for n in admin.list_topics(timeout=30).topics if n.startswith(f"{PREFIX}.")]
    for future in (admin.delete_topics(old).values() if old else ()):
        future.result()
    if old:
        time.sleep(2)  # deletion completes in the background
    client = redis.Redis.from_url(os.environ.get("ELIGIBILITY_REDIS_URL", DEFAULT_REDIS_URL))
    for key in client.scan_iter(match=f"{PREFIX}:*", count=1000):
        client.delete(key)
    client.close()
    report = create_topics(admin, kafka, partitions=partitions)
    if report.problems:
        raise click.ClickException("demo topics: " + "; ".join(report.problems))


def _start_worker(kafka: KafkaSettings) -> subprocess.Popen[bytes]:
    logs = ROOT / ".run" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "ELIGIBILITY_TOPIC_PREFIX": kafka.topic_prefix,
        "ELIGIBILITY_STATE_PREFIX": PREFIX,
        "ELIGIBILITY_GROUP_ID": f"{PREFIX}-filter",
        "ELIGIBILITY_DEV_MODE": "1",  # the built-in pseudonym key: authors are dev-…
    }
    log = logs / "demo-worker.log"
    click.echo(f"worker log: {log}", err=True)
    return subprocess.Popen(
        [sys.executable, "-m", "stream", "worker"],
        env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=ROOT,
    )


def _events() -> Iterator[bytes]:
    seed = 1
    while True:  # the generator's mix, round after round
        yield from generate(100_000, seed)
        seed += 1


def _produce_forever(kafka: KafkaSettings, rate: int, stop: threading.Event) -> None:
    producer = Producer(kafka.producer_config())
    started, sent = time.monotonic(), 0
    for number, line in enumerate(_events(), 1):
        if stop.is_set():
            break
        message = parse_line(line, number)
        if message.envelope_error is not None or message.topic not in ("posts", "objections",
                                                                        "accounts"):
            continue
        producer.produce(
            kafka.topic(message.topic), value=message_value(message), key=message_key(message)
        )
        sent += 1
        producer.poll(0)
        ahead = sent / rate - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(ahead)
    producer.flush(10)


def _show_counts(
    kafka: KafkaSettings, worker: subprocess.Popen[bytes], stop: threading.Event
) -> None:
    consumer = Consumer(kafka.reader_config("eligibility-audit"))
    consumer.subscribe([kafka.topic("eligibility-audit")])
    summary, applied, shown = Summary(), 0, time.monotonic()
    click.echo("live counts (Ctrl-C stops everything this started):", err=True)
    while not stop.is_set():
        if worker.poll() is not None:
            raise click.ClickException(
                f"the worker stopped (exit {worker.returncode}); see its log"
            )
        message = consumer.poll(0.2)
        error = None if message is None else message.error()
        value = None if message is None else message.value()
        if error is None and value is not None:
            record = _audit.decode(value)
            summary.count(record)
            applied += record.record != "retraction"
        elif error is not None and error.code() != KafkaError._PARTITION_EOF:
            click.echo(f"audit read error: {error}", err=True)
        if time.monotonic() - shown >= 2:
            shown = time.monotonic()
            reasons = ", ".join(f"{r} {n}" for r, n in summary.excluded.most_common(4))
            dead = sum(summary.dead_letters.values())
            click.echo(
                f"applied {applied:>8,} | published {summary.published:>7,} | excluded "
                f"{summary.excluded_posts:>7,} ({reasons}) | retracted {summary.retracted:>6,} "
                f"| dead letters {dead:>5,}"
            )
    consumer.close()
