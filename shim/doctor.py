"""Repair and adopt: ``uv-shim doctor [--fix]`` and ``uv-shim adopt``.

``doctor`` finds environments whose symlinks into a uv cache dangle (broken before or after
uv-shim was installed) and, with ``--fix``, reinstalls exactly the broken distributions with the
real uv; ``adopt`` records existing environments.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from typing import Any, Optional

from shim import envscan, hostid, manifest, realuv, report
from shim.bookkeeping import Book, Warnings
from shim.cache import Cache, split_archive_target
from shim.cachecmd import verified_roots
from shim.errors import UserError
from shim.paths import physical


def broken_dists(env_path: str, thorough: bool = True) -> list[tuple[str, str, str]]:
    """(name, version, what is wrong) for each distribution that is broken however it broke: its
    METADATA links into a uv archive that is gone (any prune, with or without uv-shim), or
    (``thorough``: one stat per file) a file its RECORD lists is missing or a dangling link."""
    out = []
    for site, entry, name, version in envscan.dist_infos(env_path, "venv"):
        problem = _problem(site, entry, thorough)
        if problem:
            out.append((name, version, problem))
    return out


def _problem(site: str, dist_info: str, thorough: bool) -> str:
    meta = os.path.join(site, dist_info, "METADATA")
    try:
        split = split_archive_target(os.readlink(meta))
    except OSError:
        split = None
    if split is not None and not os.path.exists(meta):
        return f"archive {split[1]} is gone"
    if not thorough:
        return ""
    try:
        with open(os.path.join(site, dist_info, "RECORD"), encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return "its RECORD is gone"
    except OSError:
        return ""
    for line in lines:
        path = line.rsplit(",", 2)[0]
        if path and not path.startswith("..") and not os.path.exists(os.path.join(site, path)):
            return f"{path} is missing"
    return ""


def _env_paths(cache: Cache, paths: Sequence[str]) -> list[str]:
    if paths:
        envs = [physical(p) for p in paths]
        for p, env in zip(paths, envs):
            if not envscan.is_environment(env):
                raise UserError(f"{p} is not a Python environment (no pyvenv.cfg or site-packages)")
        return envs
    from shim import hostindex

    this = hostid.identity()[1]
    known = {r.path for r in verified_roots(cache) if r.record and r.record.host_id == this}
    known |= {p for p, kind in hostindex.Index(cache.path).envs.items() if kind != "cached"}
    known |= {str(r["path"]) for r in releases(cache) if r.get("host") == hostid.identity()[0] and "path" in r}
    return sorted(p for p in known if envscan.is_environment(p))


RECENT_RELEASES = 20  # shown by `doctor` (all of them in --json)


def releases(cache: Cache) -> list[dict[str, Any]]:
    """The roots released in this cache (``manifest.log_release``), oldest first."""
    area = cache.area()
    return manifest.releases(area) if area is not None else []


class DoctorResult(report.Result):
    def __init__(
        self,
        cache: str,
        found: dict[str, list[tuple[str, str, str]]],
        repairs: Optional[dict[str, dict[str, dict[str, Any]]]],
        released: Optional[list[dict[str, Any]]] = None,
    ) -> None:
        self.cache = cache
        self.found = found
        self.repairs = repairs  # None without --fix: env -> name==version -> {fixed, from, command, error}
        self.released = released or []
        self.fixed = (
            {env: all(r["fixed"] for r in rs.values()) for env, rs in repairs.items()} if repairs is not None else None
        )
        self.exit_code = 0 if not found or (self.fixed is not None and all(self.fixed.values())) else 1

    def _repair(self, env: str, n: str, v: str) -> Optional[dict[str, Any]]:
        return (self.repairs or {}).get(env, {}).get(f"{n}=={v}")

    def _released(self, path: str) -> Optional[dict[str, Any]]:
        real = os.path.realpath(path)
        return next((r for r in reversed(self.released) if r.get("path") in (path, real)), None)

    def doc(self) -> dict[str, Any]:
        return {
            "cache": self.cache,
            "released": self.released,
            "broken": [
                {
                    "path": env,
                    "distributions": [
                        {"name": n, "version": v, "problem": p, **(self._repair(env, n, v) or {})} for n, v, p in b
                    ],
                    "fixed": self.fixed.get(env) if self.fixed is not None else None,
                }
                for env, b in self.found.items()
            ],
        }

    def text(self) -> str:
        lines = []
        for env, broken in self.found.items():
            status = "" if self.fixed is None else (" (fixed)" if self.fixed[env] else " (NOT fixed)")
            lines.append(f"{env}: {report.plural(len(broken), 'broken distribution')}{status}")
            for n, v, p in broken:
                r = self._repair(env, n, v)
                if r is None:
                    lines.append(f"  {n}=={v} ({p})")
                elif r["fixed"]:
                    lines.append(f"  {n}=={v} ({p}): reinstalled from {r['from']}")
                else:
                    fix = f"; to repair: {r['command']}" if r["command"] else ""
                    lines.append(f"  {n}=={v} ({p}): NOT fixed, {r['error']} (from {r['from']}){fix}")
            if self.fixed is None:
                lines.append(f"  repair: uv-shim doctor --fix {shlex.quote(env)}")
            gone = self._released(env)
            if gone is not None:
                lines.append(f"  its record was released {_ago(gone)}: {gone.get('why', '?')}")
        recent = self.released[-RECENT_RELEASES:]
        if recent:
            lines.append(f"Released roots (last {len(recent)}, oldest first):")
            for r in recent:
                what = report.plural(len(r.get("distributions", [])), "distribution")
                lines.append(f"  {_ago(r)}  {r.get('path', '?')} ({what}): {r.get('why', '?')}")
        return "\n".join(lines) + ("\n" if lines else "")

    def facts(self) -> list[str]:
        if not self.found:
            return ["No broken environments found"]
        return ["Run `uv-shim doctor --fix` to reinstall them"] if self.fixed is None else []


def _ago(entry: dict[str, Any]) -> str:
    import time

    try:
        return report.human_age(max(0.0, time.time() - float(entry["time"]))) + " ago"
    except (KeyError, TypeError, ValueError):
        return "at an unknown time"


def doctor(
    real: realuv.RealUv, cache: Cache, paths: Sequence[str], fix: bool, uv_args: Sequence[str], out: report.Out
) -> DoctorResult:
    """The broken environments (and, with ``fix``, whether each was repaired; ``out`` shows the
    reinstalls as they happen)."""
    found = {}
    for env in _env_paths(cache, paths):
        broken = broken_dists(env)
        if broken:
            found[env] = broken
    repairs = (
        {env: _reinstall(real, cache, env, broken, uv_args, out) for env, broken in found.items()} if fix else None
    )
    return DoctorResult(cache.path, found, repairs, releases(cache))


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
) -> dict[str, dict[str, Any]]:
    """Each broken distribution restored on its own, from where it came from (``origins``):
    name -> {fixed, from, command, error}. One that cannot be restored does not stop the others."""
    import subprocess

    from shim import origins

    python = _python_of(env)
    results: dict[str, dict[str, Any]] = {}
    for name, version, _problem in broken:
        how = origins.restore(env, python, name, version, uv_args, os.environ)
        command = shlex.join(["uv", *how.args]) if how.args else ""
        result: dict[str, Any] = {"fixed": False, "from": how.origin, "command": command, "error": how.reason}
        results[f"{name}=={version}"] = result
        if how.args is None:
            continue
        out.fact(f"Reinstalling {name}=={version} into {env} from {how.origin}")
        args = [real.path, *how.args, "--cache-dir", cache.path]
        proc = subprocess.run(args, env=realuv.child_env(os.environ, exec_=False), cwd=how.cwd)
        if proc.returncode != 0:
            result["error"] = f"uv exited with {proc.returncode}"
            continue
        still = {(n, v) for n, v, _p in broken_dists(env)}
        result["fixed"] = (name, version) not in still
        if not result["fixed"]:
            result["error"] = "still broken after the reinstall"
    Book(cache, Warnings()).update(env, "venv")
    return results


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
    cache_real = os.path.realpath(cache.path)
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


class AdoptResult(report.RowsResult):
    key = "environments"

    def text(self) -> str:
        if not self.rows:
            return ""
        cells = [[r["path"], "yes" if r["recorded"] else "no (links nothing from this cache)", r["distributions"],
                  r["pinned_archives"]] for r in self.rows]  # fmt: skip
        return report.table(cells, ["PATH", "RECORDED", "DISTS", "PINNED"])

    def facts(self) -> list[str]:
        return [f"Adopted {report.plural(sum(1 for r in self.rows if r['recorded']), 'environment')}"]


def adopt(cache: Cache, paths: Sequence[str], discover_in: Optional[str]) -> AdoptResult:
    envs = [physical(p) for p in paths]
    for p in envs:
        if not envscan.is_environment(p):
            raise UserError(f"{p} is not a Python environment (no pyvenv.cfg or site-packages)")
    if discover_in:
        if not os.path.isdir(discover_in):
            raise UserError(f"{discover_in} is not a folder")
        envs += [e for e in discover(physical(discover_in), cache) if e not in envs]
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
    return AdoptResult(cache.path, rows)
