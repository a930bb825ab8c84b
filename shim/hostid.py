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
_machine: Optional[str] = None


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


_MACHINE_FILES = ("/etc/machine-id", "/var/lib/dbus/machine-id")
_UUID_MARK = '"IOPlatformUUID" = "'


def machine_id() -> str:
    """A stable id of the machine, from whatever this system has, chosen at run time: systemd's
    or D-Bus's machine-id, else the hardware UUID that macOS's ``ioreg`` reports (memoized in
    uv-shim's state folder: it never changes). "" when none can be had: see ``strong``.
    Looked up once per process."""
    global _machine
    if _machine is None:
        _machine = _find_machine_id()
    return _machine


def _find_machine_id() -> str:
    for path in _MACHINE_FILES:
        found = _read(path).strip()
        if found:
            return found
    from shim import paths

    memo = os.path.join(paths.state_dir(), "machine-uuid")
    found = _read(memo).strip()
    if found:
        return found
    ioreg = next(
        (
            c
            for d in os.environ.get("PATH", "").split(os.pathsep)
            if os.path.isabs(d)  # never the working directory's ioreg: the id is memoized for good
            for c in [os.path.join(d, "ioreg")]
            if os.access(c, os.X_OK)
        ),
        None,
    )  # found at run time, not by platform name (shutil costs the hot path milliseconds)
    if ioreg is None:
        return ""
    import subprocess

    try:
        out = subprocess.run(
            [ioreg, "-rd1", "-c", "IOPlatformExpertDevice"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    i = out.find(_UUID_MARK)
    found = out[i + len(_UUID_MARK) :].split('"', 1)[0].strip() if i >= 0 else ""
    if found:
        try:
            paths.write_atomic(memo, found.encode())
        except OSError:
            pass
    return found


def strong() -> bool:
    """Whether this host's identity is certain: named by ``UV_SHIM_HOST_ID`` or a machine id.
    Without one, two machines with one hostname could take each other for themselves, so a prune
    never calls a root of this identity dead: fail closed (``liveness``)."""
    return bool(os.environ.get("UV_SHIM_HOST_ID")) or bool(machine_id())


def legacy_identity() -> Optional[str]:
    """The host id uv-shim used before it covered the filesystem view (records written then);
    None when ``UV_SHIM_HOST_ID`` names the host explicitly."""
    from shim.record import _sha256

    if os.environ.get("UV_SHIM_HOST_ID"):
        return None
    raw = "\0".join((os.uname().nodename, machine_id(), container_id()))
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
            raw = "\0".join((hostname, machine_id(), container_id(), filesystem_view()))
            _identity = (hostname, _sha256(raw.encode()).hexdigest()[:16])
    return _identity
