"""What the worker makes of its input on real Kafka and Redis: batches where
nothing is published, records on the wrong partition, every kind of bad input
(SPEC.md, "Bad input"), and the startup checks that keep it from running at all.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from confluent_kafka.admin import AdminClient, NewTopic

from stream.kafka.topics import load_specs
from stream.worker.partitioning import partition_for
from tests.system.conftest import Deployment, Worker
from tests.unit.builders import objection, post, profile

MIB = 1_048_576
# the worker's headers on records it forwards to another input partition (stream/worker/batch.py)
FORWARDED_HEADER = "eligibility-forwarded-from"  # "topic:partition:offset" where it landed
RETRACT_HEADER = "eligibility-retract-posts"  # a retraction request: JSON list of post ids
TS = "2025-06-01T11:00:00Z"  # after the builders' default ts: later than the posts it follows


# -- helpers --------------------------------------------------------------------------


def home(key: str | bytes, deployment: Deployment) -> int:
    raw = key.encode() if isinstance(key, str) else key
    return partition_for(raw, deployment.partitions)


def elsewhere(key: str, deployment: Deployment) -> int:
    """A partition the key does not hash to."""
    return (home(key, deployment) + 1) % deployment.partitions


def account_on(partition: int, deployment: Deployment, stem: str) -> str:
    """An account id whose key hashes to `partition`."""
    for n in range(10_000):
        candidate = f"{stem}-{n}"
        if home(candidate, deployment) == partition:
            return candidate
    raise AssertionError("no such account")


def raw(value: dict[str, Any]) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


def spliced(value: dict[str, Any], extra: bytes) -> bytes:
    """The JSON text of `value` with `extra` (raw JSON members) added at its end."""
    return raw(value)[:-1] + b", " + extra + b"}"


def post_value(post_id: str, account: str, **changes: Any) -> dict[str, Any]:
    """A valid post.updated (a later version than the builders' posts)."""
    value: dict[str, Any] = {
        "event_id": f"e-{post_id}", "type": "post.updated", "ts": TS, "post_id": post_id,
        "account_id": account, "created_at": TS, "kind": "post", "audience": "public",
        "text": "hi", "lang": "en", "surface": "facebook",
    }
    value.update(changes)
    return value


def without(value: dict[str, Any], field: str) -> dict[str, Any]:
    return {k: v for k, v in value.items() if k != field}


def sized(total: int, post_id: str, account: str) -> bytes:
    """A valid post.updated of exactly `total` bytes."""
    base = len(raw(post_value(post_id, account, text="")))
    value = raw(post_value(post_id, account, text="x" * (total - base)))
    assert len(value) == total
    return value


def nested(levels: int, post_id: str, account: str) -> bytes:
    """A valid post.updated whose extra field makes it `levels` levels deep."""
    inner = levels - 1
    return spliced(post_value(post_id, account), b'"extra": ' + b"[" * inner + b"]" * inner)


def audits(deployment: Deployment, record: str, post_id: str | None = None) -> list[dict[str, Any]]:
    return [
        a for a in deployment.audit()
        if a["record"] == record and (post_id is None or a.get("post_id") == post_id)
    ]


def forwarded_copies(deployment: Deployment, topic: str, partition: int,
                     origin: tuple[int, int]) -> list[Any]:
    """Messages on `topic`/`partition` that say they were forwarded from `origin`."""
    mark = f"{topic}:{origin[0]}:{origin[1]}".encode()
    return [
        m for m in deployment.read(topic)
        if m.partition() == partition and (FORWARDED_HEADER, mark) in (m.headers() or [])
    ]


def alive(worker: Worker) -> None:
    assert worker.process.poll() is None, worker.text()[-3000:]


def assignments(worker: Worker) -> list[tuple[int, set[int]]]:
    """(generation, partitions) of each 'assigned partitions' line of a worker's log."""
    return [
        (int(gen), {int(p) for p in parts.split(",") if p.strip()})
        for parts, gen in re.findall(
            r"assigned partitions \[([0-9, ]*)\] in generation (\d+)", worker.text()
        )
    ]


def settled(workers: list[Worker], partitions: int, timeout: float = 90) -> list[set[int]]:
    """Wait until every worker's latest assignment is of one generation and they
    split all partitions between them; each worker's partitions."""
    deadline = time.monotonic() + timeout
    while True:
        for worker in workers:
            alive(worker)
        latest = [assignments(w)[-1] if assignments(w) else None for w in workers]
        if all(latest):
            generations = {g for g, _ in latest}  # type: ignore[misc]
            sets = [s for _, s in latest]  # type: ignore[misc]
            if (len(generations) == 1 and all(sets)
                    and sum(len(s) for s in sets) == partitions
                    and set().union(*sets) == set(range(partitions))):
                time.sleep(2)  # no newer generation on its way
                if [assignments(w)[-1] for w in workers] == latest:
                    return sets
        assert time.monotonic() < deadline, [w.text()[-2000:] for w in workers]
        time.sleep(0.3)


# -- 1. a whole batch excluded ----------------------------------------------------------


def test_batches_where_everything_is_excluded_are_committed(deployment: Deployment) -> None:
    worker = deployment.start_worker(ELIGIBILITY_BATCH_SIZE="50")
    deployment.wait_assigned(worker)
    kids = [f"kid-{n}" for n in range(20)]
    deployment.produce([profile(kid, birth="2015-03-01", country="DE") for kid in kids])
    deployment.wait_caught_up(60)
    private = [post(f"dm-{n}", f"talker-{n % 30}", kind="message", audience="private")
               for n in range(200)]
    minors = [post(f"kid-post-{n}", kids[n % 20]) for n in range(200)]
    deployment.produce(private + minors)
    deployment.wait_caught_up(60)  # lag 0: the group committed the end of every partition

    assert deployment.read("training-ready") == []
    records = audits(deployment, "post")
    assert len(records) == 400
    assert {a["outcome"] for a in records} == {"excluded"}
    by_id = {a["post_id"]: a["reasons"] for a in records}
    assert all("private_conversation" in by_id[f"dm-{n}"] for n in range(200))
    assert all(by_id[f"kid-post-{n}"] == ["minor"] for n in range(200))
    alive(worker)
    assert deployment.check() == {}


# -- 2. records on the wrong partition ----------------------------------------------------


def test_a_record_on_the_wrong_partition_is_forwarded_and_applied_once(
    deployment: Deployment,
) -> None:
    worker = deployment.start_worker()
    deployment.wait_assigned(worker)
    author, objector = "wanderer", "objector"
    deployment.produce([profile(author), profile(objector)])
    deployment.wait_caught_up(60)
    deployment.produce([post("objector-1", objector)])
    deployment.wait_caught_up(60)
    assert "objector-1" in deployment.view()

    right, wrong = home(author, deployment), elsewhere(author, deployment)
    message = post("wanderer-1", author)
    assert isinstance(message.value, bytes)
    landed = deployment.produce_located("posts", author.encode(), message.value, wrong)
    assert landed[0] == wrong
    deployment.wait_caught_up(60)

    copies = forwarded_copies(deployment, "posts", right, landed)
    assert len(copies) == 1
    copy = copies[0]
    assert (copy.key(), copy.value()) == (author.encode(), message.value)
    published = [m for m in deployment.read("training-ready") if m.key() == b"wanderer-1"]
    assert len(published) == 1 and published[0].value() is not None
    records = audits(deployment, "post", "wanderer-1")
    assert len(records) == 1, records
    assert records[0]["outcome"] == "published"
    assert records[0]["source"] == {"topic": "posts", "partition": right,
                                    "offset": copy.offset()}

    # An objection on the wrong partition still retracts the account's posts.
    right, wrong = home(objector, deployment), elsewhere(objector, deployment)
    filed = objection(objector).value
    assert isinstance(filed, bytes)
    landed = deployment.produce_located("objections", objector.encode(), filed, wrong)
    deployment.wait_caught_up(60)
    copies = forwarded_copies(deployment, "objections", right, landed)
    assert len(copies) == 1
    retractions = audits(deployment, "retraction", "objector-1")
    assert len(retractions) == 1
    assert retractions[0]["reasons"] == ["objected"]
    assert retractions[0]["source"] == {"topic": "objections", "partition": right,
                                        "offset": copies[0].offset()}
    changes = [a for a in audits(deployment, "account") if a.get("event_type") == "objection.filed"]
    assert len(changes) == 1 and changes[0]["source"]["partition"] == right
    alive(worker)
    view = deployment.check()
    assert set(view) == {"wanderer-1"}


def test_a_forwarded_dead_letter_is_applied_once_across_a_restart(
    deployment: Deployment,
) -> None:
    first = deployment.start_worker()
    deployment.wait_assigned(first)
    account = "restless"
    right, wrong = home(account, deployment), elsewhere(account, deployment)
    deployment.produce([profile(account)])
    deployment.wait_caught_up(60)
    bad = raw({"event_id": "e-bad-obj", "type": "objection.filed", "ts": "yesterday",
               "account_id": account})
    landed = deployment.produce_located("objections", account.encode(), bad, wrong)
    deployment.wait_caught_up(60)
    # a valid objection event lifts the quarantine; a new post is published
    deployment.produce([objection(account, filed=False)])
    deployment.wait_caught_up(60)
    deployment.produce([post("restless-1", account)])
    deployment.wait_caught_up(60)
    assert "restless-1" in deployment.view()

    first.stop()
    second = deployment.start_worker()
    deployment.wait_assigned(second)
    # a correctly placed record on the partition the dead letter landed on
    bystander = account_on(wrong, deployment, "bystander")
    deployment.produce([profile(bystander)])
    deployment.wait_caught_up(60)

    copies = len(forwarded_copies(deployment, "objections", right, landed))
    dead = len([a for a in audits(deployment, "dead_letter") if a["reasons"] == ["bad_time"]])
    kept = "restless-1" in deployment.view()
    # The last outbox is sent again at every takeover (at least once), so the
    # forward may arrive twice; its owner applies it once (dedup by origin offset).
    assert copies in (1, 2)
    assert (dead, kept) == (1, True)
    deployment.check()


def test_a_dead_letter_naming_a_post_of_another_workers_partition(
    deployment: Deployment,
) -> None:
    workers = [deployment.start_worker(), deployment.start_worker()]
    for worker in workers:
        deployment.wait_assigned(worker)
    mine, theirs = settled(workers, deployment.partitions)
    here, there = min(mine), min(theirs)  # partitions of different workers
    owner_1 = account_on(there, deployment, "far-owner")
    owner_2 = account_on(there, deployment, "far-other")
    claimant = account_on(here, deployment, "claimant")
    impostor = account_on(here, deployment, "impostor")
    deployment.produce([profile(owner_1), profile(owner_2), profile(claimant)])
    deployment.wait_caught_up(60)
    deployment.produce([post("far-1", owner_1), post("far-2", owner_2)])
    deployment.wait_caught_up(60)
    assert {"far-1", "far-2"} <= set(deployment.view())

    # owner_mismatch: the claimant's event names far-1 (owned on `there`)
    owner_dl = deployment.produce_located(
        "posts", claimant.encode(), raw(post_value("far-1", claimant)), here)
    # key_mismatch: keyed by the impostor (on `here`), names far-2
    key_dl = deployment.produce_located(
        "posts", impostor.encode(), raw(post_value("far-2", owner_2)), here)
    deployment.wait_caught_up(60)

    view = deployment.view()
    assert not {"far-1", "far-2"} & set(view)
    dlq = {
        (int(dict(m.headers())["source_partition"]), int(dict(m.headers())["source_offset"])):
        dict(m.headers())["error"]
        for m in deployment.read("eligibility-dlq")
    }
    assert dlq == {owner_dl: b"owner_mismatch", key_dl: b"key_mismatch"}
    for post_id, origin, owner in (("far-1", owner_dl, owner_1), ("far-2", key_dl, owner_2)):
        requests = forwarded_copies(deployment, "posts", there, origin)
        assert len(requests) == 1, post_id
        request = requests[0]
        assert request.key() == owner.encode() and request.value() is None
        assert json.loads(dict(request.headers())[RETRACT_HEADER]) == [post_id]
        retractions = audits(deployment, "retraction", post_id)
        assert len(retractions) == 1, retractions
        assert retractions[0]["reasons"] == ["quarantined"]
        assert retractions[0]["source"] == {"topic": "posts", "partition": there,
                                            "offset": request.offset()}
    for worker in workers:
        alive(worker)
    # (the offline replay takes a retraction request for a tombstone naming its
    # owner: equal here because each owner had only the one post in the view)
    deployment.check()


# -- 3. bad input ---------------------------------------------------------------------------


def test_every_kind_of_bad_input_is_dead_lettered_and_still_excludes(
    deployment: Deployment,
) -> None:
    worker = deployment.start_worker()
    deployment.wait_assigned(worker)
    quarantined, retracted, good, junk = "q-acct", "r-acct", "g-acct", "junk"
    owner = "own-acct"
    claimant = account_on(home(owner, deployment), deployment, "claimant")
    deployment.produce([profile(a) for a in (quarantined, retracted, good, owner, claimant)])
    deployment.wait_caught_up(60)
    deployment.produce([post("q-1", quarantined), post("r-1", retracted), post("r-2", retracted),
                        post("own-1", owner), post("g-1", good)])
    deployment.wait_caught_up(60)
    assert set(deployment.view()) == {"q-1", "r-1", "r-2", "own-1", "g-1"}

    def value(post_id: str, **changes: Any) -> dict[str, Any]:
        return post_value(post_id, junk, **changes)

    duplicate = raw(value("j-dup", audience="private"))[:-1] + b', "audience": "public"}'
    assert duplicate.count(b'"audience"') == 2
    J = junk.encode()
    cases: list[tuple[str, str, bytes | None, bytes | None, str]] = [
        # (name, topic, key, value, error)
        ("invalid JSON", "posts", J, b'{"event_id": "e-t", "type": "post.created", ',
         "invalid_json"),
        ("invalid UTF-8", "posts", J, spliced(value("j-utf8"), b'"note": "\xff\xfe"'),
         "invalid_json"),
        ("duplicate keys", "posts", J, duplicate, "duplicate_key"),
        ("NaN", "posts", J, spliced(value("j-nan"), b'"score": NaN'), "invalid_json"),
        ("BOM", "posts", J, b"\xef\xbb\xbf" + raw(value("j-bom")), "invalid_json"),
        ("missing field", "posts", J, raw(without(value("j-miss"), "text")), "missing_field"),
        ("mistyped field", "posts", J, raw(value("j-type", text=5)), "wrong_type"),
        ("bad enum", "posts", J, raw(value("j-enum", audience="everyone")), "bad_value"),
        ("unknown type", "posts", J, raw(value("j-unk", type="post.frobbed")), "unknown_type"),
        ("type of another topic", "posts", J, raw(value("j-obj", type="objection.filed")),
         "unknown_type"),
        ("bad time", "posts", J, raw(value("j-time", created_at="2025-06-01 10:00:00Z")),
         "bad_time"),
        ("future time", "posts", J, raw(value("j-fut", ts="2099-01-01T00:00:00Z")),
         "future_time"),
        ("not an object", "posts", J, b'["j-arr"]', "not_object"),
        ("tombstone", "posts", J, None, "tombstone"),
        ("over 1 MiB", "posts", J, sized(MIB + 1, "j-big", junk), "too_large"),
        ("65 levels", "posts", J, nested(65, "j-deep", junk), "too_deep"),
        ("id of 257 chars", "posts", J, raw(value("x" * 257)), "bad_id"),
        ("key mismatch", "posts", b"junk-key", raw(value("j-km")), "key_mismatch"),
        ("null key", "posts", None, raw(value("j-nokey")), "key_missing"),
        ("owner mismatch", "posts", claimant.encode(), raw(post_value("own-1", claimant)),
         "owner_mismatch"),
        ("tombstone on accounts", "accounts", b"junk-acc", None, "tombstone"),
        # a dead letter still excludes what it names
        ("bad objection", "objections", quarantined.encode(),
         raw({"event_id": "e-qo", "type": "objection.filed", "ts": "2025-06-01T25:00:00Z",
              "account_id": quarantined}), "bad_time"),
        ("bad update with a post_id", "posts", retracted.encode(),
         raw(post_value("r-1", retracted, ts="2025-06-01")), "bad_time"),
    ]
    where: dict[tuple[str, int, int], tuple[str, bytes | None, bytes | None, str]] = {}
    for name, topic, key, val, error in cases:
        partition, offset = deployment.produce_located(topic, key, val)
        where[(topic, partition, offset)] = (name, key, val, error)
    assert len(where) == len(cases)
    assert len(sized(MIB + 1, "j-big", junk)) == 1_048_577
    deployment.wait_caught_up(90)
    alive(worker)

    # later good events are applied; the quarantined account's new post is excluded
    deployment.produce([post("q-2", quarantined, TS), post("g-2", good, TS)])
    deployment.wait_caught_up(60)
    deployment.produce([objection(quarantined, "2025-05-01T00:00:00Z", filed=False)])
    deployment.wait_caught_up(60)
    deployment.produce([post("q-3", quarantined, TS)])
    deployment.wait_caught_up(60)
    alive(worker)

    dead = deployment.read("eligibility-dlq")
    assert len(dead) == len(cases), [dict(m.headers()).get("error") for m in dead]
    for message in dead:
        headers = dict(message.headers())
        assert set(headers) == {"source_topic", "source_partition", "source_offset", "error",
                                "detail"}
        source = (headers["source_topic"].decode(), int(headers["source_partition"]),
                  int(headers["source_offset"]))
        assert source in where, headers
        name, key, val, error = where.pop(source)
        assert headers["error"] == error.encode(), name
        assert headers["detail"], name
        assert message.key() == key, name
        assert message.value() == val, name  # byte-exact
    assert not where, f"not dead-lettered: {sorted(c[0] for c in where.values())}"

    dead_audits = audits(deployment, "dead_letter")
    assert len(dead_audits) == len(cases)
    raw_ids = {quarantined, retracted, owner, claimant, junk, "junk-key", "junk-acc"}
    assert not {a.get("author") for a in deployment.audit()} & raw_ids

    view = deployment.check()
    assert set(view) == {"r-2", "g-1", "g-2", "q-3"}
    for post_id, cause in (("q-1", "quarantined"), ("r-1", "quarantined"),
                           ("own-1", "quarantined")):
        assert [a["reasons"] for a in audits(deployment, "retraction", post_id)] == [[cause]]
    q2 = audits(deployment, "post", "q-2")
    assert [(a["outcome"], a["reasons"]) for a in q2] == [("excluded", ["quarantined"])]
    assert [a["outcome"] for a in audits(deployment, "post", "q-3")] == ["published"]


def test_a_key_that_is_not_utf8_is_dead_lettered_unchanged(deployment: Deployment) -> None:
    worker = deployment.start_worker()
    deployment.wait_assigned(worker)
    key = b"\xff\xfe-acct"
    deployment.produce([profile("after")])
    where = deployment.produce_located("objections", key, b'{"type": "objection.filed"')
    deployment.wait_caught_up(60)
    alive(worker)
    deployment.produce([post("after-1", "after")])
    deployment.wait_caught_up(60)
    alive(worker)
    [dead] = deployment.read("eligibility-dlq")
    assert dead.key() == key
    assert dict(dead.headers())["source_offset"] == str(where[1]).encode()
    assert "after-1" in deployment.view()


# -- 4. startup refusals -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def lru_redis() -> Iterator[str]:
    """A dedicated Redis that evicts keys (allkeys-lru); stopped afterwards."""
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
         "--maxmemory-policy", "allkeys-lru", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert server.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        client.close()
        yield url
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)


def delete_topic(deployment: Deployment, name: str) -> None:
    admin = AdminClient(deployment.kafka.admin_config())
    real = deployment.kafka.topic(name)
    admin.delete_topics([real], operation_timeout=30)[real].result(30)
    deadline = time.monotonic() + 30
    while real in admin.list_topics(timeout=10).topics:
        assert time.monotonic() < deadline, f"{real} still listed"
        time.sleep(0.2)


def recreate_topic(deployment: Deployment, name: str, partitions: int) -> None:
    delete_topic(deployment, name)
    admin = AdminClient(deployment.kafka.admin_config())
    real = deployment.kafka.topic(name)
    spec = NewTopic(real, num_partitions=partitions, replication_factor=1,
                    config=load_specs()[name].creation_config(1))
    deadline = time.monotonic() + 30
    while True:
        try:
            admin.create_topics([spec], operation_timeout=30)[real].result(30)
            break
        except Exception:  # still marked for deletion
            assert time.monotonic() < deadline
            time.sleep(0.5)
    while len(admin.list_topics(real, timeout=10).topics[real].partitions) != partitions:
        assert time.monotonic() < deadline
        time.sleep(0.2)


def group_joined(deployment: Deployment) -> bool:
    admin = AdminClient(deployment.kafka.admin_config())
    listed = admin.list_consumer_groups().result(timeout=10)
    if any(g.group_id == deployment.name for g in listed.valid):
        return True
    description = admin.describe_consumer_groups([deployment.name])[deployment.name].result(10)
    return bool(description.members) or description.state.name != "DEAD"


Setup = Callable[[Deployment, pytest.FixtureRequest], tuple[dict[str, str], list[str]]]


def no_pseudonym_key(d: Deployment, _: pytest.FixtureRequest) -> tuple[dict[str, str], list[str]]:
    env = {"ELIGIBILITY_PSEUDONYM_KEY": "", "ELIGIBILITY_PSEUDONYM_KEY_FILE": "",
           "ELIGIBILITY_DEV_MODE": ""}
    return env, ["no pseudonym key", "ELIGIBILITY_PSEUDONYM_KEY"]


def missing_posts(d: Deployment, _: pytest.FixtureRequest) -> tuple[dict[str, str], list[str]]:
    delete_topic(d, "posts")
    return {}, [f"{d.kafka.topic('posts')}: missing"]


def missing_accounts(d: Deployment, _: pytest.FixtureRequest) -> tuple[dict[str, str], list[str]]:
    delete_topic(d, "accounts")
    return {}, [f"{d.kafka.topic('accounts')}: missing"]


def unequal_partitions(d: Deployment, _: pytest.FixtureRequest) -> tuple[dict[str, str],
                                                                         list[str]]:
    recreate_topic(d, "objections", d.partitions + 2)
    return {}, ["differ in partition count",
                f"{d.kafka.topic('objections')} {d.partitions + 2}"]


def evicting_redis(d: Deployment, request: pytest.FixtureRequest) -> tuple[dict[str, str],
                                                                           list[str]]:
    url = request.getfixturevalue("lru_redis")
    return {"ELIGIBILITY_REDIS_URL": url}, ["maxmemory-policy is 'allkeys-lru'", "noeviction"]


def other_recorded_partitions(d: Deployment, _: pytest.FixtureRequest) -> tuple[dict[str, str],
                                                                                list[str]]:
    client = redis.Redis.from_url(d.redis_url)
    client.hset(f"{d.name}:meta", "input_partitions", str(d.partitions + 4))
    client.close()
    return {}, [f"the state was built with {d.partitions + 4} input partitions",
                f"the topics have {d.partitions}"]


@pytest.mark.parametrize("setup", [
    no_pseudonym_key, missing_posts, missing_accounts, unequal_partitions, evicting_redis,
    other_recorded_partitions,
], ids=lambda f: f.__name__)
def test_the_worker_refuses_to_start(
    deployment: Deployment, request: pytest.FixtureRequest, setup: Setup
) -> None:
    env, phrases = setup(deployment, request)
    started = time.monotonic()
    worker = deployment.start_worker(**env)
    try:
        code = worker.process.wait(60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running after 60 s: {worker.text()[-3000:]}")
    took = time.monotonic() - started
    text = worker.text()
    assert code != 0, text
    assert took < 30, f"took {took:.1f} s"
    assert "Traceback" not in text, text
    assert "assigned partitions" not in text
    assert [line for line in text.splitlines() if all(p in line for p in phrases)], text
    assert not group_joined(deployment)
