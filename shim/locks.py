"""uv's cache lock: a ``flock`` on ``<cache>/.lock``, shared by every uv process (0.8.19+) and
taken exclusively by ``uv cache prune|clean`` (hot path: ``SharedLock``).

``fcntl.flock`` directly: uv's lock is a shared flock, which the ``filelock`` package cannot take
(it is exclusive-only), and ``lockf`` would be another lock uv never sees.
"""

from __future__ import annotations

import errno
import fcntl
import os

from shim.cache import LOCK_FILE

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Optional


class SharedLock:
    """A shared ``flock`` on ``<cache>/.lock``, as every uv >= 0.8.19 holds while it works.

    Held from before uv installs until our pins are written, so a prune by the bare uv (which
    takes the lock exclusively) cannot run in between. Older uv versions don't lock; for them it
    costs nothing. Never created where the cache does not exist yet.
    """

    def __init__(self, cache_dir: str) -> None:
        self.cache_dir = cache_dir
        self.fd: Optional[int] = None

    def acquire(self) -> bool:
        if self.fd is not None:
            return True
        if not os.path.isdir(self.cache_dir):
            return False
        try:
            fd = os.open(os.path.join(self.cache_dir, LOCK_FILE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as e:
            if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                return False
            raise
        fcntl.flock(fd, fcntl.LOCK_SH)
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def lock_holders(path: str) -> list[tuple[int, str]]:
    """(pid, command line) of the processes holding a flock on ``path``: from /proc/locks where
    it exists (Linux), else the processes that have the file open (psutil: macOS, the BSDs)."""
    try:
        st = os.stat(path)
    except OSError:
        return []
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return _openers(path)
    ino = f":{st.st_ino} "
    pids = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 6 and parts[1] == "FLOCK" and (parts[5] + " ").endswith(ino):
            try:
                pids.append(int(parts[4]))
            except ValueError:
                continue
    out = []
    for pid in sorted(set(pids)):
        if pid == os.getpid():
            continue
        try:
            import psutil

            cmd = " ".join(psutil.Process(pid).cmdline()) or "?"
        except Exception:
            cmd = "?"
        out.append((pid, cmd))
    return out


def _openers(path: str) -> list[tuple[int, str]]:
    try:
        import psutil

        real = os.path.realpath(path)
        out = []
        for proc in psutil.process_iter(["pid", "cmdline"]):
            if proc.pid == os.getpid():
                continue
            try:
                if any(f.path == real for f in proc.open_files()):
                    out.append((proc.pid, " ".join(proc.info["cmdline"] or []) or "?"))
            except psutil.Error:
                continue
        return out
    except Exception:  # no process table here: nobody can be named
        return []


class ExclusiveLock:
    """uv's cache lock taken exclusively, as ``uv cache prune|clean`` take it (uv >= 0.8.19).

    Waits like uv (``UV_LOCK_TIMEOUT``, default 300 s), saying once which processes hold it.
    After locking, checks that ``<cache>/.lock`` is still the file locked (old uv versions and
    ``uv cache clean`` delete it) and starts over if not.
    """

    def __init__(self, cache_dir: str, timeout: float, say: Callable[[str], None]) -> None:
        self.cache_dir = cache_dir
        self.path = os.path.join(cache_dir, LOCK_FILE)
        self.timeout = timeout
        self.say = say
        self.fd: Optional[int] = None

    def acquire(self) -> None:
        import time

        deadline = time.monotonic() + self.timeout
        told = False
        while True:
            os.makedirs(self.cache_dir, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not told:
                        holders = lock_holders(self.path)
                        who = ", ".join(f"pid {pid} ({cmd[:80]})" for pid, cmd in holders) or "another process"
                        self.say(f"Waiting for the cache lock at {self.path}, held by {who}")
                        told = True
                    if time.monotonic() > deadline:
                        os.close(fd)
                        raise TimeoutError(
                            f"Timeout ({int(self.timeout)}s) when waiting for lock on `{self.cache_dir}`, is another uv process "
                            "running? You can set `UV_LOCK_TIMEOUT` to increase the timeout."
                        ) from None
                    time.sleep(0.05)
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self.fd = fd
                return
            os.close(fd)  # the file we locked was replaced or deleted: lock the new one

    def try_acquire(self) -> bool:
        """One attempt, never waiting: False when any process holds the cache (or it is gone)."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                self.fd = fd
                return True
        except OSError:
            pass
        os.close(fd)
        return False

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
