"""Kafka plumbing around the core: settings, topic creation and checks, producing an
event log to the input topics, and reading the view back from `training-ready`.

confluent-kafka (librdkafka), not faust: these are short-lived command-line clients
that need exact control over partitioning and offsets, not a stream-processing app.
"""

from __future__ import annotations


class KafkaToolError(Exception):
    """A failure a command reports in one line (its message says what to do)."""
