"""``uv cache prune|clean`` through the shim: verify roots under uv's lock, then let uv delete.

Order: take uv's cache lock exclusively (unless ``--force``); re-verify every root of this host,
drop the dead, keep other hosts' roots until their lease ends; make sure every kept archive is
pinned in the buckets of the uv version that will prune; run the real ``uv cache prune``; report
what was kept and why.
"""

from __future__ import annotations

import os
import sys

from shim import envscan, gc, holds, hostid, realuv, report, uvargs, uvfeatures
from shim.cache import LOCK_FILE, ROOT_MARKERS, Cache
from shim.cachedir import CacheDirError, find_cache_dir, refuse_to_empty
from shim.locks import ExclusiveLock
from shim.manifest import LAST_PRUNE
from shim.policy import Policy, PolicyError, policy_from

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import NoReturn, Optional

    from shim import evict


def lease_seconds(env: Mapping[str, str]) -> float:
    value = env.get("UV_SHIM_LEASE")
    if not value:
        return gc.DEFAULT_LEASE
    try:
        return report.parse_duration(value)
    except ValueError:
        raise realuv.ShimError(f"UV_SHIM_LEASE={value} is not a duration (like 30d, 12h, 3600)") from None


def lock_timeout(env: Mapping[str, str]) -> float:
    value = env.get("UV_LOCK_TIMEOUT")
    try:
        return float(int(value)) if value else float(uvfeatures.LOCK_TIMEOUT_DEFAULT)
    except ValueError:
        return float(uvfeatures.LOCK_TIMEOUT_DEFAULT)  # uv warns and uses its default too


def _error(message: str) -> NoReturn:
    sys.stderr.write(f"uv-shim: error: {message}\n")
    sys.stderr.flush()
    os._exit(2)


class KeptSize:
    """Bytes of the kept archives, measured in a thread while uv prunes (kept archives are
    pinned, so uv leaves them alone), from the size memo where it can."""

    def __init__(self, cache: Cache, roots: list[gc.Root]) -> None:
        import threading

        self.archives = sorted(gc.protected(roots))
        self.cache = cache
        self.size = 0
        self.thread = threading.Thread(target=self._measure, daemon=True)
        self.thread.start()

    def _measure(self) -> None:
        from shim.sizes import ArchiveSizes

        sizes = ArchiveSizes(self.cache)
        self.size = sum(sizes.get(aid) for aid in self.archives)
        try:
            present = os.listdir(self.cache.archives)
        except OSError:
            present = []
        sizes.save(present)

    def result(self) -> int:
        self.thread.join()
        return self.size


def summarize(out: report.Out, roots: list[gc.Root], cache: Cache, sizes: Optional[KeptSize] = None) -> None:
    """What was kept and why, in uv's style, after uv's own lines."""
    if out.quiet:
        return
    kept = gc.protected(roots)
    try:
        present = set(os.listdir(cache.archives)).intersection(kept)
    except OSError:
        present = set()
    holders = {r.key for aid in present for r in kept[aid]}
    if present:
        size = (sizes or KeptSize(cache, roots)).result()
        out.fact(
            f"Kept {report.plural(len(present), 'archive')} ({report.human_size(size)}) used by "
            f"{report.plural(len(holders), 'environment')}"
        )
    for root in roots:
        if root.state == gc.LIVE and root.archives and out.verbose and not out.quiet:
            names = sorted({d.key for d in root.distributions(cache).values() if d.archive in root.archives})
            what = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            out.detail(f"Kept for {root.path}: {what}")
        elif root.state == gc.FOREIGN:
            host = root.record.host if root.record else "?"
            out.fact(
                f"Kept {report.plural(len(root.archives), 'archive')} of {root.path} on host {host} ({root.reason})"
            )
        elif root.state == gc.EXPIRED:
            host = root.record.host if root.record else "?"
            out.fact(f"Released {root.path} on host {host}: lease ended ({root.reason})")
        elif root.state == gc.DEAD:
            out.detail(f"Released {root.path}: {root.reason}")
        elif root.state == gc.UNVERIFIABLE:
            out.warn(
                f"cannot verify {root.path} ({root.reason}); keeping its {report.plural(len(root.archives), 'archive')}"
            )
    dead = [r for r in roots if r.state == gc.DEAD]
    if dead:
        out.fact(
            f"Released {report.plural(len(dead), 'environment')} that no longer exist{'s' if len(dead) == 1 else ''} or use this cache"
        )


def _locked_verify(
    cache: Cache, inv: uvargs.Invocation, out: report.Out, env: Mapping[str, str]
) -> tuple[Optional[ExclusiveLock], list[gc.Root]]:
    """Take uv's cache lock (unless --force) and bring every root up to date: (lock, roots)."""
    lock: Optional[ExclusiveLock] = None
    try:
        lease = lease_seconds(env)
    except realuv.ShimError as e:
        _error(str(e))
    if not inv.has("--force"):
        lock = ExclusiveLock(cache.root, lock_timeout(env), out.fact)
        try:
            lock.acquire()
        except TimeoutError as e:
            _error(str(e))
        except OSError as e:
            _error(f"cannot lock the cache at {cache.root}: {e.strerror}")
    try:
        roots = gc.verify(cache, hostid.identity()[1], lease)
    except Exception as e:
        _error(f"could not verify the environments that use {cache.root} ({e}); nothing was removed")
    return lock, roots


def _run_locked(
    lock: Optional[ExclusiveLock],
    force_since: tuple[int, ...],
    version: tuple[int, ...],
    exec_path: str,
    argv0: str,
    args: list[str],
) -> int:
    """Run the real uv while we hold its lock: with --force where it has it, else after release."""
    uv_args = list(args)
    if lock is not None:
        if version >= force_since:
            uv_args.append("--force")  # we hold the lock uv would wait for
        elif version >= uvfeatures.LOCKS_CACHE:
            lock.release()  # this uv locks but cannot skip it: let it take the lock itself
    code = realuv.run_uv(exec_path, argv0, uv_args, os.environ)
    if lock is not None:
        lock.release()
    return code


def validate(exec_path: str, argv0: str, args: list[str]) -> None:
    """Let the real uv parse the arguments before anything changes: the same command, pointed at
    a cache that does not exist (so it can change nothing). If uv rejects them, that is the
    answer: its own message and exit code, and nothing in the cache has changed."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="uv-shim-") as tmp:
        empty = os.path.join(tmp, "no-cache-here")
        env = realuv.child_env({**os.environ, "UV_CACHE_DIR": empty}, exec_=False)
        try:
            proc = subprocess.run(
                [argv0, *_with_cache_dir(args, empty)],
                executable=exec_path,
                env=env,
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                timeout=120,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            _error(f"cannot run {exec_path} to check the arguments: {e}")
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        realuv.mirror_exit(proc.returncode)


def _with_cache_dir(args: list[str], path: str) -> list[str]:
    """``args`` with every ``--cache-dir`` value replaced by ``path`` (options end at ``--``)."""
    out: list[str] = []
    it = iter(args)
    for arg in it:
        if arg == "--":
            out.append(arg)
            out.extend(it)
        elif arg == "--cache-dir":
            out += [arg, path]
            next(it, None)
        elif arg.startswith("--cache-dir="):
            out.append(f"--cache-dir={path}")
        else:
            out.append(arg)
    return out


def _setup(real: realuv.RealUv, inv: uvargs.Invocation, argv0: str, exec_path: str, args: list[str]) -> tuple:
    """The cache the real uv will work on (uv's own answer), refused if it is no uv cache."""
    env = os.environ
    out = report.Out(quiet=inv.has("-q", "--quiet"), verbose=inv.has("-v", "--verbose"))
    try:
        build = realuv.build_of(real)
        root = find_cache_dir(real, build, inv, os.getcwd(), env, ask=True)
    except realuv.ShimError as e:
        _error(str(e))
    except CacheDirError as e:
        sys.stderr.write(e.stderr)
        realuv.mirror_exit(e.code)
    except OSError as e:  # a deleted working directory, say: uv decides what that means
        out.warn(f"cannot find the cache ({e.strerror}); running uv without protection")
        root = None
    if root is None or not os.path.isdir(root):
        realuv.exec_uv(exec_path, argv0, args, env)  # no cache: nothing to protect
    why = refuse_to_empty(root, build, env)
    if why:
        _error(why)
    return Cache(root, build), out


def dry_run(
    cache: Cache, inv: uvargs.Invocation, out: report.Out, as_json: bool, policy: Optional[Policy] = None
) -> NoReturn:
    """``uv cache prune --dry-run [--ci] [--json]``: what the real prune would remove and keep.

    Decides exactly as a prune through the shim would (roots verified, without writing), then
    models uv's own prune on the result (``shim.plan``). Takes no lock and changes nothing.
    """
    from shim import plan as planner

    try:
        roots = gc.verify(cache, hostid.identity()[1], lease_seconds(os.environ), dry_run=True)
    except realuv.ShimError as e:
        _error(str(e))
    kept = gc.protected(roots)
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
            "cache": cache.root,
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
    out.fact(f"Pruning cache at: {cache.root} (dry run: nothing is removed)")
    lines = []
    for path in p.stale:
        lines.append(f"Would remove stale cache entry: {os.path.basename(path)}")
    for path in p.environments:
        lines.append(f"Would remove cached environment: {os.path.relpath(path, cache.root)}")
    for path in p.ci:
        lines.append(f"Would remove (--ci): {os.path.relpath(path, cache.root)}")
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
        _error(str(e))
    if "--dry-run" in args:
        args = [a for a in args if a not in ("--dry-run", "--json")]
        validate(exec_path, argv0, args)
        cache, out = _setup(real, inv, argv0, exec_path, args)
        dry_run(cache, inv, out, "--json" in inv.argv, policy)
    validate(exec_path, argv0, args)
    cache, out = _setup(real, inv, argv0, exec_path, args)
    lock, roots = _locked_verify(cache, inv, out, os.environ)
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
        _error(f"cannot evict from {cache.root}: {e.strerror} ({e.filename}); nothing was removed")
    sizes = KeptSize(cache, roots) if not out.quiet else None
    code = _run_locked(lock, uvfeatures.PRUNE_FORCE, cache.build.version_tuple, exec_path, argv0, args)
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


def clean(real: realuv.RealUv, argv0: str, exec_path: str, args: list[str], inv: uvargs.Invocation) -> NoReturn:
    """``uv cache clean [PACKAGE...] [--force] [--all]``.

    With packages: uv's own clean, whose reference check counts our pins, so in-use archives of
    those packages stay; we report them. Without: everything but the archives live symlink
    environments use and the manifest is removed. ``--all`` (or ``UV_SHIM_ALLOW_BREAK=1``) lists
    the environments it will break, then runs uv's full clean.
    """
    env = os.environ
    break_all = "--all" in args or uvargs.env_true(env, "UV_SHIM_ALLOW_BREAK")
    uv_args = [a for a in args if a != "--all"]
    validate(exec_path, argv0, uv_args)
    cache, out = _setup(real, inv, argv0, exec_path, uv_args)
    lock, roots = _locked_verify(cache, inv, out, env)
    kept = gc.protected(roots)
    packages = {envscan.normalize(p) for p in inv.positionals}
    if break_all:
        for root in roots:
            if root.archives and root.state != gc.DEAD:
                out.fact(
                    f"Breaking {root.path}: {report.plural(len(root.archives), 'archive')} it links will be removed"
                )
        code = _run_locked(lock, uvfeatures.CLEAN_FORCE, cache.build.version_tuple, exec_path, argv0, uv_args)
        realuv.mirror_exit(code)
    if packages or (not kept and cache.area() is None):
        # uv's own clean: its reference check counts our pins; with nothing of ours to keep, the
        # whole clean is uv's
        code = _run_locked(lock, uvfeatures.CLEAN_FORCE, cache.build.version_tuple, exec_path, argv0, uv_args)
        if code == 0 and packages:
            _report_packages(out, roots, cache, packages)
        realuv.mirror_exit(code)
    out.fact(f"Clearing cache at: {cache.root}")
    try:
        removed, size = clear_except(cache, set(kept))
    except OSError as e:
        if lock is not None:
            lock.release()
        _error(f"cannot clear {e.filename or cache.root}: {e.strerror}")
    if lock is not None:
        lock.release()
    out.fact(
        f"Removed {report.plural(removed, 'file')} ({report.human_size(size)})" if removed else "No cache entries found"
    )
    summarize(out, roots, cache)
    realuv.mirror_exit(0)


def _report_packages(out: report.Out, roots: list[gc.Root], cache: Cache, packages: set[str]) -> None:
    lines = []
    for root in roots:
        if not root.record:
            continue
        for d in root.distributions(cache).values():
            if (
                d.name in packages
                and d.archive in root.archives
                and os.path.isdir(os.path.join(cache.archives, d.archive))
            ):
                lines.append(f"Kept {d.key} ({d.archive}): used by {root.path}")
    out.facts(sorted(set(lines)))


KEEP_AT_ROOT = frozenset((*ROOT_MARKERS, LOCK_FILE))


def clear_except(cache: Cache, archives: set[str]) -> tuple:
    """Remove everything in the cache but ``archives`` and our record areas: (files, bytes).

    Every removal walks from the cache's folder descriptor and never follows a symlink (see
    ``shim.confined``); each inode is counted once.
    """
    import stat

    from shim.cache import ARCHIVE_BUCKET, SDISTS_PREFIX, SHIM_DIR
    from shim.confined import Unsafe

    seen: set = set()
    counts = [0, 0]

    def count(st: os.stat_result) -> None:
        counts[0] += 1
        key = (st.st_dev, st.st_ino)
        if key not in seen:
            seen.add(key)
            counts[1] += st.st_size

    root = cache.dir()
    for name in sorted(root.listdir()):
        if name in KEEP_AT_ROOT:
            continue
        keep = archives if name == ARCHIVE_BUCKET else {SHIM_DIR} if name.startswith(SDISTS_PREFIX) else None
        if keep is not None and stat.S_ISDIR(root.lstat(name).st_mode):
            try:
                with root.sub(name) as bucket:
                    for child in sorted(bucket.listdir()):
                        if child not in keep:
                            bucket.remove_tree(child, count)
                continue
            except Unsafe:
                pass  # swapped for a link since the lstat: removed below, never followed
        root.remove_tree(name, count)
    return counts[0], counts[1]
