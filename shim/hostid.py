"""Who is running: a host identity that tells containers sharing one cache apart.

hostname + machine-id + container id (from /proc/self/mountinfo or cgroup), hashed. Roots
recorded under another identity cannot be checked from here and are kept until their lease ends.
``UV_SHIM_HOST_ID`` overrides it (tests, or hosts that want a stable name).
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from functools import lru_cache
from typing import Tuple

_CONTAINER = re.compile(r"(?:docker|containers|libpod|crio|cri-containerd)[-/]([0-9a-f]{64})")


def _read(path: str, limit: int = 65536) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(limit)
    except OSError:
        return ""


def container_id() -> str:
    for path in ("/proc/self/cgroup", "/proc/self/mountinfo"):
        m = _CONTAINER.search(_read(path))
        if m:
            return m.group(1)
    return ""


@lru_cache(maxsize=None)
def identity() -> Tuple[str, str]:
    """(hostname, host id)."""
    hostname = socket.gethostname()
    override = os.environ.get("UV_SHIM_HOST_ID")
    if override:
        return hostname, override
    machine = _read("/etc/machine-id").strip() or _read("/var/lib/dbus/machine-id").strip()
    raw = "\0".join((hostname, machine, container_id()))
    return hostname, hashlib.sha256(raw.encode()).hexdigest()[:16]
