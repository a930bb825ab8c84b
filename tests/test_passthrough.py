"""Exact passthrough: same output, exit code, stdin, TTY, signals and process as the bare uv."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess

import pytest
from conftest import World


def both(w: World, *args: str, **kw):
    return w.uv(*args, shim=True, check=False, **kw), w.uv(*args, shim=False, check=False, **kw)


@pytest.mark.parametrize(
    "args",
    [
        ("--version",),
        ("version",),
        ("help",),
        ("cache", "dir"),
        ("--color", "always", "pip", "list"),
        ("pip", "show", "does-not-exist"),
        ("not-a-command",),
        ("pip", "install", "--help"),
        ("tool", "dir"),
        ("-q", "cache", "dir"),
    ],
)
def test_same_output_and_exit_code(any_world: World, args):
    shim, bare = both(any_world, *args)
    assert (shim.returncode, shim.stdout, shim.stderr) == (bare.returncode, bare.stdout, bare.stderr)


def test_stdin_reaches_uv(world: World, wheels):
    shim, bare = both(
        world, "pip", "compile", "--no-index", "--find-links", str(wheels), "-q", "-", input="alpha\nbeta\n"
    )
    assert shim.returncode == 0 and "alpha==2.0" in shim.stdout
    assert shim.stdout == bare.stdout


def test_uv_run_is_exec(world: World):
    """``uv run`` is registered then exec'd: the child's parent is the process we started."""
    proc = subprocess.Popen(
        [
            str(world.shim_uv),
            "run",
            "--no-project",
            "--python",
            os.path.realpath(world.venv("v") / "bin" / "python"),
            "python",
            "-c",
            "import os; print(os.getppid())",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=world.env(),
        cwd=world.root,
    )
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0
    assert int(out.strip()) == proc.pid


def _terminated_code(world: World, shim: bool) -> int:
    venv = world.root / "sig"
    if not venv.exists():
        world.venv("sig")
    proc = subprocess.Popen(
        [
            str(world.shim_uv if shim else world.real_uv),
            "run",
            "--no-project",
            "--python",
            str(venv / "bin" / "python"),
            "python",
            "-c",
            "import time; print('ready', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=world.env(),
        cwd=world.root,
    )
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=60)


def test_signals_behave_as_bare_uv(world: World):
    assert _terminated_code(world, shim=True) == _terminated_code(world, shim=False)


def test_intercepted_exit_code_is_uvs(world: World, wheels):
    v = world.venv("v")
    shim = world.install(v, "no-such-package", find_links=wheels, check=False)
    bare = world.install(v, "no-such-package", find_links=wheels, check=False, shim=False)
    assert shim.returncode == bare.returncode != 0
    assert shim.stderr == bare.stderr


@pytest.mark.skipif(shutil.which("script") is None, reason="util-linux script(1) not installed")
def test_tty_is_uvs(world: World):
    v = world.venv("v")
    cmd = f"{world.shim_uv} run --no-project --python {v}/bin/python python -c 'import sys; print(sys.stdout.isatty())'"
    out = subprocess.run(
        ["script", "-qec", cmd, "/dev/null"],
        capture_output=True,
        text=True,
        env=world.env(),
        cwd=world.root,
        timeout=120,
    )
    assert "True" in out.stdout


def test_disable_is_pure_passthrough(world: World, wheels):
    v = world.venv("v")
    world.install(v, "alpha==1.0", find_links=wheels, UV_SHIM_DISABLE="1")
    assert world.records() == {}
    world.install(v, "beta==1.0", find_links=wheels)
    assert list(world.records())


def test_passthrough_never_starts_python(world: World):
    """Speed is scripts/bench.py's (ratios against the bare uv); here only that passthrough
    execs the real uv straight from the sh launcher."""
    env = world.env()
    trace = subprocess.run(["sh", "-x", str(world.shim_uv), "--version"], env=env, capture_output=True, text=True)
    assert f"exec {world.real_uv}" in trace.stderr
    assert "-S -E" not in trace.stderr


@pytest.mark.parametrize(
    "args, python",
    [
        (("--version",), False),
        (("pip", "list"), False),
        (("--cache-dir", "X", "pip", "show", "x"), False),
        (("pip", "--cache-dir", "X", "install", "--help"), True),
        (("--directory", "sync", "lock"), False),
        (("--color=always", "sync", "--help"), True),
        (("tool", "list"), False),
        (("tool", "run", "--help"), True),
        (("cache", "prune", "--help"), True),
        (("cache", "clean", "--help"), True),
        (("cache", "size"), False),
        (("-q", "venv", "--help"), True),
        (("--", "sync"), False),
    ],
)
def test_launcher_fast_path_agrees_with_argv_model(world: World, args, python):
    """The sh fast path is generated from shim.uvargs: it starts Python exactly when the model
    says the command may be intercepted (``--help`` keeps each run instant)."""
    from shim import uvargs

    inv = uvargs.parse(list(args))
    rule_words = (
        inv.words
        and inv.words[0] in uvargs.INTERCEPTED
        and (
            uvargs.INTERCEPTED[inv.words[0]] is None
            or inv.words[1:2]
            and inv.words[1] in uvargs.INTERCEPTED[inv.words[0]]
        )
    )
    assert bool(rule_words) == python
    trace = subprocess.run(
        ["sh", "-x", str(world.shim_uv), *args], env=world.env(), capture_output=True, text=True, cwd=world.root
    )
    assert ("-S -E" in trace.stderr) == python, trace.stderr[-2000:]
