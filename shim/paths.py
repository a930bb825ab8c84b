"""Where uv-shim keeps its own files outside the cache, and how it writes files safely.

Hot-path module: imports only builtins (see ``scripts/bench.py`` for why every import counts).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator


def _xdg(var: str, default: str) -> str:
    value = os.environ.get(var)
    if value and os.path.isabs(value):
        return value
    return os.path.join(os.path.expanduser("~"), default)


def data_dir() -> str:
    """``$UV_SHIM_HOME`` or ``$XDG_DATA_HOME/uv-shim``: launchers live in ``bin/`` here."""
    home = os.environ.get("UV_SHIM_HOME")
    return home if home else os.path.join(_xdg("XDG_DATA_HOME", ".local/share"), "uv-shim")


def state_dir() -> str:
    """Small memo files (what a uv binary is); safe to delete at any time."""
    home = os.environ.get("UV_SHIM_HOME")
    return os.path.join(home, "state") if home else os.path.join(_xdg("XDG_STATE_HOME", ".local/state"), "uv-shim")


def write_atomic(path: str, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so a reader sees the old or the new file, never a torn one.

    Temp file in the same folder, fsync, rename. A crash leaves at most a ``.*.tmp`` file, which
    is never read as a record.
    """
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def physical(path: str | os.PathLike[str]) -> str:
    """``path`` made absolute the way the kernel walks it, as uv leaves it (a cache folder,
    ``--directory``, ``--target``): ``.`` and doubled slashes go, and ``..`` is taken through the
    symlinks before it (``up/..`` is the folder above where ``up`` points, not the folder holding
    ``up``), which Python's ``abspath`` gets wrong. What follows the last ``..`` is kept as
    written, so a cache that is itself a symlink keeps its name. A few lstats, only with ``..``."""
    path = os.fspath(path)
    path = os.path.join(os.getcwd(), path) if not os.path.isabs(path) else path
    parts = path.split(os.sep)
    if ".." not in parts:
        return os.path.normpath(path)
    last = len(parts) - 1 - parts[::-1].index("..")
    try:
        head = os.path.realpath(os.sep.join(parts[: last + 1]) or os.sep)
    except ValueError:  # a NUL: no kernel walks that path
        return os.path.normpath(path)
    return os.path.normpath(os.path.join(head, *parts[last + 1 :]))


def parents(start: str) -> Iterator[str]:
    """``start`` (made absolute) and every folder above it, up to the root."""
    d = os.path.abspath(start)
    while True:
        yield d
        up = os.path.dirname(d)
        if up == d:
            return
        d = up


def private_temp_dir() -> str:
    """A new folder only we can use, in ``$TMPDIR`` (else /tmp), as ``tempfile.mkdtemp`` makes
    one, without importing tempfile (shutil, random, bz2, lzma: ~6 ms on a prune's path)."""
    error: OSError = FileExistsError("no temporary folder")
    tmpdir = os.path.abspath(os.environ.get("TMPDIR") or "/tmp")  # uv may run from another --directory
    for base in dict.fromkeys([tmpdir, "/tmp", "/var/tmp"]):  # as tempfile tries
        for _attempt in range(10):
            path = os.path.join(base, f"uv-shim-{os.getpid()}-{os.urandom(6).hex()}")
            try:
                os.mkdir(path, 0o700)
                return path
            except FileExistsError as e:
                error = e
            except OSError as e:  # a stale TMPDIR, a read-only /tmp: the next place
                error = e
                break
    raise error


def remove_temp_dir(path: str) -> None:
    """Remove a folder from ``private_temp_dir``: empty as a rule; whatever is in it otherwise."""
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError:
        import shutil

        shutil.rmtree(path, ignore_errors=True)
