"""One cache, several uv versions (issue 14): protection that survives a bare prune by any uv
version that has used the cache through the shim, whatever its bucket generation, and records
that survive a prune that wiped them.

Versions: the suite's (0.7.0 and 0.9.5 share sdists-v9, 0.13.9 has sdists-v11) plus 0.13.8
(sdists-v10). Every test has its control: the same world with the bare uv breaks.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXTRA_VERSIONS, VERSIONS, World, _vt, pair

ALL = sorted(set(VERSIONS) | set(EXTRA_VERSIONS), key=_vt)
PAIRS = [(x, y) for x, y in itertools.permutations(ALL, 2)]


@pytest.fixture(autouse=True)
def _home(shim_home, monkeypatch):
    monkeypatch.setenv("UV_SHIM_HOME", str(shim_home))


def _sdists(version: str) -> str:
    from conftest import uv_path

    from shim import realuv

    return realuv.build_of(realuv.RealUv(str(uv_path(version)), "test")).buckets["sdists"]


def _as(w: World, version: str) -> World:
    """The same world (root, cache, home) driven by another uv version."""
    return World(w.root, w.shim_home, version)


def _local_wheels(w: World, wheels: Path) -> Path:
    """A copy of the test wheels in the world (``_orphan`` changes it)."""
    local = w.root / "wheels"
    shutil.copytree(wheels, local)
    return local


def _orphan(w: World, wheels: Path) -> None:
    """The wheel changes and is installed again with --refresh elsewhere: uv's index forgets the
    first archive, so only a pin keeps it (bare uv of the installing version)."""
    local = w.root / "wheels"
    whl = local / "alpha-1.0-py3-none-any.whl"
    st = whl.stat()
    os.utime(whl, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    other = w.venv("elsewhere")
    w.install(other, "alpha==1.0", find_links=local, shim=False, extra=["--refresh"])


@pytest.mark.parametrize("installer, pruner", PAIRS, ids=[f"{x}-then-bare-{y}" for x, y in PAIRS])
def test_a_bare_prune_by_any_version_seen_keeps_what_another_installed(tmp_path, shim_home, wheels, installer, pruner):
    """The pruning version used the cache through the shim once; then another version installs
    through the shim; a bare prune by the first keeps the environment working."""
    for w in pair(tmp_path, shim_home, installer):
        shim = w.root.name == "shim"
        local = _local_wheels(w, wheels)
        p = _as(w, pruner)
        seen = p.venv("seen-by-pruner")
        p.install(seen, "beta==1.0", find_links=local, shim=shim)
        v = w.venv("v")
        w.install(v, "alpha==1.0", find_links=local, shim=shim)
        _orphan(w, wheels)
        p.prune()
        assert w.works(v) == shim, (shim, w.broken(v))
        assert p.works(seen)  # its own index keeps it either way


@pytest.mark.parametrize("version", [v for v in ALL if v != min(ALL, key=_vt)])
def test_records_a_prune_removed_are_restored_by_the_next_command(tmp_path, shim_home, wheels, version):
    """Both versions used the cache through the shim; a bare prune by the oldest removes the
    newer version's bucket, records and pins with it. The next shim command puts them back (one
    line says so), so a later bare prune by the newer version still keeps everything.
    Control: without the shim that last prune breaks the environment."""
    old = min(ALL, key=_vt)
    if _sdists(old) == _sdists(version):
        pytest.skip(f"uv {old} and {version} share one sdists bucket: a prune by one keeps the other's")
    for w in pair(tmp_path, shim_home, version):
        shim = w.root.name == "shim"
        local = _local_wheels(w, wheels)
        o = _as(w, old)
        v = o.venv("v")
        o.install(v, "alpha==1.0", find_links=local, shim=shim)
        other = w.venv("other")
        w.install(other, "beta==1.0", find_links=local, shim=shim)
        _orphan(o, wheels)
        o.prune()  # bare: the newer version's sdists bucket goes, records and pins with it
        out = o.install(other, "gamma==1.0", find_links=local, shim=shim)
        if shim:
            assert "restored uv-shim's records" in out.stderr, out.stderr
        w.prune()  # bare, by the newer version
        assert w.works(v) == shim, (shim, w.broken(v))


def test_records_wiped_with_the_cache_are_rebuilt_and_doctor_reports(world: World, wheels):
    """`uv cache clean` removes every record (and every archive). The next shim command says so in
    one line and rebuilds the records by rescanning what the host index lists; `uv-shim doctor`
    then reports the broken environments (exit 1) with the command that repairs them, instead of
    "No broken environments found". Control: the records are really gone after the clean."""
    v = world.venv("v")
    world.install(v, "alpha==1.0", find_links=wheels)
    world.uv("cache", "clean", shim=False)  # bare: records, pins and archives go
    assert world.records() == {} and not world.works(v)
    w = world.venv("w")
    out = world.install(w, "beta==1.0", find_links=wheels)
    said = world.said(out, w)
    assert len(said) == 1 and "the records of 1 environment(s) are gone" in said[0], said
    assert str(v.resolve()) in world.records()
    doctor = subprocess.run(
        [sys.executable, "-m", "shim", "doctor", "--json"], env=world.env(), capture_output=True, text=True
    )
    assert doctor.returncode == 1, doctor
    broken = {b["path"] for b in json.loads(doctor.stdout)["broken"]}
    assert str(v.resolve()) in broken
    status = subprocess.run(
        [sys.executable, "-m", "shim", "status", "--json"], env=world.env(), capture_output=True, text=True
    )
    assert json.loads(status.stdout)["environments"]["broken"] == 1, status


@pytest.mark.parametrize(
    "installer, pruner", [(min(ALL, key=_vt), max(ALL, key=_vt)), (max(ALL, key=_vt), min(ALL, key=_vt))]
)
def test_a_shim_prune_under_another_version_keeps_what_one_installed(tmp_path, shim_home, wheels, installer, pruner):
    """Records copied into another generation's area (pins in its pool) are verified like any:
    `--unused` through the shim under that version keeps the environment, and a bare prune by
    the installing version after it too. Control: the bare prune by the pruning version breaks it."""
    for w in pair(tmp_path, shim_home, installer):
        shim = w.root.name == "shim"
        local = _local_wheels(w, wheels)
        p = _as(w, pruner)
        p.install(p.venv("seen"), "beta==1.0", find_links=local, shim=shim)
        v = w.venv("v")
        w.install(v, "alpha==1.0", find_links=local, shim=shim)
        _orphan(w, wheels)
        if shim:
            p.uv("cache", "prune", "--unused")  # removes the installer's bucket, then restores it
            assert w.works(v), w.broken(v)
            w.prune()  # bare, by the installing version: the restored area's pool keeps it
        else:
            p.prune()
        assert w.works(v) == shim, (shim, w.broken(v))


def _newest_other_generation() -> tuple[str, str]:
    """(a version of sdists-v9, the newest version): two generations."""
    old = min(ALL, key=_vt)
    new = max(ALL, key=_vt)
    return old, new


def test_partial_own_pins_never_lose_the_pool(tmp_path, shim_home, wheels):
    """One environment, one package installed under each generation: in the older generation's
    area it has its own pin for one and only the pool for the other. A bare prune by the older
    version, then a prune through the shim under it, must keep both (the pool is replaced by
    per-root pins only after a full verification). Control: bare prunes break it."""
    old, new = _newest_other_generation()
    for w in pair(tmp_path, shim_home, old):
        shim = w.root.name == "shim"
        local = _local_wheels(w, wheels)
        n = _as(w, new)
        e = w.venv("e")
        w.install(e, "alpha==1.0", find_links=local, shim=shim)
        n.install(e, "beta==1.0", find_links=local, shim=shim)
        w.uv("cache", "prune", "--ci", shim=False)  # bare, older: the newer bucket goes
        if shim:
            w.uv("cache", "prune", "--ci")
        n.uv("cache", "prune", "--ci", shim=False)
        assert w.works(e) == shim, (shim, w.broken(e))


def test_the_first_uv_run_is_mirrored_into_other_generations(tmp_path, shim_home, wheels):
    """The helper that finishes `uv run` writes into every generation seen, like an install:
    a bare prune by the other generation after the first run keeps the project working."""
    from conftest import make_project

    old, new = _newest_other_generation()
    for w in pair(tmp_path, shim_home, new):
        shim = w.root.name == "shim"
        local = _local_wheels(w, wheels)
        o = _as(w, old)
        o.install(o.venv("seen"), "beta==1.0", find_links=local, shim=shim)
        proj = make_project(w, local, '"alpha==1.0"')
        w.uv("run", "-q", "python", "-c", "pass", cwd=proj, shim=shim, UV_LINK_MODE="symlink", UV_PYTHON=sys.executable)
        w.settle()
        o.uv("cache", "prune", "--ci", shim=False)
        assert w.works(proj / ".venv") == shim, (shim, w.broken(proj / ".venv"))
