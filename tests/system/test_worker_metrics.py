"""The worker's /metrics after a replayed log: every figure agrees with what it published."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from stream.eventlog import read_messages
from tests.system.conftest import Deployment

EXAMPLES = Path(__file__).parents[2] / "examples"


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(samples: dict, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def test_metrics_after_the_walkthrough(deployment: Deployment) -> None:
    worker = deployment.start_worker()
    deployment.wait_assigned(worker)
    with (EXAMPLES / "walkthrough.jsonl").open("rb") as log:
        deployment.produce(list(read_messages(log)))
    deployment.wait_caught_up()
    view = deployment.check()
    audit = deployment.audit()
    time.sleep(6)  # the lag gauge is refreshed every 5 s

    samples = scrape(worker.web_port)
    assert total(samples, "eligibility_input_events_total") == 16
    assert total(samples, "eligibility_input_events_total", topic="objections") == 4
    assert total(samples, "eligibility_dead_letters_total", reason="bad_time") == 1
    published = sum(1 for a in audit if a["outcome"] == "published")
    assert total(samples, "eligibility_decisions_total", outcome="published") == published
    retracted = sum(1 for a in audit if a["outcome"] == "retracted")
    assert total(samples, "eligibility_retractions_total") == retracted
    assert total(samples, "eligibility_exclusion_reasons_total", reason="minor") == 1
    # anna's and dora's valid objection.filed each changed state
    assert total(samples, "eligibility_objection_honour_seconds_count") == 2
    assert total(samples, "eligibility_publication_latency_seconds_count") == published
    assert total(samples, "eligibility_posts_in_view") == len(view)
    assert total(samples, "eligibility_objected_accounts") == 1  # dora (anna withdrew)
    assert total(samples, "eligibility_minor_accounts") == 1  # ben
    assert total(samples, "eligibility_quarantined_accounts") == 0  # dora's was lifted
    assert total(samples, "eligibility_consumer_lag") == 0
    assert total(samples, "eligibility_assigned_partitions") == deployment.partitions
    assert total(samples, "eligibility_paused") == 0
    assert total(samples, "eligibility_redis_seconds_count") > 0
    assert total(samples, "eligibility_batch_seconds_count") >= 1
    assert total(samples, "eligibility_policy_info") == 1
