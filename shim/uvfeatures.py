"""Differences between uv versions that the shim relies on, in one place.

Each entry is the first uv version with the behaviour (checked against uv's changelog and
source; the tests drive 0.7.0, 0.9.5 and the newest release).
"""

from __future__ import annotations

import os

from shim.cache import BUILDS_PREFIX

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

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

# `uv version --bump|<new version>` locks and syncs the project (checked by scripts/uv_commands.py:
# 0.7.0 only edits pyproject.toml; 0.9.5 and 0.13.9 sync). Versions in between are assumed to
# sync: intercepting a command that changes nothing costs time, never protection.
VERSION_SYNCS: tuple[int, ...] = (0, 7, 1)
_SINCE: dict[tuple[str, ...], tuple[int, ...]] = {("version",): VERSION_SYNCS}


def changes_environments(words: Sequence[str], version: tuple[int, ...]) -> bool:
    """Whether an intercepted command (``uvargs.INTERCEPTED``) can change an environment in
    this uv version (a few began to only in later versions)."""
    since = _SINCE.get(tuple(words[:1]))
    return since is None or version >= since


# What uv is doing in a `uv run` / `uvx` (shim.followup watches it): still installing, running the
# user's program (its install step is over), or exited.
INSTALLING = "installing"
UNRECOGNIZED = "unrecognized"  # a child that is neither the install step's nor the user's program
RUNNING = "running"
GONE = "gone"
# Children uv starts during its install step, never the user's program: interpreter queries
# (`python -c "...get_interpreter_info..."`, maybe through a pyenv shell shim), the libc probe
# (`/lib64/ld-linux-x86-64.so.2 --version`, `ldd`), build backends (the python of a build
# environment in the cache's builds bucket) and git (git dependencies).
_QUERY_MARK = "get_interpreter_info"
_PROGRAMS = ("git", "ldd")
_PROGRAM_PREFIXES = ("git-", "ld-linux", "ld-musl", "ld.so")


def is_install_step_child(argv: Sequence[str], cache_root: str) -> bool:
    """Whether a child process of uv belongs to its install step (see above)."""
    if not argv:
        return True
    if any(_QUERY_MARK in a for a in argv):
        return True
    name = os.path.basename(argv[0])
    if name in _PROGRAMS or name.startswith(_PROGRAM_PREFIXES):
        return True
    builds = os.path.join(cache_root, BUILDS_PREFIX)
    return argv[0].startswith(builds) or os.path.realpath(argv[0]).startswith(os.path.realpath(builds))


def is_user_program(argv: Sequence[str], user_argv: Sequence[str], cache_root: str) -> bool:
    """Whether a child of `uv run CMD ARGS...` / `uvx CMD ARGS...` is the user's program: not part
    of the install step, its command line ends with ARGS (uv passes them on unchanged), and CMD
    is one of its first words (`uv run pytest` runs `.venv/bin/python .venv/bin/pytest`,
    `uv run main.py` runs `python main.py`, `uv run -m http.server` runs `python -m http.server`)."""
    if is_install_step_child(argv, cache_root) or not user_argv:
        return not is_install_step_child(argv, cache_root)
    command, args = user_argv[0], list(user_argv[1:])
    if args and list(argv[-len(args) :]) != args:
        return False
    head = argv[: len(argv) - len(args)][:3]
    name = os.path.basename(command)
    return any(a == command or os.path.basename(a) == name for a in head)
