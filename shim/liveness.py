"""Liveness of roots at prune time: re-verify, drop the dead, pin the live in the pruning uv's bucket.

Runs under uv's exclusive cache lock. Every root of this host is checked on disk (does the
environment exist, which archives does it link now); roots of other hosts and containers cannot
be checked and are kept until their lease ends. Whatever cannot be verified keeps its pins:
fail closed for deletion.
"""

from __future__ import annotations

import copy
import os
import time

from shim import envscan, generations, hostid, manifest, moves
from shim.cache import Cache
from shim.confined import Dir
from shim.manifest import Record, RecordError, pin, pins, unpin
from shim.rootmemo import RootMemo

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional

DEFAULT_LEASE = 30 * 86400.0

LIVE = "live"  # this host, exists, scanned now
DEAD = "dead"  # this host, environment gone: dropped with its pins
FOREIGN = "foreign"  # another host: kept until its lease ends
EXPIRED = "expired"  # another host, lease ended: dropped
UNVERIFIABLE = "unverifiable"  # cannot read the record or the environment: pins kept
PENDING = "pending"  # this host, registered before uv created it: kept a while, links nothing yet

PENDING_GRACE = 3600.0  # seconds a root may wait for uv to create its environment


class Root:
    """One root as the prune sees it."""

    def __init__(
        self, key: str, state: str, record: Optional[Record], archives: set[str], reason: str = "", moved_from: str = ""
    ) -> None:
        self.key = key
        self.state = state
        self.record = record
        self.archives = archives  # archive ids protected by a pin in the pruning uv's bucket
        self.reason = reason
        self.moved_from = moved_from  # the path it was recorded at, when it was found moved

    @property
    def path(self) -> str:
        return self.record.path if self.record else f"<record {self.key}>"

    def distributions(self, cache: Cache) -> dict[str, envscan.Dist]:
        """The root's distributions; read from the full record when the prune only needed its
        header (reports by package name)."""
        if self.record is None:
            return {}
        if not self.record.distributions:
            entry = None
            try:
                entry = cache.entry(self.key)
                if entry is not None:
                    self.record.distributions = manifest.load(entry).distributions
            except (OSError, RecordError):
                pass
            finally:
                if entry is not None:
                    entry.close()
        return self.record.distributions


class Entry:
    """One record folder of a root, in one uv version's bucket: reached through that bucket's
    confined area folder, opened only while it is used (thousands of roots, few descriptors)."""

    __slots__ = ("area", "key")

    def __init__(self, area: Dir, key: str) -> None:
        self.area = area
        self.key = key

    def open(self) -> Dir:
        """The entry folder; OSError (``Unsafe`` for a symlink) if it cannot be used."""
        return self.area.sub(self.key)

    @property
    def path(self) -> str:
        return os.path.join(self.area.path, self.key)


def entries_by_key(cache: Cache) -> dict[str, list[Entry]]:
    """Every entry folder of every uv version's bucket, current bucket first. A name that is not
    a real folder (a symlink planted there) is no entry: it is never followed."""
    out: dict[str, list[Entry]] = {}
    current = cache.area()
    for area in ([current] if current is not None else []) + list(cache.other_areas()):
        try:
            it = area.scandir()
        except OSError:
            continue
        with it:
            for e in sorted(it, key=lambda e: e.name):
                if not e.name.startswith(".") and e.is_dir(follow_symlinks=False):
                    out.setdefault(e.name, []).append(Entry(area, e.name))
    return out


def _first_record(entries: list[Entry]) -> tuple:
    """(newest readable copy of the record or None, first error). Copies exist when several
    uv versions share the cache; the one seen most recently wins."""
    error = ""
    best: Optional[Record] = None
    for entry in entries:
        try:
            with entry.open() as d:
                rec = manifest.load(d)
        except FileNotFoundError:
            continue
        except RecordError as e:
            error = error or f"{os.path.join(entry.path, manifest.RECORD)}: {e}"
            continue
        except OSError as e:
            error = error or f"{entry.path}: {e.strerror}"
            continue
        if best is None or rec.last_used_at > best.last_used_at:
            best = rec
    if best is not None:
        return best, ""
    return None, error or "no record beside its pins"


def _pinned_anywhere(entries: list[Entry]) -> set[str]:
    out: set[str] = set()
    for entry in entries:
        try:
            with entry.open() as d:
                out.update(pins(d))
        except OSError:
            continue
    return out


def _has_record(entry: Entry) -> bool:
    try:
        with entry.open() as d:
            return manifest.exists(d)
    except OSError:
        return False


class _Store:
    """Every write a verification makes, in one place, so a dry run can skip them all.

    Releases wait until every kept root is pinned (``release_dropped``): an archive a dead root
    pinned may be one a live root links too, and it must never be unpinned in between."""

    def __init__(self, cache: Cache, write: bool) -> None:
        self.cache = cache
        self.write = write
        self.dropped: list[tuple[list[Entry], Optional[Record], str]] = []

    def drop(self, entries: list[Entry], record: Optional[Record] = None, why: str = "") -> None:
        if self.write:
            self.dropped.append((entries, record, why))

    def release_dropped(self) -> None:
        """Release the dropped roots, each logged (``manifest.log_release``) before it goes."""
        for entries, record, why in self.dropped:
            if record is not None:
                area = self.cache.area(create=True)
                if area is not None:
                    try:
                        manifest.log_release(area, record, why)
                    except OSError:
                        pass  # a log we cannot write never keeps a dead root alive
            for entry in entries:
                try:
                    d = entry.open()
                except FileNotFoundError:
                    continue
                with d, manifest.lock(d):
                    manifest.remove(entry.area, entry.key)
        self.dropped = []

    def keep(
        self, key: str, record: Optional[Record], archives: set[str], exact: bool = False, rewrite: bool = False
    ) -> None:
        """Pin ``archives`` in the pruning uv's bucket (only them, if ``exact``) and make sure the
        record is there too (rewritten if ``rewrite``)."""
        if not self.write:
            return
        with self.cache.entry(key, create=True) as current, manifest.lock(current):  # type: ignore[union-attr]
            for aid in sorted(archives):
                pin(current, aid)  # pins first: a record never names an archive without its pin
            if record is not None and (rewrite or not manifest.exists(current)):
                manifest.save(current, record)
            if exact:  # and old pins go last: fail closed wherever this stops
                for aid in set(pins(current)) - archives:
                    unpin(current, aid)


def verify(
    cache: Cache,
    host_id: str,
    lease: float = DEFAULT_LEASE,
    now: Optional[float] = None,
    dry_run: bool = False,
    memo: bool = False,
) -> list[Root]:
    """Bring every root up to date in ``cache``'s buckets; return what was decided for each.

    ``dry_run`` decides the same without writing anything (``uv cache prune --dry-run``).
    ``memo``: record folders unchanged since the last look are taken from ``shim.rootmemo``
    (and what was read is saved there): only for a prune, where uv deletes and honours the pins
    on disk whatever the memo says."""
    now = time.time() if now is None else now
    legacy_id = hostid.legacy_identity()
    store = _Store(cache, write=not dry_run)
    roots: list[Root] = []
    area = cache.area()
    if not dry_run and area is not None:
        manifest.clean_leftovers(area)  # memo files a killed prune was writing
    # Another generation mirrored roots here with their pins in the pool: a root's own pins may
    # be partial, so every root is verified in full (and pinned on its own) before the pool goes.
    pooled = area is not None and area.lexists(manifest.POOL)
    finder = moves.Finder()
    seen = RootMemo(area if memo else None)
    for key, entries in sorted(entries_by_key(cache).items()):
        if len(entries) == 1 and entries[0].area is area and not pooled:
            fast = _verify_own(cache, entries[0], host_id, seen, clean=not dry_run)
            if fast is not None:
                roots.append(fast)
                continue
            seen.forget(key)  # the full path decides, and may change the folder
        elif not dry_run:
            for entry in entries:
                try:
                    with entry.open() as d:
                        manifest.clean_leftovers(d)  # what a killed writer left behind
                except OSError:
                    pass
        record, error = _first_record(entries)
        if record is None:
            kept = _pinned_anywhere(entries)
            if not kept and not _has_record(entries[0]):
                store.drop(entries)  # an empty leftover (a crash before the first write)
                continue
            store.keep(key, None, kept)
            roots.append(Root(key, UNVERIFIABLE, None, kept, error))
            continue
        if record.host_id != host_id and legacy_id is not None and record.host_id == legacy_id:
            roots.append(_verify_own_full(store, key, entries, record, now, finder))  # this host, before the
            continue  # identity covered mounts: verified as its own
        if record.host_id != host_id:
            age = now - record.last_used_at
            if age > lease and not _visible_here(record):
                store.drop(entries, record, f"lease ended (host {record.host}, last seen {int(age // 86400)} days ago)")
                roots.append(Root(key, EXPIRED, record, set(), f"last seen {int(age // 86400)} days ago"))
                continue
            kept = set(record.pinned) | _pinned_anywhere([e for e in entries if e.area is area])
            store.keep(key, record, kept, exact=True)
            roots.append(Root(key, FOREIGN, record, kept, f"lease ends in {int((lease - age) // 86400)} days"))
            continue
        roots.append(_verify_own_full(store, key, entries, record, now, finder))
    store.release_dropped()
    if not dry_run and not any(r.state == UNVERIFIABLE for r in roots):
        generations.drop_pool(cache)  # every root is pinned on its own by now: the stand-in goes
    if memo and not dry_run and area is not None:
        try:
            seen.save(area)
        except OSError:
            pass  # the memo only saves the next prune some reading
    return roots


def _verify_own(cache: Cache, entry: Entry, host_id: str, memo: RootMemo, clean: bool) -> Optional[Root]:
    """Check one of this host's environments without writing (bar what a killed writer left, if
    ``clean``): the common case (nothing changed since the last scan) takes the entry folder's
    pins and the record's header from ``memo`` if the folder is as it was when they were read,
    else opens the folder once, lists it once and reads the header. None when the full path must
    decide."""
    key = entry.key
    seen = memo.get(entry.area, key)
    if seen is not None:
        head, fp, have = seen
    else:
        try:
            with entry.open() as d:
                folder = os.fstat(d.fd)  # before reading: a change after it shows in the next look
                have, leftovers = manifest.pins_and_leftovers(d)
                if leftovers and clean:
                    manifest.clean_leftovers(d)  # what a killed writer left behind
                head, fp, record = manifest.read_header(d)
        except (OSError, RecordError):
            if clean:  # the full path reads it again: leave it clean for that too
                try:
                    with entry.open() as d:
                        manifest.clean_leftovers(d)
                except OSError:
                    pass
            return None
        if not leftovers:
            memo.put(key, folder, record, head, fp, have)
    if head.host_id != host_id:
        return None
    try:
        stamp = envscan.site_stamp(head.path, head.kind)
    except OSError:
        return None
    if manifest.stamp_holds(head, stamp, bool(have)):
        # no dist-info folder came or went since the last scan: its links are the pinned ones
        return Root(key, LIVE, head, have)
    try:
        dists = envscan.scan(head.path, head.kind, cache) if os.path.isdir(head.path) else {}
    except OSError:
        return None  # the full path decides (unverifiable, with the recorded pins)
    if not dists or manifest.fingerprint(dists) != fp:
        return None
    want = {d.archive for d in dists.values() if d.mode == envscan.SYMLINK and d.archive}
    if want != have:
        return None
    head.distributions = dists
    return Root(key, LIVE, head, want)


def _verify_own_full(
    store: _Store, key: str, entries: list[Entry], record: Record, now: float, finder: moves.Finder
) -> Root:
    cache = store.cache
    if record.kind != "cached" and not os.path.lexists(record.path):
        moved = finder.find(record.path, record.inode)
        if moved is not None:
            return _reroot(store, key, entries, record, moved)
        if not record.scanned and now - record.registered_at < PENDING_GRACE:
            return Root(key, PENDING, record, set(), "registered before uv created it")
        if not hostid.strong() and now - record.last_used_at <= DEFAULT_LEASE:
            kept = set(record.pinned) | _pinned_anywhere(entries)  # maybe another machine's: fail closed
            store.keep(key, record, kept)
            return Root(key, UNVERIFIABLE, record, kept, "this host has no machine id (set UV_SHIM_HOST_ID)")
    try:
        os.stat(record.path)
        exists = os.path.isdir(record.path)
        scanned_at = time.time()
        stamp = envscan.settled(envscan.site_stamp(record.path, record.kind), scanned_at) if exists else ""
        dists = envscan.scan(record.path, record.kind, cache) if exists else {}
    except FileNotFoundError:
        exists, dists, stamp = False, {}, ""
    except OSError as e:
        kept = set(record.pinned) | _pinned_anywhere(entries)
        store.keep(key, record, kept)
        return Root(key, UNVERIFIABLE, record, kept, f"{e.strerror or e}")
    if not exists or not dists:
        why = "environment no longer exists" if not exists else "links nothing from the cache"
        store.drop(entries, record, why)
        return Root(key, DEAD, record, set(), why)
    changed = record.distributions != dists or not record.scanned or record.site_stamp != stamp
    if changed:
        record.set_dists(dists)
        record.site_stamp = stamp
    kept = set(record.pinned)
    store.keep(key, record, kept, exact=True, rewrite=changed)
    return Root(key, LIVE, record, kept)


def _visible_here(record: Record) -> bool:
    """Another host's root whose folder this host sees with the device and inode it was recorded
    with (a volume mounted at the same path): never expired while that holds."""
    return bool(record.inode) and record.kind != "cached" and envscan.inode_of(record.path) == record.inode


def _reroot(store: _Store, key: str, entries: list[Entry], record: Record, moved: str) -> Root:
    """The environment was renamed or moved: record it at its new path (a new key), pins there
    first, then release the old key (logged as a move). It is the same environment only if it
    still links something it linked before."""
    from shim.record import entry_key

    new_path = os.path.realpath(moved)
    try:
        stamp = envscan.settled(envscan.site_stamp(new_path, record.kind), time.time())
        dists = envscan.scan(new_path, record.kind, store.cache)
    except OSError as e:
        kept = set(record.pinned) | _pinned_anywhere(entries)
        store.keep(key, record, kept)
        return Root(key, UNVERIFIABLE, record, kept, f"moved to {new_path}? {e.strerror or e}")
    if record.distributions and not set(dists).intersection(record.distributions):
        store.drop(entries, record, "environment no longer exists")
        return Root(key, DEAD, record, set(), "environment no longer exists")
    old_path = record.path
    released = copy.copy(record)  # logged at its old path
    new_key = entry_key(record.host_id, new_path)
    record.path = new_path
    record.set_dists(dists)
    record.site_stamp = stamp
    kept = set(record.pinned)
    store.keep(new_key, record, kept, exact=True, rewrite=True)
    store.drop(entries, released, f"moved to {new_path}")
    return Root(new_key, LIVE, record, kept, f"moved from {old_path}", moved_from=old_path)


def protected(roots: list[Root]) -> dict[str, list[Root]]:
    """Archive id -> the roots that keep it."""
    out: dict[str, list[Root]] = {}
    for root in roots:
        for aid in root.archives:
            out.setdefault(aid, []).append(root)
    return out
