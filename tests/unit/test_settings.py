"""The worker's settings come from the environment, checked once."""

from __future__ import annotations

from pathlib import Path

import faust
import pytest

from stream.app import faust_credentials
from stream.kafka.client import KafkaSettings
from stream.settings import SettingsError, WorkerSettings


def test_defaults() -> None:
    settings = WorkerSettings.from_env({})
    assert settings.redis_url == "redis://127.0.0.1:16379/0"
    assert settings.state_prefix == "eligibility"
    assert (settings.batch_size, settings.batch_within_ms) == (500, 50)
    assert settings.policy_file is None and not settings.dev_mode and not settings.log_json
    assert settings.kafka.brokers == "127.0.0.1:19092" and settings.kafka.topic("posts") == "posts"


def test_every_variable_is_read() -> None:
    settings = WorkerSettings.from_env({
        "ELIGIBILITY_KAFKA_BROKERS": "k1:9092,k2:9092",
        "ELIGIBILITY_TOPIC_PREFIX": "prod.",
        "ELIGIBILITY_REDIS_URL": "rediss://:secret@redis:6380/2",
        "ELIGIBILITY_STATE_PREFIX": "filter-eu",
        "ELIGIBILITY_POLICY_FILE": "/etc/eligibility/policy.json",
        "ELIGIBILITY_DEV_MODE": "1",
        "ELIGIBILITY_GROUP_ID": "filter-eu",
        "ELIGIBILITY_BATCH_SIZE": "2000",
        "ELIGIBILITY_BATCH_WITHIN_MS": "20",
        "ELIGIBILITY_COMMIT_INTERVAL_MS": "500",
        "ELIGIBILITY_SESSION_TIMEOUT_MS": "10000",
        "ELIGIBILITY_WEB_HOST": "0.0.0.0",
        "ELIGIBILITY_WEB_PORT": "7000",
        "ELIGIBILITY_LOG_FORMAT": "json",
    })
    assert settings.kafka.topic("posts") == "prod.posts"
    assert settings.kafka.brokers == "k1:9092,k2:9092"
    assert settings.redis_url.startswith("rediss://")
    assert settings.policy_file == Path("/etc/eligibility/policy.json")
    assert settings.dev_mode and settings.log_json
    assert (settings.batch_size, settings.batch_within_ms, settings.commit_interval_ms) == (
        2000, 20, 500
    )
    assert (settings.web_host, settings.web_port, settings.session_timeout_ms) == (
        "0.0.0.0", 7000, 10_000
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [("BATCH_SIZE", "many"), ("BATCH_SIZE", "0"), ("SESSION_TIMEOUT_MS", "10")],
)
def test_unusable_numbers_are_refused(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"ELIGIBILITY_{name}"):
        WorkerSettings.from_env({f"ELIGIBILITY_{name}": value})


def test_kafka_security_reaches_faust() -> None:
    sasl = faust_credentials(KafkaSettings.from_env({
        "ELIGIBILITY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "ELIGIBILITY_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "ELIGIBILITY_KAFKA_SASL_USERNAME": "filter",
        "ELIGIBILITY_KAFKA_SASL_PASSWORD": "secret",
    }))
    assert isinstance(sasl, faust.SASLCredentials)
    assert sasl.username == "filter" and sasl.password == "secret"
    assert sasl.ssl_context is not None
    tls = faust_credentials(
        KafkaSettings.from_env({"ELIGIBILITY_KAFKA_SECURITY_PROTOCOL": "SSL"})
    )
    assert isinstance(tls, faust.SSLCredentials)
    assert faust_credentials(KafkaSettings.from_env({})) is None
