"""``uv cache clean [PACKAGE...] [--all]`` through the shim.

With packages: uv's own clean, whose reference check counts our pins, so in-use archives of those
packages stay; we report them. Without: everything but the archives live symlink environments use
and our records is removed (uv cannot express "all but these"), walking from the cache's folder
descriptor; with no records at all, the clearing is uv's. ``--all`` (or ``UV_SHIM_ALLOW_BREAK=1``)
names the environments it will break, then runs uv's full clean.
"""

from __future__ import annotations

import os

from shim import envscan, liveness, realuv, report, uvargs, uvfeatures
from shim.cache import LOCK_FILE, ROOT_MARKERS, Cache
from shim.cachecmd import error, locked_verify, run_locked, setup, summarize

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn


def run(real: realuv.RealUv, argv0: str, exec_path: str, args: list[str], inv: uvargs.Invocation) -> NoReturn:
    """``uv cache clean [PACKAGE...] [--force] [--all]``.

    With packages: uv's own clean, whose reference check counts our pins, so in-use archives of
    those packages stay; we report them. Without: everything but the archives live symlink
    environments use and the manifest is removed. ``--all`` (or ``UV_SHIM_ALLOW_BREAK=1``) lists
    the environments it will break, then runs uv's full clean.
    """
    env = os.environ
    break_all = "--all" in args or uvargs.env_true(env, "UV_SHIM_ALLOW_BREAK")
    uv_args = [a for a in args if a != "--all"]
    cache, out = setup(real, inv, argv0, exec_path, uv_args)
    lock, roots = locked_verify(cache, inv, out, env)
    kept = liveness.protected(roots)
    packages = {envscan.normalize(p) for p in inv.positionals}
    if break_all:
        for root in roots:
            if root.archives and root.state != liveness.DEAD:
                out.fact(
                    f"Breaking {root.path}: {report.plural(len(root.archives), 'archive')} it links will be removed"
                )
        code = run_locked(lock, uvfeatures.CLEAN_FORCE, cache.build.version_tuple, exec_path, argv0, uv_args)
        realuv.mirror_exit(code)
    if packages or (not kept and cache.area() is None):
        # uv's own clean: its reference check counts our pins; with nothing of ours to keep, the
        # whole clean is uv's
        code = run_locked(lock, uvfeatures.CLEAN_FORCE, cache.build.version_tuple, exec_path, argv0, uv_args)
        if code == 0 and packages:
            _report_packages(out, roots, cache, packages)
        realuv.mirror_exit(code)
    out.fact(f"Clearing cache at: {cache.path}")
    try:
        removed, size = clear_except(cache, set(kept))
    except OSError as e:
        if lock is not None:
            lock.release()
        error(f"cannot clear {e.filename or cache.path}: {e.strerror}")
    if lock is not None:
        lock.release()
    out.fact(
        f"Removed {report.plural(removed, 'file')} ({report.human_size(size)})" if removed else "No cache entries found"
    )
    summarize(out, roots, cache)
    realuv.mirror_exit(0)


def _report_packages(out: report.Out, roots: list[liveness.Root], cache: Cache, packages: set[str]) -> None:
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
    """Remove everything in the cache but ``archives`` and our record areas: (files removed,
    bytes freed as ``shim.sizes`` measures them: an inode counts once all its links are gone).

    Every removal walks from the cache's folder descriptor and never follows a symlink (see
    ``shim.confined``).
    """
    import stat

    from shim.cache import ARCHIVE_BUCKET, SDISTS_PREFIX, SHIM_DIR
    from shim.confined import Unsafe
    from shim.sizes import disk_bytes

    links: dict[tuple[int, int], list[int]] = {}  # inode -> [links removed, link count, bytes, is a folder]

    def count(st: os.stat_result) -> None:
        seen = links.setdefault((st.st_dev, st.st_ino), [0, st.st_nlink, disk_bytes(st), stat.S_ISDIR(st.st_mode)])
        seen[0] += 1

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
    files = sum(n for n, _nlink, _size, is_dir in links.values() if not is_dir)
    freed = sum(size for n, nlink, size, is_dir in links.values() if is_dir or n >= nlink)
    return files, freed
