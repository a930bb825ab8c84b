"""Find and run the real uv, never ourselves.

Order: ``UV_SHIM_REAL_UV``; else the first ``uv`` on PATH that is not a uv-shim launcher
(compared by resolved file, and by the recursion guard below); else the binary of the ``uv``
Python package when it is installed next to us.

Recursion guard: every exec of "the real uv" sets ``UV_SHIM_PID`` to the pid that is about to
exec. ``exec`` keeps the pid, so if the program we exec turns out to be a shim launcher, it sees
its own pid in ``UV_SHIM_PID`` and stops with a clear error instead of looping. A ``uv`` started
later by a child of ``uv run`` has another pid and is unaffected. A wrapper that runs ``uv`` as a
child instead of exec'ing it gives each round a new pid: ``UV_SHIM_DEPTH`` counts how many times
uv-shim handed over to "the real uv" in one chain of processes, and past ``MAX_DEPTH`` (far
beyond any real nesting of ``uv run`` calling uv) the chain is a loop.
"""

from __future__ import annotations

import os
import sys

from shim import paths
from shim.errors import ShimError

try:  # the C module: ``signal`` itself imports enum, which costs milliseconds per start
    import _signal as signal
except ImportError:  # pragma: no cover
    import signal

TYPE_CHECKING = False  # typing costs milliseconds at startup; only the type checker needs it
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import NoReturn, Optional

GUARD_VAR = "UV_SHIM_PID"
PARENT_VAR = "UV_SHIM_PPID"
DEPTH_VAR = "UV_SHIM_DEPTH"
MAX_DEPTH = 16
LAUNCHER_MARK = b"# uv-shim launcher"
BIN_MARKER = ".uv-shim-bin"  # in every folder we write launchers to: the real-uv search skips it
BOOT_NAME = "uv-shim-boot.py"  # beside the launchers: the Python they start (helpers run it too)


class RealUv:
    __slots__ = ("path", "why")

    def __init__(self, path: str, why: str) -> None:
        self.path = path
        self.why = why


def _script_head(path: str) -> bytes:
    """The first 256 bytes of a script (``#!`` first), else b""."""
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError:
        return b""
    return head if head.startswith(b"#!") else b""


def is_shim(path: str) -> bool:
    """True for a uv-shim launcher or the ``uv-shim`` console script (text files we wrote)."""
    head = _script_head(path)
    return LAUNCHER_MARK in head or b"uv-shim" in head or b"shim.cli" in head


def is_our_launcher(path: str) -> bool:
    """Written by ``uv-shim install`` (it carries the mark): the only files install replaces and
    uninstall removes under a name another tool may also use (``uv-shim``)."""
    return LAUNCHER_MARK in _script_head(path)


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def find(env: Mapping[str, str], own: Sequence[str] = ()) -> RealUv:
    explicit = env.get("UV_SHIM_REAL_UV")
    if explicit:
        if not os.access(explicit, os.X_OK) or os.path.isdir(explicit):
            raise ShimError(f"UV_SHIM_REAL_UV={explicit} is not an executable file; point it at the real uv binary")
        if is_shim(explicit):
            raise ShimError(f"UV_SHIM_REAL_UV={explicit} is uv-shim itself; point it at the real uv binary")
        return RealUv(explicit, "UV_SHIM_REAL_UV")
    for d in env.get("PATH", "").split(os.pathsep):
        cand = os.path.join(d or ".", "uv")
        if not os.access(cand, os.X_OK) or os.path.isdir(cand):
            continue
        if os.path.exists(os.path.join(d or ".", BIN_MARKER)) or any(_same_file(cand, o) for o in own) or is_shim(cand):
            continue
        return RealUv(paths.physical(cand), f"first uv on PATH that is not uv-shim ({d})")
    bundled = _bundled()
    if bundled:
        return RealUv(bundled, "the uv Python package installed with uv-shim")
    raise ShimError(
        "cannot find the real uv: install it (https://docs.astral.sh/uv/) so it is on PATH "
        "after uv-shim's directory, or set UV_SHIM_REAL_UV=/path/to/uv"
    )


def _bundled() -> Optional[str]:
    try:
        import uv as uv_pkg
    except Exception:
        return None
    try:
        path = uv_pkg.find_uv_bin()
    except Exception:
        return None
    return path if path and not is_shim(path) else None


def _depth(env: Mapping[str, str]) -> int:
    value = env.get(DEPTH_VAR, "")
    return int(value) if value.isdigit() else 0


def check_guard(env: Mapping[str, str]) -> None:
    looped = env.get(GUARD_VAR) == str(os.getpid()) or env.get(PARENT_VAR) == str(os.getppid())
    if looped or _depth(env) >= MAX_DEPTH:
        raise ShimError(
            "the uv that uv-shim found is uv-shim itself (recursion); set UV_SHIM_REAL_UV to the real "
            "uv binary or fix PATH (`uv-shim which` shows what is used)"
        )


def child_env(env: Mapping[str, str], exec_: bool = True) -> dict[str, str]:
    """The user's environment plus the recursion guard for the program we start.

    For ``exec`` the guard is our pid (exec keeps it); for a child it is our pid as its parent.
    """
    out = dict(env)
    out[GUARD_VAR if exec_ else PARENT_VAR] = str(os.getpid())
    out[DEPTH_VAR] = str(_depth(env) + 1)
    return out


def parsed_env(env: Mapping[str, str]) -> dict[str, str]:
    """For a child whose output we read (``uv cache dir``, ``uv --version``, an interpreter
    query): no colours, whatever the user forces (FORCE_COLOR made ``uv cache dir`` print its path
    wrapped in escape codes, which then named a folder that does not exist)."""
    out = child_env(env, exec_=False)
    for name in ("FORCE_COLOR", "CLICOLOR_FORCE"):
        out.pop(name, None)
    out["NO_COLOR"] = "1"
    return out


def exec_uv(path: str, argv0: str, args: Sequence[str], env: Mapping[str, str]) -> NoReturn:
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(path, [argv0, *args], child_env(env))


_FORWARDED = (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


def run_uv(path: str, argv0: str, args: Sequence[str], env: Mapping[str, str]) -> int:
    """Run uv as a child with our stdio; return its status (negative: killed by that signal)."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.posix_spawn(path, [argv0, *args], child_env(env, exec_=False))
    # The terminal delivers Ctrl-C to the whole foreground group: uv gets it and decides.
    old = {signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN)}
    for sig in _FORWARDED:
        old[sig] = signal.signal(sig, lambda s, _f: os.kill(pid, s))
    try:
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except ChildProcessError:  # pragma: no cover - reaped elsewhere
                return 1
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    return os.waitstatus_to_exitcode(status)


def mirror_exit(code: int) -> NoReturn:
    """Exit the way uv did: by the same signal if it was killed, else with its code."""
    sys.stdout.flush()
    sys.stderr.flush()
    if code < 0:
        sig = -code
        try:
            signal.signal(sig, signal.SIG_DFL)  # SIGKILL and SIGSTOP have no handler to reset
        except (OSError, ValueError):
            pass
        try:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
        except (OSError, ValueError, AttributeError):
            pass
        os.kill(os.getpid(), sig)
        code = 128 + sig
    os._exit(code)


# ---------------------------------------------------------------------------------------------
# What a given uv binary is: version and cache bucket names, read once and memoized by file.
# ---------------------------------------------------------------------------------------------

_BUCKET_KINDS = ("sdists", "wheels", "environments", "simple", "interpreter")
# Buckets whose name is not in that run of literals: `files-v0`, the content-addressed files of
# the `content-addressed-cache` preview (0.13.x), kept by every prune of a version that has it.
_LONE_BUCKETS = ("files",)
# Variables whose support differs between uv versions and changes where uv works: looked up as
# plain strings in the binary (uv names every variable it reads as a literal).
ENV_VARS = ("UV_WORKING_DIR", "UV_PROJECT")
MEMO_FILE = "uv-builds-v4.tsv"


class UvBuild:
    __slots__ = ("version", "buckets", "env_vars")

    def __init__(self, version: str, buckets: dict[str, str], env_vars: Sequence[str] = ()) -> None:
        self.version = version
        self.buckets = buckets  # {"sdists": "sdists-v11", "wheels": "wheels-v8", ..., "all": "a|b"}
        self.env_vars = frozenset(env_vars)  # the ENV_VARS this uv reads

    @property
    def all_buckets(self) -> list[str]:
        """Every top-level bucket this uv keeps (a prune removes anything else)."""
        return [b for b in self.buckets.get("all", "").split("|") if b]

    @property
    def version_tuple(self) -> tuple[int, ...]:
        return version_tuple(self.version)


def version_tuple(version: str) -> tuple[int, ...]:
    out: list[int] = []
    for part in version.split("."):
        digits = ""
        for ch in part:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        out.append(int(digits))
    return tuple(out)


def _scan_binary(path: str) -> dict[str, str]:
    """The bucket names compiled into the uv binary.

    uv keeps them as one run of string literals (``wheels-v8sdists-v11flat-index-v7...``):
    find ``archive-v0`` (a plain byte search, ~10 ms over 40 MB) and read the run around it.
    A name that appears exactly once anywhere in the binary is the fallback (a slower regex).
    """
    import mmap
    import re

    from shim.cache import ARCHIVE_BUCKET

    token = re.compile(rb"(" + b"|".join(k.encode() for k in _BUCKET_KINDS) + rb")-v(\d+)")
    found: dict[str, list[str]] = {}
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        env_vars = "|".join(v for v in ENV_VARS if m.find(v.encode()) >= 0)
        start = 0
        while True:
            i = m.find(ARCHIVE_BUCKET.encode(), start)
            if i < 0:
                break
            run = m[max(0, i - 300) : i + 300]
            names = {mt.group(1).decode(): mt.group(0).decode() for mt in token.finditer(run)}
            if "sdists" in names and "wheels" in names:
                buckets = _bucket_run(run, names["wheels"], i - max(0, i - 300))
                for kind in _LONE_BUCKETS:  # named elsewhere in the binary: the one such literal
                    lone = {mt.group(0).decode() for mt in re.finditer(kind.encode() + rb"-v\d+", m)}
                    if len(lone) == 1 and not (lone & set(buckets)):
                        names[kind] = lone.pop()
                        buckets.append(names[kind])
                names["all"] = "|".join(buckets)
                names["env"] = env_vars
                return names
            start = i + 1
        for match in token.finditer(m):
            names_ = found.setdefault(match.group(1).decode(), [])
            name = match.group(0).decode()
            if name not in names_:
                names_.append(name)
    out = {k: v[0] for k, v in found.items() if len(v) == 1}
    out["env"] = env_vars
    return out


def _bucket_run(run: bytes, first: str, anchor: int) -> list[str]:
    """Every bucket name in the table of literals around ``archive-v0``: the maximal run of
    ``name-vN`` tokens, trimmed to start at a known bucket (text before it is another literal)."""
    import re

    tokens = re.compile(rb"(?:[a-z]+(?:-[a-z]+)*-v\d+)+")
    for mt in tokens.finditer(run):
        if mt.start() <= anchor < mt.end():
            text = mt.group().decode()
            text = text[text.find(first) :] if first in text else text
            return re.findall(r"[a-z]+(?:-[a-z]+)*-v\d+", text)
    return []


def _ask_version(path: str) -> str:
    import re
    import subprocess

    out = subprocess.run([path, "--version"], capture_output=True, text=True, env=parsed_env(os.environ))
    m = re.search(r"\d+\.\d+\.\d+\S*", out.stdout)
    return m.group() if m else "0"


def build_of(real: RealUv) -> UvBuild:
    """Version and bucket names of a uv binary, memoized by (real path, size, mtime)."""
    resolved = os.path.realpath(real.path)
    st = os.stat(resolved)
    key = f"{resolved}\t{st.st_size}\t{st.st_mtime_ns}\t"
    memo_file = os.path.join(paths.state_dir(), MEMO_FILE)
    try:
        lines = paths.read_bytes(memo_file).decode("utf-8", "surrogateescape").splitlines()
    except OSError:
        lines = []
    for line in lines:
        if line.startswith(key):
            version, _, spec = line[len(key) :].partition("\t")
            buckets = dict(item.split("=", 1) for item in spec.split(",") if "=" in item)
            if "sdists" in buckets and "wheels" in buckets and "all" in buckets and "env" in buckets:
                return _build(version, buckets)
    version = _ask_version(real.path)
    buckets = _scan_binary(resolved)
    if "sdists" not in buckets or "wheels" not in buckets:
        raise ShimError(
            f"cannot read the cache layout of {real.path} (uv {version}); report this uv version to uv-shim"
        )
    if "\n" not in resolved and "\t" not in resolved:
        keep = [ln for ln in lines if not ln.startswith(resolved + "\t")]
        keep.append(key + version + "\t" + ",".join(f"{k}={v}" for k, v in sorted(buckets.items())))
        try:
            paths.write_atomic(memo_file, ("\n".join(keep) + "\n").encode("utf-8", "surrogateescape"))
        except OSError:
            pass  # a memo we cannot write costs one uv --version per run, nothing else
    return _build(version, buckets)


def _build(version: str, spec: dict[str, str]) -> UvBuild:
    env_vars = [v for v in spec.pop("env", "").split("|") if v]
    return UvBuild(version, spec, env_vars)
