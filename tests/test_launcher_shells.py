"""The sh launchers are plain POSIX sh (issue 19): run by dash, `bash --posix`, `busybox sh` and
zsh in sh emulation, from a folder whose path holds spaces and non-ASCII, for a passthrough
(the fast path, no Python) and an intercepted install into an environment with such a path."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from conftest import World

SHELLS = {
    "dash": ["dash"],
    "bash --posix": ["bash", "--posix"],
    "busybox sh": ["busybox", "sh"],
    "zsh (sh emulation)": ["zsh", "--emulate", "sh"],
}


@pytest.mark.parametrize("shell", sorted(SHELLS))
def test_launchers_under_every_posix_sh(world: World, wheels, shell, tmp_path):
    argv0 = SHELLS[shell]
    if shutil.which(argv0[0]) is None:
        pytest.skip(f"{argv0[0]} is not installed here (the distribution packages it)")
    home = tmp_path / "shim home ü"
    bin_dir = home / "bin"
    env = world.env(UV_SHIM_HOME=str(home))
    subprocess.run(
        [sys.executable, "-m", "shim", "install", "--bin-dir", str(bin_dir)], env=env, check=True, capture_output=True
    )
    env["PATH"] = os.pathsep.join([str(bin_dir), str(world.real_uv.parent), env["PATH"]])
    launcher = str(bin_dir / "uv")
    bare = subprocess.run([str(world.real_uv), "--version"], env=env, capture_output=True, text=True)
    out = subprocess.run([*argv0, launcher, "--version"], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout == bare.stdout, (shell, out.stderr)
    venv = world.root / "env with space ü"
    world.uv("venv", "-q", "--python", world.python_path, str(venv), shim=False)
    args = [*world.install_args(venv, "alpha==1.0", find_links=wheels)]
    out = subprocess.run(
        [*argv0, launcher, *args], env={**env, "UV_LINK_MODE": "symlink"}, capture_output=True, text=True
    )
    assert out.returncode == 0, (shell, out.stderr)
    world.settle()  # the background helper's pins
    assert str(venv.resolve()) in world.records() and world.works(venv)
