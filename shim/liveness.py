"""Liveness of roots at prune time: re-verify, drop the dead, pin the live in the pruning uv's bucket.

Runs under uv's exclusive cache lock. Every root of this host is checked on disk (does the
environment exist, which archives does it link now); roots of other hosts and containers cannot
be checked and are kept until their lease ends. Whatever cannot be verified keeps its pins:
fail closed for deletion.
"""

from __future__ import annotations

import os
import time

from shim import envscan, manifest
from shim.cache import Cache
from shim.confined import Dir
from shim.manifest import Record, RecordError, pin, pins, unpin

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional

DEFAULT_LEASE = 30 * 86400.0

LIVE = "live"  # this host, exists, scanned now
DEAD = "dead"  # this host, environment gone: dropped with its pins
FOREIGN = "foreign"  # another host: kept until its lease ends
EXPIRED = "expired"  # another host, lease ended: dropped
UNVERIFIABLE = "unverifiable"  # cannot read the record or the environment: pins kept


class Root:
    """One root as the prune sees it."""

    def __init__(self, key: str, state: str, record: Optional[Record], archives: set[str], reason: str = "") -> None:
        self.key = key
        self.state = state
        self.record = record
        self.archives = archives  # archive ids protected by a pin in the pruning uv's bucket
        self.reason = reason

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
        if best is None or rec.last_used > best.last_used:
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
        self.dropped: list[Entry] = []

    def drop(self, entries: list[Entry]) -> None:
        if self.write:
            self.dropped.extend(entries)

    def release_dropped(self) -> None:
        for entry in self.dropped:
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
    cache: Cache, host_id: str, lease: float = DEFAULT_LEASE, now: Optional[float] = None, dry_run: bool = False
) -> list[Root]:
    """Bring every root up to date in ``cache``'s buckets; return what was decided for each.

    ``dry_run`` decides the same without writing anything (``uv cache prune --dry-run``)."""
    now = time.time() if now is None else now
    store = _Store(cache, write=not dry_run)
    roots: list[Root] = []
    area = cache.area()
    if not dry_run and area is not None:
        manifest.clean_leftovers(area)  # memo files a killed prune was writing
    for key, entries in sorted(entries_by_key(cache).items()):
        if not dry_run:
            for entry in entries:
                try:
                    with entry.open() as d:
                        manifest.clean_leftovers(d)  # what a killed writer left behind
                except OSError:
                    pass
        if len(entries) == 1 and entries[0].area is area:
            fast = _verify_own(cache, entries[0], host_id)
            if fast is not None:
                roots.append(fast)
                continue
        record, error = _first_record(entries)
        if record is None:
            kept = _pinned_anywhere(entries)
            if not kept and not _has_record(entries[0]):
                store.drop(entries)  # an empty leftover (a crash before the first write)
                continue
            store.keep(key, None, kept)
            roots.append(Root(key, UNVERIFIABLE, None, kept, error))
            continue
        if record.host_id != host_id:
            age = now - record.last_used.timestamp()
            if age > lease:
                store.drop(entries)
                roots.append(Root(key, EXPIRED, record, set(), f"last seen {int(age // 86400)} days ago"))
                continue
            kept = set(record.pinned) | _pinned_anywhere([e for e in entries if e.area is area])
            store.keep(key, record, kept, exact=True)
            roots.append(Root(key, FOREIGN, record, kept, f"lease ends in {int((lease - age) // 86400)} days"))
            continue
        roots.append(_verify_own_full(store, key, entries, record))
    store.release_dropped()
    return roots


def _verify_own(cache: Cache, entry: Entry, host_id: str) -> Optional[Root]:
    """Check one of this host's environments without writing: the common case (nothing changed
    since the last scan) reads only the record's header and lists the entry folder.
    None when the full path must decide."""
    key = entry.key
    try:
        with entry.open() as d:
            head, fp = manifest.load_header(d)
            have = set(pins(d))
    except (OSError, RecordError):
        return None
    if head.host_id != host_id:
        return None
    try:
        stamp = envscan.site_stamp(head.path, head.kind)
    except OSError:
        return None
    if stamp and "?" not in stamp and stamp == head.site_stamp:
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


def _verify_own_full(store: _Store, key: str, entries: list[Entry], record: Record) -> Root:
    cache = store.cache
    try:
        os.stat(record.path)
        exists = os.path.isdir(record.path)
        dists = envscan.scan(record.path, record.kind, cache) if exists else {}
        stamp = envscan.site_stamp(record.path, record.kind) if exists else ""
    except FileNotFoundError:
        exists, dists, stamp = False, {}, ""
    except OSError as e:
        kept = set(record.pinned) | _pinned_anywhere(entries)
        store.keep(key, record, kept)
        return Root(key, UNVERIFIABLE, record, kept, f"{e.strerror or e}")
    if not exists or not dists:
        store.drop(entries)
        return Root(
            key, DEAD, record, set(), "environment no longer exists" if not exists else "links nothing from the cache"
        )
    changed = record.distributions != dists or not record.scanned or record.site_stamp != stamp
    if changed:
        record.set_dists(dists)
        record.site_stamp = stamp
    kept = set(record.pinned)
    store.keep(key, record, kept, exact=True, rewrite=changed)
    return Root(key, LIVE, record, kept)


def protected(roots: list[Root]) -> dict[str, list[Root]]:
    """Archive id -> the roots that keep it."""
    out: dict[str, list[Root]] = {}
    for root in roots:
        for aid in root.archives:
            out.setdefault(aid, []).append(root)
    return out
