"""Nothing outside the cache is ever deleted or followed (issue 7)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from conftest import World


@pytest.fixture
def outside(tmp_path):
    d = tmp_path / "outside"
    (d / "sub").mkdir(parents=True)
    (d / "precious.txt").write_text("keep")
    (d / "sub" / "also.txt").write_text("keep")
    return d


def _intact(d):
    assert (d / "precious.txt").read_text() == "keep" and (d / "sub" / "also.txt").read_text() == "keep"


def _plant(world: World, outside):
    """Symlinks out of the cache wherever uv-shim or uv might walk or delete."""
    c = world.cache
    links = [
        c / "stale-link",  # top level: prune removes non-buckets
        c / "archive-v0" / "AAAAAAAAAAAAAAAAAAAAA",  # an "archive" that is a symlink out
        world.manifest_dir() / "evilkey",  # an entry folder that is a symlink out
        next(c.glob("wheels-v*")) / "evil-index",
    ]
    entry = next(p for p in world.manifest_dir().iterdir() if p.is_dir() and not p.is_symlink())
    links.append(entry / "pin_BBBBBBBBBBBBBBBBBBBBB_0-0-py3-none-any")  # a "pin" pointing out
    links.append(entry / "root.toml.123.tmp")  # a "leftover" pointing out
    for link in links:
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(outside, link)
    deep = c / "simple-v0" / "a" / "b"
    deep.mkdir(parents=True)
    os.symlink(outside, deep / "link")
    os.symlink(outside / "precious.txt", deep / "file-link")


@pytest.mark.parametrize(
    "command",
    [
        ("cache", "prune"),
        ("cache", "prune", "--ci", "--unused"),
        ("cache", "prune", "--max-size", "1"),
        ("cache", "clean"),
        ("cache", "clean", "alpha"),
    ],
)
def test_symlinks_out_of_the_cache_are_never_followed(world: World, wheels, outside, command):
    v, gone = world.venv("v"), world.venv("gone")
    world.install(v, "alpha==1.0", find_links=wheels)
    world.install(gone, "beta==1.0", find_links=wheels)
    shutil.rmtree(gone)
    _plant(world, outside)
    out = world.uv(*command, check=False)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    _intact(outside)
    assert world.value(v, "alpha") == "alpha-1.0"


def test_hostile_environment_paths(world: World, wheels, outside):
    """A record whose environment path is a symlink to somewhere else, or is gone and replaced by a
    symlink: adopt, doctor and prune read through it and delete nothing there."""
    v = world.venv("v")
    world.install(v, "alpha==1.0", find_links=wheels)
    shutil.rmtree(v)
    os.symlink(outside, v)  # the environment's path now leads out
    for args in (["cache", "prune", "--unused"], ["cache", "clean"]):
        out = world.uv(*args, check=False)
        assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    out = subprocess.run(
        [sys.executable, "-m", "shim", "doctor", "--fix"], env=world.env(), capture_output=True, text=True
    )
    assert "Traceback" not in out.stderr
    _intact(outside)


def test_evicting_never_unlinks_outside_the_buckets(world: World, wheels, outside):
    v = world.venv("v")
    world.install(v, "alpha==1.0", find_links=wheels)
    shutil.rmtree(v)
    aid = world.archives()[0]
    os.symlink(world.cache / "archive-v0" / aid, outside / "points-into-the-cache")
    world.uv("cache", "prune", "--unused")
    assert os.path.islink(outside / "points-into-the-cache")  # our links only, in uv's buckets only
    _intact(outside)
