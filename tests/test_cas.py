"""uv's `content-addressed-cache` preview (issue 14): a `files-v0` bucket of content-addressed
files hardlinked into every archive, so an archive's files have a link count of 2 with no
environment at all. Pins must hold, that link is not an environment, `--unused` reclaims what no
environment uses, the dry run matches the real prune, and freed sizes count each file once.
Driven on the newest uv (skipped where the binary has no files bucket; 0.12.24 and later have it)."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from conftest import NEWEST, World, du_bytes

from shim import realuv

CAS = {"UV_PREVIEW_FEATURES": "content-addressed-cache"}


@pytest.fixture
def cas(tmp_path, shim_home, monkeypatch) -> World:
    monkeypatch.setenv("UV_SHIM_HOME", str(shim_home))
    w = World(tmp_path, shim_home, NEWEST)
    if "files" not in realuv.build_of(realuv.RealUv(str(w.real_uv), "test")).buckets:
        pytest.skip(f"uv {NEWEST} has no content-addressed files bucket")
    return w


def test_pins_hold_with_the_files_bucket(cas: World, wheels, tmp_path, shim_home):
    """A bare prune --ci drops uv's own index: only pins keep the archive. Control: bare."""
    control = World(tmp_path / "control", shim_home, NEWEST)
    for w, shim in ((control, False), (cas, True)):
        v = w.venv("v")
        w.install(v, "alpha==1.0", find_links=wheels, shim=shim, **CAS)
        assert (w.cache / "files-v0").is_dir()
        w.uv("cache", "prune", "--ci", shim=False, **CAS)
        assert w.works(v) == shim, (shim, w.broken(v))


def test_unused_reclaims_what_no_environment_uses_and_counts_it_once(cas: World, wheels):
    keep, gone = cas.venv("keep"), cas.venv("gone")
    cas.install(keep, "alpha==1.0", find_links=wheels, **CAS)
    cas.install(gone, "beta==1.0", find_links=wheels, **CAS)
    shutil.rmtree(gone)
    dry = cas.uv("cache", "prune", "--unused", "--dry-run", "--json", **CAS)
    plan = json.loads(dry.stdout)
    stale = plan["removed"]["other"]["stale"]
    assert not [p for p in stale if os.path.basename(p).startswith("files-v")], stale
    evicted = {a["id"] for a in plan["evict"]["archives"]}
    assert len(evicted) == 1 and not plan["evict"]["skipped_hardlinked"], plan["evict"]
    (aid,) = evicted
    before, disk_before = set(cas.archives()), du_bytes(cas.cache)
    out = cas.uv("cache", "prune", "--unused", "--json", **CAS)
    real = json.loads(out.stdout)
    removed = before - set(cas.archives())
    assert removed == evicted == {a["id"] for a in plan["removed"]["archives"]["items"]}, (removed, plan)
    assert (cas.cache / "files-v0").is_dir() and cas.works(keep)
    freed = disk_before - du_bytes(cas.cache)  # also uv's index entries for it
    own = plan["removed"]["archives"]["bytes"]  # its files whose every link went (files-v0 twins: same inode)
    assert real["removed"]["archives"]["bytes"] == own and 0 < own < freed, (plan["removed"], real["removed"], freed)


@pytest.mark.parametrize("extra", [[], ["--ci"], ["--unused"], ["--max-size", "1"]])
def test_dry_run_predicts_the_prune_in_the_files_layout(cas: World, wheels, extra):
    """Archives, files and bytes: the dry run against the real prune, whose files-bucket sweep
    frees a removed archive's files (see tests/test_dryrun.py for the other layouts)."""
    from test_dryrun import _differential

    keep, gone, hard = cas.venv("keep"), cas.venv("gone"), cas.venv("hard")
    cas.install(keep, "alpha==1.0", find_links=wheels, **CAS)
    cas.install(gone, "beta==1.0", find_links=wheels, **CAS)
    cas.install(hard, "gamma==1.0", find_links=wheels, mode="hardlink", **CAS)
    shutil.rmtree(gone)
    dry, real = _differential(cas, extra, [keep, gone, hard], **CAS)
    assert real["removed"]["bytes"] > 0 or extra == []
    assert cas.works(keep) and cas.works(hard)
