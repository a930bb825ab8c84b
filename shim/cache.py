"""uv's cache layout: where the cache is, its buckets, archives, pins and the cache lock.

Bucket names come from the uv binary in use (``realuv.build_of``); everything else that depends
on uv's on-disk layout is here.
"""

from __future__ import annotations

import os

from shim import confined
from shim.realuv import UvBuild

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import Optional

# Every name of uv's on-disk layout that uv-shim relies on (bucket names that change between uv
# versions come from the binary: ``realuv.build_of``).
ARCHIVE_BUCKET = "archive-v0"  # unpacked wheels and cached environments, one folder per id
_ARCHIVE_MARKER = os.sep + ARCHIVE_BUCKET + os.sep
CAS_ID_LEN = 24  # archive ids of the content-addressed-cache preview: their files are also in the files bucket
SDISTS_PREFIX = "sdists-v"  # every uv version's sdists bucket: sdists-v9, sdists-v11, ...
BUILDS_PREFIX = "builds-v"  # build environments (builds-v0/.tmpXXXX/bin/python runs a build backend)
SHIM_DIR = "uv-shim"  # our record area inside the sdists bucket (its contents: shim.manifest)
CACHEDIR_TAG = "CACHEDIR.TAG"
LOCK_FILE = ".lock"  # uv's cache lock (a flock), also beside wheels-bucket entries
ROOT_MARKERS = (CACHEDIR_TAG, ".gitignore", ".git")  # kept at the root by every prune (and LOCK_FILE since LOCKS_CACHE)
REVISION_POINTERS = ("revision.http", "revision.rev")  # in a built sdist's folder: the revision in use
POINTERS = (".http", ".rev")  # beside a wheels-bucket link: they name its archive too
REF_SKIP_NAMES = ("src", LOCK_FILE, ".gitignore")  # never a reference (uv's prune, since REFS_FILTERED)
REF_SKIP_EXT = ("lock", "whl", "http", "rev", "msgpack")  # neither
SDIST_METADATA = "metadata.msgpack"  # marks an sdist revision folder (what --ci clears around it)
WHEEL_EXT = ".whl"
ENV_MARKER = "pyvenv.cfg"  # an archive that holds this is a cached environment (uvx, run --with)
# Index folders of the wheels bucket that hold package folders directly; the others
# (``index``, ``path``, ``url``) hold one folder per index or location hash first.
FLAT_INDEXES = frozenset({"pypi"})


def is_archive_id(name: str) -> bool:
    """uv's archive ids: nanoids (21 or 16 chars) or digests; never a path, never ``..``: ASCII
    letters, digits, ``_`` and ``-`` only (string methods in C: a prune checks ~20 per root)."""
    if not (8 <= len(name) <= 64 and name.isascii()):
        return False
    rest = name.replace("-", "").replace("_", "")
    return not rest or rest.isalnum()


_ID_CHARS = str.maketrans("", "", "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_- ")


def archive_ids(text: str) -> set[str]:
    """Space-separated archive ids, each checked as ``is_archive_id`` checks one, all at once
    (thousands per prune, from a memo); ValueError unless every one is an id."""
    if not text.isascii() or text.translate(_ID_CHARS):
        raise ValueError("not archive ids")
    ids = text.split()
    if ids and not (8 <= min(map(len, ids)) and max(map(len, ids)) <= 64):
        raise ValueError("not archive ids")
    return set(ids)


def dist_info_among(names: Iterable[str]) -> Optional[str]:
    """The ``*.dist-info`` folder name among an archive's entries (``Cache.dist_info``)."""
    return next((n for n in names if n.endswith(".dist-info")), None)


def archive_id_of(target: str) -> Optional[str]:
    """The archive a link in uv's buckets names (its target's last part), if it is an archive id."""
    aid = os.path.basename(target.rstrip("/\\"))
    return aid if is_archive_id(aid) else None


def _entries(folder: str) -> Iterator[tuple[str, Optional[str]]]:
    """Each entry of ``folder``: (path, the archive id a link there names ("" if none), or None
    when the entry is no link). Nothing for a folder that cannot be read."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        path = os.path.join(folder, name)
        try:
            target = os.readlink(path)
        except OSError:
            yield path, None
            continue
        yield path, archive_id_of(target) or ""


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
# The cache of one uv build
# ---------------------------------------------------------------------------------------------


class Cache:
    def __init__(self, path: str, build: UvBuild) -> None:
        j = os.path.join
        self.path = path
        self.build = build
        self.archives = j(path, ARCHIVE_BUCKET)
        self.sdists = j(path, build.buckets["sdists"])
        self.wheels = j(path, build.buckets["wheels"])
        self.environments = j(path, build.buckets.get("environments", "environments-v2"))
        self.files = j(path, build.buckets["files"]) if "files" in build.buckets else None
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
                same = prefix == self.path or os.path.samefile(prefix, self.path)
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

    def link_baseline(self, aid: str) -> int:
        """How many links an archive's files have with no environment linking them: 2 for an
        archive of the content-addressed-cache preview (its files are also in the files bucket),
        else 1. A link count above it means an environment hardlinks the file."""
        if len(aid) == CAS_ID_LEN and self.files is not None and os.path.isdir(self.files):
            return 2
        return 1

    def dist_info(self, aid: str) -> Optional[str]:
        """The ``*.dist-info`` folder name of an unpacked wheel (None: not one, or unreadable)."""
        try:
            names = os.listdir(os.path.join(self.archives, aid))
        except OSError:
            return None
        return dist_info_among(names)

    def hardlinked(self, aid: str) -> bool:
        """Does an environment hardlink this archive? (its METADATA has a link beyond the baseline)"""
        info = self.dist_info(aid)
        if info is None:
            return False
        try:
            return os.stat(os.path.join(self.archives, aid, info, "METADATA")).st_nlink > self.link_baseline(aid)
        except OSError:
            return False

    def is_cached_env(self, aid: str) -> bool:
        return os.path.isfile(os.path.join(self.archives, aid, ENV_MARKER))

    def cached_envs(self) -> list[str]:
        """Environments uv keeps inside the cache (``uvx``, ``uv run --with``, scripts): archives
        that are environments, named by a link in the environments bucket (one or two levels down),
        and the environments of scripts with inline metadata, real folders in that bucket."""
        out: list[str] = []
        stack = [(self.environments, 0)]
        while stack:
            folder, depth = stack.pop()
            for path, aid in _entries(folder):
                if aid is None:
                    if depth == 0 and os.path.isfile(os.path.join(path, ENV_MARKER)):
                        out.append(path)  # `uv run script.py`: a venv kept in the bucket itself
                    elif depth == 0 and os.path.isdir(path):
                        stack.append((path, 1))
                elif aid and self.is_cached_env(aid) and os.path.join(self.archives, aid) not in out:
                    out.append(os.path.join(self.archives, aid))
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
        for link, aid in _entries(pkg):
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
                os.makedirs(self.path, exist_ok=True)
            self._dir = confined.Dir.top(self.path)
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
