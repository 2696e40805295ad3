"""The contract's JSON Schemas, generated from the structs that decode the messages.

`stream/core/events.py` and `stream/core/records.py` are the single source of
truth; `topics/schemas/` holds what this module makes of them, for producers
and consumers that do not run Python:

- one schema per input topic: the union of its event types, tagged by `type`;
- one per input event type;
- one per output record (training record, audit record) and one for the DLQ
  value (any bytes: the input unchanged);
- one for the policy file.

The files are generated, never edited by hand:

    python -m stream.contract generate   # (re)write topics/schemas/
    python -m stream.contract check      # exit 1 and list the files that drifted
"""

from __future__ import annotations

import argparse
import functools
import json
import operator
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import msgspec

from stream.core.events import TOPIC_EVENTS
from stream.core.policy import Policy
from stream.core.records import AuditRecord, TrainingRecord

DRAFT: Final = "https://json-schema.org/draft/2020-12/schema"
BASE_ID: Final = "https://eligibility-filter.example/topics/schemas/"
VERSION: Final = 1
SCHEMA_DIR: Final = "schemas"
TOPICS_DIR: Final = Path(__file__).resolve().parent.parent / "topics"

Schema = dict[str, Any]

_TOPIC_DESCRIPTIONS: Final = {
    "posts": "A message value of the `posts` topic (key: the account_id, UTF-8): one post "
    "event, told apart by `type`. Unknown extra fields are allowed and ignored.",
    "objections": "A message value of the `objections` topic (key: the account_id, UTF-8): "
    "an objection (GDPR Art. 21) filed or withdrawn, told apart by `type`.",
    "accounts": "A message value of the `accounts` topic (key: the account_id, UTF-8): a "
    "profile or an account deletion, told apart by `type`.",
}

_EVENT_DESCRIPTIONS: Final = {
    "post.created": "A new post, comment, caption or message, with its whole first version.",
    "post.updated": "A new version of a post: carries the whole version, not a patch.",
    "post.deleted": "The post is deleted: final, later events of the post are ignored.",
    "objection.filed": "The account objects to the use of its content for AI training "
    "(GDPR Art. 21); the latest objection.* event by `ts` decides, `filed` wins a tie.",
    "objection.withdrawn": "The account withdraws its objection; content excluded "
    "meanwhile is not brought back.",
    "account.upserted": "The account's profile: `birth_date` and `country` must be present; "
    "null means unknown. The greatest `ts` wins.",
    "account.deleted": "The account is deleted: final, later events of it are ignored.",
}


def schema_file(name: str) -> str:
    """The file name, in `topics/schemas/`, of the schema called `name`."""
    return f"{name}.v{VERSION}.schema.json"


def event_tag(struct: type[msgspec.Struct]) -> str:
    """The `type` value that selects this event struct."""
    info = msgspec.inspect.type_info(struct)
    assert isinstance(info, msgspec.inspect.StructType) and isinstance(info.tag, str)
    return info.tag


def schemas() -> dict[str, Schema]:
    """Every schema of the contract, by file name."""
    out: dict[str, Schema] = {}
    for topic, structs in TOPIC_EVENTS.items():
        union: Any = functools.reduce(operator.or_, structs)
        name = schema_file(topic)
        out[name] = _document(
            name, f"{topic} message value", _TOPIC_DESCRIPTIONS[topic], _one_of(union)
        )
        for struct in structs:
            tag = event_tag(struct)
            name = schema_file(tag)
            out[name] = _document(
                name, f"{tag} event", _EVENT_DESCRIPTIONS[tag], msgspec.json.schema(struct)
            )
    documents: list[tuple[str, str, str, Schema]] = [
        (
            "training-record",
            "training record",
            "The value of a `training-ready` message (key: the post_id, UTF-8). A null "
            "value (tombstone) retracts the post; reading the topic from the start and "
            "keeping the latest value per key gives the training set.",
            msgspec.json.schema(TrainingRecord),
        ),
        (
            "audit-record",
            "audit record",
            "The value of an `eligibility-audit` message (key: the post_id, or the author "
            "pseudonym for account-level records; never the raw account_id): one decision, "
            "with the input topic, partition and offset it came from and the policy version.",
            msgspec.json.schema(AuditRecord),
        ),
        (
            "dead-letter",
            "dead letter",
            "The value of an `eligibility-dlq` message: the input value unchanged, any bytes "
            "(often not JSON at all). The error and the source topic, partition and offset "
            "are in the headers (see topics/eligibility-dlq.yaml).",
            {},
        ),
        (
            "policy",
            "eligibility policy",
            "A policy file (JSON): minimum ages, regions, content cutoff and input limits. "
            "Every field has a default; unknown fields are refused. Its version is the hash "
            "of its canonical form.",
            msgspec.json.schema(Policy),
        ),
    ]
    for stem, title, description, body in documents:
        name = schema_file(stem)
        out[name] = _document(name, title, description, body)
    return out


def render(schema: Schema) -> str:
    """The file text: sorted keys, 2-space indent, newline at the end."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write(topics_dir: Path = TOPICS_DIR) -> list[str]:
    """Write every schema and remove stale schema files; the names changed."""
    folder = topics_dir / SCHEMA_DIR
    folder.mkdir(parents=True, exist_ok=True)
    changed = check(topics_dir)
    wanted = schemas()
    for name in changed:
        path = folder / name
        if name in wanted:
            path.write_text(render(wanted[name]), encoding="utf-8")
        else:
            path.unlink()
    return changed


def check(topics_dir: Path = TOPICS_DIR) -> list[str]:
    """The schema files that differ from what the structs say, are missing or are
    stale (no struct makes them any more)."""
    folder = topics_dir / SCHEMA_DIR
    wanted = {name: render(schema) for name, schema in schemas().items()}
    present = {path.name for path in folder.glob("*.json")} if folder.is_dir() else set()
    drifted = {name for name in present if name not in wanted}
    for name, text in wanted.items():
        path = folder / name
        if name not in present or path.read_text(encoding="utf-8") != text:
            drifted.add(name)
    return sorted(drifted)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stream.contract", description=__doc__.split("\n\n")[0] if __doc__ else ""
    )
    parser.add_argument("command", choices=("generate", "check"))
    parser.add_argument("--topics", type=Path, default=TOPICS_DIR, help="the topics/ folder")
    args = parser.parse_args(argv)
    folder = args.topics / SCHEMA_DIR
    if args.command == "generate":
        for name in write(args.topics):
            print(f"wrote {folder / name}" if (folder / name).exists() else f"removed {name}")
        return 0
    drifted = check(args.topics)
    for name in drifted:
        print(f"drifted: {folder / name}", file=sys.stderr)
    if drifted:
        print("run `python -m stream.contract generate`", file=sys.stderr)
    return 1 if drifted else 0


def _one_of(union: Any) -> Schema:
    """msgspec writes a tagged union as `anyOf` with an OpenAPI `discriminator`;
    the tags exclude each other, so `oneOf` says the same, and says it plainly."""
    schema = msgspec.json.schema(union)
    schema["oneOf"] = schema.pop("anyOf")
    return schema


def _document(name: str, title: str, description: str, body: Schema) -> Schema:
    return {
        "$schema": DRAFT,
        "$id": BASE_ID + name,
        "title": title,
        "description": description,
        **body,
    }


if __name__ == "__main__":
    sys.exit(main())
