"""See: ``uv-shim status|envs|why`` (and the entry of ``doctor|adopt``, in ``shim.doctor``).

Read-only commands decide about roots exactly as a prune would (``liveness.verify(dry_run=True)``)
and never write. Tables and facts follow uv's conventions: data on stdout, facts on stderr,
``--json`` for scripts (schemas in the README, checked by tests/test_views.py).
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from shim import doctor, envscan, hostid, liveness, report
from shim.cache import Cache
from shim.cachecmd import open_cache, verified_roots
from shim.errors import UserError
from shim.manifest import LAST_PRUNE


def _age(ts: float) -> str:
    return report.human_age(time.time() - ts) + " ago"


# -- envs -------------------------------------------------------------------------------------


def env_rows(cache: Cache, roots: list[liveness.Root]) -> list[dict[str, Any]]:
    this = hostid.identity()[1]
    rows: list[dict[str, Any]] = []
    for r in roots:
        dists = r.distributions(cache)
        rec = r.record
        rows.append(
            {
                "path": r.path,
                "host": (rec.host if rec else "?") + ("" if rec is None or rec.host_id != this else " (this host)"),
                "host_id": rec.host_id if rec else "",
                "link_modes": sorted({d.mode for d in dists.values()}) or (rec.link_modes if rec else []),
                "distributions": len(dists),
                "pinned_archives": len(r.archives),
                "last_used": rec.last_used.isoformat() if rec else None,
                "last_used_age": _age(rec.last_used.timestamp()) if rec else "?",
                "state": r.state,
                "reason": r.reason,
            }
        )
    return rows


class EnvsResult(report.RowsResult):
    key = "environments"

    def text(self) -> str:
        if not self.rows:
            return ""
        cells = [
            [r["path"], r["host"], ",".join(r["link_modes"]) or "-", r["distributions"], r["last_used_age"],
             r["state"] + (f" ({r['reason']})" if r["reason"] else "")]
            for r in self.rows
        ]  # fmt: skip
        return report.table(cells, ["PATH", "HOST", "LINK", "DISTS", "LAST USED", "STATE"])

    def facts(self) -> list[str]:
        return [] if self.rows else [f"No environments recorded in {self.cache}"]


def envs(cache: Cache) -> EnvsResult:
    return EnvsResult(cache.path, env_rows(cache, verified_roots(cache)))


# -- status -----------------------------------------------------------------------------------


class StatusResult(report.Result):
    def __init__(self, doc: dict[str, Any]) -> None:
        self._doc = doc

    def doc(self) -> dict[str, Any]:
        return self._doc

    def text(self) -> str:
        doc = self._doc
        next_lease, last = doc["next_lease_end_seconds"], doc["last_prune"]
        policies = doc["policies"]
        archives = doc["archives"]
        env = doc["environments"]
        other = (
            f", {env['other_hosts']} on other hosts"
            + (f" (next lease ends in {report.human_age(next_lease)})" if next_lease is not None else "")
            if env["other_hosts"]
            else ""
        )
        rows = [
            ("Cache", f"{doc['cache']} (uv {doc['uv_version']}), {report.human_size(doc['size_bytes'])}"),
            (
                "Archives",
                f"{sum(a['count'] for a in archives.values())}: "
                f"{archives['symlinked']['count']} linked by symlink ({report.human_size(archives['symlinked']['bytes'])}), "
                f"{archives['hardlinked']['count']} by hardlink ({report.human_size(archives['hardlinked']['bytes'])}), "
                f"{archives['only_cached']['count']} only cached ({report.human_size(archives['only_cached']['bytes'])})",
            ),
            *[
                (
                    f"`{name}`",
                    f"would free {report.human_size(p['freed_bytes'])}: {report.plural(p['archives'], 'archive')} "
                    f"({report.human_size(p['archive_bytes'])}) and {report.plural(p['other_files'], 'other cache file')} "
                    f"({report.human_size(p['other_bytes'])})",
                )
                for name, p in policies.items()
            ],
            (
                "Environments",
                f"{env['live']} live, {env['dead']} dead{other}"
                + (f", {env['unverifiable']} unverifiable" if env["unverifiable"] else "")
                + (f", {env['broken']} BROKEN (run `uv-shim doctor`)" if env["broken"] else ""),
            ),
            ("Last prune", _age(last) if last else "never through uv-shim"),
        ]
        width = max(len(k) for k, _ in rows) + 2
        return "".join(f"{k + ':':<{width}}{v}\n" for k, v in rows)


def status(cache: Cache) -> StatusResult:
    from shim import plan as planner
    from shim.sizes import Footprint

    roots = verified_roots(cache)
    kept = liveness.protected(roots)
    fp = Footprint(cache, write=False)
    total = fp.total
    states: dict[str, list[str]] = {"symlinked": [], "hardlinked": [], "only_cached": []}
    sizes: dict[str, int] = {k: 0 for k in states}
    for aid, (size, _free) in sorted(fp.archives.items()):
        state = "symlinked" if aid in kept else ("hardlinked" if aid in fp.hardlinked else "only_cached")
        states[state].append(aid)
        sizes[state] += size
    policies = {}
    for name, ci in (("uv cache prune", False), ("uv cache prune --ci", True)):
        p = planner.plan_prune(cache, set(kept), ci=ci, footprint=fp)
        policies[name] = {
            "archives": len(p.archives),
            "archive_bytes": p.archive_bytes,
            "other_files": p.other_files,
            "other_bytes": p.other_bytes,
            "freed_bytes": p.freed,
        }
    counts: dict[str, int] = {}
    for r in roots:
        counts[r.state] = counts.get(r.state, 0) + 1
    leases = sorted(r.record.last_used.timestamp() for r in roots if r.state == liveness.FOREIGN and r.record)
    from shim.cachecmd import lease_seconds

    next_lease = (leases[0] + lease_seconds(os.environ) - time.time()) if leases else None
    try:
        last = os.path.getmtime(os.path.join(cache.manifest, LAST_PRUNE))
    except OSError:
        last = None
    doc: dict[str, Any] = {
        "cache": cache.path,
        "uv_version": cache.build.version,
        "size_bytes": total,
        "archives": {k: {"count": len(v), "bytes": sizes[k]} for k, v in states.items()},
        "policies": policies,
        "environments": {
            "live": counts.get(liveness.LIVE, 0),
            "dead": counts.get(liveness.DEAD, 0),
            "other_hosts": counts.get(liveness.FOREIGN, 0),
            "expired": counts.get(liveness.EXPIRED, 0),
            "unverifiable": counts.get(liveness.UNVERIFIABLE, 0),
            "broken": len(_broken(cache, roots)),
        },
        "next_lease_end_seconds": next_lease,
        "last_prune": last,
    }
    return StatusResult(doc)


def _broken(cache: Cache, roots: list[liveness.Root]) -> list[str]:
    """This host's environments (recorded, or in its index) whose links into a uv cache dangle."""
    from shim import hostid, hostindex
    from shim.doctor import broken_dists

    this = hostid.identity()[1]
    paths = {r.path for r in roots if r.record is not None and r.record.host_id == this}
    paths |= {p for p, kind in hostindex.Index(cache.path).envs.items() if kind != "cached"}
    out = []
    for p in sorted(paths):
        try:
            if os.path.isdir(p) and broken_dists(p, thorough=False):  # one readlink per distribution
                out.append(p)
        except OSError:
            continue
    return out


# -- why --------------------------------------------------------------------------------------


class WhyResult(report.RowsResult):
    key = "archives"

    def text(self) -> str:
        lines = []
        for a in self.rows:
            lines.append(f"{a['what']} ({a['id']}): {a['verdict']}")
            lines.extend(f"  used by {p}" for p in a["environments"])
            if a["hardlinked"]:
                lines.append("  hardlinked into an environment: removing it frees nothing while that lives")
            if a["removed_by"]:
                lines.append(f"  `{a['removed_by']}` would remove it")
        return "\n".join(lines) + "\n"


def why(cache: Cache, target: str) -> WhyResult:
    from shim import plan as planner

    try:
        ids = sorted(os.listdir(cache.archives))
    except OSError:
        ids = []
    if target in ids:
        chosen = [target]
    else:
        name, _, version = target.partition("==")
        name = envscan.normalize(name)
        chosen = []
        for aid in ids:
            label = planner.archive_label(cache, aid)
            n, _, v = label.partition("==")
            if n == name and (not version or v == version):
                chosen.append(aid)
        if not chosen:
            raise UserError(f"no archive or package named `{target}` in {cache.path}")
    roots = verified_roots(cache)
    kept = liveness.protected(roots)
    uv_refs = {aid for _link, aid in cache.all_wheel_links()}
    answers: list[dict[str, Any]] = []
    for aid in chosen:
        label = planner.archive_label(cache, aid)
        keepers = sorted({r.path for r in kept.get(aid, [])})
        hard = cache.hardlinked(aid)
        if keepers:
            verdict = "kept for live environments"
        elif aid in uv_refs:
            verdict = "kept by uv's own index only"
        else:
            verdict = "nothing keeps it"
        removal = None
        if not keepers:
            removal = f"uv cache clean {label.partition('==')[0]}" if aid in uv_refs else "uv cache prune"
        answers.append(
            {
                "id": aid,
                "what": label,
                "environments": keepers,
                "hardlinked": hard,
                "referenced_by_uv": aid in uv_refs,
                "verdict": verdict,
                "removed_by": removal,
            }
        )
    return WhyResult(cache.path, answers)


def run(ns: argparse.Namespace) -> int:
    """Dispatch ``status|envs|why|doctor|adopt``; errors go to the entry point (``shim.cli``)."""
    out = report.Out(quiet=getattr(ns, "quiet", False), verbose=getattr(ns, "verbose", False))
    real, cache = open_cache(ns.cache_dir)
    result: report.Result
    if ns.command == "status":
        result = status(cache)
    elif ns.command == "envs":
        result = envs(cache)
    elif ns.command == "why":
        result = why(cache, ns.target)
    elif ns.command == "doctor":
        result = doctor.doctor(real, cache, ns.paths, ns.fix, ns.uv_args, out)
    else:
        if not ns.paths and not ns.discover:
            raise UserError("give environment paths or --discover DIR")
        result = doctor.adopt(cache, ns.paths, ns.discover)
    return report.render(result, ns.json, out)
