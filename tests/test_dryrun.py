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
import subprocess

import pytest
from conftest import VERSIONS, World, make_wheel


def _snapshot(w: World):
    top = sorted(p.name for p in w.cache.iterdir()) if w.cache.is_dir() else []
    return set(top), set(w.archives())


def _files(w: World) -> int:
    """Files and symlinks in the cache, outside uv-shim's own folders (the prune also updates those)."""
    n = 0
    for root, dirs, files in os.walk(w.cache):
        dirs[:] = [d for d in dirs if d != "uv-shim"]
        n += len(files) + sum(1 for d in dirs if os.path.islink(os.path.join(root, d)))
    return n


def _random_cache(w: World, wheels, rng: random.Random):
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
    (w.cache / "stray-file.txt").write_text("x")
    if rng.random() < 0.5:
        (w.cache / "wheels-v1" / "pypi").mkdir(parents=True)
    if rng.random() < 0.5:
        (w.cache / "not-a-bucket").mkdir()


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_dry_run_predicts_the_prune(tmp_path, shim_home, wheels, monkeypatch, version, seed):
    monkeypatch.setenv("UV_SHIM_HOME", str(shim_home))
    rng = random.Random(seed * 1000 + VERSIONS.index(version))
    w = World(tmp_path, shim_home, version)
    _random_cache(w, wheels, rng)
    ci = rng.random() < 0.5
    extra = ["--ci"] if ci else []
    records_before = w.records()
    top_before, archives_before = _snapshot(w)
    files_before = _files(w)
    out = w.uv("cache", "prune", "--dry-run", "--json", *extra)
    plan = json.loads(out.stdout)
    assert (
        _snapshot(w) == (top_before, archives_before) and w.records().keys() == records_before.keys()
    )  # nothing changed
    w.uv("cache", "prune", *extra)
    top_after, archives_after = _snapshot(w)
    predicted = {a["id"] for a in plan["remove"]["archives"]}
    removed = archives_before - archives_after
    old_env_archives = {
        os.path.basename(p) for p in plan["remove"]["environments"] if os.path.dirname(p) == str(w.cache / "archive-v0")
    }
    assert removed == predicted | old_env_archives, (sorted(removed), plan)
    assert top_before - top_after == {os.path.basename(p) for p in plan["remove"]["stale"]}
    assert files_before - _files(w) == plan["remove"]["files"]
    for keep in plan["keep"]["pinned"]:
        assert keep["id"] in archives_after


def test_dry_run_human_output(world: World, wheels):
    a, b = world.venv("a"), world.venv("b")
    world.install(a, "alpha==1.0", find_links=wheels)
    world.install(b, "beta==1.0", find_links=wheels)
    shutil.rmtree(b)
    out = world.uv("cache", "prune", "--dry-run", "--ci")
    assert "Would remove archive: beta==1.0 (" in out.stdout
    assert "Keep archive: alpha==1.0 (" in out.stdout and f"used by {a.resolve()}" in out.stdout
    assert "(dry run: nothing is removed)" in out.stderr and "freed)" in out.stderr
    assert len(world.archives()) == 2
