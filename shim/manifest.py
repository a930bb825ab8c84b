"""Roots on disk: one small TOML record per environment, written atomically.

A record lives in ``<cache>/<sdists bucket>/uv-shim/<key>/root.toml`` beside that
environment's pins (``<key>/pin_<archive id>_0-0-py3-none-any``, see ``cache.pin_name``). ``key``
is derived from the host identity and the environment's real path, so writers of different
environments never touch the same file; writers of the same environment serialize on
``<key>/.lock`` (``EntryLock``). Every write and removal goes through the entry's
``confined.Dir``: a symlink planted anywhere in the record area is never followed.

The record carries a ``fingerprint`` of its distributions. The no-op path (an install that
changed nothing) compares fingerprints with a byte search and never parses TOML: tomllib alone
costs more than the whole check.
"""

from __future__ import annotations

import errno
import os

from shim import paths
from shim.cache import ARCHIVE_BUCKET, is_archive_id
from shim.confined import Dir, Unsafe
from shim.envscan import SYMLINK, settled
from shim.record import (  # noqa: F401 - the record's names, for the callers of this module
    SCHEMA,
    Record,
    RecordError,
    dump,
    entry_key,
    fingerprint,
    now,
    parse,
    parse_header,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Optional, Union

    from shim.cache import Cache

# Every name in uv-shim's record area (``<sdists bucket>/uv-shim/``, see ``cache.Cache.area``):
# one folder per root named by its key, holding RECORD, its pins and a writer lock; beside them
# the memo files and the folders of operations in flight.
RECORD = "root.toml"
ENTRY_LOCK = ".lock"
LAST_USE = ".archive-last-use"  # archive id -> last use (epoch seconds), outliving roots
ROOTS_SEEN = ".roots-seen"  # what the last prune read from each record folder (shim.rootmemo)
SIZES = ".archive-sizes"  # archive id -> bytes, private bytes (shim.sizes; an unpacked wheel never changes)
LAST_PRUNE = ".last-prune"  # its mtime: the last prune through the shim
HOLD_PREFIX = ".evicting."  # .evicting.<pid>/: uv's references set aside while uv prunes
RELEASED = ".released."  # .released.<key>.<pid>/: a root being removed
POOL = ".pool"  # in another generation's area: one pin per archive any root links (shim.generations)
GENERATIONS = ".generations"  # the sdists buckets (uv generations) this cache has seen (shim.generations)
NOTICES = ".notices"  # .notices/<pid>: what a detached helper could not print (next command does)
RELEASE_LOG = ".release-log"  # one JSON line per released root: path, when, why, what it held
RELEASE_LOG_MAX = 256 * 1024  # bytes; then it becomes .release-log.old (one generation kept)


def held_name(i: int, j: int) -> str:
    """A reference held in an ``.evicting.<pid>/`` folder: named ``*.lock``, which no uv version's
    prune reads as a reference (uv skips lock files everywhere in its buckets)."""
    return f"{i}.{j}.lock"


# Pins. A pin is a symlink uv's prune counts as a reference. uv walks its sdists bucket at any depth;
# 0.6-0.7 count only names that parse as a wheel stem, newer ones skip names ending in
# .lock/.whl/.http/.rev/.msgpack. So a pin is named ``pin_<id>_0-0-py3-none-any`` with the id's
# "-" spelled "." (ids never contain dots, so the name maps back to the id); the ``_0`` keeps the
# package name ending in a letter or digit, as a valid name must, whatever the id ends with.
# One flat folder per environment: one symlink per pinned archive, no folder per pin.
PIN_PREFIX = "pin_"
PIN_SUFFIX = "_0-0-py3-none-any"


def pin_name(aid: str) -> str:
    if not is_archive_id(aid):
        raise ValueError(f"not an archive id: {aid!r}")
    return PIN_PREFIX + aid.replace("-", ".") + PIN_SUFFIX


def pin_id(name: str) -> Optional[str]:
    """The archive id a pin's file name stands for, or None if it is not a pin's name."""
    if not (name.startswith(PIN_PREFIX) and name.endswith(PIN_SUFFIX)):
        return None
    aid = name[len(PIN_PREFIX) : -len(PIN_SUFFIX)].replace(".", "-")
    return aid if is_archive_id(aid) else None


def pin(entry: Dir, aid: str) -> bool:
    """Make sure a pin for archive ``aid`` exists in ``entry``; True if one was made."""
    name = pin_name(aid)
    target = os.path.join("..", "..", "..", ARCHIVE_BUCKET, aid)
    try:
        entry.symlink(target, name)  # atomic: the name appears with its target, or not at all
        return True
    except FileExistsError:
        pass
    try:
        if entry.readlink(name) == target:
            return False
    except OSError:
        pass
    tmp = f"{name}.{os.getpid()}.tmp"
    entry.unlink(tmp)
    entry.symlink(target, tmp)
    entry.replace(tmp, name)  # replaces a wrong link (or file) with ours; never follows it
    return True


def unpin(entry: Dir, aid: str) -> None:
    """Remove one pin: only our own symlink, never what it points to."""
    entry.unlink(pin_name(aid))


def is_pinned(entry: Dir, aid: str) -> bool:
    return entry.is_symlink(pin_name(aid))


def pins(entry: Dir) -> Iterator[str]:
    """Archive ids pinned in ``entry`` (one directory read, no stat per pin)."""
    try:
        it = entry.scandir()
    except OSError:
        return
    with it:
        for e in it:
            aid = pin_id(e.name)
            if aid and e.is_symlink():
                yield aid


def pins_and_leftovers(entry: Dir) -> tuple[set[str], bool]:
    """(archive ids pinned, whether anything ``clean_leftovers`` would look at is there), from one
    directory read."""
    have: set[str] = set()
    leftovers = False
    start, end = len(PIN_PREFIX), -len(PIN_SUFFIX)
    with entry.scandir() as it:
        for e in it:
            name = e.name
            if name.startswith(PIN_PREFIX) and name.endswith(PIN_SUFFIX):  # pin_id, inlined: ~20 per root
                aid = name[start:end].replace(".", "-")
                if e.is_symlink() and is_archive_id(aid):
                    have.add(aid)
            elif name.endswith(".tmp") or name.startswith(RELEASED):
                leftovers = True
    return have, leftovers


def read_header(entry: Dir) -> tuple[Record, str, os.stat_result]:
    """(header, fingerprint, the record file's stat): OSError if it cannot be read (absent, or
    not a regular file: a FIFO planted in a shared cache never blocks us), RecordError if it is
    not a header we write."""
    data, st = entry.read_stat(RECORD, 1 << 16)
    head, fp = parse_header(data)
    return head, fp, st


def quick_header(entry: Dir) -> Optional[tuple[Record, str, float]]:
    """(header, fingerprint, mtime) of a record, or None if absent or not a header we write."""
    try:
        head, fp, st = read_header(entry)
    except (OSError, RecordError):
        return None
    return head, fp, st.st_mtime


def stamp_holds(head: Record, stamp: str, pinned: bool) -> bool:
    """No dist-info folder came or went since the environment's last full scan: its recorded
    stamp (kept only when settled, ``envscan.settled``) is today's, and its pins are here (a
    record another uv generation copied over has them elsewhere until it is re-pinned)."""
    if not stamp or stamp != head.site_stamp:
        return False
    if not settled(stamp, head.last_used_at):  # a record from before stamps were settled
        return False
    return pinned or SYMLINK not in head.link_modes


def _read(entry: Union[Dir, str]) -> bytes:
    """The record's bytes; FileNotFoundError if there is none, RecordError if unreadable (a
    symlink in its place included: it is never followed)."""
    try:
        if isinstance(entry, Dir):
            return entry.read(RECORD)
        return paths.read_bytes(os.path.join(entry, RECORD))  # tests and tools reading by path
    except FileNotFoundError:
        raise
    except OSError as e:
        raise RecordError(f"cannot read it: {e.strerror}") from None


def load(entry: Union[Dir, str]) -> Record:
    """Read a record; FileNotFoundError if there is none, RecordError if it is unusable."""
    return parse(_read(entry))


def exists(entry: Optional[Dir]) -> bool:
    return entry is not None and entry.is_file(RECORD)


def save(entry: Dir, record: Record) -> bytes:
    """Write the record (atomically, synced); returns its bytes (copies elsewhere reuse them)."""
    data = dump(record)
    entry.write_atomic(RECORD, data)
    return data


class EntryLock:
    """Exclusive ``flock`` on ``<entry>/.lock`` for writers of one environment's record.

    A plain ``fcntl.flock`` rather than the filelock package: same semantics on POSIX, and
    importing filelock costs ~25 ms, more than the whole bookkeeping of a typical install.
    """

    def __init__(self, entry: Dir, timeout: float = 120.0) -> None:
        self.entry = entry
        self.timeout = timeout
        self.fd = -1

    def __enter__(self) -> EntryLock:
        import fcntl
        import time

        try:
            self.fd = self.entry.open(ENTRY_LOCK, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            if e.errno not in (errno.ELOOP, errno.EMLINK):
                raise
            self.entry.unlink(ENTRY_LOCK)  # a symlink planted in our folder: the link goes, never its target
            self.fd = self.entry.open(ENTRY_LOCK, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(self.fd)
                    raise TimeoutError(f"another uv-shim holds {self.entry.path}/{ENTRY_LOCK}") from None
                time.sleep(0.01)

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)  # closing releases the lock


def lock(entry: Dir) -> EntryLock:
    return EntryLock(entry)


def clean_leftovers(entry: Dir) -> int:
    """Remove what a killed writer left in a folder of ours: temp files (``.<name>.<pid>.<hex>.tmp``
    records, ``<pin>.<pid>.tmp`` pins) and half-removed released roots (``.released.<key>.<pid>``),
    whose writer is no longer running. Returns how many went."""
    try:
        names = entry.listdir()
    except OSError:
        return 0
    gone = 0
    for name in names:
        if name.startswith(RELEASED):  # a release a killed process did not finish
            pid = name.rpartition(".")[2]
            if not (pid.isdigit() and alive(int(pid))):
                entry.remove_tree(name)
                gone += 1
            continue
        if not name.endswith(".tmp"):
            continue
        parts = name.split(".")
        pid = parts[-2] if name.startswith("pin_") else parts[-3] if len(parts) >= 3 else ""
        if pid.isdigit() and alive(int(pid)):
            continue
        try:
            gone += entry.unlink(name)
        except OSError:
            pass  # a folder of that name: not ours to remove
    return gone


def alive(pid: int) -> bool:
    """The process runs (a zombie does not: a killed helper is nobody's child, and some inits
    reap orphans late)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        import psutil
    except ImportError:  # pragma: no cover - a runtime dependency
        return True
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:  # gone, or a zombie psutil cannot read
        return False
    except Exception:
        return True


def remove(area: Dir, key: str) -> None:
    """Release a root in one step, then delete its files: only our own, never what a pin points to.

    The record folder is renamed to ``.released.<key>.<pid>`` (no root's name, so no prune reads it
    again; a kill after that leaves a folder the next prune removes), then removed walking by
    file descriptors. A symlink in the entry's place is unlinked itself.
    """
    try:
        area.sub(key).close()
    except FileNotFoundError:
        return
    except Unsafe:
        area.unlink(key)
        return
    gone = f"{RELEASED}{key}.{os.getpid()}"
    area.replace(key, gone)
    area.remove_tree(gone)


def add_notice(cache: Cache, message: str) -> None:
    """Keep a helper's message for the next command. On a full disk its text cannot be written:
    it goes into the name of an empty file then (no data block needed)."""
    area = cache.area(create=True)
    assert area is not None
    with area.sub(NOTICES, create=True, ours=True) as d:
        try:
            d.write_atomic(str(os.getpid()), message.encode("utf-8", "replace"))
        except OSError:
            name = message.replace("%", "%25").replace("/", "%2F").encode("utf-8", "replace")[:200]
            d.write_atomic(f"{os.getpid()}.{name.decode('utf-8', 'ignore')}", b"")


def _notice_text(d: Dir, name: str) -> str:
    _pid, _, text = name.partition(".")
    if not text:
        return d.read(name).decode("utf-8", "replace").strip()
    return text.replace("%2F", "/").replace("%25", "%")


def take_notices(cache: Cache) -> list[str]:
    """The helpers' messages, oldest first, removed as they are read (each is shown once): from
    this uv version's area and every other's (the launcher sees them all: none may be stranded)."""
    found: list[tuple[int, str]] = []
    area = cache.area()
    others = list(cache.other_areas())  # ours to close; the cache keeps its own area
    for a in ([area] if area is not None else []) + others:
        try:
            d = a.sub(NOTICES)
        except OSError:
            continue
        with d:
            for name in d.listdir():
                if name.partition(".")[0].isdigit():
                    try:
                        found.append((d.lstat(name).st_mtime_ns, _notice_text(d, name)))
                    except OSError:
                        continue
                    finally:
                        try:
                            d.unlink(name)
                        except OSError:
                            pass
    for a in others:
        a.close()
    out = [m for _, m in sorted(found)]
    clean = ("".join(ch if ch.isprintable() else " " for ch in m.splitlines()[0] if m) for m in out if m.strip())
    return [c[:300] for c in clean if c.strip()]  # one printable line each: the cache may be shared


def log_release(area: Dir, record: Record, why: str, when: Optional[float] = None) -> None:
    """Append one line to the release log (``uv-shim doctor`` reads it): a release is never silent."""
    import json
    import time

    line = json.dumps(
        {
            "time": int(time.time() if when is None else when),
            "path": record.path,
            "host": record.host,
            "why": why,
            "archives": sorted({d.archive for d in record.distributions.values() if d.archive}),
            "distributions": sorted(record.distributions),
        },
        sort_keys=True,
    )
    fd = area.open(RELEASE_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line.encode("utf-8", "surrogateescape") + b"\n")  # one write: lines never interleave
        full = os.fstat(fd).st_size > RELEASE_LOG_MAX
    finally:
        os.close(fd)
    if full:
        area.replace(RELEASE_LOG, RELEASE_LOG + ".old")


def releases(area: Dir) -> list[dict]:
    """The release log, oldest first (lines that do not parse are skipped)."""
    import json

    data = b""
    for name in (RELEASE_LOG + ".old", RELEASE_LOG):
        try:
            data += area.read(name)
        except OSError:
            continue
    out = []
    for line in data.splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict):
            out.append(item)
    return out
