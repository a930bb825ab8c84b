"""Find an environment again after ``mv``: a renamed project folder, a renamed or moved venv.

A record keeps the environment folder's device and inode (``Record.inode``). When its path is
gone, the most likely place is a sibling of the first folder that went missing (``mv proj
proj-renamed`` turns ``proj/.venv`` into ``proj-renamed/.venv``): each sibling is looked at with
the rest of the path appended, by one ``lstat``, bounded in count and in time. A rename keeps the
inode on the same filesystem; a copy to another one does not, and is not followed.
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


def find_moved(path: str, inode: str, budget: float = BUDGET) -> Optional[str]:
    """Where the folder ``path`` with ``inode`` ("device:inode") is now, if it was renamed within
    its nearest surviving ancestor; None if not found (or ``path`` still exists)."""
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
    rest = missing[1:]
    deadline = time.monotonic() + budget
    try:
        with os.scandir(ancestor) as it:
            names = [e.name for _, e in zip(range(MAX_SIBLINGS), it)]
    except OSError:
        return None
    for name in sorted(names):
        if time.monotonic() > deadline:
            return None
        candidate = os.path.join(ancestor, name, *rest)
        try:
            st = os.lstat(candidate)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode) and f"{st.st_dev}:{st.st_ino}" == inode:
            return candidate
    return None
