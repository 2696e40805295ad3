"""The Prometheus configuration and alerts in deploy/prometheus/, checked with `promtool`
(Debian's `prometheus` package, installed by deploy/bootstrap.sh) and against
stream/metrics.py.

- `promtool check config` on each prometheus*.yml (it also checks the rule files exist);
- `promtool check rules` on alerts.yml;
- `promtool test rules` on alerts_test.yml (the alerts' unit tests);
- every metric the alerts name is declared by `stream.metrics.create`, so renaming a metric
  fails here, and every alert has a firing and a non-firing unit test.

Without promtool the promtool tests are skipped, except in CI (`CI` set), where they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from stream import metrics

ROOT = Path(__file__).parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERTS_TEST = PROMETHEUS_DIR / "alerts_test.yml"
CONFIGS = sorted(PROMETHEUS_DIR.glob("prometheus*.yml"))
JOB = "eligibility-worker"

# Sample names a metric family exposes, by type (prometheus_client strips `_total` from a
# counter's family name; a labelled metric has no samples before its first `.labels()`).
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "gauge": ("",),
    "info": ("_info",),
}
# Metrics Prometheus itself adds to every target.
_SCRAPE_METRICS = {"up"}
_SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{\[]")
_ELIGIBILITY_NAME = re.compile(r"\beligibility_[a-z0-9_]+\b")
_JOB_MATCHER = re.compile(r"""\bjob\s*=~?\s*"([^"]*)\"""")


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path:
        return path
    msg = "promtool is not installed (apt-get install prometheus, or deploy/bootstrap.sh)"
    if os.environ.get("CI"):
        pytest.fail(f"{msg}; it is required in CI", pytrace=False)
    pytest.skip(msg)


def run_promtool(promtool: str, *args: str) -> None:
    result = subprocess.run(
        [promtool, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, (
        f"promtool {' '.join(args)} exited with {result.returncode}:\n"
        f"{result.stdout}\n{result.stderr}"
    )


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load(ALERTS)["groups"] for rule in group["rules"] if "alert" in rule]


def declared_names() -> tuple[set[str], set[str]]:
    """(sample names, family names) of the worker's metrics, from a fresh registry."""
    registry = CollectorRegistry()
    metrics.create(registry)
    samples: set[str] = set()
    families: set[str] = set()
    for family in registry.collect():
        families.add(family.name)
        samples.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
        samples.update(sample.name for sample in family.samples)
    return samples, families


def test_configs_found() -> None:
    names = {path.name for path in CONFIGS}
    assert {"prometheus.yml", "prometheus.local.yml"} <= names, names


@pytest.mark.parametrize("config", CONFIGS, ids=lambda path: path.name)
def test_promtool_check_config(promtool: str, config: Path) -> None:
    run_promtool(promtool, "check", "config", str(config.relative_to(ROOT)))


def test_promtool_check_rules(promtool: str) -> None:
    run_promtool(promtool, "check", "rules", str(ALERTS.relative_to(ROOT)))


def test_promtool_test_rules(promtool: str) -> None:
    run_promtool(promtool, "test", "rules", str(ALERTS_TEST.relative_to(ROOT)))


def test_alerts_name_only_declared_metrics() -> None:
    """Renaming or dropping a metric in stream/metrics.py must break an alert that uses it
    (an alert on a missing series silently never fires)."""
    declared, families = declared_names()
    assert "eligibility_input_events_total" in declared  # the derivation itself works
    assert "eligibility_objection_honour_seconds_bucket" in declared
    problems = []
    for rule in alert_rules():
        expr = rule["expr"]
        selected = set(_SELECTOR.findall(expr)) | set(_ELIGIBILITY_NAME.findall(expr))
        # The annotations may name a metric family too (a histogram by its base name).
        named = {
            name
            for text in rule.get("annotations", {}).values()
            for name in _ELIGIBILITY_NAME.findall(text)
        }
        unknown = sorted((selected - declared - _SCRAPE_METRICS) | (named - declared - families))
        if unknown:
            problems.append(f"{rule['alert']}: {', '.join(unknown)}")
        if not selected & declared and rule["alert"] not in {
            "EligibilityWorkerDown",
            "EligibilityWorkerAbsent",
        }:
            problems.append(f"{rule['alert']}: selects no eligibility metric")
    assert not problems, "alerts.yml names metrics stream/metrics.py does not declare:\n" + (
        "\n".join(problems)
    )


def test_alerts_select_the_scraped_job() -> None:
    """The alerts' job="..." matchers name the job every Prometheus config scrapes."""
    for config in CONFIGS:
        jobs = {job["job_name"] for job in load(config)["scrape_configs"]}
        assert JOB in jobs, f"{config.name}: scrape jobs {jobs}"
        assert load(config)["rule_files"] == ["alerts.yml"], config.name
    for rule in alert_rules():
        assert set(_JOB_MATCHER.findall(rule["expr"])) == {JOB}, rule["alert"]


def test_every_alert_has_firing_and_quiet_unit_tests() -> None:
    alerts = {rule["alert"] for rule in alert_rules()}
    firing: set[str] = set()
    quiet: set[str] = set()
    for test in load(ALERTS_TEST)["tests"]:
        for case in test.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    assert load(ALERTS_TEST)["rule_files"] == ["alerts.yml"]
    assert not alerts - firing, f"alerts with no test that fires them: {sorted(alerts - firing)}"
    assert not alerts - quiet, f"alerts with no test that must not fire: {sorted(alerts - quiet)}"
    assert not (firing | quiet) - alerts, f"tests of unknown alerts: {(firing | quiet) - alerts}"
