"""Redis is a serving copy: a worker rebuilds it from the changelog when it is empty or behind."""

from __future__ import annotations

import redis

from stream.core.decode import Message
from tests.system.conftest import Deployment
from tests.unit.builders import objection, post, profile

ACCOUNTS = [f"acct-{n}" for n in range(12)]


def profiles() -> list[Message]:
    return [profile(a, "1990-01-01", "DE") for a in ACCOUNTS]


def first_wave() -> list[Message]:
    return [post(f"p-{a}-1", a, "2025-06-01T10:00:00Z") for a in ACCOUNTS]


def second_wave() -> list[Message]:
    return [post(f"p-{a}-2", a, "2025-06-01T11:00:00Z") for a in ACCOUNTS]


def objections() -> list[Message]:
    return [objection(a, "2025-06-01T12:00:00Z") for a in ACCOUNTS[::2]]


def run_until_caught_up(deployment: Deployment, *waves: list[Message]) -> None:
    """One worker applies each wave before the next is produced (the three
    topics interleave in any order, so a post could otherwise overtake its
    author's profile)."""
    worker = deployment.start_worker()
    deployment.wait_assigned(worker)
    for messages in waves:
        deployment.produce(messages)
        deployment.wait_caught_up()
    worker.stop()


def keys(client: redis.Redis, deployment: Deployment) -> list[bytes]:
    return list(client.scan_iter(match=f"{deployment.name}:*", count=1000))


def test_an_emptied_redis_is_rebuilt_before_anything_is_published(
    deployment: Deployment, redis_url: str
) -> None:
    run_until_caught_up(deployment, profiles(), first_wave())
    assert len(deployment.view()) == len(ACCOUNTS)
    client = redis.Redis.from_url(redis_url)
    client.delete(*keys(client, deployment))  # Redis lost everything of this filter
    assert keys(client, deployment) == []

    worker = deployment.start_worker()
    deployment.wait_assigned(worker)
    deployment.produce(objections())  # retracts posts only a rebuilt view index knows
    deployment.wait_caught_up()
    view = deployment.check()
    assert "rebuilding" in worker.text()
    assert set(view) == {f"p-{a}-1" for a in ACCOUNTS[1::2]}
    client.close()


def test_a_redis_behind_the_changelog_is_rebuilt(deployment: Deployment, redis_url: str) -> None:
    run_until_caught_up(deployment, profiles(), first_wave())
    client = redis.Redis.from_url(redis_url)
    snapshot = {key: client.dump(key) for key in keys(client, deployment)}

    run_until_caught_up(deployment, second_wave())  # Redis moves on...
    assert len(deployment.view()) == 2 * len(ACCOUNTS)
    client.delete(*keys(client, deployment))  # ...and comes back from the older snapshot
    for key, dumped in snapshot.items():
        client.restore(key, 0, dumped)

    worker = deployment.start_worker()
    deployment.wait_assigned(worker)
    deployment.produce(objections())
    deployment.wait_caught_up()
    view = deployment.check()
    assert "rebuilding" in worker.text()
    # the objections retract the second wave too, which only the changelog remembered
    assert set(view) == {f"p-{a}-{n}" for a in ACCOUNTS[1::2] for n in (1, 2)}
    client.close()
