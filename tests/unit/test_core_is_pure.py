"""Nothing in the core imports I/O frameworks: the rule stays testable without services."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).parents[2] / "stream" / "core"
FORBIDDEN = {"faust", "mode", "redis", "confluent_kafka", "aiokafka", "prometheus_client",
             "socket", "asyncio", "click", "tqdm"}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("path", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_core_module_imports_no_io_framework(path: Path) -> None:
    assert imported_roots(path) & FORBIDDEN == set()


def test_the_check_sees_the_core() -> None:
    assert len(list(CORE.glob("*.py"))) >= 8
    assert "msgspec" in imported_roots(CORE / "events.py")
