"""Sizes of archives, memoized: an unpacked wheel never changes, so its size is read once.

The memo (``manifest.SIZES``) holds ``<archive id> <bytes>`` lines. A size comes from the
wheel's ``*.dist-info/RECORD`` (one read), else from a walk of the folder.
"""

from __future__ import annotations

import os

from shim import report
from shim.cache import Cache
from shim.manifest import SIZES

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable


class ArchiveSizes:
    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self.memo: dict[str, int] = {}
        self.fresh = False
        area = cache.area()
        try:
            if area is None:
                raise FileNotFoundError(SIZES)
            for line in area.read(SIZES).decode("ascii", "replace").splitlines():
                aid, _, size = line.partition(" ")
                if size.isdigit():
                    self.memo[aid] = int(size)
        except OSError:
            pass
        self._seen: set = set()

    def get(self, aid: str) -> int:
        size = self.memo.get(aid)
        if size is None:
            path = os.path.join(self.cache.archives, aid)
            if not os.path.isdir(path):
                return 0
            size = self.memo[aid] = report.archive_size(path, self._seen)
            self.fresh = True
        return size

    def save(self, keep: Iterable[str]) -> None:
        """Write the memo back (only the archives in ``keep``), if anything new was measured."""
        if not self.fresh:
            return
        keep = set(keep)
        text = "".join(f"{a} {n}\n" for a, n in sorted(self.memo.items()) if a in keep)
        try:
            self.cache.area(create=True).write_atomic(SIZES, text.encode("ascii"))  # type: ignore[union-attr]
        except OSError:
            pass  # a memo we cannot write only costs time next run
