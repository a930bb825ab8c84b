"""The record area in the sdists bucket of every uv generation that used this cache.

uv versions of different bucket generations (``sdists-v9`` for 0.7 to 0.12, ``sdists-v10``,
``sdists-v11``, ...) share caches all the time, and a prune by any of them deletes every bucket
that is not its own: the other generations' records and pins with them. Pins only protect against
a prune by a version whose sdists bucket holds them. So:

- each area lists the sdists buckets this cache has seen (``manifest.GENERATIONS``), and so does
  the host index (``shim.hostindex``);
- an install writes its record into the area of every generation seen, and its pins into that
  area's pool (``manifest.POOL``: one pin per archive, shared by all roots, so a second
  generation costs a few pins per install rather than one per distribution; ``mirror``). The
  pool only grows between prunes (fail closed); a prune through the shim under that generation
  replaces it by per-root pins (``liveness``), and a restore rebuilds it from the live pins;
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


MAX_GENERATIONS = 8  # a list planted in a shared cache cannot make every install write forever


def valid(name: str) -> bool:
    """``sdists-v<1 to 4 ASCII digits>``: what uv names its sdists buckets."""
    digits = name[len(SDISTS_PREFIX) :]
    return name.startswith(SDISTS_PREFIX) and 0 < len(digits) <= 4 and digits.isascii() and digits.isdigit()


def _parse(data: bytes) -> set[str]:
    out = set()
    for line in data[:4096].decode("utf-8", "replace").splitlines():
        name = line.strip()
        if valid(name):
            out.add(name)
    return out


def current(cache: Cache) -> str:
    return os.path.basename(cache.sdists)


def seen(cache: Cache, extra: Iterable[str] = ()) -> list[str]:
    """Every sdists bucket this cache has seen: the running uv's, those named in any surviving
    area's list, those on disk holding an area, and ``extra`` (the host index's memory)."""
    names = {n for n in extra if valid(n)}
    area = cache.area()
    if area is not None:
        names |= _listed(area)
    for other in cache.other_areas():
        with other:
            bucket = os.path.basename(os.path.dirname(other.path))
            if valid(bucket):
                names.add(bucket)
            names |= _listed(other)
    # the running uv's first, then the newest others, at most MAX_GENERATIONS in all
    others = sorted(names - {current(cache)}, key=lambda n: -int(n[len(SDISTS_PREFIX) :]))
    return [current(cache), *others[: MAX_GENERATIONS - 1]]


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
    """Our area in ``bucket`` exists and is complete (its generation list, written last by a
    restore, is there); an area a killed restore left half-written is restored again."""
    try:
        area = _area(cache, bucket, create=False)
    except OSError:
        return False
    if area is None:
        return False
    with area:
        return area.lexists(manifest.GENERATIONS)


def survey(cache: Cache, extra: Iterable[str] = ()) -> tuple[list[str], list[str]]:
    """(every generation seen, those whose area is there and complete)."""
    names = seen(cache, extra)
    return names, [n for n in names if area_exists(cache, n)]


def restore(cache: Cache, names: Iterable[str], survivors: list[str]) -> list[str]:
    """Rebuild the area of every generation in ``names`` that has no complete one (a prune by
    another generation removed it), from every surviving area (the current one first: its
    records win); the generations restored. One that cannot be written is skipped."""
    if not survivors:
        return []
    order = sorted(survivors, key=lambda b: b != current(cache))
    done = []
    for bucket in [b for b in names if b not in survivors]:
        try:
            dst = _area(cache, bucket, create=True)
            assert dst is not None
            with dst:
                for source in order:
                    src = _area(cache, source, create=False)
                    if src is not None:
                        with src:
                            copy_area(src, dst)
                gens = "".join(f"{n}\n" for n in sorted(set(names)))
                dst.write_atomic(manifest.GENERATIONS, gens.encode(), fsync=False)  # last: complete
        except OSError:
            continue
        done.append(bucket)
    return done


def copy_area(src: Dir, dst: Dir) -> int:
    """Copy into ``dst`` the pool of every archive any root of ``src`` pins (first, as pins always
    come before records), then every root's record that ``dst`` does not have yet. Records are
    written without fsync: a torn copy is an unusable record, replaced from another copy or a
    rescan. The caller writes the generation list last."""
    pool: set[str] = set()
    try:
        with src.sub(manifest.POOL) as p:
            pool.update(manifest.pins(p))
    except OSError:
        pass
    records: dict[str, bytes] = {}
    for key in src.listdir():
        if key.startswith("."):
            continue
        try:
            with src.sub(key) as s:
                records[key] = s.read(manifest.RECORD)
                pool.update(manifest.pins(s))
        except OSError:
            continue  # not a root folder, or unreadable: nothing to copy
    _pool_add(dst, pool)
    copied = 0
    for key, record in sorted(records.items()):
        with dst.sub(key, create=True, ours=True) as d:
            if not d.lexists(manifest.RECORD):
                d.write_atomic(manifest.RECORD, record, fsync=False)
                copied += 1
    return copied


def _pool_add(area: Dir, aids: Iterable[str]) -> None:
    with area.sub(manifest.POOL, create=True, ours=True) as pool:
        have = set(manifest.pins(pool))
        for aid in sorted(set(aids) - have):
            manifest.pin(pool, aid)


def mirror(cache: Cache, names: Iterable[str], key: str, record: bytes, new: set[str]) -> None:
    """Write one root into the area of every other generation seen: the archives it pins into
    the pool first, then its record (its bytes, not synced: a torn copy is an unusable record,
    replaced from the synced one). Pins it no longer needs stay in the pool until it is rebuilt."""
    for bucket in names:
        if bucket == current(cache):
            continue
        area = _area(cache, bucket, create=True)
        if area is None:
            continue
        with area:
            _pool_add(area, new)
            with area.sub(key, create=True, ours=True) as entry:
                entry.write_atomic(manifest.RECORD, record, fsync=False)


def mirrored(cache: Cache, names: Iterable[str], key: str, fp: Optional[str]) -> bool:
    """Whether every other generation's area holds this root's record with fingerprint ``fp``
    (the no-op path skips the mirror only then)."""
    for bucket in names:
        if bucket == current(cache):
            continue
        try:
            area = _area(cache, bucket, create=False)
            if area is None:
                return False
            with area:
                try:
                    entry = area.sub(key)
                except FileNotFoundError:
                    return False
                with entry:
                    copy = manifest.quick_header(entry)
                    if copy is None or copy[1] != fp:
                        return False
        except OSError:
            return False
    return True


def drop_pool(cache: Cache) -> None:
    """The current area's pool goes once every live root has its own pins here (a prune through
    the shim under this generation): it would keep archives nothing uses any more."""
    area = cache.area()
    if area is not None and area.lexists(manifest.POOL):
        area.remove_tree(manifest.POOL)


def forget(cache: Cache, names: Iterable[str], key: str) -> None:
    """Release one root in the area of every other generation seen."""
    for bucket in names:
        if bucket == current(cache):
            continue
        area = _area(cache, bucket, create=False)
        if area is not None:
            with area:
                manifest.remove(area, key)
