"""The worker's Prometheus metrics, every one declared here once.

Built by `create(registry)` so tests use a fresh `CollectorRegistry`. Labels
take bounded values only (topic, event type, outcome, reason, partition):
never an account or post id.

Faust's own Prometheus sensor is not installed: it exports per-topic and
per-table internals (send latencies, table ops, rebalances) under generic
names, hundreds of series that answer none of an operator's questions here
(what was published, excluded, retracted, how fast objections are honoured),
while the questions it does answer (lag, rebalances) are covered below or by
the broker's own metrics.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Latency buckets: a batch takes milliseconds; a publication is due within
# tens of milliseconds of its input in steady state, but replays of old events
# measure days, so the buckets run from 5 ms to a week.
_BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 3600.0, 86400.0, 604800.0,
)
# Honouring an objection: the objective is p99 <= 1 s (alert EligibilityObjectionHonourSlow).
_HONOUR_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_REDIS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


@dataclass(frozen=True)
class Metrics:
    input_events: Counter  # counter: input messages applied, by topic and event type
    decisions: Counter  # counter: post decisions by outcome (published, excluded, ignored, stale)
    exclusion_reasons: Counter  # counter: reasons of excluded post versions, one per reason
    retractions: Counter  # counter: posts taken out of the view, by cause
    dead_letters: Counter  # counter: dead letters by input topic and reason
    records_skipped: Counter  # counter: redelivered records at or below the applied offset
    records_forwarded: Counter  # counter: records moved to the partition their key belongs to
    batch_seconds: Histogram  # histogram: time to apply, commit and send one batch
    publication_latency: Histogram  # histogram: a post event's ts to its publication
    objection_honour: Histogram  # histogram: an objection's Kafka timestamp to its effect
    redis_seconds: Histogram  # histogram: one state-table call to Redis
    redis_errors: Counter  # counter: failed state-table calls (retried)
    paused: Gauge  # gauge: 1 while the worker waits for Redis (publishes nothing)
    quarantined_accounts: Gauge  # gauge: accounts in quarantine, per input partition
    objected_accounts: Gauge  # gauge: accounts objected, per input partition
    minor_accounts: Gauge  # gauge: accounts whose profile made them minors, per partition
    posts_in_view: Gauge  # gauge: posts in the view, per input partition
    consumer_lag: Gauge  # gauge: input records not yet applied, per topic and partition
    assigned_partitions: Gauge  # gauge: input partitions this worker owns
    policy_info: Gauge  # gauge: 1, labelled with the policy version in force


def create(registry: CollectorRegistry, prefix: str = "eligibility") -> Metrics:
    def name(suffix: str) -> str:
        return f"{prefix}_{suffix}"

    return Metrics(
        input_events=Counter(
            name("input_events_total"), "Input messages applied, by topic and event type.",
            ["topic", "type"], registry=registry,
        ),
        decisions=Counter(
            name("decisions_total"), "Post event decisions by outcome.",
            ["outcome"], registry=registry,
        ),
        exclusion_reasons=Counter(
            name("exclusion_reasons_total"),
            "Reasons of excluded post versions (a version with two reasons counts twice).",
            ["reason"], registry=registry,
        ),
        retractions=Counter(
            name("retractions_total"), "Posts retracted from the view, by cause.",
            ["cause"], registry=registry,
        ),
        dead_letters=Counter(
            name("dead_letters_total"), "Input messages sent to the dead-letter topic.",
            ["topic", "reason"], registry=registry,
        ),
        records_skipped=Counter(
            name("records_skipped_total"),
            "Redelivered input records already applied (at or below the applied offset).",
            registry=registry,
        ),
        records_forwarded=Counter(
            name("records_forwarded_total"),
            "Input records found on another partition than their key's, forwarded there.",
            registry=registry,
        ),
        batch_seconds=Histogram(
            name("batch_seconds"), "Time to apply, commit and send one batch.",
            buckets=_BATCH_BUCKETS, registry=registry,
        ),
        publication_latency=Histogram(
            name("publication_latency_seconds"),
            "From a post event's ts to the delivery of its training record.",
            buckets=_LATENCY_BUCKETS, registry=registry,
        ),
        objection_honour=Histogram(
            name("objection_honour_seconds"),
            "From an objection's Kafka timestamp to the delivery of its retractions "
            "(or to its state update when nothing had to be retracted).",
            buckets=_HONOUR_BUCKETS, registry=registry,
        ),
        redis_seconds=Histogram(
            name("redis_seconds"), "Duration of one state-table call to Redis.",
            buckets=_REDIS_BUCKETS, registry=registry,
        ),
        redis_errors=Counter(
            name("redis_errors_total"), "State-table calls to Redis that failed (retried).",
            registry=registry,
        ),
        paused=Gauge(
            name("paused"), "1 while the worker waits for Redis and publishes nothing.",
            registry=registry,
        ),
        quarantined_accounts=Gauge(
            name("quarantined_accounts"), "Accounts in quarantine.",
            ["partition"], registry=registry,
        ),
        objected_accounts=Gauge(
            name("objected_accounts"), "Accounts objected.", ["partition"], registry=registry,
        ),
        minor_accounts=Gauge(
            name("minor_accounts"),
            "Accounts whose profile made them minors when it was applied.",
            ["partition"], registry=registry,
        ),
        posts_in_view=Gauge(
            name("posts_in_view"), "Posts in the view.", ["partition"], registry=registry,
        ),
        consumer_lag=Gauge(
            name("consumer_lag"), "Input records not yet applied.",
            ["topic", "partition"], registry=registry,
        ),
        assigned_partitions=Gauge(
            name("assigned_partitions"), "Input partitions this worker owns.",
            registry=registry,
        ),
        policy_info=Gauge(
            name("policy_info"), "The policy version in force (value 1).",
            ["version"], registry=registry,
        ),
    )
