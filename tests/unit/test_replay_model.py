"""Random event logs against a straightforward model of SPEC.md written here.

Two properties: the engine's view equals the model's, and every post in the
final view is eligible under the final state. The model shares no code with
the core: it parses times with `datetime` and follows SPEC.md's sentences.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream.core.decode import Message
from tests.unit.builders import run

REGIONS = {"DE", "FR", "NO"}
ACCOUNTS = ["a1", "a2", "a3"]
POSTS = ["p1", "p2", "p3", "p4", "p5"]
TIMES = [
    "2025-01-01T00:00:00Z",
    "2025-02-28T23:00:00Z",
    "2025-03-01T01:00:00+02:00",  # = 2025-02-28T23:00:00Z: a tie written differently
    "2025-03-01T00:00:00Z",
    "2025-06-01T12:00:00Z",
    "2025-06-01T12:00:00.000001Z",
]
BIRTHS = [None, "1990-05-05", "2007-03-01", "2007-02-28", "2008-02-29", "2012-01-01"]
COUNTRIES = [None, "DE", "FR", "US", "NO"]


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def of_age(birth: str, created_at: datetime) -> bool:
    born = date.fromisoformat(birth)
    try:
        birthday = born.replace(year=born.year + 18)
    except ValueError:
        birthday = date(born.year + 18, 3, 1)
    return created_at >= datetime(birthday.year, birthday.month, birthday.day, tzinfo=UTC)


# -- the model ---------------------------------------------------------------


@dataclass
class ModelAccount:
    objection: tuple[datetime, bool] | None = None
    profile: tuple[datetime, str | None, str | None] | None = None
    deleted: bool = False
    quarantine: set[str] = field(default_factory=set)


@dataclass
class ModelPost:
    owner: str
    version: dict[str, Any] | None = None
    version_ts: datetime | None = None
    created_at: datetime | None = None
    deleted: bool = False


@dataclass
class Model:
    accounts: dict[str, ModelAccount] = field(default_factory=dict)
    posts: dict[str, ModelPost] = field(default_factory=dict)
    view: dict[str, dict[str, Any]] = field(default_factory=dict)

    def account(self, account_id: str) -> ModelAccount:
        return self.accounts.setdefault(account_id, ModelAccount())

    def eligible(self, account_id: str, kind: str, audience: str, created: datetime,
                 post_deleted: bool = False) -> bool:
        acc = self.accounts.get(account_id, ModelAccount())
        birth = acc.profile[1] if acc.profile else None
        country = acc.profile[2] if acc.profile else None
        objected = acc.objection is not None and acc.objection[1]
        return not (
            kind == "message" or audience != "public" or post_deleted or acc.deleted
            or objected or acc.quarantine or birth is None or not of_age(birth, created)
            or country is None or country not in REGIONS
        )

    def retract_failing(self, account_id: str) -> None:
        for post_id, record in list(self.view.items()):
            if record["owner"] == account_id and not self.eligible(
                account_id, "post", "public", self.posts[post_id].created_at  # type: ignore[arg-type]
            ):
                del self.view[post_id]

    def apply(self, topic: str, event: dict[str, Any] | None, key: str) -> None:
        if event is None:  # a dead letter with a readable key or post_id
            return self.dead_letter(topic, key)
        account_id = event["account_id"]
        ts = instant(event["ts"])
        if topic == "posts":
            return self.post_event(event, account_id, ts)
        acc = self.account(account_id)
        if acc.deleted:
            return None
        acc.quarantine.discard(topic)
        if event["type"].startswith("objection"):
            filed = event["type"] == "objection.filed"
            if acc.objection is None or ts > acc.objection[0] or (
                ts == acc.objection[0] and filed
            ):
                acc.objection = (ts, filed)
        elif event["type"] == "account.upserted":
            new = (ts, event["birth_date"], event["country"])
            if acc.profile is None or ts > acc.profile[0]:
                acc.profile = new
            elif ts == acc.profile[0] and new[1:] != acc.profile[1:]:
                acc.profile = (ts, None, None)
        else:
            acc.deleted = True
        self.retract_failing(account_id)
        return None

    def post_event(self, event: dict[str, Any], account_id: str, ts: datetime) -> None:
        post_id = event["post_id"]
        post = self.posts.get(post_id)
        if post is not None and post.owner != account_id:
            return self.dead_letter("posts", account_id, post_id)
        if self.accounts.get(account_id, ModelAccount()).deleted:
            return None
        if post is not None and post.deleted:
            return None
        if post is None:
            post = self.posts[post_id] = ModelPost(owner=account_id)
        if event["type"] == "post.deleted":
            post.deleted = True
            self.view.pop(post_id, None)
            return None
        created = instant(event["created_at"])
        earlier = post.created_at is not None and created < post.created_at
        post.created_at = created if post.created_at is None else min(post.created_at, created)
        ok = self.eligible(account_id, event["kind"], event["audience"], post.created_at)
        if post.version_ts is None or ts > post.version_ts or (
            ts == post.version_ts and not ok
        ):
            post.version, post.version_ts = event, ts
            if ok:
                country = self.accounts[account_id].profile[2]  # type: ignore[index]
                self.view[post_id] = {
                    "owner": account_id, "event_id": event["event_id"], "country": country,
                    "created_at": post.created_at, "text": event["text"],
                }
            else:
                self.view.pop(post_id, None)
        elif earlier and post_id in self.view:
            # the record's created_at is no longer the earliest: taken out
            del self.view[post_id]
        return None

    def dead_letter(self, topic: str, key: str, post_id: str | None = None) -> None:
        if post_id is not None:
            self.view.pop(post_id, None)
            return
        if topic in ("objections", "accounts"):
            self.account(key).quarantine.add(topic)
        for pid, record in list(self.view.items()):
            if record["owner"] == key:
                del self.view[pid]


# -- random logs ---------------------------------------------------------------

_serial = iter(range(10**9))


@st.composite
def event_logs(draw: st.DrawFn) -> list[tuple[str, dict[str, Any] | None, str, Message]]:
    """(topic, event or None for a dead letter, key, message) in log order."""
    items: list[tuple[str, dict[str, Any] | None, str, Message]] = []
    for account in draw(st.lists(st.sampled_from(ACCOUNTS), unique=True)):
        # most logs start with adult EU profiles, so that posts get published
        event = {"event_id": f"e{next(_serial)}", "type": "account.upserted",
                 "ts": TIMES[0], "account_id": account, "birth_date": "1990-05-05",
                 "country": "DE"}
        items.append(("accounts", event, account,
                      Message("accounts", account, orjson.dumps(event))))
    for _ in range(draw(st.integers(1, 40))):
        choice = draw(st.sampled_from(
            ["post"] * 6 + ["update"] * 3 + ["delete_post", "objection", "objection",
             "profile", "profile", "delete_account", "bad_objection", "bad_post",
             "bad_account", "redeliver", "redeliver"]
        ))
        account = draw(st.sampled_from(ACCOUNTS))
        post_id = draw(st.sampled_from(POSTS))
        if choice in ("post", "update", "delete_post") and draw(st.integers(0, 9)):
            account = ACCOUNTS[POSTS.index(post_id) % len(ACCOUNTS)]  # its usual owner
        ts = draw(st.sampled_from(TIMES))
        eid = f"e{next(_serial)}"
        if choice == "redeliver":
            if items:
                items.append(draw(st.sampled_from(items)))
            continue
        if choice in ("post", "update"):
            event = {
                "event_id": eid, "type": "post.created" if choice == "post" else "post.updated",
                "ts": ts, "post_id": post_id, "account_id": account,
                "created_at": draw(st.sampled_from(TIMES)),
                "kind": draw(st.sampled_from(["post", "comment", "comment", "message"])),
                "audience": draw(st.sampled_from(["public", "public", "friends"])),
                "text": draw(st.sampled_from(["hi", "é\u2028x", ""])),
            }
            topic = "posts"
        elif choice == "delete_post":
            event = {"event_id": eid, "type": "post.deleted", "ts": ts,
                     "post_id": post_id, "account_id": account}
            topic = "posts"
        elif choice == "objection":
            kind = draw(st.sampled_from(["objection.filed", "objection.withdrawn"]))
            event = {"event_id": eid, "type": kind, "ts": ts, "account_id": account}
            topic = "objections"
        elif choice == "profile":
            event = {"event_id": eid, "type": "account.upserted", "ts": ts,
                     "account_id": account, "birth_date": draw(st.sampled_from(BIRTHS)),
                     "country": draw(st.sampled_from(COUNTRIES))}
            topic = "accounts"
        elif choice == "delete_account":
            event = {"event_id": eid, "type": "account.deleted", "ts": ts, "account_id": account}
            topic = "accounts"
        else:
            topic = {"bad_objection": "objections", "bad_post": "posts",
                     "bad_account": "accounts"}[choice]
            # an unparseable time: a dead letter naming the key's account
            bad = {"event_id": eid, "type": "objection.filed", "ts": "soon",
                   "account_id": account}
            items.append((topic, None, account, Message(topic, account, orjson.dumps(bad))))
            continue
        items.append((topic, event, account, Message(topic, account, orjson.dumps(event))))
    return items


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event_logs())
def test_view_equals_the_model_and_holds_only_eligible_posts(log: list[Any]) -> None:
    model = Model()
    for topic, event, key, _ in log:
        model.apply(topic, event, key)
    result = run(*(message for *_, message in log))

    assert set(result.view) == set(model.view)
    for post_id, record in result.view.items():
        expected = model.view[post_id]
        assert record.event_id == expected["event_id"]
        assert record.country == expected["country"]
        assert record.text == expected["text"]
        assert instant(record.created_at) == expected["created_at"]
        # eligible under the final state, whatever the order of arrival
        post = model.posts[post_id]
        assert post.version is not None
        assert model.eligible(post.owner, post.version["kind"], post.version["audience"],
                              post.created_at, post.deleted)  # type: ignore[arg-type]


@settings(max_examples=150, deadline=None)
@given(event_logs())
def test_replaying_a_log_twice_changes_nothing(log: list[Any]) -> None:
    """Redelivery of a whole log leaves the view as the first pass left it,
    except posts the second pass legitimately retracts: never one more."""
    messages = [message for *_, message in log]
    result = run(*messages)
    first = dict(result.view)
    result.apply(*messages)
    assert set(result.view) <= set(first)


def test_the_model_agrees_with_the_walkthrough() -> None:
    """The model itself is checked on the walkthrough's expected view."""
    from pathlib import Path

    from stream.eventlog import read_messages

    lines = Path(__file__).parents[2] / "examples" / "walkthrough.jsonl"
    if not lines.exists():
        lines = Path("/work/shared/examples/walkthrough.jsonl")
    model = Model()
    with lines.open("rb") as handle:
        messages = list(read_messages(handle))
    for message in messages:
        assert isinstance(message.value, str)
        try:
            event = orjson.loads(message.value)
            instant(event["ts"])
        except ValueError:
            model.apply(message.topic, None, message.key or "")
            continue
        model.apply(message.topic, event, message.key or "")
    assert set(model.view) == {"p-anna-3"}
    assert set(run(*messages).view) == {"p-anna-3"}
