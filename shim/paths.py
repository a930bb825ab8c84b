"""Where uv-shim keeps its own files outside the cache, and how it writes files safely."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _xdg(var: str, default: str) -> Path:
    value = os.environ.get(var)
    if value and os.path.isabs(value):
        return Path(value)
    return Path(os.path.expanduser("~")) / default


def data_dir() -> Path:
    """``$UV_SHIM_HOME`` or ``$XDG_DATA_HOME/uv-shim``: launchers live in ``bin/`` here."""
    home = os.environ.get("UV_SHIM_HOME")
    return Path(home) if home else _xdg("XDG_DATA_HOME", ".local/share") / "uv-shim"


def state_dir() -> Path:
    """Small memo files (what a uv binary is); safe to delete at any time."""
    home = os.environ.get("UV_SHIM_HOME")
    return Path(home) / "state" if home else _xdg("XDG_STATE_HOME", ".local/state") / "uv-shim"


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so a reader sees the old or the new file, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
