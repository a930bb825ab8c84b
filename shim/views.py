"""See: ``uv-shim status|envs|why`` (and the entry of ``doctor|adopt``, in ``shim.doctor``).

Read-only commands decide about roots exactly as a prune would (``liveness.verify(dry_run=True)``)
and never write. Tables and facts follow uv's conventions: data on stdout, facts on stderr,
``--json`` for scripts (schemas in the README, checked by tests/test_views.py).
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any, Optional

from shim import doctor, envscan, hostid, liveness, report
from shim.cache import Cache
from shim.cachecmd import open_cache, verified_roots
from shim.errors import UserError
from shim.manifest import LAST_PRUNE


def _age(ts: float) -> str:
    return report.human_age(time.time() - ts) + " ago"


# -- envs -------------------------------------------------------------------------------------


def what(cache: Cache, root: liveness.Root, dists: dict[str, Any]) -> str:
    """What an environment is, in the user's words: a project's, a tool's, one uv keeps in the
    cache (for ``uvx``, ``uv run --with`` and scripts), a ``--target``/``--prefix`` folder, a venv."""
    path, kind = root.path, root.record.kind if root.record else ""
    if kind == "cached" or path.startswith(cache.path + os.sep):
        names = sorted({d.name for d in dists.values()})
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        return "uvx / uv run --with / script" + (f": {shown}" if shown else "")
    parent = os.path.dirname(path)
    if os.path.basename(path) == ".venv" and os.path.isfile(os.path.join(parent, "pyproject.toml")):
        return f"project {os.path.basename(parent)}"
    if os.path.isfile(os.path.join(path, "uv-receipt.toml")):
        return f"tool {os.path.basename(path)}"
    if kind in ("target", "prefix"):
        return f"--{kind} folder"
    return "venv"


def env_rows(cache: Cache, roots: list[liveness.Root]) -> list[dict[str, Any]]:
    this = hostid.identity()[1]
    rows: list[dict[str, Any]] = []
    for r in sorted(roots, key=lambda r: r.path):
        dists = r.distributions(cache)
        rec = r.record
        rows.append(
            {
                "path": r.path,
                "what": what(cache, r, dists),
                "host": rec.host if rec else None,
                "this_host": rec is not None and rec.host_id == this,
                "host_id": rec.host_id if rec else "",
                "link_modes": sorted({d.mode for d in dists.values()}) or (rec.link_modes if rec else []),
                "distributions": len(dists),
                "pinned_archives": len(r.archives),
                "last_used": rec.last_used.isoformat() if rec else None,
                "last_used_age": _age(rec.last_used_at) if rec else "?",
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
            [r["path"], r["what"], (r["host"] or "?") + (" (this host)" if r["this_host"] else ""),
             ",".join(r["link_modes"]) or "-", r["distributions"], r["last_used_age"],
             r["state"] + (f" ({r['reason']})" if r["reason"] else "")]
            for r in self.rows
        ]  # fmt: skip
        return report.table(cells, ["PATH", "WHAT", "HOST", "LINK", "DISTS", "LAST USED", "STATE"])

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
            ("Auto GC", _auto_gc_text(doc["auto_gc"])),
            *[
                ("Largest" if i == 0 else "", f"{r['name']} {r['version']} ({report.human_size(r['bytes'])})".strip())
                for i, r in enumerate(doc["largest"][:3])
            ],
        ]
        width = max(len(k) for k, _ in rows) + 2
        return "".join(f"{(k + ':') if k else '':<{width}}{v}\n" for k, v in rows)


def _auto_gc_text(auto: dict[str, Any]) -> str:
    from shim import autogc

    if auto["policy"] is None:
        return "off (set [gc] in the config file or UV_SHIM_AUTO_*)"
    settings = ", ".join(
        f"{k} {report.human_age(v) if k in ('every', 'max-age', 'keep-recent') else report.human_size(v) if k in ('max-size', 'min-free') else ''}".strip()
        for k, v in auto["policy"].items()
    )
    last = autogc.describe(auto["last"]) if auto["last"] else "never ran"
    due = auto["next_due"]
    nxt = (
        ""
        if due is None
        else f"; next {'due now' if due <= time.time() else 'in ' + report.human_age(due - time.time())}"
    )
    return f"{settings}; last {last}{nxt}"


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
    leases = sorted(r.record.last_used_at for r in roots if r.state == liveness.FOREIGN and r.record)
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
        "largest": package_rows(cache, roots, fp)[:5],
        "auto_gc": _auto_gc(cache),
    }
    return StatusResult(doc)


def _auto_gc(cache: Cache) -> dict[str, Any]:
    """The automatic policy in force here, its last run or skip, and when the next is due."""
    from shim import autogc
    from shim.policy import auto_policy

    policy = auto_policy(os.environ)
    return {
        "policy": policy.describe() if policy.enabled else None,
        "last": autogc.last_entry(cache.path),
        "next_due": autogc.next_due(cache.path) if policy.enabled else None,
    }


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


# -- du --------------------------------------------------------------------------------------


def package_rows(cache: Cache, roots: list[liveness.Root], fp: Any) -> list[dict[str, Any]]:
    """The cache by package and version, largest first: archives, bytes on disk (``shim.sizes``),
    last use, and the environments that keep them (pinned, or hardlinked per their records)."""
    from shim import evict
    from shim import plan as planner
    from shim.sizes import tree_bytes

    holders = evict.keepers(cache, roots, fp.hardlinked)
    used = evict.last_use(cache, evict.remember_last_use(cache, roots, write=False), list(fp.archives))
    groups: dict[tuple[str, str], dict[str, Any]] = {}

    def add(name: str, version: str, aid: str, size: int, last: float, envs: set[str]) -> None:
        g = groups.setdefault(
            (name, version),
            {"name": name, "version": version, "archives": 0, "bytes": 0, "last_used": 0.0, "environments": set()},
        )
        g["archives"] += 1
        g["bytes"] += size
        g["last_used"] = max(g["last_used"], last)
        g["environments"] |= envs

    for aid, (size, _free) in fp.archives.items():
        name, _, version = planner.archive_label(cache, aid, fp.dist_infos.get(aid)).partition("==")
        add(name, version, aid, size, used.get(aid, 0.0), holders.get(aid, set()))
    for aid in fp.cached_envs:
        path = os.path.join(cache.archives, aid)
        try:
            last = os.stat(path).st_mtime
        except OSError:
            last = 0.0
        add("(cached environments)", "", aid, tree_bytes(path)[0], last, set())
    rows = sorted(groups.values(), key=lambda g: (-g["bytes"], g["name"], g["version"]))
    for g in rows:
        g["environments"] = sorted(g["environments"])
        g["last_used"] = (
            time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(g["last_used"])) if g["last_used"] else None
        )
    return rows


class DuResult(report.Result):
    def __init__(self, cache: str, total: int, rows: list[dict[str, Any]]) -> None:
        self.cache, self.total, self.rows = cache, total, rows

    def doc(self) -> dict[str, Any]:
        return {"cache": self.cache, "size_bytes": self.total, "packages": self.rows}

    def text(self) -> str:
        if not self.rows:
            return ""
        top = max(r["bytes"] for r in self.rows) or 1
        cells = [
            [r["name"], r["version"], report.human_size(r["bytes"]), _when(r["last_used"]), len(r["environments"]),
             "#" * max(1, round(20 * r["bytes"] / top))]
            for r in self.rows
        ]  # fmt: skip
        return report.table(cells, ["PACKAGE", "VERSION", "SIZE", "LAST USED", "ENVS", ""])

    def facts(self) -> list[str]:
        in_packages = sum(r["bytes"] for r in self.rows)
        return [
            f"{report.human_size(self.total)} in {self.cache}: {report.human_size(in_packages)} in "
            f"{report.plural(len(self.rows), 'package version')}, {report.human_size(self.total - in_packages)} "
            "in uv's indexes, downloads, built wheels and uv-shim's records"
        ]


def _when(iso: Optional[str]) -> str:
    if not iso:
        return "-"
    try:
        ts = time.mktime(time.strptime(iso[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return "-"
    return _age(ts)


def du(cache: Cache) -> DuResult:
    from shim.sizes import Footprint

    fp = Footprint(cache, write=False)
    return DuResult(cache.path, fp.total, package_rows(cache, verified_roots(cache), fp))


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
    elif ns.command == "du":
        result = du(cache)
    elif ns.command == "doctor":
        result = doctor.doctor(real, cache, ns.paths, ns.fix, ns.uv_args, out)
    else:
        if not ns.paths and not ns.discover:
            raise UserError("give environment paths or --discover DIR")
        result = doctor.adopt(cache, ns.paths, ns.discover)
    return report.render(result, ns.json, out)
