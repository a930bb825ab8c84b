"""Where Linux-only facts are missing (issue 19, simulated without a Mac): `/proc` hidden (an
empty tmpfs over it in a mount namespace) and `/etc/machine-id` absent. Installs, prunes and
the first `uv run` (whose helper cannot see uv's children then) still protect, and the bare uv
still breaks the same world (the control)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import NEWEST, World, pair, require_root_unshare
from test_workflows import init_project, refresh_elsewhere, wait_for_pins


@pytest.fixture(autouse=True)
def _home(shim_home, monkeypatch):
    monkeypatch.setenv("UV_SHIM_HOME", str(shim_home))


def _hidden(w: World, script: str) -> subprocess.CompletedProcess:
    """Run ``script`` (sh) in a mount namespace where /proc is empty and there is no machine-id."""
    empty = w.root / "empty-machine-id"
    empty.write_text("")
    setup = f"mount -t tmpfs tmpfs /proc && mount --bind {empty} /etc/machine-id && "
    if os.path.exists("/var/lib/dbus/machine-id"):
        setup += f"mount --bind {empty} /var/lib/dbus/machine-id && "
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", setup + script], env=w.env(UV_LINK_MODE="symlink"), capture_output=True, text=True
    )


def test_the_first_uv_run_without_proc_is_protected(tmp_path, shim_home, wheels):
    require_root_unshare()
    if not os.path.exists("/etc/machine-id"):
        pytest.skip("needs a machine-id to hide")
    for w in pair(tmp_path, shim_home, NEWEST):
        shim = w.root.name == "shim"
        proj = init_project(w, wheels, shim)
        exe = w.shim_uv if shim else w.real_uv
        out = _hidden(w, f"cd {proj} && {exe} run -q python -c 'import alpha; print(alpha.VALUE)'")
        assert out.returncode == 0 and out.stdout.strip() == "alpha-1.0", out.stderr
        venv = proj / ".venv"
        if shim:
            wait_for_pins(w, venv, 2)
        refresh_elsewhere(w, wheels, "alpha==1.0", "beta==1.0")
        out = _hidden(w, f"{w.real_uv} cache prune -q")  # bare, in the same view
        assert out.returncode == 0, out.stderr
        assert w.works(venv) == shim, (shim, w.broken(venv))


@pytest.mark.parametrize("identity", ["none", "ioreg", "override"])
def test_install_and_prune_through_the_shim_without_proc(world: World, wheels, identity, tmp_path):
    """Without a machine id the host's identity is uncertain: a prune keeps the roots of an
    environment that is gone (another machine of the same hostname may have it), and says so.
    With an id from elsewhere (macOS's `ioreg`, simulated by a script printing a hardware UUID)
    or UV_SHIM_HOST_ID, the gone environment is released and `--unused` reclaims its archive."""
    require_root_unshare()
    if not os.path.exists("/etc/machine-id"):
        pytest.skip("needs a machine-id to hide")
    fake = tmp_path / "fakebin"
    fake.mkdir()
    if identity == "ioreg":
        (fake / "ioreg").write_text('#!/bin/sh\necho \'  "IOPlatformUUID" = "0A1B2C3D-0000-4000-8000-00000000ABCD"\'\n')
        (fake / "ioreg").chmod(0o755)
    env = f"export PATH={fake}:$PATH UV_SHIM_HOME={tmp_path / 'state'}; "  # its own memo of a hardware id
    env += "export UV_SHIM_HOST_ID=this-host; " if identity == "override" else ""
    v, gone = world.venv("v"), world.venv("gone")
    py = lambda e: f"{e}/bin/python"  # noqa: E731
    find = f"--no-index --find-links {wheels}"
    script = env + (
        f"{world.shim_uv} pip install -q --python {py(v)} {find} alpha==1.0 && "
        f"{world.shim_uv} pip install -q --python {py(gone)} {find} beta==1.0 && rm -rf {gone} && "
        f"{world.shim_uv} cache prune --unused && {world.real_uv} cache prune --ci && "
        f"{sys.executable} -m shim status && {sys.executable} -m shim doctor && {sys.executable} -m shim envs"
    )
    out = _hidden(world, script)
    assert out.returncode == 0, out.stderr
    assert world.works(v), out.stderr
    assert "Environments:" in out.stdout and "No broken environments found" in out.stderr, out
    if identity == "none":
        assert "no machine id" in out.stderr and ": 1 archive (" not in out.stderr, out.stderr
    else:
        assert ": 1 archive (" in out.stderr, out.stderr


def test_lock_holders_without_proc_locks(tmp_path):
    """Where /proc/locks does not exist (macOS, the BSDs) the holders of uv's cache lock are the
    processes that have it open (psutil)."""
    from conftest import hold_shared_lock

    from shim import locks

    lock = tmp_path / ".lock"
    holder = hold_shared_lock(lock)
    try:
        assert holder.pid in {pid for pid, _cmd in locks._openers(str(lock))}
    finally:
        holder.kill()
