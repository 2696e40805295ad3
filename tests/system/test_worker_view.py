"""A worker on real Kafka and Redis: the view it builds is the one the core builds offline."""

from __future__ import annotations

from pathlib import Path

from stream.eventlog import parse_line, read_messages
from stream.synthetic import generate
from tests.system.conftest import Deployment

EXAMPLES = Path(__file__).parents[2] / "examples"


def test_walkthrough_through_kafka(deployment: Deployment) -> None:
    worker = deployment.start_worker()
    deployment.wait_assigned(worker)
    with (EXAMPLES / "walkthrough.jsonl").open("rb") as log:
        deployment.produce(list(read_messages(log)))
    deployment.wait_caught_up()
    view = deployment.check()
    # whatever the interleaving of the three topics, dora's posts never stay
    # (quarantined, then objected) and ben's and carla's never appear
    assert not {"p-ben-1", "p-carla-1", "p-anna-dm", "p-dora-1", "p-dora-2"} & set(view)
    dead = deployment.read("eligibility-dlq")
    assert len(dead) == 1
    headers = dict(dead[0].headers())
    assert headers["error"] == b"bad_time"
    assert headers["source_topic"] == b"objections"
    assert headers["source_offset"].isdigit() and headers["source_partition"].isdigit()


def test_a_synthetic_mix_through_two_workers(deployment: Deployment) -> None:
    first, second = deployment.start_worker(), deployment.start_worker()
    deployment.wait_assigned(first)
    deployment.wait_assigned(second)
    messages = [parse_line(line, n) for n, line in enumerate(generate(3000, seed=5), 1)]
    deployment.produce([m for m in messages if m.topic in ("posts", "objections", "accounts")])
    deployment.wait_caught_up()
    view = deployment.check()
    assert len(view) > 500
