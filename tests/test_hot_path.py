"""The hot-path rule: what an intercepted uv command imports stays light (issue 12)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO

pytestmark = pytest.mark.fast

HEAVY = {
    "typing",
    "dataclasses",
    "json",
    "tomllib",
    "tomli",
    "tomli_w",
    "subprocess",
    "pathlib",
    "argparse",
    "enum",
    "signal",
    "hashlib",
    "datetime",
    "psutil",
    "threading",
    "re",
    "shutil",
    "tempfile",
}


def test_hot_path_modules_import_nothing_heavy():
    from shim import HOT_PATH

    code = f"import sys; before = set(sys.modules); import {', '.join(HOT_PATH)}; print(' '.join(sorted(set(sys.modules) - before)))"
    out = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, cwd=REPO, env={"PYTHONPATH": str(REPO)}
    )
    assert out.returncode == 0, out.stderr
    loaded = set(out.stdout.split())
    assert set(HOT_PATH) <= loaded
    assert loaded & HEAVY == set(), sorted(loaded & HEAVY)
