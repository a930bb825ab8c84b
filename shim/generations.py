"""The record area in the sdists bucket of every uv generation that used this cache.

uv versions of different bucket generations (``sdists-v9`` for 0.7 to 0.12, ``sdists-v10``,
``sdists-v11``, ...) share caches all the time, and a prune by any of them deletes every bucket
that is not its own: the other generations' records and pins with them. Pins only protect against
a prune by a version whose sdists bucket holds them. So:

- each area lists the sdists buckets this cache has seen (``manifest.GENERATIONS``), and so does
  the host index (``shim.hostindex``);
- an install writes its pins and record into the area of every generation seen (``mirror``);
- the next shim invocation on the cache (and every prune through the shim, right after uv's
  prune) rebuilds the area of any seen generation that a prune removed (``restore``), from the
  newest surviving copy; buckets of generations the cache has never seen are never created.
"""

from __future__ import annotations

import os

from shim import manifest
from shim.cache import SDISTS_PREFIX, SHIM_DIR
from shim.confined import Dir

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Optional

    from shim.cache import Cache
    from shim.record import Record


def _parse(data: bytes) -> set[str]:
    out = set()
    for line in data.decode("utf-8", "replace").splitlines():
        name = line.strip()
        if name.startswith(SDISTS_PREFIX) and os.sep not in name and name[len(SDISTS_PREFIX) :].isdigit():
            out.add(name)
    return out


def current(cache: Cache) -> str:
    return os.path.basename(cache.sdists)


def seen(cache: Cache, extra: Iterable[str] = ()) -> list[str]:
    """Every sdists bucket this cache has seen: the running uv's, those named in any surviving
    area's list, those on disk holding an area, and ``extra`` (the host index's memory)."""
    names = {current(cache), *extra}
    area = cache.area()
    if area is not None:
        names |= _listed(area)
    for other in cache.other_areas():
        with other:
            names.add(os.path.basename(os.path.dirname(other.path)))
            names |= _listed(other)
    return sorted(names)


def _listed(area: Dir) -> set[str]:
    try:
        return _parse(area.read(manifest.GENERATIONS))
    except OSError:
        return set()


def _area(cache: Cache, bucket: str, create: bool) -> Optional[Dir]:
    """Our folder in ``bucket`` (made, with the bucket, if ``create``); None if absent."""
    try:
        with cache.dir().sub(bucket, create=create) as b:
            return b.sub(SHIM_DIR, create=create, ours=True)
    except FileNotFoundError:
        return None


def note(cache: Cache, names: Iterable[str]) -> None:
    """Make the current area's list name every generation in ``names``."""
    area = cache.area(create=True)
    assert area is not None
    want = set(names)
    try:
        have = _parse(area.read(manifest.GENERATIONS))
    except FileNotFoundError:
        have = set()
    if not want <= have:
        area.write_atomic(manifest.GENERATIONS, "".join(f"{n}\n" for n in sorted(have | want)).encode())


def area_exists(cache: Cache, bucket: str) -> bool:
    area = _area(cache, bucket, create=False)
    if area is None:
        return False
    area.close()
    return True


def restore(cache: Cache, names: Iterable[str], survivors: list[str]) -> list[str]:
    """Rebuild the area of every generation in ``names`` that has none (a prune by another
    generation removed it), copying the first surviving area (the current one if it survived);
    the generations restored."""
    if not survivors:
        return []
    source = current(cache) if current(cache) in survivors else survivors[0]
    missing = [b for b in names if b not in survivors]
    if not missing:
        return []
    src = _area(cache, source, create=False)
    assert src is not None
    with src:
        for bucket in missing:
            dst = _area(cache, bucket, create=True)
            assert dst is not None
            with dst:
                copy_area(src, dst)
    return missing


def copy_area(src: Dir, dst: Dir) -> int:
    """Copy every root (record and pins) and the generation list from ``src`` to ``dst``; roots
    already in ``dst`` are brought up to date. Records are written without fsync: a torn copy is
    an unusable record, which the next reader replaces from another copy or a rescan."""
    copied = 0
    try:
        data = src.read(manifest.GENERATIONS)
        dst.write_atomic(manifest.GENERATIONS, data, fsync=False)
    except FileNotFoundError:
        pass
    for key in src.listdir():
        if key.startswith("."):
            continue
        try:
            with src.sub(key) as s:
                record = s.read(manifest.RECORD)
                aids = list(manifest.pins(s))
        except OSError:
            continue  # not a root folder, or unreadable: nothing to copy
        with dst.sub(key, create=True, ours=True) as d:
            for aid in aids:
                manifest.pin(d, aid)  # pins first, as everywhere
            d.write_atomic(manifest.RECORD, record, fsync=False)
        copied += 1
    return copied


def mirror(cache: Cache, names: Iterable[str], key: str, record: Record, new: set[str], old: set[str]) -> None:
    """Write one root into the area of every other generation seen: pins, record, then the pins
    it no longer needs (the order of ``Book.update``)."""
    for bucket in names:
        if bucket == current(cache):
            continue
        area = _area(cache, bucket, create=True)
        assert area is not None
        with area, area.sub(key, create=True, ours=True) as entry:
            for aid in sorted(new):
                manifest.pin(entry, aid)
            manifest.save(entry, record)
            for aid in sorted(old - new):
                manifest.unpin(entry, aid)


def forget(cache: Cache, names: Iterable[str], key: str) -> None:
    """Release one root in the area of every other generation seen."""
    for bucket in names:
        if bucket == current(cache):
            continue
        area = _area(cache, bucket, create=False)
        if area is not None:
            with area:
                manifest.remove(area, key)
