"""Every write and removal uv-shim makes in a cache, confined to that cache by construction.

A ``Dir`` is a directory opened as a file descriptor. Everything below it is reached one name at a
time with ``openat(O_DIRECTORY | O_NOFOLLOW)``, and files are created, renamed and removed with
``*at`` calls relative to that descriptor (``os.open(..., dir_fd=)``, ``os.unlink(name,
dir_fd=)``...). A symlink anywhere below the cache root, planted before or swapped in while we
work, makes the step that meets it fail (``Unsafe``); it is never followed. No path string is
ever checked for "being inside the cache": there is nothing to check, because no call takes a
path.

The cache root itself is the user's choice (``UV_CACHE_DIR=~/.cache/uv`` may well be a symlink to
another disk): it is resolved once, as uv resolves it, and opened with ``O_NOFOLLOW`` so it cannot
be swapped after that.

Hot-path module: imports only builtins.
"""

from __future__ import annotations

import errno
import os
import stat

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Callable, Optional

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# openat on a symlink with O_NOFOLLOW | O_DIRECTORY: ELOOP (Linux), ENOTDIR (some BSDs, and for
# a plain file); EMLINK on FreeBSD for O_NOFOLLOW on a symlink.
_NOT_A_DIR = (errno.ELOOP, errno.ENOTDIR, errno.EMLINK)


# Fault injection for the crash tests: ``UV_SHIM_TEST_KILL_AT=N`` kills this process with SIGKILL
# just before its N-th change in the cache (every change goes through a Dir), so a test can stop
# the shim before each change in turn instead of at random times; a background helper, whose
# death nobody waits for, first leaves a file (``UV_SHIM_TEST_KILLED``) saying so.
_kill_at = [int(os.environ.get("UV_SHIM_TEST_KILL_AT") or 0)]


def _change() -> None:
    if _kill_at[0]:
        _kill_at[0] -= 1
        if not _kill_at[0]:
            if os.environ.get("UV_SHIM_TEST_KILLED"):
                open(os.environ["UV_SHIM_TEST_KILLED"], "w").close()
            os.kill(os.getpid(), 9)


class Unsafe(OSError):
    """A name that should be a real folder is a symlink or a file: never followed, never used."""

    def __init__(self, path: str) -> None:
        super().__init__(errno.ELOOP, "not a real folder (a symlink or a file); refusing to follow it", path)


def _name(name: str) -> str:
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise ValueError(f"not a single file name: {name!r}")
    return name


class Dir:
    """An open directory; every operation is relative to it and never follows a symlink."""

    __slots__ = ("fd", "path")

    def __init__(self, fd: int, path: str) -> None:
        self.fd = fd
        self.path = path  # for messages only: no call below uses it

    # -- opening ----------------------------------------------------------------------------

    @classmethod
    def top(cls, path: str) -> Dir:
        """The cache root: the user's path resolved once (symlinks included, as uv does), then
        opened without following a symlink, so it cannot be swapped after it was resolved."""
        real = os.path.realpath(path)
        try:
            return cls(os.open(real, _DIR_FLAGS), real)
        except OSError as e:
            if e.errno in _NOT_A_DIR:
                raise Unsafe(real) from None
            raise

    def sub(self, name: str, create: bool = False, ours: bool = False) -> Dir:
        """The folder ``name`` in this one, opened without following a symlink.

        ``create`` makes it if missing. ``ours`` (only for uv-shim's own folders): a symlink or
        file in its place is removed (the link itself, never its target) and a real folder made.
        Otherwise such a name raises ``Unsafe``; a missing one raises FileNotFoundError."""
        _name(name)
        for _attempt in range(3):
            try:
                return Dir(os.open(name, _DIR_FLAGS, dir_fd=self.fd), self.path + os.sep + name)
            except FileNotFoundError:
                if not create:
                    raise
                _change()
                try:
                    os.mkdir(name, 0o755, dir_fd=self.fd)
                except FileExistsError:
                    pass  # made meanwhile, or a dangling symlink: the next open decides
            except OSError as e:
                if e.errno not in _NOT_A_DIR:
                    raise
                if not ours:
                    raise Unsafe(self.path + os.sep + name) from None
                self.unlink(name)
        raise Unsafe(self.path + os.sep + name)

    def walk_to(self, names: Sequence[str], create: bool = False) -> Dir:
        """A folder some names below this one (each step as ``sub``); the caller closes it."""
        d = self
        for name in names:
            nxt = d.sub(name, create=create)
            if d is not self:
                d.close()
            d = nxt
        return d if d is not self else Dir(os.dup(self.fd), self.path)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Dir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading ----------------------------------------------------------------------------

    def listdir(self) -> list[str]:
        return os.listdir(self.fd)

    def scandir(self) -> os._ScandirIterator[str]:
        """Entries of this folder; ``entry.is_dir(follow_symlinks=False)`` works, ``entry.path``
        is the bare name."""
        return os.scandir(self.fd)

    def lstat(self, name: str) -> os.stat_result:
        return os.stat(_name(name), dir_fd=self.fd, follow_symlinks=False)

    def lexists(self, name: str) -> bool:
        try:
            self.lstat(name)
            return True
        except FileNotFoundError:
            return False

    def is_symlink(self, name: str) -> bool:
        try:
            return stat.S_ISLNK(self.lstat(name).st_mode)
        except OSError:
            return False

    def is_file(self, name: str) -> bool:
        try:
            return stat.S_ISREG(self.lstat(name).st_mode)
        except OSError:
            return False

    def readlink(self, name: str) -> str:
        return os.readlink(_name(name), dir_fd=self.fd)

    def read(self, name: str, limit: int = 1 << 26) -> bytes:
        """A regular file's bytes (at most ``limit``); a symlink in its place raises OSError
        (ELOOP), and so does anything else that is not a regular file: a FIFO planted in a shared
        cache never blocks us (O_NONBLOCK) and a device is never read."""
        return self.read_stat(name, limit)[0]

    def read_stat(self, name: str, limit: int = 1 << 26) -> tuple[bytes, os.stat_result]:
        """``read``, and the file's stat (taken from the descriptor read)."""
        fd = os.open(_name(name), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=self.fd)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise OSError(errno.EINVAL, "not a regular file", name)
            chunks: list[bytes] = []
            size = 0
            while size < limit:
                chunk = os.read(fd, min(1 << 20, limit - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            return b"".join(chunks), st
        finally:
            os.close(fd)

    def open(self, name: str, flags: int, mode: int = 0o644) -> int:
        """A file descriptor for ``name`` here; never through a symlink."""
        return os.open(_name(name), flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=self.fd)

    # -- writing ----------------------------------------------------------------------------

    def write_atomic(self, name: str, data: bytes, mode: int = 0o644, fsync: bool = True) -> None:
        """Write a file so a reader sees the old or the new one, never a torn one: a temp file
        beside it (``.<name>.<pid>.<hex>.tmp``), fsync, rename over the old name. The rename
        replaces whatever was there (a symlink included) without following it."""
        tmp = f".{_name(name)}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
        _change()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=self.fd)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fchmod(fd, mode)
                if fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            _change()
            os.replace(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except BaseException:
            self.unlink(tmp)
            raise

    def symlink(self, target: str, name: str) -> None:
        _change()
        os.symlink(target, _name(name), dir_fd=self.fd)

    def replace(self, src: str, dst: str, dst_dir: Optional[Dir] = None) -> None:
        """Rename ``src`` here to ``dst`` here (or in ``dst_dir``), replacing a file or link there."""
        _change()
        os.replace(_name(src), _name(dst), src_dir_fd=self.fd, dst_dir_fd=(dst_dir or self).fd)

    def unlink(self, name: str) -> bool:
        """Remove a file or a symlink (never what it points to); True if it was there.
        A folder is left alone (IsADirectoryError)."""
        _change()
        try:
            os.unlink(_name(name), dir_fd=self.fd)
            return True
        except FileNotFoundError:
            return False

    def rmdir(self, name: str) -> bool:
        """Remove an empty folder; False if it is gone or not empty."""
        _change()
        try:
            os.rmdir(_name(name), dir_fd=self.fd)
            return True
        except FileNotFoundError:
            return False
        except OSError as e:
            if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                return False
            raise

    def remove_tree(self, name: str, count: Optional[Callable[[os.stat_result], None]] = None) -> None:
        """Remove ``name`` and everything below it, walking by file descriptors only.

        A symlink is unlinked, never followed, wherever it is met, even one swapped in for a
        folder while this runs: the folder is entered through ``openat(O_NOFOLLOW)``, so a swap
        either fails that open (the link is then unlinked) or happens after it (we keep working in
        the real folder we opened). ``count`` sees the ``lstat`` of everything removed (folders once
        they are gone)."""
        try:
            st = self.lstat(name)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            try:
                child = self.sub(name)
            except Unsafe:
                child = None  # swapped for a link or a file since the lstat: remove that
            except FileNotFoundError:
                return
            if child is not None:
                with child:
                    for entry in child.listdir():
                        child.remove_tree(entry, count)
                try:
                    self.rmdir(name)
                    if count is not None:
                        count(st)
                    return
                except NotADirectoryError:
                    pass  # swapped for a link after we emptied the folder: unlink the link
            try:
                st = self.lstat(name)
            except FileNotFoundError:
                return
        if count is not None:
            count(st)
        try:
            self.unlink(name)
        except IsADirectoryError:  # swapped for a folder since the lstat: go again
            self.remove_tree(name, count)
