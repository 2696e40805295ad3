"""The `eligibility` command."""

from __future__ import annotations

import gc
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import IO

import click
from tqdm import tqdm

from stream.clock import SystemClock
from stream.core.engine import Engine
from stream.core.policy import PolicyError, load_policy
from stream.eventlog import read_messages
from stream.keys import load_pseudonymizer
from stream.replay import POLICY_META, Outputs, replay
from stream.store.base import StateStore
from stream.store.memory import MemoryStore

OFFLINE_PREFIX = "eligibility-offline"


@click.group()
@click.version_option(package_name="eligibility-filter")
def main() -> None:
    """Streaming eligibility filter for AI-training data (see README.md)."""
    # The state is millions of small acyclic objects: full collections would
    # walk them all again and again for nothing. Young garbage is still collected.
    gc.freeze()
    gc.set_threshold(100_000, 50, 1_000)


def _open_store(state: str, prefix: str) -> StateStore:
    if state == "memory":
        return MemoryStore()
    if state.startswith(("redis://", "rediss://", "unix://")):
        from stream.store.redis_store import RedisStore

        try:
            return RedisStore.from_url(state, prefix=prefix)
        except Exception as exc:  # connection errors come in many kinds
            raise click.ClickException(f"cannot use state {state}: {exc}") from None
    raise click.BadParameter("memory or a redis:// URL", param_hint="--state")


@main.command(name="replay")
@click.argument("log", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--offline", is_flag=True, help="Apply the log here instead of producing it to Kafka."
)
@click.option("--view", "view_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the final view here (one training record per line).")
@click.option("--audit", "audit_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the audit records here.")
@click.option("--dlq", "dlq_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the dead letters here (as an event log with error headers).")
@click.option("--state", default="memory", show_default=True,
              help="State table: memory, or a redis:// URL.")
@click.option("--state-prefix", default=OFFLINE_PREFIX, show_default=True,
              help="Key prefix in Redis, so an offline run never touches a worker's keys.")
@click.option("--policy", "policy_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Policy file (JSON); default: min age 18, EU27 + IS, LI, NO.")
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(1, 100_000))
def replay_command(
    log: Path,
    offline: bool,
    view_path: Path | None,
    audit_path: Path | None,
    dlq_path: Path | None,
    state: str,
    state_prefix: str,
    policy_path: Path | None,
    batch_size: int,
) -> None:
    """Apply an event log (kcat -J envelope) and write the view, audit and dead letters."""
    if not offline:
        raise click.UsageError(
            "producing a log to Kafka comes with the worker; use --offline to apply it here"
        )
    try:
        policy = load_policy(policy_path)
    except PolicyError as exc:
        raise click.ClickException(str(exc)) from None
    engine = Engine(policy, load_pseudonymizer(allow_dev=True), SystemClock())
    with ExitStack() as stack:
        try:
            source = stack.enter_context(log.open("rb"))
            size = log.stat().st_size
            outputs = Outputs(
                audit=_create(stack, audit_path),
                dlq=_create(stack, dlq_path),
            )
            view = _create(stack, view_path)
        except OSError as exc:
            raise UnusableFile(f"{exc.filename}: {exc.strerror}") from None
        store = _open_store(state, state_prefix)
        stack.callback(store.close)
        if view is not None and store.get_meta(POLICY_META) is not None:
            click.echo(
                "note: the state holds earlier runs: --view lists what this run published; "
                "retractions of earlier posts are in the audit",
                err=True,
            )
        bar = stack.enter_context(
            tqdm(
                total=size, unit="B", unit_scale=True, desc="replay", disable=None,
                file=sys.stderr,
            )
        )

        def advance(_: int) -> None:
            bar.update(source.tell() - bar.n)

        summary = replay(read_messages(source), engine, store, outputs, batch_size, advance)
        if view is not None:
            outputs.write_view(view)
    click.echo(summary.render())


class UnusableFile(click.ClickException):
    """A file the command cannot read or write: a usage problem (exit code 2)."""

    exit_code = 2


def _create(stack: ExitStack, path: Path | None) -> IO[bytes] | None:
    return None if path is None else stack.enter_context(path.open("wb"))


@main.command(name="contract")
@click.argument("action", type=click.Choice(["generate", "check"]))
def contract_command(action: str) -> None:
    """Write topics/schemas/ from the structs, or check that it has not drifted."""
    from stream import contract

    raise SystemExit(contract.main([action]))
