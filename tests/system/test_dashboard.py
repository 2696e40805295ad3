"""Every panel of the Grafana dashboard (deploy/grafana/dashboards/eligibility-filter.json)
shows data, queried from a real Prometheus scraping a real worker.

The test starts Debian's `prometheus` (a temporary config: scrape every second, the
worker's /metrics as job `eligibility-worker`) and a dedicated `redis-server` (an
append-only file, so it can be stopped and started again with its data), runs a worker
on them and the local Kafka, and feeds it four rounds of a scenario that touches every
panel: posts published, excluded for each reason, ignored and stale; retractions of each
cause (an objection, a deleted post and account, a profile turning its account minor or
out of region, a dead letter quarantining an account); dead letters of three reasons.
Redis is stopped while the third round flows (the worker pauses, Redis errors count
up, input lags), then started again (the worker resumes).

Then each target of each panel is sent to Prometheus' /api/v1/query_range over the whole
run, with Grafana's variables replaced (`$__rate_interval` -> 1m, `$instance` -> .*),
and must return data that is non-zero somewhere (a few also: each expected label value
non-zero somewhere, or a known final value). `MAY_BE_ZERO` lists the targets excused
from being non-zero: none, this scenario drives every one.

Counters of labelled series only show a rate once a series grows after its first
scrape, hence several rounds, and a pause of a few scrapes between them.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from stream.core.decode import Message
from stream.core.times import format_time
from tests.system.conftest import Deployment, RedisServer, free_port, terminate, wait_for
from tests.unit.builders import delete_account, delete_post, msg, objection, post, profile, update

ROOT = Path(__file__).parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "eligibility-filter.json"
JOB = "eligibility-worker"
ROUNDS = 4
OUTAGE_ROUND = 3  # produced while Redis is down
SCRAPE_S = 1

# Grafana's variables, as the Prometheus HTTP API needs them spelled out.
VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "${instance}": ".*",
    "$instance": ".*",
}
# (panel title, refId) excused from being non-zero somewhere in the run. Keep it short:
# every target here is driven by the scenario.
MAY_BE_ZERO: set[tuple[str, str]] = set()


# -- processes ------------------------------------------------------------------------


class Prometheus:
    """Debian's prometheus on a free loopback port, scraping `targets` every second."""

    def __init__(self, binary: str, directory: Path, targets: list[str]) -> None:
        self.port = free_port()
        self.directory = directory
        directory.mkdir(exist_ok=True)
        config = {
            "global": {"scrape_interval": f"{SCRAPE_S}s", "scrape_timeout": f"{SCRAPE_S}s",
                       "evaluation_interval": f"{SCRAPE_S}s"},
            "scrape_configs": [{
                "job_name": JOB, "metrics_path": "/metrics",
                "static_configs": [{"targets": targets}],
            }],
        }
        (directory / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
        self.log = directory / "prometheus.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [binary, f"--config.file={directory / 'prometheus.yml'}",
                 f"--storage.tsdb.path={directory / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=log, stderr=subprocess.STDOUT,
            )
        self.base = f"http://127.0.0.1:{self.port}"
        wait_for("prometheus ready", self._ready, timeout=60)

    def _ready(self) -> bool:
        assert self.process.poll() is None, self.log.read_text(errors="replace")[-3000:]
        try:
            with urllib.request.urlopen(f"{self.base}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def api(self, path: str, get: bool = False, **params: Any) -> Any:
        """A call of the HTTP API (POST, or GET where the API takes only that)."""
        encoded = urllib.parse.urlencode(params)
        url = f"{self.base}/api/v1/{path}"
        request = (urllib.request.Request(f"{url}?{encoded}") if get
                   else urllib.request.Request(url, data=encoded.encode()))
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                reply = json.loads(response.read())
        except urllib.error.HTTPError as exc:  # a bad query: Prometheus says why
            raise AssertionError(f"{path} {params}: {exc.code} {exc.read()[:2000]!r}") from None
        assert reply["status"] == "success", reply
        return reply["data"]

    def instant(self, expr: str) -> float | None:
        """The sum of an instant query's values; None without data."""
        result = self.api("query", query=expr)["result"]
        return sum(float(r["value"][1]) for r in result) if result else None

    def close(self) -> None:
        terminate(self.process)


@pytest.fixture
def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if path:
        return path
    msg_ = "prometheus is not installed (apt-get install prometheus, or deploy/bootstrap.sh)"
    if os.environ.get("CI"):
        pytest.fail(f"{msg_}; it is required in CI", pytrace=False)
    pytest.skip(msg_)


@pytest.fixture
def start_prometheus(prometheus_binary: str, tmp_path: Path) -> Iterator[Callable[..., Prometheus]]:
    started: list[Prometheus] = []

    def start(targets: list[str]) -> Prometheus:
        server = Prometheus(prometheus_binary, tmp_path / f"prometheus-{len(started)}", targets)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.close()


# -- the scenario -----------------------------------------------------------------------------


def scenario_round(r: int, now_us: int) -> list[list[Message]]:
    """One round: fresh accounts (suffixed with the round), every kind of decision, in
    phases to produce one after the other (the worker applies each partition's topics
    in no fixed order: a profile must be applied before its posts, the posts before the
    account changes that retract them). Event times run up to `now_us`, a second apart
    (publication latency: seconds)."""
    start = now_us - 40 * 1_000_000
    clock = iter(range(1, 40))

    def t() -> str:
        return format_time(start + next(clock) * 1_000_000)

    a, m, u, x, q, o, d, g, h, k, z = (f"{who}{r}" for who in "amuxqodghkz")
    profiles = [
        profile(a, birth="1990-01-01", country="DE", ts=t()),
        profile(m, birth="2012-05-05", country="FR", ts=t()),  # a minor
        profile(u, birth="1980-01-01", country="US", ts=t()),  # out of region
        profile(q, birth="1990-01-01", country="DE", ts=t()),
        profile(o, birth="1990-01-01", country="IT", ts=t()),
        profile(d, birth="1990-01-01", country="FR", ts=t()),
        profile(g, birth="1990-01-01", country="DE", ts=t()),
        profile(h, birth="1990-01-01", country="DE", ts=t()),
    ]
    posted = t()
    posts = [
        post(f"p-{a}-1", a, ts=posted),  # published, stays
        post(f"p-{a}-2", a, ts=t(), kind="message", audience="private"),  # excluded x2
        post(f"p-{a}-3", a, ts=t(), kind="comment"),  # published, then deleted
        post(f"p-{a}-4", a, ts=t()),  # published, then made friends-only
        post(f"p-{m}-1", m, ts=t()),  # excluded: minor
        post(f"p-{u}-1", u, ts=t()),  # excluded: out_of_region
        post(f"p-{x}-1", x, ts=t()),  # no profile: age_unknown, region_unknown
        *(post(f"p-{who}-1", who, ts=t()) for who in (q, o, d, g, h)),  # published
    ]
    changes = [
        update(f"p-{a}-4", a, t(), audience="friends"),  # excluded, retracted: not_public
        update(f"p-{a}-1", a, format_time(start), created_at=posted),  # stale
        delete_post(f"p-{a}-3", a, ts=t()),  # excluded, retracted: post_deleted
        post(f"p-{a}-3", a, ts=t(), kind="comment"),  # ignored: post_deleted
        objection(o, ts=t()),  # retracted: objected
        delete_account(d, ts=t()),  # retracted: account_deleted
        profile(g, birth="2012-05-05", country="DE", ts=t()),  # retracted: minor
        profile(h, birth="1990-01-01", country="US", ts=t()),  # retracted: out_of_region
        # bad input: a dead letter on objections quarantines q (retracted: quarantined)
        msg("objections", {"event_id": f"bad-{q}", "type": "objection.filed",
                           "ts": "not a time", "account_id": q}),
        msg("posts", b"{not json", key=z),  # invalid_json
        msg("accounts", {"event_id": f"bad-{k}", "type": "account.renamed", "ts": t(),
                         "account_id": k}),  # unknown_type, quarantines k
    ]
    after = [
        post(f"p-{o}-2", o, ts=t()),  # excluded: objected
        post(f"p-{d}-2", d, ts=t()),  # ignored: account_deleted
        post(f"p-{q}-2", q, ts=t()),  # excluded: quarantined
    ]
    return [profiles, posts, changes, after]


# per round: accounts left objected (o), quarantined (q, k), minor (m, g); posts left
# in the view (a's first)
OBJECTED_PER_ROUND, QUARANTINED_PER_ROUND, MINOR_PER_ROUND, IN_VIEW_PER_ROUND = 1, 2, 2, 1


# -- what the panels must show ----------------------------------------------------------------


@dataclass
class Expect:
    labels: dict[str, set[str]] = field(default_factory=dict)  # each value non-zero somewhere
    final: float | None = None  # the sum of the series' last values


def expectations(partitions: int, in_view: int) -> dict[tuple[str, str], Expect]:
    return {
        ("Worker up", "A"): Expect(final=1),
        ("Assigned partitions", "A"): Expect(final=partitions),
        ("Paused (waiting for Redis)", "A"): Expect(final=0),
        ("Paused", "A"): Expect(final=0),
        ("Policy in force", "A"): Expect(final=1),
        ("Throughput in", "A"): Expect(labels={"topic": {"posts", "objections", "accounts"}}),
        ("Decisions by outcome", "A"): Expect(
            labels={"outcome": {"published", "excluded", "ignored", "stale"}}),
        ("Exclusions by reason", "A"): Expect(labels={"reason": {
            "private_conversation", "not_public", "post_deleted", "objected", "quarantined",
            "age_unknown", "minor", "region_unknown", "out_of_region"}}),
        ("Retractions by cause", "A"): Expect(labels={"cause": {
            "not_public", "post_deleted", "objected", "account_deleted", "minor",
            "out_of_region", "quarantined"}}),
        ("Dead letters by reason", "A"): Expect(
            labels={"reason": {"bad_time", "invalid_json", "unknown_type"}}),
        ("Consumer lag by partition", "A"): Expect(final=0),
        ("Accounts", "A"): Expect(final=OBJECTED_PER_ROUND * ROUNDS),
        ("Accounts", "B"): Expect(final=QUARANTINED_PER_ROUND * ROUNDS),
        ("Accounts", "C"): Expect(final=MINOR_PER_ROUND * ROUNDS),
        ("Posts in view", "A"): Expect(final=in_view),
    }


def panel_targets() -> list[tuple[str, str, str]]:
    """(panel title, refId, expr) of every target of the dashboard."""
    def walk(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in panels:
            yield panel
            yield from walk(panel.get("panels", []))

    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [
        (panel["title"], target["refId"], target["expr"])
        for panel in walk(dashboard["panels"])
        for target in panel.get("targets", [])
    ]


def substitute(expr: str) -> str:
    for variable in sorted(VARIABLES, key=len, reverse=True):
        expr = expr.replace(variable, VARIABLES[variable])
    assert "$" not in expr, f"a Grafana variable left in {expr!r}"
    return expr


def number(text: str) -> float:
    value = float(text)
    return 0.0 if math.isnan(value) else value


# -- the test ------------------------------------------------------------------------------------


def test_every_dashboard_panel_shows_the_scenario(
    deployment: Deployment,
    own_redis: RedisServer,
    start_prometheus: Callable[..., Prometheus],
) -> None:
    began = time.monotonic()
    web_port = free_port()
    prometheus = start_prometheus([f"127.0.0.1:{web_port}"])
    window_start = time.time()
    worker = deployment.start_worker(
        ELIGIBILITY_REDIS_URL=own_redis.url, ELIGIBILITY_WEB_PORT=str(web_port)
    )
    deployment.wait_assigned(worker)
    wait_for("the worker scraped", lambda: prometheus.instant(f'up{{job="{JOB}"}}') == 1,
             timeout=30)
    # the dashboard's template variable lists this worker
    instances = prometheus.api(
        "label/instance/values", get=True, **{"match[]": f'up{{job="{JOB}"}}'}
    )
    assert instances == [f"127.0.0.1:{web_port}"], instances

    def pause_for_scrapes(n: int = 3) -> None:
        time.sleep(n * SCRAPE_S + 0.5)

    outage_s = 0.0
    for r in range(1, ROUNDS + 1):
        phases = scenario_round(r, time.time_ns() // 1000)
        if r == OUTAGE_ROUND:
            # Redis goes away while the first phase flows: the worker pauses
            keys = own_redis.keys()
            own_redis.stop()
            down = time.monotonic()
            deployment.produce(phases.pop(0))
            wait_for("paused in Prometheus",
                     lambda: prometheus.instant("max(eligibility_paused)") == 1, timeout=30)
            wait_for("lag in Prometheus",  # the worker measures it every 5 s
                     lambda: (prometheus.instant("sum(eligibility_consumer_lag)") or 0) > 0,
                     timeout=30)
            assert worker.process.poll() is None, worker.text()[-3000:]
            pause_for_scrapes()
            own_redis.start()
            outage_s = time.monotonic() - down
            assert own_redis.keys() >= keys  # the same data back
            deployment.wait_caught_up(timeout=90)
            wait_for("resumed in Prometheus",
                     lambda: prometheus.instant("max(eligibility_paused)") == 0, timeout=30)
        for phase in phases:
            deployment.produce(phase)
            deployment.wait_caught_up()
        pause_for_scrapes()

    view = deployment.check()
    assert len(view) == IN_VIEW_PER_ROUND * ROUNDS, sorted(view)
    assert worker.process.poll() is None, worker.text()[-3000:]
    assert "Redis unavailable" in worker.text()
    # the lag gauge is refreshed every 5 s: let it, and a few scrapes, see the end
    wait_for("no lag in Prometheus",
             lambda: prometheus.instant("sum(eligibility_consumer_lag)") == 0, timeout=30)
    pause_for_scrapes()
    window_end = time.time()

    expect = expectations(deployment.partitions, len(view))
    targets = panel_targets()
    assert len(targets) >= 20, targets
    assert set(expect) <= {(title, ref) for title, ref, _ in targets}
    report, problems = [], []
    for title, ref, expr in targets:
        where = f"{title} [{ref}]"
        query = substitute(expr)
        result = prometheus.api("query_range", query=query, start=f"{window_start:.3f}",
                                end=f"{window_end:.3f}", step=f"{SCRAPE_S}s")["result"]
        wanted = expect.get((title, ref), Expect())
        if not result:
            problems.append(f"{where}: no data for {query}")
            continue
        by_time: dict[float, float] = {}
        for series in result:
            for at, v in series["values"]:
                by_time[at] = by_time.get(at, 0.0) + abs(number(v))
        peak = max(by_time.values())  # of the sum over the series
        last = sum(number(series["values"][-1][1]) for series in result
                   if number(series["values"][-1][0]) >= window_end - 2 * SCRAPE_S)
        seen: dict[str, set[str]] = {}
        for series in result:
            if any(number(v) != 0 for _, v in series["values"]):
                for label, value in series["metric"].items():
                    seen.setdefault(label, set()).add(value)
        shown = ", ".join(f"{label}: {sorted(values)}" for label, values in seen.items()
                          if label in wanted.labels)
        report.append(f"{where}: max {peak:.4g}, last {last:.4g}, {len(result)} series"
                      + (f" ({shown})" if shown else ""))
        if peak == 0 and (title, ref) not in MAY_BE_ZERO:
            problems.append(f"{where}: only zeros for {query}")
        for label, values in wanted.labels.items():
            missing = values - seen.get(label, set())
            if missing:
                problems.append(f"{where}: never non-zero for {label} {sorted(missing)}")
        if wanted.final is not None and last != wanted.final:
            problems.append(f"{where}: ends at {last}, expected {wanted.final}")
    summary = "\n".join(report)
    print(f"\n{summary}\nrun {time.monotonic() - began:.0f} s, Redis down {outage_s:.1f} s, "
          f"{len(view)} posts in view")
    assert not problems, "\n".join(problems) + "\n\nall panels:\n" + summary
