"""Reclaim what nothing uses: ``--unused``, ``--max-age``, ``--max-size``, ``--keep-recent``.

The shim decides, uv deletes: a chosen archive loses uv's own references to it (its wheels-bucket
link with the ``.http``/``.rev`` pointer beside it, the sdists-bucket link of a built wheel: set
aside by ``shim.holds``), and the real ``uv cache prune`` that follows deletes it. The policy
itself (options, variables, config file): ``shim.policy``. Afterwards uv installs the package again as
if it had never been cached (registry wheels are downloaded, built wheels re-unzipped from the
kept ``.whl``, local wheels unpacked again).

Never chosen: an archive a live environment links by symlink (it is pinned), or one hardlinked
into an environment (removing it frees nothing while that environment lives; reported).
"""

from __future__ import annotations

import os
import time

from shim import liveness
from shim.cache import Cache, archive_id_of
from shim.manifest import LAST_USE

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from collections.abc import Set as AbstractSet
    from typing import Optional

    from shim.policy import Policy
    from shim.sizes import Footprint

# -- what the cache holds: one walk ---------------------------------------------------------


class Survey:
    """One look at the cache (``shim.sizes.Footprint``): its size, each archive's size and
    freeable bytes, the archives environments hardlink, and every link in uv's wheels and sdists
    buckets (``links``: path -> what it says) and by the archive it names (``refs``)."""

    def __init__(self, cache: Cache, write: bool = True) -> None:
        from shim.sizes import Footprint

        self.refs: dict[str, list[str]] = {}
        self.links: dict[str, str] = {}
        buckets = (cache.wheels + os.sep, cache.sdists + os.sep)
        manifest = cache.manifest + os.sep

        def on_link(path: str) -> None:
            d = os.path.dirname(path) + os.sep
            if d.startswith(buckets) and not d.startswith(manifest):
                try:
                    self.links[path] = target = os.readlink(path)
                except OSError:
                    return
                aid = archive_id_of(target)
                if aid:
                    self.refs.setdefault(aid, []).append(path)

        self.footprint = fp = Footprint(cache, on_link, write)
        self.total = fp.total
        self.hardlinked = set(fp.hardlinked)
        self.sizes = fp.archive_bytes()
        self.freeable = {aid: free for aid, (_size, free) in fp.archives.items() if aid not in fp.hardlinked}


# -- last use ------------------------------------------------------------------------------


def _read_memo(cache: Cache) -> dict[str, float]:
    memo: dict[str, float] = {}
    area = cache.area()
    if area is None:
        return memo
    try:
        for line in area.read(LAST_USE).decode("ascii", "replace").splitlines():
            aid, _, ts = line.partition(" ")
            value = float(ts)
            if 0 <= value < 1e11:  # a memo in a shared cache: only plausible times
                memo[aid] = value
    except (OSError, ValueError):
        pass
    return memo


def remember_last_use(
    cache: Cache, roots: list[liveness.Root], write: bool = True, present: Optional[Iterable[str]] = None
) -> dict[str, float]:
    """Merge what the roots say (each archive: the newest ``last_used`` of the roots that name it)
    into the last-use memo (``manifest.LAST_USE``), so it outlives roots that are dropped. Every prune
    through the shim does this, with or without a policy. ``present``: the archive bucket's names,
    if the caller has just listed it (only archives still there are written)."""
    memo = _read_memo(cache)
    changed = False
    for r in roots:
        if r.record is None:
            continue
        ts = int(r.record.last_used_at)
        # a root verified from its header alone: its pins are its symlinked archives; read its
        # distributions only when it also links archives another way (hardlink)
        dists = r.record.distributions or (r.distributions(cache) if set(r.record.link_modes) - {"symlink"} else {})
        ids = set(r.archives) | {d.archive for d in dists.values() if d.archive}
        for aid in ids:
            if ts > memo.get(aid, 0):
                memo[aid] = ts
                changed = True
    if write:
        try:
            there = set(os.listdir(cache.archives) if present is None else present)
        except OSError:
            there = set()
        if not changed and there.issuperset(memo):
            return memo  # nothing new: no write
        text = "".join(f"{a} {int(t)}\n" for a, t in sorted(memo.items()) if a in there)
        try:
            cache.area(create=True).write_atomic(LAST_USE, text.encode("ascii"))  # type: ignore[union-attr]
        except OSError:
            pass  # only costs precision: creation time stands in
    return memo


def last_use(cache: Cache, memo: dict[str, float], archives: Sequence[str]) -> dict[str, float]:
    """When each archive was last linked or used through the shim; never seen: its creation time."""
    out = {}
    for aid in archives:
        if aid in memo:
            out[aid] = memo[aid]
        else:
            try:
                out[aid] = os.stat(os.path.join(cache.archives, aid)).st_mtime
            except OSError:
                out[aid] = 0.0
    return out


# -- choose and apply ---------------------------------------------------------------------


class Eviction:
    def __init__(self) -> None:
        self.chosen: list[str] = []
        self.hardlinked: list[str] = []  # would have been chosen: frees nothing, skipped
        self.recent: list[str] = []  # would have been chosen: used within --keep-recent
        self.freed = 0
        self.size_before = 0
        self.refs: dict[str, list[str]] = {}
        self.budget: Optional[int] = None  # --max-size
        self.size_after = 0  # what the cache comes to once uv's prune and the eviction are done
        self.held: list[tuple[str, int]] = []  # (environment, bytes of the archives it keeps), largest first
        self.held_bytes = 0  # bytes of every archive live environments keep (pinned or hardlinked), once
        self.other_bytes = 0  # what is left that is no archive (uv's indexes, built wheels, records)
        self.footprint: Optional[Footprint] = None  # the cache as it was when this was decided
        self.released = 0  # bytes of the records a real prune releases first (a dry run's estimate)


def keepers(cache: Cache, roots: list[liveness.Root], hardlinked: AbstractSet[str]) -> dict[str, set[str]]:
    """Archive id -> the environments that keep it in the cache: pinned (live, other hosts',
    unverifiable), or among ``hardlinked`` and linked so by a recorded environment (uv-shim never
    evicts those)."""
    out = {aid: {r.path for r in rs} for aid, rs in liveness.protected(roots).items()}
    for r in roots:
        if r.record is None or r.state in (liveness.DEAD, liveness.EXPIRED):
            continue
        if set(r.record.link_modes) - {"symlink"}:
            for d in (r.record.distributions or r.distributions(cache)).values():
                if d.archive in hardlinked:
                    out.setdefault(d.archive, set()).add(r.path)
    return out


def released_bytes(cache: Cache, roots: list[liveness.Root]) -> int:
    """What the records of dead and expired roots occupy: a prune releases them before it
    measures anything, so a dry run (which releases nothing) takes them off its figures."""
    from shim.sizes import tree_bytes

    gone = [r for r in roots if r.state in (liveness.DEAD, liveness.EXPIRED)]
    return sum(tree_bytes(cache.entry_dir(r.key))[0] for r in gone)


def choose(
    cache: Cache,
    roots: list[liveness.Root],
    policy: Policy,
    now: Optional[float] = None,
    write: bool = True,
    ci: bool = False,
) -> Eviction:
    """The archives ``policy`` evicts, least recently used first. ``--max-size`` counts the whole
    cache as ``shim.sizes`` measures it, less what uv's own prune (``ci`` or not) removes anyway."""
    from shim import plan as planner

    now = time.time() if now is None else now
    memo = remember_last_use(cache, roots, write)  # first: what it writes counts in the survey
    survey = Survey(cache, write)
    ev = Eviction()
    ev.released = 0 if write else released_bytes(cache, roots)
    ev.footprint = survey.footprint
    ev.size_before = survey.total
    ev.refs = survey.refs
    protected = liveness.protected(roots)
    archives = survey.footprint.ids  # the survey's listing of the archive bucket, a moment ago
    used = last_use(cache, memo, archives)
    candidates = []
    for aid in archives:
        if aid in protected or aid in survey.footprint.cached_envs:
            continue  # pinned, or a cached environment (uv's prune handles those)
        candidates.append(aid)
    candidates.sort(key=lambda a: (used.get(a, 0), a))  # least recently used first

    def eligible(aid: str) -> bool:
        if aid in survey.hardlinked:
            ev.hardlinked.append(aid)
            return False
        if policy.keep_recent is not None and now - used.get(aid, 0) < policy.keep_recent:
            ev.recent.append(aid)
            return False
        return True

    chosen: set[str] = set()
    for aid in candidates:
        if policy.unused or (policy.max_age is not None and now - used.get(aid, 0) > policy.max_age):
            if eligible(aid):
                chosen.add(aid)
    going: set[str] = set()  # what uv's prune removes with no eviction at all
    size = survey.total - ev.released
    if policy.reclaim:  # min-free: the cache must shrink by that much
        target = max(0, survey.total - policy.reclaim)
        policy.max_size = target if policy.max_size is None else min(policy.max_size, target)
    if policy.max_size is not None:
        base = planner.plan_prune(cache, set(protected), ci=ci, footprint=survey.footprint, links=survey.links)
        going = set(base.archives)
        size -= base.shrink + sum(survey.freeable.get(a, 0) for a in chosen - going)
        for aid in candidates:
            if size <= policy.max_size:
                break
            if aid in chosen or aid in going or aid in ev.hardlinked or aid in ev.recent:
                continue
            if eligible(aid):
                chosen.add(aid)
                size -= survey.freeable.get(aid, 0)  # not its size: files it shares with others stay
    ev.chosen = [a for a in candidates if a in chosen]
    ev.freed = sum(survey.freeable.get(a, 0) for a in ev.chosen)
    ev.size_after = size if policy.max_size is not None else survey.total - ev.freed
    if policy.max_size is not None:
        ev.budget = int(policy.max_size)
        keep = keepers(cache, roots, survey.hardlinked)
        held: dict[str, int] = {}  # environment -> bytes of the archives it keeps
        for aid, paths in keep.items():
            for path in paths:
                held[path] = held.get(path, 0) + survey.sizes.get(aid, 0)
        ev.held = sorted(held.items(), key=lambda kv: (-kv[1], kv[0]))
        ev.held_bytes = sum(survey.sizes.get(a, 0) for a in set(keep) | survey.hardlinked)
        remaining = sum(size for aid, size in survey.sizes.items() if aid not in chosen and aid not in going)
        ev.other_bytes = max(0, ev.size_after - remaining)
    ev.hardlinked = sorted(set(ev.hardlinked))
    ev.recent = sorted(set(ev.recent))
    return ev


_JOURNAL = "journal"
