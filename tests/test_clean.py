"""``uv cache clean`` through the shim keeps what live symlink environments use."""

from __future__ import annotations

import json
import os
import time

import pytest
from conftest import World


def test_bare_clean_breaks_symlink_environments(any_world: World, wheels):
    v = any_world.venv("v")
    any_world.install(v, "alpha==1.0", find_links=wheels)
    any_world.uv("cache", "clean", shim=False)
    assert not any_world.works(v)


def test_clean_keeps_live_archives_and_the_manifest(any_world: World, wheels):
    w = any_world
    a, gone, h = w.venv("a"), w.venv("gone"), w.venv("h")
    w.install(a, "alpha==1.0", find_links=wheels)
    w.install(gone, "beta==1.0", find_links=wheels)
    w.install(h, "alpha==2.0", find_links=wheels, mode="hardlink")
    import shutil

    shutil.rmtree(gone)
    out = w.uv("cache", "clean")
    assert f"Clearing cache at: {w.cache}" in out.stderr
    assert "Kept 1 archive" in out.stderr and "used by 1 environment" in out.stderr
    assert w.archives() == w.pinned()
    assert w.value(a, "alpha") == "alpha-1.0" and w.value(h, "alpha") == "alpha-2.0"
    assert sorted(w.records()) == sorted([str(a.resolve()), str(h.resolve())])
    left = sorted(p.name for p in w.cache.iterdir())
    assert set(left) <= {"archive-v0", w.manifest_dir().parent.name, ".lock", "CACHEDIR.TAG", ".gitignore", ".git"}
    # the cache still works afterwards, through the shim and bare
    w.install(w.venv("again"), "beta==1.0", find_links=wheels)
    w.prune()
    assert w.value(a, "alpha") == "alpha-1.0"


def test_clean_package_keeps_its_in_use_archives(world: World, wheels):
    a, b = world.venv("a"), world.venv("b")
    world.install(a, "alpha==1.0", "beta==1.0", find_links=wheels)
    world.install(b, "alpha==2.0", find_links=wheels, mode="copy")
    out = world.uv("cache", "clean", "alpha")
    assert world.value(a, "alpha") == "alpha-1.0" and world.value(b, "alpha") == "alpha-2.0"
    assert "Kept alpha==1.0" in out.stderr and f"used by {a.resolve()}" in out.stderr
    assert len(world.archives()) == 2  # alpha 1.0 (pinned) and beta; alpha 2.0 (copied) is gone


@pytest.mark.parametrize("how", [("--all",), ()])
def test_clean_all_breaks_after_saying_so(world: World, wheels, how):
    v = world.venv("v")
    world.install(v, "alpha==1.0", find_links=wheels)
    env = {} if how else {"UV_SHIM_ALLOW_BREAK": "1"}
    out = world.uv("cache", "clean", *how, **env)
    assert f"Breaking {v.resolve()}: 1 archive it links will be removed" in out.stderr
    assert world.value(v, "alpha") is None
    assert not world.cache.exists() or world.archives() == []


def test_clean_decides_from_the_record_folders_never_the_memo(world: World, wheels):
    """`uv cache clean` deletes archives itself, so it reads every record folder and never the
    memo prunes keep (`.roots-seen`): a memo that lies about a root's pins (planted in a shared
    cache, or stale through a bug) may cost a prune's report some precision, never a clean an
    archive. Control: the forged memo matches the folders' stats, so a prune's verification
    (memo=True) does take it."""
    from shim import envscan, hostid, liveness, manifest

    v = world.venv("v")
    world.install(v, "alpha==1.0", find_links=wheels)
    (aid,) = world.pinned()
    site = next(v.glob("lib/python*/site-packages"))
    old = time.time() - 3600
    os.utime(site, (old, old))  # settled long ago: the next look takes its stamp as the truth
    world.install(v, "alpha==1.0", find_links=wheels)  # a no-op: the record now says so
    assert site.stat().st_mtime == old
    time.sleep(envscan.RACY + 0.1)
    world.uv("cache", "prune")  # writes the memo: the folder has been still for RACY seconds
    memo = world.manifest_dir() / manifest.ROOTS_SEEN
    doc = json.loads(memo.read_text())
    (key,) = doc["roots"]
    assert doc["roots"][key][4] == aid
    doc["roots"][key][4] = "x" * len(aid)  # another archive, by the memo
    memo.write_text(json.dumps(doc))
    cache = world.cache_object()
    (trusted,) = liveness.verify(cache, hostid.identity()[1], dry_run=True, memo=True)
    assert trusted.archives == {"x" * len(aid)}  # the control: a prune would take the memo's word
    world.uv("cache", "clean")
    assert world.works(v), world.broken(v)
    assert aid in world.archives()
