"""Find an environment again after ``mv``: a renamed project folder, a renamed or moved venv.

A record keeps the environment folder's device and inode (``Record.inode``). When its path is
gone, the most likely place is a sibling of the first folder that went missing (``mv proj
proj-renamed`` turns ``proj/.venv`` into ``proj-renamed/.venv``): each sibling is looked at with
the rest of the path appended, by one ``lstat``, bounded in count and in time. A rename keeps the
inode on the same filesystem; a copy to another one does not, and is not followed.

A prune asks for every root whose environment is gone, and those are often siblings (CI runners'
venvs in one folder): a ``Finder`` looks at each candidate once per prune and remembers the
inodes it saw, so a hundred gone roots in one folder cost one pass over it, not a hundred.
"""

from __future__ import annotations

import os
import stat
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional

MAX_SIBLINGS = 5000
BUDGET = 0.25  # seconds per root


class _Siblings:
    """The candidates of one (surviving ancestor, rest of the path): looked at in name order,
    each once, resumed where the last search stopped. ``stamp``: the ancestor as it was when
    listed (a sibling made or renamed since changes it)."""

    __slots__ = ("candidates", "next", "seen", "stamp")

    def __init__(self, ancestor: str, rest: list[str], stamp: Optional[tuple[int, int, int]]) -> None:
        self.stamp = stamp
        try:
            with os.scandir(ancestor) as it:
                names = [e.name for _, e in zip(range(MAX_SIBLINGS), it)]
        except OSError:
            names = []
        self.candidates = [os.path.join(ancestor, name, *rest) for name in sorted(names)]
        self.next = 0
        self.seen: dict[str, str] = {}  # "device:inode" of a folder -> its path

    def find(self, inode: str, deadline: float) -> Optional[str]:
        found = self.seen.get(inode)
        if found is not None:
            return found
        while self.next < len(self.candidates):
            if time.monotonic() > deadline:
                return None
            candidate = self.candidates[self.next]
            self.next += 1
            try:
                st = os.lstat(candidate)
            except (OSError, ValueError):  # ValueError: a NUL in a recorded path
                continue
            if stat.S_ISDIR(st.st_mode):
                key = f"{st.st_dev}:{st.st_ino}"
                self.seen.setdefault(key, candidate)
                if key == inode:
                    return candidate
        return None


class Finder:
    """Where gone environments went, for many roots in one pass (one prune): what it looked at,
    it remembers while the folder it looked in is unchanged."""

    def __init__(self, budget: float = BUDGET) -> None:
        self.budget = budget
        self._looked: dict[tuple[str, tuple[str, ...]], _Siblings] = {}

    def find(self, path: str, inode: str) -> Optional[str]:
        """Where the folder ``path`` with ``inode`` ("device:inode") is now, if it was renamed
        within its nearest surviving ancestor; None if not found (or ``path`` still exists)."""
        if not inode or os.path.lexists(path):
            return None
        missing: list[str] = []
        ancestor = path
        while True:
            parent = os.path.dirname(ancestor)
            if parent == ancestor:
                return None
            missing.insert(0, os.path.basename(ancestor))
            ancestor = parent
            if os.path.isdir(ancestor):
                break
        deadline = time.monotonic() + self.budget
        key = (ancestor, tuple(missing[1:]))
        now = _stamp(ancestor)
        siblings = self._looked.get(key)
        for _ in range(2):
            if siblings is None or siblings.stamp != now or now is None:
                siblings = self._looked[key] = _Siblings(ancestor, missing[1:], now)
            found = siblings.find(inode, deadline)
            if found is None:
                return None
            if _is_folder(found, inode):
                return found
            siblings = None  # it moved on since this prune saw it there: look again, afresh
        return None


def _stamp(folder: str) -> Optional[tuple[int, int, int]]:
    try:
        st = os.stat(folder)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_mtime_ns


def _is_folder(path: str, inode: str) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and f"{st.st_dev}:{st.st_ino}" == inode
