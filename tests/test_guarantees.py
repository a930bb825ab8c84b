"""The README's Guarantees table names the tests that prove each promise: every one must exist."""

from __future__ import annotations

import ast
import re

import pytest
from conftest import REPO

pytestmark = pytest.mark.fast


def _tests_in(path) -> set:
    tree = ast.parse(path.read_text())
    return {
        n.name
        for n in ast.walk(tree)
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name.startswith("test_")
    }


def named_tests():
    """(file, test or None) for every reference in the table's "proved by" column."""
    text = (REPO / "README.md").read_text()
    table = text[text.index("## Guarantees") :]
    table = table[: table.index("\n\n", table.index("| promise |"))]
    refs = []
    for row in table.splitlines():
        if not row.startswith("|") or row.startswith(("| promise", "|---")):
            continue
        current = None
        for token in re.findall(r"`([^`]+)`", row.rsplit("|", 2)[-2]):
            file, sep, name = token.partition("::")
            if file.endswith(".py"):
                current = file
                refs.append((file, name or None))
            elif token.startswith("test_") and current:
                refs.append((current, token))
    return refs


def test_every_test_the_guarantees_name_exists():
    refs = named_tests()
    assert len(refs) > 40
    missing = []
    for file, name in refs:
        path = REPO / "tests" / file
        if not path.is_file():
            missing.append(file)
        elif name and name not in _tests_in(path):
            missing.append(f"{file}::{name}")
    assert missing == []
