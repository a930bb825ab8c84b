"""Who is running: a host identity that tells containers sharing one cache apart.

Everything that decides what a path means: hostname, machine-id, container id (from
/proc/self/cgroup or mountinfo), the mount namespace and the root folder (a chroot, bubblewrap,
Apptainer or ``unshare -m`` shares hostname and machine-id with the host but not its mounts),
hashed. Roots recorded under another identity cannot be checked from here and are kept until
their lease ends: fail closed.
``UV_SHIM_HOST_ID`` overrides it (tests, or hosts that want a stable name).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional

_MARKERS = ("docker", "containers", "libpod", "crio", "cri-containerd")
_HEX = frozenset("0123456789abcdef")
_identity: Optional[tuple[str, str]] = None


def _read(path: str, limit: int = 65536) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(limit)
    except OSError:
        return ""


def container_in(text: str) -> str:
    """The first 64-hex container id after a runtime's marker in cgroup or mountinfo text."""
    for marker in _MARKERS:
        start = 0
        while True:
            i = text.find(marker, start)
            if i < 0:
                break
            cand = text[i + len(marker) + 1 : i + len(marker) + 65]
            if len(cand) == 64 and _HEX.issuperset(cand):
                return cand
            start = i + 1
    return ""


def container_id() -> str:
    """The id of the container we run in, if any (docker, podman, cri-o, containerd)."""
    for path in ("/proc/self/cgroup", "/proc/self/mountinfo"):
        found = container_in(_read(path))
        if found:
            return found
    return ""


def filesystem_view() -> str:
    """What tells two views of the filesystem apart on one machine: the mount namespace and the
    root folder's device and inode ("?" where unreadable: then it matches only itself)."""
    try:
        ns = os.readlink("/proc/self/ns/mnt")
    except OSError:
        ns = "?"
    try:
        st = os.stat("/")
        root = f"{st.st_dev}:{st.st_ino}"
    except OSError:
        root = "?"
    return f"{ns} {root}"


def legacy_identity() -> Optional[str]:
    """The host id uv-shim used before it covered the filesystem view (records written then);
    None when ``UV_SHIM_HOST_ID`` names the host explicitly."""
    from shim.record import _sha256

    if os.environ.get("UV_SHIM_HOST_ID"):
        return None
    machine = _read("/etc/machine-id").strip() or _read("/var/lib/dbus/machine-id").strip()
    raw = "\0".join((os.uname().nodename, machine, container_id()))
    return _sha256(raw.encode()).hexdigest()[:16]


def identity() -> tuple[str, str]:
    """(hostname, host id)."""
    global _identity
    if _identity is None:
        from shim.record import _sha256

        hostname = os.uname().nodename
        override = os.environ.get("UV_SHIM_HOST_ID")
        if override:
            _identity = (hostname, override)
        else:
            machine = _read("/etc/machine-id").strip() or _read("/var/lib/dbus/machine-id").strip()
            raw = "\0".join((hostname, machine, container_id(), filesystem_view()))
            _identity = (hostname, _sha256(raw.encode()).hexdigest()[:16])
    return _identity
