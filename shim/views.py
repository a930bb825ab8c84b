"""See and repair: ``uv-shim status|envs|why|doctor|adopt``.

Read-only commands decide about roots exactly as a prune would (``gc.verify(dry_run=True)``)
and never write. Tables and facts follow uv's conventions: data on stdout, facts on stderr,
``--json`` for scripts (schemas in the README, checked by tests/test_inspect.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, Optional

from shim import envscan, gc, hostid, manifest, realuv, report, uvargs
from shim.bookkeeping import Book, Warnings
from shim.cache import ARCHIVE_BUCKET, Cache, split_archive_target
from shim.cachedir import CacheDirError, find_cache_dir
from shim.evict import _hardlinked
from shim.manifest import LAST_PRUNE


class UserError(Exception):
    """A one-line message for the user, exit 1."""


def open_cache(cache_dir: Optional[str]) -> tuple[realuv.RealUv, Cache]:
    """The cache the real uv uses here (its own answer to ``uv cache dir``)."""
    real = realuv.find(os.environ)
    build = realuv.build_of(real)
    argv = ["--cache-dir", cache_dir] if cache_dir else []
    try:
        root = find_cache_dir(real, build, uvargs.parse(argv + ["cache", "dir"]), os.getcwd(), os.environ, ask=True)
    except CacheDirError as e:
        raise UserError(f"uv cannot use that cache: {e}") from None
    if root is None or not os.path.isdir(root):
        raise UserError(f"no uv cache at {root}")
    return real, Cache(root, build)


def _roots(cache: Cache) -> list[gc.Root]:
    from shim.cachecmd import lease_seconds

    return gc.verify(cache, hostid.identity()[1], lease_seconds(os.environ), dry_run=True)


def _age(ts: float) -> str:
    return report.human_age(time.time() - ts) + " ago"


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    for r in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    return "\n".join(lines) + "\n"


def _emit(doc: Any, text: str, as_json: bool, out: report.Out) -> None:
    out.data(json.dumps(doc, indent=2, default=str) + "\n" if as_json else text)


# -- envs -------------------------------------------------------------------------------------


def env_rows(cache: Cache, roots: list[gc.Root]) -> list[dict[str, Any]]:
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


def cmd_envs(cache: Cache, out: report.Out, as_json: bool) -> int:
    rows = env_rows(cache, _roots(cache))
    table = (
        _table(
            [
                [
                    r["path"],
                    r["host"],
                    ",".join(r["link_modes"]) or "-",
                    r["distributions"],
                    r["last_used_age"],
                    r["state"] + (f" ({r['reason']})" if r["reason"] else ""),
                ]
                for r in rows
            ],
            ["PATH", "HOST", "LINK", "DISTS", "LAST USED", "STATE"],
        )
        if rows
        else ""
    )
    _emit({"cache": cache.root, "environments": rows}, table, as_json, out)
    if not rows:
        out.fact(f"No environments recorded in {cache.root}")
    return 0


# -- status -----------------------------------------------------------------------------------


def cmd_status(cache: Cache, out: report.Out, as_json: bool) -> int:
    from shim import plan as planner

    roots = _roots(cache)
    kept = gc.protected(roots)
    seen: set = set()
    total = report.tree_size(cache.root, set())
    try:
        ids = sorted(os.listdir(cache.archives))
    except OSError:
        ids = []
    states: dict[str, list[str]] = {"symlinked": [], "hardlinked": [], "only_cached": []}
    sizes: dict[str, int] = {k: 0 for k in states}
    for aid in ids:
        path = os.path.join(cache.archives, aid)
        state = "symlinked" if aid in kept else ("hardlinked" if _hardlinked(path) else "only_cached")
        states[state].append(aid)
        sizes[state] += report.tree_size(path, seen)
    policies = {}
    for name, ci in (("uv cache prune", False), ("uv cache prune --ci", True)):
        p = planner.plan_prune(cache, set(kept), ci=ci)
        policies[name] = {"archives": len(p.archives), "files": p.files, "freed_bytes": p.freed}
    counts: dict[str, int] = {}
    for r in roots:
        counts[r.state] = counts.get(r.state, 0) + 1
    leases = sorted(r.record.last_used.timestamp() for r in roots if r.state == gc.FOREIGN and r.record)
    from shim.cachecmd import lease_seconds

    next_lease = (leases[0] + lease_seconds(os.environ) - time.time()) if leases else None
    try:
        last = os.path.getmtime(os.path.join(cache.manifest, LAST_PRUNE))
    except OSError:
        last = None
    doc: dict[str, Any] = {
        "cache": cache.root,
        "uv_version": cache.build.version,
        "size_bytes": total,
        "archives": {k: {"count": len(v), "bytes": sizes[k]} for k, v in states.items()},
        "policies": policies,
        "environments": {
            "live": counts.get(gc.LIVE, 0),
            "dead": counts.get(gc.DEAD, 0),
            "other_hosts": counts.get(gc.FOREIGN, 0),
            "expired": counts.get(gc.EXPIRED, 0),
            "unverifiable": counts.get(gc.UNVERIFIABLE, 0),
        },
        "next_lease_end_seconds": next_lease,
        "last_prune": last,
    }
    env = doc["environments"]
    other = (
        f", {env['other_hosts']} on other hosts"
        + (f" (next lease ends in {report.human_age(next_lease)})" if next_lease is not None else "")
        if env["other_hosts"]
        else ""
    )
    rows = [
        ("Cache", f"{cache.root} (uv {cache.build.version}), {report.human_size(total)}"),
        (
            "Archives",
            f"{len(ids)}: {len(states['symlinked'])} linked by symlink ({report.human_size(sizes['symlinked'])}), "
            f"{len(states['hardlinked'])} by hardlink ({report.human_size(sizes['hardlinked'])}), "
            f"{len(states['only_cached'])} only cached ({report.human_size(sizes['only_cached'])})",
        ),
        *[
            (
                f"`{name}`",
                f"would free {report.human_size(p['freed_bytes'])} ({report.plural(p['archives'], 'archive')}, {report.plural(p['files'], 'file')})",
            )
            for name, p in policies.items()
        ],
        (
            "Environments",
            f"{env['live']} live, {env['dead']} dead{other}"
            + (f", {env['unverifiable']} unverifiable" if env["unverifiable"] else ""),
        ),
        ("Last prune", _age(last) if last else "never through uv-shim"),
    ]
    width = max(len(k) for k, _ in rows) + 2
    _emit(doc, "".join(f"{k + ':':<{width}}{v}\n" for k, v in rows), as_json, out)
    return 0


# -- why --------------------------------------------------------------------------------------


def cmd_why(cache: Cache, target: str, out: report.Out, as_json: bool) -> int:
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
            raise UserError(f"no archive or package named `{target}` in {cache.root}")
    roots = _roots(cache)
    kept = gc.protected(roots)
    uv_refs = {aid for _link, aid in cache.all_wheel_links()}
    answers: list[dict[str, Any]] = []
    for aid in chosen:
        label = planner.archive_label(cache, aid)
        keepers = sorted({r.path for r in kept.get(aid, [])})
        hard = _hardlinked(os.path.join(cache.archives, aid))
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
    lines = []
    for a in answers:
        lines.append(f"{a['what']} ({a['id']}): {a['verdict']}")
        for p in a["environments"]:
            lines.append(f"  used by {p}")
        if a["hardlinked"]:
            lines.append("  hardlinked into an environment: removing it frees nothing while that lives")
        if a["removed_by"]:
            lines.append(f"  `{a['removed_by']}` would remove it")
    _emit({"cache": cache.root, "archives": answers}, "\n".join(lines) + "\n", as_json, out)
    return 0


# -- doctor and adopt -------------------------------------------------------------------------


def broken_dists(env_path: str) -> list[tuple[str, str, str]]:
    """(name, version, archive path) for each distribution whose METADATA symlink into a uv cache
    no longer resolves (its archive was deleted, by any prune, with or without uv-shim)."""
    out = []
    for site in envscan.site_dirs(env_path, "venv"):
        for entry in sorted(os.listdir(site)):
            if not entry.endswith(".dist-info"):
                continue
            meta = os.path.join(site, entry, "METADATA")
            try:
                target = os.readlink(meta)
            except OSError:
                continue
            split = split_archive_target(target)
            if split is not None and not os.path.exists(meta):
                name, _, version = entry[: -len(".dist-info")].partition("-")
                out.append((envscan.normalize(name), version, os.path.join(split[0], ARCHIVE_BUCKET, split[1])))
    return out


def _env_paths(cache: Cache, paths: Sequence[str]) -> list[str]:
    if paths:
        for p in paths:
            if not envscan.is_environment(os.path.abspath(p)):
                raise UserError(f"{p} is not a Python environment (no pyvenv.cfg or site-packages)")
        return [os.path.abspath(p) for p in paths]
    this = hostid.identity()[1]
    return sorted(r.path for r in _roots(cache) if r.record and r.record.host_id == this and os.path.isdir(r.path))


def cmd_doctor(
    real: realuv.RealUv,
    cache: Cache,
    paths: Sequence[str],
    fix: bool,
    uv_args: Sequence[str],
    out: report.Out,
    as_json: bool,
) -> int:
    found = {}
    for env in _env_paths(cache, paths):
        broken = broken_dists(env)
        if broken:
            found[env] = broken
    fixed: dict[str, bool] = {}
    if fix:
        for env, broken in found.items():
            fixed[env] = _reinstall(real, cache, env, broken, uv_args, out)
    doc: dict[str, Any] = {
        "cache": cache.root,
        "broken": [
            {
                "path": env,
                "distributions": [{"name": n, "version": v, "archive": a} for n, v, a in b],
                "fixed": fixed.get(env),
            }
            for env, b in found.items()
        ],
    }
    lines = []
    for env, broken in found.items():
        status = "" if not fix else (" (fixed)" if fixed[env] else " (NOT fixed)")
        lines.append(f"{env}: {report.plural(len(broken), 'broken distribution')}{status}")
        lines.extend(f"  {n}=={v} (archive {os.path.basename(a)} is gone)" for n, v, a in broken)
    _emit(doc, "\n".join(lines) + ("\n" if lines else ""), as_json, out)
    if not found:
        out.fact("No broken environments found")
        return 0
    if not fix:
        out.fact("Run `uv-shim doctor --fix` to reinstall them")
        return 1
    return 0 if all(fixed.values()) else 1


def _python_of(env: str) -> str:
    for cand in ("bin/python", "bin/python3", "Scripts/python.exe"):
        p = os.path.join(env, cand)
        if os.path.exists(p):
            return p
    return env


def _reinstall(
    real: realuv.RealUv,
    cache: Cache,
    env: str,
    broken: list[tuple[str, str, str]],
    uv_args: Sequence[str],
    out: report.Out,
) -> bool:
    import subprocess

    specs = [f"{n}=={v}" for n, v, _a in broken]
    names = [n for n, _v, _a in broken]
    args = [
        real.path,
        "pip",
        "install",
        "--python",
        _python_of(env),
        "--link-mode",
        "symlink",
        "--no-deps",
        "--cache-dir",
        cache.root,
    ]
    for n in names:
        args += ["--reinstall-package", n, "--refresh-package", n]
    args += [*uv_args, *specs]
    out.fact(f"Reinstalling {', '.join(specs)} into {env}")
    code = subprocess.run(args, env=realuv.child_env(os.environ, exec_=False)).returncode
    if code != 0:
        return False
    Book(cache, Warnings()).update(env, "venv")
    return not broken_dists(env)


SKIP_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        "node_modules",
        "__pycache__",
        ".tox",
        ".nox",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        "proc",
        "sys",
        "dev",
    }
)


def discover(top: str, cache: Cache) -> list[str]:
    """Folders under ``top`` holding a ``pyvenv.cfg``; never descends into the cache, into an
    environment it found, or into version-control and tool folders."""
    found = []
    cache_real = os.path.realpath(cache.root)
    for dirpath, dirnames, filenames in os.walk(top):
        if "pyvenv.cfg" in filenames:
            found.append(dirpath)
            dirnames[:] = []
            continue
        dirnames[:] = [
            d
            for d in dirnames
            if d not in SKIP_DIRS
            and os.path.realpath(os.path.join(dirpath, d)) != cache_real
            and not os.path.islink(os.path.join(dirpath, d))
        ]
    return sorted(found)


def cmd_adopt(cache: Cache, paths: Sequence[str], discover_in: Optional[str], out: report.Out, as_json: bool) -> int:
    envs = [os.path.abspath(p) for p in paths]
    for p in envs:
        if not envscan.is_environment(p):
            raise UserError(f"{p} is not a Python environment (no pyvenv.cfg or site-packages)")
    if discover_in:
        if not os.path.isdir(discover_in):
            raise UserError(f"{discover_in} is not a folder")
        envs += [e for e in discover(os.path.abspath(discover_in), cache) if e not in envs]
    book = Book(cache, Warnings())
    rows: list[dict[str, Any]] = []
    for env in envs:
        book.update(env, "venv")
        real_path = os.path.realpath(env)
        key = manifest.entry_key(book.host_id, real_path)
        try:
            rec = manifest.load(cache.entry_dir(key))  # a read: by path is fine
            rows.append(
                {
                    "path": real_path,
                    "recorded": True,
                    "distributions": len(rec.distributions),
                    "pinned_archives": len(rec.pinned),
                    "link_modes": rec.link_modes,
                }
            )
        except (OSError, manifest.RecordError):
            rows.append(
                {"path": real_path, "recorded": False, "distributions": 0, "pinned_archives": 0, "link_modes": []}
            )
    text = (
        _table(
            [
                [
                    r["path"],
                    "yes" if r["recorded"] else "no (links nothing from this cache)",
                    r["distributions"],
                    r["pinned_archives"],
                ]
                for r in rows
            ],
            ["PATH", "RECORDED", "DISTS", "PINNED"],
        )
        if rows
        else ""
    )
    _emit({"cache": cache.root, "environments": rows}, text, as_json, out)
    out.fact(f"Adopted {report.plural(sum(1 for r in rows if r['recorded']), 'environment')}")
    return 0


def run(ns: argparse.Namespace) -> int:
    out = report.Out(quiet=getattr(ns, "quiet", False), verbose=getattr(ns, "verbose", False))
    try:
        real, cache = open_cache(ns.cache_dir)
        if ns.command == "status":
            return cmd_status(cache, out, ns.json)
        if ns.command == "envs":
            return cmd_envs(cache, out, ns.json)
        if ns.command == "why":
            return cmd_why(cache, ns.target, out, ns.json)
        if ns.command == "doctor":
            return cmd_doctor(real, cache, ns.paths, ns.fix, ns.uv_args, out, ns.json)
        if ns.command == "adopt":
            if not ns.paths and not ns.discover:
                raise UserError("give environment paths or --discover DIR")
            return cmd_adopt(cache, ns.paths, ns.discover, out, ns.json)
    except UserError as e:
        sys.stderr.write(f"uv-shim: error: {e}\n")
        return 1
    except OSError as e:
        sys.stderr.write(f"uv-shim: error: {e.strerror or e}: {e.filename}\n")
        return 1
    raise AssertionError(ns.command)
