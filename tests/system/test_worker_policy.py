"""A worker started with another policy than the one its state was built with
(SPEC.md, "A new policy"): it first sweeps the view by the new policy, then
applies new events; a looser policy applies prospectively; the same policy
sweeps nothing."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any

import orjson

from stream.core.decode import Message
from stream.core.policy import DEFAULT_POLICY, EEA_EFTA, EU27, Policy, load_policy
from stream.worker.partitioning import partition_for
from tests.system.conftest import Deployment, Worker
from tests.unit.builders import objection, post, profile, update

BEFORE = "2025-06-01T10:00:00Z"  # posts published by the first worker
AFTER = "2025-07-01T10:00:00Z"  # events after the restart
NO_DE = [c for c in EU27 + EEA_EFTA if c != "DE"]


def write_policy(tmp: Path, name: str, **fields: Any) -> tuple[Path, Policy]:
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(fields))
    return path, load_policy(path)


def on_partition(prefix: str, partition: int, partitions: int = 3) -> str:
    """An account id of that prefix whose events land on that input partition."""
    for n in itertools.count():
        account = f"{prefix}-{n}"
        if partition_for(account.encode(), partitions) == partition:
            return account
    raise AssertionError  # unreachable


def start(deployment: Deployment, policy_file: Path | None = None) -> Worker:
    env = {} if policy_file is None else {"ELIGIBILITY_POLICY_FILE": str(policy_file)}
    worker = deployment.start_worker(**env)
    deployment.wait_assigned(worker)
    return worker


def restart(deployment: Deployment, old: Worker, policy_file: Path | None) -> Worker:
    """Stop `old` cleanly, then start a worker with `policy_file` (None: default)."""
    old.stop()
    return start(deployment, policy_file)


def wake(deployment: Deployment, tag: str) -> list[Message]:
    """One harmless event (a new account's profile) on every input partition,
    so the worker touches each partition (recovery runs on first touch)."""
    return [profile(on_partition(f"wake-{tag}", p, deployment.partitions), ts=AFTER)
            for p in range(deployment.partitions)]


def produce_profiles_first(deployment: Deployment, messages: list[Message]) -> None:
    """The profiles, applied, then the rest (topics interleave as they will)."""
    deployment.produce([m for m in messages if m.topic == "accounts"])
    deployment.wait_caught_up()
    deployment.produce([m for m in messages if m.topic != "accounts"])
    deployment.wait_caught_up()


def snapshot(deployment: Deployment, topic: str) -> list[Any]:
    return deployment.read(topic)


def since(deployment: Deployment, topic: str, before: list[Any]) -> list[Any]:
    """What was sent to `topic` after `before` was read, less exact repeats of
    earlier messages: a new owner first sends again the outbox its
    predecessor committed last (the same bytes, by design)."""
    seen = {(m.partition(), m.offset()) for m in before}
    sent = {(m.key(), m.value()) for m in before}
    return [m for m in deployment.read(topic)
            if (m.partition(), m.offset()) not in seen and (m.key(), m.value()) not in sent]


def sweep_records(audit: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Audit records of a policy sweep: the only ones without a source."""
    return [r for r in audit if r.get("source") is None]


def version_of(raw: bytes) -> str:
    return str(orjson.loads(raw)["policy"])


def test_a_stricter_region_policy_sweeps_the_view_before_new_events(
    deployment: Deployment, tmp_path: Path
) -> None:
    parts = range(deployment.partitions)
    de = {p: on_partition("de", p) for p in parts}
    mover = {p: on_partition("mover", p) for p in parts}  # DE, moves to FR later
    late = {p: on_partition("de-late", p) for p in parts}  # DE, posts only later
    fr = {p: on_partition("fr", p) for p in parts}
    worker = start(deployment)
    first: list[Message] = []
    for p in parts:
        first += [profile(a[p], "1990-01-01", "DE") for a in (de, mover, late)]
        first += [profile(fr[p], "1990-01-01", "FR")]
        first += [post(f"de{p}-1", de[p], BEFORE), post(f"de{p}-2", de[p], BEFORE),
                  post(f"mv{p}", mover[p], BEFORE), post(f"fr{p}-1", fr[p], BEFORE)]
    produce_profiles_first(deployment, first)
    before = deployment.check()
    assert set(before) == {i for p in parts for i in (f"de{p}-1", f"de{p}-2", f"mv{p}",
                                                      f"fr{p}-1")}
    assert {version_of(v) for v in before.values()} == {DEFAULT_POLICY.version}
    assert not [r for r in sweep_records(deployment.audit()) if r["record"] == "retraction"]

    path, strict = write_policy(tmp_path, "no-de", regions=NO_DE)
    assert strict.version != DEFAULT_POLICY.version
    seen_view = snapshot(deployment, "training-ready")
    seen_audit = snapshot(deployment, "eligibility-audit")
    restart(deployment, worker, path)
    later: list[Message] = []
    for p in parts:
        later += [
            # applied before the sweep, this update would retract de{p}-1 itself
            update(f"de{p}-1", de[p], AFTER, created_at=BEFORE, text="edited"),
            # applied before the sweep, the move to FR would keep mv{p} in the view
            profile(mover[p], "1990-01-01", "FR", ts=AFTER),
            post(f"de{p}-new", late[p], AFTER),
            post(f"fr{p}-new", fr[p], AFTER),
        ]
    deployment.produce(later)
    deployment.wait_caught_up()
    view = deployment.check_with(strict, earlier=(DEFAULT_POLICY,))

    # DE posts out (swept, not brought back by the move to FR), FR posts kept
    # as they were (not re-published), new FR posts under the new version
    assert set(view) == {f"fr{p}-1" for p in parts} | {f"fr{p}-new" for p in parts}
    for p in parts:
        assert view[f"fr{p}-1"] == before[f"fr{p}-1"]
        assert version_of(view[f"fr{p}-new"]) == strict.version

    # the retractions are the sweep's: no source, out_of_region, new version
    audit = deployment.audit()
    retractions = [r for r in audit if r["record"] == "retraction"]
    swept = {i for p in parts for i in (f"de{p}-1", f"de{p}-2", f"mv{p}")}
    assert sorted(r["post_id"] for r in retractions) == sorted(swept), retractions
    for record in retractions:
        assert record.get("source") is None, record
        assert record["reasons"] == ["out_of_region"], record
        assert record["policy"] == strict.version, record

    # what the restart sent: tombstones of the swept posts, then the new
    # events' records, all under the new version
    sent = since(deployment, "training-ready", seen_view)
    assert sorted(m.key().decode() for m in sent if m.value() is None) == sorted(swept)
    published = {m.key().decode(): m.value() for m in sent if m.value() is not None}
    assert set(published) == {f"fr{p}-new" for p in parts}
    assert {version_of(v) for v in published.values()} == {strict.version}
    new_audit = [orjson.loads(m.value()) for m in since(deployment, "eligibility-audit",
                                                         seen_audit)]
    assert {r["policy"] for r in new_audit} == {strict.version}
    for p in parts:
        verdicts = [(r["outcome"], r["reasons"]) for r in new_audit
                    if r["record"] == "post" and r["post_id"] in (f"de{p}-1", f"de{p}-new")]
        assert sorted(verdicts) == [("excluded", ["out_of_region"])] * 2, verdicts


def test_a_raised_minimum_age_retracts_the_posts_of_those_now_too_young(
    deployment: Deployment, tmp_path: Path
) -> None:
    parts = range(deployment.partitions)
    young_fr = {p: on_partition("young-fr", p) for p in parts}  # 17 at BEFORE
    young_de = {p: on_partition("young-de", p) for p in parts}  # 19 at BEFORE
    old_de = {p: on_partition("old-de", p) for p in parts}  # 35 at BEFORE
    old_path, old = write_policy(tmp_path, "fr-16", min_age_by_country={"FR": 16})
    worker = start(deployment, old_path)
    first: list[Message] = []
    for p in parts:
        first += [profile(young_fr[p], "2008-01-01", "FR"), profile(young_de[p], "2006-01-01"),
                  profile(old_de[p], "1990-01-01")]
        first += [post(f"yfr{p}", young_fr[p], BEFORE), post(f"yde{p}", young_de[p], BEFORE),
                  post(f"ode{p}", old_de[p], BEFORE)]
    produce_profiles_first(deployment, first)
    before = deployment.check_with(old)
    assert len(before) == 3 * len(parts)

    new_path, new = write_policy(tmp_path, "21", min_age=21)
    seen_view = snapshot(deployment, "training-ready")
    restart(deployment, worker, new_path)
    deployment.produce(wake(deployment, "age"))
    deployment.wait_caught_up()
    view = deployment.check_with(new, earlier=(old,))
    assert view == {f"ode{p}": before[f"ode{p}"] for p in parts}
    swept = sweep_records(deployment.audit())
    assert sorted(r["post_id"] for r in swept) == sorted(
        [f"yfr{p}" for p in parts] + [f"yde{p}" for p in parts])
    assert all(r["record"] == "retraction" and r["reasons"] == ["minor"]
               and r["policy"] == new.version for r in swept), swept
    sent = since(deployment, "training-ready", seen_view)
    assert all(m.value() is None for m in sent)
    assert len(sent) == 2 * len(parts)


def test_a_stricter_policy_retracts_without_waiting_for_new_events(
    deployment: Deployment, tmp_path: Path
) -> None:
    parts = range(deployment.partitions)
    de = {p: on_partition("de", p) for p in parts}
    worker = start(deployment)
    produce_profiles_first(deployment, [m for p in parts for m in (
        profile(de[p], "1990-01-01", "DE"), post(f"de{p}", de[p], BEFORE))])
    assert len(deployment.check()) == len(parts)
    path, _ = write_policy(tmp_path, "no-de", regions=NO_DE)
    restart(deployment, worker, path)
    deadline = time.monotonic() + 30
    while deployment.view() and time.monotonic() < deadline:
        time.sleep(1)
    assert deployment.view() == {}, "DE posts still published under a policy without DE"


def test_a_looser_policy_applies_prospectively(deployment: Deployment, tmp_path: Path) -> None:
    parts = range(deployment.partitions)
    de = {p: on_partition("de", p) for p in parts}  # out of the strict regions
    young = {p: on_partition("young", p) for p in parts}  # 19: under the strict 21
    fr = {p: on_partition("fr", p) for p in parts}
    strict_path, strict = write_policy(tmp_path, "strict", regions=["FR"], min_age=21)
    worker = start(deployment, strict_path)
    first: list[Message] = []
    for p in parts:
        first += [profile(de[p], "1990-01-01", "DE"), profile(young[p], "2006-01-01", "FR"),
                  profile(fr[p], "1990-01-01", "FR")]
        first += [post(f"de{p}", de[p], BEFORE), post(f"young{p}", young[p], BEFORE),
                  post(f"fr{p}", fr[p], BEFORE)]
    produce_profiles_first(deployment, first)
    before = deployment.check_with(strict)
    assert set(before) == {f"fr{p}" for p in parts}

    seen_view = snapshot(deployment, "training-ready")
    restart(deployment, worker, None)  # the default policy: looser
    deployment.produce(wake(deployment, "loose"))
    deployment.wait_caught_up()
    # the restart re-publishes nothing, retracts nothing
    assert since(deployment, "training-ready", seen_view) == []
    assert sweep_records(deployment.audit()) == []
    assert deployment.check_with(DEFAULT_POLICY, earlier=(strict,)) == before

    # a new version of an excluded post is judged afresh, by the looser policy
    deployment.produce([update("de0", de[0], AFTER, created_at=BEFORE, text="v2"),
                        update("young1", young[1], AFTER, created_at=BEFORE, text="v2"),
                        objection(fr[2], AFTER)])
    deployment.wait_caught_up()
    view = deployment.check_with(DEFAULT_POLICY, earlier=(strict,))
    assert set(view) == {"fr0", "fr1", "de0", "young1"}
    for post_id in ("de0", "young1"):
        record = orjson.loads(view[post_id])
        assert record["policy"] == DEFAULT_POLICY.version
        assert record["text"] == "v2"
    assert view["fr0"] == before["fr0"]  # not re-published under the new version


def test_the_same_policy_on_restart_sweeps_nothing(deployment: Deployment, tmp_path: Path) -> None:
    parts = range(deployment.partitions)
    fr = {p: on_partition("fr", p) for p in parts}  # 17, FR minimum 16
    de = {p: on_partition("de", p) for p in parts}
    path, policy = write_policy(tmp_path, "p", regions=[*NO_DE, "DE"],
                                min_age_by_country={"FR": 16})
    worker = start(deployment, path)
    first: list[Message] = []
    for p in parts:
        first += [profile(fr[p], "2008-01-01", "FR"), profile(de[p], "1990-01-01", "DE"),
                  post(f"fr{p}", fr[p], BEFORE), post(f"de{p}", de[p], BEFORE)]
    produce_profiles_first(deployment, first)
    before = deployment.check_with(policy)
    assert len(before) == 2 * len(parts)

    # the same policy, spelled otherwise: same canonical form, same version
    same_path, same = write_policy(
        tmp_path, "same", regions=sorted([*NO_DE, "DE", "DE"], reverse=True),
        min_age_by_country={"FR": 16, "IT": 18}, clock_skew_seconds=600)
    assert same.version == policy.version
    seen_view = snapshot(deployment, "training-ready")
    restart(deployment, worker, same_path)
    deployment.produce([*wake(deployment, "same"),
                        *(post(f"fr{p}-new", fr[p], AFTER) for p in parts)])
    deployment.wait_caught_up()
    view = deployment.check_with(policy)
    assert sweep_records(deployment.audit()) == []
    assert view == {**before, **{f"fr{p}-new": view[f"fr{p}-new"] for p in parts}}
    sent = since(deployment, "training-ready", seen_view)
    assert sorted(m.key().decode() for m in sent) == sorted(f"fr{p}-new" for p in parts)
