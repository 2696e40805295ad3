"""One contract for every state store: the in-memory store and Redis must agree.

MemoryStore is the reference. Each Redis test works under its own uuid key
prefix (conftest `key_prefix`), whose keys are deleted afterwards.
"""

from __future__ import annotations

import io
import itertools
import json
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream.core.engine import Engine, Footprint
from stream.core.policy import DEFAULT_POLICY, EEA_EFTA, EU27, Policy
from stream.core.pseudonym import Pseudonymizer
from stream.core.state import QUARANTINE_TOPICS, AccountState, PostState, StateAccess
from stream.eventlog import read_messages
from stream.replay import Outputs, replay
from stream.store.base import StateStore
from stream.store.memory import MemoryStore
from stream.store.redis_store import RedisStore, UnloadedStateError

WALKTHROUGH = Path("/work/shared/examples/walkthrough.jsonl")
if not WALKTHROUGH.exists():  # a checkout without the shared folder
    WALKTHROUGH = Path(__file__).parents[2] / "examples" / "walkthrough.jsonl"

NOW_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z, after every event of the logs here
LONG_ID = "x" * 256
UNICODE_ID = "Ünïcødé:🙂-ß"
BUCKETS = 4  # few buckets: tests exercise several entries per hash


class FixedClock:
    def now_us(self) -> int:
        return NOW_US


def open_redis(url: str, prefix: str) -> RedisStore:
    return RedisStore.from_url(url, prefix=prefix, buckets=BUCKETS, post_buckets=BUCKETS)


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[StateStore]:
    if request.param == "memory":
        yield MemoryStore()
        return
    url: str = request.getfixturevalue("redis_url")
    prefix: str = request.getfixturevalue("key_prefix")
    request.getfixturevalue("redis_client")  # deletes the prefix's keys afterwards
    redis_store = open_redis(url, prefix.rstrip(":"))
    yield redis_store
    redis_store.close()


@pytest.fixture
def redis_prefix(redis_client: redis.Redis, key_prefix: str) -> str:
    """A store prefix under the test's key prefix (cleaned up by `redis_client`)."""
    return key_prefix.rstrip(":")


def load(
    store: StateStore,
    accounts: Iterable[str] = (),
    posts: Iterable[str] = (),
    views: Iterable[str] = (),
    memberships: Iterable[tuple[str, str]] = (),
) -> StateAccess:
    return store.load(
        [Footprint(tuple(accounts), tuple(posts), tuple(views), tuple(memberships))]
    )


def write(store: StateStore, change: Callable[[StateAccess], object], **names: Any) -> None:
    batch = load(store, **names)
    change(batch)
    store.commit(batch)


def save(
    store: StateStore,
    accounts: dict[str, AccountState] | None = None,
    posts: dict[str, PostState] | None = None,
    entries: Iterable[tuple[str, str, int | None]] = (),
) -> None:
    """One batch as the engine makes one: load what is written, write, commit.
    An entry with created_at None is deleted."""
    accounts, posts, entries = accounts or {}, posts or {}, list(entries)
    batch = load(store, accounts, posts, memberships=[(a, p) for a, p, _ in entries])
    for account_id, account in accounts.items():
        batch.put_account(account_id, account)
    for post_id, post in posts.items():
        batch.put_post(post_id, post)
    for account_id, post_id, created_at in entries:
        if created_at is None:
            batch.view_del(account_id, post_id)
        else:
            batch.view_put(account_id, post_id, created_at)
    store.commit(batch)


def in_view(store: StateStore) -> list[str]:
    return sorted(itertools.chain.from_iterable(store.accounts_in_view()))


# -- values ------------------------------------------------------------------------

NOW = 1_748_764_860_000_000  # 2025-06-01T08:01:00Z
BIG = 2**63 + 12345
ACCOUNTS = [
    AccountState(),
    AccountState(profile_ts=NOW, birth_date=726_194, country="DE"),
    AccountState(profile_ts=NOW, birth_date=None, country=None),
    AccountState(profile_ts=-1, birth_date=1, country="ZZ"),
    AccountState(profile_ts=-BIG, birth_date=3_652_059, country="IS"),
    AccountState(objection_ts=BIG, objected=True),
    AccountState(objection_ts=10**30, objected=False, profile_ts=0),
    AccountState(objection_ts=1_700_000_000_000_000, objected=True, deleted=True),
    *(
        AccountState(
            objection_ts=NOW + 7,
            objected=objected,
            profile_ts=NOW - 1,
            birth_date=700_000,
            country="FR",
            deleted=deleted,
            quarantined_by=frozenset(topics),
        )
        for n in range(len(QUARANTINE_TOPICS) + 1)
        for topics in itertools.combinations(QUARANTINE_TOPICS, n)
        for objected, deleted in itertools.product((False, True), repeat=2)
    ),
    AccountState(quarantined_by=frozenset(QUARANTINE_TOPICS)),
]
POSTS = [
    PostState("anna", NOW, NOW),
    PostState("anna", NOW, NOW - 3_600_000_000),
    PostState("anna", NOW, NOW + 5),
    PostState(UNICODE_ID, -BIG, BIG),
    PostState(LONG_ID, 10**30, -(10**30)),
    PostState("é" * 256, NOW, NOW),
    PostState("\udc80lone-surrogate", NOW, NOW),
    PostState("ben"),
    PostState("ben", deleted=True),
    PostState("ben", NOW, NOW, deleted=True),
    PostState("ben", None, NOW),
    PostState("ben", NOW, None),
]


@pytest.mark.parametrize("state", ACCOUNTS, ids=str)
def test_account_round_trips(store: StateStore, state: AccountState) -> None:
    for account_id in ("anna", UNICODE_ID, LONG_ID):
        save(store, accounts={account_id: state})
        assert load(store, accounts=[account_id]).get_account(account_id) == state


@pytest.mark.parametrize("state", POSTS, ids=str)
def test_post_round_trips(store: StateStore, state: PostState) -> None:
    for post_id in ("p-1", UNICODE_ID, LONG_ID):
        save(store, posts={post_id: state})
        assert load(store, posts=[post_id]).get_post(post_id) == state


def test_absent_state_reads_as_none(store: StateStore) -> None:
    batch = load(store, ["nobody"], ["no-post"], ["nobody"], [("ghost", "no-post")])
    assert batch.get_account("nobody") is None
    assert batch.get_post("no-post") is None
    assert batch.view_items("nobody") == []
    assert batch.view_get("nobody", "no-post") is None
    assert batch.view_get("ghost", "no-post") is None
    assert in_view(store) == []


def test_view_put_get_del_items(store: StateStore) -> None:
    posts = {"p-1": NOW, "p-2": -5, "ü": BIG, LONG_ID: NOW + 1}

    def put_all(batch: StateAccess) -> None:
        for post_id, created_at in posts.items():
            batch.view_put("anna", post_id, created_at)

    write(store, put_all, views=["anna"])
    batch = load(store, views=["anna"])
    assert sorted(batch.view_items("anna")) == sorted(posts.items())
    assert batch.view_get("anna", "ü") == BIG
    assert batch.view_get("anna", "p-3") is None
    batch.view_put("anna", "p-1", NOW - 1)  # overwrite
    batch.view_del("anna", "p-2")
    batch.view_del("anna", "never-there")
    store.commit(batch)
    batch = load(store, views=["anna"], memberships=[("anna", "p-1")])
    assert sorted(batch.view_items("anna")) == sorted(
        [("p-1", NOW - 1), ("ü", BIG), (LONG_ID, NOW + 1)]
    )
    assert in_view(store) == ["anna"]
    save(store, entries=[("anna", p, None) for p in ("p-1", "ü", LONG_ID)])
    assert load(store, views=["anna"]).view_items("anna") == []
    assert in_view(store) == []


def test_membership_entries(store: StateStore) -> None:
    save(store, entries=[("anna", "p-1", NOW)])
    batch = load(store, memberships=[("anna", "p-1"), ("anna", "p-2"), ("ben", "p-1")])
    assert batch.view_get("anna", "p-1") == NOW
    assert batch.view_get("anna", "p-2") is None
    assert batch.view_get("ben", "p-1") is None
    batch.view_put("anna", "p-2", NOW + 1)
    batch.view_del("anna", "p-1")
    assert batch.view_get("anna", "p-2") == NOW + 1
    assert batch.view_get("anna", "p-1") is None
    store.commit(batch)
    assert load(store, views=["anna"]).view_items("anna") == [("p-2", NOW + 1)]


def test_a_batch_reads_its_own_writes(store: StateStore) -> None:
    batch = load(store, ["anna"], ["p-1"], ["anna"])
    batch.put_account("anna", ACCOUNTS[1])
    batch.put_post("p-1", POSTS[0])
    batch.view_put("anna", "p-1", NOW)
    assert batch.get_account("anna") == ACCOUNTS[1]
    assert batch.get_post("p-1") == POSTS[0]
    assert batch.view_get("anna", "p-1") == NOW
    assert batch.view_items("anna") == [("p-1", NOW)]
    batch.put_account("anna", ACCOUNTS[5])
    batch.view_del("anna", "p-1")
    assert batch.get_account("anna") == ACCOUNTS[5]
    assert batch.view_items("anna") == []
    batch.view_put("anna", "p-1", NOW + 2)
    store.commit(batch)
    batch = load(store, ["anna"], ["p-1"], ["anna"])
    assert batch.get_account("anna") == ACCOUNTS[5]
    assert batch.get_post("p-1") == POSTS[0]
    assert batch.view_items("anna") == [("p-1", NOW + 2)]


def test_many_footprints_load_together(store: StateStore) -> None:
    ids = [f"acct-{n}" for n in range(40)]

    def put_all(batch: StateAccess) -> None:
        for n, account_id in enumerate(ids):
            batch.put_account(account_id, AccountState(profile_ts=n, country="DE"))
            batch.put_post(f"p-{n}", PostState(account_id, n, n))
            batch.view_put(account_id, f"p-{n}", n)

    write(store, put_all)
    batch = store.load(
        Footprint((a,), (f"p-{n}",), memberships=((a, f"p-{n}"),)) for n, a in enumerate(ids)
    )
    for n, account_id in enumerate(ids):
        assert batch.get_account(account_id) == AccountState(profile_ts=n, country="DE")
        assert batch.get_post(f"p-{n}") == PostState(account_id, n, n)
        assert batch.view_get(account_id, f"p-{n}") == n
    assert in_view(store) == sorted(ids)


def test_meta(store: StateStore) -> None:
    assert store.get_meta("policy_version") is None
    store.set_meta("policy_version", "p1-abc")
    store.set_meta("note", "ünï 🙂")
    assert store.get_meta("policy_version") == "p1-abc"
    store.set_meta("policy_version", "p1-def")
    assert store.get_meta("policy_version") == "p1-def"
    assert store.get_meta("note") == "ünï 🙂"


def test_accounts_in_view(store: StateStore) -> None:
    accounts = ["anna", "ben", UNICODE_ID, LONG_ID, "a:v:b", "*?["]

    def put_all(batch: StateAccess) -> None:
        for account_id in accounts:
            batch.view_put(account_id, "p", NOW)
            batch.put_account(account_id, ACCOUNTS[1])
        batch.view_put("gone", "p", NOW)
        batch.view_del("gone", "p")

    write(store, put_all, views=[*accounts, "gone"])
    assert in_view(store) == sorted(accounts)


# -- Redis only ----------------------------------------------------------------------


def test_redis_scans_the_view_in_chunks(redis_url: str, redis_prefix: str) -> None:
    store = open_redis(redis_url, redis_prefix)
    accounts = [f"acct-{n}" for n in range(23)]
    save(store, entries=[(a, "p", NOW) for a in accounts])
    chunks = list(store.accounts_in_view(chunk=5))
    assert all(1 <= len(chunk) <= 5 for chunk in chunks)
    assert sorted(itertools.chain.from_iterable(chunks)) == sorted(accounts)
    store.close()


def test_redis_prefixes_are_isolated(redis_url: str, redis_prefix: str) -> None:
    live = open_redis(redis_url, f"{redis_prefix}:eligibility")
    offline = open_redis(redis_url, f"{redis_prefix}:eligibility-offline")
    for store, n in ((live, 1), (offline, 2)):
        save(store, {"anna": ACCOUNTS[n]}, {"p-1": POSTS[n]},
             [("anna", f"p-{n}", n), (f"only-{n}", "p", n)])
        store.set_meta("policy_version", f"v{n}")
    for store, n in ((live, 1), (offline, 2)):
        batch = load(store, ["anna"], ["p-1"], ["anna"])
        assert batch.get_account("anna") == ACCOUNTS[n]
        assert batch.get_post("p-1") == POSTS[n]
        assert batch.view_items("anna") == [(f"p-{n}", n)]
        assert store.get_meta("policy_version") == f"v{n}"
        assert in_view(store) == sorted(["anna", f"only-{n}"])
    live.close()
    offline.close()


def test_redis_refuses_unsafe_prefixes_and_bucket_changes(
    redis_url: str, redis_prefix: str
) -> None:
    for prefix in ("", "a*", "a b", "x?", "[x]"):
        with pytest.raises(ValueError, match="prefix"):
            open_redis(redis_url, prefix)
    store = RedisStore.from_url(redis_url, prefix=redis_prefix, buckets=7)
    save(store, {"anna": ACCOUNTS[1]})
    store.close()
    reopened = RedisStore.from_url(redis_url, prefix=redis_prefix)  # buckets from meta
    assert reopened.account_buckets == 7
    assert load(reopened, ["anna"]).get_account("anna") == ACCOUNTS[1]
    reopened.close()
    with pytest.raises(ValueError, match="re-bucketing"):
        RedisStore.from_url(redis_url, prefix=redis_prefix, buckets=8)


def test_redis_refuses_reads_of_unloaded_state(redis_url: str, redis_prefix: str) -> None:
    store = open_redis(redis_url, redis_prefix)
    save(store, posts={"p-1": POSTS[0]}, entries=[("anna", "p-1", NOW)])
    batch = load(store, ["anna"], ["p-1"], memberships=[("ben", "p-2")])
    with pytest.raises(UnloadedStateError, match="account 'ben'"):
        batch.get_account("ben")
    with pytest.raises(UnloadedStateError, match="post 'p-2'"):
        batch.get_post("p-2")
    with pytest.raises(UnloadedStateError, match="view entry"):
        batch.view_get("ben", "p-1")
    with pytest.raises(UnloadedStateError, match="view of account 'ben'"):
        batch.view_items("ben")  # an entry of ben's view is known, not the whole view
    assert batch.view_get("ben", "p-2") is None
    assert batch.view_get("anna", "p-1") == NOW  # p-1's owner's entry: second stage
    with pytest.raises(UnloadedStateError, match="view of account 'anna'"):
        batch.view_items("anna")
    # Writes replace whole values, so they need no load, and are read back.
    batch.put_account("carla", ACCOUNTS[1])
    batch.view_put("carla", "p-9", NOW)
    assert batch.get_account("carla") == ACCOUNTS[1]
    assert batch.view_get("carla", "p-9") == NOW
    with pytest.raises(TypeError):
        store.commit(MemoryStore())
    store.close()


class RoundTrips:
    """Counts what each store call sends: pipelines executed, MULTI or not."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.pipelines: list[bool] = []
        execute = redis.client.Pipeline.execute

        def counting(pipe: redis.client.Pipeline, raise_on_error: bool = True) -> list[Any]:
            self.pipelines.append(vars(pipe)["transaction"])  # shadows a method
            return execute(pipe, raise_on_error)

        monkeypatch.setattr(redis.client.Pipeline, "execute", counting)

    def take(self) -> list[bool]:
        taken, self.pipelines = self.pipelines, []
        return taken


def test_redis_round_trips_and_the_owner_stage(
    redis_url: str, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_redis(redis_url, redis_prefix)
    trips = RoundTrips(monkeypatch)
    save(store, {"anna": ACCOUNTS[1]}, {"p-1": PostState("anna", NOW, NOW)},
         [("anna", "p-1", NOW)])
    assert trips.take() == [False, True]  # one read, one MULTI/EXEC write

    # A post event of the post's owner: one round trip.
    load(store, ["anna"], ["p-1"], memberships=[("anna", "p-1")])
    assert trips.take() == [False]
    # Another account's event on anna's post (owner_mismatch): anna's entry comes second.
    batch = load(store, ["mallory"], ["p-1"], memberships=[("mallory", "p-1")])
    assert trips.take() == [False, False]
    assert batch.view_get("anna", "p-1") == NOW
    assert batch.view_get("mallory", "p-1") is None
    # A dead letter naming the post: the same.
    batch = load(store, posts=["p-1"])
    assert trips.take() == [False, False]
    assert batch.view_get("anna", "p-1") == NOW
    # The owner's whole view already loaded: no second stage.
    load(store, ["mallory"], ["p-1"], ["anna"], [("mallory", "p-1")])
    assert trips.take() == [False]
    # Nothing written: nothing sent.
    store.commit(load(store, ["anna"]))
    assert trips.take() == [False]
    # Many events, one write.
    def many(batch: StateAccess) -> None:
        for n in range(300):
            batch.put_account(f"a-{n}", ACCOUNTS[1])
            batch.put_post(f"p-{n}", PostState(f"a-{n}", NOW, NOW))
            batch.view_put(f"a-{n}", f"p-{n}", NOW)
            batch.view_del(f"a-{n}", "p-old")
    write(store, many)
    assert trips.take() == [True]  # nothing to read
    store.close()


def test_redis_buckets_stay_listpacks(
    redis_url: str, redis_prefix: str, redis_client: redis.Redis
) -> None:
    """Realistic entries keep every bucket a listpack; an owner id too long for
    one value converts only its own bucket, and stays correct."""
    store = open_redis(redis_url, redis_prefix)

    def fill(batch: StateAccess) -> None:
        for n in range(200):
            account_id = f"acct-{n}" if n % 3 else f"{n:017d}"
            batch.put_account(account_id, AccountState(NOW, n % 10 == 0, NOW, 726_194, "DE"))
            batch.put_post(f"post-{n}", PostState(account_id, NOW, NOW - 1))
            batch.view_put(account_id, f"post-{n}", NOW - 1)

    write(store, fill)
    keys = list(redis_client.scan_iter(match=f"{redis_prefix}:*"))
    assert len(keys) > 2 * BUCKETS
    assert {redis_client.object("encoding", key) for key in keys} == {b"listpack"}
    save(store, posts={"long": PostState("o" * 100, NOW, NOW)})
    bucket = f"{redis_prefix}:p:{zlib.crc32(b'long') % BUCKETS}"
    assert redis_client.object("encoding", bucket) == b"hashtable"
    assert load(store, posts=["long"]).get_post("long") == PostState("o" * 100, NOW, NOW)
    store.close()


# -- the engine on both stores -----------------------------------------------------------


def run_log(
    lines: bytes, store: StateStore, batch_size: int, policy: Policy = DEFAULT_POLICY
) -> tuple[dict[str, bytes], bytes, bytes]:
    engine = Engine(policy, Pseudonymizer.development(), FixedClock())
    outputs = Outputs(audit=io.BytesIO(), dlq=io.BytesIO())
    replay(read_messages(io.BytesIO(lines)), engine, store, outputs, batch_size)
    assert isinstance(outputs.audit, io.BytesIO) and isinstance(outputs.dlq, io.BytesIO)
    return outputs.view, outputs.audit.getvalue(), outputs.dlq.getvalue()


def _line(topic: str, offset: int, key: str, **payload: Any) -> bytes:
    body = json.dumps({"event_id": f"e-{topic}-{offset}", **payload})
    envelope = {"topic": topic, "partition": 0, "offset": offset, "key": key, "payload": body}
    return json.dumps(envelope).encode() + b"\n"


def _post(offset: int, key: str, post_id: str, account_id: str, minute: int) -> bytes:
    when = f"2025-06-01T09:{minute:02d}:00Z"
    return _line(
        "posts", offset, key, type="post.created" if minute < 30 else "post.updated",
        ts=when, post_id=post_id, account_id=account_id, created_at=when, kind="post",
        audience="public", text="hello",
    )


# anna's posts are published; mallory's update of p-1 (owner_mismatch) and a
# dead letter naming p-2 retract them, which needs their owner's view entry.
OWNERS_LOG = b"".join([
    _line("accounts", 0, "anna", type="account.upserted", ts="2025-06-01T09:00:00Z",
          account_id="anna", birth_date="1990-01-01", country="DE"),
    _post(0, "anna", "p-1", "anna", 1),
    _post(1, "anna", "p-2", "anna", 2),
    _post(2, "anna", "p-3", "anna", 3),
    _post(3, "mallory", "p-1", "mallory", 31),
    _line("posts", 4, "anna", type="post.updated", ts="not a time", post_id="p-2",
          account_id="anna"),
    _post(5, "anna", "p-4", "anna", 4),
])


@pytest.fixture
def redis_factory(redis_url: str, redis_prefix: str) -> Iterator[Callable[[], RedisStore]]:
    opened: list[RedisStore] = []

    def open_one() -> RedisStore:
        opened.append(open_redis(redis_url, f"{redis_prefix}:{len(opened)}"))
        return opened[-1]

    yield open_one
    for store in opened:
        store.close()


@pytest.mark.parametrize("batch_size", [1, 3, 500])
def test_walkthrough_gives_the_same_result_on_both_stores(
    redis_factory: Callable[[], RedisStore], batch_size: int
) -> None:
    log = WALKTHROUGH.read_bytes()
    memory = run_log(log, MemoryStore(), batch_size)
    in_redis = run_log(log, redis_factory(), batch_size)
    assert sorted(memory[0]) == ["p-anna-3"]
    assert memory[2].count(b"\n") == 1
    assert in_redis == memory


@pytest.mark.parametrize("batch_size", [1, 2, 500])
def test_owner_entries_give_the_same_result_on_both_stores(
    redis_factory: Callable[[], RedisStore], batch_size: int
) -> None:
    memory = run_log(OWNERS_LOG, MemoryStore(), batch_size)
    in_redis = run_log(OWNERS_LOG, redis_factory(), batch_size)
    assert sorted(memory[0]) == ["p-3", "p-4"]
    assert memory[1].count(b'"retracted"') == 2
    assert in_redis == memory


def test_a_new_policy_sweeps_the_same_on_both_stores(
    redis_factory: Callable[[], RedisStore],
) -> None:
    stricter = Policy(regions=tuple(c for c in EU27 + EEA_EFTA if c != "DE"))
    log = WALKTHROUGH.read_bytes() + OWNERS_LOG
    results = []
    for store in (MemoryStore(), redis_factory()):
        run_log(log, store, 4)
        results.append(run_log(b"", store, 4, stricter))
    memory, in_redis = results
    assert memory[1].count(b'"retracted"') == 3  # p-anna-3, p-3, p-4: anna is in DE
    assert in_redis == memory


# -- random operations, both stores ----------------------------------------------------------

ACCOUNT_IDS = ["anna", UNICODE_ID, LONG_ID, "\udc80"]
POST_IDS = ["p-1", "p-2", "ü", LONG_ID]
some_time = st.integers(NOW - 10**12, NOW + 10**12) | st.integers(-(2**70), 2**70)
times = some_time | st.none()
account_states = st.builds(
    AccountState,
    objection_ts=times,
    objected=st.booleans(),
    profile_ts=times,
    birth_date=st.none() | st.integers(1, 3_652_059),
    country=st.none() | st.sampled_from(["DE", "US", "IS"]),
    deleted=st.booleans(),
    quarantined_by=st.frozensets(st.sampled_from(QUARANTINE_TOPICS)),
)
post_states = st.builds(
    PostState,
    owner=st.sampled_from(ACCOUNT_IDS) | st.text(max_size=20),
    version_ts=times,
    created_at=times,
    deleted=st.booleans(),
)
some_accounts = st.lists(st.sampled_from(ACCOUNT_IDS), max_size=3)
some_posts = st.lists(st.sampled_from(POST_IDS), max_size=3)
account_ids = st.sampled_from(ACCOUNT_IDS)
post_ids = st.sampled_from(POST_IDS)
operations = st.one_of(
    st.tuples(st.just("get_account"), account_ids),
    st.tuples(st.just("put_account"), account_ids, account_states),
    st.tuples(st.just("get_post"), post_ids),
    st.tuples(st.just("put_post"), post_ids, post_states),
    st.tuples(st.just("view_get"), account_ids, post_ids),
    st.tuples(st.just("view_put"), account_ids, post_ids, some_time),
    st.tuples(st.just("view_del"), account_ids, post_ids),
    st.tuples(st.just("view_items"), account_ids),
)
footprints = st.builds(
    Footprint,
    accounts=some_accounts.map(tuple),
    posts=some_posts.map(tuple),
    views=some_accounts.map(tuple),
    memberships=st.lists(st.tuples(account_ids, post_ids), max_size=3).map(tuple),
)
programs = st.lists(
    st.tuples(st.lists(footprints, min_size=1, max_size=3), st.lists(operations, max_size=12)),
    min_size=1,
    max_size=5,
)


class Known:
    """What a Redis batch may read: its footprints, the owners' entries of the
    posts it loaded, and its own writes."""

    def __init__(self, footprints: list[Footprint], memory: MemoryStore) -> None:
        self.accounts = {a for f in footprints for a in f.accounts}
        self.posts = {p for f in footprints for p in f.posts}
        self.views = {a for f in footprints for a in f.views}
        self.entries = {m for f in footprints for m in f.memberships}
        self.entries |= {(memory.posts[p].owner, p) for p in self.posts if p in memory.posts}

    def readable(self, op: tuple[Any, ...]) -> bool:
        name = op[0]
        if name == "get_account":
            return op[1] in self.accounts
        if name == "get_post":
            return op[1] in self.posts
        if name == "view_get":
            return op[1] in self.views or (op[1], op[2]) in self.entries
        if name == "view_items":
            return op[1] in self.views
        return True

    def wrote(self, op: tuple[Any, ...]) -> None:
        if op[0] == "put_account":
            self.accounts.add(op[1])
        elif op[0] == "put_post":
            self.posts.add(op[1])
        elif op[0] in ("view_put", "view_del"):
            self.entries.add((op[1], op[2]))


def apply(batch: StateAccess, op: tuple[Any, ...]) -> object:
    result = getattr(batch, op[0])(*op[1:])
    return sorted(result) if op[0] == "view_items" else result


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program=programs)
def test_random_operations_agree(redis_url: str, program: list[Any]) -> None:
    prefix = f"test:{uuid.uuid4().hex}"
    memory = MemoryStore()
    store = open_redis(redis_url, prefix)
    try:
        for footprints_, ops in program:
            known = Known(footprints_, memory)
            mine, theirs = memory.load(footprints_), store.load(footprints_)
            for op in ops:
                if not known.readable(op):
                    with pytest.raises(UnloadedStateError):
                        apply(theirs, op)
                    continue
                assert apply(theirs, op) == apply(mine, op), op
                known.wrote(op)
            memory.commit(mine)
            store.commit(theirs)
            assert in_view(store) == in_view(memory)
        everything = [Footprint(tuple(ACCOUNT_IDS), tuple(POST_IDS), tuple(ACCOUNT_IDS))]
        mine, theirs = memory.load(everything), store.load(everything)
        for account_id in ACCOUNT_IDS:
            assert theirs.get_account(account_id) == mine.get_account(account_id)
            assert sorted(theirs.view_items(account_id)) == sorted(mine.view_items(account_id))
        for post_id in POST_IDS:
            assert theirs.get_post(post_id) == mine.get_post(post_id)
    finally:
        store.close()
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
