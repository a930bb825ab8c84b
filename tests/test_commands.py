"""The table of intercepted commands (``uvargs.INTERCEPTED``) against the real uv: every
subcommand the binary lists is driven once by ``scripts/uv_commands.py`` against a project, a venv
and a tool, and the shim must intercept exactly the invocations that changed an environment."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import NEWEST, OLDEST, REPO, _vt, uv_path

from shim import uvargs, uvfeatures


@pytest.mark.parametrize("version", sorted({OLDEST, NEWEST}, key=_vt))
def test_intercepted_is_exactly_what_changes_an_environment(version):
    out = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "uv_commands.py"), "--uv", str(uv_path(version)), "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout)["results"]
    missed, extra = [], []
    for r in results:
        if r["argv"] is None:  # skipped by the script (network, credentials)
            continue
        inv = uvargs.parse(r["argv"][1:])
        intercepted = inv.intercepted and uvfeatures.changes_environments(inv.words, _vt(version))
        if r["changes"] and not intercepted:
            missed.append((r["command"], r["changes"]))
        if not r["changes"] and r["status"] == "no" and intercepted:
            extra.append(r["command"])
    assert not missed, f"uv {version} changed an environment the shim does not see: {missed}"
    assert not extra, f"uv {version}: intercepted but changes nothing: {extra}"
    changed = {tuple(r["command"]) for r in results if r["changes"]}
    assert ("run",) in changed and ("pip", "install") in changed  # the script really saw changes
