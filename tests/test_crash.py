"""kill -9 the shim at seeded random points of bookkeeping and of prune (issue 7).

After each kill: every record parses, and once a prune through the shim has run, no environment
is broken and no temp file a killed writer left is still there.
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
    """Start the shim, SIGKILL it (only it) after ``delay``, then let its uv child finish."""
    proc = subprocess.Popen([str(world.shim_uv), *args], env=env, cwd=world.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    try:
        os.kill(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    psutil.wait_procs(children, timeout=60)


def _check(world: World, venvs) -> None:
    for entry in world.manifest_dir().iterdir() if world.manifest_dir().is_dir() else []:
        if (entry / manifest.RECORD).exists():
            manifest.load(str(entry))  # parses (atomic writes: old or new, never torn)
    world.uv("cache", "prune", "-q")  # through the shim: re-verifies every root
    world.prune()  # and the bare uv after it
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
        v = rng.choice(venvs)
        specs = rng.sample(SPECS, 2)
        if "alpha==1.0" in specs and "alpha==2.0" in specs:
            specs = ["alpha==1.0", "beta==1.0"]
        args = ["pip", "install", "-q", "--python", str(v / "bin" / "python"), "--no-index", "--find-links", str(wheels), *specs]
        if rng.random() < 0.2:
            args = ["pip", "uninstall", "-q", "--python", str(v / "bin" / "python"), specs[0].split("==")[0]]
        _kill_at(world, args, rng.uniform(0, 0.25), env)
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
        extra = rng.choice([[], ["--ci"], ["--unused"], ["--max-size", "1"]])
        _kill_at(world, ["cache", "prune", *extra], rng.uniform(0, 0.3), env)
        if trial % 5 == 4:
            _check(world, venvs)
    _check(world, venvs)
