"""What others can plant in a shared cache never hangs, misleads or breaks a prune through the
shim (found by a hostile review of the size and auto-GC work)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from conftest import World


def test_a_fifo_for_a_revision_pointer_does_not_hang_the_prune(world: World, wheels):
    """uv's revision pointers are read to model its prune: a FIFO in their place blocked a
    `--max-size` prune forever while it held uv's exclusive lock."""
    v = world.venv("v")
    world.install(v, "alpha==1.0", find_links=wheels)
    trap = world.cache / "sdists-v11" / "index" / "trap"
    trap.mkdir(parents=True)
    os.mkfifo(trap / "revision.http")
    (trap / "some-revision").mkdir()
    out = world.uv("cache", "prune", "--max-size", "1", "--dry-run", "--json")  # the World's 600 s timeout
    assert json.loads(out.stdout)["dry_run"] is True
    out = world.uv("cache", "prune", "--max-size", "1")
    assert world.works(v) and "Traceback" not in out.stderr


def test_malformed_memos_in_the_cache_are_ignored(world: World, wheels):
    v, gone = world.venv("v"), world.venv("gone")
    world.install(v, "alpha==1.0", find_links=wheels)
    world.install(gone, "beta==1.0", find_links=wheels)
    shutil.rmtree(gone)
    area = world.manifest_dir()
    area.joinpath(".archive-sizes").write_text("x \u00b2 \u00b2 -\ny " + "9" * 5000 + " 1 -\nz 1 1 ../../etc\n")
    area.joinpath(".archive-last-use").write_text("x inf\ny nan\nz 1e300\nw -5\n")
    for cmd in (["status", "--json"], ["du", "--json"]):
        out = subprocess.run([sys.executable, "-m", "shim", *cmd], env=world.env(), capture_output=True, text=True)
        assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    real = json.loads(world.uv("cache", "prune", "--unused", "--json").stdout)
    assert real["removed"]["archives"]["count"] == 1 and world.works(v)


def test_the_automatic_prune_refuses_a_home_folder(world: World, tmp_path):
    """`uv --cache-dir ~` by mistake, with a policy on: the background prune refuses as a prune
    through the shim does (the bare `uv cache prune` empties such a folder: tests/test_confinement.py)."""
    home = tmp_path / "home-like"
    (home / "Documents").mkdir(parents=True)
    (home / "Documents" / "thesis.tex").write_text("years of work")
    (home / "CACHEDIR.TAG").write_text("Signature: 8a477f597d28d172789f06886806bc55\n")  # claims to be a cache
    out = subprocess.run(
        [sys.executable, "-m", "shim", "gc", "--auto", "--json", "--cache-dir", str(home)],
        env=world.env(UV_SHIM_AUTO_UNUSED="1", HOME=str(home)),
        capture_output=True,
        text=True,
    )
    entry = json.loads(out.stdout)
    assert entry["outcome"] == "skipped" and "home" in entry["reason"], entry
    assert (home / "Documents" / "thesis.tex").read_text() == "years of work"
    world.uv("cache", "prune", shim=False, UV_CACHE_DIR=str(home))  # control: the bare prune empties it
    assert not (home / "Documents").exists()
