"""kill -9 the shim at seeded random points of bookkeeping and of prune (issues 7 and 11).

After each kill, first a **bare** ``uv cache prune --ci`` (before any prune through the shim can
repair anything): every distribution that was protected before the killed command and is still
installed must be intact, so pins are written before records and before old pins go, at every
point. Then: every record parses, and once a prune through the shim has run, no environment is
broken and no temp file a killed writer left is still there.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time

import psutil
import pytest
from conftest import World

from shim import manifest

SPECS = ["alpha==1.0", "alpha==2.0", "beta==1.0", "gamma==1.0"]


def _kill_at(world: World, args, delay: float, env) -> None:
    """Start the shim, SIGKILL it (only it) after ``delay``, then let uv finish. "The shim" is
    the Python in front of uv (its child), or, where the launcher exec'ed uv itself, the
    background helper it started for that uv (``+uv``, the same pid in its arguments)."""
    from shim.realuv import BOOT_NAME

    proc = subprocess.Popen(
        [str(world.shim_uv), *args], env=env, cwd=world.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    time.sleep(delay)
    targets, children = [proc.pid], []
    try:
        front = psutil.Process(proc.pid)
        if not any(part.endswith(BOOT_NAME) for part in front.cmdline()):  # uv itself: kill its helper
            targets = [p.pid for p in psutil.process_iter(["cmdline"]) if _helper_of(p.info["cmdline"] or [], proc.pid)]
        children = front.children(recursive=True)
    except psutil.NoSuchProcess:
        pass
    for pid in targets:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    psutil.wait_procs(children, timeout=60)


def _helper_of(argv: list[str], uv_pid: int) -> bool:
    """``python -S -E <boot> +uv <self> <real> <uv's pid> ...``: the launcher's helper for that uv."""
    from shim.realuv import BOOT_NAME

    at = next((i for i, part in enumerate(argv) if part.endswith(BOOT_NAME)), None)
    return at is not None and argv[at + 1 : at + 2] in (["+uv"], ["+uvx"]) and argv[at + 4 : at + 5] == [str(uv_pid)]


def _dists(v) -> set:
    return {p.name for p in next(v.glob("lib/python*/site-packages")).glob("*.dist-info")}


def _pinned_dists(world: World, v) -> set:
    """The distributions of ``v`` whose archive is pinned (in any uv version's bucket)."""
    from shim.manifest import pin_id

    pinned = {pin_id(p.name) for p in world.cache.glob("sdists-v*/uv-shim/*/pin_*")}
    out = set()
    for info in _dists(v):
        meta = next(v.glob("lib/python*/site-packages")) / info / "METADATA"
        if meta.is_symlink() and os.readlink(meta).split("/archive-v0/")[-1].split("/")[0] in pinned:
            out.add(info)
    return out


def _intact(v, info: str) -> bool:
    site = next(v.glob("lib/python*/site-packages"))
    record = site / info / "RECORD"
    if not record.is_file():
        return False
    return all(
        os.path.exists(os.path.normpath(site / line.rsplit(",", 2)[0]))
        for line in record.read_text().splitlines()
        if line.strip()
    )


def _records_claim_only_pinned_archives(world: World) -> None:
    """Pins are written before the record: whatever a record says an environment links by
    symlink has its pin beside it, at every moment (else the next prune trusts the record and
    never writes the pin)."""
    from shim.manifest import pin_id

    for d in world.cache.glob("sdists-v*/uv-shim/*"):
        if d.name.startswith(".") or not (d / manifest.RECORD).is_file():
            continue
        rec = manifest.load(str(d))
        pinned = {pin_id(p.name) for p in d.iterdir()} - {None}
        assert set(rec.pinned) <= pinned, (
            f"{rec.path}: the record names {sorted(set(rec.pinned) - pinned)} without their pins"
        )


def _bare_prune_first(world: World, venvs, protected: dict, wheels) -> None:
    """The bare uv prunes right after the kill: what was protected before must have stayed so.
    Then whatever the kill left unprotected (and the bare prune broke) is installed again
    through the shim, so the next trial starts from a protected world."""
    _records_claim_only_pinned_archives(world)
    world.prune("--ci")
    for v in venvs:
        broken = sorted(info for info in protected[v] & _dists(v) if not _intact(v, info))
        assert not broken, f"{v.name}: {broken} lost their protection when the shim was killed"
    world.uv("cache", "prune", "-q")
    for v in venvs:
        specs = [info[: -len(".dist-info")].replace("-", "==", 1) for info in _dists(v) if not _intact(v, info)]
        if specs:
            world.install(v, *specs, find_links=wheels, extra=["--reinstall"])


def _check(world: World, venvs) -> None:
    for entry in world.manifest_dir().iterdir() if world.manifest_dir().is_dir() else []:
        if (entry / manifest.RECORD).exists():
            manifest.load(str(entry))  # parses (atomic writes: old or new, never torn)
    world.uv("cache", "prune", "-q")  # through the shim: re-verifies every root
    world.prune("--ci")  # and the bare uv after it, dropping uv's own index too
    for v in venvs:
        site = next(v.glob("lib/python*/site-packages"))
        for info in site.glob("*.dist-info"):
            mod = info.name.split("-")[0]
            assert world.value(v, mod) is not None, f"{v.name}: {mod} broken"
    left = [p for p in world.manifest_dir().rglob("*.tmp")] if world.manifest_dir().is_dir() else []
    assert left == [], left


@pytest.mark.parametrize("seed", [11, 12])
def test_kill_during_installs(world: World, wheels, seed):
    rng = random.Random(seed)
    venvs = [world.venv(f"v{i}") for i in range(3)]
    env = world.env(UV_LINK_MODE="symlink")
    for trial in range(30):
        protected = {v: _dists(v) for v in venvs}
        v = rng.choice(venvs)
        specs = rng.sample(SPECS, 2)
        if "alpha==1.0" in specs and "alpha==2.0" in specs:
            specs = ["alpha==1.0", "beta==1.0"]
        args = World.install_args(v, *specs, find_links=wheels)
        if rng.random() < 0.2:
            args = ["pip", "uninstall", "-q", "--python", str(v / "bin" / "python"), specs[0].split("==")[0]]
        _kill_at(world, args, rng.uniform(0, 0.25), env)
        _bare_prune_first(world, venvs, protected, wheels)
        if trial % 10 == 9:
            _check(world, venvs)
    _check(world, venvs)


@pytest.mark.parametrize("seed", [21, 22])
def test_kill_during_prunes(world: World, wheels, seed):
    rng = random.Random(seed)
    venvs = [world.venv(f"v{i}") for i in range(3)]
    for v in venvs:
        world.install(v, *rng.sample(["alpha==1.0", "beta==1.0", "gamma==1.0"], 2), find_links=wheels)
    env = world.env()
    for trial in range(25):
        if rng.random() < 0.3:  # churn: something for the prune to release
            v = rng.choice(venvs)
            world.install(v, rng.choice(["alpha==2.0", "alpha==1.0"]), find_links=wheels)
        protected = {v: _dists(v) for v in venvs}
        extra = rng.choice([[], ["--ci"], ["--unused"], ["--max-size", "1"]])
        _kill_at(world, ["cache", "prune", *extra], rng.uniform(0, 0.3), env)
        _bare_prune_first(world, venvs, protected, wheels)
        if trial % 5 == 4:
            _check(world, venvs)
    _check(world, venvs)


def _kill_before_each_change(world: World, args, setup, venvs, wheels, env, settle: bool = True) -> int:
    """Run ``args`` through the shim once per change it makes in the cache, killed just before
    the 1st, 2nd, ... change, until a run completes: after each kill the bare prune comes first."""
    n = 0
    while True:
        n += 1
        setup()
        if settle:
            world.uv("cache", "prune", "-q")  # the starting point: everything installed is protected
        protected = {v: _pinned_dists(world, v) for v in venvs}
        killed = world.root / "killed"
        killed.unlink(missing_ok=True)
        out = subprocess.run(
            [str(world.shim_uv), *args],
            env={**env, "UV_SHIM_TEST_KILL_AT": str(n), "UV_SHIM_TEST_KILLED": str(killed)},
            cwd=world.root,
            capture_output=True,
            text=True,
        )
        world.settle()  # a background helper killed or done (the bare prune would wait for it too)
        _bare_prune_first(world, venvs, protected, wheels)
        if out.returncode != -signal.SIGKILL and not killed.exists():
            assert out.returncode == 0, out.stderr
            return n
        assert n < 200, "never completed"


@pytest.mark.parametrize("foreground", ["0", "1"])
def test_kill_before_every_change_of_an_upgrade(world: World, wheels, foreground):
    """alpha 1.0 -> 2.0 beside beta: pins for beta and for what is installed never go missing,
    whether the launcher's background helper or the shim in front of uv is killed."""
    v = world.venv("v")
    env = world.env(UV_LINK_MODE="symlink", UV_SHIM_FOREGROUND=foreground)

    def setup() -> None:
        world.install(v, "alpha==1.0", "beta==1.0", find_links=wheels)

    args = World.install_args(v, "alpha==2.0", "gamma==1.0", find_links=wheels)
    changes = _kill_before_each_change(world, args, setup, [v], wheels, env)
    assert changes >= 4, changes  # pins, record, unpin: the points were really visited
    _check(world, [v])


@pytest.mark.parametrize("extra", [["--ci"], ["--unused"]])
def test_kill_before_every_change_of_a_prune(world: World, wheels, extra):
    """A prune that re-pins (a record carried from another state) and evicts, killed before each
    of its changes: a bare prune right after breaks nothing that was protected."""
    import shutil

    venvs = [world.venv("a"), world.venv("b")]
    env = world.env()

    def setup() -> None:
        """Installs through the shim (pinned); then the bare uv changes one environment (the
        prune must rescan it and pin again), and a root dies (the prune must release it)."""
        world.install(venvs[0], "alpha==1.0", "beta==1.0", find_links=wheels)
        world.install(venvs[1], "alpha==2.0", find_links=wheels)
        if list(venvs[0].glob("lib/python*/site-packages/gamma-1.0.dist-info")):
            world.uv("pip", "uninstall", "-q", "--python", str(venvs[0] / "bin" / "python"), "gamma", shim=False)
        else:
            world.install(venvs[0], "gamma==1.0", find_links=wheels, shim=False)
        gone = world.venv("gone")
        world.install(gone, "gamma==1.0", find_links=wheels)
        shutil.rmtree(gone)

    changes = _kill_before_each_change(world, ["cache", "prune", *extra], setup, venvs, wheels, env, settle=False)
    assert changes >= 6, changes
    _check(world, venvs)
