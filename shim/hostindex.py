"""This host's own memory of what it recorded in each cache, kept outside the cache.

Records live in the cache, where a prune by a uv version of another bucket generation or a
``uv cache clean`` can delete all of them at once. The index (``<state dir>/index/<hash of the
cache's real path>.tsv``) keeps, per cache, the environments this host recorded and the sdists
buckets it saw, so the next shim invocation can say the records are gone and rebuild them by a
rescan, and ``uv-shim doctor`` can check environments no record names any more.

Lines are appended (one ``write`` each, so writers never interleave), never edited:
``env<TAB>kind<TAB>path`` and ``generation<TAB>sdists-vN``. Hot path: one small file read.
"""

from __future__ import annotations

import os

from shim import paths

TYPE_CHECKING = False
if TYPE_CHECKING:
    pass

MAX_BYTES = 1 << 20  # compacted (duplicates and environments gone dropped) past this


def file_for(cache_path: str) -> str:
    from shim.record import _sha256

    real = os.path.realpath(cache_path)
    return os.path.join(
        paths.state_dir(), "index", _sha256(real.encode("utf-8", "surrogateescape")).hexdigest()[:24] + ".tsv"
    )


class Index:
    """What the index says about one cache."""

    def __init__(self, cache_path: str) -> None:
        self.path = file_for(cache_path)
        self.envs: dict[str, str] = {}  # path -> kind
        self.generations: set[str] = set()
        self.size = 0
        try:
            self.path = file_for(cache_path)
            data = paths.read_bytes(self.path)
        except (OSError, ValueError):
            return
        self.size = len(data)
        for line in data.decode("utf-8", "surrogateescape").splitlines():
            parts = line.split("\t")
            if parts[0] == "env" and len(parts) == 3 and os.path.isabs(parts[2]):
                self.envs[parts[2]] = parts[1]
            elif parts[0] == "generation" and len(parts) == 2:
                self.generations.add(parts[1])

    def _append(self, line: str) -> None:
        """Best effort: an index that cannot be written (read-only home, a file in the way) never
        costs the user's command its protection in the cache."""
        if "\n" in line or "\r" in line:
            return  # a path no line can hold
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, (line + "\n").encode("utf-8", "surrogateescape"))
                self.size += len(line) + 1
            finally:
                os.close(fd)
            if self.size > MAX_BYTES:
                self._compact()
        except OSError:
            pass

    def _compact(self) -> None:
        lines = [f"generation\t{g}" for g in sorted(self.generations)]
        lines += [f"env\t{k}\t{p}" for p, k in sorted(self.envs.items()) if os.path.isdir(p)]  # the gone go
        data = ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")
        paths.write_atomic(self.path, data)
        self.size = len(data)

    def add_env(self, env_path: str, kind: str) -> None:
        if self.envs.get(env_path) != kind:
            self.envs[env_path] = kind
            self._append(f"env\t{kind}\t{env_path}")

    def add_generations(self, names: list[str]) -> None:
        for name in names:
            if name not in self.generations:
                self.generations.add(name)
                self._append(f"generation\t{name}")
