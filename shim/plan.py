"""What the real ``uv cache prune`` will delete, computed without deleting anything.

A model of uv's own prune, step by step as uv's ``Cache::prune`` does it, with the differences
between uv versions taken from ``uvfeatures``. ``tests/test_dryrun.py`` checks it against the real
prune on randomized caches for every supported uv version: if uv changes its prune, that test
says so.
"""

from __future__ import annotations

import os

from shim import report, uvfeatures
from shim.cache import (
    ARCHIVE_BUCKET,
    LOCK_FILE,
    REF_SKIP_EXT,
    REF_SKIP_NAMES,
    ROOT_MARKERS,
    SDIST_METADATA,
    WHEEL_EXT,
    Cache,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Set as AbstractSet
    from typing import Optional


class Plan:
    def __init__(self) -> None:
        self.stale: list[str] = []  # top-level entries that are not buckets of this uv
        self.environments: list[str] = []  # cached environments
        self.ci: list[str] = []  # --ci: unzipped wheels and built-wheel leftovers
        self.archives: list[str] = []  # archive ids that no reference keeps
        self.kept_by_uv: set[str] = set()  # archive ids uv's own index references
        self.freed = 0  # bytes really freed: inodes whose every link goes
        self.files = 0
        self.uv_version = ""  # the uv whose prune this models

    @property
    def paths(self) -> list[str]:
        return self.stale + self.environments + self.ci


def _extension(name: str) -> str:
    """Rust's ``Path::extension``: after the last dot, none for dotfiles."""
    dot = name.rfind(".")
    return name[dot + 1 :] if dot > 0 else ""


_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def is_wheel_stem(stem: str) -> bool:
    """uv's ``WheelFilename::from_stem`` (uv 0.6-0.7 count only such names as references)."""
    parts = stem.split("-")
    if len(parts) not in (5, 6):
        return False
    name, version = parts[0], parts[1]
    if not name or not name[0].isalnum() or not name[-1].isalnum() or not _NAME_CHARS.issuperset(name):
        return False
    if (
        not version
        or not (version[0].isdigit() or version[0] in "vV")
        or not all(c.isalnum() or c in ".!+_" for c in version)
    ):
        return False
    if len(parts) == 6 and not parts[2][:1].isdigit():
        return False
    return all(parts[-3:])


class _Resolver:
    """Rust's ``canonicalize`` for the paths a prune looks at, fast for the common case.

    A link into ``archive-v0/<id>`` of this cache, whose archive is a plain folder, resolves to
    the archive's canonical path without resolving every component again; anything else goes
    through ``os.path.realpath``."""

    def __init__(self, cache: Cache) -> None:
        self.archives = cache.archives
        self.real_archives = os.path.realpath(cache.archives)
        self.marker = os.sep + ARCHIVE_BUCKET + os.sep

    def __call__(self, path: str) -> Optional[str]:
        try:
            target = os.readlink(path)
        except OSError:
            target = None
            if os.path.dirname(path) == self.archives:  # an archive folder itself
                return os.path.join(self.real_archives, os.path.basename(path))
        if target is not None and self.marker in os.sep + target:
            aid = target.rstrip(os.sep).rsplit(os.sep, 1)[-1]
            base = os.path.normpath(os.path.join(os.path.dirname(path), target))
            if base == os.path.join(self.archives, aid) or os.path.dirname(base) == self.real_archives:
                candidate = os.path.join(self.archives, aid)
                try:
                    if os.path.isdir(candidate) and not os.path.islink(candidate):
                        return os.path.join(self.real_archives, aid)
                except OSError:
                    return None
        try:
            os.stat(path)
        except OSError:
            return None
        return os.path.realpath(path)


def _references(
    cache: Cache, version: tuple[int, ...], skip: set[str], evicted: AbstractSet[str] = frozenset()
) -> set[str]:
    """Canonical paths that some link in uv's buckets resolves to (uv's find_archive_references).
    Our own folder is left out: the caller adds the pins the prune will find there."""
    refs: set[str] = set()
    _canonical = _Resolver(cache)
    skip = skip | {cache.manifest}
    if version >= uvfeatures.REFS_FILTERED:
        buckets = [cache.sdists, cache.wheels]
    else:
        buckets = [os.path.join(cache.path, b) for b in cache.build.all_buckets]
    for bucket in buckets:
        if not os.path.isdir(bucket) or bucket in skip:
            continue
        wheels = bucket == cache.wheels

        def descend(e: os.DirEntry) -> bool:
            if e.path in skip:
                return False
            if version >= uvfeatures.REFS_FILTERED:  # uv's filter_entry prunes whole folders
                return not (e.name in REF_SKIP_NAMES or _extension(e.name).lower() in REF_SKIP_EXT)
            return True

        for e in report.walk(bucket, descend):
            if e.path in skip:
                continue
            if version >= uvfeatures.REFS_FILTERED:
                if e.name in REF_SKIP_NAMES or _extension(e.name).lower() in REF_SKIP_EXT:
                    continue
                if not e.is_symlink():
                    continue
            else:
                if _extension(e.name).lower() == "lock":
                    continue
                if wheels:
                    head, sep, tail = e.name.rpartition("-")
                    if not sep or "." in tail:
                        continue
                elif not is_wheel_stem(e.name):
                    continue
            target = _canonical(e.path)
            if target is not None and os.path.basename(target) not in evicted:
                refs.add(target)
    return refs


def plan_prune(cache: Cache, pinned: set[str], ci: bool = False, evicted: AbstractSet[str] = frozenset()) -> Plan:
    """What ``uv cache prune [--ci]`` of ``cache.build`` will remove from ``cache``, once the
    shim has made the pins in its bucket exactly ``pinned`` (archive ids) and removed uv's own
    references to ``evicted``: uv's steps in uv's order, each seeing what the earlier ones removed."""
    version = cache.build.version_tuple
    plan = Plan()
    plan.uv_version = cache.build.version
    gone: set[str] = set()  # paths that earlier steps remove
    canonical = _Resolver(cache)
    _stale_entries(cache, version, plan, gone)
    _cached_environments(cache, version, canonical, plan, gone)
    if ci:
        _ci_leftovers(cache, plan, gone)
    refs = _references(cache, version, gone, evicted)
    if cache.sdists not in gone:
        refs.update(t for t in (canonical(os.path.join(cache.archives, a)) for a in pinned) if t)
    archives_gone = _unreferenced_archives(cache, canonical, refs, pinned, plan, gone)
    _measure(plan, plan.paths + archives_gone)
    return plan


def _stale_entries(cache: Cache, version: tuple[int, ...], plan: Plan, gone: set[str]) -> None:
    """Every top-level entry that is not a bucket of this uv (its markers excepted)."""
    buckets = set(cache.build.all_buckets)
    markers = ROOT_MARKERS + ((LOCK_FILE,) if version >= uvfeatures.LOCKS_CACHE else ())
    for name in sorted(os.listdir(cache.path)):
        path = os.path.join(cache.path, name)
        if name in markers or (os.path.isdir(path) and name in buckets):
            continue
        plan.stale.append(path)
        gone.add(path)


def _cached_environments(
    cache: Cache, version: tuple[int, ...], canonical: _Resolver, plan: Plan, gone: set[str]
) -> None:
    """The environments bucket: its links (and before ENV_LINKS_ONLY, what they point to)."""
    bucket = cache.environments
    if bucket in gone or not os.path.isdir(bucket):
        return
    for e in sorted(os.listdir(bucket)):
        path = os.path.join(bucket, e)
        if version < uvfeatures.ENV_LINKS_ONLY:
            target = canonical(path)  # old uv removes what the link points to
            if target is not None:
                plan.environments.append(target)
                gone.add(target)
        else:
            plan.environments.append(path)
        gone.add(path)


def _ci_leftovers(cache: Cache, plan: Plan, gone: set[str]) -> None:
    """``--ci``: every folder of the wheels bucket, and what surrounds built sdists' metadata."""
    if cache.wheels not in gone and os.path.isdir(cache.wheels):
        for e in sorted(os.listdir(cache.wheels)):
            path = os.path.join(cache.wheels, e)
            if os.path.isdir(path):
                plan.ci.append(path)
                gone.add(path)
    if cache.sdists not in gone and os.path.isdir(cache.sdists):
        for dirpath, dirnames, filenames in os.walk(cache.sdists):
            if SDIST_METADATA in filenames:
                for child in sorted(dirnames + filenames):
                    if child != SDIST_METADATA and not child.lower().endswith(WHEEL_EXT):
                        p = os.path.join(dirpath, child)
                        plan.ci.append(p)
                        gone.add(p)
                dirnames[:] = []


def _unreferenced_archives(
    cache: Cache, canonical: _Resolver, refs: set[str], pinned: set[str], plan: Plan, gone: set[str]
) -> list[str]:
    """The archives no reference keeps (their paths); the ones only uv's index keeps are noted."""
    out = []
    try:
        names = sorted(os.listdir(cache.archives))
    except OSError:
        names = []
    for aid in names:
        path = os.path.join(cache.archives, aid)
        target = canonical(path)
        if path in gone or target in gone:
            continue
        if target is not None and target in refs:
            if not pinned or aid not in pinned:
                plan.kept_by_uv.add(aid)
            continue
        plan.archives.append(aid)
        out.append(path)
    return out


def _measure(plan: Plan, paths: list[str]) -> None:
    """Files and bytes freed: an inode counts only when every one of its links goes."""
    links: dict[tuple[int, int], list[int]] = {}

    def count(st: os.stat_result) -> None:
        plan.files += 1
        seen = links.setdefault((st.st_dev, st.st_ino), [0, st.st_nlink, st.st_size])
        seen[0] += 1

    for top in paths:
        try:
            st = os.lstat(top)
        except OSError:
            continue
        if not os.path.isdir(top) or os.path.islink(top):
            count(st)
            continue
        for e in report.walk(top):
            try:
                if not e.is_dir(follow_symlinks=False):
                    count(e.stat(follow_symlinks=False))
            except OSError:
                continue
    plan.freed = sum(size for count_, nlink, size in links.values() if count_ >= nlink)


def archive_label(cache: Cache, aid: str) -> str:
    """``name==version`` of an unpacked wheel, ``cached environment`` for a venv, else the id."""
    if cache.is_cached_env(aid):
        return "cached environment"
    info = cache.dist_info(aid)
    if info is None:
        return aid
    name, _, version = info[: -len(".dist-info")].partition("-")
    return f"{name.replace('_', '-').lower()}=={version}"
