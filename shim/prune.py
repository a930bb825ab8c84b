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
    from typing import NoReturn, Optional


def dry_run(
    cache: Cache, inv: uvargs.Invocation, out: report.Out, as_json: bool, policy: Optional[Policy] = None
) -> NoReturn:
    """``uv cache prune --dry-run [--ci] [--json]``: what the real prune would remove and keep.

    Decides exactly as a prune through the shim would (roots verified, without writing), then
    models uv's own prune on the result (``shim.plan``). Takes no lock and changes nothing.
    """
    from shim import plan as planner

    try:
        roots = liveness.verify(cache, hostid.identity()[1], lease_seconds(os.environ), dry_run=True)
    except realuv.ShimError as e:
        error(str(e))
    kept = liveness.protected(roots)
    ev = None
    if policy is not None and policy.active:
        from shim import evict

        ev = evict.choose(cache, roots, policy, write=False)
    p = planner.plan_prune(cache, set(kept), ci=inv.has("--ci"), evicted=set(ev.chosen) if ev else frozenset())
    labels = {aid: planner.archive_label(cache, aid) for aid in p.archives}
    present = [aid for aid in sorted(kept) if os.path.isdir(os.path.join(cache.archives, aid))]
    if as_json:
        import json

        doc = {
            "cache": cache.path,
            "uv_version": cache.build.version,
            "ci": inv.has("--ci"),
            "remove": {
                "archives": [{"id": a, "what": labels[a]} for a in p.archives],
                "stale": p.stale,
                "environments": p.environments,
                "ci": p.ci,
                "files": p.files,
                "freed_bytes": p.freed,
            },
            "keep": {
                "pinned": [
                    {
                        "id": a,
                        "what": planner.archive_label(cache, a),
                        "environments": sorted({r.path for r in kept[a]}),
                    }
                    for a in present
                ],
                "referenced_by_uv": len(p.kept_by_uv),
            },
            "environments": [
                {"path": r.path, "state": r.state, "reason": r.reason, "archives": len(r.archives)} for r in roots
            ],
        }
        if ev is not None:
            doc["evict"] = {
                "archives": [{"id": a, "what": labels.get(a) or planner.archive_label(cache, a)} for a in ev.chosen],
                "freed_bytes": ev.freed,
                "skipped_hardlinked": ev.hardlinked,
                "kept_recent": ev.recent,
                "cache_bytes_before": ev.size_before,
            }
        out.data(json.dumps(doc, indent=2) + "\n")
        realuv.mirror_exit(0)
    out.fact(f"Pruning cache at: {cache.path} (dry run: nothing is removed)")
    lines = []
    for path in p.stale:
        lines.append(f"Would remove stale cache entry: {os.path.basename(path)}")
    for path in p.environments:
        lines.append(f"Would remove cached environment: {os.path.relpath(path, cache.path)}")
    for path in p.ci:
        lines.append(f"Would remove (--ci): {os.path.relpath(path, cache.path)}")
    for aid in sorted(p.archives, key=lambda a: (labels[a], a)):
        lines.append(f"Would remove archive: {labels[aid]} ({aid})")
    for aid in present:
        envs = sorted({r.path for r in kept[aid]})
        more = f" and {len(envs) - 1} more" if len(envs) > 1 else ""
        lines.append(f"Keep archive: {planner.archive_label(cache, aid)} ({aid}), used by {envs[0]}{more}")
    out.data("".join(line + "\n" for line in lines))
    total = len(p.stale) + len(p.environments) + len(p.ci) + len(p.archives)
    if total:
        out.fact(f"Would remove {report.plural(p.files, 'file')} ({report.human_size(p.freed)} freed)")
    else:
        out.fact("No unused entries found")
    if ev is not None:
        report_eviction(out, cache, ev, would=True)
    if present:
        holders = {r.key for aid in present for r in kept[aid]}
        out.fact(
            f"Would keep {report.plural(len(present), 'archive')} used by {report.plural(len(holders), 'environment')}"
        )
    realuv.mirror_exit(0)


def run(real: realuv.RealUv, argv0: str, exec_path: str, args: list[str], inv: uvargs.Invocation) -> NoReturn:
    """``uv cache prune [--ci] [--force] [--unused] [--max-age D] [--max-size S] [--keep-recent D]
    [--dry-run [--json]]``."""
    from shim import evict

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
        _stamp_last_prune(cache)
        if ev is not None:
            report_eviction(out, cache, ev, would=False)
        summarize(out, roots, cache, sizes)
    realuv.mirror_exit(code)


def report_eviction(out: report.Out, cache: Cache, ev: evict.Eviction, would: bool) -> None:
    size = report.human_size(ev.freed)
    what = report.plural(len(ev.chosen), "unused archive")
    out.fact(f"Would remove {what} (would free {size})" if would else f"Removed {what} ({size} freed)")
    if ev.hardlinked:
        out.fact(
            f"Skipped {report.plural(len(ev.hardlinked), 'archive')} hardlinked into environments: removing them frees nothing while those live"
        )
    if ev.recent:
        out.fact(f"Kept {report.plural(len(ev.recent), 'archive')} used within --keep-recent")


def _stamp_last_prune(cache: Cache) -> None:
    """``uv-shim status`` reports when the last prune through the shim ran (this file's mtime)."""
    try:
        cache.area(create=True).write_atomic(LAST_PRUNE, b"")  # type: ignore[union-attr]
    except OSError:
        pass
