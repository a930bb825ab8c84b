"""uv's cache layout: where the cache is, its buckets, archives, pins and the cache lock.

Bucket names come from the uv binary in use (``realuv.build_of``); everything else that depends
on uv's on-disk layout is here.
"""

from __future__ import annotations

import errno
import fcntl
import os

from shim import confined, uvargs
from shim.realuv import RealUv, UvBuild, child_env

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping
    from typing import Optional

# Every name of uv's on-disk layout that uv-shim relies on (bucket names that change between uv
# versions come from the binary: ``realuv.build_of``).
ARCHIVE_BUCKET = "archive-v0"  # unpacked wheels and cached environments, one folder per id
_ARCHIVE_MARKER = os.sep + ARCHIVE_BUCKET + os.sep
SDISTS_PREFIX = "sdists-v"  # every uv version's sdists bucket: sdists-v9, sdists-v11, ...
SHIM_DIR = "uv-shim"  # our record area inside the sdists bucket (its contents: shim.manifest)
CACHEDIR_TAG = "CACHEDIR.TAG"
LOCK_FILE = ".lock"  # uv's cache lock (a flock), also beside wheels-bucket entries
ROOT_MARKERS = (CACHEDIR_TAG, ".gitignore", ".git")  # kept at the root by every prune (and LOCK_FILE since LOCKS_CACHE)
POINTERS = (".http", ".rev")  # beside a wheels-bucket link: they name its archive too
REF_SKIP_NAMES = ("src", LOCK_FILE, ".gitignore")  # never a reference (uv's prune, since REFS_FILTERED)
REF_SKIP_EXT = ("lock", "whl", "http", "rev", "msgpack")  # neither
SDIST_METADATA = "metadata.msgpack"  # marks an sdist revision folder (what --ci clears around it)
WHEEL_EXT = ".whl"
ENV_MARKER = "pyvenv.cfg"  # an archive that holds this is a cached environment (uvx, run --with)
# Index folders of the wheels bucket that hold package folders directly; the others
# (``index``, ``path``, ``url``) hold one folder per index or location hash first.
FLAT_INDEXES = frozenset({"pypi"})
_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def is_archive_id(name: str) -> bool:
    """uv's archive ids: nanoids (21 or 16 chars) or digests; never a path, never ``..``."""
    return 8 <= len(name) <= 64 and _ID_CHARS.issuperset(name)


def archive_id_of(target: str) -> Optional[str]:
    """The archive a link in uv's buckets names (its target's last part), if it is an archive id."""
    aid = os.path.basename(target.rstrip("/\\"))
    return aid if is_archive_id(aid) else None


def split_archive_target(target: str) -> Optional[tuple[str, str]]:
    """(cache root, archive id) of a path into some cache's archives (``<root>/archive-v0/<id>/...``)."""
    idx = target.find(_ARCHIVE_MARKER)
    if idx < 0:
        return None
    start = idx + len(_ARCHIVE_MARKER)
    end = target.find(os.sep, start)
    aid = target[start:end] if end > 0 else target[start:]
    return (target[:idx] or os.sep, aid) if is_archive_id(aid) else None


# ---------------------------------------------------------------------------------------------
# Which cache
# ---------------------------------------------------------------------------------------------

_TAG_SIGNATURE = b"Signature: 8a477f597d28d172789f06886806bc55"


class CacheDirError(Exception):
    """The real uv rejected the cache options (``uv cache dir`` failed): its message and code."""

    def __init__(self, stderr: str, code: int) -> None:
        super().__init__(stderr.strip().splitlines()[0] if stderr.strip() else f"`uv cache dir` exited with {code}")
        self.stderr = stderr
        self.code = code


def working_dir(build: UvBuild, inv: uvargs.Invocation, cwd: str, env: Mapping[str, str]) -> str:
    """The directory uv works in: ``--directory``, else ``UV_WORKING_DIR`` (where that uv knows
    it), relative to ``cwd``; never tilde-expanded (uv expands nothing)."""
    d = inv.globals.get("--directory")
    if d is None and "UV_WORKING_DIR" in build.env_vars:
        d = env.get("UV_WORKING_DIR") or None
    return os.path.join(cwd, d) if d else cwd


def _mentions_cache_dir(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return b"cache-dir" in f.read()
    except FileNotFoundError:
        return False
    except OSError:
        return True  # cannot tell: ask uv


def _config_candidates(build: UvBuild, inv: uvargs.Invocation, cwd: str, env: Mapping[str, str]) -> Iterator[str]:
    """Every config file that could set ``cache-dir`` (a superset: uv is asked when one does)."""
    wd = working_dir(build, inv, cwd, env)
    explicit = inv.globals.get("--config-file") or env.get("UV_CONFIG_FILE")
    if explicit:
        yield os.path.join(cwd, explicit)
        yield os.path.join(wd, explicit)
    starts = [wd]
    proj = inv.globals.get("--project") or env.get("UV_PROJECT")
    if proj:
        starts.append(os.path.join(wd, proj))
    for start in starts:
        for d in uvargs._parents(start):
            yield os.path.join(d, "uv.toml")
            yield os.path.join(d, "pyproject.toml")
    home = env.get("HOME") or os.path.expanduser("~")
    xdg = env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    yield os.path.join(xdg, "uv", "uv.toml")
    yield os.path.join(home, ".config", "uv", "uv.toml")
    for d in (env.get("XDG_CONFIG_DIRS") or "/etc/xdg").split(":"):
        if d:
            yield os.path.join(d, "uv", "uv.toml")
    yield "/etc/uv/uv.toml"


def _cache_globals(inv: uvargs.Invocation) -> list[str]:
    """The user's global options that decide the cache, to hand to ``uv cache dir``."""
    args: list[str] = []
    for opt in ("--cache-dir", "--config-file", "--directory", "--project"):
        if opt in inv.globals:
            args.append(f"{opt}={inv.globals[opt]}")
    if inv.has("--no-config"):
        args.append("--no-config")
    return args


def ask_uv(real: RealUv, inv: uvargs.Invocation, cwd: str, env: Mapping[str, str]) -> str:
    """What ``uv cache dir`` says, with the user's global options, environment and directory.
    Raises CacheDirError when uv rejects them (the command itself would fail the same way)."""
    import subprocess

    args = [real.path, *_cache_globals(inv), "cache", "dir"]
    try:
        out = subprocess.run(
            args,
            cwd=cwd,
            env=child_env(env, exec_=False),
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise CacheDirError("`uv cache dir` did not answer within 60s", 2) from None
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        raise CacheDirError(out.stderr, out.returncode or 2)
    return lines[-1]


def default_cache_dir(env: Mapping[str, str]) -> str:
    xdg = env.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return os.path.join(xdg, "uv")
    return os.path.join(env.get("HOME") or os.path.expanduser("~"), ".cache", "uv")


def find_cache_dir(
    real: RealUv, build: UvBuild, inv: uvargs.Invocation, cwd: str, env: Mapping[str, str], ask: bool = False
) -> Optional[str]:
    """The one answer to "which cache does this command use", as the real uv decides it; None for
    ``--no-cache`` (a throwaway cache: nothing to protect).

    Cheap where it is certain: ``--cache-dir`` or ``UV_CACHE_DIR`` (used literally, no ``~``
    expansion, relative to uv's working directory), else the XDG default when no config file
    mentions ``cache-dir``. Anything else, and always with ``ask`` (every command off the hot
    path), is the real uv's own answer. Raises CacheDirError when uv rejects the options.
    """
    if uvargs.no_cache(inv, env):
        return None
    wd = working_dir(build, inv, cwd, env)
    if not ask:
        value = inv.globals["--cache-dir"] if "--cache-dir" in inv.globals else env.get("UV_CACHE_DIR")
        if value:
            return os.path.abspath(os.path.join(wd, value))
        no_config = inv.has("--no-config") or uvargs.env_true(env, "UV_NO_CONFIG")
        home_known = bool(env.get("HOME")) or os.path.isabs(env.get("XDG_CACHE_HOME") or "")
        if (
            value is None
            and home_known
            and (no_config or not any(_mentions_cache_dir(p) for p in _config_candidates(build, inv, cwd, env)))
        ):
            return default_cache_dir(env)
    return os.path.abspath(os.path.join(wd, ask_uv(real, inv, cwd, env)))


def refuse_to_empty(path: str, build: UvBuild, env: Mapping[str, str]) -> Optional[str]:
    """Why the folder must not be emptied (a uv cache is never ``/``, the home folder, or a folder
    without uv's ``CACHEDIR.TAG`` or buckets), or None when it is a uv cache."""
    real = os.path.realpath(path)
    homes = {os.path.realpath(h) for h in (env.get("HOME"), os.path.expanduser("~")) if h}
    if real == os.path.realpath(os.sep) or real in homes:
        return f"{path} is {'the root folder' if real == os.sep else 'the home folder'}, not a uv cache; refusing to empty it"
    try:
        with confined.Dir.root(real) as d:
            if not is_uv_cache(d, build):
                return f"{path} is not a uv cache (no {CACHEDIR_TAG} and no uv buckets); refusing to empty it"
    except FileNotFoundError:
        return None
    except OSError as e:
        return f"cannot open {path}: {e.strerror}"
    return None


def is_uv_cache(root: confined.Dir, build: UvBuild) -> bool:
    """uv's ``CACHEDIR.TAG``, or one of its buckets; an empty folder has nothing to lose."""
    try:
        if root.read(CACHEDIR_TAG).startswith(_TAG_SIGNATURE):
            return True
    except OSError:
        pass
    names = set(root.listdir())
    return not names or ARCHIVE_BUCKET in names or bool(names.intersection(build.all_buckets))


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
        self.manifest = j(self.sdists, SHIM_DIR)  # for messages and reads; writes go through area()
        self._same_root: dict[str, Optional[bool]] = {}
        self._indexes: Optional[list[str]] = None
        self._dir: Optional[confined.Dir] = None
        self._area: Optional[confined.Dir] = None

    # -- archives -------------------------------------------------------------------------

    def archive_of_link(self, target: str) -> Optional[str]:
        """The archive id a symlink target in an environment points into, if it is this cache."""
        split = split_archive_target(target)
        if split is None:
            return None
        prefix, aid = split
        same = self._same_root.get(prefix)
        if same is None and prefix not in self._same_root:
            try:
                same = prefix == self.root or os.path.samefile(prefix, self.root)
            except OSError:
                same = None  # a path this host cannot see (a container's mount point, say)
            self._same_root[prefix] = same
        if same:
            return aid
        # Another path. Only an archive that is really there, in a cache this host can see, makes
        # the link another cache's; a path this host cannot see (a container's mount point, an
        # unmounted bind mount whose empty folder remains) fails closed: an archive of that id
        # here may well be the one it means.
        if same is False and os.path.isdir(os.path.join(prefix, ARCHIVE_BUCKET, aid)):
            return None
        return aid if os.path.isdir(self.archives + os.sep + aid) else None

    def is_cached_env(self, aid: str) -> bool:
        return os.path.isfile(os.path.join(self.archives, aid, ENV_MARKER))

    def cached_envs(self) -> list[str]:
        """Environments uv keeps inside the cache (``uvx``, ``uv run --with``, scripts): archives
        that are environments, named by a link in the environments bucket (one or two levels down)."""
        out: list[str] = []
        stack = [(self.environments, 0)]
        while stack:
            folder, depth = stack.pop()
            try:
                names = os.listdir(folder)
            except OSError:
                continue
            for name in names:
                path = os.path.join(folder, name)
                try:
                    aid = archive_id_of(os.readlink(path))
                except OSError:
                    if depth == 0 and os.path.isdir(path):
                        stack.append((path, 1))
                    continue
                env = os.path.join(self.archives, aid) if aid else ""
                if aid and self.is_cached_env(aid) and env not in out:
                    out.append(env)
        return out

    def archive_path(self, aid: str) -> str:
        if not is_archive_id(aid):
            raise ValueError(f"not an archive id: {aid!r}")
        return os.path.join(self.archives, aid)

    def index_dirs(self) -> list[str]:
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

    def wheel_links(self, name: str) -> Iterator[tuple[str, str]]:
        """(link, archive id) for every wheels-bucket entry of a package, under any index."""
        for index in self.index_dirs():
            yield from self.wheel_links_in(os.path.join(index, name))

    @staticmethod
    def wheel_links_in(pkg: str) -> Iterator[tuple[str, str]]:
        """(link, archive id) for the entries of one package folder of the wheels bucket."""
        try:
            entries = os.listdir(pkg)
        except OSError:
            return
        for entry in entries:
            link = os.path.join(pkg, entry)
            try:
                aid = archive_id_of(os.readlink(link))
            except OSError:
                continue
            if aid:
                yield link, aid

    def all_wheel_links(self) -> Iterator[tuple[str, str]]:
        """(link, archive id) for every entry of the wheels bucket: uv's own index."""
        for index in self.index_dirs():
            try:
                names = os.listdir(index)
            except OSError:
                continue
            for name in names:
                yield from self.wheel_links_in(os.path.join(index, name))

    # -- our record area: <sdists bucket>/uv-shim, reached only through confined folders ---

    def dir(self, create: bool = False) -> confined.Dir:
        """The cache root, opened once (see ``shim.confined``); made first if ``create`` (before
        uv's first run on a new cache, as uv itself would)."""
        if self._dir is None:
            if create:
                os.makedirs(self.root, exist_ok=True)
            self._dir = confined.Dir.root(self.root)
        return self._dir

    def area(self, create: bool = False) -> Optional[confined.Dir]:
        """uv-shim's folder in the running uv's sdists bucket; None if absent and not ``create``.

        The bucket is uv's: a symlink in its place raises ``confined.Unsafe``. Our own folder is
        ours: a symlink or file in its place is unlinked and a real folder made."""
        if self._area is None:
            try:
                with self.dir(create).sub(os.path.basename(self.sdists), create=create) as bucket:
                    self._area = bucket.sub(SHIM_DIR, create=create, ours=True)
            except FileNotFoundError:
                return None
        return self._area

    def other_areas(self) -> Iterator[confined.Dir]:
        """Our folders in the sdists buckets of other uv versions sharing this cache (the caller
        closes them). Buckets or folders that are symlinks are skipped, never followed."""
        try:
            names = sorted(self.dir().listdir())
        except OSError:
            return
        for name in names:
            if name.startswith(SDISTS_PREFIX) and name != os.path.basename(self.sdists):
                try:
                    with self.dir().sub(name) as bucket:
                        area = bucket.sub(SHIM_DIR)
                except OSError:
                    continue
                yield area

    def entry(self, key: str, create: bool = False) -> Optional[confined.Dir]:
        """One environment's record folder (the caller closes it); None if absent."""
        area = self.area(create=create)
        if area is None:
            return None
        try:
            return area.sub(key, create=create, ours=True)
        except FileNotFoundError:
            return None

    def entry_dir(self, key: str) -> str:
        """The record folder's path, for messages and reports only (never to write through)."""
        return os.path.join(self.manifest, key)


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
            fd = os.open(os.path.join(self.root, LOCK_FILE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
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
        except Exception:
            cmd = "?"
        out.append((pid, cmd))
    return out


class ExclusiveLock:
    """uv's cache lock taken exclusively, as ``uv cache prune|clean`` take it (uv >= 0.8.19).

    Waits like uv (``UV_LOCK_TIMEOUT``, default 300 s), saying once which processes hold it.
    After locking, checks that ``<cache>/.lock`` is still the file locked (old uv versions and
    ``uv cache clean`` delete it) and starts over if not.
    """

    def __init__(self, root: str, timeout: float, say: Callable[[str], None]) -> None:
        self.root = root
        self.path = os.path.join(root, LOCK_FILE)
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
