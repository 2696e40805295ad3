"""`eligibility replay LOG --offline --view V --audit A --dlq D`, end to end."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from stream.cli import main
from stream.keys import KEY_ENV, KEY_FILE_ENV

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
WALKTHROUGH = EXAMPLES / "walkthrough.jsonl"
EXPECTED = EXAMPLES / "walkthrough.expected.json"
TEST_KEY = "a test key that is long enough for the pseudonyms"
TS = "2025-06-01T10:00:00Z"


def invoke(*args: str | Path, key: str | None = None) -> Result:
    env = {KEY_ENV: key, KEY_FILE_ENV: None}
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def replay(tmp_path: Path, log: Path, *more: str | Path, key: str | None = None) -> Result:
    return invoke("replay", log, "--offline", "--view", tmp_path / "view.jsonl",
                  "--audit", tmp_path / "audit.jsonl", "--dlq", tmp_path / "dlq.jsonl",
                  *more, key=key)


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(text) for text in path.read_text(encoding="utf-8").splitlines()]


def stderr_lines_without_warning(result: Result) -> list[str]:
    return [s for s in result.stderr.splitlines() if not s.startswith("warning: no ")]


def post_payload(post_id: str, account: str, **changes: Any) -> str:
    value = {"event_id": f"e-{post_id}", "type": "post.created", "ts": TS, "post_id": post_id,
             "account_id": account, "created_at": TS, "kind": "post", "audience": "public",
             "text": "hi", "lang": "en", "surface": "facebook"}
    value.update(changes)
    return json.dumps(value)


def profile_payload(account: str) -> str:
    return json.dumps({"event_id": f"e-{account}", "type": "account.upserted",
                       "ts": "2025-06-01T09:00:00Z", "account_id": account,
                       "birth_date": "1990-01-01", "country": "DE"})


def envelope(topic: str, key: str | None, payload: str | None, offset: int) -> str:
    return json.dumps({"topic": topic, "partition": 0, "offset": offset, "key": key,
                       "payload": payload})


BAD_PAYLOADS = [
    '{"post_id": "b-1", "post_id": "b-2", "type": "post.deleted"}',  # names both posts
    post_payload("b-9", "b")[:-1] + ', "x": NaN}',
    post_payload("b-9", "b")[:-1] + ', "x": "\udcff"}',  # invalid UTF-8, surrogateescaped
    "\ufeff" + post_payload("b-9", "b"),
    "[1, 2]",
]


@pytest.fixture
def bad_log(tmp_path: Path) -> Path:
    """Good events of a and b around bad input: lines the reader cannot use at all,
    and payloads that are dead letters."""
    lines = [
        envelope("accounts", "a", profile_payload("a"), 0),
        envelope("accounts", "b", profile_payload("b"), 1),
        envelope("posts", "a", post_payload("a-1", "a"), 0),
        envelope("posts", "b", post_payload("b-1", "b"), 1),
        envelope("posts", "b", post_payload("b-2", "b"), 2),
        *(envelope("posts", "b", payload, 3 + n) for n, payload in enumerate(BAD_PAYLOADS)),
        "this line is not JSON",
        '{"no": "topic"}',
        envelope("users", "a", post_payload("a-9", "a"), 0),
        envelope("posts", "a", post_payload("a-2", "a"), 20),
    ]
    path = tmp_path / "bad.jsonl"
    path.write_bytes("\n".join(lines).encode("utf-8", "surrogatepass") + b"\n")
    return path


# -- the walkthrough ---------------------------------------------------------------

def test_walkthrough_gives_the_expected_view(tmp_path: Path) -> None:
    result = replay(tmp_path, WALKTHROUGH)
    assert result.exit_code == 0, result.output
    expected = json.loads(EXPECTED.read_text())
    view = jsonl(tmp_path / "view.jsonl")
    assert [record["post_id"] for record in view] == expected["view_post_ids"] == ["p-anna-3"]
    assert len(jsonl(tmp_path / "dlq.jsonl")) == expected["dead_letters"] == 1
    record = view[0]
    assert record["text"] == "wieder da"
    assert record["country"] == "DE"
    assert record["created_at"] == "2025-06-01T08:11:00Z"
    assert record["event_id"] == "sw-0011"
    assert "anna" not in record["author"]


def test_walkthrough_dead_letter_keeps_the_input_unchanged(tmp_path: Path) -> None:
    replay(tmp_path, WALKTHROUGH)
    source = [json.loads(s) for s in WALKTHROUGH.read_text().splitlines()]
    (dead,) = jsonl(tmp_path / "dlq.jsonl")
    original = source[13]  # dora's objection with the unreadable ts
    assert dead["payload"] == original["payload"]
    assert (dead["topic"], dead["key"], dead["partition"], dead["offset"]) == (
        "objections", "dora", 0, 2)
    assert dead["headers"]["error"] == "bad_time"


def test_walkthrough_audit_is_written_and_parses(tmp_path: Path) -> None:
    replay(tmp_path, WALKTHROUGH)
    audits = jsonl(tmp_path / "audit.jsonl")
    assert audits
    assert all(a["policy"] == audits[0]["policy"] for a in audits)
    assert all("source" in a for a in audits)
    outcomes = [a["outcome"] for a in audits]
    assert outcomes.count("published") == 4
    assert outcomes.count("retracted") == 3
    assert outcomes.count("dead_letter") == 1
    lines = [a["source"]["line"] for a in audits]
    assert lines == sorted(lines)  # the order of application can be rebuilt
    text = (tmp_path / "audit.jsonl").read_text()
    for account in ("anna", "ben", "carla", "dora"):
        assert f'"{account}"' not in text  # never the raw account_id


def test_summary_lists_the_counts(tmp_path: Path) -> None:
    result = replay(tmp_path, WALKTHROUGH)
    out = result.stdout

    def count(label: str) -> int:
        match = re.search(rf"^\s*{label}\s+([\d,]+)", out, re.MULTILINE)
        assert match, (label, out)
        return int(match.group(1).replace(",", ""))

    assert count("events read") == 16
    assert count("published") == 4
    assert count("excluded") == 4  # post versions; p-anna-dm has two reasons
    for reason in ("private_conversation", "not_public", "minor", "out_of_region",
                   "quarantined"):
        assert count(reason) == 1
    assert count("retracted") == 3
    assert count("dead letters") == 1
    assert count("bad_time") == 1
    assert re.search(r"^events/s\s+[\d,]+", out, re.MULTILINE)


# -- bad input in the log ---------------------------------------------------------------

def test_bad_input_inside_the_log_exits_0(tmp_path: Path, bad_log: Path) -> None:
    result = replay(tmp_path, bad_log, key=TEST_KEY)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    # a-1 and a-2 stay; b-1 and b-2 are retracted by the first bad payload.
    assert [r["post_id"] for r in jsonl(tmp_path / "view.jsonl")] == ["a-1", "a-2"]
    dead = jsonl(tmp_path / "dlq.jsonl")
    assert len(dead) == len(BAD_PAYLOADS) + 3
    assert [d["headers"]["error"] for d in dead] == [
        "duplicate_key", "invalid_json", "invalid_json", "invalid_json", "not_object",
        "bad_envelope", "bad_envelope", "unknown_topic",
    ]
    assert re.search(r"^dead letters\s+8$", result.stdout, re.MULTILINE)


def test_dead_letter_lines_keep_the_payload_unchanged(tmp_path: Path, bad_log: Path) -> None:
    replay(tmp_path, bad_log, key=TEST_KEY)
    dead = jsonl(tmp_path / "dlq.jsonl")
    assert [d["payload"] for d in dead[: len(BAD_PAYLOADS)]] == BAD_PAYLOADS
    for line in dead:
        assert isinstance(line["headers"]["error"], str) and line["headers"]["error"]
    assert [(d["topic"], d["key"], d["offset"]) for d in dead[:2]] == [
        ("posts", "b", 3), ("posts", "b", 4)]


def test_audit_of_a_bad_log_names_every_dead_letter(tmp_path: Path, bad_log: Path) -> None:
    replay(tmp_path, bad_log, key=TEST_KEY)
    audits = jsonl(tmp_path / "audit.jsonl")
    dead = [a for a in audits if a["outcome"] == "dead_letter"]
    assert len(dead) == len(BAD_PAYLOADS) + 3
    retracted = sorted(a["post_id"] for a in audits if a["outcome"] == "retracted")
    assert retracted == ["b-1", "b-2"]


# -- errors and the pseudonym key ---------------------------------------------------------

def test_missing_log_file_is_a_one_line_error(tmp_path: Path) -> None:
    result = replay(tmp_path, tmp_path / "no-such.jsonl", key=TEST_KEY)
    assert result.exit_code != 0
    assert not isinstance(result.exception, FileNotFoundError)
    assert "Traceback" not in result.output
    (error,) = stderr_lines_without_warning(result)
    assert "no-such.jsonl" in error
    assert result.stdout == ""


def test_missing_log_file_exits_2(tmp_path: Path) -> None:
    result = replay(tmp_path, tmp_path / "no-such.jsonl", key=TEST_KEY)
    assert result.exit_code == 2


def test_missing_log_file_via_the_installed_command(tmp_path: Path) -> None:
    command = Path(sys.executable).parent / "eligibility"
    if not command.exists():
        pytest.skip("the eligibility command is not installed in this environment")
    env = {k: v for k, v in os.environ.items() if k not in (KEY_ENV, KEY_FILE_ENV)}
    env[KEY_ENV] = TEST_KEY
    done = subprocess.run([str(command), "replay", str(tmp_path / "missing.jsonl"),
                           "--offline"], capture_output=True, text=True, env=env, check=False)
    assert done.returncode in (1, 2)
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert done.stdout == ""


def test_dev_key_warning_goes_to_stderr(tmp_path: Path) -> None:
    result = replay(tmp_path, WALKTHROUGH)
    assert result.exit_code == 0
    assert "development key" in result.stderr
    assert "warning" not in result.stdout and "development" not in result.stdout
    authors = {r["author"] for r in jsonl(tmp_path / "view.jsonl")}
    authors |= {a["author"] for a in jsonl(tmp_path / "audit.jsonl") if "author" in a}
    assert authors and all(a.startswith("dev-") for a in authors)


def test_with_a_pseudonym_key_authors_have_no_dev_prefix(tmp_path: Path) -> None:
    result = replay(tmp_path, WALKTHROUGH, key=TEST_KEY)
    assert result.exit_code == 0
    assert "warning" not in result.stderr
    authors = {r["author"] for r in jsonl(tmp_path / "view.jsonl")}
    authors |= {a["author"] for a in jsonl(tmp_path / "audit.jsonl") if "author" in a}
    assert authors
    assert not any(a.startswith("dev-") for a in authors)
    assert all(re.fullmatch(r"[0-9a-f]{32}", a) for a in authors)
    other = replay(tmp_path, WALKTHROUGH, key=TEST_KEY + "!")
    assert other.exit_code == 0
    other_authors = {r["author"] for r in jsonl(tmp_path / "view.jsonl")}
    assert other_authors.isdisjoint(authors)  # keyed: another key, other pseudonyms


def test_without_offline_exits_2_with_a_clear_message(tmp_path: Path) -> None:
    result = invoke("replay", WALKTHROUGH, "--view", tmp_path / "view.jsonl", key=TEST_KEY)
    assert result.exit_code == 2
    assert "--offline" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "view.jsonl").exists()


@pytest.mark.parametrize("content", [
    '{"min_age": "eighteen"}',
    '{"regions": ["de"]}',
    '{"not_before": "yesterday"}',
    '{"surprise": 1}',
    "{not json",
    "[]",
])
def test_invalid_policy_file_exits_1_with_a_one_line_error(tmp_path: Path, content: str) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(content)
    result = replay(tmp_path, WALKTHROUGH, "--policy", policy, key=TEST_KEY)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    (error,) = stderr_lines_without_warning(result)
    assert "policy" in error
    assert result.stdout == ""


def test_missing_policy_file_exits_1(tmp_path: Path) -> None:
    result = replay(tmp_path, WALKTHROUGH, "--policy", tmp_path / "nope.json", key=TEST_KEY)
    assert result.exit_code == 1
    (error,) = stderr_lines_without_warning(result)
    assert "nope.json" in error


def test_valid_policy_file_changes_the_policy_version(tmp_path: Path) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text('{"min_age": 16}')
    default = replay(tmp_path, WALKTHROUGH, key=TEST_KEY)
    assert default.exit_code == 0
    default_version = jsonl(tmp_path / "view.jsonl")[0]["policy"]
    result = replay(tmp_path, WALKTHROUGH, "--policy", policy, key=TEST_KEY)
    assert result.exit_code == 0
    assert jsonl(tmp_path / "view.jsonl")[0]["policy"] != default_version
