"""What the real ``uv cache prune`` will delete, computed without deleting anything.

A model of uv's own prune, step by step as uv's ``Cache::prune`` does it, with the differences
between uv versions taken from ``uvfeatures``. ``tests/test_dryrun.py`` checks it against the real
prune on randomized caches for every supported uv version: if uv changes its prune, that test
says so.
"""

from __future__ import annotations

import os
import stat

from shim import report, sizes, uvfeatures
from shim.cache import (
    ARCHIVE_BUCKET,
    LOCK_FILE,
    REF_SKIP_EXT,
    REF_SKIP_NAMES,
    REVISION_POINTERS,
    ROOT_MARKERS,
    SDIST_METADATA,
    WHEEL_EXT,
    Cache,
)
from shim.sizes import Footprint

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from collections.abc import Set as AbstractSet
    from typing import Optional


class Plan:
    def __init__(self) -> None:
        self.revisions: list[str] = []  # built sdists' revisions their revision pointer no longer names
        self.stale: list[str] = []  # top-level entries that are not buckets of this uv
        self.environments: list[str] = []  # cached environments
        self.ci: list[str] = []  # --ci: unzipped wheels and built-wheel leftovers
        self.archives: list[str] = []  # archive ids that no reference keeps
        self.kept_by_uv: set[str] = set()  # archive ids uv's own index references
        self.held: list[str] = []  # uv's references to evicted archives, set aside by uv-shim
        self.swept: list[str] = []  # files-bucket entries no archive links any more
        self.archive_bytes = 0  # what removing ``archives`` frees (shim.sizes: du's measure)
        self.other_files = 0  # files (not folders) removed outside the unpacked wheels
        self.other_bytes = 0  # what removing everything else frees
        self.shrink = 0  # what the cache itself loses (more than ``freed`` where environments hardlink it)

    @property
    def freed(self) -> int:
        return self.archive_bytes + self.other_bytes


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

    def __call__(self, path: str, target: Optional[str] = None) -> Optional[str]:
        """``target``: what the link ``path`` says, if just read."""
        if target is None:
            try:
                target = os.readlink(path)
            except OSError:
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
    cache: Cache,
    version: tuple[int, ...],
    skip: set[str],
    evicted: AbstractSet[str] = frozenset(),
    links: Optional[Mapping[str, str]] = None,
) -> set[str]:
    """Canonical paths that some link in uv's buckets resolves to (uv's find_archive_references).
    Our own folder is left out: the caller adds the pins the prune will find there. ``links``:
    every link in the wheels and sdists buckets and what it says, from a look a moment ago under
    the same lock (``evict.Survey``): uv's walk is then followed on those paths, not walked again."""
    refs: set[str] = set()
    _canonical = _Resolver(cache)
    skip = skip | {cache.manifest}
    if version >= uvfeatures.REFS_FILTERED:
        buckets = [cache.sdists, cache.wheels]
    else:
        buckets = [os.path.join(cache.path, b) for b in cache.build.all_buckets]
    # a bucket that is itself a link: uv walks through it, the look that gathered ``links`` did not
    if links is not None and version >= uvfeatures.REFS_FILTERED and not any(map(os.path.islink, buckets)):
        for path, said in links.items():
            if _reached(path, buckets, skip):
                target = _canonical(path, said)
                if target is not None and os.path.basename(target) not in evicted:
                    refs.add(target)
        return refs
    for bucket in buckets:
        if not os.path.isdir(bucket) or bucket in skip:
            continue
        wheels = bucket == cache.wheels

        def descend(e: os.DirEntry) -> bool:
            if e.path in skip:
                return False
            if version >= uvfeatures.REFS_FILTERED:  # uv's filter_entry prunes whole folders
                return not _ref_skipped(e.name)
            return True

        for e in report.walk(bucket, descend):
            if e.path in skip:
                continue
            if version >= uvfeatures.REFS_FILTERED:
                if _ref_skipped(e.name):
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


def _ref_skipped(name: str) -> bool:
    """uv's ``filter_entry`` for references (since REFS_FILTERED): never a reference, never entered."""
    return name in REF_SKIP_NAMES or _extension(name).lower() in REF_SKIP_EXT


def _reached(path: str, buckets: Sequence[str], skip: AbstractSet[str]) -> bool:
    """Whether uv's filtered walk of ``buckets`` (since REFS_FILTERED: ``filter_entry`` on every
    entry, so a folder it drops is not entered) reaches ``path``, and nothing on the way is in
    ``skip`` (removed by an earlier step)."""
    bucket = next((b for b in buckets if path.startswith(b + os.sep)), None)
    if bucket is None or bucket in skip:
        return False
    d = path
    while d != bucket:
        if d in skip or _ref_skipped(os.path.basename(d)):
            return False
        d = os.path.dirname(d)
    return True


def plan_prune(
    cache: Cache,
    pinned: set[str],
    ci: bool = False,
    evicted: AbstractSet[str] = frozenset(),
    held: Sequence[str] = (),
    footprint: Optional[Footprint] = None,
    links: Optional[Mapping[str, str]] = None,
) -> Plan:
    """What ``uv cache prune [--ci]`` of ``cache.build`` will remove from ``cache``, once the
    shim has made the pins in its bucket exactly ``pinned`` (archive ids) and set aside uv's own
    references to ``evicted`` (the files ``held``): uv's steps in uv's order, each seeing what the
    earlier ones removed. Sizes as ``shim.sizes`` defines them (``footprint``: the cache now;
    ``links``: the links in its wheels and sdists buckets, if that look gathered them)."""
    version = cache.build.version_tuple
    plan = Plan()
    gone: set[str] = set()  # paths that earlier steps remove
    canonical = _Resolver(cache)
    _stale_revisions(cache, plan, gone)
    _stale_entries(cache, version, plan, gone)
    _cached_environments(cache, version, canonical, plan, gone)
    if ci:
        _ci_leftovers(cache, plan, gone)
    plan.held = [p for p in held if p not in gone]
    gone.update(plan.held)
    refs = _references(cache, version, gone, evicted, links)
    if cache.sdists not in gone:
        refs.update(t for t in (canonical(os.path.join(cache.archives, a)) for a in pinned) if t)
    _unreferenced_archives(cache, canonical, refs, pinned, plan, gone)
    _measure(cache, plan, footprint or Footprint(cache, write=False, ours=False))
    return plan


def _stale_revisions(cache: Cache, plan: Plan, gone: set[str]) -> None:
    """uv's ``uv_distribution::prune``, first: beside a ``revision.http`` or ``revision.rev``
    pointer, every folder that is not the revision it names goes. The pointer is msgpack; the
    revision id it names is stored as a plain string, so a folder is named when its name is in it."""
    if not os.path.isdir(cache.sdists):
        return
    for dirpath, dirnames, filenames in os.walk(cache.sdists):
        if dirpath == cache.manifest:
            dirnames[:] = []
            continue
        pointers = []
        for name in REVISION_POINTERS:
            if name in filenames:
                pointers.append(_read_small(os.path.join(dirpath, name)))
        pointers = [p for p in pointers if p]
        if not pointers:
            continue
        for d in sorted(dirnames):
            path = os.path.join(dirpath, d)
            if os.path.isdir(path) and not os.path.islink(path) and not all(os.fsencode(d) in p for p in pointers):
                plan.revisions.append(path)
                gone.add(path)
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in gone]


def _read_small(path: str, limit: int = 1 << 16) -> bytes:
    """A small regular file's bytes, b"" for anything else: never through a link, never
    blocking on a FIFO someone planted in a shared cache, never more than ``limit``."""
    import stat as stat_

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return b""
    try:
        if not stat_.S_ISREG(os.fstat(fd).st_mode):
            return b""
        return os.read(fd, limit)
    except OSError:
        return b""
    finally:
        os.close(fd)


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
            dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in gone]
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
        if cache.is_cached_env(aid):
            plan.environments.append(path)  # an environment uv no longer links: not a wheel
        else:
            plan.archives.append(aid)
        out.append(path)
    return out


def _measure(cache: Cache, plan: Plan, fp: Footprint) -> None:
    """Files and bytes the plan frees (du's measure): an inode counts only when every one of its
    links goes; an unpacked wheel sized from the memo counts its freeable bytes. Then the files
    bucket (uv >= 0.12.24): uv removes the files no archive links any more, and emptied shards."""
    removed: dict[tuple[int, int], int] = {}
    info: dict[tuple[int, int], tuple[int, int, str, bool]] = {}
    visited: set[str] = set()

    def take(top: str, owner: str) -> None:
        for path, st in sizes.entries(top):
            if path in visited:
                continue
            visited.add(path)
            key = (st.st_dev, st.st_ino)
            removed[key] = removed.get(key, 0) + 1
            if key not in info or (owner != sizes.OTHER and info[key][2] == sizes.OTHER):
                info[key] = (sizes.disk_bytes(st), st.st_nlink, owner, stat.S_ISDIR(st.st_mode))

    for top in plan.revisions + plan.stale + plan.environments + plan.ci + plan.held:
        take(top, sizes.OTHER)
    for aid in plan.archives:
        if aid in fp.archives and aid not in fp.walked:
            plan.archive_bytes += fp.archives[aid][1]
            plan.shrink += fp.archives[aid][0]
            visited.add(os.path.join(cache.archives, aid))
        else:
            take(os.path.join(cache.archives, aid), aid if aid in fp.archives else sizes.OTHER)
    if cache.files is not None and os.path.isdir(cache.files) and not any(cache.files == p for p in plan.stale):
        _sweep_files(cache.files, removed, take, plan)
    for key, n in removed.items():
        size, nlink, owner, is_dir = info[key]
        here = fp.inodes[key][2] if key in fp.inodes else nlink
        if is_dir or n >= here:
            plan.shrink += size  # no link to it stays in the cache
        if not is_dir and n < nlink:
            continue  # a link stays elsewhere: nothing comes off the disk
        if owner == sizes.OTHER:
            plan.other_bytes += size
            plan.other_files += 0 if is_dir else n
        else:
            plan.archive_bytes += size


def _sweep_files(files: str, removed: dict[tuple[int, int], int], take: Callable[[str, str], None], plan: Plan) -> None:
    """uv's sweep of the content-addressed files bucket: every file left with one link goes, and
    a shard folder that ends up empty."""
    try:
        shards = sorted(os.listdir(files))
    except OSError:
        return
    for shard in shards:
        folder = os.path.join(files, shard)
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        emptied = True
        for name in names:
            path = os.path.join(folder, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and st.st_nlink - removed.get((st.st_dev, st.st_ino), 0) <= 1:
                plan.swept.append(path)
                take(path, sizes.OTHER)
            else:
                emptied = False
        if emptied:
            plan.swept.append(folder)
            take(folder, sizes.OTHER)


def archive_label(cache: Cache, aid: str, info: Optional[str] = None) -> str:
    """``name==version`` of an unpacked wheel, ``cached environment`` for a venv, else the id
    (``info``: its ``*.dist-info`` name, when already known)."""
    if info is None:
        if cache.is_cached_env(aid):
            return "cached environment"
        info = cache.dist_info(aid)
    if info is None:
        return aid
    name, _, version = info[: -len(".dist-info")].partition("-")
    return f"{name.replace('_', '-').lower()}=={version}"
