"""``uv cache prune`` through the shim: verify roots under uv's lock, then let uv delete.

Order: the real uv checks the arguments; take uv's cache lock exclusively (unless ``--force``);
re-verify every root of this host, pin the live, release the dead, keep other hosts' roots until
their lease ends; choose and set aside what a policy evicts; run the real ``uv cache prune``; put
back what was set aside if it failed; report what was kept and why. ``--dry-run`` decides the same
without writing and models uv's prune (``shim.plan``).
"""

from __future__ import annotations

import os

from shim import evict, holds, hostid, liveness, realuv, report, uvargs, uvfeatures
from shim.cache import Cache
from shim.cachecmd import KeptSize, error, lease_seconds, locked_verify, run_locked, setup, summarize, validate
from shim.manifest import LAST_PRUNE
from shim.policy import Policy, PolicyError, policy_from

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn, Optional

    from shim.plan import Plan


class DryRunResult(report.Result):
    """What ``uv cache prune [--ci]`` through the shim would remove and keep."""

    def __init__(
        self,
        cache: Cache,
        ci: bool,
        roots: list[liveness.Root],
        plan: Plan,
        labels: dict[str, str],
        keepers: dict[str, list[str]],
        ev: Optional[evict.Eviction],
    ) -> None:
        self.cache, self.ci, self.roots, self.plan, self.labels, self.keepers, self.ev = (
            cache.path, ci, roots, plan, labels, keepers, ev
        )  # fmt: skip

    def doc(self) -> dict[str, Any]:
        p, labels = self.plan, self.labels
        doc: dict[str, Any] = {
            "cache": self.cache,
            "uv_version": self.plan.uv_version,
            "ci": self.ci,
            "remove": {
                "archives": [{"id": a, "what": labels[a]} for a in p.archives],
                "stale": p.stale,
                "environments": p.environments,
                "ci": p.ci,
                "files": p.files,
                "freed_bytes": p.freed,
            },
            "keep": {
                "pinned": [{"id": a, "what": labels[a], "environments": envs} for a, envs in self.keepers.items()],
                "referenced_by_uv": len(p.kept_by_uv),
            },
            "environments": [
                {"path": r.path, "state": r.state, "reason": r.reason, "archives": len(r.archives)} for r in self.roots
            ],
        }
        if self.ev is not None:
            doc["evict"] = {
                "archives": [{"id": a, "what": labels[a]} for a in self.ev.chosen],
                "freed_bytes": self.ev.freed,
                "skipped_hardlinked": self.ev.hardlinked,
                "kept_recent": self.ev.recent,
                "cache_bytes_before": self.ev.size_before,
                "cache_bytes_after": self.ev.size_after,
                "budget_bytes": self.ev.budget,
                "held_by_live_environments": [{"path": p, "bytes": b} for p, b in self.ev.held],
            }
        return doc

    def text(self) -> str:
        p, labels, rel = self.plan, self.labels, lambda path: os.path.relpath(path, self.cache)
        lines = [f"Would remove stale cache entry: {os.path.basename(path)}" for path in p.stale]
        lines += [f"Would remove cached environment: {rel(path)}" for path in p.environments]
        lines += [f"Would remove (--ci): {rel(path)}" for path in p.ci]
        lines += [
            f"Would remove archive: {labels[aid]} ({aid})" for aid in sorted(p.archives, key=lambda a: (labels[a], a))
        ]
        for aid, envs in self.keepers.items():
            more = f" and {len(envs) - 1} more" if len(envs) > 1 else ""
            lines.append(f"Keep archive: {labels[aid]} ({aid}), used by {envs[0]}{more}")
        return "".join(line + "\n" for line in lines)

    def facts(self) -> list[str]:
        p = self.plan
        if p.stale or p.environments or p.ci or p.archives:
            facts = [f"Would remove {report.plural(p.files, 'file')} ({report.human_size(p.freed)} freed)"]
        else:
            facts = ["No unused entries found"]
        if self.ev is not None:
            facts += eviction_facts(self.ev, would=True)
        if self.keepers:
            holders = {r.key for r in self.roots if r.archives & set(self.keepers)}
            facts.append(
                f"Would keep {report.plural(len(self.keepers), 'archive')} used by {report.plural(len(holders), 'environment')}"
            )
        return facts


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
        roots = liveness.verify(cache, hostid.identity()[1], lease_seconds(os.environ), dry_run=True)
    except realuv.ShimError as e:
        error(str(e))
    kept = liveness.protected(roots)
    ev = evict.choose(cache, roots, policy, write=False) if policy is not None and policy.active else None
    p = planner.plan_prune(cache, set(kept), ci=inv.has("--ci"), evicted=set(ev.chosen) if ev else frozenset())
    keepers = {
        a: sorted({r.path for r in kept[a]}) for a in sorted(kept) if os.path.isdir(os.path.join(cache.archives, a))
    }
    named = set(p.archives) | set(keepers) | set(ev.chosen if ev else ())
    labels = {aid: planner.archive_label(cache, aid) for aid in named}
    result = DryRunResult(cache, inv.has("--ci"), roots, p, labels, keepers, ev)
    realuv.mirror_exit(report.render(result, as_json, out))


def run(real: realuv.RealUv, argv0: str, exec_path: str, args: list[str], inv: uvargs.Invocation) -> NoReturn:
    """``uv cache prune [--ci] [--force] [--unused] [--max-age D] [--max-size S] [--keep-recent D]
    [--dry-run [--json]]``."""
    quiet = inv.has("-q", "--quiet")
    try:
        policy, args = policy_from(args, os.environ, warn=None if quiet else report.Out().warn)
    except PolicyError as e:
        error(str(e))
    if "--dry-run" in args:
        args = [a for a in args if a not in ("--dry-run", "--json")]
        validate(exec_path, argv0, args)
        cache, out = setup(real, inv, argv0, exec_path, args)
        dry_run(cache, inv, out, "--json" in inv.argv, policy)
    validate(exec_path, argv0, args)
    cache, out = setup(real, inv, argv0, exec_path, args)
    lock, roots = locked_verify(cache, inv, out, os.environ)
    ev = held = None
    try:
        if holds.recover(cache):
            out.fact("Put back uv's references that an interrupted prune through uv-shim had set aside")
        if not policy.active:
            evict.remember_last_use(cache, roots)  # before dead roots are forgotten (choose does it too)
        else:
            ev = evict.choose(cache, roots, policy)
            held = holds.apply(cache, ev)
    except OSError as e:
        if held is not None:
            held.restore()
        if lock is not None:
            lock.release()
        error(f"cannot evict from {cache.path}: {e.strerror} ({e.filename}); nothing was removed")
    sizes = KeptSize(cache, roots) if not out.quiet else None
    code = run_locked(lock, uvfeatures.PRUNE_FORCE, cache.build.version_tuple, exec_path, argv0, args)
    if held is not None and ev is not None:
        if code == 0:
            held.finish()
        elif held.restore():
            what = report.plural(len(ev.chosen), "archive")
            out.warn(f"uv's prune failed; put back uv's references to the {what} chosen for eviction")
    if code == 0:
        _restore_generations(cache)
        _stamp_last_prune(cache)
        if ev is not None:
            out.facts(eviction_facts(ev, would=False))
        summarize(out, roots, cache, sizes)
    realuv.mirror_exit(code)


def eviction_facts(ev: evict.Eviction, would: bool) -> list[str]:
    size = report.human_size(ev.freed)
    what = report.plural(len(ev.chosen), "unused archive")
    facts = [f"Would remove {what} (would free {size})" if would else f"Removed {what} ({size} freed)"]
    if ev.hardlinked:
        facts.append(
            f"Skipped {report.plural(len(ev.hardlinked), 'archive')} hardlinked into environments: "
            "removing them frees nothing while those live"
        )
    if ev.recent:
        facts.append(f"Kept {report.plural(len(ev.recent), 'archive')} used within --keep-recent")
    if ev.budget is not None and ev.size_after > ev.budget:
        live = sum(b for _p, b in ev.held)
        largest = f" (the largest: {ev.held[0][0]}, {report.human_size(ev.held[0][1])})" if ev.held else ""
        facts.append(
            f"The cache {'would stay' if would else 'stays'} at {report.human_size(ev.size_after)}, over the "
            f"{report.human_size(ev.budget)} budget: live environments hold {report.human_size(live)}{largest}"
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
