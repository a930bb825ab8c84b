"""Reclaim what nothing uses (issue 4): --unused, --max-age, --max-size, --keep-recent."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import World, du_bytes, make_sdist
from test_protection import _refresh_scenario


def gc(w: World, *args: str, check: bool = True, **env: str):
    return w.uv("cache", "prune", *args, check=check, **env)


def _archive_of(w: World, venv: Path, module: str) -> str:
    """The archive a venv's module comes from (symlink) or shares an inode with (hardlink)."""
    f = next(venv.glob(f"lib/python*/site-packages/{module}/__init__.py"))
    if f.is_symlink():
        return os.readlink(f).split("/archive-v0/")[1].split("/")[0]
    ino = f.stat().st_ino
    for a in (w.cache / "archive-v0").iterdir():
        g = a / module / "__init__.py"
        if g.exists() and g.stat().st_ino == ino:
            return a.name
    raise AssertionError("no archive")


@pytest.mark.network
@pytest.mark.parametrize("mode", ["hardlink", "symlink"])
def test_seed_16008_walkthrough(world: World, mode):
    """Two venvs with cowsay; remove alpha: kept; remove beta: --unused removes it."""
    alpha, beta = world.venv("alpha"), world.venv("beta")
    world.install(alpha, "cowsay==6.1", mode=mode)
    world.install(beta, "cowsay==6.1", mode=mode)
    aid = _archive_of(world, beta, "cowsay")
    gc(world, "--unused")
    assert aid in world.archives()
    shutil.rmtree(alpha)
    out = gc(world, "--unused")
    assert aid in world.archives() and world.python(beta, "import cowsay").returncode == 0
    if mode == "hardlink":
        assert "hardlinked into environments: removing them frees nothing" in out.stderr
    shutil.rmtree(beta)
    out = gc(world, "--unused")
    assert aid not in world.archives()
    assert ": 1 archive (" in out.stderr
    gamma = world.venv("gamma")  # and uv installs it again as if never cached
    world.install(gamma, "cowsay==6.1", mode=mode)
    assert world.python(gamma, "import cowsay; cowsay.cow('moo')").returncode == 0


def test_mixed_scenario_breaks_nothing(world: World, wheels):
    a, b = _refresh_scenario(world, wheels, shim=True)  # two live symlink venvs, a orphaned by --refresh
    local = world.root / "wheels"
    hard, hard_gone, copy, sym_gone = (world.venv(n) for n in ("hard", "hard_gone", "copy", "sym_gone"))
    world.install(hard, "beta==1.0", find_links=local, mode="hardlink")
    world.install(hard_gone, "gamma==1.0", find_links=local, mode="hardlink")
    world.install(copy, "alpha==2.0", find_links=local, mode="copy")
    world.install(sym_gone, "gamma==1.0", "alpha==2.0", find_links=local)
    shutil.rmtree(hard_gone)
    shutil.rmtree(sym_gone)
    live_links = {_archive_of(world, a, "alpha"), _archive_of(world, b, "alpha"), _archive_of(world, hard, "beta")}
    dry = json.loads(gc(world, "--unused", "--dry-run", "--json").stdout)
    before = set(world.archives())
    out = gc(world, "--unused")
    assert set(world.archives()) == live_links
    assert before - live_links == {x["id"] for x in dry["removed"]["archives"]["items"]}  # the dry run said so
    for venv, mod, value in (
        (a, "alpha", "alpha-1.0"),
        (b, "alpha", "alpha-1.0"),
        (hard, "beta", "beta-1.0"),
        (copy, "alpha", "alpha-2.0"),
    ):
        assert world.value(venv, mod) == value
    assert "Skipped 1 archive hardlinked into environments" in out.stderr


def test_freed_bytes_are_honest(world: World, wheels):
    a, h = world.venv("a"), world.venv("h")
    world.install(a, "alpha==1.0", find_links=wheels)
    world.install(h, "beta==1.0", find_links=wheels, mode="hardlink")
    shutil.rmtree(a)
    dry = json.loads(gc(world, "--unused", "--dry-run", "--json").stdout)
    (gone,) = dry["evict"]["archives"]
    expected = du_bytes(world.cache / "archive-v0" / gone["id"])  # all of it: nothing else links it
    assert dry["removed"]["archives"]["bytes"] == expected > 0
    assert dry["evict"]["skipped_hardlinked"] == [_archive_of(world, h, "beta")]
    real = json.loads(gc(world, "--unused", "--json").stdout)
    assert real["removed"]["archives"] == {"count": 1, "bytes": expected, "items": [{**gone, "bytes": expected}]}


def test_freed_bytes_of_a_hardlinked_archive_uv_removes_are_what_leaves_the_disk(world: World, tmp_path):
    """An environment hardlinks an archive that uv's prune then removes (a --refresh left it
    unreferenced): only what no environment links comes off the disk, folders, the RECORD uv
    copies and the `.data/scripts` files it rewrites included (``sizes._private``). Checked
    against each inode's own link count, measured before the prune."""
    from conftest import make_wheel

    local = tmp_path / "local"
    whl = make_wheel(local, "delta", "1.0", {"delta-1.0.data/scripts/delta-tool": "#!python\nprint('hi')\n"})
    h, e = world.venv("h"), world.venv("e")
    world.install(h, "delta==1.0", find_links=local, mode="hardlink")
    old = _archive_of(world, h, "delta")
    st = whl.stat()
    os.utime(whl, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    world.install(e, "delta==1.0", find_links=local, extra=["--refresh"])
    assert _archive_of(world, e, "delta") != old
    expected, scripts = 0, 0
    for path in [world.cache / "archive-v0" / old, *(world.cache / "archive-v0" / old).rglob("*")]:
        info = path.lstat()
        if path.is_symlink() or path.is_dir() or info.st_nlink == 1:  # no environment links it
            expected += info.st_blocks * 512
            scripts += info.st_blocks * 512 if path.parent.name == "scripts" else 0
    assert scripts > 0 and expected < du_bytes(world.cache / "archive-v0" / old)
    out = json.loads(gc(world, "--json").stdout)
    assert old not in world.archives() and world.works(h) and world.works(e)
    assert [i["id"] for i in out["removed"]["archives"]["items"]] == [old]
    assert out["removed"]["archives"]["bytes"] == expected, (out["removed"], expected)


def test_local_wheel_installs_again_after_eviction(world: World, wheels):
    """Without removing the `.rev` pointer uv fails on a local wheel whose archive is gone."""
    whl = wheels / "alpha-1.0-py3-none-any.whl"
    v = world.venv("v")
    world.uv("pip", "install", "-q", "--python", str(v / "bin" / "python"), str(whl), UV_LINK_MODE="symlink")
    shutil.rmtree(v)
    gc(world, "--unused")
    assert world.archives() == []
    w2 = world.venv("w2")
    world.uv("pip", "install", "-q", "--python", str(w2 / "bin" / "python"), str(whl), UV_LINK_MODE="symlink")
    assert world.value(w2, "alpha") == "alpha-1.0"


def test_wheel_built_from_sdist_installs_again_after_eviction(world: World):
    sdist = make_sdist(world.root)
    v = world.venv("v")
    args = ["pip", "install", "-q", "--no-index", "--find-links", str(sdist.parent)]
    world.uv(*args, "--python", str(v / "bin" / "python"), "sdpkg==1.0", UV_LINK_MODE="symlink")
    assert world.value(v, "sdpkg") == "built-from-sdist"
    shutil.rmtree(v)
    out = gc(world, "--unused")
    assert ": 1 archive (" in out.stderr and world.archives() == []
    w2 = world.venv("w2")
    world.uv(*args, "--python", str(w2 / "bin" / "python"), "sdpkg==1.0", UV_LINK_MODE="symlink")
    assert world.value(w2, "sdpkg") == "built-from-sdist"


def test_max_age_keep_recent_and_max_size(world: World, wheels):
    vs = [world.venv(f"v{i}") for i in range(3)]
    for v, spec in zip(vs, ["alpha==1.0", "beta==1.0", "gamma==1.0"]):
        world.install(v, spec, find_links=wheels, shim=spec != "alpha==1.0")  # alpha: never seen by the shim
    ids = {spec: _archive_of(world, v, spec.split("==")[0]) for v, spec in zip(vs, ["alpha", "beta", "gamma"])}
    for v in vs:
        shutil.rmtree(v)
    old = time.time() - 40 * 86400
    os.utime(world.cache / "archive-v0" / ids["alpha"], (old, old))  # never seen through the shim: creation time
    # the others were last used now (their records): a prune remembers that when their roots go
    out = gc(world, "--max-age", "30d", "--dry-run", "--json")
    assert [x["id"] for x in json.loads(out.stdout)["evict"]["archives"]] == [ids["alpha"]]  # the others: used now
    gc(world)  # the dead roots go, their last use stays in the memo
    memo = (world.manifest_dir() / ".archive-last-use").read_text()
    assert ids["beta"] in memo and ids["gamma"] in memo
    kept = gc(world, "--unused", "--keep-recent", "1h", "--dry-run", "--json")
    assert sorted(json.loads(kept.stdout)["evict"]["kept_recent"]) == sorted([ids["beta"], ids["gamma"]])
    doc = json.loads(gc(world, "--max-size", "1", "--dry-run", "--json").stdout)
    size = doc["evict"]
    assert [x["id"] for x in size["archives"]][0] == ids["alpha"]  # least recently used first
    assert len(size["archives"]) == 3  # until the cache fits
    budget = doc["cache_bytes_before"] - 1
    one = json.loads(gc(world, "--max-size", str(budget), "--dry-run", "--json").stdout)["evict"]["archives"]
    assert len(one) == 1
    gc(world, "--max-size", str(budget))
    assert sorted(world.archives()) == sorted([ids["beta"], ids["gamma"]])


def test_defaults_from_variables_and_config(world: World, wheels):
    v = world.venv("v")
    world.install(v, "alpha==1.0", find_links=wheels)
    shutil.rmtree(v)
    cfg = world.root / "uv-shim.toml"
    cfg.write_text('[prune]\nmax-size = "not a size"\n')
    out = gc(world, "--dry-run", UV_SHIM_CONFIG=str(cfg))
    assert f"uv-shim: warning: ignoring {cfg}: prune.max-size: `not a size` is not a size (like 10GiB)" in out.stderr
    cfg.write_text("[prune]\nunused = true\n")
    out = gc(world, UV_SHIM_CONFIG=str(cfg))
    assert ": 1 archive (" in out.stderr and world.archives() == []
    bad = gc(world, "--max-age", "soon", check=False)
    assert bad.returncode == 2 and bad.stderr == "uv-shim: error: --max-age: `soon` is not a duration (like 30d, 12h)\n"
    (world.root / "x").mkdir()
    out = gc(world, "--dry-run", "--json", UV_SHIM_UNUSED="1")
    assert json.loads(out.stdout)["evict"]["archives"] == []


def test_uv_shim_gc_is_the_same(world: World, wheels):
    v = world.venv("v")
    world.install(v, "alpha==1.0", find_links=wheels)
    shutil.rmtree(v)
    out = subprocess.run(
        [sys.executable, "-m", "shim", "gc", "--unused"], env=world.env(), capture_output=True, text=True
    )
    assert out.returncode == 0 and ": 1 archive (" in out.stderr and world.archives() == []


def test_max_size_out_of_reach_says_why(world: World, wheels):
    """`--max-size 1B` cannot be met while an environment lives: the prune says in one line how
    much live environments hold and names the largest, and exits 0; the dry run says the same."""
    a, b = world.venv("a"), world.venv("b")
    world.install(a, "alpha==1.0", "beta==1.0", find_links=wheels)
    world.install(b, "gamma==1.0", find_links=wheels)
    dry = world.uv("cache", "prune", "--max-size", "1B", "--dry-run", "--json")
    doc = json.loads(dry.stdout)
    assert doc["cache_bytes_after"] > 1
    doc = doc["evict"]
    assert doc["budget_bytes"] == 1
    assert [h["path"] for h in doc["held_by_live_environments"]][0] == str(a.resolve())  # two packages: the largest
    out = world.uv("cache", "prune", "--max-size", "1B")
    line = [ln for ln in out.stderr.splitlines() if "over the 1B budget" in ln]
    assert out.returncode == 0 and len(line) == 1, out.stderr
    assert f"the largest: {a.resolve()}" in line[0] and "live environments hold" in line[0]
    assert world.works(a) and world.works(b)


def test_the_size_after_a_max_size_prune_is_the_cache_on_disk(world: World, wheels):
    """The size a `--max-size` prune reports for the cache after it is what is on disk then (du,
    uv-shim's records included: they count against the budget). The look after takes the record
    area as the look before measured it; this holds it to the truth."""
    a, b = world.venv("a"), world.venv("b")
    world.install(a, "alpha==1.0", "beta==1.0", find_links=wheels)
    world.install(b, "gamma==1.0", find_links=wheels)
    shutil.rmtree(b)
    doc = json.loads(gc(world, "--max-size", "1B", "--json").stdout)
    assert len(doc["evict"]["archives"]) == 1, doc["evict"]
    assert doc["cache_bytes_after"] == du_bytes(world.cache, skip="-")
    assert du_bytes(world.manifest_dir(), skip="-") > 0
