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
@click.option("--rate", default=0.0, type=click.FloatRange(min=0), show_default=True,
              help="Without --offline: produce at most N events/s (0: unlimited).")
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
    rate: float,
) -> None:
    """Apply an event log (kcat -J envelope) and write the view, audit and dead letters."""
    if not offline:
        _produce_to_kafka(log, rate)
        return
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


# --- Kafka: producing a log, the topics, the view (stream/kafka/) ---

_OFFLINE_ONLY = ("view_path", "audit_path", "dlq_path", "state", "state_prefix", "policy_path",
                 "batch_size")


def _produce_to_kafka(log: Path, rate: float) -> None:
    """`replay` without --offline: produce the log to the input topics, as upstream would."""
    ctx = click.get_current_context()
    given = [
        param.opts[0]
        for param in ctx.command.params
        if param.name in _OFFLINE_ONLY
        and ctx.get_parameter_source(param.name) is not click.core.ParameterSource.DEFAULT
    ]
    if given:
        raise click.UsageError(
            f"{', '.join(given)} only with --offline: without it the log is produced to Kafka "
            "(the worker applies it there)"
        )
    from stream.kafka import KafkaToolError
    from stream.kafka.produce import replay_to_kafka

    try:
        summary = replay_to_kafka(log, rate)
    except OSError as exc:
        raise UnusableFile(f"{exc.filename}: {exc.strerror}") from None
    except KafkaToolError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(summary.render())
    if summary.failed:
        raise click.ClickException(
            f"{summary.failed} deliveries failed, the first: {summary.first_error}"
        )


@main.group(name="topics")
def topics_group() -> None:
    """Create or check the six topics of topics/*.yaml (names: ELIGIBILITY_TOPIC_PREFIX +
    the contract's; cluster: ELIGIBILITY_KAFKA_BROKERS)."""


@topics_group.command(name="create")
@click.option("--partitions", type=click.IntRange(1),
              help="Partitions of every topic instead of the spec's (the inputs stay equal).")
@click.option("--replication-factor", default=1, show_default=True, type=click.IntRange(1),
              help="Replicas per partition (the spec asks 3 of a production cluster); "
                   "min.insync.replicas is capped at it.")
def topics_create_command(partitions: int | None, replication_factor: int) -> None:
    """Create the topics; existing ones are verified instead (exit 1 on problems)."""
    from confluent_kafka.admin import AdminClient

    from stream.kafka import KafkaToolError
    from stream.kafka.client import KafkaSettings
    from stream.kafka.topics import create_topics

    try:
        settings = KafkaSettings.from_env()
        admin = AdminClient(settings.admin_config())
        report = create_topics(admin, settings, partitions, replication_factor)
    except KafkaToolError as exc:
        raise click.ClickException(str(exc)) from None
    for name in report.created:
        click.echo(f"created {name}")
    for name in report.existing:
        click.echo(f"exists  {name}")
    _fail_on(report.problems)


@topics_group.command(name="verify")
@click.option("--partitions", type=click.IntRange(1),
              help="Expect this partition count of every topic instead of the spec's.")
def topics_verify_command(partitions: int | None) -> None:
    """Check the topics against the spec: existence, partitions, configs (exit 1 on problems)."""
    from confluent_kafka.admin import AdminClient

    from stream.kafka import KafkaToolError
    from stream.kafka.client import KafkaSettings
    from stream.kafka.topics import ALL_TOPICS, verify_topics

    try:
        settings = KafkaSettings.from_env()
        admin = AdminClient(settings.admin_config())
        problems = verify_topics(admin, settings, ALL_TOPICS, partitions)
    except KafkaToolError as exc:
        raise click.ClickException(str(exc)) from None
    _fail_on(problems)
    click.echo(f"ok: the {len(ALL_TOPICS)} topics are as specified")


def _fail_on(problems: list[str]) -> None:
    if problems:
        for problem in problems:
            click.echo(problem, err=True)
        raise click.ClickException(f"{len(problems)} problem(s) with the topics")


@main.command(name="view")
@click.option("--view", "view_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the view here instead of stdout.")
def view_command(view_path: Path | None) -> None:
    """Read training-ready from the beginning to its current end and write the view: the
    latest record per post, sorted by post_id, as `replay --offline --view` writes it."""
    from stream.kafka import KafkaToolError
    from stream.kafka.client import KafkaSettings
    from stream.kafka.view import read_view, write_view

    try:
        view = read_view(KafkaSettings.from_env())
    except KafkaToolError as exc:
        raise click.ClickException(str(exc)) from None
    if view_path is None:
        write_view(view, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return
    try:
        with view_path.open("wb") as out:
            write_view(view, out)
    except OSError as exc:
        raise UnusableFile(f"{exc.filename}: {exc.strerror}") from None


@main.command(
    name="worker",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
@click.option("--loglevel", "-l", default="info", show_default=True)
@click.pass_context
def worker_command(ctx: click.Context, loglevel: str) -> None:
    """Run the always-on filter: Faust agents on Kafka, state in Redis.

    Settings come from ELIGIBILITY_* environment variables (README). Extra
    arguments go to Faust's worker command."""
    from stream.app import StartupError, create_app
    from stream.settings import SettingsError, WorkerSettings

    try:
        app = create_app(WorkerSettings.from_env(), loglevel)
    except (StartupError, SettingsError, PolicyError) as exc:
        raise click.ClickException(str(exc)) from None
    sys.argv = ["eligibility", "worker", "--loglevel", loglevel, *ctx.args]
    app.main()


@main.command(name="demo")
@click.option("--rate", default=500, show_default=True, type=click.IntRange(1, 1_000_000),
              help="Synthetic events per second.")
@click.option("--partitions", default=3, show_default=True, type=click.IntRange(1, 64))
def demo_command(rate: int, partitions: int) -> None:
    """The live filter on local Kafka and Redis with a synthetic stream, until Ctrl-C."""
    from stream.demo import run_demo

    run_demo(rate, partitions)


@main.group(name="state")
def state_group() -> None:
    """The worker's state table in Redis."""


@state_group.command(name="rebuild")
@click.option("--partition", "only", type=int, multiple=True,
              help="Rebuild only these input partitions (default: all).")
def state_rebuild_command(only: tuple[int, ...]) -> None:
    """Write the state back into Redis from the changelog topic (workers stopped).

    Settings as the worker's (ELIGIBILITY_REDIS_URL, ELIGIBILITY_STATE_PREFIX,
    ELIGIBILITY_KAFKA_BROKERS, ELIGIBILITY_TOPIC_PREFIX). A running worker does
    this by itself for a partition whose Redis state is behind the changelog."""
    from confluent_kafka.admin import AdminClient

    from stream.kafka.topics import STATE_TOPIC
    from stream.settings import WorkerSettings
    from stream.worker.changelog import ChangelogReader, rebuild_partition

    settings = WorkerSettings.from_env()
    admin = AdminClient(settings.kafka.admin_config())
    topic = admin.list_topics(timeout=30).topics.get(settings.kafka.topic(STATE_TOPIC))
    if topic is None or topic.error is not None:
        raise click.ClickException(f"{settings.kafka.topic(STATE_TOPIC)}: missing")
    from stream.store.redis_store import RedisStore

    store = RedisStore.from_url(settings.redis_url, prefix=settings.state_prefix)
    reader = ChangelogReader(settings.kafka)
    for partition in only or sorted(topic.partitions):
        progress = rebuild_partition(reader, store, partition)
        where = "empty" if progress is None else f"offsets {progress.offsets}, seq {progress.seq}"
        click.echo(f"partition {partition}: {where}")
    store.close()
