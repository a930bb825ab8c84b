"""Install-time bookkeeping: register roots before uv runs, scan and pin after it returns.

Nothing here may change the user's result: every failure becomes at most one warning line and
uv's own exit code stands.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

from shim import envscan, hostid, manifest, realuv, uvargs
from shim.cache import Cache, SharedLock, find_cache_dir, is_archive_id
from shim.manifest import Record, RecordError

TOUCH_EVERY = timedelta(hours=1)  # last_used is rewritten at most this often on no-op paths


class Warnings:
    """At most one ``uv-shim: warning:`` line per invocation (uv's output stays uv's)."""

    def __init__(self) -> None:
        self.first: Optional[str] = None

    def __call__(self, message: str) -> None:
        if self.first is None:
            self.first = message
            if os.environ.get("UV_SHIM_QUIET_WARNINGS") != "1":
                sys.stderr.write(f"uv-shim: warning: {message}\n")
                sys.stderr.flush()


class Book:
    """The roots touched by one uv invocation, in one cache."""

    def __init__(self, cache: Cache, warn: Warnings) -> None:
        self.cache = cache
        self.warn = warn
        self.host, self.host_id = hostid.identity()

    def key(self, env_path: Path) -> Tuple[str, str]:
        real = os.path.realpath(env_path)
        return real, manifest.entry_key(self.host_id, real)

    def _load(self, key: str, real: str, kind: str) -> Tuple[Record, bool]:
        """The current record (or a fresh one) and whether it must be written."""
        entry = self.cache.entry_dir(key)
        try:
            return manifest.load(entry), False
        except FileNotFoundError:
            pass
        except RecordError as e:
            self.warn(f"record {entry / manifest.RECORD} is unusable ({e}); rebuilding it by a rescan")
            return self._new(real, kind), True
        for other in self.cache.other_manifests():  # written under another uv version: carry it over
            try:
                rec = manifest.load(other / key)
            except (OSError, RecordError):
                continue
            rec.scanned = False
            return rec, True
        return self._new(real, kind), True

    def _new(self, real: str, kind: str) -> Record:
        return Record(path=real, host=self.host, host_id=self.host_id, kind=kind, uv_version=self.cache.build.version)

    def register(self, env_path: Path, kind: str) -> None:
        """Make sure a root exists before uv runs, so an install in flight is already known."""
        real, key = self.key(env_path)
        entry = self.cache.entry_dir(key)
        if (entry / manifest.RECORD).is_file():
            return
        with manifest.lock(entry):
            rec, dirty = self._load(key, real, kind)
            if dirty:
                manifest.save(entry, rec)

    def update(self, env_path: Path, kind: str) -> None:
        """Scan the environment, pin what it links by symlink, drop pins it no longer needs."""
        real, key = self.key(env_path)
        entry = self.cache.entry_dir(key)
        if not os.path.isdir(real) and not entry.exists():
            return
        with manifest.lock(entry):
            rec, dirty = self._load(key, real, kind)
            if not os.path.isdir(real):
                manifest.remove(entry)  # the environment is gone: its root is dead
                return
            try:
                dists = envscan.scan(Path(real), kind, self.cache, rec.distributions)
            except OSError as e:
                self.warn(f"cannot scan {real} ({e.strerror}); keeping its recorded pins")
                return
            if not dists:
                manifest.remove(entry)  # links nothing from the cache: nothing to record
                return
            old_pins = set(self.cache.pins(key))
            if dists != rec.distributions or not rec.scanned:
                rec.set_dists(dists)
                rec.uv_version = self.cache.build.version
                dirty = True
            new_pins = set(rec.pinned)
            for aid in new_pins:
                self.cache.pin(key, aid)  # pins first: fail closed if we die halfway
            now = manifest.now()
            if dirty or now - rec.last_used >= TOUCH_EVERY:
                rec.last_used = now
                if not rec.python:
                    rec.python = envscan.python_version(Path(real))
                manifest.save(entry, rec)
            for aid in old_pins - new_pins:
                self.cache.unpin(key, aid)


# ---------------------------------------------------------------------------------------------
# Which roots a command touches
# ---------------------------------------------------------------------------------------------

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*")


def _tool_envs(tools: Path, inv: uvargs.Invocation) -> List[Tuple[Path, str]]:
    out = []
    try:
        names = sorted(os.listdir(tools))
    except OSError:
        names = []
    for name in names:
        if (tools / name / "pyvenv.cfg").is_file():
            out.append((tools / name, "venv"))
    if inv.words[1:2] == ("install",):
        for pos in inv.positionals[:1]:
            m = _NAME.match(pos)
            if m and (tools / m.group(), "venv") not in out:
                out.append((tools / m.group(), "venv"))
    return out


def cached_envs(cache: Cache) -> List[Tuple[Path, str]]:
    """Environments uv keeps inside the cache (``uvx``, ``uv run --with``, scripts)."""
    out = []
    try:
        names = os.listdir(cache.environments)
    except OSError:
        return out
    for name in names:
        try:
            target = os.readlink(cache.environments / name)
        except OSError:
            continue
        aid = os.path.basename(target.rstrip("/"))
        if is_archive_id(aid) and (cache.archives / aid / "pyvenv.cfg").is_file():
            out.append((cache.archives / aid, "cached"))
    return out


def _system_env(real: realuv.RealUv, inv: uvargs.Invocation, cwd: Path, env: Mapping[str, str]) -> Optional[Path]:
    """For ``--system`` or ``-p 3.12``: ask uv which interpreter it will use."""
    args = [real.path, "python", "find"]
    req = inv.opt("--python", "-p")
    if req:
        args.append(req)
    if inv.has("--system"):
        args.append("--system")
    try:
        out = subprocess.run(args, cwd=cwd, env=realuv.child_env(env, exec_=False), capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0 or not out.stdout.strip():
        return None
    python = Path(out.stdout.strip().splitlines()[-1])
    prefix = python.parent.parent
    return prefix


def roots_for(inv: uvargs.Invocation, cache: Cache, real: realuv.RealUv, cwd: Path, env: Mapping[str, str]) -> List[Tuple[Path, str]]:
    out: List[Tuple[Path, str]] = []
    for t in uvargs.targets(inv, cwd, env):
        if t.kind == "tools":
            out.extend(_tool_envs(t.path, inv))
        else:
            out.append((t.path, t.kind))
    if inv.words[:1] == ("pip",) and not out:
        prefix = _system_env(real, inv, cwd, env)
        if prefix is not None:
            out.append((prefix, "venv" if (prefix / "pyvenv.cfg").is_file() else "prefix"))
    if uvargs.uses_cached_env(inv):
        out.extend(cached_envs(cache))
    return out


# ---------------------------------------------------------------------------------------------
# One intercepted invocation
# ---------------------------------------------------------------------------------------------


def intercept(real: realuv.RealUv, argv0: str, exec_path: str, args: List[str], inv: uvargs.Invocation) -> "NoReturn":  # type: ignore[name-defined]  # noqa: F821
    env = os.environ
    cwd = Path(os.getcwd())
    warn = Warnings()
    book: Optional[Book] = None
    roots: List[Tuple[Path, str]] = []
    lock: Optional[SharedLock] = None
    try:
        root = find_cache_dir(real, inv, cwd, env)
        if root is not None:
            book = Book(Cache(root, realuv.build_of(real)), warn)
            roots = roots_for(inv, book.cache, real, cwd, env)
            if roots and not uvargs.runs_child(inv):
                lock = SharedLock(root)
                lock.acquire()
            for path, kind in roots:
                book.register(path, kind)
    except Exception as e:  # noqa: BLE001 - bookkeeping never stops the user's command
        warn(_describe(e, "cannot record environments; running uv without protection"))
        book = None

    if book is None or not roots:
        realuv.exec_uv(exec_path, argv0, args, env)  # nothing to record (or cannot): pure passthrough
    if uvargs.runs_child(inv):
        # The child may run for hours: catch up on what earlier runs linked, then get out of the way.
        _update_all(book, roots, warn, "could not refresh pins")
        realuv.exec_uv(exec_path, argv0, args, env)

    code = realuv.run_uv(exec_path, argv0, args, env)
    try:
        if lock is not None:
            lock.acquire()  # the cache may not have existed before uv ran
        _update_all(book, roots, warn, "could not record what uv installed")
    finally:
        if lock is not None:
            lock.release()
    realuv.mirror_exit(code)


def _update_all(book: Book, roots: List[Tuple[Path, str]], warn: Warnings, what: str) -> None:
    try:
        for path, kind in roots:
            book.update(path, kind)
    except Exception as e:  # noqa: BLE001 - bookkeeping never changes the user's result
        warn(_describe(e, what))


def _describe(e: Exception, what: str) -> str:
    if isinstance(e, OSError):
        where = f" ({e.filename})" if e.filename else ""
        return f"{what}: {e.strerror or e}{where}"
    return f"{what}: {e}"
