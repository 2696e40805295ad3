"""The contract in `topics/`: schemas, examples and topic settings agree with the code.

One parametrized test validates every example message twice: against its JSON
Schema (what producers and consumers in other languages check) and with the
real decoder (what the filter does). The topic files' numbers are checked
against each other: what the filter accepts fits where it has to go.
"""

from __future__ import annotations

import json
import sys
from functools import cache
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml
from jsonschema import Draft202012Validator

from stream.contract import SCHEMA_DIR, check, event_tag, schema_file, schemas
from stream.core.decode import DeadLetter, DeadReason, Decoded, Decoder, Message
from stream.core.engine import Engine, Publish
from stream.core.events import INPUT_TOPICS, MAX_ID_CHARS, TOPIC_EVENTS
from stream.core.policy import DEFAULT_POLICY
from stream.core.pseudonym import Pseudonymizer
from stream.core.records import AuditRecord, TrainingRecord
from stream.core.times import parse_time
from stream.store.memory import MemoryStore

TOPICS = Path(__file__).resolve().parents[2] / "topics"
EXAMPLES = TOPICS / "examples"
SPEC_TOPICS = {
    "posts",
    "objections",
    "accounts",
    "training-ready",
    "eligibility-audit",
    "eligibility-dlq",
}
INTERNAL_TOPICS = {"eligibility-state"}  # the worker's changelog, outside the SPEC's contract
OUTPUT_RECORDS: dict[str, type[msgspec.Struct]] = {
    "training-ready": TrainingRecord,
    "eligibility-audit": AuditRecord,
}
# A fixed processing time after every example's times, so the examples do not
# age into future_time; the future_time examples are in 2999.
NOW_US = parse_time("2030-01-01T00:00:00Z")
SEVEN_DAYS_MS = 7 * 24 * 3600 * 1000

# Invalid inputs that JSON Schema cannot tell from valid ones; the test checks
# that the schema does accept them, so this list stays exact.
SCHEMA_BLIND = {
    # a JSON parser keeps one copy of a repeated key
    "posts/duplicate_key-audience.json": "repeated keys",
    "posts/duplicate_key-nested.json": "repeated keys",
    "objections/duplicate_key-type.json": "repeated keys",
    "accounts/duplicate_key-country.json": "repeated keys",
    # calendar and clock facts, not layout
    "posts/bad_time-ts-leap-second.json": "second 60",
    "posts/bad_time-created_at-feb-30.json": "30 February",
    "posts/bad_time-ts-offset-24h.json": "offset hour 24",
    "posts/future_time-created_at.json": "depends on the processing time",
    "objections/future_time-ts.json": "depends on the processing time",
    "accounts/future_time-ts.json": "depends on the processing time",
    # the key is not part of the value
    "posts/key_mismatch.json": "key",
    "posts/key_missing.json": "key",
    "objections/key_mismatch.json": "key",
    # extra fields are free, so their depth is too
    "posts/too_deep.json": "depth",
    "accounts/too_deep.json": "depth",
}
# Examples the decoder gets wrong today, by name with the reason (strict xfail:
# the test fails once the decoder is fixed, to take the entry out).
KNOWN_DECODER_BUGS: dict[str, str] = {}


class FixedClock:
    def now_us(self) -> int:
        return NOW_US


@cache
def topic_files() -> dict[str, dict[str, Any]]:
    return {
        path.stem: yaml.safe_load(path.read_text(encoding="utf-8"))
        for path in sorted(TOPICS.glob("*.yaml"))
    }


def config(topic: str, name: str) -> int:
    return int(topic_files()[topic]["topic_creation_config"]["config"][name])


def sizing(topic: str) -> dict[str, float]:
    return topic_files()[topic]["sizing"]  # type: ignore[no-any-return]


def max_bytes(topic: str) -> int:
    return config(topic, "max.message.bytes")


@cache
def validator(name: str) -> Draft202012Validator:
    schema = json.loads((TOPICS / SCHEMA_DIR / name).read_text(encoding="utf-8"))
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _refuse(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")


def strict_json(raw: bytes) -> Any:
    """RFC 8259 JSON in UTF-8 as the contract reads it: no NaN or Infinity, no
    BOM, no lone surrogates (1e400 and big integers are valid JSON)."""
    value = json.loads(raw.decode("utf-8"), parse_constant=_refuse)  # a BOM fails here
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, str):
            item.encode("utf-8")  # lone surrogates fail here
        elif isinstance(item, dict):
            todo.extend(item)
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
    return value


def schema_errors(name: str, raw: bytes) -> list[str]:
    """What the schema says of a message value read as strict JSON."""
    try:
        instance = strict_json(raw)
    except (ValueError, RecursionError) as exc:
        return [f"not JSON: {exc}"]
    return [error.message for error in validator(name).iter_errors(instance)]


def decode(topic: str, key: str | None, raw: bytes) -> Decoded | DeadLetter:
    return Decoder(DEFAULT_POLICY).decode(Message(topic, key, raw), NOW_US)


def rel(path: Path, start: Path) -> str:
    return path.relative_to(start).as_posix()


VALID = sorted(
    path for path in EXAMPLES.glob("*/*/*.json") if path.relative_to(EXAMPLES).parts[0] != "invalid"
)
INVALID = sorted((EXAMPLES / "invalid").glob("*/*.json"))


# -- examples ------------------------------------------------------------------


@pytest.mark.parametrize("path", VALID, ids=lambda p: rel(p, EXAMPLES))
def test_valid_example(path: Path) -> None:
    topic, kind = path.parent.parent.name, path.parent.name
    raw = path.read_bytes()
    resource = topic_files()[topic]["schemas"][0]["resource"]
    assert schema_errors(resource, raw) == []
    if topic in TOPIC_EVENTS:
        assert schema_errors(schema_file(kind), raw) == []
        decoded = decode(topic, strict_json(raw)["account_id"], raw)
        assert isinstance(decoded, Decoded), decoded
        assert event_tag(type(decoded.event)) == kind
    else:
        record = msgspec.json.decode(raw, type=OUTPUT_RECORDS[topic])
        if isinstance(record, AuditRecord):
            assert record.record == kind


def _invalid_params() -> list[Any]:
    params = []
    for path in INVALID:
        name = rel(path, EXAMPLES / "invalid")
        marks = []
        if name in KNOWN_DECODER_BUGS:
            marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_DECODER_BUGS[name]))
        params.append(pytest.param(path, id=name, marks=marks))
    return params


@pytest.mark.parametrize("path", _invalid_params())
def test_invalid_example(path: Path) -> None:
    """The file name says the dead-letter reason: `<reason>[-<what>].json`."""
    topic, name = path.parent.name, rel(path, EXAMPLES / "invalid")
    reason = path.stem.split("-")[0]
    assert reason in {r.value for r in DeadReason}, f"{name}: no such reason {reason!r}"
    raw = path.read_bytes()
    account_id = _lenient_account_id(raw)
    key = {"key_missing": None, "key_mismatch": f"not-{account_id}"}.get(reason, account_id)
    result = decode(topic, key, raw)
    assert isinstance(result, DeadLetter), result
    assert result.reason == reason, result
    errors = schema_errors(topic_files()[topic]["schemas"][0]["resource"], raw)
    if name in SCHEMA_BLIND:
        assert errors == [], f"the schema rejects {name} now: take it off SCHEMA_BLIND"
    else:
        assert errors, f"the schema accepts {name}"


def _lenient_account_id(raw: bytes) -> str:
    try:
        value = json.loads(raw)
    except ValueError:
        return "acct-42"
    account_id = value.get("account_id") if isinstance(value, dict) else None
    return account_id if isinstance(account_id, str) else "acct-42"


def test_examples_cover_the_contract() -> None:
    by_dir: dict[tuple[str, str], int] = {}
    for path in VALID:
        key = (path.parent.parent.name, path.parent.name)
        by_dir[key] = by_dir.get(key, 0) + 1
    for topic, structs in TOPIC_EVENTS.items():
        for struct in structs:
            assert by_dir.get((topic, event_tag(struct)), 0) >= 2, (topic, event_tag(struct))
    assert by_dir.get(("training-ready", "training-record"), 0) >= 2
    for kind in ("post", "retraction", "account", "dead_letter"):
        assert by_dir.get(("eligibility-audit", kind), 0) >= 1, kind
    assert set(by_dir) <= {
        *((t, event_tag(s)) for t, ss in TOPIC_EVENTS.items() for s in ss),
        ("training-ready", "training-record"),
        *(("eligibility-audit", k) for k in ("post", "retraction", "account", "dead_letter")),
    }
    assert {path.parent.name for path in INVALID} == set(INPUT_TOPICS)
    assert set(KNOWN_DECODER_BUGS) <= {rel(p, EXAMPLES / "invalid") for p in INVALID}
    assert set(SCHEMA_BLIND) <= {rel(p, EXAMPLES / "invalid") for p in INVALID}


# -- schemas -------------------------------------------------------------------


def test_schemas_have_not_drifted_from_the_structs() -> None:
    assert check(TOPICS) == [], "run `python -m stream.contract generate`"


@pytest.mark.parametrize("name", sorted(schemas()))
def test_schema_is_valid_draft_2020_12(name: str) -> None:
    schema = schemas()[name]
    Draft202012Validator.check_schema(schema)
    assert schema["$id"].endswith("/" + name)
    assert schema["title"] and schema["description"]


# -- topic settings --------------------------------------------------------------


def test_topic_files_are_the_spec_topics() -> None:
    assert set(topic_files()) == SPEC_TOPICS | INTERNAL_TOPICS
    for stem, topic in topic_files().items():
        assert topic["topic"] == stem
        assert topic["description"] and topic["key"]["what"] and topic["key"]["encoding"]
        assert topic["services"]["producers"]


def test_topic_files_name_existing_schemas_and_examples() -> None:
    named = set()
    for topic in topic_files().values():
        for version in topic["schemas"]:
            named.add(version["resource"])
            named.update(version.get("event_types", {}).values())
            for folder in version["examples"] + version.get("invalid_examples", []):
                assert (EXAMPLES / folder).is_dir(), folder
    present = {path.name for path in (TOPICS / SCHEMA_DIR).glob("*.json")}
    assert named <= present
    assert present - named == {schema_file("policy")}  # the policy file is no topic


def test_input_topics_are_co_partitioned() -> None:
    inputs = {t for t, f in topic_files().items() if "event_types" in f["schemas"][0]}
    assert inputs == set(INPUT_TOPICS)
    partitions = {topic_files()[t]["topic_creation_config"]["num_partitions"] for t in inputs}
    assert len(partitions) == 1, partitions
    for t in inputs:
        producer = topic_files()[t]["client_config"]["producer"]["librdkafka"]
        assert producer["partitioner"] == "murmur2_random"  # one partitioner for all producers


def test_the_state_changelog_is_compacted_and_co_partitioned() -> None:
    state = topic_files()["eligibility-state"]["topic_creation_config"]
    assert state["config"]["cleanup.policy"] == "compact"
    assert config("eligibility-state", "delete.retention.ms") >= SEVEN_DAYS_MS
    posts = topic_files()["posts"]["topic_creation_config"]["num_partitions"]
    assert state["num_partitions"] == posts


def test_retention_and_compaction() -> None:
    assert (
        topic_files()["training-ready"]["topic_creation_config"]["config"]["cleanup.policy"]
        == "compact"
    )
    assert config("training-ready", "delete.retention.ms") >= SEVEN_DAYS_MS
    lag_min = config("training-ready", "min.compaction.lag.ms")
    lag_max = config("training-ready", "max.compaction.lag.ms")
    assert 0 < lag_min <= lag_max <= config("training-ready", "delete.retention.ms")
    for topic in ("eligibility-audit", "eligibility-dlq"):
        assert topic_files()[topic]["topic_creation_config"]["config"]["cleanup.policy"] == "delete"
    assert config("eligibility-dlq", "retention.ms") <= SEVEN_DAYS_MS
    assert config("eligibility-dlq", "retention.ms") < config("eligibility-audit", "retention.ms")
    assert topic_files()["eligibility-dlq"]["access"]["acls"]


def test_dlq_headers_name_every_reason() -> None:
    headers = topic_files()["eligibility-dlq"]["headers"]
    assert {"source_topic", "source_partition", "source_offset", "error", "detail"} <= set(headers)
    named = {word.strip(" ,;()") for word in headers["error"].split()}
    assert {reason.value for reason in DeadReason} <= named


# -- sizes: every number from the topic files -------------------------------------


def _record_bytes(topic: str, *parts: float) -> float:
    s = sizing(topic)
    return (sum(parts) + s["record_overhead_bytes"]) * s["compression_expansion_max_ratio"]


def test_input_topics_take_every_accepted_value_and_some_more() -> None:
    for topic in INPUT_TOPICS:
        s = sizing(topic)
        accepted = s["accepted_value_max_bytes"]
        assert accepted == DEFAULT_POLICY.max_message_bytes
        assert s["key_max_bytes"] >= 4 * MAX_ID_CHARS
        framing = (s["key_max_bytes"], s["headers_max_bytes"])
        assert _record_bytes(topic, accepted, *framing) <= max_bytes(topic)
        # values somewhat over the filter's limit still reach it, to be dead-lettered
        assert _record_bytes(topic, accepted + 65_536, *framing) <= max_bytes(topic)


def test_training_records_fit_training_ready() -> None:
    s = sizing("training-ready")
    assert s["value_from_input_max_bytes"] >= sizing("posts")["accepted_value_max_bytes"]
    assert s["fixed_overhead_bytes"] >= _training_record_fixed_overhead()
    assert s["key_max_bytes"] >= 4 * MAX_ID_CHARS
    parts = ("value_from_input_max_bytes", "fixed_overhead_bytes", "key_max_bytes")
    total = _record_bytes("training-ready", *(s[p] for p in parts), s["headers_max_bytes"])
    assert total <= max_bytes("training-ready")


def test_audit_records_fit_eligibility_audit() -> None:
    s = sizing("eligibility-audit")
    assert s["accepted_value_max_bytes"] == sizing("posts")["accepted_value_max_bytes"]
    bound = s["detail_growth_max_ratio"] * s["accepted_value_max_bytes"] + s["fixed_overhead_bytes"]
    assert s["key_and_value_max_bytes"] >= bound
    total = _record_bytes("eligibility-audit", s["key_and_value_max_bytes"], s["headers_max_bytes"])
    assert total <= max_bytes("eligibility-audit")


def test_dead_letters_fit_eligibility_dlq() -> None:
    s = sizing("eligibility-dlq")
    assert s["source_key_and_value_max_bytes"] >= max(max_bytes(t) for t in INPUT_TOPICS)
    assert s["accepted_value_max_bytes"] == sizing("posts")["accepted_value_max_bytes"]
    detail = s["detail_growth_max_ratio"] * s["accepted_value_max_bytes"]
    total = _record_bytes(
        "eligibility-dlq", s["source_key_and_value_max_bytes"], detail, s["headers_fixed_max_bytes"]
    )
    assert total <= max_bytes("eligibility-dlq")


def test_client_config_takes_the_largest_records() -> None:
    outputs = (SPEC_TOPICS - set(INPUT_TOPICS)) | INTERNAL_TOPICS
    largest_output = max(max_bytes(t) for t in outputs)
    for name, topic in topic_files().items():
        consumer = topic["client_config"]["consumer"]["librdkafka"]
        assert consumer["max.partition.fetch.bytes"] >= max_bytes(name)
        assert consumer["fetch.max.bytes"] >= consumer["max.partition.fetch.bytes"]
        assert consumer["receive.message.max.bytes"] >= consumer["fetch.max.bytes"] + 512
        producer = topic["client_config"]["producer"]
        if name in outputs:  # the filter's one producer writes every output topic
            assert producer["librdkafka"]["message.max.bytes"] >= largest_output
            assert producer["faust"]["producer_max_request_size"] >= largest_output
        else:
            assert producer["librdkafka"]["message.max.bytes"] >= max_bytes(name)
            assert topic["client_config"]["consumer"]["faust"]["consumer_max_fetch_size"] >= (
                max_bytes(name)
            )


# -- the claims behind the numbers ---------------------------------------------------


def _shortest_json_string_bytes(char: str) -> int:
    if char in '"\\\b\f\n\r\t':
        return 2
    if char < " ":
        return 6
    return len(char.encode("utf-8"))


def test_output_strings_never_grow() -> None:
    """msgspec writes every code point in its shortest JSON form, so a copied
    string is never longer in a record than in the input that carried it."""
    longer = [
        hex(code)
        for code in range(sys.maxunicode + 1)
        if not 0xD800 <= code <= 0xDFFF
        and len(msgspec.json.encode(chr(code))) - 2 != _shortest_json_string_bytes(chr(code))
    ]
    assert longer == []


def _training_record_fixed_overhead() -> int:
    """A record's bytes that no input string pays for: key names, punctuation,
    the largest author, country, created_at and policy, nulls for absent options."""
    record = TrainingRecord(
        post_id="",
        author="dev-" + "f" * 32,
        text="",
        lang=None,
        kind="",
        surface=None,
        country="DE",
        created_at="2025-05-27T10:00:00.123456Z",
        policy=DEFAULT_POLICY.version,
        event_id="",
    )
    copied_quotes = 2 * 4  # post_id, text, kind, event_id: their quotes are in the input
    return len(msgspec.json.encode(record)) - copied_quotes


def _engine() -> tuple[Engine, MemoryStore]:
    return Engine(DEFAULT_POLICY, Pseudonymizer.development(), FixedClock()), MemoryStore()


def _post(size: int, **fields: Any) -> bytes:
    """A post.created value of exactly `size` bytes (text padded with escapes
    that msgspec writes back as long as they came)."""
    value = {
        "type": "post.created",
        "event_id": "😀" * MAX_ID_CHARS,
        "ts": "2025-05-27T10:00:00Z",
        "post_id": "𝔭" * MAX_ID_CHARS,
        "account_id": "acct-1",
        "created_at": "2025-05-27T10:00:00Z",
        "kind": "comment",
        "audience": "public",
        "text": "",
        **fields,
    }
    raw = json.dumps(value, ensure_ascii=False).encode()
    room = size - len(raw)
    padded = value["text"] + "\x01" * (room // 6) + "a" * (room % 6)
    raw = json.dumps({**value, "text": padded}, ensure_ascii=False).encode()
    assert len(raw) == size
    return raw


def test_largest_accepted_post_fits_training_ready() -> None:
    accepted = int(sizing("posts")["accepted_value_max_bytes"])
    engine, store = _engine()
    profile = {
        "type": "account.upserted",
        "event_id": "e",
        "ts": "2025-01-01T00:00:00Z",
        "account_id": "acct-1",
        "birth_date": "1990-01-01",
        "country": "DE",
    }
    engine.apply(Message("accounts", "acct-1", json.dumps(profile).encode()), store)
    raw = _post(accepted)
    outcome = engine.apply(Message("posts", "acct-1", raw), store)
    [publish] = [c for c in outcome.changes if isinstance(c, Publish)]
    value = msgspec.json.encode(publish.record)
    s = sizing("training-ready")
    assert len(value) <= s["value_from_input_max_bytes"] + s["fixed_overhead_bytes"]
    assert len(publish.post_id.encode()) <= s["key_max_bytes"]
    over = decode("posts", "acct-1", _post(accepted + 1))
    assert isinstance(over, DeadLetter) and over.reason == DeadReason.TOO_LARGE


@pytest.mark.parametrize(
    "chars",
    ["\"'", "\\", "\U000e0001", "\x85", "\u200b"],
    ids=["quote", "backslash", "astral-unassigned", "c1-control", "format-char"],
)
def test_dead_letter_detail_growth(chars: str) -> None:
    """A detail quotes the bad value with repr(): within the ratios the topic files assume."""
    field = chars[0] + chars[-1] * 5_000
    raw = _post(60_000, audience=field)
    field_bytes = len(json.dumps(field, ensure_ascii=False).encode())
    dead = decode("posts", "acct-1", raw)
    assert isinstance(dead, DeadLetter) and dead.reason == DeadReason.BAD_VALUE
    slack = 256
    assert len(dead.detail.encode()) <= (
        sizing("eligibility-dlq")["detail_growth_max_ratio"] * field_bytes + slack
    )
    assert len(msgspec.json.encode(dead.detail)) <= (
        sizing("eligibility-audit")["detail_growth_max_ratio"] * field_bytes + slack
    )


@pytest.mark.parametrize("heavy", ["post_id", "detail"])
def test_largest_dead_letter_audit_fits(heavy: str) -> None:
    """The audit record of a dead letter carries the named post_id (also its
    key) and the detail: key + value within the audit topic's budget."""
    accepted = int(sizing("posts")["accepted_value_max_bytes"])
    room = accepted - 400
    if heavy == "post_id":
        fields = {"audience": "Public", "post_id": "p" * room}
    else:
        fields = {"audience": '"' + "'" * (room - 3)}
    value = {
        "type": "post.created",
        "event_id": "e",
        "ts": "2025-05-27T10:00:00Z",
        "post_id": "p",
        "account_id": "acct-1",
        "created_at": "2025-05-27T10:00:00Z",
        "kind": "comment",
        "text": "",
        **fields,
    }
    raw = json.dumps(value, ensure_ascii=False).encode()
    assert len(raw) <= accepted
    engine, store = _engine()
    outcome = engine.apply(Message("posts", "acct-1", raw), store)
    [audit] = outcome.audits
    assert audit.record == "dead_letter"
    key = audit.key.encode() if audit.key is not None else b""
    total = len(key) + len(msgspec.json.encode(audit))
    assert total <= sizing("eligibility-audit")["key_and_value_max_bytes"]
