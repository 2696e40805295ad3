"""The offline replay's `--state redis://` on the real Redis, through the command line."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from stream.cli import main

pytestmark = pytest.mark.services
EXAMPLES = Path(__file__).parents[2] / "examples"


def replay(tmp: Path, log: Path, redis_url: str, prefix: str, *extra: str) -> tuple[str, list]:
    audit = tmp / f"audit-{uuid.uuid4().hex}.jsonl"
    result = CliRunner().invoke(
        main,
        ["replay", str(log), "--offline", "--state", redis_url, "--state-prefix", prefix,
         "--audit", str(audit), *extra],
        env={"ELIGIBILITY_PSEUDONYM_KEY": "integration-test-key-0123456789"},
    )
    assert result.exit_code == 0, result.output
    return result.stdout, [json.loads(line) for line in audit.read_text().splitlines()]


def test_a_stricter_policy_on_an_existing_redis_state_retracts_first(
    tmp_path: Path, redis_url: str
) -> None:
    prefix = f"it-{uuid.uuid4().hex[:8]}"
    walkthrough = EXAMPLES / "walkthrough.jsonl"
    _, first = replay(tmp_path, walkthrough, redis_url, prefix)
    assert [a["post_id"] for a in first if a["outcome"] == "published"][-1] == "p-dora-1"

    no_germany = tmp_path / "policy.json"
    no_germany.write_text(json.dumps({"regions": ["FR", "IT"]}))
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    summary, second = replay(tmp_path, empty, redis_url, prefix, "--policy", str(no_germany))

    # p-anna-3 (anna is in DE) was the only post left in the view
    assert [(a["record"], a["post_id"], a["reasons"]) for a in second] == [
        ("retraction", "p-anna-3", ["out_of_region"])
    ]
    assert "source" not in second[0]  # a sweep, not an input message
    assert re.search(r"^retracted\s+1$", summary, re.MULTILINE)

    # the same policy again: nothing left to sweep
    _, third = replay(tmp_path, empty, redis_url, prefix, "--policy", str(no_germany))
    assert third == []


def test_two_prefixes_never_share_state(tmp_path: Path, redis_url: str) -> None:
    walkthrough = EXAMPLES / "walkthrough.jsonl"
    one, two = f"it-{uuid.uuid4().hex[:8]}", f"it-{uuid.uuid4().hex[:8]}"
    _, first = replay(tmp_path, walkthrough, redis_url, one)
    _, second = replay(tmp_path, walkthrough, redis_url, two)
    assert first == second  # the second run saw none of the first one's state
