"""uv's cache layout: where the cache is, its buckets, archives, pins and the cache lock.

Bucket names come from the uv binary in use (``realuv.build_of``); everything else that depends
on uv's on-disk layout is here.
"""

from __future__ import annotations

import errno
import fcntl
import os

from shim import uvargs
from shim.realuv import RealUv, UvBuild, child_env

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, Iterator, List, Mapping, Optional, Tuple

ARCHIVE_BUCKET = "archive-v0"
_ARCHIVE_MARKER = os.sep + ARCHIVE_BUCKET + os.sep
SHIM_DIR = "uv-shim"  # our folder inside the sdists bucket
# A pin is a symlink uv's prune counts as a reference. uv walks its sdists bucket at any depth;
# 0.6-0.7 count only names that parse as a wheel stem, newer ones skip names ending in
# .lock/.whl/.http/.rev/.msgpack. So a pin is named ``pin_<id>_0-0-py3-none-any`` with the id's
# "-" spelled "." (ids never contain dots, so the name maps back to the id); the ``_0`` keeps the
# package name ending in a letter or digit, as a valid name must, whatever the id ends with.
# One flat folder per environment: one symlink per pinned archive, no folder per pin.
PIN_PREFIX = "pin_"
PIN_SUFFIX = "_0-0-py3-none-any"
# Index folders of the wheels bucket that hold package folders directly; the others
# (``index``, ``path``, ``url``) hold one folder per index or location hash first.
FLAT_INDEXES = frozenset({"pypi"})
_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def is_archive_id(name: str) -> bool:
    """uv's archive ids: nanoids (21 or 16 chars) or digests; never a path, never ``..``."""
    return 8 <= len(name) <= 64 and _ID_CHARS.issuperset(name)


def pin_name(aid: str) -> str:
    if not is_archive_id(aid):
        raise ValueError(f"not an archive id: {aid!r}")
    return PIN_PREFIX + aid.replace("-", ".") + PIN_SUFFIX


def pin_id(name: str) -> Optional[str]:
    """The archive id a pin's file name stands for, or None if it is not a pin's name."""
    if not (name.startswith(PIN_PREFIX) and name.endswith(PIN_SUFFIX)):
        return None
    aid = name[len(PIN_PREFIX) : -len(PIN_SUFFIX)].replace(".", "-")
    return aid if is_archive_id(aid) else None


# ---------------------------------------------------------------------------------------------
# Which cache
# ---------------------------------------------------------------------------------------------


def _mentions_cache_dir(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return b"cache-dir" in f.read()
    except OSError:
        return False


def _config_candidates(inv: uvargs.Invocation, cwd: str, env: Mapping[str, str]) -> Iterator[str]:
    explicit = inv.globals.get("--config-file") or env.get("UV_CONFIG_FILE")
    if explicit:
        yield os.path.join(cwd, os.path.expanduser(explicit))
    start = uvargs.start_dir(inv, cwd)
    proj = inv.globals.get("--project")
    if proj:
        start = os.path.join(start, proj)
    for d in uvargs._parents(start):
        yield os.path.join(d, "uv.toml")
        yield os.path.join(d, "pyproject.toml")
    home = env.get("HOME") or os.path.expanduser("~")
    xdg = env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    yield os.path.join(xdg, "uv", "uv.toml")
    for d in (env.get("XDG_CONFIG_DIRS") or "/etc/xdg").split(":"):
        if d:
            yield os.path.join(d, "uv", "uv.toml")
    yield "/etc/uv/uv.toml"


def _ask_uv(real: RealUv, inv: uvargs.Invocation, cwd: str, env: Mapping[str, str]) -> Optional[str]:
    import subprocess

    args = [real.path]
    for opt in ("--config-file", "--directory", "--project"):
        if opt in inv.globals:
            args += [opt, inv.globals[opt]]
    if inv.has("--no-config"):
        args.append("--no-config")
    args += ["cache", "dir"]
    try:
        out = subprocess.run(args, cwd=cwd, env=child_env(env, exec_=False), capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = out.stdout.strip().splitlines()
    return lines[-1] if out.returncode == 0 and lines else None


def default_cache_dir(env: Mapping[str, str]) -> str:
    xdg = env.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return os.path.join(xdg, "uv")
    return os.path.join(env.get("HOME") or os.path.expanduser("~"), ".cache", "uv")


def find_cache_dir(real: RealUv, inv: uvargs.Invocation, cwd: str, env: Mapping[str, str]) -> Optional[str]:
    """The cache directory uv will use, or None for ``--no-cache`` (a throwaway cache).

    ``--cache-dir`` and ``UV_CACHE_DIR`` are read directly; when a config file might set
    ``cache-dir`` the real uv is asked (``uv cache dir``), else the XDG default applies.
    """
    if uvargs.no_cache(inv, env):
        return None
    value = inv.globals.get("--cache-dir") or env.get("UV_CACHE_DIR")
    if value:
        return os.path.abspath(os.path.join(cwd, os.path.expanduser(value)))
    no_config = inv.has("--no-config") or env.get("UV_NO_CONFIG", "").lower() in ("1", "true")
    if not no_config and any(_mentions_cache_dir(p) for p in _config_candidates(inv, cwd, env)):
        asked = _ask_uv(real, inv, cwd, env)
        if asked is not None:
            return os.path.abspath(os.path.join(cwd, asked))
    return default_cache_dir(env)


# ---------------------------------------------------------------------------------------------
# The cache of one uv build
# ---------------------------------------------------------------------------------------------


class Cache:
    def __init__(self, root: str, build: UvBuild) -> None:
        j = os.path.join
        self.root = root
        self.build = build
        self.archives = j(root, ARCHIVE_BUCKET)
        self.sdists = j(root, build.buckets["sdists"])
        self.wheels = j(root, build.buckets["wheels"])
        self.environments = j(root, build.buckets.get("environments", "environments-v2"))
        self.manifest = j(self.sdists, SHIM_DIR)
        self._same_root: Dict[str, Optional[bool]] = {}
        self._indexes: Optional[List[str]] = None

    # -- archives -------------------------------------------------------------------------

    def archive_of_link(self, target: str) -> Optional[str]:
        """The archive id a symlink target in an environment points into, if it is this cache."""
        idx = target.find(_ARCHIVE_MARKER)
        if idx < 0:
            return None
        start = idx + len(_ARCHIVE_MARKER)
        end = target.find(os.sep, start)
        aid = target[start:end] if end > 0 else target[start:]
        if not is_archive_id(aid):
            return None
        prefix = target[:idx] or os.sep
        same = self._same_root.get(prefix)
        if same is None:
            try:
                same = prefix == self.root or os.path.samefile(prefix, self.root)
            except OSError:
                same = None  # a path this host cannot see (a container's mount point, say)
            self._same_root[prefix] = same
        if same is None:
            # fail closed: an archive of that id here may well be the one it means
            return aid if os.path.isdir(self.archives + os.sep + aid) else None
        return aid if same else None

    def archive_path(self, aid: str) -> str:
        if not is_archive_id(aid):
            raise ValueError(f"not an archive id: {aid!r}")
        return os.path.join(self.archives, aid)

    def index_dirs(self) -> List[str]:
        """Folders in the wheels bucket that hold one folder per package: ``pypi`` directly,
        ``index|path|url/<hash>`` one level down. Listed once per run."""
        if self._indexes is None:
            j = os.path.join
            self._indexes = []
            try:
                kinds = sorted(os.listdir(self.wheels))
            except OSError:
                kinds = []
            for kind in kinds:
                if kind in FLAT_INDEXES:
                    self._indexes.append(j(self.wheels, kind))
                    continue
                try:
                    self._indexes.extend(j(self.wheels, kind, h) for h in sorted(os.listdir(j(self.wheels, kind))))
                except OSError:
                    continue
        return self._indexes

    def wheel_links(self, name: str) -> Iterator[Tuple[str, str]]:
        """(link, archive id) for every wheels-bucket entry of a package, under any index."""
        for index in self.index_dirs():
            yield from self.wheel_links_in(os.path.join(index, name))

    @staticmethod
    def wheel_links_in(pkg: str) -> Iterator[Tuple[str, str]]:
        """(link, archive id) for the entries of one package folder of the wheels bucket."""
        try:
            entries = os.listdir(pkg)
        except OSError:
            return
        for entry in entries:
            link = os.path.join(pkg, entry)
            try:
                target = os.readlink(link)
            except OSError:
                continue
            aid = os.path.basename(target.rstrip("/\\"))
            if is_archive_id(aid):
                yield link, aid

    # -- our folder in the sdists bucket --------------------------------------------------

    def entry_dir(self, key: str) -> str:
        return os.path.join(self.manifest, key)

    def pin_path(self, key: str, aid: str) -> str:
        return os.path.join(self.manifest, key, pin_name(aid))

    def pin(self, key: str, aid: str) -> bool:
        """Make sure a pin for archive ``aid`` exists in entry ``key``; True if one was made."""
        pin = self.pin_path(key, aid)
        target = os.path.join("..", "..", "..", ARCHIVE_BUCKET, aid)
        try:
            os.symlink(target, pin)  # atomic: the name appears with its target, or not at all
            return True
        except FileExistsError:
            pass
        except FileNotFoundError:
            os.makedirs(os.path.dirname(pin), exist_ok=True)
            return self.pin(key, aid)
        try:
            if os.readlink(pin) == target:
                return False
        except OSError:
            pass
        tmp = f"{pin}.{os.getpid()}.tmp"
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        os.symlink(target, tmp)
        os.replace(tmp, pin)  # replaces a wrong link (or file) with ours; never follows it
        return True

    def unpin(self, key: str, aid: str) -> None:
        """Remove one pin: only our own symlink, never what it points to."""
        try:
            os.unlink(self.pin_path(key, aid))
        except FileNotFoundError:
            pass

    def pins(self, key: str) -> Iterator[str]:
        """Archive ids pinned in entry ``key`` (one directory read, no stat per pin)."""
        try:
            it = os.scandir(self.entry_dir(key))
        except OSError:
            return
        with it:
            for e in it:
                aid = pin_id(e.name)
                if aid and e.is_symlink():
                    yield aid

    def other_manifests(self) -> Iterator[str]:
        """Our folders in the sdists buckets of other uv versions sharing this cache."""
        try:
            names = os.listdir(self.root)
        except OSError:
            return
        for name in names:
            if name.startswith("sdists-v") and name != os.path.basename(self.sdists):
                d = os.path.join(self.root, name, SHIM_DIR)
                if os.path.isdir(d):
                    yield d


# ---------------------------------------------------------------------------------------------
# uv's cache lock
# ---------------------------------------------------------------------------------------------


class SharedLock:
    """A shared ``flock`` on ``<cache>/.lock``, as every uv >= 0.8.19 holds while it works.

    Held from before uv installs until our pins are written, so a prune by the bare uv (which
    takes the lock exclusively) cannot run in between. Older uv versions don't lock; for them it
    costs nothing. Never created where the cache does not exist yet.
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self.fd: Optional[int] = None

    def acquire(self) -> bool:
        if self.fd is not None:
            return True
        if not os.path.isdir(self.root):
            return False
        try:
            fd = os.open(os.path.join(self.root, ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
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


def lock_holders(path: str) -> List[Tuple[int, str]]:
    """(pid, command line) of the processes holding a flock on ``path`` (from /proc/locks)."""
    try:
        st = os.stat(path)
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
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
        except Exception:  # noqa: BLE001 - the process may be gone or hidden
            cmd = "?"
        out.append((pid, cmd))
    return out


class ExclusiveLock:
    """uv's cache lock taken exclusively, as ``uv cache prune|clean`` take it (uv >= 0.8.19).

    Waits like uv (``UV_LOCK_TIMEOUT``, default 300 s), saying once which processes hold it.
    After locking, checks that ``<cache>/.lock`` is still the file locked (old uv versions and
    ``uv cache clean`` delete it) and starts over if not.
    """

    def __init__(self, root: str, timeout: float, say) -> None:
        self.root = root
        self.path = os.path.join(root, ".lock")
        self.timeout = timeout
        self.say = say
        self.fd: Optional[int] = None

    def acquire(self) -> None:
        import time

        deadline = time.monotonic() + self.timeout
        told = False
        while True:
            os.makedirs(self.root, exist_ok=True)
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
                            f"Timeout ({int(self.timeout)}s) when waiting for lock on `{self.root}`, is another uv process "
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

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
