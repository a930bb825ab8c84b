"""What the shim records for each kind of command and link mode, with the real uv."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conftest import NEWEST, OLDEST, World, make_project


def test_hardlink_and_copy_are_recorded_without_pins(world: World, wheels):
    h, c = world.venv("h"), world.venv("c")
    world.install(h, "alpha==1.0", find_links=wheels, mode="hardlink")
    world.install(c, "beta==1.0", find_links=wheels, mode="copy")
    recs = world.records()
    rh, rc = recs[str(h.resolve())], recs[str(c.resolve())]
    assert rh.link_modes == ["hardlink"] and rc.link_modes == ["copy"]
    (dh,) = rh.distributions.values()
    assert dh.archive in world.archives()  # found through the wheels bucket, same inode
    assert world.pins() == []


def test_environment_linking_nothing_is_not_recorded(world: World, wheels):
    world.uv("venv", "-q", "--python", str(Path(os.sys.executable)), str(world.root / "empty"))
    assert world.records() == {}


def test_sync_records_project_environment(world: World, wheels):
    proj = make_project(world, wheels, '"alpha==1.0", "beta"')
    world.uv("sync", "-q", "--python", os.sys.executable, cwd=proj, UV_LINK_MODE="symlink")
    rec = world.records()[str((proj / ".venv").resolve())]
    assert sorted(rec.distributions) == ["alpha==1.0", "beta==1.0"]
    world.prune()
    assert world.value(proj / ".venv", "alpha") == "alpha-1.0"


def test_uv_run_is_recorded_by_its_helper(world: World, wheels):
    proj = make_project(world, wheels, '"alpha==1.0", "beta"')
    world.uv("sync", "-q", "--python", os.sys.executable, cwd=proj, UV_LINK_MODE="symlink", shim=False)
    assert world.records() == {}
    out = world.uv("run", "-q", "python", "-c", "import alpha; print(alpha.VALUE)", cwd=proj, UV_LINK_MODE="symlink")
    assert out.stdout.strip() == "alpha-1.0"
    world.settle()  # the detached helper is done once it lets go of uv's lock
    rec = world.records()[str((proj / ".venv").resolve())]
    assert sorted(rec.distributions) == ["alpha==1.0", "beta==1.0"]


def test_uvx_cached_environment_is_recorded(world: World, wheels):
    args = ["--no-index", "--find-links", str(wheels), "--from", "gamma==1.0", "gamma"]
    env = world.env(UV_LINK_MODE="symlink")
    uvx = world.shim_uv.parent / "uvx"
    first = subprocess.run([str(uvx), *args], env=env, capture_output=True, text=True, cwd=world.root)
    assert first.returncode == 0 and "gamma says hi" in first.stdout, first.stderr
    second = subprocess.run([str(uvx), *args], env=env, capture_output=True, text=True, cwd=world.root)
    assert second.returncode == 0 and "gamma says hi" in second.stdout
    world.settle()
    kinds = [r.kind for r in world.records().values()]
    assert "cached" in kinds
    # what the cached environment links is pinned: a bare prune --ci keeps it (uv recreates the
    # environment itself from it); the control, with the bare uvx, loses it
    (gamma,) = [a for a in world.archives() if list((world.cache / "archive-v0" / a).glob("gamma-1.0.dist-info"))]
    assert gamma in world.pinned()
    world.prune("--ci")
    assert gamma in world.archives()
    control = World(world.root / "control", world.shim_home, world.version)
    bare = subprocess.run(
        [str(control.real_uv.parent / "uvx"), *args],
        env=control.env(UV_LINK_MODE="symlink"),
        capture_output=True,
        text=True,
        cwd=control.root,
    )
    assert bare.returncode == 0, bare.stderr
    control.prune("--ci")
    assert not [a for a in control.archives() if list((control.cache / "archive-v0" / a).glob("gamma-1.0.dist-info"))]


def test_tool_install_records_tool_environment(world: World, wheels):
    world.uv("tool", "install", "-q", "--no-index", "--find-links", str(wheels), "gamma==1.0", UV_LINK_MODE="symlink")
    tool_env = (world.root / "tools" / "gamma").resolve()
    rec = world.records()[str(tool_env)]
    assert "gamma==1.0" in rec.distributions
    world.prune()
    out = subprocess.run([str(world.root / "tool-bin" / "gamma")], capture_output=True, text=True)
    assert out.stdout.strip() == "gamma says hi"


def test_venv_reached_through_a_symlink_is_one_root(world: World, wheels):
    real = world.venv("real")
    link = world.root / "link"
    link.symlink_to(real)
    world.install(link, "alpha==1.0", find_links=wheels)
    world.uv(
        "pip",
        "install",
        "-q",
        "--no-index",
        "--find-links",
        str(wheels),
        "beta==1.0",
        VIRTUAL_ENV=str(link),
        UV_LINK_MODE="symlink",
    )
    assert list(world.records()) == [str(real.resolve())]
    world.prune()
    assert world.value(link, "alpha") == "alpha-1.0"


def test_paths_with_spaces_and_non_ascii(world: World, wheels):
    w = World(world.root / "dir with space é", world.shim_home, NEWEST)
    v = w.venv("venv ünï cödé")
    w.install(v, "alpha==1.0", find_links=wheels)
    assert list(w.records()) == [str(v.resolve())]
    w.prune()
    assert w.value(v, "alpha") == "alpha-1.0"


def test_record_moves_with_the_uv_version(tmp_path, shim_home, wheels, monkeypatch):
    """An environment recorded under one uv version is carried into the next one's bucket."""
    monkeypatch.setenv("UV_SHIM_HOME", str(shim_home))
    old = World(tmp_path, shim_home, OLDEST)
    new = World(tmp_path, shim_home, NEWEST)
    v = old.venv("v")
    old.install(v, "alpha==1.0", find_links=wheels)
    assert list(old.records())
    new.install(v, "beta==1.0", find_links=wheels)
    rec = new.records()[str(v.resolve())]
    assert set(rec.distributions) == {"alpha==1.0", "beta==1.0"}
    new.prune()  # the newest uv deletes the old buckets: the pins in its own keep alpha alive
    assert new.value(v, "alpha") == "alpha-1.0"
