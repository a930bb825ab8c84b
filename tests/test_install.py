"""`uv-shim install` as a new user runs it (issue 16): a fresh home, a real uv on PATH, and then
new shells, login and interactive, of every kind uv's installer supports, find the shim as `uv`
and `uv-shim` itself; idempotent; `--no-modify-path`; `uv-shim uninstall` takes out exactly what
it added."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import NEWEST, uv_path

SHELLS = [
    ("sh", ["-lc"]),  # dash as a login shell: ~/.profile
    ("bash", ["-lc"]),  # login bash: ~/.bash_profile, else ~/.profile
    ("bash", ["-ic"]),  # interactive bash: ~/.bashrc
    ("zsh", ["-lc"]),
    ("zsh", ["-ic"]),
    ("fish", ["-lc"]),
    ("fish", ["-ic"]),
]


def _home(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A fresh home whose uv was installed the way uv's own installer does it: the binary in
    ~/.local/bin and a line in each profile that puts that folder on PATH."""
    home = tmp_path / "home dir"  # a space, as some homes have
    local_bin = home / ".local" / "bin"
    local_bin.mkdir(parents=True)
    (local_bin / "uv").symlink_to(uv_path(NEWEST))
    (local_bin / "env").write_text(
        '#!/bin/sh\ncase ":${PATH}:" in\n    *:"$HOME/.local/bin":*) ;;\n    *) export PATH="$HOME/.local/bin:$PATH" ;;\nesac\n'
    )
    for name in (".profile", ".bashrc", ".zshenv", ".zshrc"):
        (home / name).write_text('. "$HOME/.local/bin/env"\n')
    (home / ".config" / "fish" / "conf.d").mkdir(parents=True)
    (home / ".config" / "fish" / "conf.d" / "uv.env.fish").write_text("fish_add_path $HOME/.local/bin\n")
    env = {
        "HOME": str(home),
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "UV_SHIM_HOME": str(tmp_path / "shim-data"),
        "TERM": "dumb",
    }
    return home, env


def _texts(home: Path) -> dict[Path, str]:
    return {p: p.read_text() for p in home.rglob("*") if p.is_file() and not p.is_symlink()}


def _install(env: dict[str, str], *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "shim", "install", *extra], env=env, capture_output=True, text=True, check=True
    )


def _which(shell: str, flags: list[str], env: dict[str, str], home: Path) -> list[str]:
    exe = shutil.which(shell)
    if exe is None:
        pytest.skip(f"{shell} is not installed here (scripts/test --with-shells installs it)")
    out = subprocess.run(
        [exe, *flags, "command -v uv; command -v uv-shim; uv-shim which"],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert out.stdout or out.returncode == 0, (out.returncode, out.stderr)
    return out.stdout.splitlines()


@pytest.mark.parametrize("shell,flags", SHELLS, ids=[f"{s}{f[0]}" for s, f in SHELLS])
def test_new_shells_find_the_shim_first(tmp_path, shell, flags):
    home, env = _home(tmp_path)
    bin_dir = Path(env["UV_SHIM_HOME"]) / "bin"
    real = str(home / ".local" / "bin" / "uv")
    before = _which(shell, flags, env, home)
    assert before[:1] == [real], before  # control: without it, the real uv
    _install(env)
    lines = _which(shell, flags, env, home)
    assert lines[:2] == [str(bin_dir / "uv"), str(bin_dir / "uv-shim")], lines
    assert lines[2:] == [real], lines  # and it runs the real uv behind itself


def test_install_is_idempotent_and_uninstall_takes_out_exactly_its_lines(tmp_path):
    home, env = _home(tmp_path)
    (home / ".bashrc").write_text("# mine\nexport FOO=1")  # no final newline
    (home / ".bash_profile").write_text("source ~/.bashrc\n")
    originals = _texts(home)
    first = _install(env)
    assert "Put it first on PATH for new shells in: ~/.profile, ~/.bashrc, ~/.bash_profile" in first.stderr
    assert first.stdout.strip() == f". {shlex.quote(env['UV_SHIM_HOME'] + '/bin/uv-shim.env')}"
    snapshot = _texts(home)
    assert not (home / ".bash_login").exists()  # only profiles that exist, besides the usual ones
    second = _install(env)
    assert "already put it first" in second.stderr
    assert _texts(home) == snapshot
    for p, text in snapshot.items():
        assert text.count("uv-shim uninstall") <= 1, p
    subprocess.run([sys.executable, "-m", "shim", "uninstall"], env=env, check=True, capture_output=True)
    after = _texts(home)
    originals[home / ".bashrc"] += "\n"  # the one change left: the final newline it lacked
    assert after == originals
    assert not (home / ".config" / "fish" / "conf.d" / "uv-shim.env.fish").exists()
    assert not (Path(env["UV_SHIM_HOME"]) / "bin").exists()


def test_no_modify_path(tmp_path):
    home, env = _home(tmp_path)
    out = _install(env, "--no-modify-path")
    assert "Left your shell profiles alone" in out.stderr
    untouched = _texts(home)
    out = _install(env, "--no-modify-path")
    assert (Path(env["UV_SHIM_HOME"]) / "bin" / "uv-shim.env").is_file()
    out = _install({**env, "UV_SHIM_NO_MODIFY_PATH": "1"})
    assert _texts(home) == untouched


@pytest.mark.network
def test_the_readme_install_command_on_a_fresh_home(tmp_path):
    """The README's first command, exactly, in a fresh home: then a new login shell and a new
    interactive shell have `uv` = the shim and `uv-shim`, and `scripts/demo` works right away."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    command = readme.split("```sh\n", 1)[1].split("\n```", 1)[0].strip()
    assert command.startswith("python3 -m venv ~/.uv-shim") and "uv-shim install" in command
    home, env = _home(tmp_path)
    del env["UV_SHIM_HOME"]
    env.update(  # this machine's way to the registry (certificates, proxies, pip's settings)
        {
            k: v
            for k, v in os.environ.items()
            if any(t in k.upper() for t in ("PROXY", "CERT", "CA_BUNDLE", "SSL", "PIP_"))
        }
    )
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"  # a python3 >= 3.9 on PATH
    repo = Path(__file__).resolve().parent.parent
    done = subprocess.run(["bash", "-c", command], cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    bin_dir = home / ".local" / "share" / "uv-shim" / "bin"
    for flags in (["-lc"], ["-ic"]):
        lines = _which("bash", flags, env, home)
        assert lines[:2] == [str(bin_dir / "uv"), str(bin_dir / "uv-shim")], (flags, lines)
    demo = subprocess.run(  # in a new login shell, as the user opens one
        ["bash", "-lc", "scripts/demo"], cwd=repo, env=env, capture_output=True, text=True, timeout=120
    )
    assert demo.returncode == 0, demo.stderr
    rows = {line.split()[1]: line.split()[2:] for line in demo.stdout.splitlines() if line.startswith("  venv")}
    assert rows == {"a": ["BROKEN", "works"], "b": ["works", "works"]}, demo.stdout


def test_profiles_keep_their_bytes_and_odd_ones_are_one_warning(tmp_path):
    """CRLF line endings and lone CRs survive; a marked line an editor padded with a space is
    recognised (not added twice, and removed); a profile that is a folder is one warning, and
    the other profiles are still done; an `env` of uv's own installer in the same folder is left
    alone."""
    home, env = _home(tmp_path)
    (home / ".bashrc").write_bytes(b'PS1="x\ry"\r\nexport A=1\r\n')
    (home / ".zshrc").unlink()
    (home / ".zshrc").mkdir()
    bin_dir = home / "bin"  # a folder where another installer keeps an `env` of its own
    bin_dir.mkdir()
    theirs = b'export PATH="$HOME/bin:$PATH"\n'
    (bin_dir / "env").write_bytes(theirs)
    out = _install({**env, "UV_SHIM_HOME": str(tmp_path / "s")}, "--bin-dir", str(bin_dir))
    assert "cannot add uv-shim's line to" in out.stderr and ".zshrc" in out.stderr
    assert (bin_dir / "env").read_bytes() == theirs
    bashrc = (home / ".bashrc").read_bytes()
    assert bashrc.startswith(b'PS1="x\ry"\r\nexport A=1\r\n') and bashrc.endswith(b"removes this line)\r\n")
    padded = bashrc.replace(b"removes this line)\r\n", b"removes this line)  \r\n")
    (home / ".bashrc").write_bytes(padded)
    _install({**env, "UV_SHIM_HOME": str(tmp_path / "s")}, "--bin-dir", str(bin_dir))
    assert (home / ".bashrc").read_bytes() == padded  # recognised: not added again
    subprocess.run(
        [sys.executable, "-m", "shim", "uninstall", "--bin-dir", str(bin_dir)],
        env={**env, "UV_SHIM_HOME": str(tmp_path / "s")},
        check=True,
        capture_output=True,
    )
    assert (home / ".bashrc").read_bytes() == b'PS1="x\ry"\r\nexport A=1\r\n'
    assert (bin_dir / "env").read_bytes() == theirs and not (bin_dir / "uv").exists()


def test_another_tools_uv_shim_script_is_neither_replaced_nor_removed(tmp_path):
    """`pip install uv-shim` (or pipx) puts its own `uv-shim` console script in ~/.local/bin; an
    install with that --bin-dir writes uv and uvx beside it and leaves it, uninstall too."""
    from shim import launcher
    from shim.realuv import is_shim

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "uv-shim"
    theirs = "#!/usr/bin/python3\nimport sys\nfrom shim.cli import main\nsys.exit(main())\n"
    script.write_text(theirs)
    assert is_shim(str(script))  # the broad check (the real-uv search) does take it for ours
    launcher.install(str(bin_dir))
    assert script.read_text() == theirs and (bin_dir / "uv").exists()
    launcher.uninstall(str(bin_dir))
    assert script.read_text() == theirs and not (bin_dir / "uv").exists()
