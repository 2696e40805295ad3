"""The Grafana dashboard and its provisioning in deploy/grafana/, checked as data.

- the dashboard JSON loads; every panel has a unique id and a gridPos inside the 24
  columns, and no two panels overlap;
- every panel, target and template variable uses the provisioned Prometheus datasource uid;
- every metric a query names is declared by `stream.metrics.create` (with the sample
  suffixes Prometheus sees: `_total`, `_bucket`, `_count`, `_sum`), and every label a
  query matches or groups by is one those metrics carry;
- the provisioning files parse, the datasource is Prometheus, and the dashboard provider
  points at the folder the dashboard ships in.

The system test (tests/system/test_dashboard.py) runs every query against a real
Prometheus scraping a real worker.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from stream import metrics

ROOT = Path(__file__).parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
DASHBOARD = DASHBOARDS / "eligibility-filter.json"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "eligibility.yml"
COLUMNS = 24

# Sample names a family exposes, by type (prometheus_client strips `_total` from a
# counter's family name).
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
}
# What Prometheus adds: the `up` series of every target, and its target labels.
SCRAPE_METRICS = {"up": {"job", "instance"}}
TARGET_LABELS = {"job", "instance"}

_PROMQL_WORDS = {
    # aggregations, functions and keywords a dashboard query may use
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group", "by", "without", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "bool", "offset", "rate", "irate", "increase", "delta", "idelta",
    "deriv", "histogram_quantile", "abs", "clamp_min", "clamp_max", "vector", "scalar",
    "time", "max_over_time", "min_over_time", "avg_over_time", "sum_over_time", "changes",
    "resets", "absent", "label_replace", "round", "inf", "nan",
}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{([^}]*)\}")
_MATCHER_LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_RANGE = re.compile(r"\[[^\]]*\]")
_IDENT = re.compile(r"(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()")
_NUMBER = re.compile(r"^\d")


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows too."""
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def declared() -> dict[str, set[str]]:
    """Sample name -> label names, for every metric of stream/metrics.py."""
    registry = CollectorRegistry()
    created = metrics.create(registry)
    labels: dict[str, set[str]] = {}
    by_family = {}
    for field in created.__dataclass_fields__:
        collector = getattr(created, field)
        by_family[collector._name] = set(collector._labelnames)
    for family in registry.collect():
        own = by_family[family.name]
        for suffix in _SUFFIXES[family.type]:
            labels[family.name + suffix] = own | ({"le"} if suffix == "_bucket" else set())
    return labels


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _RANGE.sub(" ", text)
    return {
        name for name in _IDENT.findall(text)
        if name.lower() not in _PROMQL_WORDS and not _NUMBER.match(name)
    }


def label_names(expr: str) -> set[str]:
    """Labels an expression matches on or groups by."""
    text = _STRING.sub('""', expr)
    found: set[str] = set()
    for matchers in _MATCHERS.findall(text):
        found.update(_MATCHER_LABEL.findall(matchers))
    for grouping in _GROUPING.findall(text):
        found.update(label.strip() for label in grouping.split(",") if label.strip())
    return found


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return load_json(DASHBOARD)


@pytest.fixture(scope="module")
def datasource_uid() -> str:
    sources = load_yaml(DATASOURCES)["datasources"]
    (prometheus,) = [s for s in sources if s["type"] == "prometheus"]
    return str(prometheus["uid"])


def test_the_dashboard_loads(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "eligibility-filter"
    assert dashboard["title"]
    assert 36 <= dashboard["schemaVersion"] <= 41  # Grafana 10 and 11
    assert dashboard.get("id") is None  # provisioned: Grafana assigns it
    panels = [p for p in all_panels(dashboard["panels"]) if p["type"] != "row"]
    assert len(panels) >= 15
    assert {p["type"] for p in panels} <= {"timeseries", "stat"}


def test_panel_ids_are_unique(dashboard: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in all_panels(dashboard["panels"])]
    assert all(isinstance(i, int) and i > 0 for i in ids), ids
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


def test_panels_fit_the_grid_and_never_overlap(dashboard: dict[str, Any]) -> None:
    boxes = []
    for panel in all_panels(dashboard["panels"]):
        pos = panel["gridPos"]
        x, y, w, h = pos["x"], pos["y"], pos["w"], pos["h"]
        assert all(isinstance(v, int) for v in (x, y, w, h)), panel["title"]
        assert x >= 0 and y >= 0 and w >= 1 and h >= 1, panel["title"]
        assert x + w <= COLUMNS, f"{panel['title']}: {pos} is wider than {COLUMNS} columns"
        boxes.append((panel["title"], x, y, w, h))
    for i, (a, ax, ay, aw, ah) in enumerate(boxes):
        for b, bx, by, bw, bh in boxes[i + 1:]:
            apart = ax + aw <= bx or bx + bw <= ax or ay + ah <= by or by + bh <= ay
            assert apart, f"panels {a!r} and {b!r} overlap"


def test_every_panel_and_target_uses_the_provisioned_datasource(
    dashboard: dict[str, Any], datasource_uid: str
) -> None:
    problems = []
    for panel in all_panels(dashboard["panels"]):
        if panel["type"] == "row":
            assert not panel.get("targets"), panel["title"]
            continue
        if panel.get("datasource", {}).get("uid") != datasource_uid:
            problems.append(f"{panel['title']}: panel datasource {panel.get('datasource')}")
        if not panel.get("targets"):
            problems.append(f"{panel['title']}: no target")
        refs = [t["refId"] for t in panel.get("targets", [])]
        if len(refs) != len(set(refs)):
            problems.append(f"{panel['title']}: refIds {refs} repeat")
        for target in panel.get("targets", []):
            source = target.get("datasource") or {}
            if source.get("uid") != datasource_uid or source.get("type") != "prometheus":
                problems.append(f"{panel['title']} {target['refId']}: datasource {source}")
            if not target.get("expr", "").strip():
                problems.append(f"{panel['title']} {target['refId']}: no expr")
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable["type"] == "query" and variable["datasource"]["uid"] != datasource_uid:
            problems.append(f"variable {variable['name']}: datasource {variable['datasource']}")
    assert not problems, "\n".join(problems)


def test_the_parser_of_this_test() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le) (rate(eligibility_batch_seconds_bucket'
        '{instance=~"$instance"}[$__rate_interval]))) + up{job="x"} * 2'
    )
    assert metric_names(expr) == {"eligibility_batch_seconds_bucket", "up"}
    assert label_names(expr) == {"le", "instance", "job"}
    known = declared()
    assert "eligibility_input_events_total" in known
    assert known["eligibility_objection_honour_seconds_bucket"] == {"le"}
    assert known["eligibility_consumer_lag"] == {"topic", "partition"}


def test_queries_name_only_declared_metrics_and_labels(dashboard: dict[str, Any]) -> None:
    """Renaming a metric or a label in stream/metrics.py must break the panel that shows
    it (a query of a missing series draws an empty panel, silently)."""
    known = declared()
    problems = []
    for panel in all_panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            where = f"{panel['title']} {target['refId']}"
            expr = target["expr"]
            names = metric_names(expr)
            if not names:
                problems.append(f"{where}: selects no metric")
            unknown = names - set(known) - set(SCRAPE_METRICS)
            if unknown:
                problems.append(f"{where}: unknown metrics {sorted(unknown)}")
            labels = set(TARGET_LABELS)
            for name in names:
                labels |= known.get(name, set()) | SCRAPE_METRICS.get(name, set())
            stray = label_names(expr) - labels
            if stray:
                problems.append(f"{where}: labels {sorted(stray)} on none of {sorted(names)}")
    assert not problems, "\n".join(problems)


def test_every_declared_metric_family_of_the_brief_is_shown(dashboard: dict[str, Any]) -> None:
    """The operator's questions each have a panel (skipped/forwarded records and the
    `_created` samples aside)."""
    shown = {
        name
        for panel in all_panels(dashboard["panels"])
        for target in panel.get("targets", [])
        for name in metric_names(target["expr"])
    }
    wanted = {name for name in declared() if not name.endswith("_created")} - {
        "eligibility_records_skipped_total",
        "eligibility_records_forwarded_total",
    }
    # a histogram is shown by its buckets
    wanted = {n for n in wanted if not n.endswith(("_count", "_sum"))}
    assert wanted <= shown, sorted(wanted - shown)
    assert "up" in shown


def test_the_datasource_provisioning() -> None:
    config = load_yaml(DATASOURCES)
    assert config["apiVersion"] == 1
    (source,) = config["datasources"]
    assert source["type"] == "prometheus"
    assert source["uid"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert source["access"] == "proxy"


def test_the_dashboard_provider_points_at_the_dashboard_folder() -> None:
    config = load_yaml(PROVIDERS)
    assert config["apiVersion"] == 1
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    path = PurePosixPath(provider["options"]["path"])
    assert path.is_absolute()
    assert path in {
        PurePosixPath("/var/lib/grafana/dashboards"),
        PurePosixPath("/etc/grafana/dashboards"),
    }
    # the folder mounted there is the one the dashboard ships in, and the file names it
    assert path.name == DASHBOARDS.name
    assert DASHBOARD.parent == DASHBOARDS
    text = PROVIDERS.read_text(encoding="utf-8")
    assert f"deploy/grafana/dashboards   -> {path}" in text
    assert sorted(p.name for p in DASHBOARDS.glob("*.json")) == [DASHBOARD.name]
