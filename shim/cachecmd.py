"""What ``uv cache prune`` and ``uv cache clean`` through the shim share.

The real uv checks the arguments first (against a cache that does not exist); the real uv says
which cache the command uses, and a folder that is no uv cache is refused; uv's cache lock is
taken exclusively and every root verified under it; the real uv runs while we hold the lock; what
was kept, and why, is reported after uv's own lines.
"""

from __future__ import annotations

import os
import sys

from shim import hostid, liveness, paths, realuv, report, uvargs, uvfeatures
from shim.cache import Cache
from shim.cachedir import CacheDirError, find_cache_dir, refuse_to_empty
from shim.errors import ShimError
from shim.locks import ExclusiveLock

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any, NoReturn, Optional


def lease_seconds(env: Mapping[str, str]) -> float:
    value = env.get("UV_SHIM_LEASE")
    if not value:
        return liveness.DEFAULT_LEASE
    try:
        return report.parse_duration(value)
    except ValueError:
        raise realuv.ShimError(f"UV_SHIM_LEASE={report.shown(value)} is not a duration (like 30d, 12h, 3600)") from None


def lock_timeout(env: Mapping[str, str]) -> float:
    value = env.get("UV_LOCK_TIMEOUT")
    try:
        return float(int(value)) if value else float(uvfeatures.LOCK_TIMEOUT_DEFAULT)
    except ValueError:
        return float(uvfeatures.LOCK_TIMEOUT_DEFAULT)  # uv warns and uses its default too


def error(message: str) -> NoReturn:
    """Stop the command with one line (the entry point prints it and exits 2); nothing changed."""
    raise ShimError(message)


def kept(
    cache: Cache,
    roots: list[liveness.Root],
    sizes: Optional[dict[str, int]] = None,
    protected: Optional[dict[str, list[liveness.Root]]] = None,
    listed: Optional[Iterable[str]] = None,
) -> dict[str, Any]:
    """The archives still in the cache that roots protect: count, bytes (``shim.sizes``) and by
    how many environments. ``sizes`` (archive id -> bytes), ``protected``
    (``liveness.protected(roots)``) and ``listed`` (the archive bucket's names), when already
    known."""
    protected = liveness.protected(roots) if protected is None else protected
    try:
        present = sorted(set(os.listdir(cache.archives) if listed is None else listed).intersection(protected))
    except OSError:
        present = []
    if sizes is None:
        from shim.sizes import ArchiveSizes

        memo = ArchiveSizes(cache)
        sizes = {aid: memo.get(aid)[0] for aid in present}
    holders = {r.key for aid in present for r in protected[aid]}
    return {"archives": len(present), "bytes": sum(sizes.get(a, 0) for a in present), "environments": len(holders)}


def kept_fact(k: dict[str, Any], would: bool = False) -> str:
    return (
        f"{'Would keep' if would else 'Kept'} {report.plural(k['archives'], 'archive')} ({report.human_size(k['bytes'])})"
        f" used by {report.plural(k['environments'], 'environment')}"
    )


def summarize(out: report.Out, roots: list[liveness.Root], cache: Cache, counted: bool = False) -> None:
    """What was kept and why, in uv's style, after uv's own lines (``counted``: the caller has
    already said how much was kept)."""
    if out.quiet:
        return
    if not counted:
        k = kept(cache, roots)
        if k["archives"]:
            out.fact(kept_fact(k))
    for root in roots:
        if root.moved_from:
            out.fact(f"Followed {root.moved_from} to {root.path} (moved or renamed)")
        if root.state == liveness.LIVE and root.archives and out.verbose and not out.quiet:
            names = sorted({d.key for d in root.distributions(cache).values() if d.archive in root.archives})
            what = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            out.detail(f"Kept for {root.path}: {what}")
        elif root.state == liveness.FOREIGN:
            host = root.record.host if root.record else "?"
            out.fact(
                f"Kept {report.plural(len(root.archives), 'archive')} of {root.path} on host {host} ({root.reason})"
            )
        elif root.state == liveness.EXPIRED:
            host = root.record.host if root.record else "?"
            out.fact(f"Released {root.path} on host {host}: lease ended ({root.reason})")
        elif root.state == liveness.DEAD:
            out.detail(f"Released {root.path}: {root.reason}")
        elif root.state == liveness.UNVERIFIABLE:
            out.warn(
                f"cannot verify {root.path} ({root.reason}); keeping its {report.plural(len(root.archives), 'archive')}"
            )
    dead = [r for r in roots if r.state == liveness.DEAD]
    if dead:
        out.fact(
            f"Released {report.plural(len(dead), 'environment')} that no longer exist{'s' if len(dead) == 1 else ''} or use this cache"
        )


def locked_verify(
    cache: Cache, inv: uvargs.Invocation, out: report.Out, env: Mapping[str, str], memo: bool = False
) -> tuple[Optional[ExclusiveLock], list[liveness.Root]]:
    """Take uv's cache lock (unless --force) and bring every root up to date: (lock, roots).
    ``memo``: as ``liveness.verify``'s (only where uv does the deleting)."""
    lock: Optional[ExclusiveLock] = None
    try:
        lease = lease_seconds(env)
    except realuv.ShimError as e:
        error(str(e))
    if not inv.has("--force"):
        lock = ExclusiveLock(cache.path, lock_timeout(env), out.fact)
        try:
            lock.acquire()
        except TimeoutError as e:
            error(str(e))
        except OSError as e:
            error(f"cannot lock the cache at {cache.path}: {e.strerror}")
    try:
        roots = liveness.verify(cache, hostid.identity()[1], lease, memo=memo)
    except Exception as e:
        error(f"could not verify the environments that use {cache.path} ({e}); nothing was removed")
    return lock, roots


def run_locked(
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


class Validation:
    """The real uv parsing the arguments before anything changes: the same command, pointed at a
    cache that does not exist (so it can change nothing). Started at once, so uv's start overlaps
    the shim's own (finding the cache); ``check`` waits for it before anything is written. If uv
    rejects the arguments, that is the answer: its own message and exit code, nothing changed."""

    def __init__(self, exec_path: str, argv0: str, args: list[str]) -> None:
        import subprocess

        self.exec_path = exec_path
        self.done = False
        self.tmp = ""
        try:
            self.tmp = paths.private_temp_dir()
            empty = os.path.join(self.tmp, "no-cache-here")
            env = realuv.child_env({**os.environ, "UV_CACHE_DIR": empty}, exec_=False)
            self.proc: Optional[subprocess.Popen[str]] = subprocess.Popen(
                [argv0, *_with_cache_dir(args, empty)],
                executable=exec_path,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
            )
            self.error: Optional[Exception] = None
        except OSError as e:
            self.proc, self.error = None, e

    def check(self) -> None:
        """Wait for uv's verdict; exit as uv did if it rejected the arguments. Once."""
        import subprocess

        if self.done:
            return
        self.done = True
        try:
            if self.proc is None:
                error(f"cannot run {self.exec_path} to check the arguments: {self.error}")
            try:
                _out, err = self.proc.communicate(timeout=120)
            except subprocess.TimeoutExpired as e:
                self.proc.kill()
                self.proc.communicate()
                error(f"cannot run {self.exec_path} to check the arguments: {e}")
        finally:
            if self.tmp:
                paths.remove_temp_dir(self.tmp)
        if self.proc.returncode != 0:
            sys.stderr.write(err)
            realuv.mirror_exit(self.proc.returncode)


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


def setup(real: realuv.RealUv, inv: uvargs.Invocation, argv0: str, exec_path: str, args: list[str]) -> tuple:
    """The cache the real uv will work on (uv's own answer), refused if it is no uv cache. uv
    checks the arguments first (while the shim asks it for the cache): its verdict comes first."""
    checking = Validation(exec_path, argv0, args)
    env = os.environ
    out = report.Out(quiet=inv.has("-q", "--quiet"), verbose=inv.has("-v", "--verbose"))
    root = build = None
    try:
        build = realuv.build_of(real)
        root = find_cache_dir(real, build, inv, os.getcwd(), env, ask=True)
    except realuv.ShimError as e:
        checking.check()
        error(str(e))
    except CacheDirError as e:
        checking.check()
        sys.stderr.write(e.stderr)
        realuv.mirror_exit(e.code)
    except OSError as e:  # a deleted working directory, say: uv decides what that means
        checking.check()
        out.warn(f"cannot find the cache ({e.strerror}); running uv without protection")
    checking.check()
    if build is None or root is None or not os.path.isdir(root):
        realuv.exec_uv(exec_path, argv0, args, env)  # no cache: nothing to protect
    why = refuse_to_empty(root, build, env)
    if why:
        error(why)
    return Cache(root, build), out


def open_cache(cache_dir: Optional[str]) -> tuple[realuv.RealUv, Cache]:
    """For ``uv-shim`` commands: the cache the real uv uses here (its own ``uv cache dir``)."""
    from shim.errors import UserError

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


def verified_roots(cache: Cache) -> list[liveness.Root]:
    """Every root decided exactly as a prune would decide it, without writing anything."""
    return liveness.verify(cache, hostid.identity()[1], lease_seconds(os.environ), dry_run=True)
