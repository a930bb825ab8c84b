"""Which cache a uv command uses: one answer, the real uv's (hot path).

Cheap where it is certain (``--cache-dir``, ``UV_CACHE_DIR``, the XDG default when no config
file mentions ``cache-dir``), else the real uv's own ``uv cache dir``; and ``refuse_to_empty``
says when a folder must never be emptied, whatever the options say.
"""

from __future__ import annotations

import os

from shim import confined, paths, uvargs
from shim.cache import ARCHIVE_BUCKET, CACHEDIR_TAG
from shim.realuv import RealUv, UvBuild, parsed_env

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from typing import Optional

_TAG_SIGNATURE = b"Signature: 8a477f597d28d172789f06886806bc55"


class CacheDirError(Exception):
    """The real uv rejected the cache options (``uv cache dir`` failed): its message and code."""

    def __init__(self, stderr: str, code: int) -> None:
        super().__init__(stderr.strip().splitlines()[0] if stderr.strip() else f"`uv cache dir` exited with {code}")
        self.stderr = stderr
        self.code = code


def working_dir(build: UvBuild, inv: uvargs.Invocation, cwd: str, env: Mapping[str, str]) -> str:
    """The directory uv works in: ``--directory``, else ``UV_WORKING_DIR`` (where that uv knows
    it), relative to ``cwd``; never tilde-expanded (uv expands nothing), and as uv changes into
    it (``paths.physical``)."""
    d = inv.globals.get("--directory")
    if d is None and "UV_WORKING_DIR" in build.env_vars:
        d = env.get("UV_WORKING_DIR") or None
    return paths.physical(os.path.join(cwd, d)) if d else cwd


# What makes a config file one that may set the cache: the key, or any TOML unicode escape (a key
# may be spelt `cache\u002ddir`). The launcher's sh test is generated from this list.
CACHE_DIR_HINTS = ("ache-dir", "\\u", "\\U")


def _mentions_cache_dir(path: str) -> bool:
    try:
        data = paths.read_bytes(path)
        return any(hint.encode() in data for hint in CACHE_DIR_HINTS)
    except FileNotFoundError:
        return False
    except OSError:
        return True  # cannot tell: ask uv


def _config_candidates(build: UvBuild, inv: uvargs.Invocation, cwd: str, env: Mapping[str, str]) -> Iterator[str]:
    """Every config file that could set ``cache-dir`` (a superset: uv is asked when one does)."""
    wd = working_dir(build, inv, cwd, env)
    explicit = inv.globals.get("--config-file") or env.get("UV_CONFIG_FILE")
    if explicit:
        yield os.path.join(cwd, explicit)
        yield os.path.join(wd, explicit)
    starts = [wd]
    proj = inv.globals.get("--project") or env.get("UV_PROJECT")
    if proj:
        starts.append(os.path.join(wd, proj))
    for start in starts:
        for d in paths.parents(start):
            yield os.path.join(d, "uv.toml")
            yield os.path.join(d, "pyproject.toml")
    for home in dict.fromkeys(os.path.join(d, env.get("HOME") or os.path.expanduser("~")) for d in (wd, cwd)):
        xdg = env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")  # a relative HOME: uv's
        yield os.path.join(xdg, "uv", "uv.toml")  # working directory or ours, both looked at
        yield os.path.join(home, ".config", "uv", "uv.toml")
    for d in (env.get("XDG_CONFIG_DIRS") or "/etc/xdg").split(":"):
        if d:
            yield os.path.join(d, "uv", "uv.toml")
    yield "/etc/uv/uv.toml"


# Global options that decide (or remove) the cache: the launcher leaves a command that has one
# to Python (it resolves the cache only in the cases it is sure of).
CACHE_OPTIONS = ("--cache-dir", "--no-cache", "--config-file", "--no-config", "--directory", "--project")


def _cache_globals(inv: uvargs.Invocation) -> list[str]:
    """The user's global options that decide the cache, to hand to ``uv cache dir``."""
    args: list[str] = []
    for opt in CACHE_OPTIONS:
        if opt in inv.globals:  # the value options among them (flags are never in globals)
            args.append(f"{opt}={inv.globals[opt]}")
    if inv.has("--no-config"):
        args.append("--no-config")
    return args


def ask_uv(real: RealUv, inv: uvargs.Invocation, cwd: str, env: Mapping[str, str]) -> str:
    """What ``uv cache dir`` says, with the user's global options, environment and directory.
    Raises CacheDirError when uv rejects them (the command itself would fail the same way)."""
    import subprocess

    args = [real.path, *_cache_globals(inv), "cache", "dir"]
    try:
        out = subprocess.run(
            args,
            cwd=cwd,
            env=parsed_env(env),
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise CacheDirError("`uv cache dir` did not answer within 60s", 2) from None
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        raise CacheDirError(out.stderr, out.returncode or 2)
    return lines[-1]


def default_cache_dir(env: Mapping[str, str], wd: str) -> str:
    """uv's cache when nothing names one: ``$XDG_CACHE_HOME/uv`` if that is absolute, else
    ``$HOME/.cache/uv``, where a relative ``HOME`` is relative to uv's working directory ``wd``."""
    xdg = env.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return paths.physical(os.path.join(xdg, "uv"))
    return paths.physical(os.path.join(wd, env.get("HOME") or os.path.expanduser("~"), ".cache", "uv"))


def find_cache_dir(
    real: RealUv, build: UvBuild, inv: uvargs.Invocation, cwd: str, env: Mapping[str, str], ask: bool = False
) -> Optional[str]:
    """The one answer to "which cache does this command use", as the real uv decides it; None for
    ``--no-cache`` (a throwaway cache: nothing to protect).

    Cheap where it is certain: ``--cache-dir`` or ``UV_CACHE_DIR`` (used literally, no ``~``
    expansion, relative to uv's working directory), else the XDG default when no config file
    mentions ``cache-dir``. Anything else, and always with ``ask`` (every command off the hot
    path), is the real uv's own answer. Raises CacheDirError when uv rejects the options.
    """
    if uvargs.no_cache(inv, env):
        return None
    wd = working_dir(build, inv, cwd, env)
    if not ask:
        value = inv.globals["--cache-dir"] if "--cache-dir" in inv.globals else env.get("UV_CACHE_DIR")
        if value:
            return paths.physical(os.path.join(wd, value))
        no_config = inv.has("--no-config") or uvargs.env_true(env, "UV_NO_CONFIG")
        home_known = bool(env.get("HOME")) or os.path.isabs(env.get("XDG_CACHE_HOME") or "")
        if (
            value is None
            and home_known
            and (no_config or not any(_mentions_cache_dir(p) for p in _config_candidates(build, inv, cwd, env)))
        ):
            return default_cache_dir(env, wd)
    return paths.physical(os.path.join(wd, ask_uv(real, inv, cwd, env)))


def refuse_to_empty(path: str, build: UvBuild, env: Mapping[str, str]) -> Optional[str]:
    """Why the folder must not be emptied (a uv cache is never ``/``, the home folder, or a folder
    without uv's ``CACHEDIR.TAG`` or buckets), or None when it is a uv cache."""
    real = os.path.realpath(path)
    homes = {os.path.realpath(h) for h in (env.get("HOME"), os.path.expanduser("~")) if h}
    if real == os.path.realpath(os.sep) or real in homes:
        return f"{path} is {'the root folder' if real == os.sep else 'the home folder'}, not a uv cache; refusing to empty it"
    try:
        with confined.Dir.top(real) as d:
            if not is_uv_cache(d, build):
                return f"{path} is not a uv cache (no {CACHEDIR_TAG} and no uv buckets); refusing to empty it"
    except FileNotFoundError:
        return None
    except OSError as e:
        return f"cannot open {path}: {e.strerror}"
    return None


def is_uv_cache(root: confined.Dir, build: UvBuild) -> bool:
    """uv's ``CACHEDIR.TAG``, or one of its buckets; an empty folder has nothing to lose."""
    try:
        if root.read(CACHEDIR_TAG).startswith(_TAG_SIGNATURE):
            return True
    except OSError:
        pass
    names = set(root.listdir())
    return not names or ARCHIVE_BUCKET in names or bool(names.intersection(build.all_buckets))
