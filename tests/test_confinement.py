"""Deletion never leaves uv's cache, whoever planted what in it (issue 10, README "Threat model").

A cache shared by CI runners, HPC users or containers is writable by all of them, and a record
folder's name is computable from the hostname and machine-id. Each test plants symlinks out of
the cache where uv-shim reads, writes or deletes, runs a command through the shim, and checks
that a victim folder outside the cache is byte-for-byte as it was. The same runs as root and as
an unprivileged user (``setpriv`` to ``nobody``), where the machine allows it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import pytest
from conftest import BASE_PYTHON, NEWEST, REPO, World

NOBODY = 65534


def snapshot(d: Path) -> list[tuple[str, str, str, int]]:
    """Every entry under ``d``: (path, kind, content or link target, mode); links never followed."""
    out = []
    for dirpath, dirnames, filenames in os.walk(d):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            st = p.lstat()
            if p.is_symlink():
                out.append((str(p.relative_to(d)), "link", os.readlink(p), st.st_mode))
            elif p.is_dir():
                out.append((str(p.relative_to(d)), "dir", "", st.st_mode))
            else:
                out.append((str(p.relative_to(d)), "file", p.read_bytes().hex(), st.st_mode))
    return sorted(out)


def intact(before: list[tuple[str, str, str, int]], after: list[tuple[str, str, str, int]], exact: bool = True) -> bool:
    """Nothing removed or changed; with ``exact``, nothing added either."""
    return after == before if exact else set(before) <= set(after)


def make_victim(base: Path) -> Path:
    """Files named like what uv-shim keeps in a record folder, and some that are not."""
    v = base / "victim"
    (v / "sub").mkdir(parents=True)
    for name in (
        "root.toml",
        ".lock",
        ".archive-last-use",
        ".archive-sizes",
        ".last-prune",
        "thesis.tex",
        "pin_AAAAAAAAAAAAAAAAAAAAA_0-0-py3-none-any",
        "root.toml.123.tmp",
    ):
        (v / name).write_text(f"precious {name}\n")
    (v / "sub" / "also.txt").write_text("keep\n")
    for name in ("abcdef0123456789abcdef01", "alpha"):
        (v / name).mkdir()
        (v / name / "root.toml").write_text("precious\n")
    return v


def entry_of(w: World, env: Path) -> Path:
    from shim import hostid, manifest

    return w.manifest_dir() / manifest.entry_key(hostid.identity()[1], os.path.realpath(env))


# -- plants: (world, victim, live env, dead env path) -------------------------------------------


def plant_dead_entry(w: World, victim: Path, live: Path, gone: Path) -> None:
    """The record folder of an environment that is gone is a symlink to the victim."""
    entry = entry_of(w, gone)
    shutil.rmtree(entry)
    os.symlink(victim, entry)


def plant_live_entry(w: World, victim: Path, live: Path, gone: Path) -> None:
    """The record folder of a live environment is a symlink to the victim."""
    entry = entry_of(w, live)
    shutil.rmtree(entry)
    os.symlink(victim, entry)


def plant_area(w: World, victim: Path, live: Path, gone: Path) -> None:
    """uv-shim's whole record area is a symlink to the victim."""
    area = w.manifest_dir()
    shutil.rmtree(area)
    os.symlink(victim, area)


def plant_bucket(w: World, victim: Path, live: Path, gone: Path) -> None:
    """uv's sdists bucket (which holds the record area) is a symlink to the victim."""
    bucket = w.manifest_dir().parent
    shutil.rmtree(bucket)
    os.symlink(victim, bucket)


def plant_files(w: World, victim: Path, live: Path, gone: Path) -> None:
    """The lock, the record and the memo files are symlinks to the victim's files."""
    entry = entry_of(w, live)
    for name in (".lock", "root.toml"):
        (entry / name).unlink()
        os.symlink(victim / name, entry / name)
    for name in (".archive-last-use", ".archive-sizes", ".last-prune"):
        p = w.manifest_dir() / name
        if p.exists() or p.is_symlink():
            p.unlink()
        os.symlink(victim / name, p)


def plant_index(w: World, victim: Path, live: Path, gone: Path) -> None:
    """An index folder of uv's wheels bucket is a symlink to the victim (eviction walks there)."""
    index = sorted(p for p in w.cache.glob("wheels-v*/*") if p.is_dir())[0]
    shutil.move(str(index), str(w.root / "index-aside"))
    os.symlink(victim, index)


PLANTS: dict[str, Callable] = {
    "dead-entry": plant_dead_entry,
    "live-entry": plant_live_entry,
    "area": plant_area,
    "bucket": plant_bucket,
    "files": plant_files,
    "index": plant_index,
}
COMMANDS = {
    "prune": ("cache", "prune"),
    "prune-unused-ci": ("cache", "prune", "--unused", "--ci"),
    "prune-max-size": ("cache", "prune", "--max-size", "1"),
    "clean": ("cache", "clean"),
    "venv-over-gone": ("venv", "-q", "--python", "{python}", "{gone}"),
    "install-into-missing": ("pip", "install", "-q", "--no-index", "--find-links", "{wheels}", "beta==1.0"),
    "adopt": ("adopt", "{live}"),
}


def _world_with_envs(w: World, wheels: Path) -> tuple[Path, Path]:
    live, gone = w.venv("live"), w.venv("gone")
    w.install(live, "alpha==1.0", find_links=wheels)
    w.install(gone, "beta==1.0", find_links=wheels)
    w.uv("cache", "prune")  # the memo files exist
    shutil.rmtree(gone)
    return live, gone


def _run(
    w: World, command: str, live: Path, gone: Path, wheels: Path, prefix: list[str] = ()
) -> subprocess.CompletedProcess:
    python = getattr(w, "PYTHON", BASE_PYTHON)
    args = [a.format(live=live, gone=gone, wheels=wheels, python=python) for a in COMMANDS[command]]
    env = w.env(UV_LINK_MODE="symlink", VIRTUAL_ENV=str(gone))
    exe = getattr(w, "shim_cmd", [sys.executable, "-m", "shim"]) if command == "adopt" else [str(w.shim_uv)]
    return subprocess.run([*prefix, *exe, *args], env=env, cwd=w.root, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("plant", sorted(PLANTS))
def test_planted_symlinks_never_redirect_a_deletion(world: World, wheels, plant, command):
    live, gone = _world_with_envs(world, wheels)
    victim = make_victim(world.root)
    before = snapshot(victim)
    PLANTS[plant](world, victim, live, gone)
    out = _run(world, command, live, gone, wheels)
    assert "Traceback" not in out.stderr, out.stderr
    # with uv's own bucket planted as a link, the real uv itself writes its markers through it
    assert intact(before, snapshot(victim), exact=plant != "bucket"), out.stderr
    if plant not in ("live-entry", "bucket", "area") and command != "clean":
        assert world.value(live, "alpha") == "alpha-1.0"


@pytest.fixture
def user_world(shim_home, wheels, monkeypatch):
    """A world owned by an unprivileged user, whose commands run as that user."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None or not os.access(UserWorld.PYTHON, os.X_OK):
        pytest.skip("needs root, setpriv and a system Python to run as an unprivileged user")
    base = Path(tempfile.mkdtemp(prefix="uv-shim-user-", dir="/tmp"))
    os.chmod(base, 0o755)
    prefix = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    home = base / "shim-home"
    shutil.copytree(wheels, base / "wheels")
    for p in [base, *base.rglob("*")]:
        os.lchown(p, NOBODY, NOBODY)
    env = {**os.environ, "UV_SHIM_HOME": str(home), "HOME": str(base), "PYTHONPATH": UserWorld.pythonpath()}
    probe = subprocess.run(
        [*prefix, "sh", "-c", 'exec "$0" -c "import shim, psutil"', UserWorld.PYTHON],
        capture_output=True,
        text=True,
        cwd=base,
        env=env,
    )
    if probe.returncode != 0:
        shutil.rmtree(base)
        pytest.skip(
            f"an unprivileged user cannot run uv-shim on {UserWorld.PYTHON} here: {probe.stderr.strip()[-200:]}"
        )
    subprocess.run(
        [*prefix, UserWorld.PYTHON, "-m", "shim", "install", "--bin-dir", str(home / "bin")],
        check=True,
        capture_output=True,
        env=env,
        cwd=base,
    )
    monkeypatch.setenv("UV_SHIM_HOME", str(home))
    w = UserWorld(base / "w", home, NEWEST, prefix)
    for p in [w.root, *w.root.rglob("*")]:
        os.lchown(p, NOBODY, NOBODY)
    yield w, base / "wheels"
    shutil.rmtree(base, ignore_errors=True)


class UserWorld(World):
    """Commands run as ``nobody``; environments use the system Python (the test's own may live
    where that user cannot resolve it)."""

    PYTHON = "/usr/bin/python3"

    def __init__(self, root: Path, shim_home: Path, version: str, prefix: list[str]) -> None:
        super().__init__(root, shim_home, version)
        self.prefix = prefix
        self.python_path = self.PYTHON
        self.shim_cmd = [self.PYTHON, "-m", "shim"]

    @staticmethod
    def pythonpath() -> str:
        """uv-shim and its dependencies, for the system Python (same minor version here)."""
        import psutil

        roots = [str(REPO), os.path.dirname(os.path.dirname(psutil.__file__))]
        return os.pathsep.join(dict.fromkeys(roots))

    def env(self, **extra: str) -> dict[str, str]:
        return {**super().env(**extra), "PYTHONPATH": self.pythonpath()}


@pytest.mark.parametrize(
    "command", ["prune", "prune-unused-ci", "clean", "venv-over-gone", "install-into-missing", "adopt"]
)
@pytest.mark.parametrize("plant", ["dead-entry", "area", "files"])
def test_planted_symlinks_as_an_unprivileged_user(user_world, plant, command):
    w, wheels = user_world
    live, gone = _world_with_envs(w, wheels)
    victim = make_victim(w.root)
    for p in [victim, *victim.rglob("*")]:
        os.lchown(p, NOBODY, NOBODY)
    before = snapshot(victim)
    PLANTS[plant](w, victim, live, gone)
    out = _run(w, command, live, gone, wheels, prefix=w.prefix)
    assert "Traceback" not in out.stderr, out.stderr
    assert intact(before, snapshot(victim)), out.stderr
    assert "Permission denied" not in out.stderr, out.stderr  # the scenario really ran as that user


def test_a_record_folder_swapped_for_a_symlink_while_prunes_run(world: World, wheels):
    """A tight loop recreates the record folder of a gone environment (which every prune drops)
    and swaps it for a symlink to the victim, while prunes through the shim run: bounded by time."""
    live, gone = _world_with_envs(world, wheels)
    entry = entry_of(world, gone)
    world.install(world.venv("gone"), "beta==1.0", find_links=wheels)
    shutil.rmtree(gone)
    saved = {p.name: (os.readlink(p) if p.is_symlink() else p.read_bytes()) for p in entry.iterdir()}
    victim = make_victim(world.root)
    for name in saved:
        if not (victim / name).exists():
            (victim / name).write_text("precious\n")
    before = snapshot(victim)
    stop = time.monotonic() + float(os.environ.get("UV_SHIM_RACE_SECONDS", "6"))
    swaps = [0]

    def swapper() -> None:
        n = 0
        while time.monotonic() < stop:
            n += 1
            try:
                entry.mkdir()
                for name, data in saved.items():
                    if isinstance(data, str):
                        os.symlink(data, entry / name)
                    else:
                        (entry / name).write_bytes(data)
                aside = entry.with_name(f".aside{n}")
                os.rename(entry, aside)
                os.symlink(victim, entry)
                swaps[0] += 1
                time.sleep(0.0005 * (n % 4))
                os.unlink(entry)
                shutil.rmtree(aside, ignore_errors=True)
            except OSError:
                shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() and not entry.is_symlink() else None
                if entry.is_symlink():
                    os.unlink(entry)

    t = threading.Thread(target=swapper)
    t.start()
    prunes = 0
    try:
        while time.monotonic() < stop:
            out = world.uv("cache", "prune", check=False)
            assert "Traceback" not in out.stderr, out.stderr
            prunes += 1
    finally:
        t.join()
    assert snapshot(victim) == before
    assert prunes >= 3 and swaps[0] >= 100, (prunes, swaps[0])
    assert world.value(live, "alpha") == "alpha-1.0"


# -- the cache folder itself ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "command", [("cache", "clean"), ("cache", "prune"), ("cache", "prune", "--ci"), ("cache", "clean", "--all")]
)
def test_a_folder_that_is_not_a_uv_cache_is_never_emptied(world: World, command):
    """The cache path is a symlink to a folder that is not a uv cache: the shim refuses, naming
    it; the bare uv (the control) empties it."""
    victim = make_victim(world.root)
    before = snapshot(victim)
    os.symlink(victim, world.root / "cache-link")
    out = world.uv(*command, check=False, UV_CACHE_DIR=str(world.root / "cache-link"))
    assert out.returncode == 2 and "is not a uv cache" in out.stderr and str(world.root / "cache-link") in out.stderr, (
        out.stderr
    )
    assert len([line for line in out.stderr.splitlines() if line.strip()]) == 1
    assert snapshot(victim) == before
    bare = world.uv(
        *[a for a in command if a != "--all"], shim=False, check=False, UV_CACHE_DIR=str(world.root / "cache-link")
    )
    assert bare.returncode == 0 and snapshot(victim) != before  # the control: uv itself would empty it


def test_the_home_folder_is_never_emptied(world: World):
    (world.home / "CACHEDIR.TAG").write_text(
        "Signature: 8a477f597d28d172789f06886806bc55\n"
    )  # even one that claims to be a cache
    (world.home / "notes.txt").write_text("mine")
    out = world.uv("cache", "clean", check=False, UV_CACHE_DIR=str(world.home))
    assert out.returncode == 2 and "is the home folder" in out.stderr
    assert (world.home / "notes.txt").read_text() == "mine"
    world.uv("cache", "clean", shim=False, UV_CACHE_DIR=str(world.home))
    assert not (world.home / "notes.txt").exists()  # the control: uv itself empties it


@pytest.mark.fast
def test_root_and_home_are_refused_whatever_they_hold():
    from shim import realuv
    from shim.cachedir import refuse_to_empty

    build = realuv.UvBuild("0.13.9", {"sdists": "sdists-v11", "wheels": "wheels-v8", "all": "sdists-v11|wheels-v8"})
    assert "root folder" in (refuse_to_empty("/", build, {}) or "")
    assert "root folder" in (refuse_to_empty("/tmp/../", build, {}) or "")
    home = os.path.expanduser("~")
    assert "home folder" in (refuse_to_empty(home, build, {"HOME": home}) or "")
    assert "home folder" in (refuse_to_empty(str(REPO), build, {"HOME": str(REPO)}) or "")


# -- arguments: validated before anything changes ------------------------------------------------


def listing(cache: Path) -> list[tuple[str, str, int]]:
    out = []
    for dirpath, dirnames, filenames in os.walk(cache):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            out.append((str(p.relative_to(cache)), os.readlink(p) if p.is_symlink() else "", st.st_size))
    return sorted(out)


@pytest.mark.parametrize(
    "args",
    [
        ("cache", "clean", "--bogus"),
        ("cache", "clean", "alpha", "--bogus"),
        ("cache", "prune", "--bogus"),
        ("cache", "prune", "--unused", "--json", "--bogus"),
        ("cache", "prune", "--max-size", "1", "--bogus"),
        ("cache", "prune", "--ci", "--unused", "--dry-run", "--bogus"),
        ("cache", "clean", "--unused"),
        ("cache", "prune", "stray-positional"),
    ],
)
def test_rejected_arguments_change_nothing(edge_world: World, wheels, args):
    """What the real uv rejects ends with uv's exit code (2) and uv's message, and not one entry of
    the cache has changed. The bare uv rejects the same arguments the same way."""
    w = edge_world
    live, gone = w.venv("live"), w.venv("gone")
    w.install(live, "alpha==1.0", find_links=wheels)
    w.install(gone, "beta==1.0", find_links=wheels)
    shutil.rmtree(gone)
    before = listing(w.cache)
    out = w.uv(*args, check=False)
    assert out.returncode == 2, out.stderr
    assert "error: unexpected argument" in out.stderr and "Traceback" not in out.stderr
    assert listing(w.cache) == before
    bare = w.uv(*args, shim=False, check=False)  # uv itself rejects them too (shim options included)
    assert bare.returncode == 2 and listing(w.cache) == before


def test_a_failed_prune_puts_back_what_eviction_set_aside(world: World, wheels):
    """`--unused` chose archives of an environment moved where the shim does not look for it;
    the real prune then fails (it cannot remove a stale entry: permission denied). uv's references
    are put back, so a later **bare** prune deletes nothing the moved environment uses.
    Control: the same prune succeeding breaks the moved environment (what was at risk)."""
    if shutil.which("setpriv") is None or os.geteuid() != 0:
        pytest.skip("needs root and setpriv to make the real prune fail")

    def moved_world(name: str) -> Path:
        v = world.venv(name)
        world.install(v, "gamma==1.0", find_links=wheels)
        moved = world.root / "elsewhere" / f"{name}-moved"  # into another folder: not followed
        moved.parent.mkdir()
        os.rename(v, moved)
        return moved

    moved = moved_world("m")
    junk = world.cache / "zz-junk" / "d"
    junk.mkdir(parents=True)
    (junk / "f").write_text("x")
    os.chmod(junk, 0o555)  # uv's prune removes stale entries first: without DAC override it fails here
    out = subprocess.run(
        ["setpriv", "--bounding-set=-dac_override,-dac_read_search", str(world.shim_uv), "cache", "prune", "--unused"],
        env=world.env(),
        capture_output=True,
        text=True,
    )
    os.chmod(junk, 0o755)
    assert out.returncode == 2, out.stderr
    assert "put back uv's references" in out.stderr
    world.prune()  # bare
    assert world.python(moved, "import gamma.cli").returncode == 0
    assert world.value(moved, "gamma") == "gamma-1.0"
    # the control: had the prune succeeded, the moved environment would have broken
    world.uv("cache", "prune", "--unused")
    assert world.value(moved, "gamma") is None


@pytest.mark.parametrize("command", [("cache", "clean"), ("cache", "prune")])
@pytest.mark.parametrize("value", ["", "--cache-dir="])
def test_a_cache_path_uv_rejects_is_rejected_the_same_way(world: World, wheels, command, value):
    """An empty cache path (uv: "a value is required"): the shim answers with uv's message and
    exit code, and nothing in the real cache changes."""
    v = world.venv("v")
    world.install(v, "alpha==1.0", find_links=wheels)
    before = listing(world.cache)
    args, env = ([value, *command], {}) if value else (list(command), {"UV_CACHE_DIR": ""})
    out = world.uv(*args, check=False, **env)
    bare = world.uv(*args, shim=False, check=False, **env)
    assert out.returncode == bare.returncode == 2, (out.stderr, bare.stderr)
    assert "a value is required" in out.stderr and "Traceback" not in out.stderr
    assert listing(world.cache) == before
