"""``uv cache prune`` through the shim never breaks a live environment (issue 3)."""

from __future__ import annotations

import re
import shutil
import threading

import pytest
from conftest import NEWEST, OLDEST, World, hold_shared_lock
from test_protection import _refresh_scenario


def shim_prune(w: World, *extra: str, check: bool = True, **env: str):
    return w.uv("cache", "prune", *extra, check=check, **env)


@pytest.mark.network
def test_seed_13270_exactly(tmp_path, shim_home, monkeypatch):
    """uv 0.7.0, zstandard, symlink mode, one venv, `uv cache prune`: all through the shim."""
    monkeypatch.setenv("UV_SHIM_HOME", str(shim_home))
    w = World(tmp_path, shim_home, "0.7.0")
    v = w.venv("0.7.0")
    w.install(v, "zstandard")
    out = shim_prune(w, "-v")
    assert w.python(v, "import zstandard; zstandard.ZstdCompressor().compress(b'x')").returncode == 0
    assert re.search(r"Kept 1 archive \(\d+(\.\d)?[KM]iB\) used by 1 environment", out.stderr), out.stderr


@pytest.mark.parametrize("ci", [False, True])
def test_refresh_scenario_prune_through_shim(world: World, wheels, ci):
    a, b = _refresh_scenario(world, wheels, shim=True)
    out = shim_prune(world, *(["--ci"] if ci else []))
    assert world.value(a, "alpha") == world.value(b, "alpha") == "alpha-1.0"
    assert "Kept 2 archives" in out.stderr and "used by 2 environments" in out.stderr


def test_deleted_environment_is_released(any_world: World, wheels):
    w = any_world
    a, b = w.venv("a"), w.venv("b")
    w.install(a, "alpha==1.0", find_links=wheels)
    w.install(b, "beta==1.0", find_links=wheels)
    assert len(w.archives()) == 2
    shutil.rmtree(a)
    out = shim_prune(w)
    assert "Released 1 environment that no longer exists or use this cache" in out.stderr
    assert list(w.records()) == [str(b.resolve())]
    assert len(w.pinned()) == 1
    # uv's own wheels index still names alpha's archive; --ci drops that index: now it goes
    shim_prune(w, "--ci")
    assert w.archives() == w.pinned() and w.value(b, "beta") == "beta-1.0"


def test_environment_recreated_with_other_packages(world: World, wheels):
    a = world.venv("a")
    world.install(a, "alpha==1.0", find_links=wheels)
    shutil.rmtree(a)
    a = world.venv("a")
    world.install(a, "beta==1.0", find_links=wheels, shim=False)  # the shim never saw this install
    shim_prune(world, "--ci")
    assert world.value(a, "beta") == "beta-1.0"
    (rec,) = world.records().values()
    assert list(rec.distributions) == ["beta==1.0"]
    assert len(world.archives()) == 1


@pytest.mark.parametrize("mode", ["hardlink", "copy", "clone"])
def test_other_link_modes_are_recorded_without_pins_and_judged_by_their_links(world: World, wheels, mode):
    """Hardlink, clone and copy environments survive any prune by themselves; what the shim must
    get right is the record (no pins) and eviction: a hardlinked archive frees nothing and is
    skipped, a copied or cloned one is used by nothing and goes."""
    v = world.venv("v")
    world.install(v, "alpha==1.0", find_links=wheels, mode=mode)
    (rec,) = world.records().values()
    meta = next(v.glob("lib/python*/site-packages/alpha-1.0.dist-info/METADATA"))
    got = "hardlink" if meta.stat().st_nlink > 1 else "copy"  # clone falls back to hardlink without reflinks
    assert got == {"hardlink": "hardlink", "copy": "copy"}.get(mode, got)
    assert rec.link_modes == [got] and world.pins() == []
    (aid,) = world.archives()
    out = shim_prune(world, "--unused")
    assert world.value(v, "alpha") == "alpha-1.0"
    if got == "hardlink":
        assert world.archives() == [aid] and "hardlinked into environments" in out.stderr, out.stderr
    else:
        assert world.archives() == [] and ": 1 archive (" in out.stderr, out.stderr


def test_unreadable_record_keeps_its_pins(world: World, wheels):
    v = world.venv("v")
    world.install(v, "alpha==1.0", find_links=wheels)
    (entry,) = [p for p in world.manifest_dir().iterdir() if not p.name.startswith(".")]
    (entry / "root.toml").write_text("not = [toml")
    out = shim_prune(world)
    assert world.value(v, "alpha") == "alpha-1.0"
    warnings = [line for line in out.stderr.splitlines() if line.startswith("uv-shim: warning:")]
    assert len(warnings) == 1 and "cannot verify" in warnings[0] and "keeping its 1 archive" in warnings[0]


def test_other_hosts_are_kept_until_their_lease_ends(world: World, wheels):
    v = world.venv("v")
    world.install(v, "alpha==1.0", find_links=wheels, UV_SHIM_HOST_ID="container-1")
    out = shim_prune(world)  # this host cannot see container-1's environments
    assert "of " + str(v.resolve()) in out.stderr and "lease ends in 29 days" in out.stderr
    assert world.value(v, "alpha") == "alpha-1.0"
    out = shim_prune(world, "--ci", UV_SHIM_LEASE="0s")  # its folder is visible here, same inode: kept
    assert "lease ended" not in out.stderr and world.value(v, "alpha") == "alpha-1.0"
    shutil.rmtree(v)  # now this host cannot see it: its lease decides
    out = shim_prune(world, "--ci", UV_SHIM_LEASE="0s")
    assert "lease ended" in out.stderr
    assert world.records() == {} and world.archives() == []


@pytest.mark.parametrize("installer, pruner", [(NEWEST, OLDEST), (OLDEST, NEWEST)])
def test_mixed_versions_on_one_cache(tmp_path, shim_home, wheels, monkeypatch, installer, pruner):
    monkeypatch.setenv("UV_SHIM_HOME", str(shim_home))
    inst, prun = World(tmp_path, shim_home, installer), World(tmp_path, shim_home, pruner)
    v = inst.venv("v")
    inst.install(v, "alpha==1.0", find_links=wheels)
    shim_prune(prun)
    assert prun.value(v, "alpha") == "alpha-1.0"
    assert list(prun.records()) == [str(v.resolve())]
    prun.prune()  # and a later bare prune by that version keeps it too
    assert prun.value(v, "alpha") == "alpha-1.0"


def test_waits_for_the_cache_lock_and_names_the_holder(world: World, wheels):
    v = world.venv("v")
    world.install(v, "alpha==1.0", find_links=wheels)
    holder = hold_shared_lock(world.cache / ".lock", seconds=60)
    try:
        out = shim_prune(world, check=False, UV_LOCK_TIMEOUT="1")
        assert out.returncode == 2
        assert f"held by pid {holder.pid}" in out.stderr
        assert "Timeout (1s) when waiting for lock" in out.stderr
        forced = shim_prune(world, "--force", check=False)
        assert forced.returncode == 0, forced.stderr
    finally:
        holder.kill()
    assert world.value(v, "alpha") == "alpha-1.0"


def test_prunes_while_installs_run(world: World, wheels):
    """Installs into several symlink venvs race a prune loop: nothing breaks, no record is lost."""
    venvs = [world.venv(f"v{i}") for i in range(4)]
    stop = threading.Event()
    errors: list = []

    def _install_or_record(errors: list, v, *specs: str) -> None:
        try:
            world.install(v, *specs, find_links=wheels)
        except BaseException as e:  # an assertion in a thread would otherwise vanish
            errors.append(f"install into {v.name}: {e}")

    def prune_loop():
        while not stop.is_set():
            out = shim_prune(world, check=False)
            if out.returncode != 0:
                errors.append(out.stderr)

    t = threading.Thread(target=prune_loop)
    t.start()
    try:
        for round_ in range(3):
            threads = [
                threading.Thread(
                    target=_install_or_record,
                    args=(errors, v, "alpha==1.0" if (i + round_) % 2 else "alpha==2.0", "beta==1.0"),
                )
                for i, v in enumerate(venvs)
            ]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
    finally:
        stop.set()
        t.join()
    assert not errors, errors[0]
    shim_prune(world)
    world.prune()  # and the bare uv after it
    recs = world.records()
    for v in venvs:
        assert world.value(v, "alpha") in ("alpha-1.0", "alpha-2.0")
        assert world.value(v, "beta") == "beta-1.0"
        assert str(v.resolve()) in recs
