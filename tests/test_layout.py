"""uv's cache layout is named in one module (shim/cache.py) and uv-shim's record folder in one
module (shim/manifest.py): a layout literal anywhere else in shim/ fails here (issue 12)."""

from __future__ import annotations

import ast
import re

import pytest
from conftest import REPO

pytestmark = pytest.mark.fast

OWNERS = {"cache.py", "manifest.py"}
LITERALS = [
    "archive-v",
    "sdists-v",
    "wheels-v",
    "environments-v",
    "CACHEDIR.TAG",
    ".gitignore",
    ".http",
    ".rev",
    "metadata.msgpack",
    ".whl",
    ".lock",
    "root.toml",
    "pin_",
    "-py3-none-any",
    ".archive-",
    ".last-prune",
    ".evicting",
    ".released",
]  # (pyvenv.cfg belongs to an environment's layout: envscan and uvargs read it)


def _code_strings(tree: ast.AST) -> list[tuple[int, str]]:
    """String and bytes constants in code (docstrings are prose, not layout)."""
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)) and id(node) not in docstrings:
            value = node.value.decode("latin-1") if isinstance(node.value, bytes) else node.value
            out.append((node.lineno, value))
    return out


def test_layout_literals_live_only_in_their_owners():
    found = []
    for path in sorted((REPO / "shim").glob("*.py")):
        if path.name in OWNERS:
            continue
        for line, value in _code_strings(ast.parse(path.read_text())):
            for literal in LITERALS:
                before = r"(?<![A-Za-z0-9_])" if literal[0] == "." else ""  # `.lock`, not uv's own `uv.lock`
                after = r"(?![A-Za-z0-9_])" if literal[-1].isalnum() else ""
                if re.search(before + re.escape(literal) + after, value):
                    found.append(f"shim/{path.name}:{line}: {value!r} names {literal!r}")
    assert found == []
