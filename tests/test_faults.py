"""Bad input: a clear one-line message, the user's uv command still runs, nothing recorded is lost."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, World, hold_shared_lock


def _warnings(stderr: str):
    return [line for line in stderr.splitlines() if line.startswith("uv-shim:")]


def _entry(world: World) -> Path:
    (entry,) = [p for p in world.manifest_dir().iterdir() if p.is_dir()]
    return entry


def test_corrupt_record_is_rebuilt_by_rescan(world: World, wheels):
    v = world.venv("v")
    world.install(v, "alpha==1.0", find_links=wheels)
    record = _entry(world) / "root.toml"
    record.write_bytes(b"schema = 1\npath = [unterminated\n\x00")
    out = world.install(v, "beta==1.0", find_links=wheels)
    (warning,) = world.said(out, v)  # once: from the background helper, on the next command
    assert warning.startswith("uv-shim: warning: record ") and "rebuilding it by a rescan" in warning
    rec = world.records()[str(v.resolve())]
    assert set(rec.distributions) == {"alpha==1.0", "beta==1.0"}
    world.prune()
    assert world.value(v, "alpha") == "alpha-1.0"


@pytest.mark.parametrize("gone", [False, True], ids=["present", "gone"])
def test_a_record_whose_path_holds_a_nul_keeps_its_pins_without_a_traceback(world: World, wheels, gone):
    """A record in a shared cache is untrusted input: a path with a NUL (a TOML escape) cannot
    be looked at, so the root is unverifiable and keeps its pins; one line, never a traceback."""
    v = world.venv("v")
    world.install(v, "alpha==1.0", find_links=wheels)
    pinned = world.pinned()
    record = _entry(world) / "root.toml"
    text = record.read_text()
    path = str(v.resolve())
    record.write_text(text.replace(f'path = "{path}"', f'path = "{path}\\u0000/x"'))
    assert "\\u0000" in record.read_text()
    if gone:
        shutil.rmtree(v)
    out = world.uv("cache", "prune", check=False)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    assert "holds a NUL character" in out.stderr and world.pinned() == pinned, out.stderr


def test_record_from_a_future_schema_is_left_alone(world: World, wheels):
    v = world.venv("v")
    world.install(v, "alpha==1.0", find_links=wheels)
    record = _entry(world) / "root.toml"
    future = record.read_text().replace("schema = 1", "schema = 99")
    record.write_text(future)
    out = world.install(v, "beta==1.0", find_links=wheels)
    (warning,) = world.said(out, v)
    assert "schema 99 is newer" in warning
    assert record.read_text() == future  # not overwritten
    assert world.value(v, "beta") == "beta-1.0"  # the command ran
    world.prune()
    assert world.value(v, "alpha") == "alpha-1.0"  # its pins still hold


@pytest.fixture
def ro_cache(world: World, wheels):
    """The world's cache, populated, then bind-mounted read-only over itself."""
    v = world.venv("v")
    world.install(v, "alpha==1.0", find_links=wheels)
    mounted = subprocess.run(["mount", "--bind", str(world.cache), str(world.cache)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot bind-mount here (needs root)")
    try:
        if subprocess.run(["mount", "-o", "remount,bind,ro", str(world.cache)], capture_output=True).returncode != 0:
            pytest.skip("cannot remount read-only here")
        yield v
    finally:
        subprocess.run(["umount", str(world.cache)], capture_output=True)


def test_read_only_cache_is_passthrough_with_one_warning(world: World, wheels, ro_cache):
    v = ro_cache
    args = tuple(World.install_args(v, "beta==1.0", find_links=wheels))
    shim = world.uv(*args, check=False, UV_LINK_MODE="symlink")
    bare = world.uv(*args, check=False, shim=False, UV_LINK_MODE="symlink")
    assert shim.returncode == bare.returncode
    (warning,) = _warnings(shim.stderr)
    assert "cache is not writable" in warning and str(world.cache) in warning
    tmp = re.compile(r"\.tmp\w+")
    rest = [tmp.sub(".tmp", line) for line in shim.stderr.splitlines() if not line.startswith("uv-shim:")]
    assert rest == [tmp.sub(".tmp", line) for line in bare.stderr.splitlines()]


def test_missing_real_uv_is_a_clear_error(world: World):
    env = world.env(PATH=f"{world.shim_uv.parent}:/usr/bin:/bin")
    for args in (["--version"], ["pip", "install", "x"]):
        out = subprocess.run([str(world.shim_uv), *args], env=env, capture_output=True, text=True)
        assert out.returncode == 2
        assert out.stderr.splitlines() == [
            "uv-shim: error: cannot find the real uv: install it (https://docs.astral.sh/uv/) so it is on PATH "
            "after uv-shim's directory, or set UV_SHIM_REAL_UV=/path/to/uv"
        ]


def test_recursion_is_a_clear_error(world: World):
    out = world.uv("--version", check=False, UV_SHIM_REAL_UV=str(world.shim_uv))
    assert out.returncode == 2
    (line,) = out.stderr.splitlines()
    assert line.startswith("uv-shim: error: ") and "uv-shim itself" in line


def test_second_copy_of_the_launchers_on_path_is_skipped(world: World, tmp_path):
    other = tmp_path / "other-bin"
    subprocess.run(
        [sys.executable, "-m", "shim", "install", "--bin-dir", str(other)],
        check=True,
        capture_output=True,
        env=world.env(),
    )
    env = world.env(
        PATH=os.pathsep.join([str(world.shim_uv.parent), str(other), str(world.real_uv.parent), "/usr/bin:/bin"])
    )
    out = subprocess.run([str(world.shim_uv), "--version"], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("uv ")
    which = subprocess.run([sys.executable, "-m", "shim", "which"], env=env, capture_output=True, text=True)
    assert which.stdout.strip() == str(world.real_uv)
    assert "first uv on PATH that is not uv-shim" in which.stderr


def test_install_is_idempotent_and_never_replaces_a_real_uv(world: World, tmp_path):
    bin_dir = tmp_path / "bin"
    env = world.env()
    for _ in range(2):
        out = subprocess.run(
            [sys.executable, "-m", "shim", "install", "--bin-dir", str(bin_dir)],
            env=env,
            capture_output=True,
            text=True,
        )
        assert out.returncode == 0
        assert out.stdout.strip() == f". {bin_dir}/uv-shim.env"
    assert sorted(p.name for p in bin_dir.iterdir()) == [
        ".uv-shim-bin",
        "uv",
        "uv-shim",
        "uv-shim-boot.py",
        "uv-shim.env",
        "uv-shim.env.fish",
        "uvx",
    ]
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    shutil.copy(world.real_uv, real_dir / "uv")
    out = subprocess.run(
        [sys.executable, "-m", "shim", "install", "--bin-dir", str(real_dir)], env=env, capture_output=True, text=True
    )
    assert out.returncode == 2 and "is not uv-shim" in out.stderr
    assert (real_dir / "uv").read_bytes() == world.real_uv.read_bytes()
    out = subprocess.run(
        [sys.executable, "-m", "shim", "uninstall", "--bin-dir", str(bin_dir)], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0 and not bin_dir.exists()


def test_explicit_real_uv(world: World):
    out = world.uv("--version", UV_SHIM_REAL_UV=str(world.real_uv), PATH="/usr/bin:/bin")
    assert out.stdout.startswith("uv ")
    bad = world.uv("--version", check=False, UV_SHIM_REAL_UV=str(world.root / "nope"))
    assert bad.returncode == 2 and "UV_SHIM_REAL_UV=" in bad.stderr and len(bad.stderr.splitlines()) == 1


@pytest.mark.parametrize("front", ["launcher", "python"])
def test_uvx_runs_the_uv_the_user_named(world: World, front):
    """`UV_SHIM_REAL_UV=/opt/bin/uv-named` beside a `uv` and `uvx` of another version: the uvx
    binary runs the `uv` in its own folder (`uv tool uvx ...`), so through the shim `uvx` must
    be the named uv's, never its neighbour's. Control: that neighbour uvx, run as it is, is the
    other version."""
    from conftest import NEWEST, OLDEST, runs_as, uv_path

    other = OLDEST if world.real_uv != uv_path(OLDEST) else NEWEST
    if uv_path(other) == world.real_uv:
        pytest.skip("needs two uv versions")
    opt = world.root / "opt"
    opt.mkdir()
    for name in ("uv", "uvx"):
        shutil.copy(uv_path(other).parent / name, opt / name)
    (opt / "uv-named").symlink_to(world.real_uv)
    named = subprocess.run([str(world.real_uv), "--version"], capture_output=True, text=True).stdout.split()[1]
    beside = subprocess.run([str(opt / "uvx"), "--version"], capture_output=True, text=True).stdout.split()[1]
    assert beside == other != named  # the control
    env = {"UV_SHIM_REAL_UV": str(opt / "uv-named"), "UV_SHIM_FOREGROUND": "1" if front == "python" else ""}
    ran = runs_as(world, world.venv("v"), **env)
    assert (ran == os.path.realpath(world.real_uv)) == (front == "launcher"), ran  # the path this case is about
    out = subprocess.run(
        [str(world.shim_home / "bin" / "uvx"), "--version"], env=world.env(**env), capture_output=True, text=True
    )
    assert out.returncode == 0 and out.stdout.split()[:2] == ["uvx", named], out
    world.settle()


@pytest.mark.network
def test_bundled_uv_package_is_the_last_resort(world: World, tmp_path):
    """`pip install "uv-shim[uv]"` on a machine with no uv: the uv package's binary is used."""
    from conftest import BASE_PYTHON, REPO

    venv = tmp_path / "tool-venv"
    world.uv("venv", "-q", "--python", BASE_PYTHON, str(venv), shim=False)
    world.uv("pip", "install", "-q", "--python", str(venv / "bin" / "python"), f"{REPO}[uv]", "uv==0.13.9", shim=False)
    env = world.env(PATH="/usr/bin:/bin", UV_SHIM_HOME=str(tmp_path / "home"))
    out = subprocess.run(
        [str(venv / "bin" / "uv-shim"), "install", "--bin-dir", str(tmp_path / "bin")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    which = subprocess.run([str(venv / "bin" / "uv-shim"), "which"], env=env, capture_output=True, text=True)
    assert which.stdout.strip() == str(venv / "bin" / "uv")
    assert "the uv Python package" in which.stderr
    ver = subprocess.run([str(tmp_path / "bin" / "uv"), "--version"], env=env, capture_output=True, text=True)
    assert ver.returncode == 0 and ver.stdout.startswith("uv 0.13.9")


def test_launchers_refresh_themselves_after_an_upgrade(world: World, tmp_path):
    """The launcher's fast path embeds the argv rules: when uv-shim is newer, Python rewrites it."""
    bin_dir = tmp_path / "bin"
    subprocess.run(
        [sys.executable, "-m", "shim", "install", "--bin-dir", str(bin_dir)],
        check=True,
        capture_output=True,
        env=world.env(),
    )
    uv = bin_dir / "uv"
    uv.write_text(uv.read_text().replace("    pip) case", "    nothing) case"))  # an "old" launcher
    os.utime(uv, (1, 1))
    out = subprocess.run([str(uv), "--version"], env=world.env(), capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("uv ")
    assert "    pip) case" in uv.read_text()


@pytest.fixture
def tiny_cache(world: World):
    """The world's cache on a 4 MiB tmpfs (a full disk on demand)."""
    world.cache.mkdir(parents=True, exist_ok=True)
    if (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(world.cache)], capture_output=True
        ).returncode
        != 0
    ):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield world.cache
    subprocess.run(["umount", str(world.cache)], capture_output=True)


def test_full_disk(world: World, wheels, tiny_cache):
    v = world.venv("v")
    world.install(v, "alpha==1.0", "beta==1.0", find_links=wheels)
    before = {p: r.distributions for p, r in world.records().items()}
    filler = tiny_cache / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    out = world.uv("pip", "uninstall", "-q", "--python", str(v / "bin" / "python"), "beta", check=False)
    assert out.returncode == 0  # uv itself needed no space to uninstall: its result stands
    assert {p: r.distributions for p, r in world.records().items()} == before  # old record intact (fail closed)
    assert not list(world.manifest_dir().rglob("*.tmp"))  # no half-written file left
    # the background helper's warning is kept in a file's name (no data block left) for the next command
    warnings = world.said(out, v)
    assert warnings == ["uv-shim: warning: could not record what uv installed: No space left on device"], warnings
    filler.unlink()
    world.uv(*World.install_args(v, "alpha==1.0", find_links=wheels), UV_LINK_MODE="symlink")
    rec = world.records()[str(v.resolve())]
    assert set(rec.distributions) == {"alpha==1.0"}  # caught up
    world.prune()
    assert world.value(v, "alpha") == "alpha-1.0"


def test_lock_file_removed_between_runs(world: World, wheels):
    """Old uv versions and `uv cache clean` delete `.lock`: the next prune makes a new one."""
    v = world.venv("v")
    world.install(v, "alpha==1.0", find_links=wheels)
    (world.cache / ".lock").unlink()
    out = world.uv("cache", "prune")
    assert "Kept 1 archive" in out.stderr and (world.cache / ".lock").exists()
    assert world.value(v, "alpha") == "alpha-1.0"


def test_lock_file_replaced_while_waiting(world: World, wheels):
    """A prune waiting for the lock whose `.lock` is deleted and recreated locks the new file."""
    v = world.venv("v")
    world.install(v, "alpha==1.0", find_links=wheels)
    lock = world.cache / ".lock"
    holder = hold_shared_lock(lock, seconds=3)
    prune = subprocess.Popen([str(world.shim_uv), "cache", "prune"], env=world.env(), stderr=subprocess.PIPE, text=True)
    import time

    time.sleep(0.5)
    lock.unlink()  # what uv 0.7 or `uv cache clean` would do
    _, err = prune.communicate(timeout=60)
    holder.wait()
    assert prune.returncode == 0, err
    assert "Waiting for the cache lock" in err
    assert world.value(v, "alpha") == "alpha-1.0"


def _without_dac(cmd):
    """Run as root but without the capabilities that bypass file permissions."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *cmd]


def test_permission_denied_on_an_environment_keeps_its_pins(world: World, wheels):
    v = world.venv("v")
    world.install(v, "alpha==1.0", find_links=wheels)
    os.chmod(v / "lib", 0)
    try:
        out = subprocess.run(
            _without_dac([str(world.shim_uv), "cache", "prune", "--ci"]),
            env=world.env(),
            capture_output=True,
            text=True,
        )
        assert out.returncode == 0, out.stderr
        warnings = [line for line in out.stderr.splitlines() if line.startswith("uv-shim:")]
        assert (
            len(warnings) == 1
            and "cannot verify" in warnings[0]
            and "Permission denied" in warnings[0]
            and "keeping its 1 archive" in warnings[0]
        )
        assert str(v.resolve()) in world.records()  # not dropped as dead
        world.prune("--ci")  # a bare prune as well: the pin still holds
    finally:
        os.chmod(v / "lib", 0o755)
    assert world.value(v, "alpha") == "alpha-1.0"


def test_an_unsupported_platform_is_one_line_and_exit_2():
    """Windows (simulated: os.name and a missing fcntl): the `uv-shim` command says so in one
    line and exits 2, never a traceback."""
    code = (
        "import os, sys; os.name = 'nt'; sys.modules['fcntl'] = None\n"
        "from shim.cli import main\nsys.exit(main(['status']))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out
    assert out.stderr.count("\n") == 1 and "does not support this platform" in out.stderr
