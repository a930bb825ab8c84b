"""What the last prune read from each of this host's record folders, so the next need not read
them again.

A later prune on a settled cache verifies ~1,000 roots whose record folders have not changed: for
each it opened the folder, listed its pins and parsed the record's header (about 55 of the 86 us
a root cost). This memo (``manifest.ROOTS_SEEN``, one JSON file in the area) keeps, per key, what
was read and the identity of what it was read from: the folder's device, inode, mtime and ctime,
and the record file's device, inode, size, mtime and ctime. A pin is only ever created or removed
and a record only replaced by a rename, so either moves the folder's times; the record's own stat
covers a write in place. An entry whose stats differ is read afresh. Not kept: an entry that
changed within ``envscan.RACY`` seconds of the look (a folder's times move in clock ticks, so a
change in the same tick as the look would leave them as they were: git's "racy clean"), and one
holding a killed writer's leftovers.

The memo is untrusted input, like everything in a shared cache: anything malformed is ignored (the
entry is read afresh), every pin must be an archive id and a record's path passes the record's
own checks. It only stands in for reading the folder: anyone who can write it can write the
folder too. And it is read only where uv does the deleting (``liveness.verify(memo=True)``: a
prune, never ``uv cache clean``, which removes archives itself), since uv's prune honours the
pins on disk whatever the memo says: a stale memo can cost a report's precision, never an archive.
"""

from __future__ import annotations

import os
import stat
import time

from shim.cache import archive_ids
from shim.envscan import RACY
from shim.manifest import RECORD, ROOTS_SEEN
from shim.record import Record, RecordError, from_header_doc, header_doc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional

    from shim.confined import Dir

VERSION = 1


def _folder_id(st: os.stat_result) -> list[int]:
    return [st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns]


def _file_id(st: os.stat_result) -> list[int]:
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


class RootMemo:
    """The memo of one area: ``get`` what an unchanged entry holds, ``put`` what was read, and
    ``save`` what this verification saw (entries not looked at this time are dropped)."""

    def __init__(self, area: Optional[Dir]) -> None:
        self.old: dict[str, Any] = {}
        self.new: dict[str, Any] = {}
        self.added = False
        self.on = area is not None  # else nothing is read or kept
        if area is None:
            return
        import json

        try:
            doc = json.loads(area.read(ROOTS_SEEN))
        except (OSError, ValueError, RecursionError):  # absent, unreadable, not JSON
            return
        if isinstance(doc, dict) and doc.get("version") == VERSION and isinstance(doc.get("roots"), dict):
            self.old = doc["roots"]

    def get(self, area: Dir, key: str) -> Optional[tuple[Record, str, set[str]]]:
        """(header, fingerprint, pins) of entry ``key`` in ``area`` if it is as it was when they
        were read, else None. Two ``lstat``s, relative to the area's descriptor."""
        raw = self.old.get(key)
        if raw is None:
            return None
        try:
            folder, record, head, fp, pins = raw
            st = os.lstat(key, dir_fd=area.fd)
            if not stat.S_ISDIR(st.st_mode) or _folder_id(st) != folder:
                return None
            st = os.lstat(f"{key}/{RECORD}", dir_fd=area.fd)
            if not stat.S_ISREG(st.st_mode) or _file_id(st) != record or not isinstance(fp, str):
                return None
            got = from_header_doc(head), fp, archive_ids(pins)
        except (OSError, ValueError, TypeError, KeyError, AttributeError, ArithmeticError, RecordError):
            return None
        self.new[key] = raw
        return got

    def put(
        self, key: str, folder: os.stat_result, record: os.stat_result, head: Record, fp: str, pins: set[str]
    ) -> None:
        """Remember what entry ``key`` held: ``folder`` and ``record`` stat'ed before reading."""
        if not self.on:
            return
        limit = int((time.time() - RACY) * 1e9)
        if max(folder.st_mtime_ns, folder.st_ctime_ns, record.st_mtime_ns, record.st_ctime_ns) > limit:
            return  # changed too recently to be told from a change in the same clock tick
        self.new[key] = [_folder_id(folder), _file_id(record), header_doc(head), fp, " ".join(sorted(pins))]
        self.added = True

    def forget(self, key: str) -> None:
        self.new.pop(key, None)

    def save(self, area: Dir) -> None:
        """Write what this verification saw, if it differs from what was read (OSError: the
        memo only saves time, the caller carries on)."""
        if not self.added and self.new.keys() == self.old.keys():
            return
        import json

        doc = {"version": VERSION, "roots": self.new}
        area.write_atomic(ROOTS_SEEN, json.dumps(doc, separators=(",", ":")).encode(), fsync=False)
