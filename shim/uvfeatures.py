"""Differences between uv versions that the shim relies on, in one place.

Each entry is the first uv version with the behaviour (checked against uv's changelog and
source; the tests drive 0.7.0, 0.9.5 and the newest release).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    pass

# Every uv process holds a shared flock on <cache>/.lock; prune/clean take it exclusively.
LOCKS_CACHE: tuple[int, ...] = (0, 8, 19)
# `uv cache clean --force` skips the lock.
CLEAN_FORCE: tuple[int, ...] = (0, 8, 20)
# `uv cache prune --force` skips the lock.
PRUNE_FORCE: tuple[int, ...] = (0, 8, 24)
# Default seconds uv waits for a lock (UV_LOCK_TIMEOUT overrides it).
LOCK_TIMEOUT_DEFAULT = 300
# `uv cache prune` looks for references only in the sdists and wheels buckets, skipping
# lock/whl/http/rev/msgpack files and `src` folders; before, it walked every bucket and counted
# only names that parse as wheel stems (wheels bucket: last `-` part without a dot).
REFS_FILTERED: tuple[int, ...] = (0, 7, 9)
# `uv cache prune` removes the links in the environments bucket; before, it removed what they
# pointed to (the cached environment itself).
ENV_LINKS_ONLY: tuple[int, ...] = (0, 11, 20)
