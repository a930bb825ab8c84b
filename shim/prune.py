"""``uv cache prune`` through the shim: verify roots under uv's lock, then let uv delete.

Order: the real uv checks the arguments; take uv's cache lock exclusively (unless ``--force``);
re-verify every root of this host, pin the live, release the dead, keep other hosts' roots until
their lease ends; choose and set aside what a policy evicts; run the real ``uv cache prune``; put
back what was set aside if it failed; report what was kept and why. ``--dry-run`` decides the same
without writing and models uv's prune (``shim.plan``).
"""

from __future__ import annotations

import os

from shim import evict, holds, hostid, liveness, realuv, report, sizes, uvargs, uvfeatures
from shim.cache import Cache
from shim.cachecmd import (
    error,
    kept,
    kept_fact,
    lease_seconds,
    locked_verify,
    run_locked,
    setup,
    summarize,
)
from shim.manifest import LAST_PRUNE
from shim.policy import Policy, PolicyError, policy_from

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn, Optional

    from shim.locks import ExclusiveLock
    from shim.plan import Plan


class PruneResult(report.Result):
    """What a prune through the shim removed and kept, or (``dry``) would: one shape for the
    text and the ``--json`` document. Removed: archives (count, bytes), other cache entries
    (files, bytes); kept: archives (count, bytes, environments). Sizes as ``shim.sizes`` defines
    them; a real prune's are measured before and after, a dry run's predicted by ``shim.plan``."""

    def __init__(
        self,
        cache: Cache,
        dry: bool,
        ci: bool,
        archives: list[dict[str, Any]],
        archive_bytes: int,
        other_files: int,
        other_bytes: int,
        kept: dict[str, Any],
        size_before: Optional[int],
        size_after: Optional[int],
        roots: list[liveness.Root],
        ev: Optional[evict.Eviction] = None,
        labels: Optional[dict[str, str]] = None,
        plan: Optional[Plan] = None,
        keepers: Optional[dict[str, list[str]]] = None,
    ) -> None:
        self.cache, self.dry, self.ci, self.archives = cache, dry, ci, archives
        self.archive_bytes, self.other_files, self.other_bytes = archive_bytes, other_files, other_bytes
        self.kept, self.size_before, self.size_after, self.roots = kept, size_before, size_after, roots
        self.ev, self.labels, self.plan, self.keepers = ev, labels or {}, plan, keepers or {}

    def doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "cache": self.cache.path,
            "uv_version": self.cache.build.version,
            "dry_run": self.dry,
            "ci": self.ci,
            "removed": {
                "archives": {"count": len(self.archives), "bytes": self.archive_bytes, "items": self.archives},
                "other": {"files": self.other_files, "bytes": self.other_bytes},
                "bytes": self.archive_bytes + self.other_bytes,
            },
            "kept": dict(self.kept),
            "cache_bytes_before": self.size_before,
            "cache_bytes_after": self.size_after,
            "environments": [
                {"path": r.path, "state": r.state, "reason": r.reason, "archives": len(r.archives)} for r in self.roots
            ],
        }
        if self.plan is not None:
            p = self.plan
            doc["removed"]["other"].update(
                revisions=p.revisions, stale=p.stale, environments=p.environments, ci=p.ci, files_bucket=p.swept
            )
            doc["kept"]["items"] = [
                {"id": a, "what": self.labels[a], "environments": envs} for a, envs in self.keepers.items()
            ]
            doc["kept"]["referenced_by_uv"] = len(p.kept_by_uv)
        if self.ev is not None:
            ev = self.ev
            doc["evict"] = {
                "archives": [{"id": a, "what": self.labels.get(a, a)} for a in ev.chosen],
                "skipped_hardlinked": ev.hardlinked,
                "kept_recent": ev.recent,
                "budget_bytes": ev.budget,
                "held_by_live_environments": [{"path": p, "bytes": b} for p, b in ev.held],
                "held_bytes": ev.held_bytes,
                "other_bytes": ev.other_bytes,
            }
        return doc

    def text(self) -> str:
        if self.plan is None:
            return ""
        p, labels, rel = self.plan, self.labels, lambda path: os.path.relpath(path, self.cache.path)
        lines = [f"Would remove stale sdist revision: {rel(path)}" for path in p.revisions]
        lines += [f"Would remove stale cache entry: {os.path.basename(path)}" for path in p.stale]
        lines += [f"Would remove cached environment: {rel(path)}" for path in p.environments]
        lines += [f"Would remove (--ci): {rel(path)}" for path in p.ci]
        lines += [f"Would remove archive: {a['what']} ({a['id']})" for a in self.archives]
        for aid, envs in self.keepers.items():
            more = f" and {len(envs) - 1} more" if len(envs) > 1 else ""
            lines.append(f"Keep archive: {labels[aid]} ({aid}), used by {envs[0]}{more}")
        return "".join(line + "\n" for line in lines)

    def facts(self) -> list[str]:
        would = self.dry
        total = self.archive_bytes + self.other_bytes
        if self.archives or self.other_files or total:
            parts = []
            if self.archives:
                parts.append(
                    f"{report.plural(len(self.archives), 'archive')} ({report.human_size(self.archive_bytes)})"
                )
            if self.other_files:
                parts.append(
                    f"{report.plural(self.other_files, 'other cache file')} ({report.human_size(self.other_bytes)})"
                )
            elif self.other_bytes:
                parts.append(f"emptied folders ({report.human_size(self.other_bytes)})")
            verb = "Would free" if would else "Freed"
            facts = [f"{verb} {report.human_size(total)}: " + " and ".join(parts)]
        else:
            facts = ["Would free nothing: no unused entries found" if would else "Freed nothing"]
        if self.ev is not None:
            facts += eviction_facts(self.ev, self.size_after, would)
        if self.kept["archives"]:
            facts.append(kept_fact(self.kept, would))
        return facts


def _labelled(cache: Cache, ids: list[str], fp: sizes.Footprint) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Archives as the report lists them (id, name==version, bytes), and their labels."""
    from shim import plan as planner

    labels = {aid: planner.archive_label(cache, aid, fp.dist_infos.get(aid)) for aid in ids}
    items = [
        {"id": a, "what": labels[a], "bytes": fp.archives.get(a, (0, 0))[0]}
        for a in sorted(ids, key=lambda a: (labels[a], a))
    ]
    return items, labels


def dry_run(
    cache: Cache, inv: uvargs.Invocation, out: report.Out, as_json: bool, policy: Optional[Policy] = None
) -> NoReturn:
    """``uv cache prune --dry-run [--ci] [--json]``: what the real prune would remove and keep.

    Decides exactly as a prune through the shim would (roots verified, without writing), then
    models uv's own prune on the result (``shim.plan``). Takes no lock and changes nothing.
    """
    from shim import plan as planner

    if not as_json:
        out.fact(f"Pruning cache at: {cache.path} (dry run: nothing is removed)")
    try:
        roots = liveness.verify(cache, hostid.identity()[1], lease_seconds(os.environ), dry_run=True, memo=True)
    except realuv.ShimError as e:
        error(str(e))
    protected = liveness.protected(roots)
    ci = inv.has("--ci")
    ev = evict.choose(cache, roots, policy, write=False, ci=ci) if policy is not None and policy.active else None
    fp = ev.footprint if ev is not None and ev.footprint is not None else sizes.Footprint(cache, write=False)
    p = planner.plan_prune(
        cache,
        set(protected),
        ci=ci,
        evicted=set(ev.chosen) if ev else frozenset(),
        held=holds.reference_paths(cache, ev) if ev else (),
        footprint=fp,
    )
    gone = set(p.archives)
    keepers = {
        a: sorted({r.path for r in protected[a]}) for a in sorted(protected) if a in fp.archives and a not in gone
    }
    items, labels = _labelled(cache, sorted(gone | set(keepers) | set(ev.chosen if ev else ())), fp)
    items = [i for i in items if i["id"] in gone]
    k = kept(cache, roots, fp.archive_bytes(), protected, fp.ids)
    released = ev.released if ev is not None else evict.released_bytes(cache, roots)
    result = PruneResult(
        cache, True, ci, items, p.archive_bytes, p.other_files, p.other_bytes, k, fp.total,
        fp.total - released - p.shrink,
        roots, ev, labels, p, keepers,
    )  # fmt: skip
    realuv.mirror_exit(report.render(result, as_json, out))


def run(real: realuv.RealUv, argv0: str, exec_path: str, args: list[str], inv: uvargs.Invocation) -> NoReturn:
    """``uv cache prune [--ci] [--force] [--unused] [--max-age D] [--max-size S] [--keep-recent D]
    [--dry-run] [--json]``."""
    quiet = inv.has("-q", "--quiet")
    try:
        policy, args = policy_from(args, os.environ, warn=None if quiet else report.Out().warn)
    except PolicyError as e:
        error(str(e))
    as_json = "--json" in args
    args = [a for a in args if a != "--json"]
    dry = "--dry-run" in args
    args = [a for a in args if a != "--dry-run"]
    cache, out = setup(real, inv, argv0, exec_path, args)
    if dry:
        dry_run(cache, inv, out, as_json, policy)
    lock, roots = locked_verify(cache, inv, out, os.environ, memo=True)  # uv deletes: see shim.rootmemo
    try:
        code, result = prune_locked(
            cache, lock, roots, policy, inv.has("--ci"), exec_path, argv0, args, out, measure=as_json or not out.quiet
        )
    except OSError as e:
        error(f"cannot evict from {cache.path}: {e.strerror} ({e.filename}); nothing was removed")
    if result is not None:
        report.render(result, as_json, out)
    if code == 0:
        summarize(out, roots, cache, counted=result is not None)
    realuv.mirror_exit(code)


def prune_locked(
    cache: Cache,
    lock: Optional[ExclusiveLock],
    roots: list[liveness.Root],
    policy: Policy,
    ci: bool,
    exec_path: str,
    argv0: str,
    args: list[str],
    out: report.Out,
    measure: bool = True,
) -> tuple[int, Optional[PruneResult]]:
    """With uv's lock held and ``roots`` verified under it: choose what ``policy`` evicts, set
    uv's references to it aside, run the real prune (which releases ``lock``), then finish or put
    back, restore other generations' records and measure. (uv's exit code, the report or None.)
    An OSError before uv runs has changed nothing and released the lock."""
    ev = held = before = protected = None
    measure = measure or policy.active
    try:
        if holds.recover(cache):
            out.fact("Put back uv's references that an interrupted prune through uv-shim had set aside")
        if not policy.active:
            # without --ci no uv version's prune touches the wheels bucket (and without a policy
            # the shim sets nothing aside there): the two looks leave it out; the differential
            # tests measure the whole cache with du, so a uv that changes this is caught
            leave = () if ci else (cache.wheels,)
            protected = liveness.protected(roots)  # they stay: sized while uv prunes
            before = sizes.Footprint(cache, ours=False, leave=leave, defer=set(protected)) if measure else None
            # before dead roots are forgotten (choose does it too)
            evict.remember_last_use(cache, roots, present=before.ids if before is not None else None)
        else:
            ev = evict.choose(cache, roots, policy, ci=ci)
            before = ev.footprint
            held = holds.apply(cache, ev)
    except OSError:
        if held is not None:
            held.restore()
        if lock is not None:
            lock.release()
        raise
    counted: dict[str, Any] = {}
    side = None
    if before is not None:
        import threading

        def while_uv_prunes() -> None:
            """What needs only the look before, while uv prunes: the pinned archives it left
            unsized get sized, and what the roots keep is counted (uv's prune never removes a
            pinned archive). A failure here leaves the count to the caller, after uv."""
            try:
                if before.deferred:
                    before.measure_deferred()
                counted["kept"] = kept(cache, roots, before.archive_bytes(), protected, before.ids)
            except Exception:
                pass

        side = threading.Thread(target=while_uv_prunes, daemon=True)
        side.start()
    code = run_locked(lock, uvfeatures.PRUNE_FORCE, cache.build.version_tuple, exec_path, argv0, args)
    if side is not None:
        side.join()
    if held is not None and ev is not None:
        if code == 0:
            held.finish()
        elif held.restore():
            what = report.plural(len(ev.chosen), "archive")
            out.warn(f"uv's prune failed; put back uv's references to the {what} chosen for eviction")
    if code != 0:
        return code, None
    result = None
    try:
        if before is not None:
            after = sizes.Footprint(cache, write=False, ours=policy.active, same=before)
            freed = sizes.Freed(before, after)
            items, labels = _labelled(cache, sorted(set(freed.archives) | set(ev.chosen if ev else ())), before)
            items = [i for i in items if i["id"] in set(freed.archives)]
            result = PruneResult(
                cache, False, ci, items, freed.archive_bytes, freed.other_files, freed.other_bytes,
                counted.get("kept") or kept(cache, roots, before.archive_bytes(), protected, before.ids),
                before.total if policy.active else None, after.total if policy.active else None, roots, ev, labels,
            )  # fmt: skip
    except Exception as e:  # uv has pruned: a figure we cannot measure is one warning, never more
        out.warn(f"cannot measure what the prune freed: {e}")
    finally:
        _restore_generations(cache)
        _stamp_last_prune(cache)
    return code, result


def eviction_facts(ev: evict.Eviction, size_after: Optional[int], would: bool) -> list[str]:
    facts = []
    if ev.hardlinked:
        facts.append(
            f"Skipped {report.plural(len(ev.hardlinked), 'archive')} hardlinked into environments: "
            "removing them frees nothing while those live"
        )
    if ev.recent:
        facts.append(f"Kept {report.plural(len(ev.recent), 'archive')} used within --keep-recent")
    if ev.budget is not None and size_after is not None:
        if size_after > ev.budget:
            live = ev.held_bytes
            largest = f" (the largest: {ev.held[0][0]}, {report.human_size(ev.held[0][1])})" if ev.held else ""
            facts.append(
                f"The cache {'would stay' if would else 'stays'} at {report.human_size(size_after)}, over the "
                f"{report.human_size(ev.budget)} budget: live environments hold {report.human_size(live)}{largest}"
                f", and {report.human_size(ev.other_bytes)} is uv's indexes, downloads and built wheels that no "
                "prune removes"
            )
        else:
            facts.append(
                f"The cache {'would come to' if would else 'is now'} {report.human_size(size_after)}, "
                f"within the {report.human_size(ev.budget)} budget"
            )
    return facts


def _restore_generations(cache: Cache) -> None:
    """uv's prune removed every other generation's buckets: put our records and pins back in
    those this cache has seen, so a bare prune by those versions keeps honouring them."""
    from shim import generations, hostindex

    try:
        generations.restore(cache, *generations.survey(cache, hostindex.Index(cache.path).generations))
    except Exception as e:  # the prune itself succeeded: this is one warning, never a traceback
        what = f"{e.strerror} ({e.filename})" if isinstance(e, OSError) else str(e)
        report.Out().warn(f"cannot restore uv-shim's records for other uv versions: {what}")


def _stamp_last_prune(cache: Cache) -> None:
    """``uv-shim status`` reports when the last prune through the shim ran (this file's mtime)."""
    try:
        cache.area(create=True).write_atomic(LAST_PRUNE, b"")  # type: ignore[union-attr]
    except OSError:
        pass
