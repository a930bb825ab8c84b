"""Shell hooks in real shells: `uv` resolves to the shim and `uv --version` is the real one."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from conftest import REPO, World

from shim import shells

SHELL_RUN = {
    "bash": lambda setup, cmd: ["bash", "-c", f"shopt -s expand_aliases\n{setup}\n{cmd}"],
    "zsh": lambda setup, cmd: ["zsh", "-c", f"{setup}\n{cmd}"],
    "fish": lambda setup, cmd: ["fish", "-c", f"{setup}\n{cmd}"],
}


def test_hooks_folder_matches_shell_init():
    for name, text in shells.hook_files().items():
        assert (REPO / "hooks" / name).read_text() == text, f"hooks/{name} is stale: python -m shim.shells hooks"


@pytest.mark.parametrize("shell", shells.SHELLS)
@pytest.mark.parametrize("alias", [False, True])
def test_shell_init_puts_the_shim_in_front(world: World, shell, alias):
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed here")
    env = world.env()
    env.pop("UV_SHIM_HOME")  # the default place: $XDG_DATA_HOME/uv-shim/bin
    env["XDG_DATA_HOME"] = str(world.root / "data")
    flags = ["--alias"] if alias else []
    init = subprocess.run(
        [sys.executable, "-m", "shim", "shell-init", shell, *flags], env=env, capture_output=True, text=True, check=True
    )
    bin_dir = world.root / "data" / "uv-shim" / "bin"
    assert (bin_dir / "uv").is_file()  # shell-init wrote the launchers it points at
    hook = REPO / "hooks" / (("uv-shim-alias." if alias else "uv-shim.") + shell)
    assert init.stdout == hook.read_text()
    out = subprocess.run(
        SHELL_RUN[shell](f"source {hook}", "type uv; uv --version"),
        env=env,
        capture_output=True,
        text=True,
        cwd=world.root,
    )
    assert out.returncode == 0, out.stderr
    assert str(bin_dir / "uv") in out.stdout
    real = subprocess.run([str(world.real_uv), "--version"], capture_output=True, text=True).stdout
    assert out.stdout.endswith(real)


def test_shell_init_with_a_bin_dir(world: World, tmp_path):
    bin_dir = tmp_path / "my bin"
    init = subprocess.run(
        [sys.executable, "-m", "shim", "shell-init", "bash", "--bin-dir", str(bin_dir)],
        env=world.env(),
        capture_output=True,
        text=True,
        check=True,
    )
    out = subprocess.run(
        ["bash", "-c", f"{init.stdout}\ncommand -v uv; uv --version"], env=world.env(), capture_output=True, text=True
    )
    assert out.stdout.splitlines()[0] == str(bin_dir / "uv")
    assert out.stdout.splitlines()[1].startswith("uv ")
