"""The hot-path rule: what an intercepted uv command imports stays light (issue 12)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO

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


@pytest.mark.fast
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


# What an intercepted install imports, watched with an audit hook in the launcher's own command
# (``python -S -E <boot> uv <launcher> ARGS``): the whole process, uv included, not a module list.
_WATCH = (
    "import os, sys\n"
    "fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)\n"
    "sys.addaudithook(lambda event, args: event == 'import' and os.write(fd, (args[0] + '\\n').encode()))\n"
    "boot = sys.argv[2]\n"
    "sys.argv = sys.argv[2:]\n"
    "exec(compile(open(boot).read(), boot, 'exec'), {'__name__': '__main__'})\n"
)
NEVER_ON_AN_INSTALL = {"tomllib", "tomli", "tomli_w", "datetime", "json", "re", "typing", "tempfile", "shutil"}


def test_an_install_and_a_no_op_import_nothing_heavy(world, wheels, tmp_path):
    """tomllib, datetime, json (with the ``re`` they compile) cost more than the bookkeeping of a
    100-wheel install: a fresh install and a no-op read and write records without them. Run on
    the foreground path (the boot script as ``uv``); the background helper (``+uv``) calls the
    same ``bookkeeping.prepare`` and ``update_all``, but its own imports are not watched here."""
    boot = world.shim_uv.parent / "uv-shim-boot.py"
    venv = world.venv("a")
    world.install(venv, "alpha==1.0", find_links=wheels)  # the shim knows this uv from now on
    for n, specs in enumerate((["alpha==1.0", "beta==1.0"], ["alpha==1.0", "beta==1.0"])):  # a change, then a no-op
        log = tmp_path / f"imports-{n}"
        args = world.install_args(venv, *specs, find_links=wheels)
        out = subprocess.run(
            [sys.executable, "-S", "-E", "-c", _WATCH, str(log), str(boot), "uv", str(world.shim_uv), *args],
            env=world.env(UV_LINK_MODE="symlink"),
            capture_output=True,
            text=True,
        )
        assert out.returncode == 0, out.stderr
        imported = set(log.read_text().split())
        assert "shim.bookkeeping" in imported  # the hook saw the shim's imports
        assert imported & NEVER_ON_AN_INSTALL == set(), sorted(imported & NEVER_ON_AN_INSTALL)
    assert sorted(world.records()[str(venv.resolve())].distributions) == ["alpha==1.0", "beta==1.0"]
