"""uv's references to archives chosen for eviction, set aside while the real prune runs.

Moved (never deleted) into ``<record area>/.evicting.<pid>/`` under names no uv version's prune
reads, with a journal written before anything moves: dropped once the prune succeeded, put back
if it failed or was killed (``recover``, at the next prune through the shim). Every step walks
from the cache's folder descriptor without following a symlink.
"""

from __future__ import annotations

import os

from shim import manifest
from shim.cache import POINTERS, Cache, archive_id_of
from shim.manifest import HOLD_PREFIX, held_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from shim.evict import Eviction

_JOURNAL = "journal"


class Held:
    """uv's references to the evicted archives, moved aside into our own area while the real
    prune runs: dropped once it succeeded, put back if it failed or was killed (``restore``).

    Held names (``manifest.held_name``) are names no uv version's prune reads as a reference. The journal,
    written before anything moves, says where each came from, so a prune through the shim that
    finds the hold of a process that died puts it back (``recover``)."""

    def __init__(self, cache: Cache, name: str) -> None:
        self.cache = cache
        self.name = name

    def finish(self) -> None:
        area = self.cache.area()
        if area is not None:
            area.remove_tree(self.name)

    def restore(self) -> int:
        return _restore(self.cache, self.name)


def _references(cache: Cache, ev: Eviction) -> list[tuple[list[str], list[str]]]:
    """uv's references to the chosen archives: (folder parts below the cache, names in it)."""
    plan: list[tuple[list[str], list[str]]] = []
    for aid in ev.chosen:
        for link in ev.refs.get(aid, []):
            parts = os.path.relpath(link, cache.path).split(os.sep)
            names = [parts[-1]]
            if link.startswith(cache.wheels + os.sep):
                names += [parts[-1] + ext for ext in POINTERS]
            plan.append((parts[:-1], names))
    return plan


def reference_paths(cache: Cache, ev: Eviction) -> list[str]:
    """The files ``apply`` sets aside (and a successful prune then drops), as paths."""
    return [
        os.path.join(cache.path, *folder, n)
        for folder, names in _references(cache, ev)
        for n in names
        if os.path.lexists(os.path.join(cache.path, *folder, n))
    ]


def apply(cache: Cache, ev: Eviction) -> Held:
    """Take uv's references to the chosen archives out of its buckets (never the archives
    themselves): their links in the wheels and sdists buckets, with the pointer files beside
    wheels-bucket links, moved into a hold in our area. Every step walks from the cache's folder
    descriptor without following a symlink; a reference reached through one is left alone."""
    root = cache.dir()
    area = cache.area(create=True)
    assert area is not None
    name = f"{HOLD_PREFIX}{os.getpid()}"
    area.remove_tree(name)  # a leftover of an earlier process with our pid
    plan = _references(cache, ev)
    lines = []
    for i, (folder, names) in enumerate(plan):
        lines.append("\t".join([f"{held_name(i, j)}={'/'.join(folder + [n])}" for j, n in enumerate(names)]))
    with area.sub(name, create=True, ours=True) as hold:
        hold.write_atomic(_JOURNAL, ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape"))
        for i, (folder, names) in enumerate(plan):
            try:
                parent = root.walk_to(folder)
            except OSError:
                continue  # gone, or a symlink on the way: not ours to follow
            with parent:
                if not parent.is_symlink(names[0]):
                    continue
                for j, n in enumerate(names):
                    try:
                        parent.replace(n, held_name(i, j), dst_dir=hold)
                    except FileNotFoundError:
                        continue
    return Held(cache, name)


def _restore(cache: Cache, name: str) -> int:
    """Put held references back where they were, if their archive still exists and nothing took
    their place; drop the rest and the hold. Returns how many links went back."""
    area = cache.area()
    if area is None:
        return 0
    root = cache.dir()
    restored = 0
    try:
        hold = area.sub(name)
    except OSError:
        return 0
    with hold:
        try:
            journal = hold.read(_JOURNAL).decode("utf-8", "surrogateescape").splitlines()
        except OSError:
            journal = []
        for line in journal:
            items = [item.partition("=")[::2] for item in line.split("\t") if "=" in item]
            if not items or not hold.is_symlink(items[0][0]):
                continue
            aid = archive_id_of(hold.readlink(items[0][0]))
            if not (aid and os.path.isdir(os.path.join(cache.archives, aid))):
                continue  # its archive went: the reference would only dangle
            folder = items[0][1].split("/")[:-1]
            try:
                parent = root.walk_to(folder, create=True)
            except OSError:
                continue
            with parent:
                for held, rel in items:
                    dest = rel.split("/")[-1]
                    if hold.lexists(held) and not parent.lexists(dest):
                        hold.replace(held, dest, dst_dir=parent)
                        restored += held == items[0][0]
    area.remove_tree(name)
    return restored


def recover(cache: Cache) -> int:
    """Put back the references held by a prune through the shim that died before it finished."""
    area = cache.area()
    if area is None:
        return 0
    restored = 0
    for name in area.listdir():
        pid = name[len(HOLD_PREFIX) :]
        if name.startswith(HOLD_PREFIX) and pid.isdigit() and (int(pid) == os.getpid() or not manifest.alive(int(pid))):
            restored += _restore(cache, name)
    return restored
