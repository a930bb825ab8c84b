"""Install-time bookkeeping: register roots before uv runs, scan and pin after it returns.

Nothing here may change the user's result: every failure becomes at most one warning line and
uv's own exit code stands.
"""

from __future__ import annotations

import errno
import os
import sys
import time

from shim import (
    autogc,
    envscan,
    generations,
    hostid,
    hostindex,
    manifest,
    realuv,
    style,
    targets,
    uvargs,
    uvfeatures,
)
from shim.cache import Cache
from shim.cachedir import find_cache_dir
from shim.confined import Dir
from shim.locks import SharedLock
from shim.manifest import Record, RecordError, is_pinned, pin, pins, unpin

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import NoReturn, Optional

TOUCH_EVERY = 3600.0  # seconds: last_used is rewritten at most this often on no-op paths


class Warnings:
    """At most one ``uv-shim: warning:`` line per invocation (uv's output stays uv's); a detached
    helper hands its one line to ``sink`` instead (kept for the next command to print)."""

    def __init__(self, sink: Optional[Callable[[str], None]] = None) -> None:
        self.first: Optional[str] = None
        self.sink = sink

    def __call__(self, message: str) -> None:
        if self.first is None:
            self.first = message
            if self.sink is not None:
                self.sink(message)
                return
            style.warn(message)


class Book:
    """The roots touched by one uv invocation, in one cache."""

    def __init__(self, cache: Cache, warn: Warnings) -> None:
        self.cache = cache
        self.warn = warn
        self.host, self.host_id = hostid.identity()
        self.generations: list[str] = [generations.current(cache)]  # see sync_generations
        self._index: Optional[hostindex.Index] = None

    @property
    def index(self) -> hostindex.Index:
        if self._index is None:
            self._index = hostindex.Index(self.cache.path)
        return self._index

    def sync_generations(self) -> None:
        """Before any record is written: learn every uv generation this cache has seen (its
        areas and the host index), rebuild the areas a prune by another generation removed
        (from a surviving copy, else by rescanning what the host index lists), one line if so."""
        cache = self.cache
        names, survivors = generations.survey(cache, self.index.generations)
        if not survivors and self.index.envs:
            self.warn(
                f"the records of {len(self.index.envs)} environment(s) are gone from {cache.path} (a prune by "
                "another uv version, or `uv cache clean`); rebuilding them by a rescan"
            )
            generations.note(cache, names)
            self.generations = names
            for path, kind in sorted(self.index.envs.items()):
                try:
                    self.update(path, kind)
                except (OSError, RecordError):
                    continue
        else:
            restored = generations.restore(cache, names, survivors)
            generations.note(cache, names)
            if [b for b in restored if b != generations.current(cache) or b in self.index.generations]:
                self.warn(
                    f"restored uv-shim's records in {', '.join(restored)} (a prune by another uv version removed them)"
                )
            self.generations = names
        self.index.add_generations(names)

    def key(self, env_path: str) -> tuple[str, str]:
        real = os.path.realpath(env_path)
        return real, manifest.entry_key(self.host_id, real)

    def _load(self, entry: Dir, key: str, real: str, kind: str, header: bool = False) -> tuple[Record, bool]:
        """The current record (or a fresh one) and whether it must be written. With ``header``,
        without its distributions when the header reads (no TOML parse: the caller replaces them)."""
        if header:
            got = manifest.quick_header(entry)
            if got is not None:
                return got[0], False
        try:
            return manifest.load(entry), False
        except FileNotFoundError:
            pass
        except RecordError as e:
            where = os.path.join(entry.path, manifest.RECORD)
            if e.future:
                raise RecordError(f"record {where}: {e}; leaving it and its pins as they are", future=True) from None
            self.warn(f"record {where} is unusable ({e}); rebuilding it by a rescan")
            return self._new(real, kind), True
        for area in self.cache.other_areas():  # written under another uv version: carry it over
            with area:
                try:
                    with area.sub(key) as other:
                        rec = manifest.load(other)
                except (OSError, RecordError):
                    continue
            rec.scanned = False
            return rec, True
        return self._new(real, kind), True

    def _new(self, real: str, kind: str) -> Record:
        return Record(path=real, host=self.host, host_id=self.host_id, kind=kind, uv_version=self.cache.build.version)

    def register(self, env_path: str, kind: str) -> None:
        """Make sure a root exists before uv runs, so an install in flight is already known."""
        real, key = self.key(env_path)
        with self.cache.entry(key, create=True) as entry:  # type: ignore[union-attr]
            if manifest.exists(entry):
                return
            with manifest.lock(entry):
                rec, dirty = self._load(entry, key, real, kind)
                if dirty:
                    manifest.save(entry, rec)

    def update(self, env_path: str, kind: str, final: bool = True) -> bool:
        """Scan the environment, pin what it links by symlink, drop pins it no longer needs.
        True when the environment is recorded (it links something from the cache).

        Not ``final`` while uv may still be installing: an environment that does not exist yet
        or links nothing yet keeps its root."""
        real, key = self.key(env_path)
        if not os.path.isdir(real):
            if final:
                self._forget(key, "the environment was gone after uv ran")
            return False
        scanned_at = time.time()
        try:
            stamp = envscan.site_stamp(real, kind)
        except OSError as e:
            self.warn(f"cannot scan {real} ({e.strerror}); keeping its recorded pins")
            return False
        if self._unchanged(key, stamp):
            return True  # the common no-op: nothing came or went since the last full scan
        try:
            dists = envscan.scan(real, kind, self.cache)
        except OSError as e:
            self.warn(f"cannot scan {real} ({e.strerror}); keeping its recorded pins")
            return False
        if not dists:
            if final:
                self._forget(key, "it linked nothing from the cache after uv ran")
            return False
        stamp = envscan.settled(stamp, scanned_at) if final else ""  # during an install: what lands in this tick
        if self._unchanged(key, stamp, dists):
            return True  # nothing changed (and no newer stamp to keep): nothing to write
        with self.cache.entry(key, create=True) as entry, manifest.lock(entry):  # type: ignore[union-attr]
            created = not manifest.exists(entry)
            rec, _ = self._load(entry, key, real, kind, header=True)
            old_pins = set(pins(entry))
            rec.set_dists(dists)
            rec.site_stamp = stamp
            rec.uv_version = self.cache.build.version
            rec.python = rec.python or envscan.python_version(real)
            rec.inode = envscan.inode_of(real)
            new_pins = set(rec.pinned)
            for aid in sorted(new_pins):
                pin(entry, aid)  # pins before the record: fail closed if we die here
            rec.last_used_at = manifest.now()
            data = manifest.save(entry, rec)
            for aid in sorted(old_pins - new_pins) if final else ():  # during an install: only add
                unpin(entry, aid)
        generations.mirror(self.cache, self.generations, key, data, new_pins)
        if created or real not in self.index.envs:
            self.index.add_env(real, kind)
        return True

    def _forget(self, key: str, why: str) -> None:
        entry = self.cache.entry(key)
        if entry is None:
            return
        with entry, manifest.lock(entry):
            area = self.cache.area()
            assert area is not None
            try:
                manifest.log_release(area, manifest.load(entry), why)
            except (OSError, RecordError):
                pass  # no readable record: nothing to say about it
            manifest.remove(area, key)
        generations.forget(self.cache, self.generations, key)

    def _unchanged(self, key: str, stamp: str, dists: Optional[dict[str, envscan.Dist]] = None) -> bool:
        """Nothing to write: the record is fresh (rewritten at most every ``TOUCH_EVERY``) and
        mirrored to every generation, and either its settled stamp is today's (before a scan,
        ``dists`` None) or the scan found what it records, pinned, with no newer stamp to keep."""
        entry = self.cache.entry(key)
        if entry is None:
            return False
        with entry:
            quick = manifest.quick_header(entry)
            if quick is None or time.time() - quick[2] >= TOUCH_EVERY:
                return False
            head, fp, _ = quick
            if dists is None:
                same = manifest.stamp_holds(head, stamp, any(pins(entry)))
            else:
                same = (
                    fp == manifest.fingerprint(dists) and stamp in ("", head.site_stamp) and self._pinned(entry, dists)
                )
            return same and generations.mirrored(self.cache, self.generations, key, fp)

    @staticmethod
    def _pinned(entry: Dir, dists: dict[str, envscan.Dist]) -> bool:
        return all(is_pinned(entry, d.archive) for d in dists.values() if d.mode == envscan.SYMLINK)


# ---------------------------------------------------------------------------------------------
# One intercepted invocation
# ---------------------------------------------------------------------------------------------


def prepare(
    real: realuv.RealUv, inv: uvargs.Invocation, warn: Warnings
) -> tuple[Optional[Book], list[tuple[str, str]], bool, Optional[SharedLock]]:
    """Before uv runs (or while it starts, in a background helper): the cache, the environments
    this command will touch, their roots registered. Returns the book (None: nothing to record or
    cannot), the environments, whether uv runs the program in an environment it keeps in the cache,
    and the shared lock taken for a command that does not hand over to a program (``uv run`` and
    ``uvx`` leave theirs to the helper that watches them)."""
    env = os.environ
    book: Optional[Book] = None
    envs: list[tuple[str, str]] = []
    lock: Optional[SharedLock] = None
    cached = False  # runs in an environment uv keeps in the cache (it may not exist yet)
    try:
        cwd = os.getcwd()  # FileNotFoundError in a deleted working directory: uv decides then
        build = realuv.build_of(real)
        if not uvfeatures.changes_environments(inv.words, build.version_tuple):
            return None, [], False, None
        root = find_cache_dir(real, build, inv, cwd, env)
        if root is not None and os.path.isdir(root) and not os.access(root, os.W_OK):
            raise OSError(errno.EROFS, "cache is not writable (read-only file system?)", root)
        if root is not None:
            book = Book(Cache(root, build), warn)
            try:
                book.sync_generations()
            except (OSError, RecordError) as e:  # the other generations wait; this one is protected
                warn(describe(e, "cannot keep uv-shim's records for other uv versions"))
            envs = targets.environments_for(inv, book.cache, real, cwd, env)
            cached = uvargs.runs_child(inv) and targets.wants_cached_envs(build, inv, cwd, env)
            if envs and not uvargs.runs_child(inv):
                lock = SharedLock(root)
                lock.acquire()
            for path, kind in envs:
                try:
                    book.register(path, kind)
                except RecordError as e:
                    warn(str(e))
    except Exception as e:
        warn(describe(e, "cannot record environments; running uv without protection"))
        book = None
    if book is None or not (envs or cached):
        if lock is not None:
            lock.release()
        return None, [], False, None
    return book, envs, cached, lock


def intercept(real: realuv.RealUv, argv0: str, exec_path: str, args: list[str], inv: uvargs.Invocation) -> NoReturn:
    """The foreground path: Python in front of uv (the launcher sends a command here when it
    cannot hand the bookkeeping to a background helper, see ``followup.after``)."""
    t_start = time.perf_counter()
    env = os.environ
    warn = Warnings()
    book, envs, cached, lock = prepare(real, inv, warn)
    if book is None:
        realuv.exec_uv(exec_path, argv0, args, env)  # nothing to record (or cannot): pure passthrough
    _print_notices(book)
    if uvargs.runs_child(inv):
        # The child may run for hours: a detached helper pins what uv installs, then uv takes over.
        try:
            from shim import followup  # only here: an install never needs it

            followup.start(book.cache.path, book.cache.build, envs, inv, cached, book.generations, real.path)
        except Exception as e:
            warn(describe(e, "cannot start the helper that records what uv installs"))
        realuv.exec_uv(exec_path, argv0, args, env)

    t_pre = time.perf_counter() - t_start
    code = realuv.run_uv(exec_path, argv0, args, env)
    t_uv = time.perf_counter()
    try:
        if lock is not None:
            lock.acquire()  # the cache may not have existed before uv ran
        update_all(book, envs, warn, "could not record what uv installed")
    except Exception as e:
        warn(describe(e, "could not record what uv installed"))
    except KeyboardInterrupt:
        pass  # uv has finished: its exit code stands
    finally:
        if lock is not None:
            lock.release()
    autogc.maybe_start(book.cache.path, book.cache.build, real.path)
    if inv.has("-v", "--verbose"):
        t_post = time.perf_counter() - t_uv
        sys.stderr.write(
            f"uv-shim: bookkeeping took {(t_pre + t_post) * 1000:.1f}ms (before uv {t_pre * 1000:.1f}ms, "
            f"after {t_post * 1000:.1f}ms) for {len(envs)} environment(s) in {book.cache.path}\n"
        )
    realuv.mirror_exit(code)


def _print_notices(book: Book) -> None:
    """What a detached helper could not say on its own (at most one line each, then gone)."""
    try:
        for message in manifest.take_notices(book.cache):
            book.warn(message)
    except Exception:  # a notice is never worth failing the command
        pass


def update_all(book: Book, envs: list[tuple[str, str]], warn: Warnings, what: str) -> None:
    for path, kind in envs:
        try:
            book.update(path, kind)
        except RecordError as e:
            warn(str(e))
        except Exception as e:
            warn(describe(e, what))


def describe(e: Exception, what: str) -> str:
    if isinstance(e, OSError):
        where = f" ({e.filename})" if e.filename else ""
        return f"{what}: {e.strerror or e}{where}"
    return f"{what}: {e}"
