"""What the Redis state costs per tracked account and per post.

Writes synthetic but realistic state through `RedisStore` (its packing, its
commits) under a fresh prefix, and reads the `used_memory` delta of INFO
memory after the accounts and again after the posts. `used_memory` is
server-wide: run it on a Redis that nothing else writes to, e.g.::

    redis-server --port 16391 --bind 127.0.0.1 --daemonize yes --save '' --appendonly no
    .venv/bin/python bench/state_memory.py --redis redis://127.0.0.1:16391/0 \\
        --accounts 1000000 --posts 2000000

The keys are deleted at the end (unless --keep). Results: docs/state-layout.md.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from collections.abc import Iterator

import redis

from stream.core.state import AccountState, PostState
from stream.store.redis_store import (
    RedisBatch,
    RedisStore,
    buckets_for,
    pack_account,
    pack_post,
    pack_time,
)

NOW = 1_748_764_800_000_000  # 2025-06-01T00:00:00Z
DAY = 86_400_000_000
YEAR = 365 * DAY
BATCH = 20_000
COUNTRIES = ("DE", "FR", "IT", "ES", "PL", "NL", "SE", "US", "GB", "BR", "IN", "IS")


def account_id(n: int, rng: random.Random, long_share: float) -> str:
    """Mostly `acct-<n>`, some 17-digit numeric ids, some user names of 20-40
    characters; `long_share` of them 100 characters (past the listpack limit)."""
    roll = rng.random()
    if roll < long_share:
        return f"long-{n}-".ljust(100, "x")
    if roll < 0.80:
        return f"acct-{n}"
    if roll < 0.95:
        return f"{10**16 + n * 7919:017d}"
    return f"user.{n}.".ljust(rng.randint(20, 40), "abcdefghij"[n % 10])


def account_state(rng: random.Random) -> AccountState:
    """A profile for all; 10% objected, 3% withdrew an objection, 2% quarantined,
    1% deleted, 3% with an unknown birth date."""
    profile_ts = NOW - rng.randint(0, 3 * YEAR)
    birth = 711_858 + rng.randint(0, 60 * 365)  # 1950 .. 2010
    roll = rng.random()
    objection_ts = NOW - rng.randint(0, YEAR) if roll < 0.13 else None
    return AccountState(
        objection_ts=objection_ts,
        objected=roll < 0.10,
        profile_ts=profile_ts,
        birth_date=None if rng.random() < 0.03 else birth,
        country=rng.choice(COUNTRIES),
        deleted=rng.random() < 0.01,
        quarantined_by=frozenset({"objections"}) if rng.random() < 0.02 else frozenset(),
    )


def post_id(n: int, owner: str) -> str:
    """70% 19-digit snowflake ids, 30% `<owner>_<n>` (Facebook style)."""
    if n % 10 < 7:
        return str(1_700_000_000_000_000_000 + n * 104_729)
    return f"{owner}_{n}"


def used_memory(client: redis.Redis) -> int:
    info = client.info("memory")
    return int(info["used_memory"])


def batches(total: int) -> Iterator[range]:
    for start in range(0, total, BATCH):
        yield range(start, min(start + BATCH, total))


def blind_batch(store: RedisStore) -> RedisBatch:
    """Writes need no load: a batch over nothing."""
    batch = store.load([])
    assert isinstance(batch, RedisBatch)
    return batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis", required=True, help="redis:// URL of an otherwise idle server")
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--posts", type=int, default=2_000_000)
    parser.add_argument("--in-view", type=float, default=0.6, help="share of posts in the view")
    parser.add_argument("--long-ids", type=float, default=0.0,
                        help="share of account ids of 100 characters (past the listpack limit)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the keys (default: delete)")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    # As long as the worker's `eligibility`: the prefix is in every view key.
    prefix = f"elig-{random.randrange(16**6):06x}"
    client = redis.Redis.from_url(args.redis)
    store = RedisStore(
        client, prefix, buckets_for(args.accounts), buckets_for(args.posts)
    )
    config = client.config_get("hash-max-listpack-*")
    print(f"redis {client.info('server')['redis_version']}, {config}, prefix {prefix}")
    print(f"buckets: {store.account_buckets} for accounts, {store.post_buckets} for posts")

    started = time.perf_counter()
    base = used_memory(client)
    ids: list[str] = []
    value_bytes = 0
    for chunk in batches(args.accounts):
        batch = blind_batch(store)
        for n in chunk:
            ident = account_id(n, rng, args.long_ids)
            state = account_state(rng)
            ids.append(ident)
            value_bytes += len(pack_account(state))
            batch.put_account(ident, state)
        store.commit(batch)
    after_accounts = used_memory(client)
    per_account = (after_accounts - base) / args.accounts
    id_bytes = sum(len(i.encode()) for i in ids) / args.accounts
    print(
        f"accounts: {args.accounts:,} in {time.perf_counter() - started:.0f} s: "
        f"{per_account:.1f} bytes/account (id {id_bytes:.1f} + value "
        f"{value_bytes / args.accounts:.1f} bytes on average)"
    )

    started = time.perf_counter()
    value_bytes = 0
    view: list[tuple[str, str, int]] = []
    for chunk in batches(args.posts):
        batch = blind_batch(store)
        for n in chunk:
            owner = ids[int(args.accounts * rng.random() ** 2)]  # a few accounts post a lot
            ident = post_id(n, owner)
            created_at = NOW - rng.randint(0, 2 * YEAR)
            version_ts = created_at if rng.random() < 0.9 else created_at + rng.randint(1, DAY)
            deleted = rng.random() < 0.02
            post = PostState(owner, version_ts, created_at, deleted)
            value_bytes += len(pack_post(post))
            batch.put_post(ident, post)
            if not deleted and rng.random() < args.in_view / 0.98:
                view.append((owner, ident, created_at))
        store.commit(batch)
    after_posts = used_memory(client)
    for start in range(0, len(view), BATCH):
        batch = blind_batch(store)
        for owner, ident, created_at in view[start : start + BATCH]:
            batch.view_put(owner, ident, created_at)
        store.commit(batch)
    after_view = used_memory(client)
    views = len({owner for owner, _, _ in view})
    post_only = (after_posts - after_accounts) / args.posts
    view_only = (after_view - after_posts) / len(view) if view else 0.0
    per_post = (after_view - after_accounts) / args.posts
    print(
        f"posts: {args.posts:,} in {time.perf_counter() - started:.0f} s: {post_only:.1f} "
        f"bytes/post (value {value_bytes / args.posts:.1f} bytes on average)"
    )
    print(
        f"view: {len(view):,} posts in the view of {views:,} accounts: {view_only:.1f} "
        f"bytes/entry (value {len(pack_time(NOW))} bytes; {len(view) / max(views, 1):.2f} "
        f"entries per view key)"
    )
    print(f"per post, its view entry included: {per_post:.1f} bytes")

    encodings: Counter[str] = Counter()
    for kind, count in (("a", store.account_buckets), ("p", store.post_buckets)):
        sample = rng.sample(range(count), min(count, 200))
        lengths = [int(client.hlen(f"{prefix}:{kind}:{b}")) for b in sample]
        for b in sample:
            encodings[f"{kind}:{client.object('encoding', f'{prefix}:{kind}:{b}')!r}"] += 1
        print(f"{kind}: buckets sampled {len(sample)}, entries mean "
              f"{sum(lengths) / len(lengths):.0f}, max {max(lengths)}")
    print(f"encodings of sampled buckets: {dict(encodings)}")
    print(f"used_memory: base {base:,}, +accounts {after_accounts - base:,}, "
          f"+posts {after_posts - after_accounts:,}, +view {after_view - after_posts:,}")
    store.close()
    if not args.keep:
        keys = 0
        for found in _chunks(client.scan_iter(match=f"{prefix}:*", count=5000), 5000):
            client.unlink(*found)
            keys += len(found)
        print(f"deleted {keys:,} keys", file=sys.stderr)
    client.close()


def _chunks(items: Iterator[bytes], size: int) -> Iterator[list[bytes]]:
    chunk: list[bytes] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


if __name__ == "__main__":
    main()
