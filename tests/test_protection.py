"""The promise of issue 2: installs through the shim survive a prune by the *bare* uv.

Every protection starts as a reproduction with the bare uv that breaks a real environment.
"""

from __future__ import annotations

import os
import shutil

import pytest
from conftest import NEWEST, OLDEST, World


def _refresh_scenario(w: World, wheels, shim: bool):
    """Two symlink venvs; the wheel file changes and B installs it with --refresh: uv unpacks a
    new archive and forgets A's (the local-wheel twin of DESIGN.md's cowsay reproduction)."""
    local = w.root / "wheels"
    shutil.copytree(wheels, local)
    a, b = w.venv("a"), w.venv("b")
    w.install(a, "alpha==1.0", find_links=local, shim=shim)
    whl = local / "alpha-1.0-py3-none-any.whl"
    st = whl.stat()
    os.utime(whl, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    w.install(b, "alpha==1.0", find_links=local, shim=shim, extra=["--refresh"])
    return a, b


def test_refresh_scenario_breaks_bare_uv(any_world: World, wheels):
    w = any_world
    a, b = _refresh_scenario(w, wheels, shim=False)
    assert w.works(a)
    w.prune()
    assert not w.works(a), "the bare uv was expected to break venv a"
    assert w.works(b)


def test_refresh_scenario_survives_through_shim(any_world: World, wheels):
    w = any_world
    a, b = _refresh_scenario(w, wheels, shim=True)
    before = w.archives()
    w.prune()  # the bare uv
    w.prune("--ci")
    assert w.works(a), w.broken(a)
    assert w.works(b), w.broken(b)
    assert set(w.archives()) >= set(w.pinned())
    assert len(w.records()) == 2
    assert before  # archives existed


def test_records_describe_the_environment(world: World, wheels):
    a = world.venv("a")
    world.install(a, "alpha==1.0", "beta==1.0", find_links=wheels)
    (rec,) = world.records().values()
    assert rec.path == str(a.resolve())
    assert rec.link_modes == ["symlink"]
    assert sorted(rec.distributions) == ["alpha==1.0", "beta==1.0"]
    assert rec.uv_version == NEWEST
    assert rec.python
    assert len(world.pins()) == 2
    assert world.pinned() == sorted(d.archive for d in rec.distributions.values())


def test_uninstall_and_upgrade_release_pins(world: World, wheels):
    a = world.venv("a")
    world.install(a, "alpha==1.0", "beta==1.0", find_links=wheels)
    old = set(world.pinned())
    world.install(a, "alpha==2.0", find_links=wheels)
    (rec,) = world.records().values()
    assert sorted(rec.distributions) == ["alpha==2.0", "beta==1.0"]
    new = set(world.pinned())
    assert len(new) == 2 and new != old
    world.uv("pip", "uninstall", "-q", "--python", str(a / "bin" / "python"), "alpha", "beta")
    assert world.records() == {} and world.pins() == []


@pytest.mark.network
@pytest.mark.parametrize("version", sorted({OLDEST, NEWEST}))
def test_seed_13270_zstandard(tmp_path, shim_home, version, monkeypatch):
    """uv issue 13270: with uv 0.7.0 a plain prune breaks a symlink venv holding zstandard."""
    monkeypatch.setenv("UV_SHIM_HOME", str(shim_home))
    bare = World(tmp_path / "bare", shim_home, version)
    v = bare.venv("v")
    bare.install(v, "zstandard", shim=False)
    bare.prune()
    broken = bare.python(v, "import zstandard; zstandard.ZstdCompressor").returncode != 0

    w = World(tmp_path / "shim", shim_home, version)
    v = w.venv("v")
    w.install(v, "zstandard")
    w.prune()
    assert w.python(v, "import zstandard; zstandard.ZstdCompressor().compress(b'x')").returncode == 0
    if version == "0.7.0":
        assert broken, "uv 0.7.0 was expected to reproduce issue 13270 without the shim"


@pytest.mark.network
def test_refresh_scenario_cowsay_newest(world: World):
    """DESIGN.md's reproduction with a real registry package, bare uv for the prune."""
    a, b = world.venv("a"), world.venv("b")
    world.install(a, "cowsay==6.1")
    world.install(b, "cowsay==6.1", extra=["--refresh"])
    world.prune()
    for venv in (a, b):
        out = world.python(venv, "import cowsay; print(cowsay.get_output_string('cow', 'hi'))")
        assert out.returncode == 0 and "hi" in out.stdout, out.stderr


@pytest.mark.parametrize(
    "aid", ["-leadingDash0000000x", "trailingDash00000000-", "trailingUnder0000000_", "_x-y_z-Q1234567890ab", "a" * 16]
)
def test_pins_hold_for_any_archive_id(any_world: World, wheels, aid):
    """Each uv version's prune counts our pin whatever the id looks like (0.7.0 parses the pin's
    name as a wheel stem: an id ending in '-' once made an invalid name, and a deleted archive)."""
    from shim.manifest import pin, unpin

    w = any_world
    v = w.venv("v")
    w.install(v, "alpha==1.0", find_links=wheels)  # a real cache of this uv version
    fake = w.cache / "archive-v0" / aid
    fake.mkdir()
    (fake / "data.txt").write_text("kept")
    cache = w.cache_object()
    with cache.entry("test-entry", create=True) as entry:
        pin(entry, aid)
    w.prune()
    w.prune("--ci")
    assert (fake / "data.txt").read_text() == "kept"
    with cache.entry("test-entry") as entry:
        unpin(entry, aid)
    w.prune()
    assert not fake.exists()
