"""README promises that no test held before (issue 11), each against the real uv, each with its
control: the same world, with the bare uv, breaks (so no test passes because nothing was at risk).

"Works" is ``World.works``: every file each distribution's RECORD lists exists, and every
top-level package imports as a regular package (an empty namespace package is a broken one).
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from conftest import (
    BASE_PYTHON,
    NEWEST,
    OLDEST,
    World,
    _vt,
    hold_shared_lock,
    make_project,
    make_wheel,
    pair,
    symlink_up,
)

EDGE = sorted({OLDEST, NEWEST}, key=_vt)


@pytest.fixture(autouse=True)
def _home(shim_home, monkeypatch):
    monkeypatch.setenv("UV_SHIM_HOME", str(shim_home))


def _assert_protected(w: World, venv: Path) -> None:
    shim = w.root.name == "shim"
    problems = w.broken(venv)
    if shim:
        assert problems == [], problems
    else:
        assert problems, "control: the bare uv should have broken this environment"


# -- link modes and paths ------------------------------------------------------------------------


@pytest.mark.parametrize("version", EDGE)
def test_mixed_link_modes_keep_their_symlinked_archives(tmp_path, shim_home, wheels, version):
    for w in pair(tmp_path, shim_home, version):
        shim = w.root.name == "shim"
        v = w.venv("v")
        w.install(v, "alpha==1.0", find_links=wheels, mode="symlink", shim=shim)
        w.install(v, "beta==1.0", find_links=wheels, mode="hardlink", shim=shim)
        w.prune("--ci")  # bare: uv's wheels index goes, then every archive nothing references
        _assert_protected(w, v)
        if shim:
            meta = os.readlink(next(v.glob("lib/python*/site-packages/alpha-1.0.dist-info/METADATA")))
            (pinned,) = w.pinned()
            assert f"/archive-v0/{pinned}/" in meta  # alpha's archive, and only it, is pinned


@pytest.mark.parametrize("version", EDGE)
def test_an_environment_behind_a_symlink_is_live(tmp_path, shim_home, wheels, version):
    """One environment reached through a symlinked parent folder, one whose path is a symlink:
    a prune through the shim must see both as live (a dead root would lose its pins)."""
    for w in pair(tmp_path, shim_home, version):
        shim = w.root.name == "shim"
        (w.root / "real").mkdir()
        w.venv("real/v1")
        w.venv("real/v2")
        os.symlink(w.root / "real", w.root / "link")
        os.symlink(w.root / "real" / "v2", w.root / "vlink")
        via_parent, itself = w.root / "link" / "v1", w.root / "vlink"
        w.install(via_parent, "alpha==1.0", find_links=wheels, shim=shim)
        w.install(itself, "beta==1.0", find_links=wheels, shim=shim)
        if shim:
            out = w.uv("cache", "prune")
            assert "Released" not in out.stderr, out.stderr
        w.prune("--ci")
        _assert_protected(w, via_parent)
        _assert_protected(w, itself)


@pytest.mark.parametrize("version", EDGE)
def test_a_cache_path_going_up_from_a_symlink_is_the_cache_uv_uses(tmp_path, shim_home, wheels, version):
    """`UV_CACHE_DIR=$ROOT/up/../cache` where `up` is a symlink to deep/inner: uv (the kernel)
    goes up from deep/inner, so its cache is deep/cache. Dropping `..` from the text (Python's
    abspath) put the records and pins in $ROOT/cache, which no uv uses: a prune then saw nothing
    to keep. Control: the bare uv's prune breaks the environment."""
    for w in pair(tmp_path, shim_home, version):
        shim = w.root.name == "shim"
        symlink_up(w.root)
        w.cache = w.root / "up" / ".." / "cache"  # pathlib keeps `..` as written
        v = w.venv("v")
        w.install(v, "alpha==1.0", find_links=wheels, shim=shim)
        if shim:
            w.uv("cache", "prune")
        w.prune("--ci")
        _assert_protected(w, v)
        if shim:
            assert w.pinned() and (w.root / "deep" / "cache" / "archive-v0").is_dir()
            assert not (w.root / "cache").exists(), "the shim wrote to a folder uv does not use"


# -- the lock ------------------------------------------------------------------------------------


def test_roots_are_verified_after_the_lock_is_taken(tmp_path, shim_home, wheels):
    """A prune waits for uv's cache lock; meanwhile the bare uv installs into a recorded
    environment. What the prune keeps is decided after it holds the lock, so it pins that too.
    Control: the bare prune in the same sequence deletes it."""
    for w in pair(tmp_path, shim_home, NEWEST):
        shim = w.root.name == "shim"
        v = w.venv("v")
        w.install(v, "alpha==1.0", find_links=wheels)  # through the shim in both worlds
        holder = hold_shared_lock(w.cache / ".lock")
        prune = subprocess.Popen(
            [str(w.shim_uv if shim else w.real_uv), "cache", "prune", "--ci"],
            env=w.env(),
            cwd=w.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            time.sleep(1.5)  # the shim checks its arguments with uv, then waits for the lock
            assert prune.poll() is None, "the prune should be waiting for the lock"
            w.install(v, "beta==1.0", find_links=wheels, shim=False)  # bare, while the prune waits
        finally:
            holder.kill()
        _, err = prune.communicate(timeout=120)
        assert prune.returncode == 0, err
        problems = w.broken(v)
        if shim:
            assert problems == [], problems
        else:
            assert any("beta" in p for p in problems), problems


def _tree(pid: int):
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def test_an_install_holds_the_cache_lock_until_its_pins_are_written(world: World, wheels):
    """The shim's bookkeeping after uv installed is held up (its record folder's writer lock is
    taken by the test); the command has returned, but all that time uv's cache lock stays
    shared-locked by its background helper, so a bare prune cannot run in the window where the new
    archive is not pinned yet. Control: the same install done bare, the same prune deletes it."""
    from shim import hostid, manifest

    v = world.venv("v")
    world.install(v, "alpha==1.0", find_links=wheels)
    entry = world.manifest_dir() / manifest.entry_key(hostid.identity()[1], os.path.realpath(v))
    fd = os.open(entry / ".lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    proc = subprocess.Popen(
        [str(world.shim_uv), *World.install_args(v, "beta==1.0", find_links=wheels)],
        env=world.env(UV_LINK_MODE="symlink"),
        cwd=world.root,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # uv returns at once: the launcher's background helper, not the command, waits
        assert proc.wait(timeout=60) == 0, proc.stderr.read()
        assert list(v.glob("lib/python*/site-packages/beta-1.0.dist-info"))
        probe = os.open(world.cache / ".lock", os.O_RDWR)
        with pytest.raises(BlockingIOError):
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(probe)
        bare = world.uv("cache", "prune", "--ci", shim=False, check=False, UV_LOCK_TIMEOUT="1")
        assert bare.returncode == 2 and "Timeout" in bare.stderr, bare.stderr
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    world.settle()
    assert len(world.pinned()) == 2
    world.prune("--ci")
    assert world.works(v), world.broken(v)
    c = world.venv("c")  # the control
    world.install(c, "beta==1.0", find_links=wheels, shim=False)
    world.prune("--ci")
    assert not world.works(c)


# -- the recursion guard and exit status ---------------------------------------------------------


@pytest.mark.parametrize("wrapper", ["exec", "child"])
@pytest.mark.parametrize("args", [("--version",), ("venv", "{root}/loop-venv")], ids=["sh-launcher", "python-entry"])
def test_a_wrapper_that_calls_uv_ends_with_a_clear_error(world: World, wrapper, args):
    """A `uv` wrapper script on PATH between the shim and the real uv, which itself calls `uv`
    (by exec, or as a child): the shim finds the wrapper as "the real uv", and without a guard the
    chain would never end."""
    wdir = world.root / "wrapper"
    wdir.mkdir()
    (wdir / "uv").write_text("#!/bin/sh\n" + ('exec uv "$@"\n' if wrapper == "exec" else 'uv "$@"\n'))
    (wdir / "uv").chmod(0o755)
    env = world.env()
    env["PATH"] = os.pathsep.join([str(world.shim_home / "bin"), str(wdir), env["PATH"]])
    argv = [a.format(root=world.root) for a in args]
    out = subprocess.run(
        [str(world.shim_uv), *argv], env=env, cwd=world.root, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 2, out.stderr[-2000:]
    assert "recursion" in out.stderr and "UV_SHIM_REAL_UV" in out.stderr, out.stderr[-2000:]


def _uv_of(pid: int, shim: bool, real: str) -> psutil.Process:
    """The uv process doing the work: the process itself (bare, or the launcher once it has
    exec'ed uv), else the shim's long-lived uv child (a short one, such as a version query, is not it)."""
    if not shim:
        return psutil.Process(pid)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        procs = []
        for p in [psutil.Process(pid), *_tree(pid)]:
            try:
                if os.path.realpath(p.exe()) == real:
                    procs.append(p)
            except psutil.Error:
                continue
        if procs:
            time.sleep(0.3)
            if procs[0].is_running() and procs[0].status() != psutil.STATUS_ZOMBIE:
                return procs[0]
        time.sleep(0.05)
    raise AssertionError("the shim never started uv")


def _killed(w: World, shim: bool, how: str, foreground: str = "0") -> int:
    v = w.root / "sig"
    if not v.exists():
        w.venv("sig")
    proc = subprocess.Popen(
        [
            str(w.shim_uv if shim else w.real_uv),
            "pip",
            "install",
            "--python",
            str(v / "bin" / "python"),
            "-r",
            "/dev/stdin",
        ],
        env=w.env(UV_LINK_MODE="symlink", UV_SHIM_FOREGROUND=foreground),
        cwd=w.root,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    uv = _uv_of(proc.pid, shim, os.path.realpath(w.real_uv))
    if how == "term-to-caller":
        proc.send_signal(signal.SIGTERM)
    else:
        uv.send_signal(signal.SIGKILL)
    code = proc.wait(timeout=60)
    proc.stdin.close()
    return code


@pytest.mark.parametrize("foreground", ["0", "1"])
@pytest.mark.parametrize("how, code", [("term-to-caller", -signal.SIGTERM), ("kill-uv", -signal.SIGKILL)])
def test_an_intercepted_command_ends_the_way_uv_ended(world: World, how, code, foreground):
    """An intercepted install is uv itself (the launcher exec'ed it, its helper in the background)
    or runs uv as a child (Python in front, the bookkeeping follows it): when uv dies by a signal,
    the command dies by the same one, so the caller sees what it sees with the bare uv."""
    assert _killed(world, shim=False, how=how) == code  # the bare uv, for reference
    assert _killed(world, shim=True, how=how, foreground=foreground) == code
    world.settle()


# -- commands that change environments -----------------------------------------------------------


@pytest.mark.parametrize("version", EDGE)
def test_uv_add_and_remove_are_protected(tmp_path, shim_home, wheels, version):
    for w in pair(tmp_path, shim_home, version):
        shim = w.root.name == "shim"
        proj = make_project(w, wheels)
        env = dict(UV_LINK_MODE="symlink", UV_PYTHON=BASE_PYTHON)
        w.uv("add", "-q", "alpha==1.0", "beta==1.0", cwd=proj, shim=shim, **env)
        w.uv("remove", "-q", "beta", cwd=proj, shim=shim, **env)
        if shim:
            assert len(w.pinned()) == 1  # beta's pin went with it
        w.prune("--ci")
        _assert_protected(w, proj / ".venv")


@pytest.mark.parametrize("version", EDGE)
def test_uv_pip_sync_is_protected(tmp_path, shim_home, wheels, version):
    for w in pair(tmp_path, shim_home, version):
        shim = w.root.name == "shim"
        v = w.venv("v")
        (w.root / "req.txt").write_text("alpha==1.0\nbeta==1.0\n")
        w.uv(
            "pip",
            "sync",
            "-q",
            "--python",
            str(v / "bin" / "python"),
            "--no-index",
            "--find-links",
            str(wheels),
            str(w.root / "req.txt"),
            shim=shim,
            UV_LINK_MODE="symlink",
        )
        w.prune("--ci")
        _assert_protected(w, v)


@pytest.mark.parametrize("version", EDGE)
def test_uv_tool_upgrade_is_protected(tmp_path, shim_home, version):
    for w in pair(tmp_path, shim_home, version):
        shim = w.root.name == "shim"
        tw = w.root / "tool-wheels"
        make_wheel(
            tw,
            "gamma",
            "1.0",
            {
                "gamma/cli.py": "def main():\n    print('gamma 1')\n",
                "gamma-1.0.dist-info/entry_points.txt": "[console_scripts]\ngamma = gamma.cli:main\n",
            },
        )
        env = dict(UV_LINK_MODE="symlink", UV_PYTHON=BASE_PYTHON)
        w.uv("tool", "install", "-q", "--no-index", "--find-links", str(tw), "gamma", shim=shim, **env)
        make_wheel(
            tw,
            "gamma",
            "2.0",
            {
                "gamma/cli.py": "def main():\n    print('gamma 2')\n",
                "gamma-2.0.dist-info/entry_points.txt": "[console_scripts]\ngamma = gamma.cli:main\n",
            },
        )
        w.uv("tool", "upgrade", "-q", "gamma", shim=shim, **env)
        tool_env = w.root / "tools" / "gamma"
        assert list(tool_env.glob("lib/python*/site-packages/gamma-2.0.dist-info")), "the upgrade did not happen"
        w.prune("--ci")
        _assert_protected(w, tool_env)
        ran = subprocess.run([str(w.root / "tool-bin" / "gamma")], capture_output=True, text=True, env=w.env())
        assert (ran.stdout.strip() == "gamma 2") == shim, ran.stderr


# -- the cache under another name ----------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["symlink", "relative"])
def test_a_cache_reached_by_another_spelling_keeps_its_pins(tmp_path, shim_home, wheels, spelling):
    """Installed through one spelling of the cache's path, pruned through another: the rescan
    knows the links are into this cache. Control: the bare uv breaks the environment."""
    for w in pair(tmp_path, shim_home, NEWEST):
        shim = w.root.name == "shim"
        w.cache.mkdir()
        if spelling == "symlink":
            os.symlink(w.cache, w.root / "cache-link")
            install_as = str(w.root / "cache-link")
        else:
            install_as = "cache"  # relative to the working directory (w.root)
        v = w.venv("v")
        w.install(v, "alpha==1.0", find_links=wheels, shim=shim, UV_CACHE_DIR=install_as)
        # the environment changes (the bare uv, under the cache's own path): the next prune
        # through the shim must rescan it and tell where each link leads
        w.install(v, "beta==1.0", find_links=wheels, shim=False)
        if shim:
            out = w.uv("cache", "prune", "--ci")  # through the shim, under the cache's own path
            assert "Released" not in out.stderr, out.stderr
        else:
            w.prune("--ci")
        w.prune("--ci")
        _assert_protected(w, v)


def test_a_cache_path_this_host_cannot_see_fails_closed(tmp_path, shim_home, wheels):
    """Installed through a bind mount of the cache; the mount is gone, its empty folder remains.
    The environment's links cannot be checked from here: the prune through the shim keeps its
    archives (fail closed). Control: the bare prune deletes them (seen once the mount is back)."""
    if os.geteuid() != 0:
        pytest.skip("bind mounts need root")
    for w in pair(tmp_path, shim_home, NEWEST):
        shim = w.root.name == "shim"
        w.cache.mkdir()
        mnt = w.root / "mnt"
        mnt.mkdir()
        if subprocess.run(["mount", "--bind", str(w.cache), str(mnt)], capture_output=True).returncode != 0:
            pytest.skip("cannot bind-mount here")
        try:
            v = w.venv("v")
            w.install(v, "alpha==1.0", find_links=wheels, shim=shim, UV_CACHE_DIR=str(mnt))
        finally:
            subprocess.run(["umount", str(mnt)], check=True)
        w.install(v, "beta==1.0", find_links=wheels, shim=False)  # changed since: a rescan decides
        if shim:
            w.uv("cache", "prune", "--ci")
        w.prune("--ci")
        subprocess.run(["mount", "--bind", str(w.cache), str(mnt)], check=True)
        try:
            _assert_protected(w, v)
        finally:
            subprocess.run(["umount", str(mnt)], check=True)


@pytest.mark.parametrize("version", EDGE)
def test_uv_run_with_pins_what_its_cached_environment_links(tmp_path, shim_home, wheels, version):
    """`uv run --with` builds an environment inside the cache. Through the shim, what it links is
    pinned (by the helper that finishes each run's bookkeeping), so a bare
    prune --ci keeps it and uv rebuilds the environment from it offline. Control: the bare uv."""
    for w in pair(tmp_path, shim_home, version):
        shim = w.root.name == "shim"
        args = [
            "run",
            "--no-project",
            "--python",
            BASE_PYTHON,
            "--no-index",
            "--find-links",
            str(wheels),
            "--with",
            "alpha==1.0",
            "python",
            "-c",
            "import alpha; print(alpha.VALUE)",
        ]
        for _ in range(2):
            out = w.uv(*args, shim=shim, UV_LINK_MODE="symlink")
            assert out.stdout.strip() == "alpha-1.0", out.stderr
        w.settle()
        w.prune("--ci")
        kept = [a for a in w.archives() if list((w.cache / "archive-v0" / a).glob("alpha-1.0.dist-info"))]
        assert bool(kept) == shim, (shim, w.archives())
