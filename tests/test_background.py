"""The launcher's background path (issue 18): where it is sure which cache uv uses, it takes uv's
shared cache lock, hands it to a background helper and execs uv itself; anywhere it is not sure,
Python stays in front of uv. A wrong guess would lock one cache while uv fills another."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time

import pytest
from conftest import World, require_root_unshare, runs_as

from shim import followup, manifest
from shim.realuv import BOOT_NAME


def test_an_install_is_uv_itself_unless_told_to_stay_in_front(world: World):
    v = world.venv("v")
    assert runs_as(world, v) == os.path.realpath(world.real_uv)  # exec'ed: no Python in front
    assert "python" in os.path.basename(runs_as(world, v, UV_SHIM_FOREGROUND="1"))  # the control


@pytest.mark.parametrize("where", ["pyproject", "uv.toml", "user"])
def test_a_config_file_that_sets_the_cache_keeps_python_in_front(world: World, wheels, where):
    """uv reads `cache-dir` from a config file: the launcher cannot parse TOML, so it must step
    aside, and the records land in the cache uv really used (with no warning). Control: the
    default cache exists and is lockable, so a launcher that ignored the file would have locked it."""
    default = world.home / ".cache" / "uv"
    world.uv("venv", "-q", str(world.root / "warm"), shim=False, UV_CACHE_DIR=str(default))  # makes its .lock
    assert (default / ".lock").exists()
    proj = world.root / "proj"
    proj.mkdir()
    configured = world.root / "configured-cache"
    if where == "pyproject":
        (proj / "pyproject.toml").write_text(
            f'[project]\nname = "p"\nversion = "0"\n[tool.uv]\ncache-dir = "{configured}"\n'
        )
    elif where == "uv.toml":
        (world.root / "uv.toml").write_text(f'cache-dir = "{configured}"\n')  # a parent of the working directory
    else:
        (world.home / ".config" / "uv").mkdir(parents=True)
        (world.home / ".config" / "uv" / "uv.toml").write_text(f'cache-dir = "{configured}"\n')
    v = world.venv("v")
    args = World.install_args(v, "alpha==1.0", find_links=wheels)
    world.uv(*args, cwd=proj, UV_CACHE_DIR=None, UV_LINK_MODE="symlink")  # makes the configured cache
    out = world.uv(*args[:-1], "beta==1.0", cwd=proj, UV_CACHE_DIR=None, UV_LINK_MODE="symlink")
    world.cache = configured
    assert str(v.resolve()) in world.records()
    assert set(world.records()[str(v.resolve())].distributions) == {"alpha==1.0", "beta==1.0"}
    assert out.stderr.count("uv-shim:") == 0, out.stderr
    assert not list(configured.glob(f"*/uv-shim/{manifest.NOTICES}/*"))  # no "the launcher locked ..." notice


def test_an_install_as_pid_1_of_a_container_is_protected(world: World, wheels):
    """`docker run img uv pip install ...` (uv is PID 1 of its PID namespace): when PID 1 exits,
    the kernel kills whatever is left in the namespace, a background helper included, so the
    launcher keeps Python in front there. Control: the same install done bare breaks."""

    require_root_unshare()
    v, c = world.venv("v"), world.venv("c")
    for venv, exe, spec in ((v, world.shim_uv, "alpha==1.0"), (c, world.real_uv, "beta==1.0")):
        args = World.install_args(venv, spec, find_links=wheels)
        out = subprocess.run(
            ["unshare", "--pid", "--fork", "--mount-proc", str(exe), *args],
            env=world.env(UV_LINK_MODE="symlink"),
            cwd=world.root,
            capture_output=True,
            text=True,
        )
        assert out.returncode == 0, out.stderr
    world.settle()
    assert str(v.resolve()) in world.records()
    world.prune("--ci")
    assert world.works(v), world.broken(v)
    assert not world.works(c)  # the control


def test_a_descriptor_9_the_caller_passes_reaches_uv_and_its_program(world: World, tmp_path):
    """The launcher takes uv's lock on descriptor 9 only when the caller passes none there."""
    (tmp_path / "f9").write_text("hello")
    v = world.venv("v")
    code = "import os; print(os.read(9, 5))"
    outs = []
    for exe in (world.real_uv, world.shim_uv):
        script = f"exec {exe} run -q --python {v}/bin/python --no-project python -c '{code}' 9<{tmp_path / 'f9'}"
        outs.append(
            subprocess.run(["sh", "-c", script], env=world.env(), cwd=world.root, capture_output=True, text=True)
        )
        world.settle()
    assert outs[0].stdout == "b'hello'\n", outs[0].stderr  # the bare uv, for reference
    assert outs[1].stdout == outs[0].stdout and outs[1].returncode == 0, outs[1].stderr


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_is_only_help(world: World, wheels, flag):
    """`uv pip install ... --help` prints uv's help and changes nothing: the helper the launcher
    starts for it records nothing, as Python in front passes it straight to uv. Control: the same
    command without the flag records the environment (its symlinked archive is pinned)."""
    v = world.venv("v")
    assert runs_as(world, v) == os.path.realpath(world.real_uv)  # this world takes the background path
    world.install(v, "alpha==1.0", find_links=wheels, shim=False)
    out = world.uv(*world.install_args(v, "alpha==1.0", find_links=wheels), flag, UV_LINK_MODE="symlink")
    assert "Usage" in out.stdout
    assert world.records() == {} and world.pins() == []
    world.uv(*world.install_args(v, "alpha==1.0", find_links=wheels), UV_LINK_MODE="symlink")
    assert list(world.records()) == [str(v.resolve())] and len(world.pins()) == 1


def test_the_helper_does_not_wait_for_a_stranger_with_uvs_pid():
    """uv exits while the helper prepares and its pid goes to another process: the helper, which
    holds uv's lock until uv is gone, must not wait for that stranger (every prune would wait with
    it). The stranger is a `sleep` whose start time is not the one the helper saw for uv; the
    control gives the right one, and the helper (started after it, as after uv) waits."""
    stranger = subprocess.Popen(["sleep", "30"])
    try:
        seen = followup._started(stranger.pid)
        took = {}
        for case, started in (("stranger", seen - 5), ("uv", seen)):
            code = (
                "import time; from shim import followup; "
                f"followup.wait_gone({stranger.pid}, {started!r}, time.monotonic() + 3)"
            )
            t0 = time.monotonic()
            subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
            took[case] = time.monotonic() - t0
        assert took["stranger"] < 2.5, "waited for a process that is not uv"
        assert took["uv"] >= 2.9, took  # the control
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


# A helper in its own process: a stranger started after it, or uv's stand-in started before it.
_HELPER = """
import subprocess, sys, time
from shim import followup, uvfeatures
if sys.argv[1] == "stranger":  # uv exited before the helper looked; its pid now another's
    time.sleep(0.05)  # a later clock tick (10 ms) than the helper's own start
    proc = subprocess.Popen(["sleep", "30"], stdout=subprocess.DEVNULL); pid = proc.pid
else:
    pid = int(sys.argv[2])
started = followup._started(pid)  # what the helper reads for uv, as `after` does
print(followup._process(pid, "", 0, [], started)())
t0 = time.monotonic(); followup.wait_gone(pid, started, time.monotonic() + 3)
print(round(time.monotonic() - t0, 1))
if sys.argv[1] == "stranger":
    proc.kill()
"""


def test_the_helper_does_not_watch_a_process_started_after_it():
    """uv exits before its helper first looks, and a new process takes its pid: what the helper
    reads as uv's start time is the stranger's, later than the helper's own (uv was exec'ed by the
    launcher that forked the helper). Neither the `uv run` watch nor the wait for uv may follow
    that stranger. Control: a process started before the helper, as uv is, is watched and waited for."""
    uv = subprocess.Popen(["sleep", "30"])
    try:
        outs = {
            case: subprocess.run(
                [sys.executable, "-c", _HELPER, case, str(uv.pid)],
                check=True,
                timeout=60,
                capture_output=True,
                text=True,
            ).stdout.split()
            for case in ("stranger", "uv")
        }
    finally:
        uv.kill()
        uv.wait()
    assert outs["stranger"][0] == "gone" and float(outs["stranger"][1]) < 2.5, outs
    assert outs["uv"][0] == "installing" and float(outs["uv"][1]) >= 2.9, outs  # the control


def test_a_clock_step_does_not_end_the_watch():
    """The helper reads uv's start time once and compares it later: a wall-clock start time
    (psutil's create_time adds the boot time, read again each call and moved by a clock step or
    NTP) would make uv look like a stranger at the first poll, and the `uv run` helper would pin
    before uv installed. The step is simulated where psutil reads the boot time (the machine's
    clock is not ours to step); control: psutil's own create_time moves with it."""
    uv = subprocess.Popen(["sleep", "30"])
    code = f"""
import itertools, psutil, psutil._pslinux as L
from shim import followup
steps = itertools.count(1_700_000_000, 7)  # every read of the boot time: 7 s later
L.boot_time = lambda: float(next(steps))
started = followup._started({uv.pid})
print(followup._process({uv.pid}, "", 0, [], started)(), followup._not_uv({uv.pid}, started))
print(psutil.Process({uv.pid}).create_time() == psutil.Process({uv.pid}).create_time())
"""
    try:
        out = subprocess.run([sys.executable, "-c", code], check=True, timeout=60, capture_output=True, text=True)
    finally:
        uv.kill()
        uv.wait()
    assert out.stdout.split() == ["installing", "False", "False"], out


def test_a_nice_that_has_gone_since_install_still_starts_the_helper(world: World, wheels):
    """The launcher names `nice` by the path it had at install time; a later system update may
    move it. The helper must still start (un-niced): the launcher has handed it uv's lock and
    the bookkeeping, and a failed start would leave the environment unrecorded, silently."""
    text = world.shim_uv.read_text()
    if "\nnice=/" not in text:
        pytest.skip("no nice here: the launcher names none")
    v = world.venv("v")
    assert runs_as(world, v) == os.path.realpath(world.real_uv)  # this world takes the background path
    st = world.shim_uv.stat()  # the session's launcher: put back as it was for the tests after this one
    world.shim_uv.write_text(
        "\n".join("nice=/nonexistent/nice" if line.startswith("nice=") else line for line in text.split("\n"))
    )
    try:
        world.install(v, "alpha==1.0", find_links=wheels)
    finally:
        world.shim_uv.write_text(text)
        os.utime(world.shim_uv, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert list(world.records()) == [str(v.resolve())] and len(world.pins()) == 1


@pytest.mark.parametrize("argv", [["run", "-v"], ["-v", "tool", "run"], ["run", "--verbose"]])
def test_a_verbose_uv_run_is_still_uv_itself(world: World, argv):
    """`-v` keeps Python in front of an install (it prints the bookkeeping's timing), never in
    front of `uv run`/`uv tool run` (uvargs.RUNS_CHILD, read by the launcher's sh): their
    bookkeeping is a background helper's either way. Traced with `sh -x`: the launcher takes uv's
    lock for a helper (after which its one way out is an exec of the real uv), and the program uv
    runs is uv's child in the process the launcher started. Control: `uv pip install -v` takes no
    lock and execs Python.

    Only the trace up to the helper's start is read: from there the helper's own trace (dash
    writes one word at a time) interleaves with the launcher's, mid-line."""
    v = world.venv("v")
    py = str(v / "bin" / "python")
    runs = [*argv, "--python", py, "python", "-c", "import os; print(os.getppid())"]
    pip = ["pip", "install", "-v", "--python", py, "-r", "/dev/null"]
    flock = re.search(r"^flock=(.+)$", world.shim_uv.read_text(), re.M)
    assert flock, "the launcher names no flock: it has no background path to test"
    locks = f"+ {shlex.split(flock.group(1))[0]} -s "
    traces = {}
    for name, args in (("runs", runs), ("pip", pip)):
        proc = subprocess.Popen(
            ["sh", "-x", str(world.shim_uv), *args],
            env=world.env(),
            cwd=world.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        out, err = proc.communicate(timeout=120)
        world.settle()
        assert proc.returncode == 0, err[-2000:]
        traces[name] = (proc.pid, out, err.splitlines())
    pid, out, lines = traces["runs"]
    assert any(line.startswith(locks) for line in lines), lines[-40:]  # the background path
    assert out.split() == [str(pid)], out  # uv is the process the launcher started, its program uv's child
    _, _, lines = traces["pip"]  # the control: no helper, so no interleaving, and Python in front
    assert not any(line.startswith(locks) for line in lines), lines[-40:]
    execs = [line for line in lines if line.startswith("+ exec ")]
    assert execs and " -S -E " in execs[-1] and BOOT_NAME in execs[-1], lines[-40:]
