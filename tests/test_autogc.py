"""The automatic prune (issue 17): off by default; when due after an intercepted command it runs
in the background with the same protections as a prune by hand, gives up at once when the cache
is in use, keeps the cache within budget, and logs every run or skip for `uv-shim status`."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

from conftest import World, du_bytes, hold_shared_lock, make_wheel


def shim_cmd(w: World, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "shim", *args], env=w.env(**env), capture_output=True, text=True, cwd=w.root, check=True
    )


def log_entries(w: World) -> list[dict]:
    path = w.shim_home / "state" / "gc.log"
    if not path.exists():
        return []
    return [e for e in map(json.loads, path.read_text().splitlines()) if e["cache"] == str(w.cache)]


def wait_for_log(w: World, count: int, timeout: float = 30.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        entries = log_entries(w)
        if len(entries) >= count or time.monotonic() > deadline:
            return entries
        time.sleep(0.05)


def fresh(world: World) -> World:
    """Each test its own state dir (stamps and log live there)."""
    for name in ("gc.log", "gc.log.old", "gc"):
        p = world.shim_home / "state" / name
        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    return world


def with_a_gone_env(world: World, wheels) -> tuple[World, Path]:
    """A fresh state dir, a venv ``v`` to install into, and one archive (beta) that only a
    deleted environment used: what an automatic prune with ``unused`` removes."""
    w = fresh(world)
    v, gone = w.venv("v"), w.venv("gone")
    w.install(gone, "beta==1.0", find_links=wheels)
    shutil.rmtree(gone)
    return w, v


def test_off_by_default(world: World, wheels):
    w, v = with_a_gone_env(world, wheels)
    for _ in range(3):
        w.install(v, "alpha==1.0", find_links=wheels)
    time.sleep(1)
    w.settle()
    assert log_entries(w) == [] and len(w.archives()) == 2  # nothing ran, nothing went
    assert "off" in shim_cmd(w, "status").stdout.split("Auto GC:")[1].splitlines()[0]


def test_runs_in_the_background_when_due_and_logs_it(world: World, wheels):
    w, v = with_a_gone_env(world, wheels)
    auto = {"UV_SHIM_AUTO_UNUSED": "1"}
    bare = w.install(w.venv("b"), "alpha==1.0", find_links=wheels, shim=False)  # first: it would hold the cache
    out = w.install(v, "alpha==1.0", find_links=wheels, **auto)
    assert (out.returncode, out.stdout, out.stderr) == (bare.returncode, bare.stdout, bare.stderr)  # uv's, and only
    (entry,) = wait_for_log(w, 1)
    assert entry["outcome"] == "ran" and entry["policy"] == {"unused": True, "every": 86400.0}
    assert entry["removed"]["archives"] == 1 and w.works(v)
    w.install(v, "gamma==1.0", find_links=wheels, **auto)  # not due again for a day: no second run
    time.sleep(1)
    assert len(log_entries(w)) == 1
    status = json.loads(shim_cmd(w, "status", "--json", **auto).stdout)["auto_gc"]
    assert status["policy"]["unused"] and status["last"]["outcome"] == "ran"
    assert status["next_due"] > time.time() + 86000


def test_relative_paths_in_the_environment_still_reach_the_prune(world: World, wheels):
    """The real uv found through a relative PATH entry, uv-shim's home given relative: the command
    and its helper read them from the user's folder, and the automatic prune, which leaves that
    folder for `/` (it keeps no user folder busy), must still find the same uv and the same state
    (stamp and log), never a `rel/...` under `/`."""
    w, v = with_a_gone_env(world, wheels)
    (w.root / "uvbin").symlink_to(w.real_uv.parent)  # `uvbin` is nothing from `/`
    rel = {
        "PATH": os.pathsep.join([str(w.shim_home / "bin"), "uvbin", os.environ["PATH"]]),
        "UV_SHIM_HOME": os.path.relpath(w.shim_home, w.root),
        "UV_SHIM_AUTO_UNUSED": "1",
    }
    w.uv(*w.install_args(v, "alpha==1.0", find_links=wheels), cwd=w.root, UV_LINK_MODE="symlink", **rel)
    (entry,) = wait_for_log(w, 1)
    assert entry["outcome"] == "ran" and entry["removed"]["archives"] == 1, entry
    assert w.works(v)


def test_a_busy_cache_is_left_alone_at_once(world: World, wheels):
    w, v = with_a_gone_env(world, wheels)
    auto = {"UV_SHIM_AUTO_UNUSED": "1", "UV_SHIM_AUTO_EVERY": "0"}
    holder = hold_shared_lock(w.cache / ".lock")  # a long `uv run`, say
    try:
        w.install(v, "alpha==1.0", find_links=wheels, **auto)
        (entry,) = wait_for_log(w, 1)
        assert entry["outcome"] == "skipped" and entry["reason"] == "the cache is in use"
        assert len(w.archives()) == 2
    finally:
        holder.kill()
        holder.wait()
    w.install(v, "alpha==1.0", find_links=wheels, **auto)
    entries = wait_for_log(w, 2)
    assert entries[-1]["outcome"] == "ran" and entries[-1]["removed"]["archives"] == 1


def test_min_free_reclaims_until_the_filesystem_has_room(world: World, wheels):
    w = fresh(world)
    v, gone = w.venv("v"), w.venv("gone")
    w.install(v, "alpha==1.0", find_links=wheels)
    w.install(gone, "beta==1.0", "gamma==1.0", find_links=wheels)
    shutil.rmtree(gone)
    out = shim_cmd(w, "gc", "--auto", "--json", UV_SHIM_AUTO_MIN_FREE="1000000TiB")  # never enough: all unused goes
    entry = json.loads(out.stdout)
    assert entry["outcome"] == "ran" and entry["removed"]["archives"] == 2 and entry["policy"]["min-free"] > 0
    assert w.works(v) and len(w.archives()) == 1
    enough = json.loads(shim_cmd(w, "gc", "--auto", "--json", UV_SHIM_AUTO_MIN_FREE="1KiB").stdout)
    assert enough["outcome"] == "skipped" and enough["reason"] == "enough free space"


def test_every_invocation_in_a_loop_breaks_nothing_and_ends_in_budget(world: World, wheels):
    """Installs through the shim in a loop, an automatic --max-size run due after every one of
    them (every = 0): no live environment ever breaks and the cache ends within budget. Control:
    without uv-shim's pins a bare prune breaks the same environments."""
    w = fresh(world)
    rng = random.Random(17)
    wheels = w.root / "big"  # archives of 200 KB: they, not uv-shim's records, make the size
    for name in ("big1", "big2", "big3", "big4"):
        make_wheel(wheels, name, "1.0", {f"{name}/data.txt": name * 50_000})
    specs = ["big1==1.0", "big2==1.0", "big3==1.0", "big4==1.0"]
    probe = w.venv("probe")
    w.install(probe, *specs, find_links=wheels)
    shutil.rmtree(probe)
    largest = max(du_bytes(w.cache / "archive-v0" / a) for a in w.archives())
    archives = sum(du_bytes(w.cache / "archive-v0" / a) for a in w.archives())
    # room for what one environment keeps, uv's other entries and uv-shim's records as they
    # grow (64 KiB), never for all four archives: the runs must evict to get there
    budget = du_bytes(w.cache, skip="-") - archives + 2 * largest + 64 * 1024
    assert budget < du_bytes(w.cache, skip="-")
    auto = {"UV_SHIM_AUTO_MAX_SIZE": str(budget), "UV_SHIM_AUTO_EVERY": "0"}
    live: list[Path] = []
    deadline, i = time.monotonic() + 12, 0
    while time.monotonic() < deadline:
        v = w.root / f"v{i % 3}"  # three paths in turn: uv's interpreter entries do not pile up
        if v.exists():
            shutil.rmtree(v)
        v = w.venv(v.name)
        w.install(v, *rng.sample(specs, 2), find_links=wheels, **auto)
        live = [e for e in live if e != v][-1:] + [v]
        for env in live:
            assert w.works(env), (env, w.broken(env), log_entries(w)[-3:])
        i += 1
    for old in [p for p in w.root.glob("v[0-9]") if p != live[-1]]:  # the day ends: one stays
        shutil.rmtree(old)
    live = live[-1:]
    time.sleep(0.5)
    w.settle()
    final = json.loads(shim_cmd(w, "gc", "--auto", "--json", **auto).stdout)
    runs = [e for e in log_entries(w) if e["outcome"] == "ran"]
    assert len(runs) >= 3 and any(e["removed"]["archives"] for e in runs[:-1]), log_entries(w)
    assert final["outcome"] == "ran" and du_bytes(w.cache, skip="-") <= budget, (final, budget)
    assert all(w.works(env) for env in live)
    shutil.rmtree(w.manifest_dir())  # control: the same world, unprotected
    w.uv("cache", "prune", "--ci", shim=False)
    assert not all(w.works(env) for env in live)


def test_last_use_comes_from_the_record_not_from_file_times(world: World, wheels):
    """Archives restored from a CI cache or baked into an image carry the mtime of that moment:
    an environment recorded as used keeps its archives young. Control: the same archive times on
    an archive no record names make it old."""
    import os

    w = fresh(world)
    used, bare = w.venv("used"), w.venv("bare")
    w.install(used, "alpha==1.0", find_links=wheels)
    w.install(bare, "beta==1.0", find_links=wheels, shim=False)  # the shim never saw it
    shutil.rmtree(used)  # no pin holds alpha any more: only its record's last use keeps it young
    for aid in w.archives():
        os.utime(w.cache / "archive-v0" / aid, (946684800, 946684800))  # built into an image in 2000
    dry = json.loads(w.uv("cache", "prune", "--max-age", "30d", "--dry-run", "--json").stdout)
    chosen = {a["what"] for a in dry["evict"]["archives"]}
    assert chosen == {"beta==1.0"}, dry["evict"]


def test_du_by_package(world: World, wheels):
    w = fresh(world)
    a, b = w.venv("a"), w.venv("b")
    w.install(a, "alpha==1.0", "beta==1.0", find_links=wheels)
    w.install(b, "beta==1.0", find_links=wheels, mode="hardlink")
    doc = json.loads(shim_cmd(w, "du", "--json").stdout)
    assert set(doc) == {"cache", "size_bytes", "packages"}
    rows = doc["packages"]
    assert [r["bytes"] for r in rows] == sorted((r["bytes"] for r in rows), reverse=True)
    by = {(r["name"], r["version"]): r for r in rows}
    assert set(by) == {("alpha", "1.0"), ("beta", "1.0")}
    assert by[("beta", "1.0")]["environments"] == sorted([str(a.resolve()), str(b.resolve())])
    for r in rows:
        assert set(r) == {"name", "version", "archives", "bytes", "last_used", "environments"}
        assert r["bytes"] == du_bytes(w.cache / "archive-v0" / _archive(w, r["name"]))
    text = shim_cmd(w, "du").stdout.splitlines()
    assert text[0].split() == ["PACKAGE", "VERSION", "SIZE", "LAST", "USED", "ENVS"] and "#" in text[1]


def _archive(w: World, name: str) -> str:
    return next(a for a in w.archives() if (w.cache / "archive-v0" / a / f"{name}-1.0.dist-info").is_dir())
