"""The container entrypoint, run directly (no Docker engine here), and caches shared across hosts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, World, require_root_unshare

ENTRYPOINT = REPO / "hooks" / "docker-entrypoint.sh"


def _container_env(world: World, **extra: str):
    env = world.env(**extra)
    env.pop("UV_SHIM_HOME")
    env["HOME"] = str(world.root / "container-home")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), str(world.real_uv.parent), "/usr/bin:/bin"])
    return env


def test_entrypoint_puts_the_shim_in_front_and_execs(world: World):
    env = _container_env(world)
    out = subprocess.run(
        ["sh", str(ENTRYPOINT), "sh", "-c", "command -v uv; uv --version; echo $$"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == str(world.root / "container-home" / ".local" / "share" / "uv-shim" / "bin" / "uv")
    assert lines[1].startswith("uv ")
    again = subprocess.run(["sh", str(ENTRYPOINT), "true"], env=env, capture_output=True, text=True)
    assert again.returncode == 0 and again.stderr == ""


def test_entrypoint_without_uv_shim_still_runs_the_command(world: World):
    env = _container_env(world)
    env["PATH"] = f"{world.real_uv.parent}:/usr/bin:/bin"
    out = subprocess.run(["sh", str(ENTRYPOINT), "uv", "--version"], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("uv ")
    assert out.stderr.startswith("uv-shim: warning: uv-shim is not installed")


@pytest.fixture
def mounted(world: World):
    """The host's cache folder, bind-mounted at another path as a container would see it."""
    host_cache = world.root / "host-cache"
    host_cache.mkdir()
    inside = world.root / "mnt" / "cache"
    inside.mkdir(parents=True)
    if subprocess.run(["mount", "--bind", str(host_cache), str(inside)], capture_output=True).returncode != 0:
        pytest.skip("cannot bind-mount here (needs root)")
    yield host_cache, inside
    subprocess.run(["umount", str(inside)], capture_output=True)


def test_cache_reached_at_another_path(world: World, wheels, mounted):
    """Installed in a "container" that sees the cache at /mnt/cache; pruned on the "host" that
    sees it elsewhere, by the bare uv and through the shim: relative pins still resolve, and
    the container's environment (which this host cannot check) keeps its archives."""
    host_cache, inside = mounted
    env = _container_env(world, UV_CACHE_DIR=str(inside), UV_LINK_MODE="symlink", UV_SHIM_HOST_ID="container-1")
    venv = world.root / "app-venv"
    world.uv("venv", "-q", "--python", sys.executable, str(venv), shim=False)
    cmd = f"uv pip install -q --python {venv}/bin/python --no-index --find-links {wheels} alpha==1.0 beta==1.0"
    out = subprocess.run(["sh", str(ENTRYPOINT), "sh", "-c", cmd], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert os.readlink(next((venv / "lib").glob("python*/site-packages/alpha/__init__.py"))).startswith(str(inside))
    subprocess.run(["umount", str(inside)], check=True)  # the container is gone: only the host path exists
    world.uv("cache", "prune", "--ci", shim=False, UV_CACHE_DIR=str(host_cache))
    host = world.uv("cache", "prune", "--ci", UV_CACHE_DIR=str(host_cache))
    assert "on host" in host.stderr and "lease ends in" in host.stderr
    subprocess.run(["mount", "--bind", str(host_cache), str(inside)], check=True)  # the next container
    assert world.value(venv, "alpha") == "alpha-1.0" and world.value(venv, "beta") == "beta-1.0"


CID = "3f1c0e0b5a9d4c7e8f6a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f506"


@pytest.mark.parametrize(
    "text",
    [
        f"0::/system.slice/docker-{CID}.scope\n",  # cgroup v2, systemd driver
        f"12:memory:/docker/{CID}\n",  # cgroup v1
        f"1234 1 0:52 /var/lib/docker/containers/{CID}/hostname /etc/hostname rw - ext4 /dev/sda1 rw\n",  # mountinfo
        f"0::/machine.slice/libpod-{CID}.scope/container\n",  # podman
        f"0::/kubepods/besteffort/pod1/cri-containerd-{CID}.scope\n",  # containerd
    ],
)
def test_container_id_from_proc_text(text):
    from shim import hostid

    assert hostid.container_in(text) == CID


def test_host_identity_tells_containers_apart(world: World, wheels):
    """Two "containers" (host ids) install into the same cache: each prune keeps the other's."""
    a, b = world.venv("a"), world.venv("b")
    world.install(a, "alpha==1.0", find_links=wheels, UV_SHIM_HOST_ID="container-a")
    world.install(b, "beta==1.0", find_links=wheels, UV_SHIM_HOST_ID="container-b")
    recs = world.records()
    assert {r.host_id for r in recs.values()} == {"container-a", "container-b"}
    import shutil

    shutil.rmtree(a)  # container-b cannot see that a is gone: a stays protected from there
    out = world.uv("cache", "prune", "--ci", UV_SHIM_HOST_ID="container-b")
    assert "Kept 1 archive of" in out.stderr
    assert len(world.pinned()) == 2
    out = world.uv("cache", "prune", "--ci", UV_SHIM_HOST_ID="container-a")  # a's own host releases it
    assert "Released 1 environment" in out.stderr
    assert len(world.pinned()) == 1 and world.value(b, "beta") == "beta-1.0"


def test_the_real_host_identity_tells_hosts_apart(world: World, wheels):
    """No UV_SHIM_HOST_ID anywhere: the identity comes from the hostname, machine-id and container
    id as the shim reads them. An install made under another hostname (a new UTS namespace) is
    another host's root: kept until its lease ends, even when its environment is gone from here.
    Control: the same environment recorded under this host's identity is released."""
    require_root_unshare(" to give a process another hostname")
    elsewhere, here = world.venv("elsewhere"), world.venv("here")
    args = ["pip", "install", "-q", "--no-index", "--find-links", str(wheels)]
    env = world.env(UV_LINK_MODE="symlink")
    assert "UV_SHIM_HOST_ID" not in env
    other = subprocess.run(
        [
            "unshare",
            "--uts",
            "sh",
            "-c",
            'hostname other-host && exec "$@"',
            "sh",
            str(world.shim_uv),
            *args,
            "--python",
            str(elsewhere / "bin" / "python"),
            "alpha==1.0",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    if other.returncode != 0 and "unshare" in other.stderr:
        pytest.skip(f"cannot make a UTS namespace here: {other.stderr.strip()}")
    assert other.returncode == 0, other.stderr
    world.install(here, "beta==1.0", find_links=wheels)
    recs = {Path(p).name: r for p, r in world.records().items()}
    assert recs["elsewhere"].host == "other-host" and recs["here"].host == os.uname().nodename
    assert recs["elsewhere"].host_id != recs["here"].host_id
    shutil.rmtree(elsewhere)
    shutil.rmtree(here)
    out = world.uv("cache", "prune", "--ci")
    assert "of " + str(elsewhere.resolve()) + " on host other-host" in out.stderr, out.stderr
    assert "Released 1 environment" in out.stderr  # here's own root: this host can see it is gone
    assert [r.path for r in world.records().values()] == [str(elsewhere.resolve())]
