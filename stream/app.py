"""The Faust worker: the composition root that wires the core to Kafka and Redis.

`eligibility worker` (or `python -m stream worker`) runs it. One agent with
concurrency 1 consumes the three co-partitioned input topics; Faust's own
partition assignor (used because `table_standby_replicas` stays at its
default of 1) gives one worker all three topics' partition n, so an account's
events are applied by one worker, in order. Everything else is in
`stream.worker.batch`.
"""

from __future__ import annotations

import logging
import os
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import faust
import redis
from confluent_kafka.admin import AdminClient
from faust.types import TP
from prometheus_client import CollectorRegistry, generate_latest
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from stream import faust_fixes
from stream.clock import SystemClock
from stream.core.engine import Engine
from stream.core.events import INPUT_TOPICS
from stream.core.policy import load_policy
from stream.kafka.client import KafkaSettings
from stream.kafka.topics import CO_PARTITIONED, OUTPUT_TOPICS, verify_topics
from stream.keys import load_pseudonymizer
from stream.logs import json_logging_config
from stream.metrics import Metrics
from stream.metrics import create as create_metrics
from stream.settings import WorkerSettings
from stream.store.redis_store import RedisStore
from stream.worker.batch import BatchStats, BatchWorker, Fenced, Incoming
from stream.worker.changelog import ChangelogReader
from stream.worker.observe import forget_partitions, observe_batch
from stream.worker.publisher import KafkaPublisher

log = logging.getLogger("eligibility.worker")
T = TypeVar("T")

# Exit codes of a hard stop: nothing of the batch in hand is acknowledged.
EXIT_FENCED = 75  # another worker owns a partition now
EXIT_BUG = 70  # an unexpected error: restarting redelivers the batch
EXIT_TEST_CRASH = 86  # ELIGIBILITY_TEST_CRASH_AFTER_COMMIT

META_PARTITIONS = "input_partitions"
# Errors after which the same call may succeed: Redis restarting, failing over, away.
TRANSIENT_REDIS = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.BusyLoadingError,
    redis.ReadOnlyError,
)


@contextmanager
def stop_hard_on_error(doing: str) -> Iterator[None]:
    """No exception may leave the agent or a rebalance hook: Faust would
    acknowledge the batch in hand. Fenced or failing, the process ends hard."""
    try:
        yield
    except Fenced as exc:
        log.error("fenced while %s, stopping: %s", doing, exc)
        hard_exit(EXIT_FENCED)
    except BaseException:
        log.exception("unexpected error while %s, stopping without acknowledging", doing)
        hard_exit(EXIT_BUG)


class StartupError(RuntimeError):
    """The worker must not run: topics, Redis or state do not match what it expects."""


def hard_exit(code: int) -> None:
    """End the process now: no `finally`, no acknowledgement of the batch in hand.
    Faust acks a batch whenever its generator closes, whatever the reason."""
    logging.shutdown()
    os._exit(code)


def create_app(settings: WorkerSettings, loglevel: str = "info") -> faust.App:
    """Checks the topics and the state, then builds the app (raises
    `StartupError` with every problem found)."""
    faust_fixes.install()
    kafka = settings.kafka
    engine = Engine(
        load_policy(settings.policy_file),
        load_pseudonymizer(allow_dev=settings.dev_mode),
        SystemClock(),
    )
    store = RedisStore.from_url(settings.redis_url, prefix=settings.state_prefix)
    partitions = check_world(settings, store, kafka)
    app = faust.App(
        settings.group_id,
        broker=[f"kafka://{b.strip()}" for b in kafka.brokers.split(",")],
        topic_allow_declare=False,
        topic_disable_leader=True,
        broker_commit_interval=settings.commit_interval_ms / 1000,
        broker_session_timeout=settings.session_timeout_ms / 1000,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_ms / 3000),
        producer_request_timeout=30.0,
        producer_max_request_size=5_242_880,
        consumer_max_fetch_size=2_097_152,
        consumer_auto_offset_reset="earliest",
        web_port=settings.web_port,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        key_serializer="raw",
        value_serializer="raw",
        logging_config=json_logging_config(loglevel) if settings.log_json else None,
        broker_credentials=faust_credentials(kafka),
    )
    logical = {kafka.topic(name): name for name in INPUT_TOPICS}
    source = app.topic(
        *logical, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    registry = CollectorRegistry()
    metrics = create_metrics(registry)
    metrics.policy_info.labels(engine.policy_version).set(1)
    retry = make_retry(metrics)
    worker = BatchWorker(
        engine,
        store,
        KafkaPublisher(kafka),
        partitions,
        retry,
        changelog=ChangelogReader(kafka),
        after_commit=(lambda: hard_exit(EXIT_TEST_CRASH)) if settings.crash_after_commit else None,
    )
    log.info(
        "worker ready: %d input partitions, policy %s, state prefix %r",
        partitions, engine.policy_version, settings.state_prefix,
    )

    @app.on_partitions_assigned.connect
    async def on_assigned(sender: Any, /, *args: Any, signal: Any, **_: Any) -> None:
        assigned: set[TP] = args[0]  # the whole new assignment
        mine = sorted({tp.partition for tp in assigned if tp.topic in logical})
        generation = int(app.consumer_generation_id)
        await retry(worker.assign, mine, generation)
        metrics.assigned_partitions.set(len(mine))
        log.info("assigned partitions %s in generation %d", mine, generation)

    @app.on_partitions_revoked.connect
    async def on_revoked(sender: Any, /, *args: Any, signal: Any, **_: Any) -> None:
        revoked: set[TP] = args[0]
        gone = {tp.partition for tp in revoked if tp.topic in logical}
        worker.revoke(gone)
        forget_partitions(metrics, gone)
        metrics.assigned_partitions.set(len(worker.owned))

    @app.on_rebalance_complete.connect
    async def on_rebalance_complete(sender: Any, /, *args: Any, signal: Any, **_: Any) -> None:
        """Before consumption resumes: resend predecessors' outboxes, rebuild
        from the changelog, sweep for a new policy: not only when input comes."""
        with stop_hard_on_error("recovering partitions"):
            await worker.recover_all()

    @app.agent(source, concurrency=1)
    async def apply_events(stream: Any) -> None:
        within = settings.batch_within_ms / 1000
        async for events in stream.take_events(settings.batch_size, within):
            with stop_hard_on_error("applying a batch"):
                records = [_incoming(event.message, logical) for event in events]
                stats = await worker.process(records)
            observe_batch(metrics, stats, worker.progress, time.time())
            log_decisions(stats)
            log.info(
                "batch: %d applied, %d skipped, %d forwarded, %d sent in %.1f ms",
                stats.applied, stats.skipped, stats.forwarded, stats.sent, stats.seconds * 1000,
            )

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        # aiohttp takes the charset apart from the content type
        return web.bytes(generate_latest(registry), content_type="text/plain; version=0.0.4")

    @app.timer(interval=5.0)  # type: ignore[untyped-decorator]
    async def measure_lag() -> None:
        """Input records not applied yet, per topic and partition this worker owns."""
        for tp in app.consumer.assignment():
            topic = logical.get(tp.topic)
            known = worker.progress.get(tp.partition)
            if topic is None or known is None:
                continue
            applied = known.offsets.get(topic, -1)
            lag = max(0, app.consumer.highwater(tp) - applied - 1)
            metrics.consumer_lag.labels(topic, str(tp.partition)).set(lag)
    return app


def check_world(settings: WorkerSettings, store: RedisStore, kafka: KafkaSettings) -> int:
    """Refuse to start on anything that would make the filter wrong; the
    number of input partitions otherwise."""
    problems = store.check_serving()
    admin = AdminClient(kafka.admin_config())
    metadata = admin.list_topics(timeout=30)
    posts = metadata.topics.get(kafka.topic("posts"))
    if posts is None or posts.error is not None:
        raise StartupError(f"{kafka.topic('posts')}: missing (run `eligibility topics create`)")
    partitions = len(posts.partitions)
    problems += verify_topics(admin, kafka, CO_PARTITIONED, partitions)
    for name in OUTPUT_TOPICS:
        topic = metadata.topics.get(kafka.topic(name))
        count = len(topic.partitions) if topic is not None and topic.error is None else None
        problems += verify_topics(admin, kafka, [name], count)
    recorded = store.get_meta(META_PARTITIONS)
    if recorded is None:
        store.set_meta(META_PARTITIONS, str(partitions))
    elif int(recorded) != partitions:
        problems.append(
            f"the state was built with {recorded} input partitions, the topics have "
            f"{partitions}: accounts would move between partitions (rebuild the state)"
        )
    if problems:
        raise StartupError("refusing to start:\n  " + "\n  ".join(problems))
    return partitions


def faust_credentials(kafka: KafkaSettings) -> Any:
    """The Kafka security settings (ELIGIBILITY_KAFKA_*) for Faust's aiokafka
    clients, as the confluent-kafka clients get them."""
    security = dict(kafka.security)
    protocol = security.get("security.protocol", "PLAINTEXT").upper()
    context = None
    if protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=security.get("ssl.ca.location"))
    if protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=security.get("sasl.username"),
            password=security.get("sasl.password"),
            mechanism=security.get("sasl.mechanism", "PLAIN"),
            ssl_context=context,
        )
    return None if context is None else faust.SSLCredentials(context)


def log_decisions(stats: BatchStats) -> None:
    """One line per retraction and per dead letter: operators follow a post by
    its id and an account by its pseudonym (never its id, never a text)."""
    for record, outcome, _ in stats.outcomes:
        for audit in outcome.audits:
            source = f"{record.topic}[{record.partition}]@{record.offset}"
            if audit.record == "retraction":
                log.info(
                    "retracted %s of %s: %s (from %s)",
                    audit.post_id, audit.author, ",".join(audit.reasons), source,
                    extra={"post_id": audit.post_id, "author": audit.author,
                           "cause": list(audit.reasons), "source": source},
                )
            elif audit.record == "dead_letter":
                log.info(
                    "dead letter %s from %s", ",".join(audit.reasons), source,
                    extra={"reason": audit.reasons[0], "source": source,
                           "author": audit.author, "post_id": audit.post_id},
                )


def make_retry(metrics: Metrics) -> Any:
    """Retries a blocking state-table call in place until Redis answers, with
    capped exponential backoff; nothing is published meanwhile (the worker is
    paused: logged, and `eligibility_paused` is 1)."""

    def paused(state: Any) -> None:
        metrics.redis_errors.inc()
        metrics.paused.set(1)
        log.warning(
            "Redis unavailable (%s): paused, retry %d",
            state.outcome.exception(), state.attempt_number,
        )

    async def retry(fn: Callable[..., T], /, *args: Any) -> T:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(TRANSIENT_REDIS),
            wait=wait_exponential(multiplier=0.05, max=5.0),
            before_sleep=paused,
            reraise=True,
        ):
            with attempt, metrics.redis_seconds.time():
                result = fn(*args)
            outcome = attempt.retry_state.outcome
            if outcome is not None and outcome.failed:
                continue  # tenacity retries it, or raises it if it is no Redis outage
            if attempt.retry_state.attempt_number > 1:
                metrics.paused.set(0)
                log.info("Redis answers again: resumed")
            return result
        raise AssertionError("unreachable")

    return retry


def _incoming(message: Any, logical: dict[str, str]) -> Incoming:
    headers = message.headers or ()
    if isinstance(headers, dict):
        headers = headers.items()
    timestamp = message.timestamp
    return Incoming(
        topic=logical[message.topic],
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        timestamp_ms=None if timestamp is None else int(timestamp * 1000),
        headers=tuple((str(k), bytes(v)) for k, v in headers),
    )
