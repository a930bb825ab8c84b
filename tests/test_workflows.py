"""Every environment uv touches, the way users really use uv (issue 13), on the oldest and the
newest uv: each world is first broken with the bare uv (the control), then protected through
the shim. "Works" is ``World.works`` (every RECORD file exists, regular-package imports)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import BASE_PYTHON, NEWEST, OLDEST, World, _vt, make_project, pair, require_root_unshare

EDGE = sorted({OLDEST, NEWEST}, key=_vt)
SETTLE = 30.0  # seconds a detached helper may take to pin (it needs well under one)


@pytest.fixture(autouse=True)
def _home(shim_home, monkeypatch):
    monkeypatch.setenv("UV_SHIM_HOME", str(shim_home))


def wait_for_pins(w: World, venv: Path, count: int) -> None:
    """Until the helper that finishes `uv run`'s bookkeeping has pinned ``count`` archives."""
    deadline = time.monotonic() + SETTLE
    while time.monotonic() < deadline:
        rec = w.records().get(str(venv.resolve()))
        if rec is not None and len(rec.pinned) >= count and len(w.pinned()) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"no pins for {venv} after {SETTLE}s: {w.records()}")


def init_project(w: World, wheels: Path, shim: bool, deps: str = '"alpha==1.0", "beta"') -> Path:
    """`uv init proj`, then dependencies resolved only from a copy of the test wheels (the copy
    is what ``refresh_elsewhere`` changes)."""
    local = w.root / "wheels"
    if not local.exists():
        shutil.copytree(wheels, local)
    w.uv("init", "-q", "--no-workspace", "--python", BASE_PYTHON, "proj", shim=shim)
    proj = w.root / "proj"
    text = (proj / "pyproject.toml").read_text().replace("dependencies = []", f"dependencies = [{deps}]")
    (proj / "pyproject.toml").write_text(text + f'\n[tool.uv]\nno-index = true\nfind-links = ["{local}"]\n')
    return proj


def refresh_elsewhere(w: World, wheels: Path, *specs: str) -> None:
    """The wheel files change and the same packages are installed again with --refresh into
    another venv: uv unpacks new archives and forgets the first ones (the seed scenario), so
    only a pin keeps them."""
    local = w.root / "wheels"
    for whl in local.glob("*.whl"):
        st = whl.stat()
        os.utime(whl, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    other = w.venv("elsewhere")
    w.install(other, *specs, find_links=local, shim=False, extra=["--refresh"])


@pytest.mark.parametrize("version", EDGE)
@pytest.mark.parametrize("prune", [(), ("--ci",)], ids=["prune", "ci"])
def test_first_uv_run_in_a_new_project_survives_a_bare_prune(tmp_path, shim_home, wheels, version, prune):
    """`uv init` then `uv run`: the environment the first run creates is pinned by the helper
    within seconds, so a bare prune after a --refresh install elsewhere keeps it working."""
    for w in pair(tmp_path, shim_home, version):
        shim = w.root.name == "shim"
        proj = init_project(w, wheels, shim)
        out = w.uv(
            "run", "-q", "python", "-c", "import alpha; print(alpha.VALUE)", cwd=proj, shim=shim, UV_LINK_MODE="symlink"
        )
        assert out.stdout.strip() == "alpha-1.0", out.stderr
        venv = proj / ".venv"
        if shim:
            wait_for_pins(w, venv, 2)
        refresh_elsewhere(w, wheels, "alpha==1.0", "beta==1.0")
        w.prune(*prune)
        assert w.works(venv) == shim, (shim, w.broken(venv))


@pytest.mark.parametrize("version", EDGE)
@pytest.mark.parametrize("prune", [("--unused",), ("--max-age", "0s"), ("--max-size", "1B"), ()])
def test_first_uv_run_survives_every_prune_through_the_shim(tmp_path, shim_home, wheels, version, prune):
    """Right after the first `uv run`, every prune through the shim keeps the project working.
    Control: the bare uv's prune after a --refresh install elsewhere breaks it."""
    for w in pair(tmp_path, shim_home, version):
        shim = w.root.name == "shim"
        proj = init_project(w, wheels, shim)
        w.uv("run", "-q", "python", "-c", "pass", cwd=proj, shim=shim, UV_LINK_MODE="symlink")
        refresh_elsewhere(w, wheels, "alpha==1.0", "beta==1.0")
        if shim:
            w.uv("cache", "prune", *prune)
        else:
            w.prune()
        assert w.works(proj / ".venv") == shim, (shim, w.broken(proj / ".venv"))


@pytest.mark.parametrize("version", EDGE)
def test_pins_exist_while_the_program_still_runs(tmp_path, shim_home, wheels, version):
    """The user's program is still running under `uv run` when a bare prune comes (uv >= 0.8.24
    with --force, which skips uv's lock; older uv never locks): the helper has pinned by then."""
    force = ("--force",) if _vt(version) >= (0, 8, 24) else ()
    for w in pair(tmp_path, shim_home, version):
        shim = w.root.name == "shim"
        proj = init_project(w, wheels, shim)
        go = w.root / "go"
        code = (
            f"import os,time\nwhile not os.path.exists({str(go)!r}): time.sleep(0.02)\nimport alpha; print(alpha.VALUE)"
        )
        exe = str(w.shim_uv if shim else w.real_uv)
        running = subprocess.Popen(
            [exe, "run", "-q", "python", "-c", code],
            cwd=proj,
            env=w.env(UV_LINK_MODE="symlink"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            venv = proj / ".venv"
            deadline = time.monotonic() + SETTLE
            while not list(venv.glob("lib/python*/site-packages/beta-1.0.dist-info/METADATA")):
                assert time.monotonic() < deadline and running.poll() is None, running.communicate()
                time.sleep(0.02)
            if shim:
                wait_for_pins(w, venv, 2)
            refresh_elsewhere(w, wheels, "alpha==1.0", "beta==1.0")
            w.prune(*force)
            go.write_text("")
            out, err = running.communicate(timeout=60)
        finally:
            running.kill()
        assert (out.strip() == "alpha-1.0") == shim, (shim, out, err)
        assert w.works(venv) == shim


@pytest.mark.parametrize("version", EDGE)
def test_a_renamed_project_is_followed_not_released(tmp_path, shim_home, wheels, version):
    """`mv proj proj-renamed`: the root follows its environment (same device and inode) and is
    re-rooted; `--unused` then keeps what it links. Control: a bare prune --ci after the refresh."""
    for w in pair(tmp_path, shim_home, version):
        shim = w.root.name == "shim"
        proj = init_project(w, wheels, shim)
        w.uv("sync", "-q", cwd=proj, shim=shim, UV_LINK_MODE="symlink")
        moved = w.root / "proj-renamed"
        proj.rename(moved)
        refresh_elsewhere(w, wheels, "alpha==1.0", "beta==1.0")
        if shim:
            out = w.uv("cache", "prune", "--unused")
            assert f"Followed {proj.resolve() / '.venv'} to {moved.resolve() / '.venv'}" in out.stderr, out.stderr
            assert str((moved / ".venv").resolve()) in w.records()
            w.prune("--ci")  # and the bare uv after it: the pins moved with the root
        else:
            w.prune("--ci")
        assert w.works(moved / ".venv") == shim, (shim, w.broken(moved / ".venv"))


def test_environments_renamed_beside_a_deleted_one_are_all_followed(tmp_path, shim_home, wheels):
    """CI runners' venvs in one folder: one is deleted, two are renamed. The prune looks at each
    sibling once for all three (``moves.Finder``) and still follows both renamed ones; `--unused`
    then keeps what they link. Control: the bare prune --ci after the same refresh."""
    for w in pair(tmp_path, shim_home, NEWEST):
        shim = w.root.name == "shim"
        local = w.root / "wheels"
        shutil.copytree(wheels, local)
        (w.root / "runners").mkdir()
        venvs = {name: w.venv(f"runners/{name}") for name in ("a", "b", "c")}
        for venv in venvs.values():
            w.install(venv, "alpha==1.0", find_links=local, shim=shim)
        shutil.rmtree(venvs["a"])  # its search (in whatever order the roots come) walks past the others
        moved = [venvs[n].rename(venvs[n].with_name(f"{n}-renamed")) for n in ("b", "c")]
        refresh_elsewhere(w, wheels, "alpha==1.0")
        if shim:
            out = w.uv("cache", "prune", "--unused")
            for name, to in zip(("b", "c"), moved):
                assert f"Followed {venvs[name].resolve()} to {to.resolve()}" in out.stderr, out.stderr
        w.prune("--ci")
        assert [w.works(v) for v in moved] == [shim, shim], [w.broken(v) for v in moved]


def test_a_deleted_environment_is_released_and_logged(world: World, wheels):
    from shim import manifest
    from shim.confined import Dir

    v = world.venv("v")
    world.install(v, "alpha==1.0", find_links=wheels)
    subprocess.run(["rm", "-rf", str(v)], check=True)
    world.uv("cache", "prune")
    with Dir.top(str(world.manifest_dir())) as area:
        (entry,) = manifest.releases(area)
    assert entry["path"] == str(v.resolve()) and entry["why"] == "environment no longer exists"
    assert entry["distributions"] == ["alpha==1.0"] and len(entry["archives"]) == 1
    doctor = subprocess.run([sys.executable, "-m", "shim", "doctor"], env=world.env(), capture_output=True, text=True)
    assert f"{v.resolve()} (1 distribution): environment no longer exists" in doctor.stdout, doctor
    doc = subprocess.run(
        [sys.executable, "-m", "shim", "doctor", "--json"], env=world.env(), capture_output=True, text=True
    )
    assert [r["path"] for r in json.loads(doc.stdout)["released"]] == [str(v.resolve())]


def test_an_intercepted_command_in_a_deleted_working_directory(world: World, wheels):
    """One warning, then uv's own behaviour and exit code; never a traceback."""
    gone = world.root / "gone"
    gone.mkdir()
    code = "import os,subprocess,sys; os.chdir(sys.argv[1]); os.rmdir(sys.argv[1]); sys.exit(subprocess.run(sys.argv[2:]).returncode)"
    for exe in (world.real_uv, world.shim_uv):
        out = subprocess.run(
            [BASE_PYTHON, "-c", code, str(gone), str(exe), "pip", "install", "alpha"],
            env=world.env(),
            capture_output=True,
            text=True,
        )
        gone.mkdir(exist_ok=True)
        if exe == world.real_uv:
            bare = out
            continue
        assert out.returncode == bare.returncode, (out, bare)
        assert "Traceback" not in out.stderr and out.stderr.count("uv-shim: warning:") <= 1, out.stderr


# -- every way of naming the target, protected end to end -----------------------------------------

FIND = ["--no-index", "--find-links", "{wheels}"]
# id -> (cwd, argv, env, interpreter root to probe with, site folder to probe or None, first uv)
TARGET_CASES = {
    "working-dir-var": (".", ["sync"], {"UV_WORKING_DIR": "proj"}, "proj/.venv", None, (0, 9, 0)),
    "project-var": (".", ["sync"], {"UV_PROJECT": "proj"}, "proj/.venv", None, (0, 0, 0)),
    "directory-relative": (".", ["--directory", "proj", "sync"], {}, "proj/.venv", None, (0, 0, 0)),
    "project-env-tilde": ("proj", ["sync"], {"UV_PROJECT_ENVIRONMENT": "~/penv"}, "proj/~/penv", None, (0, 0, 0)),
    "version-bump": ("proj", ["version", "--bump", "patch"], {}, "proj/.venv", None, (0, 9, 0)),
    "target-tilde": (
        ".",
        ["pip", "install", "--target", "~/tgt", *FIND, "alpha==1.0", "beta"],
        {},
        "base",
        "~/tgt",
        (0, 0, 0),
    ),
    "python-symlink-outside-venv": (
        ".",
        ["pip", "install", "-p", "links/py", *FIND, "alpha==1.0", "beta"],
        {},
        "base",
        None,
        (0, 0, 0),
    ),
}


@pytest.mark.parametrize("version", EDGE)
@pytest.mark.parametrize("case", sorted(TARGET_CASES))
def test_every_way_of_naming_the_target_is_protected(tmp_path, shim_home, wheels, version, case):
    """Installed through the shim, then the archives orphaned by a --refresh install elsewhere:
    prunes through the shim (--unused, --max-size 1B) and a bare prune --ci keep it working.
    Control: the bare uv's prune --ci breaks the same world."""
    from conftest import private_python

    cwd_rel, argv_t, env_t, probe, site, since = TARGET_CASES[case]
    if _vt(version) < since:
        pytest.skip(f"uv {version} does not have this")
    for w in pair(tmp_path, shim_home, version):
        shim = w.root.name == "shim"
        local = w.root / "wheels"
        shutil.copytree(wheels, local)
        base = private_python(w.root / "base")
        w.uv("venv", "-q", "--python", str(base), str(w.root / "venvP"), shim=False)
        (w.root / "links").mkdir()
        (w.root / "links" / "py").symlink_to(w.root / "venvP" / "bin" / "python")
        make_project(w, local, '"alpha==1.0", "beta"')
        argv = [a.replace("{wheels}", str(local)) for a in argv_t]
        w.uv(*argv, cwd=w.root / cwd_rel, shim=shim, UV_LINK_MODE="symlink", UV_PYTHON=BASE_PYTHON, **env_t)
        interpreter = w.root / probe
        where = w.root / site if site else None
        assert w.works(interpreter, where), w.broken(interpreter, where)
        refresh_elsewhere(w, wheels, "alpha==1.0", "beta==1.0")
        if shim:
            w.uv("cache", "prune", "--unused")
            w.uv("cache", "prune", "--max-size", "1B")
        w.prune("--ci")
        assert w.works(interpreter, where) == shim, (shim, w.broken(interpreter, where))


def _archive_of(w: World, dist: str) -> list[str]:
    return [a for a in w.archives() if list((w.cache / "archive-v0" / a).glob(f"{dist}.dist-info"))]


@pytest.mark.parametrize("version", EDGE)
@pytest.mark.parametrize("how", ["inline-script", "uvx", "run-with"])
def test_first_run_in_a_cached_environment_is_pinned(tmp_path, shim_home, wheels, version, how):
    """`uv run script.py` with inline metadata (PEP 723), `uvx` and `uv run --with` run in
    environments uv keeps in its cache. From the very first run, what they link is pinned by the
    helper, so a bare prune --ci keeps those archives (uv rebuilds the environment from them).
    Control: with the bare uv the same prune deletes them."""
    for w in pair(tmp_path, shim_home, version):
        shim = w.root.name == "shim"
        find = f'no-index = true\nfind-links = ["{wheels}"]'
        if how == "inline-script":
            (w.root / "s.py").write_text(
                '# /// script\n# dependencies = ["alpha==1.0"]\n# [tool.uv]\n'
                + "".join(f"# {line}\n" for line in find.splitlines())
                + "# ///\nimport alpha; print(alpha.VALUE)\n"
            )
            argv = ["run", "--python", BASE_PYTHON, "s.py"]
            dist = "alpha-1.0"
        elif how == "uvx":
            argv = ["tool", "run", "--no-index", "--find-links", str(wheels), "--from", "gamma==1.0", "gamma"]
            dist = "gamma-1.0"
        else:
            argv = ["run", "--no-project", "--python", BASE_PYTHON, "--no-index", "--find-links", str(wheels)]
            argv += ["--with", "alpha==1.0", "python", "-c", "import alpha; print(alpha.VALUE)"]
            dist = "alpha-1.0"
        out = w.uv(*argv, shim=shim, UV_LINK_MODE="symlink")
        assert "alpha-1.0" in out.stdout or "gamma says hi" in out.stdout, out.stderr
        (archive,) = _archive_of(w, dist)
        if shim:
            deadline = time.monotonic() + SETTLE
            while archive not in w.pinned() or not [r for r in w.records().values() if r.kind == "cached"]:
                assert time.monotonic() < deadline, (w.records(), w.pinned())  # pins land before records
                time.sleep(0.05)
        w.prune("--ci")
        assert (archive in w.archives()) == shim, (shim, w.archives())


@pytest.mark.parametrize("version", EDGE)
def test_a_root_recorded_in_another_mount_namespace_is_foreign(tmp_path, shim_home, wheels, version):
    """A sandbox that shares hostname and machine-id with the host but not its mounts (`unshare
    -m`, like bubblewrap, Apptainer or a chroot) installs into a path the host cannot see. The
    host's prune through the shim must keep that root (foreign, until its lease ends), not call
    it dead: --unused then keeps its archives, and so does a bare prune after it.
    Control: the bare uv's prune after the refresh breaks it."""
    require_root_unshare()
    for w in pair(tmp_path, shim_home, version):
        shim = w.root.name == "shim"
        data, mnt = w.root / "data", w.root / "mnt"  # mnt: empty on the host, `data` inside
        data.mkdir()
        mnt.mkdir()
        local = w.root / "wheels"
        shutil.copytree(wheels, local)
        exe = str(w.shim_uv if shim else w.real_uv)
        script = (
            f"mount --bind {data} {mnt} && {w.real_uv} venv -q --python {BASE_PYTHON} {mnt}/venv && "
            f"{exe} pip install -q --python {mnt}/venv/bin/python --no-index --find-links {local} alpha==1.0 beta"
        )
        out = subprocess.run(
            ["unshare", "-m", "sh", "-c", script], env=w.env(UV_LINK_MODE="symlink"), capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        assert not (mnt / "venv").exists() and (data / "venv").is_dir()  # invisible from here
        assert w.works(data / "venv")
        refresh_elsewhere(w, wheels, "alpha==1.0", "beta==1.0")
        if shim:
            out = w.uv("cache", "prune", "--unused")
            assert "on host" in out.stderr, out.stderr  # kept as another host's root
        w.prune()
        assert w.works(data / "venv") == shim, (shim, w.broken(data / "venv"))


def test_a_helper_failure_reaches_the_user_once(world: World, wheels):
    """What a detached helper could not print (the terminal is the user's program's) is kept in
    the cache and printed by the next intercepted command, once."""
    from shim import manifest

    v = world.venv("v")
    world.install(v, "alpha==1.0", find_links=wheels)
    cache = world.cache_object()
    manifest.add_notice(cache, "could not record what `uv run` installed: disk full")
    first = world.install(v, "beta==1.0", find_links=wheels)
    assert first.stderr.count("uv-shim: warning: could not record what `uv run` installed: disk full") == 1
    second = world.install(v, "alpha==2.0", find_links=wheels)
    assert "disk full" not in second.stderr


def test_uv_run_as_pid_1(world: World, wheels):
    """In a container uv is often PID 1 (`CMD ["uv", "run", ...]`): the helper is then uv's own
    child and must not take itself for the user's program."""
    require_root_unshare()
    proj = init_project(world, wheels, True)
    out = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", str(world.shim_uv), "run", "-q", "python", "-c",
         "import time, alpha; time.sleep(1); print(alpha.VALUE)"],
        cwd=proj, env=world.env(UV_LINK_MODE="symlink"), capture_output=True, text=True,
    )  # fmt: skip
    assert out.stdout.strip() == "alpha-1.0", out.stderr
    wait_for_pins(world, proj / ".venv", 2)


def test_an_unwritable_state_folder_keeps_protection(world: World, wheels, tmp_path):
    """The host index lives outside the cache; when it cannot be written the install is still
    recorded and pinned in the cache."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    v = world.venv("v")
    out = world.install(v, "alpha==1.0", find_links=wheels, UV_SHIM_HOME=str(blocker))
    assert str(v.resolve()) in world.records() and world.pinned(), out.stderr
