"""One definition of size for every figure uv-shim prints: bytes on disk as ``du`` counts them.

A size is the allocated blocks (``st_blocks`` x 512) of every file, folder and link, each inode
once, so ``uv-shim status`` agrees with ``du -s --block-size=1`` of the cache. A file hardlinked
from an environment is counted where ``du`` of the cache finds it, but removing it frees only
what has no link left anywhere: "freed" is always the blocks of inodes whose every link goes.

``Footprint`` is one look at the cache. Unpacked wheels never change, so their sizes are read
once and memoized (``manifest.SIZES``: ``<archive id> <bytes> <private bytes>``, see ``_private``);
everything else (the other buckets, cached environments, archives of the content-addressed
preview, whose files are also in the files bucket) is walked inode by inode. Two footprints, one
before and one after a prune, give what really came off the disk (``Freed``).
"""

from __future__ import annotations

import os
import stat

from shim import report
from shim.cache import ENV_MARKER, Cache, dist_info_among
from shim.manifest import SIZES

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from collections.abc import Set as AbstractSet
    from typing import Optional

BLOCK = 512  # st_blocks counts 512-byte units on every Unix


def disk_bytes(st: os.stat_result) -> int:
    """What one inode occupies on disk, as ``du`` counts it."""
    return st.st_blocks * BLOCK


def entries(top: str, stop: Iterable[str] = ()) -> Iterator[tuple[str, os.stat_result]]:
    """``top`` and everything below it, never following a symlink: (path, lstat). Folders in
    ``stop`` are yielded but not entered."""
    stop = set(stop)
    try:
        st = os.lstat(top)
    except OSError:
        return
    yield top, st
    if not stat.S_ISDIR(st.st_mode):
        return
    for e in report.walk(top, descend=lambda e: e.path not in stop):
        try:
            yield e.path, e.stat(follow_symlinks=False)
        except OSError:
            continue


def _private(folder: str, name: str, mode: int) -> bool:
    """Part of an unpacked wheel that no environment links even in hardlink mode (``name`` in
    ``folder``, of file type ``mode``): folders, links, ``*.dist-info/RECORD`` (uv installs a copy
    it can rewrite) and ``*.data/scripts/`` files (uv rewrites their shebang into a new file)."""
    if not stat.S_ISREG(mode):
        return True
    dist_info, scripts = _private_folder(folder)
    return scripts or (dist_info and name == "RECORD")


def _private_folder(folder: str) -> tuple[bool, bool]:
    """Is ``folder`` a ``*.dist-info`` (its RECORD is private), is it a ``*.data/scripts`` (all
    its files are)? Once per folder: ``tree_bytes`` asks it for every folder of every wheel."""
    return folder.endswith(".dist-info"), os.path.basename(folder) == "scripts" and os.path.dirname(folder).endswith(
        ".data"
    )


def tree_bytes(top: str) -> tuple[int, int]:
    """(bytes, private bytes: see ``_private``) of everything under ``top``, each inode once.

    ``entries`` and ``_private``, inlined (its folder part once per folder): a first prune sizes
    every unpacked wheel this way."""
    top = top.rstrip(os.sep) or top  # its own name decides what is private below it
    try:
        st = os.lstat(top)
    except OSError:
        return 0, 0
    total = private = st.st_blocks * BLOCK  # a folder (or a link) is private
    if not stat.S_ISDIR(st.st_mode):
        return total, total if total and _private(os.path.dirname(top), os.path.basename(top), st.st_mode) else 0
    seen = {(st.st_dev, st.st_ino)}
    stack = [top]
    sep = os.sep
    while stack:
        d = stack.pop()
        try:
            it = os.scandir(d)
        except OSError:
            continue
        dist_info, scripts = _private_folder(d)
        with it:
            for e in it:
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                mode = st.st_mode
                if stat.S_ISDIR(mode):
                    stack.append(d + sep + e.name)
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    continue
                seen.add(key)
                size = st.st_blocks * BLOCK
                total += size
                if size and (not stat.S_ISREG(mode) or scripts or (dist_info and e.name == "RECORD")):
                    private += size
    return total, private


class ArchiveSizes:
    """The memo of unpacked wheels: ``get(aid)`` is (bytes, private bytes, ``*.dist-info`` name
    or "")."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self.memo: dict[str, tuple[int, int, str]] = {}
        self.fresh = False
        area = cache.area()
        try:
            if area is None:
                raise FileNotFoundError(SIZES)
            memo = self.memo
            for line in area.read(SIZES).decode("utf-8", "replace").split("\n"):  # ~10k lines: kept lean
                parts = line.split(" ")
                if len(parts) != 4:
                    continue
                aid, total_text, private_text, info = parts
                try:
                    total, private = int(total_text), int(private_text)
                except ValueError:
                    continue
                if not 0 <= private <= total < 2**62:
                    continue
                if info == "-":
                    memo[aid] = (total, private, "")
                elif info.endswith(".dist-info") and "/" not in info and info[:1] != ".":  # _dist_info_name
                    memo[aid] = (total, private, info)
        except OSError:
            pass

    def get(self, aid: str, info: Optional[str] = None) -> tuple[int, int, str]:
        """(bytes, private bytes, dist-info name); ``info`` when the caller already knows it."""
        size = self.memo.get(aid)
        if size is None:
            total, private = tree_bytes(os.path.join(self.cache.archives, aid))
            if info is None:
                info = self.cache.dist_info(aid) or ""
            size = self.memo[aid] = (total, private, info if _dist_info_name(info) else "")
            self.fresh = True
        return size

    def save(self, keep: Iterable[str]) -> None:
        """Write the memo back (only the archives in ``keep``), if anything new was measured."""
        if not self.fresh:
            return
        keep = set(keep)
        text = "".join(f"{a} {n} {f} {i or '-'}\n" for a, (n, f, i) in sorted(self.memo.items()) if a in keep)
        try:
            self.cache.area(create=True).write_atomic(SIZES, text.encode("utf-8"))  # type: ignore[union-attr]
            self.fresh = False
        except OSError:
            pass  # a memo we cannot write only costs time next run


def _dist_info_name(name: str) -> bool:
    """A plain ``*.dist-info`` folder name (the memo is in a shared cache: trust nothing else)."""
    return (
        name == "-"
        or name == ""
        or (name.endswith(".dist-info") and "/" not in name and " " not in name and not name.startswith("."))
    )


OTHER = ""  # the owner of an inode outside any unpacked wheel


class Footprint:
    """The cache as ``du`` sees it, looked at once.

    ``total``: bytes of the whole cache. ``archives``: each unpacked wheel's (bytes, freeable
    bytes): freeable is everything when no environment hardlinks it, else only what no environment
    links (``_private``; uv links every other file of a wheel the same way). ``inodes``: everything walked, by
    (dev, ino): [bytes, link count, links seen in the cache, owner (an archive id, or OTHER),
    is a folder]. uv-shim's own record area counts in ``total`` and ``ours`` (``ours=False``: not
    looked at), never in ``inodes`` (it is not uv's to remove). ``on_link(path)`` sees every
    symlink walked. ``same``: an earlier footprint whose unpacked wheels, if still there, and
    record area are taken as they were (a look after a prune only needs to know which went).
    ``leave``: folders not looked at (``total`` is then only what was looked at).
    """

    inode_numbers_hold = False  # may a later look trust folder entries' inode numbers?
    ours_looked = False  # was the record area measured (``ours``)?
    left: tuple[str, ...] = ()  # folders not looked at
    memo: ArchiveSizes

    def __init__(
        self,
        cache: Cache,
        on_link: Optional[Callable[[str], None]] = None,
        write: bool = True,
        ours: bool = True,
        same: Optional[Footprint] = None,
        leave: Iterable[str] = (),
        defer: AbstractSet[str] = frozenset(),
    ) -> None:
        self.cache = cache
        self.deferred: list[str] = []  # archives of ``defer`` not measured yet (``measure_deferred``)
        self.inodes: dict[tuple[int, int], list] = {}
        self.archives: dict[str, tuple[int, int]] = {}
        self.hardlinked: set[str] = set()
        self.cached_envs: set[str] = set()
        self.walked: set[str] = set()  # archives walked inode by inode (not from the memo)
        self.devices: set[int] = set()  # the devices of the inodes walked
        self.light = same if same is not None and same.inode_numbers_hold and len(same.devices) == 1 else None
        self.dist_infos: dict[str, str] = {}  # archive id -> its *.dist-info folder name
        self.ours = 0
        self.memo = memo = same.memo if same is not None else ArchiveSizes(cache)
        self._write = write
        memoized = 0
        try:
            ids = sorted(os.listdir(cache.archives))
        except OSError:
            ids = []
        self.ids = ids  # every name in the archive bucket, as listed
        wheels: list[str] = []
        listed: dict[str, list[str]] = {}  # the entries of archives looked into here (not memoized)
        prefix = cache.archives + os.sep
        for aid in ids:  # cached environments first: their files may be hardlinks of archives
            if aid in memo.memo or (same is not None and aid in same.archives and aid not in same.walked):
                wheels.append(aid)
                continue
            try:
                folder = stat.S_ISDIR(os.lstat(prefix + aid).st_mode)
            except OSError:
                folder = False
            if not folder:
                self._walk(prefix + aid, OTHER, on_link)  # not an archive uv made
                continue
            names = None
            if aid not in defer:  # listed now, once: its METADATA is looked at below
                try:
                    names = listed[aid] = os.listdir(prefix + aid)
                except OSError:
                    pass
            if (names is None or ENV_MARKER in names) and cache.is_cached_env(aid):
                self.cached_envs.add(aid)
                self._walk(prefix + aid, OTHER, on_link)  # an environment changes: never memoized
            else:
                wheels.append(aid)
        for aid in wheels:
            if same is not None and aid in same.archives and aid not in same.walked:
                self.archives[aid] = same.archives[aid]  # unchanged since ``same`` looked
                memoized += same.archives[aid][0]
                continue
            baseline = cache.link_baseline(aid)
            if aid in defer and baseline == 1:  # it stays: only its size matters,
                # and that can wait if unknown (not in the files layout: shared files count once)
                if aid in memo.memo:
                    self.archives[aid] = (memo.memo[aid][0], memo.memo[aid][0])
                    memoized += memo.memo[aid][0]
                else:
                    self.deferred.append(aid)
                    self.archives[aid] = (0, 0)
                continue
            if aid in memo.memo and baseline == 1:
                info = memo.memo[aid][2]
                meta = _stat(prefix + aid + os.sep + info + os.sep + "METADATA") if info else None
            else:
                found, meta = _metadata(cache, aid, listed.get(aid))
                info = found or ""
            if info:
                self.dist_infos[aid] = info
            links = meta.st_nlink if meta is not None else 1
            key = (meta.st_dev, meta.st_ino) if meta is not None else None
            in_envs = self.inodes[key][2] if key in self.inodes else 0
            if links - in_envs > baseline:
                self.hardlinked.add(aid)  # an environment outside the cache hardlinks it
            if baseline > 1 or in_envs:
                # the content-addressed preview's files are also in the files bucket, and a cached
                # environment's hardlinks go with it: inode by inode, so each counts once
                self.walked.add(aid)
                self.archives[aid] = self._walk(prefix + aid, aid, on_link, baseline=baseline)
                continue
            total, private, _info = memo.get(aid, info)
            memoized += total
            self.archives[aid] = (total, private) if aid in self.hardlinked else (total, total)
        self.left = tuple(leave) if same is None else same.left
        self._walk(cache.path, OTHER, on_link, stop=(cache.archives,), skip=(cache.manifest, *self.left))
        if write and not self.deferred:  # else once, when they are measured too
            memo.save(ids)
        self.inode_numbers_hold = self.light is not None or _inode_numbers_hold(cache)
        self.ours_looked = ours
        if ours and same is not None and same.ours_looked:
            # a look after a prune through the shim: it changed nothing in the record area but
            # the hold, gone by now (a walk of every pin costs ~90 ms at 1,000 roots)
            self.ours = same.ours
        elif ours:  # a walk of every pin: skipped where only what uv removes matters
            self.ours = tree_bytes(cache.manifest)[0]
        self.total = sum(i[0] for i in self.inodes.values()) + memoized + self.ours

    def archive_bytes(self) -> dict[str, int]:
        """Each unpacked wheel's bytes (``archives`` without the freeable part)."""
        return {aid: size for aid, (size, _free) in self.archives.items()}

    def measure_deferred(self) -> None:
        """Measure what ``defer`` left out (say in a thread while uv prunes: those archives are
        pinned, uv leaves them alone) and add them to ``total``."""
        for aid in self.deferred:
            if not os.path.isdir(os.path.join(self.cache.archives, aid)):
                continue
            total, _private, _info = self.memo.get(aid)
            self.archives[aid] = (total, total)
            self.total += total
        self.deferred = []
        if self._write:
            try:
                self.memo.save(os.listdir(self.cache.archives))
            except OSError:
                pass

    def _walk(
        self,
        top: str,
        owner: str,
        on_link: Optional[Callable[[str], None]],
        stop: Iterable[str] = (),
        skip: Iterable[str] = (),
        baseline: int = 1,
    ) -> tuple[int, int]:
        """Walk ``top`` into ``inodes`` (``stop``: counted, not entered; ``skip``: neither);
        returns (bytes, freeable bytes) of what was new."""
        if self.light is not None:
            return self._look(top, owner, set(stop) | set(skip), set(skip))
        total = freeable = 0
        skip = set(skip)
        for path, st in entries(top, set(stop) | skip):
            if path in skip:
                continue
            if stat.S_ISLNK(st.st_mode) and on_link is not None:
                on_link(path)
            key = (st.st_dev, st.st_ino)
            seen = self.inodes.get(key)
            if seen is not None:
                seen[2] += 1
                if owner == OTHER or seen[3] != OTHER:
                    continue
                seen[3] = owner  # a cached environment's hardlink of this archive's file
                total += seen[0]
                if seen[2] - 1 + baseline >= st.st_nlink:
                    freeable += seen[0]  # only cached environments link it besides
                continue
            is_dir = stat.S_ISDIR(st.st_mode)
            size = disk_bytes(st)
            self.inodes[key] = [size, st.st_nlink, 1, owner, is_dir]
            self.devices.add(st.st_dev)
            total += size
            if is_dir or st.st_nlink <= baseline:
                freeable += size
        return total, freeable

    def _look(self, top: str, owner: str, stop: set[str], skip: set[str]) -> tuple[int, int]:
        """``_walk`` after a prune, when the folder entries' inode numbers are the files' own (see
        ``_inode_numbers_hold``): which inodes are still here, with no stat of what ``light`` saw."""
        same = self.light
        assert same is not None
        dev = next(iter(same.devices))
        total = 0

        def note(path: str, ino: int) -> None:
            nonlocal total
            key = (dev, ino)
            seen = self.inodes.get(key)
            if seen is not None:
                seen[2] += 1
                return
            was = same.inodes.get(key)
            if was is None:  # new since the first look: measure it
                try:
                    st = os.lstat(path)
                except OSError:
                    return
                was = [disk_bytes(st), st.st_nlink, 0, owner, stat.S_ISDIR(st.st_mode)]
            self.inodes[key] = [was[0], was[1], 1, was[3], was[4]]
            total += was[0]

        try:
            st = os.lstat(top)
        except OSError:
            return 0, 0
        note(top, st.st_ino)
        if not stat.S_ISDIR(st.st_mode):
            return total, total  # a link or a file: never entered
        for e in report.walk(top, descend=lambda e: e.path not in stop):
            if e.path not in skip:
                note(e.path, e.inode())
        return total, total


def _inode_numbers_hold(cache: Cache) -> bool:
    """Do folder entries carry the files' own inode numbers here (``d_ino == st_ino``)? Not on
    every overlay filesystem; checked on the entries at the top of the cache and its buckets."""
    checked = 0
    for folder in (cache.path, cache.wheels, cache.sdists, cache.archives):
        try:
            with os.scandir(folder) as it:
                for e in it:
                    if e.inode() != e.stat(follow_symlinks=False).st_ino:
                        return False
                    checked += 1
                    if checked % 16 == 0:
                        break
        except OSError:
            continue
    return True


def _stat(path: str) -> Optional[os.stat_result]:
    try:
        return os.stat(path)
    except OSError:
        return None


def _metadata(
    cache: Cache, aid: str, names: Optional[list[str]] = None
) -> tuple[Optional[str], Optional[os.stat_result]]:
    """An unpacked wheel's ``*.dist-info`` name and the stat of its METADATA (uv links every file
    of a wheel the same way, so that link count tells how the wheel is linked); ``names``: its
    entries, when already listed."""
    info = cache.dist_info(aid) if names is None else dist_info_among(names)
    if info is None:
        return None, None
    try:
        return info, os.stat(os.path.join(cache.archives, aid, info, "METADATA"))
    except OSError:
        return info, None


class Freed:
    """What a prune really removed: the difference between a footprint taken before it and one
    taken after. An inode counts when it is gone and every link it had was in the cache; an
    unpacked wheel counts its freeable bytes when its folder is gone."""

    def __init__(self, before: Footprint, after: Footprint) -> None:
        gone = [a for a in before.archives if a not in after.archives]
        self.archives = sorted(gone)
        self.archive_bytes = 0
        self.other_files = 0
        self.other_bytes = 0
        for key, (size, nlink, links, owner, is_dir) in before.inodes.items():
            if key in after.inodes or (links < nlink and not is_dir):
                continue
            if owner == OTHER:
                self.other_bytes += size
                self.other_files += 0 if is_dir else links
            else:
                self.archive_bytes += size
        self.archive_bytes += sum(before.archives[a][1] for a in gone if a not in before.walked)
        self.bytes = self.archive_bytes + self.other_bytes
