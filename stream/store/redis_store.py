"""The state table in Redis, laid out for hundreds of millions of accounts and
billions of posts (docs/state-layout.md).

Accounts and posts live as fields of bucketed hashes, so Redis keeps them in
compact listpacks instead of paying a key per entry; values are packed binary.
A batch costs one read round trip (two when a post's owner is only known once
the post is read) and one MULTI/EXEC write.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Final, TypeVar, cast

import redis

from stream.core.engine import Footprint
from stream.core.state import QUARANTINE_TOPICS, AccountState, PostState, StateAccess
from stream.store.base import PartitionProgress, PartitionState

LAYOUT: Final = "1"  # bump when a packing changes: old state is then refused, not misread
META_LAYOUT: Final = "store.layout"
META_ACCOUNT_BUCKETS: Final = "store.account_buckets"
META_POST_BUCKETS: Final = "store.post_buckets"

# Sized for ~400M accounts and ~3B posts at ~384 entries per bucket: under
# hash-max-listpack-entries 512 even for the fullest buckets (docs/state-layout.md).
DEFAULT_ACCOUNT_BUCKETS: Final = 1 << 20
DEFAULT_POST_BUCKETS: Final = 1 << 23
ENTRIES_PER_BUCKET: Final = 384

SCAN_CHUNK: Final = 500

# Times are packed relative to 2023-11-14 so that today's microseconds take
# 7 varint bytes instead of 8.
_TIME_ORIGIN: Final = 1_700_000_000_000_000
T = TypeVar("T")
_PREFIX: Final = re.compile(r"[A-Za-z0-9_.:\-]+")

_A_OBJECTED, _A_DELETED, _A_OBJECTION_TS, _A_PROFILE_TS = 0x01, 0x02, 0x04, 0x08
_A_BIRTH, _A_COUNTRY = 0x10, 0x20
_A_QUARANTINE: Final = {topic: 0x40 << i for i, topic in enumerate(QUARANTINE_TOPICS)}
assert len(_A_QUARANTINE) == 2, "one flag bit per quarantine topic: the flags byte is full"
_A_QUARANTINED_BY: Final = tuple(  # by flags >> 6
    frozenset(t for t, bit in _A_QUARANTINE.items() if (high << 6) & bit) for high in range(4)
)

_P_DELETED, _P_VERSION_TS, _P_CREATED_AT = 0x01, 0x02, 0x04


class UnloadedStateError(LookupError):
    """The engine read state that the batch's footprints did not ask for: a bug
    in `footprint()`, which would otherwise read as "no state" and decide wrong."""


class CorruptStateError(ValueError):
    """A stored value does not unpack under this layout."""


def buckets_for(entries: int) -> int:
    """Bucket count for an expected number of entries (accounts or posts)."""
    return max(1, -(-entries // ENTRIES_PER_BUCKET))


# -- packing -------------------------------------------------------------------


def _put_int(out: bytearray, value: int) -> None:
    """Zigzag LEB128: small magnitudes of either sign take few bytes, any size fits."""
    z = value << 1 if value >= 0 else (-value << 1) - 1
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)


def _get_int(data: bytes, pos: int) -> tuple[int, int]:
    z = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        z |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (z >> 1) ^ -(z & 1), pos
        shift += 7


def _id_bytes(text: str) -> bytes:
    """Ids may carry lone surrogates (an event log's undecodable bytes): keep them."""
    return text.encode("utf-8", "surrogatepass")


def _id_text(data: bytes) -> str:
    return data.decode("utf-8", "surrogatepass")


def pack_account(state: AccountState) -> bytes:
    flags = (_A_OBJECTED if state.objected else 0) | (_A_DELETED if state.deleted else 0)
    for topic in state.quarantined_by:
        bit = _A_QUARANTINE.get(topic)
        if bit is None:
            raise ValueError(f"no flag bit for quarantine topic {topic!r}")
        flags |= bit
    out = bytearray(1)
    if state.objection_ts is not None:
        flags |= _A_OBJECTION_TS
        _put_int(out, state.objection_ts - _TIME_ORIGIN)
    if state.profile_ts is not None:
        flags |= _A_PROFILE_TS
        _put_int(out, state.profile_ts - _TIME_ORIGIN)
    if state.birth_date is not None:
        flags |= _A_BIRTH
        _put_int(out, state.birth_date)
    if state.country is not None:
        country = state.country.encode("ascii")
        if len(country) != 2:
            raise ValueError(f"country {state.country!r} is not two ASCII letters")
        flags |= _A_COUNTRY
        out += country
    out[0] = flags
    return bytes(out)


def unpack_account(data: bytes) -> AccountState:
    flags, pos = data[0], 1
    objection_ts = profile_ts = birth_date = None
    country = None
    if flags & _A_OBJECTION_TS:
        value, pos = _get_int(data, pos)
        objection_ts = value + _TIME_ORIGIN
    if flags & _A_PROFILE_TS:
        value, pos = _get_int(data, pos)
        profile_ts = value + _TIME_ORIGIN
    if flags & _A_BIRTH:
        birth_date, pos = _get_int(data, pos)
    if flags & _A_COUNTRY:
        country = data[pos : pos + 2].decode("ascii")
        pos += 2
    if pos != len(data) or (country is not None and len(country) != 2):
        raise CorruptStateError("account value has trailing or missing bytes")
    return AccountState(
        objection_ts=objection_ts,
        objected=bool(flags & _A_OBJECTED),
        profile_ts=profile_ts,
        birth_date=birth_date,
        country=country,
        deleted=bool(flags & _A_DELETED),
        quarantined_by=_A_QUARANTINED_BY[flags >> 6],
    )


def pack_post(state: PostState) -> bytes:
    """The owner goes last, unprefixed; created_at as its distance from the
    version's ts, which is usually 0 (one byte)."""
    flags = _P_DELETED if state.deleted else 0
    out = bytearray(1)
    if state.version_ts is not None:
        flags |= _P_VERSION_TS
        _put_int(out, state.version_ts - _TIME_ORIGIN)
    if state.created_at is not None:
        flags |= _P_CREATED_AT
        base = _TIME_ORIGIN if state.version_ts is None else state.version_ts
        _put_int(out, base - state.created_at)
    out[0] = flags
    out += _id_bytes(state.owner)
    return bytes(out)


def unpack_post(data: bytes) -> PostState:
    flags, pos = data[0], 1
    version_ts = created_at = None
    if flags & _P_VERSION_TS:
        value, pos = _get_int(data, pos)
        version_ts = value + _TIME_ORIGIN
    if flags & _P_CREATED_AT:
        value, pos = _get_int(data, pos)
        created_at = (_TIME_ORIGIN if version_ts is None else version_ts) - value
    return PostState(_id_text(data[pos:]), version_ts, created_at, bool(flags & _P_DELETED))


def pack_time(us: int) -> bytes:
    out = bytearray()
    _put_int(out, us - _TIME_ORIGIN)
    return bytes(out)


def unpack_time(data: bytes) -> int:
    value, pos = _get_int(data, 0)
    if pos != len(data):
        raise CorruptStateError("time value has trailing bytes")
    return value + _TIME_ORIGIN


def _unpack(kind: str, key: bytes, unpack: Callable[[bytes], T], data: bytes) -> T:
    try:
        return unpack(data)
    except (IndexError, UnicodeDecodeError, CorruptStateError) as exc:
        raise CorruptStateError(f"{kind} in {key!r}: {data!r} does not unpack: {exc}") from exc


# -- the batch -----------------------------------------------------------------


class RedisBatch:
    """What one batch loaded, plus its writes; reads see the writes.

    Writes need no load (they replace whole values) but reads of anything the
    footprints did not name raise `UnloadedStateError`. A view is known either
    whole (`views`) or per (account, post) entry (`entries`, None: absent)."""

    __slots__ = ("_accounts", "_entries", "_posts", "_views", "dirty_accounts",
                 "dirty_posts", "loaded_accounts", "store", "view_deltas", "view_writes")

    def __init__(
        self,
        store: RedisStore,
        accounts: dict[str, AccountState | None],
        posts: dict[str, PostState | None],
        views: dict[str, dict[str, int]],
        entries: dict[tuple[str, str], int | None],
    ) -> None:
        self.store = store
        self._accounts = accounts
        self.loaded_accounts = dict(accounts)  # as loaded: state-size metrics diff against it
        self._posts = posts
        self._views = views
        self._entries = entries
        self.dirty_accounts: dict[str, AccountState] = {}
        self.dirty_posts: dict[str, PostState] = {}
        self.view_writes: dict[tuple[str, str], int | None] = {}  # None: delete
        self.view_deltas: dict[str, int] = {}  # account -> change of its posts in the view

    def _count_view(self, account_id: str, post_id: str, present: bool) -> None:
        try:
            was = self.view_get(account_id, post_id) is not None
        except UnloadedStateError:
            return  # never for the engine, which reads an entry before it writes it
        if was != present:
            self.view_deltas[account_id] = self.view_deltas.get(account_id, 0) + (
                1 if present else -1
            )

    def get_account(self, account_id: str) -> AccountState | None:
        try:
            return self._accounts[account_id]
        except KeyError:
            raise UnloadedStateError(f"account {account_id!r} is not in the batch") from None

    def put_account(self, account_id: str, state: AccountState) -> None:
        self._accounts[account_id] = state
        self.dirty_accounts[account_id] = state

    def get_post(self, post_id: str) -> PostState | None:
        try:
            return self._posts[post_id]
        except KeyError:
            raise UnloadedStateError(f"post {post_id!r} is not in the batch") from None

    def put_post(self, post_id: str, state: PostState) -> None:
        self._posts[post_id] = state
        self.dirty_posts[post_id] = state

    def view_get(self, account_id: str, post_id: str) -> int | None:
        view = self._views.get(account_id)
        if view is not None:
            return view.get(post_id)
        try:
            return self._entries[account_id, post_id]
        except KeyError:
            raise UnloadedStateError(
                f"view entry ({account_id!r}, {post_id!r}) is not in the batch"
            ) from None

    def view_put(self, account_id: str, post_id: str, created_at: int) -> None:
        self._count_view(account_id, post_id, True)
        view = self._views.get(account_id)
        if view is not None:
            view[post_id] = created_at
        else:
            self._entries[account_id, post_id] = created_at
        self.view_writes[account_id, post_id] = created_at

    def view_del(self, account_id: str, post_id: str) -> None:
        self._count_view(account_id, post_id, False)
        view = self._views.get(account_id)
        if view is not None:
            view.pop(post_id, None)
        else:
            self._entries[account_id, post_id] = None
        self.view_writes[account_id, post_id] = None

    def view_items(self, account_id: str) -> list[tuple[str, int]]:
        view = self._views.get(account_id)
        if view is None:
            raise UnloadedStateError(f"the view of account {account_id!r} is not in the batch")
        return list(view.items())


# -- the store -------------------------------------------------------------------


class RedisStore:
    """`StateStore` on one Redis database, every key under `{prefix}:`.

    The bucket counts are fixed by the first store opened on a prefix and kept
    in its meta: changing them would hide every stored entry."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        buckets: int | None = None,
        post_buckets: int | None = None,
    ) -> None:
        if not _PREFIX.fullmatch(prefix):
            raise ValueError(f"prefix {prefix!r}: use letters, digits and _ . : - only")
        for name, value in (("buckets", buckets), ("post_buckets", post_buckets)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, not {value}")
        self._redis = client
        self.prefix = prefix
        self._meta = f"{prefix}:meta".encode()
        self._account_key = f"{prefix}:a:".encode()
        self._post_key = f"{prefix}:p:".encode()
        self._view_key = f"{prefix}:v:".encode()
        self.account_buckets, self.post_buckets = self._settle_layout(buckets, post_buckets)
        self._part_key = f"{prefix}:part:".encode()
        self._shas = {script: client.script_load(script) for script in (_LOAD, _COMMIT, _CLAIM)}

    @classmethod
    def from_url(
        cls,
        url: str,
        prefix: str,
        buckets: int | None = None,
        post_buckets: int | None = None,
    ) -> RedisStore:
        client = redis.Redis.from_url(url, decode_responses=False)
        try:
            return cls(client, prefix, buckets, post_buckets)
        except BaseException:
            client.close()
            raise

    def _settle_layout(self, buckets: int | None, post_buckets: int | None) -> tuple[int, int]:
        """First use writes the layout and bucket counts; later uses must agree."""
        wanted = {
            META_LAYOUT: LAYOUT,
            META_ACCOUNT_BUCKETS: str(buckets or DEFAULT_ACCOUNT_BUCKETS),
            META_POST_BUCKETS: str(post_buckets or DEFAULT_POST_BUCKETS),
        }
        pipe = self._redis.pipeline(transaction=True)
        for name, value in wanted.items():
            pipe.hsetnx(self._meta, name, value)
        pipe.hmget(self._meta, list(wanted))
        stored = [v.decode() for v in pipe.execute()[-1]]
        if stored[0] != LAYOUT:
            raise ValueError(f"state under {self.prefix!r} has layout {stored[0]}, not {LAYOUT}")
        given = (None, buckets, post_buckets)
        for name, value, asked in zip(wanted, stored, given, strict=True):
            if asked is not None and int(value) != asked:
                raise ValueError(
                    f"state under {self.prefix!r} has {name}={value}, not {asked}: "
                    "re-bucketing needs a migration"
                )
        return int(stored[1]), int(stored[2])

    # StateStore

    def load(
        self, footprints: Iterable[Footprint], owns: Callable[[str], bool] | None = None
    ) -> StateAccess:
        """`owns` (the worker's): accounts whose view this batch may read and
        write; another's view entries read as absent, so the batch never
        writes state that another partition's owner writes."""
        accounts: dict[str, None] = {}
        posts: dict[str, None] = {}
        views: dict[str, None] = {}
        wanted_entries: dict[str, dict[str, None]] = {}
        for footprint in footprints:
            accounts.update(dict.fromkeys(footprint.accounts))
            posts.update(dict.fromkeys(footprint.posts))
            views.update(dict.fromkeys(footprint.views))
            for account_id, post_id in footprint.memberships:
                wanted_entries.setdefault(account_id, {})[post_id] = None
        for account_id in views:
            wanted_entries.pop(account_id, None)

        account_reads = _by_bucket(accounts, self._account_key, self.account_buckets)
        post_reads = _by_bucket(posts, self._post_key, self.post_buckets)
        entry_reads = list(wanted_entries.items())
        reads = _Args()
        for key, _, fields in account_reads:
            reads.hmget(key, fields)
        for key, _, fields in post_reads:
            reads.hmget(key, fields)
        for account_id in views:
            reads.hgetall(self._view_key + _id_bytes(account_id))
        for account_id, post_ids in entry_reads:
            reads.hmget(self._view_key + _id_bytes(account_id), map(_id_bytes, post_ids))
        replies = iter(self._read(reads))

        loaded_accounts: dict[str, AccountState | None] = {}
        for key, ids, _ in account_reads:
            for account_id, raw in zip(ids, next(replies), strict=True):
                loaded_accounts[account_id] = (
                    None if raw is None else _unpack("account", key, unpack_account, raw)
                )
        loaded_posts: dict[str, PostState | None] = {}
        for key, ids, _ in post_reads:
            for post_id, raw in zip(ids, next(replies), strict=True):
                loaded_posts[post_id] = (
                    None if raw is None else _unpack("post", key, unpack_post, raw)
                )
        loaded_views = {
            account_id: self._view(account_id, next(replies)) for account_id in views
        }
        entries: dict[tuple[str, str], int | None] = {}
        for account_id, post_ids in entry_reads:
            self._entries(entries, account_id, post_ids, next(replies))

        # A post's owner is known only now: dead letters naming posts, and
        # posts whose event names another account (owner_mismatch), need the
        # owner's entry for that post.
        owners: dict[str, dict[str, None]] = {}
        for post_id, post in loaded_posts.items():
            if post is None or post.owner in loaded_views or (post.owner, post_id) in entries:
                continue
            if owns is not None and not owns(post.owner):
                entries[post.owner, post_id] = None
            else:
                owners.setdefault(post.owner, {})[post_id] = None
        if owners:
            reads = _Args()
            for owner, post_ids in owners.items():
                reads.hmget(self._view_key + _id_bytes(owner), map(_id_bytes, post_ids))
            for (owner, post_ids), reply in zip(owners.items(), self._read(reads), strict=True):
                self._entries(entries, owner, post_ids, reply)
        return RedisBatch(self, loaded_accounts, loaded_posts, loaded_views, entries)

    def _read(self, reads: _Args) -> list[list[bytes | None]]:
        if not reads.keys:
            return []
        reply = self._run(_LOAD, reads.keys, [*reads.counts, *reads.args], transaction=False)
        return cast(list[list[bytes | None]], reply)

    def _run(
        self, script: str, keys: list[bytes], args: list[bytes | int], *, transaction: bool
    ) -> object:
        """One EVALSHA in its own pipeline, MULTI/EXEC when `transaction`.

        A batch's reads (or writes) go as one script call: one command for
        redis-py to pack and one reply to parse instead of one per hash, which
        cost the client far more than the hash commands cost Redis."""
        for retry in (False, True):
            pipe = self._redis.pipeline(transaction=transaction)
            pipe.evalsha(self._shas[script], len(keys), *keys, *args)
            try:
                return pipe.execute()[0]
            except redis.exceptions.NoScriptError:  # Redis restarted, or SCRIPT FLUSH
                if retry:
                    raise
                self._shas[script] = self._redis.script_load(script)
        raise AssertionError("unreachable")

    def _view(self, account_id: str, reply: list[bytes | None]) -> dict[str, int]:
        """`reply` is HGETALL's flat field, value, field, value... list."""
        key = self._view_key + _id_bytes(account_id)
        it = iter(reply)
        return {
            _id_text(_present(p)): _unpack("view entry", key, unpack_time, _present(c))
            for p, c in zip(it, it, strict=True)
        }

    def _entries(
        self,
        entries: dict[tuple[str, str], int | None],
        account_id: str,
        post_ids: Iterable[str],
        reply: list[bytes | None],
    ) -> None:
        key = self._view_key + _id_bytes(account_id)
        for post_id, raw in zip(post_ids, reply, strict=True):
            entries[account_id, post_id] = (
                None if raw is None else _unpack("view entry", key, unpack_time, raw)
            )

    def commit(self, batch: StateAccess) -> None:
        self._commit(batch, _Args())

    def _commit(self, batch: StateAccess | None, writes: _Args) -> bool:
        """One MULTI/EXEC: the batch's changes plus `writes`, all or nothing;
        False (and nothing written) when `writes` carries a fence that fails."""
        if batch is None:
            return self._write(writes)
        batch = self._own(batch)
        accounts, posts = batch.dirty_accounts, batch.dirty_posts
        for key, ids, fields in _by_bucket(accounts, self._account_key, self.account_buckets):
            writes.hset(key, fields, [pack_account(accounts[i]) for i in ids])
        for key, ids, fields in _by_bucket(posts, self._post_key, self.post_buckets):
            writes.hset(key, fields, [pack_post(posts[i]) for i in ids])
        puts: dict[str, tuple[list[bytes], list[bytes]]] = {}
        dels: dict[str, list[str]] = {}
        for (account_id, post_id), created_at in batch.view_writes.items():
            if created_at is None:
                dels.setdefault(account_id, []).append(post_id)
            else:
                fields, values = puts.setdefault(account_id, ([], []))
                fields.append(_id_bytes(post_id))
                values.append(pack_time(created_at))
        for account_id, post_ids in dels.items():
            writes.hdel(self._view_key + _id_bytes(account_id), map(_id_bytes, post_ids))
        for account_id, (fields, values) in puts.items():
            writes.hset(self._view_key + _id_bytes(account_id), fields, values)
        if not self._write(writes):
            return False
        batch.dirty_accounts.clear()
        batch.dirty_posts.clear()
        batch.view_writes.clear()
        return True

    def _write(self, writes: _Args) -> bool:
        if not writes.keys and not writes.fence:
            return True
        fence = writes.fence
        done = self._run(
            _COMMIT,
            [*fence, *writes.keys],
            [len(fence), *fence.values(), *writes.counts, *writes.args],
            transaction=True,
        )
        return bool(done)

    # The worker's partitions: `{prefix}:part:<n>` holds the generation that
    # owns the partition, each input topic's last applied offset, the outbox
    # of its last committed batch and the policy its view was judged by.

    def _partition_key(self, partition: int) -> bytes:
        return self._part_key + b"%d" % partition

    def claim(self, fence: Mapping[int, int]) -> None:
        """Take partitions for a consumer group generation; an older
        generation's claim is replaced, a newer one is kept."""
        keys = [self._partition_key(p) for p in fence]
        if keys:
            self._run(_CLAIM, keys, [b"%d" % g for g in fence.values()], transaction=False)

    def fence_holds(self, fence: Mapping[int, int]) -> bool:
        pipe = self._redis.pipeline(transaction=False)
        for partition in fence:
            pipe.hget(self._partition_key(partition), "gen")
        held = pipe.execute()
        return all(
            h is not None and int(h) == g for h, g in zip(held, fence.values(), strict=True)
        )

    def commit_partitions(
        self,
        batch: StateAccess | None,
        fence: Mapping[int, int],
        progress: Mapping[int, PartitionProgress],
        outbox: Mapping[int, bytes],
    ) -> bool:
        """The batch's state, the partitions' progress and outboxes in one
        transaction, if every partition is still claimed by `fence`."""
        writes = _Args()
        writes.fence = {self._partition_key(p): b"%d" % g for p, g in fence.items()}
        for partition in progress.keys() | outbox.keys():
            fields = _progress_fields(progress[partition]) if partition in progress else {}
            if partition in outbox:
                fields[b"outbox"] = outbox[partition]
            writes.hset(self._partition_key(partition), list(fields), list(fields.values()))
        return self._commit(batch, writes)

    def partition_state(self, partition: int) -> PartitionState:
        raw = self._redis.hgetall(self._partition_key(partition))
        fields = {_raw(k): _raw(v) for k, v in raw.items()}
        policy = fields.get(b"policy")
        progress = PartitionProgress(
            offsets={
                name[4:].decode(): int(value)
                for name, value in fields.items()
                if name.startswith(b"off:")
            },
            seq=int(fields.get(b"seq", b"0")),
            policy=None if policy is None else policy.decode(),
            counts={
                name[2:].decode(): int(value)
                for name, value in fields.items()
                if name.startswith(b"n:")
            },
        )
        return PartitionState(progress, fields.get(b"outbox") or None)

    def size_changes(
        self, batch: StateAccess
    ) -> tuple[list[tuple[str, AccountState | None, AccountState]], dict[str, int]]:
        """Accounts as loaded and as changed, and each account's change of
        posts in the view: what the state-size metrics count."""
        batch = self._own(batch)
        accounts = [
            (account_id, batch.loaded_accounts.get(account_id), state)
            for account_id, state in batch.dirty_accounts.items()
        ]
        return accounts, dict(batch.view_deltas)

    # The changelog (topic eligibility-state): Redis is a serving copy that can
    # be rebuilt from it. Keys: a:<account>, p:<post>, v:<n>:<account><post>
    # (n: the account id's length in bytes, as ids may hold any character).

    def changelog(self, batch: StateAccess) -> list[tuple[str, bytes, bytes | None]]:
        """What `commit` will write, as changelog entries: (the account whose
        partition the entry belongs to, key, value or None for a deletion).
        Call it before `commit`, which forgets the changes."""
        batch = self._own(batch)
        entries: list[tuple[str, bytes, bytes | None]] = [
            (account_id, b"a:" + _id_bytes(account_id), pack_account(state))
            for account_id, state in batch.dirty_accounts.items()
        ]
        entries += [
            (state.owner, b"p:" + _id_bytes(post_id), pack_post(state))
            for post_id, state in batch.dirty_posts.items()
        ]
        entries += [
            (
                account_id,
                _view_entry_key(_id_bytes(account_id), _id_bytes(post_id)),
                None if created_at is None else pack_time(created_at),
            )
            for (account_id, post_id), created_at in batch.view_writes.items()
        ]
        return entries

    def restore(self, entries: Mapping[bytes, bytes | None]) -> None:
        """Write changelog entries (the latest value per key) back into Redis."""
        accounts: dict[str, bytes] = {}
        posts: dict[str, bytes] = {}
        views: dict[bytes, tuple[list[bytes], list[bytes], list[bytes]]] = {}
        for key, value in entries.items():
            kind, name = key[:2], key[2:]
            if kind == b"a:" and value is not None:
                accounts[_id_text(name)] = value
            elif kind == b"p:" and value is not None:
                posts[_id_text(name)] = value
            elif kind == b"v:":
                size, _, rest = name.partition(b":")
                account, post = rest[: int(size)], rest[int(size) :]
                puts, values, dels = views.setdefault(account, ([], [], []))
                if value is None:
                    dels.append(post)
                else:
                    puts.append(post)
                    values.append(value)
        writes = _Args()
        for table, prefix, buckets in (
            (accounts, self._account_key, self.account_buckets),
            (posts, self._post_key, self.post_buckets),
        ):
            for key, ids, fields in _by_bucket(table, prefix, buckets):
                writes.hset(key, fields, [table[i] for i in ids])
        for account, (puts, values, dels) in views.items():
            if dels:
                writes.hdel(self._view_key + account, dels)
            if puts:
                writes.hset(self._view_key + account, puts, values)
        self._write(writes)

    def restore_partition(self, partition: int, progress: PartitionProgress) -> None:
        """A partition's progress as the changelog last recorded it (no outbox:
        what that batch sent is in Kafka)."""
        key = self._partition_key(partition)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hdel(key, "outbox")
        pipe.hset(key, mapping=_progress_fields(progress))  # type: ignore[arg-type]
        pipe.execute()

    def check_serving(self) -> list[str]:
        """Why this Redis must not hold the worker's state, if it must not:
        an evicted objection would be a silent leak."""
        policy = self._redis.config_get("maxmemory-policy").get("maxmemory-policy")
        if policy != "noeviction":
            return [f"Redis maxmemory-policy is {policy!r}, the worker needs 'noeviction'"]
        return []

    def _own(self, batch: StateAccess) -> RedisBatch:
        """The protocol types batches as StateAccess: only this store's own will do."""
        if not isinstance(batch, RedisBatch) or batch.store is not self:
            raise TypeError("a batch that this store's load() returned is needed")
        return batch

    def get_meta(self, name: str) -> str | None:
        value = self._redis.hget(self._meta, name)
        return None if value is None else _raw(value).decode()

    def set_meta(self, name: str, value: str) -> None:
        self._redis.hset(self._meta, name, value.encode())

    def accounts_in_view(self, chunk: int = SCAN_CHUNK) -> Iterator[list[str]]:
        """SCAN may name an account twice (while Redis rehashes); a sweep of an
        account whose view it already swept finds nothing more to retract."""
        prefix = len(self._view_key)
        pending: list[str] = []
        cursor = 0
        while True:
            cursor, keys = self._redis.scan(cursor, match=self._view_key + b"*", count=chunk)
            pending.extend(_id_text(_raw(key)[prefix:]) for key in keys)
            while len(pending) >= chunk:
                yield pending[:chunk]
                del pending[:chunk]
            if cursor == 0:
                break
        if pending:
            yield pending

    def close(self) -> None:
        self._redis.close()


# Both scripts take KEYS, the hashes, and ARGV: first one count per key, then
# the counted arguments of each key in turn. Redis' Lua unpacks at most 8000
# values at once, so long runs of fields go in chunks (even-sized, for pairs).

# Count n > 0: HMGET of the next n fields; 0: HGETALL. One reply per key, in order.
_LOAD: Final = """
local function hmget(key, first, last)
  if last - first < 1000 then
    return redis.call('HMGET', key, unpack(ARGV, first, last))
  end
  local values = {}
  for from = first, last, 1000 do
    local chunk = redis.call('HMGET', key, unpack(ARGV, from, math.min(last, from + 999)))
    for _, value in ipairs(chunk) do
      values[#values + 1] = value
    end
  end
  return values
end

local out, next_arg = {}, #KEYS + 1
for i, key in ipairs(KEYS) do
  local count = tonumber(ARGV[i])
  if count == 0 then
    out[i] = redis.call('HGETALL', key)
  else
    out[i] = hmget(key, next_arg, next_arg + count - 1)
    next_arg = next_arg + count
  end
end
return out
"""

# ARGV[1] = f: the first f KEYS are partition hashes whose `gen` must equal the
# next f ARGV (the fence), else nothing is written and 0 returned. Then, per
# remaining key, a count n > 0: HSET of the next n field, value pairs; n < 0:
# HDEL of the next -n fields.
_COMMIT: Final = """
local fenced = tonumber(ARGV[1])
for i = 1, fenced do
  if redis.call('HGET', KEYS[i], 'gen') ~= ARGV[1 + i] then
    return 0
  end
end
local next_arg = #KEYS + 2
for i = fenced + 1, #KEYS do
  local key = KEYS[i]
  local count = tonumber(ARGV[1 + i])
  local command, last = 'HSET', next_arg + 2 * count - 1
  if count < 0 then command, last = 'HDEL', next_arg - count - 1 end
  for from = next_arg, last, 1000 do
    redis.call(command, key, unpack(ARGV, from, math.min(last, from + 999)))
  end
  next_arg = last + 1
end
return 1
"""

# Each partition hash in KEYS takes generation ARGV[i] unless it holds a newer one.
_CLAIM: Final = """
for i, key in ipairs(KEYS) do
  local held = redis.call('HGET', key, 'gen')
  if not held or tonumber(held) < tonumber(ARGV[i]) then
    redis.call('HSET', key, 'gen', ARGV[i])
  end
end
return 1
"""


class _Args:
    """One call of `_LOAD` or `_COMMIT`: its keys, their counts, the rest of
    ARGV, and (commits only) the fence: partition key -> generation."""

    __slots__ = ("args", "counts", "fence", "keys")

    def __init__(self) -> None:
        self.keys: list[bytes] = []
        self.counts: list[int] = []
        self.args: list[bytes] = []
        self.fence: dict[bytes, bytes] = {}

    def _add(self, key: bytes, count: int) -> None:
        self.keys.append(key)
        self.counts.append(count)

    def hmget(self, key: bytes, fields: Iterable[bytes]) -> None:
        start = len(self.args)
        self.args.extend(fields)
        self._add(key, len(self.args) - start)

    def hgetall(self, key: bytes) -> None:
        self._add(key, 0)

    def hset(self, key: bytes, fields: list[bytes], values: list[bytes]) -> None:
        pairs = [b""] * (2 * len(fields))
        pairs[::2] = fields
        pairs[1::2] = values
        self.args += pairs
        self._add(key, len(fields))

    def hdel(self, key: bytes, fields: Iterable[bytes]) -> None:
        start = len(self.args)
        self.args.extend(fields)
        self._add(key, start - len(self.args))


def _progress_fields(progress: PartitionProgress) -> dict[bytes, bytes]:
    fields = {b"off:" + t.encode(): b"%d" % o for t, o in progress.offsets.items()}
    fields[b"seq"] = b"%d" % progress.seq
    if progress.policy is not None:
        fields[b"policy"] = progress.policy.encode()
    fields.update({b"n:" + name.encode(): b"%d" % n for name, n in progress.counts.items()})
    return fields


def _view_entry_key(account: bytes, post: bytes) -> bytes:
    return b"v:%d:" % len(account) + account + post


def _present(value: bytes | None) -> bytes:
    if value is None:
        raise CorruptStateError("a whole-hash read returned a nil")
    return value


def _raw(reply: bytes | str) -> bytes:
    """Replies are bytes (decode_responses=False); the client's types allow str."""
    return reply if isinstance(reply, bytes) else reply.encode()


def _by_bucket(
    ids: Iterable[str], prefix: bytes, buckets: int
) -> list[tuple[bytes, list[str], list[bytes]]]:
    """Ids grouped per bucket key, so each bucket costs one command, with
    their fields (the ids as bytes)."""
    groups: dict[int, tuple[list[str], list[bytes]]] = {}
    for item in ids:
        field = _id_bytes(item)
        bucket = zlib.crc32(field) % buckets
        group = groups.get(bucket)
        if group is None:
            groups[bucket] = group = ([], [])
        group[0].append(item)
        group[1].append(field)
    return [(prefix + b"%d" % bucket, *group) for bucket, group in groups.items()]
