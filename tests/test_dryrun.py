"""``uv cache prune --dry-run`` agrees with what the real prune then does.

Differential test: random caches built with the real uv (random link modes, refreshed and
rebuilt wheels, deleted environments, uvx environments, stale buckets, stray files), then the
dry run's prediction is compared with what the prune through the shim actually removes.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import stat
import subprocess
import time

import pytest
from conftest import VERSIONS, World, du_bytes, make_sdist, make_wheel


def _snapshot(w: World):
    top = sorted(p.name for p in w.cache.iterdir()) if w.cache.is_dir() else []
    return set(top), set(w.archives())


def _inodes(w: World, archives: frozenset) -> set:
    """The files of the unpacked wheels ``archives`` (and so their twins in the files bucket)."""
    return {
        (st.st_dev, st.st_ino)
        for a in archives
        for f in (w.cache / "archive-v0" / a).rglob("*")
        if not stat.S_ISDIR((st := f.lstat()).st_mode)
    }


def _files(w: World, theirs: frozenset = frozenset()) -> int:
    """Files and symlinks in the cache, outside uv-shim's own folders (the prune also updates
    those), leaving out the inodes ``theirs`` (see ``_inodes``)."""
    n = 0
    for root, dirs, files in os.walk(w.cache):
        dirs[:] = [d for d in dirs if d != "uv-shim"]
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            st = os.lstat(os.path.join(root, name))
            n += (st.st_dev, st.st_ino) not in theirs
    return n


def _random_cache(w: World, wheels, rng: random.Random) -> list:
    local = w.root / "wheels"
    shutil.copytree(wheels, local)
    # a platform tag with a dot, like zstandard's: uv < 0.7.9 does not count its wheels-bucket link
    delta = make_wheel(local, "delta", "1.0")
    delta.rename(local / "delta-1.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")
    venvs = []
    for i in range(rng.randint(2, 5)):
        v = w.venv(f"v{i}")
        venvs.append(v)
        specs = rng.sample(["alpha==1.0", "alpha==2.0", "beta==1.0", "gamma==1.0", "delta==1.0"], rng.randint(1, 3))
        if "alpha==1.0" in specs and "alpha==2.0" in specs:
            specs.remove("alpha==2.0")
        mode = rng.choice(["symlink", "symlink", "hardlink", "copy"])
        w.install(
            v,
            *specs,
            find_links=local,
            mode=mode,
            shim=rng.random() < 0.8,
            extra=["--refresh"] if rng.random() < 0.3 else [],
        )
        if rng.random() < 0.3:  # the wheel file changes: the next install unpacks a new archive
            whl = local / "beta-1.0-py3-none-any.whl"
            st = whl.stat()
            os.utime(whl, ns=(st.st_atime_ns, st.st_mtime_ns + rng.randint(1, 9) * 10**9))
    if rng.random() < 0.9:
        uvx = w.shim_uv.parent / "uvx"
        subprocess.run(
            [str(uvx), "-q", "--no-index", "--find-links", str(local), "--from", "gamma==1.0", "gamma"],
            env=w.env(UV_LINK_MODE="symlink"),
            check=True,
            capture_output=True,
        )
        w.settle()  # its bookkeeping finishes in the background
    for v in venvs:
        if rng.random() < 0.35:
            shutil.rmtree(v)
    if rng.random() < 0.6:  # a built sdist, then a new revision of it: the old one stays, stale
        s1, s2 = w.venv("sd1"), w.venv("sd2")
        venvs += [s1, s2]
        sdist = make_sdist(w.root / "sd", "one")
        w.install(s1, "sdpkg==1.0", find_links=sdist.parent, mode=rng.choice(["symlink", "hardlink"]))
        make_sdist(w.root / "sd", "two")
        os.utime(sdist, (time.time() + 5, time.time() + 5))
        w.install(s2, "sdpkg==1.0", find_links=sdist.parent, mode="symlink", extra=["--refresh"])
        if rng.random() < 0.5:
            shutil.rmtree(s1)
    if rng.random() < 0.5:  # a root of another host: kept until its lease ends
        f = w.venv("foreign")
        venvs.append(f)
        w.install(f, "gamma==1.0", find_links=local, UV_SHIM_HOST_ID="other-host")
        shutil.rmtree(f)
    (w.cache / "stray-file.txt").write_text("x")
    if rng.random() < 0.5:
        (w.cache / "wheels-v1" / "pypi").mkdir(parents=True)
    if rng.random() < 0.5:
        (w.cache / "not-a-bucket").mkdir()
    return venvs + [w.root / "tools"]


POLICIES = ([], ["--unused"], ["--max-age", "1s"], ["--unused", "--keep-recent", "1h"], ["--max-size", "HALF"])


def _differential(w: World, extra: list[str], envs: list, **env: str) -> tuple[dict, dict]:
    """The dry run, then the real prune (both through the shim, ``--json``): the dry run changed
    nothing; it named the archives the prune removed and predicted, to the byte, what came off
    the disk (measured by the shim, and by ``du`` of the cache and every environment)."""
    records_before = w.records()
    top_before, archives_before = _snapshot(w)
    dry = json.loads(w.uv("cache", "prune", "--dry-run", "--json", *extra, **env).stdout)
    assert _snapshot(w) == (top_before, archives_before) and w.records().keys() == records_before.keys()
    predicted = frozenset(a["id"] for a in dry["removed"]["archives"]["items"])
    theirs = _inodes(w, predicted)
    files_before = _files(w, theirs)
    du_before = du_bytes(w.cache, *envs)
    real = json.loads(w.uv("cache", "prune", "--json", *extra, **env).stdout)
    du_after = du_bytes(w.cache, *envs)
    top_after, archives_after = _snapshot(w)
    assert dry["dry_run"] and not real["dry_run"]
    d, r = dry["removed"], real["removed"]
    cached_envs = {
        os.path.basename(p) for p in d["other"]["environments"] if os.path.dirname(p) == str(w.cache / "archive-v0")
    }
    assert archives_before - archives_after == predicted | cached_envs, (sorted(archives_before - archives_after), d)
    assert {a["id"] for a in r["archives"]["items"]} == predicted, (r["archives"], d["archives"])
    assert top_before - top_after == {os.path.basename(p) for p in d["other"]["stale"]}
    assert (d["archives"]["count"], d["archives"]["bytes"]) == (r["archives"]["count"], r["archives"]["bytes"]), (d, r)
    assert d["other"]["files"] == r["other"]["files"] == files_before - _files(w, theirs), (d["other"], r["other"])
    assert d["other"]["bytes"] == r["other"]["bytes"], (d["other"], r["other"])
    assert r["bytes"] == d["bytes"] == du_before - du_after, (r["bytes"], d["bytes"], du_before - du_after)
    for keep in dry["kept"]["items"]:
        assert keep["id"] in archives_after
    assert dry["kept"]["archives"] == real["kept"]["archives"] == len(dry["kept"]["items"])
    assert dry["kept"]["bytes"] == real["kept"]["bytes"]
    return dry, real


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_dry_run_predicts_the_prune(tmp_path, shim_home, wheels, monkeypatch, version, seed):
    """Random caches (link modes, refreshed wheels, deleted environments, uvx environments, stale
    buckets, stray files, a root of another host, a stale revision of a built sdist) and a random
    policy: the dry run predicts archives, files and bytes of the prune that follows."""
    monkeypatch.setenv("UV_SHIM_HOME", str(shim_home))
    rng = random.Random(seed * 1000 + VERSIONS.index(version))
    w = World(tmp_path, shim_home, version)
    envs = _random_cache(w, wheels, rng)
    extra = ["--ci"] if rng.random() < 0.5 else []
    policy = list(POLICIES[(seed + VERSIONS.index(version)) % len(POLICIES)])
    if policy[-1:] == ["HALF"]:
        size = json.loads(w.uv("cache", "prune", "--dry-run", "--json").stdout)["cache_bytes_before"]
        policy[-1] = str(size // 2)
    if policy[:1] == ["--max-age"]:
        time.sleep(1.1)
    dry, real = _differential(w, extra + policy, envs)
    if "--max-size" in policy:
        budget = int(policy[-1])
        over = real["cache_bytes_after"] > budget
        assert not over or real["evict"]["held_bytes"] > 0, real
        assert (dry["cache_bytes_after"] > budget) == over, (
            dry["cache_bytes_after"],
            real["cache_bytes_after"],
            budget,
        )


def test_dry_run_human_output(world: World, wheels):
    a, b = world.venv("a"), world.venv("b")
    world.install(a, "alpha==1.0", find_links=wheels)
    world.install(b, "beta==1.0", find_links=wheels)
    shutil.rmtree(b)
    out = world.uv("cache", "prune", "--dry-run", "--ci")
    assert "Would remove archive: beta==1.0 (" in out.stdout
    assert "Keep archive: alpha==1.0 (" in out.stdout and f"used by {a.resolve()}" in out.stdout
    assert "(dry run: nothing is removed)" in out.stderr
    assert "Would free " in out.stderr and ": 1 archive (" in out.stderr and "other cache file" in out.stderr
    assert len(world.archives()) == 2


def test_sizes_agree_with_du(world: World, wheels):
    """One definition of size: `uv-shim status` is `du -s --block-size=1` of the cache (uv-shim's
    own records included), `uv cache prune --max-size` counts the same, and a prune's "freed" is
    what `du` of the cache and its environments loses."""
    from test_views import shim_cmd

    venvs = [world.venv(f"v{i}") for i in range(3)]
    for v, (spec, mode) in zip(venvs, [("alpha==1.0", "symlink"), ("beta==1.0", "hardlink"), ("gamma==1.0", "copy")]):
        world.install(v, spec, find_links=wheels, mode=mode)
    status = json.loads(shim_cmd(world, "status", "--json").stdout)
    du = int(
        subprocess.run(
            ["du", "-s", "--block-size=1", str(world.cache)], capture_output=True, text=True, check=True
        ).stdout.split()[0]
    )
    assert abs(status["size_bytes"] - du) <= du // 100, (status["size_bytes"], du)
    shutil.rmtree(venvs[2])
    dry = json.loads(world.uv("cache", "prune", "--ci", "--dry-run", "--json").stdout)
    before = du_bytes(world.cache, *venvs)
    real = json.loads(world.uv("cache", "prune", "--ci", "--json").stdout)
    assert dry["removed"]["bytes"] == real["removed"]["bytes"] == before - du_bytes(world.cache, *venvs) > 0


def test_the_surveys_links_reach_what_uvs_walk_reaches(any_world: World, wheels):
    """A `--max-size` prune models uv's search for references from the links its first look
    gathered (`evict.Survey.links`), not from a second walk of the buckets: the two must find the
    same references, with uv's filters (a `src` folder, names ending in `.lock` or `.whl`: never
    entered or counted), with folders and links an earlier step of the prune removes, and with a
    bucket that is itself a link (uv walks through it; the look does not). Planted links to
    archives nothing else names sit in each of those places, and at a bucket's top."""
    from shim import evict
    from shim import plan as planner

    w = any_world
    _random_cache(w, wheels, random.Random(7))
    cache = w.cache_object()
    planted = {}
    places = ["planted/src/x", "planted/a.lock", "planted/b.whl/x", "planted/gone/x", "planted/kept/x"]
    places += ["planted/deep/er/x", "top", "top2", "planted/link-gone"]
    for i, where in enumerate(places):
        link = os.path.join(cache.wheels if i % 2 else cache.sdists, where)
        os.makedirs(os.path.dirname(link), exist_ok=True)
        target = os.path.join(cache.archives, f"planted{i}")  # an archive no other link names
        os.mkdir(target)
        os.symlink(target, link)
        planted[where] = link
    survey = evict.Survey(cache, write=False)
    assert set(planted.values()) <= set(survey.links)
    gone = os.path.dirname(planted["planted/gone/x"])
    deep = os.path.dirname(os.path.dirname(planted["planted/deep/er/x"]))
    for skip in (set(), {gone, planted["planted/link-gone"]}, {deep, cache.sdists}):
        walked = planner._references(cache, cache.build.version_tuple, set(skip))
        followed = planner._references(cache, cache.build.version_tuple, set(skip), links=survey.links)
        assert walked == followed, (skip, walked ^ followed)
        assert walked  # there is something to agree on
    # the wheels bucket moved elsewhere, a link left in its place: the look sees only that link
    moved = w.root / "elsewhere"
    os.rename(cache.wheels, moved)
    os.symlink(moved, cache.wheels)
    survey = evict.Survey(cache, write=False)
    walked = planner._references(cache, cache.build.version_tuple, set())
    assert walked == planner._references(cache, cache.build.version_tuple, set(), links=survey.links)
