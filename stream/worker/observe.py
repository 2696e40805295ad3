"""What a batch did, as metrics (stream.metrics): counts, latencies, state sizes."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import suppress

from stream.core.engine import Publish
from stream.core.events import INPUT_TOPICS
from stream.metrics import Metrics
from stream.store.base import PartitionProgress
from stream.worker.batch import BatchStats


def observe_batch(
    metrics: Metrics,
    stats: BatchStats,
    progress: Mapping[int, PartitionProgress],
    now: float,
) -> None:
    """`now`: when the batch's sends were delivered (seconds since the epoch)."""
    metrics.records_skipped.inc(stats.skipped)
    metrics.records_forwarded.inc(stats.forwarded)
    metrics.batch_seconds.observe(stats.seconds)
    for record, outcome, ts in stats.outcomes:
        event_type = next((a.event_type for a in outcome.audits if a.event_type), None)
        if outcome.dead_letter is not None:
            event_type = "dead_letter"
            metrics.dead_letters.labels(record.topic, outcome.dead_letter.reason.value).inc()
        metrics.input_events.labels(record.topic, event_type or "retraction_request").inc()
        for audit in outcome.audits:
            if audit.record == "post":
                metrics.decisions.labels(audit.outcome).inc()
                if audit.outcome == "excluded":
                    for reason in audit.reasons:
                        metrics.exclusion_reasons.labels(reason).inc()
            elif audit.record == "retraction":
                metrics.retractions.labels(audit.reasons[0] if audit.reasons else "").inc()
        if ts is not None and any(isinstance(c, Publish) for c in outcome.changes):
            metrics.publication_latency.observe(max(0.0, now - ts / 1_000_000))
        honoured = event_type == "objection.filed" and record.timestamp_ms is not None and any(
            a.record == "account" and a.outcome == "changed" for a in outcome.audits
        )
        if honoured and record.timestamp_ms is not None:
            metrics.objection_honour.observe(max(0.0, now - record.timestamp_ms / 1000))
    observe_sizes(metrics, progress)


def observe_sizes(metrics: Metrics, progress: Mapping[int, PartitionProgress]) -> None:
    gauges = {
        "objected": metrics.objected_accounts,
        "quarantined": metrics.quarantined_accounts,
        "minor": metrics.minor_accounts,
        "in_view": metrics.posts_in_view,
    }
    for partition, known in progress.items():
        for name, gauge in gauges.items():
            gauge.labels(str(partition)).set(known.counts.get(name, 0))


def forget_partitions(metrics: Metrics, partitions: set[int]) -> None:
    """Drop the per-partition series of partitions this worker no longer owns:
    their new owner reports them (summed over workers, nothing counts twice)."""
    for partition in map(str, partitions):
        for gauge in (
            metrics.objected_accounts,
            metrics.quarantined_accounts,
            metrics.minor_accounts,
            metrics.posts_in_view,
        ):
            with suppress(KeyError):
                gauge.remove(partition)
        for topic in INPUT_TOPICS:
            with suppress(KeyError):
                metrics.consumer_lag.remove(topic, partition)
