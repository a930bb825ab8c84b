"""Differences between uv versions that the shim relies on, in one place.

Each entry is the first uv version with the behaviour (checked against uv's changelog and
source; the tests drive 0.7.0, 0.9.5 and the newest release).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Tuple

# Every uv process holds a shared flock on <cache>/.lock; prune/clean take it exclusively.
LOCKS_CACHE: Tuple[int, ...] = (0, 8, 19)
# `uv cache clean --force` skips the lock.
CLEAN_FORCE: Tuple[int, ...] = (0, 8, 20)
# `uv cache prune --force` skips the lock.
PRUNE_FORCE: Tuple[int, ...] = (0, 8, 24)
# Default seconds uv waits for a lock (UV_LOCK_TIMEOUT overrides it).
LOCK_TIMEOUT_DEFAULT = 300
