"""``uv cache prune`` through the shim: verify roots under uv's lock, then let the real uv prune.

Order: take uv's cache lock exclusively (unless ``--force``); re-verify every root of this host,
drop the dead, keep other hosts' roots until their lease ends; make sure every kept archive is
pinned in the buckets of the uv version that will prune; run the real ``uv cache prune``; report
what was kept and why.
"""

from __future__ import annotations

import os
import sys

from shim import gc, hostid, realuv, report, uvargs, uvfeatures
from shim.cache import Cache, ExclusiveLock, find_cache_dir

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, NoReturn, Optional, Set


def lease_seconds(env) -> float:
    value = env.get("UV_SHIM_LEASE")
    if not value:
        return gc.DEFAULT_LEASE
    try:
        return report.parse_duration(value)
    except ValueError:
        raise realuv.ShimError(f"UV_SHIM_LEASE={value} is not a duration (like 30d, 12h, 3600)") from None


def lock_timeout(env) -> float:
    value = env.get("UV_LOCK_TIMEOUT")
    try:
        return float(int(value)) if value else float(uvfeatures.LOCK_TIMEOUT_DEFAULT)
    except ValueError:
        return float(uvfeatures.LOCK_TIMEOUT_DEFAULT)  # uv warns and uses its default too


def _error(message: str) -> NoReturn:
    sys.stderr.write(f"uv-shim: error: {message}\n")
    sys.stderr.flush()
    os._exit(2)


def summarize(out: report.Out, roots: List[gc.Root], cache: Cache) -> None:
    """What was kept and why, in uv's style, after uv's own lines."""
    kept = gc.protected(roots)
    present = {aid for aid in kept if os.path.isdir(os.path.join(cache.archives, aid))}
    holders = {r.key for aid in present for r in kept[aid]}
    if present:
        seen: Set = set()
        size = sum(report.tree_size(os.path.join(cache.archives, aid), seen) for aid in sorted(present))
        out.fact(
            f"Kept {report.plural(len(present), 'archive')} ({report.human_size(size)}) used by "
            f"{report.plural(len(holders), 'environment')}"
        )
    for root in roots:
        names = sorted({d.key for d in root.record.distributions.values() if d.archive in root.archives}) if root.record else []
        what = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        if root.state == gc.LIVE and root.archives:
            out.detail(f"Kept for {root.path}: {what}")
        elif root.state == gc.FOREIGN:
            host = root.record.host if root.record else "?"
            out.fact(f"Kept {report.plural(len(root.archives), 'archive')} of {root.path} on host {host} ({root.reason})")
        elif root.state == gc.EXPIRED:
            host = root.record.host if root.record else "?"
            out.fact(f"Released {root.path} on host {host}: lease ended ({root.reason})")
        elif root.state == gc.DEAD:
            out.detail(f"Released {root.path}: {root.reason}")
        elif root.state == gc.UNVERIFIABLE:
            out.warn(f"cannot verify {root.path} ({root.reason}); keeping its {report.plural(len(root.archives), 'archive')}")
    dead = [r for r in roots if r.state == gc.DEAD]
    if dead:
        out.fact(f"Released {report.plural(len(dead), 'environment')} that no longer exist{'s' if len(dead) == 1 else ''}")


def run(real: realuv.RealUv, argv0: str, exec_path: str, args: List[str], inv: uvargs.Invocation) -> NoReturn:
    env = os.environ
    cwd = os.getcwd()
    out = report.Out(quiet=inv.has("-q", "--quiet"), verbose=inv.has("-v", "--verbose"))
    try:
        root = find_cache_dir(real, inv, cwd, env)
    except OSError:
        root = None
    if root is None or not os.path.isdir(root):
        realuv.exec_uv(exec_path, argv0, args, env)  # no cache: nothing to protect
    try:
        build = realuv.build_of(real)
        lease = lease_seconds(env)
    except realuv.ShimError as e:
        _error(str(e))
    cache = Cache(root, build)
    version = build.version_tuple
    lock: Optional[ExclusiveLock] = None
    if not inv.has("--force"):
        lock = ExclusiveLock(root, lock_timeout(env), out.fact)
        try:
            lock.acquire()
        except TimeoutError as e:
            _error(str(e))
        except OSError as e:
            _error(f"cannot lock the cache at {root}: {e.strerror}")
    try:
        roots = gc.verify(cache, hostid.identity()[1], lease)
    except Exception as e:  # noqa: BLE001 - fail closed: never prune what we could not check
        _error(f"could not verify the environments that use {root} ({e}); nothing was pruned")
    uv_args = list(args)
    if lock is not None:
        if version >= uvfeatures.PRUNE_FORCE:
            uv_args.append("--force")  # we hold the lock uv would wait for
        elif version >= uvfeatures.LOCKS_CACHE:
            lock.release()  # this uv locks but cannot skip it: let it take the lock itself
    code = realuv.run_uv(exec_path, argv0, uv_args, env)
    if lock is not None:
        lock.release()
    if code == 0:
        summarize(out, roots, cache)
    realuv.mirror_exit(code)
