"""The worker's settings: read once from the environment at the entry point, then frozen."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from stream.kafka.client import KafkaSettings

DEFAULT_REDIS_URL: Final = "redis://127.0.0.1:16379/0"
DEFAULT_STATE_PREFIX: Final = "eligibility"


class SettingsError(ValueError):
    """An environment variable with an unusable value."""


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """Every `ELIGIBILITY_*` variable the worker reads (see README, "Worker settings")."""

    kafka: KafkaSettings
    redis_url: str = DEFAULT_REDIS_URL  # ELIGIBILITY_REDIS_URL (password and rediss:// TLS in it)
    state_prefix: str = DEFAULT_STATE_PREFIX  # ELIGIBILITY_STATE_PREFIX
    policy_file: Path | None = None  # ELIGIBILITY_POLICY_FILE
    dev_mode: bool = False  # ELIGIBILITY_DEV_MODE=1: the built-in pseudonym key is allowed
    group_id: str = "eligibility-filter"  # ELIGIBILITY_GROUP_ID: the Faust app id
    batch_size: int = 500  # ELIGIBILITY_BATCH_SIZE: records per batch at most
    batch_within_ms: int = 50  # ELIGIBILITY_BATCH_WITHIN_MS: wait at most this for a batch
    commit_interval_ms: int = 1000  # ELIGIBILITY_COMMIT_INTERVAL_MS: offset commits
    session_timeout_ms: int = 30_000  # ELIGIBILITY_SESSION_TIMEOUT_MS
    web_port: int = 6066  # ELIGIBILITY_WEB_PORT: Faust's web server, with /metrics
    web_host: str = "127.0.0.1"  # ELIGIBILITY_WEB_HOST: 0.0.0.0 in a container
    log_json: bool = False  # ELIGIBILITY_LOG_FORMAT=json: one JSON object per line
    crash_after_commit: bool = False  # ELIGIBILITY_TEST_CRASH_AFTER_COMMIT=1: tests only

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkerSettings:
        env = os.environ if env is None else env

        def text(name: str, default: str) -> str:
            return env.get(f"ELIGIBILITY_{name}", "").strip() or default

        def number(name: str, default: int, least: int = 1) -> int:
            raw = text(name, str(default))
            try:
                value = int(raw)
            except ValueError:
                raise SettingsError(f"ELIGIBILITY_{name}={raw!r} is not an integer") from None
            if value < least:
                raise SettingsError(f"ELIGIBILITY_{name}={value} must be at least {least}")
            return value

        policy = text("POLICY_FILE", "")
        return cls(
            kafka=KafkaSettings.from_env(env),
            redis_url=text("REDIS_URL", DEFAULT_REDIS_URL),
            state_prefix=text("STATE_PREFIX", DEFAULT_STATE_PREFIX),
            policy_file=Path(policy) if policy else None,
            dev_mode=text("DEV_MODE", "0") == "1",
            group_id=text("GROUP_ID", "eligibility-filter"),
            batch_size=number("BATCH_SIZE", 500),
            batch_within_ms=number("BATCH_WITHIN_MS", 50),
            commit_interval_ms=number("COMMIT_INTERVAL_MS", 1000),
            session_timeout_ms=number("SESSION_TIMEOUT_MS", 30_000, least=1000),
            web_port=number("WEB_PORT", 6066),
            web_host=text("WEB_HOST", "127.0.0.1"),
            log_json=text("LOG_FORMAT", "text") == "json",
            crash_after_commit=text("TEST_CRASH_AFTER_COMMIT", "0") == "1",
        )
