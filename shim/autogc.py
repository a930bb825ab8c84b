"""A cache that keeps itself in budget: an automatic prune, off by default, started in the
background after an intercepted command when one is due.

The policy is the ``[gc]`` table of the config file or ``UV_SHIM_AUTO_*`` (``shim.policy``):
``max-size``, ``max-age``, ``min-free`` (free space on the cache's filesystem), ``unused``,
``keep-recent``, and ``every`` (default one day). On the user's command the only cost is one
``stat`` of a stamp file whose mtime is the time the next run is due (``maybe_start``); when it is
due, a detached helper (two forks, a new session, niced and I/O-niced) does the rest and the
command returns at once with uv's output and exit code.

The helper reads the policy; with none it looks again in an hour. It takes uv's exclusive cache
lock without waiting: if any uv process holds the cache it gives up and a later invocation (a
minute on) tries again. Holding the lock it does what a prune through the shim does: verifies
every root, pins the live, chooses by the policy, sets uv's references aside and runs the real
``uv cache prune`` (``shim.prune.prune_locked``), so every protection of the manual prune holds.
Each run or skip is one JSON line in ``<state dir>/gc.log`` (bounded: one older generation is
kept), which ``uv-shim status`` shows.
"""

from __future__ import annotations

import os
import time

from shim import paths

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional

    from shim.locks import ExclusiveLock
    from shim.policy import AutoPolicy
    from shim.realuv import UvBuild

RECHECK = 3600.0  # no policy: read the configuration again after this
RETRY = 60.0  # the cache was in use: an invocation after this tries again
LOG = "gc.log"
LOG_MAX = 64 * 1024  # bytes; then it becomes gc.log.old (one generation kept)


def stamp_path(root: str) -> str:
    """Per cache and host: the mtime of this file is when the next run is due. A command whose
    environment names a policy (``UV_SHIM_AUTO_*``, ``UV_SHIM_CONFIG``) keeps its own stamp, so
    setting one takes effect at once; the config file is read again at most an hour later."""
    key = _fnv1a(root.encode("utf-8", "surrogateescape"))
    if any(k.startswith("UV_SHIM_AUTO_") or k == "UV_SHIM_CONFIG" for k in os.environ):
        key += "-env"
    return os.path.join(paths.state_dir(), "gc", key)


def _fnv1a(data: bytes) -> str:
    """A stable 64-bit hash in a few microseconds (hashlib costs more to import than this)."""
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


MAX_WAIT = 100 * 365 * 86400.0  # a stamp further out than this is a policy that never runs again


def _set_due(path: str, when: float) -> bool:
    """Set when the next run is due; False when the stamp cannot be written (then nothing is
    started: without a stamp every command would start a helper)."""
    when = min(when, time.time() + MAX_WAIT)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "a"):
            pass
        os.utime(path, (when, when))
        return True
    except (OSError, OverflowError, ValueError):
        return False


def maybe_start(root: str, build: UvBuild, uv_path: str) -> None:
    """After an intercepted command: start the background prune if one is due. Never raises."""
    path = stamp_path(root)
    try:
        if os.stat(path).st_mtime > time.time():
            return  # the common case: one stat
    except FileNotFoundError:
        pass
    except OSError:
        return
    try:
        if _set_due(path, time.time() + RETRY):  # claimed: concurrent commands see it not due
            _spawn(root, build, uv_path)
    except BaseException:  # a Ctrl-C here included: uv has finished, its exit code stands
        pass


# Paths in the environment that the helper reads and that may be relative to the user's folder,
# which the helper leaves: uv-shim's home and config, and the HOME that stands behind both (and
# behind the real uv's own defaults). Relative XDG_* values are ignored (the XDG rule, uv's and
# uv-shim's alike: paths._xdg, policy.config_path), and stay so.
ANCHORED = ("HOME", "UV_SHIM_HOME", "UV_SHIM_CONFIG")


def _spawn(root: str, build: UvBuild, uv_path: str) -> None:
    from shim import followup

    def work(_middle: int) -> None:
        real = paths.physical(uv_path)
        for var in ANCHORED:  # read from the user's folder, as the command itself read them
            if os.environ.get(var):
                os.environ[var] = paths.physical(os.environ[var])
        os.chdir("/")  # keep no user folder busy
        _lower_priority()
        try:
            run(root, build, real, os.environ)
        except BaseException as e:
            log(root, "failed", reason=f"{type(e).__name__}: {e}")
            raise

    followup.spawn_detached(work)


def _lower_priority() -> None:
    """Niced and I/O-niced: the user's work comes first. Best-effort class, lowest priority,
    not idle: it holds uv's lock while it prunes, and an idle-class holder starved by other I/O
    would keep the user's uv commands waiting (priority inversion)."""
    try:
        os.nice(10)
    except OSError:
        pass
    try:
        import psutil

        psutil.Process().ionice(psutil.IOPRIO_CLASS_BE, 7)
    except Exception:
        pass


def run(root: str, build: UvBuild, uv_path: str, env: Any) -> Optional[dict[str, Any]]:
    """One background run (also ``uv-shim gc --auto`` in the foreground, for tests and cron):
    returns what it logged."""
    from shim import hostid, liveness, report
    from shim.cache import Cache
    from shim.cachecmd import lease_seconds
    from shim.cachedir import refuse_to_empty
    from shim.locks import ExclusiveLock
    from shim.policy import auto_policy
    from shim.prune import prune_locked

    now = time.time()
    stamp = stamp_path(root)
    warnings: list[str] = []
    policy = auto_policy(env, warnings.append)
    if not policy.enabled:
        _set_due(stamp, now + RECHECK)
        return None
    _set_due(stamp, now + policy.every)
    why = refuse_to_empty(root, build, env)
    if why:  # the checks of `uv cache prune` through the shim: never a home folder, never `/`
        return log(root, "skipped", policy, reason=why, warnings=warnings)
    need = _space_needed(root, policy)
    if not policy.active and not need:
        return log(root, "skipped", policy, reason="enough free space", warnings=warnings)
    lock = ExclusiveLock(root, 0, lambda _line: None)
    if not _take(lock, root):
        _set_due(stamp, now + min(RETRY, policy.every))
        return log(root, "skipped", policy, reason="the cache is in use", warnings=warnings)
    cache = Cache(root, build)
    try:
        roots = liveness.verify(cache, hostid.identity()[1], lease_seconds(env), memo=True)  # uv deletes
        policy.reclaim = need  # evict.choose turns it into a size, from the look it takes anyway
        os.environ["UV_CACHE_DIR"] = root  # the real uv prunes this cache, whatever else is configured
        code, result = prune_locked(
            cache, lock, roots, policy, False, uv_path, "uv", ["cache", "prune", "-q"], report.Out(quiet=True)
        )
    finally:
        lock.release()
    if code != 0 or result is None:
        return log(root, "failed", policy, reason=f"uv cache prune exited with {code}", warnings=warnings)
    doc = result.doc()
    return log(
        root,
        "ran",
        policy,
        removed={"archives": doc["removed"]["archives"]["count"], "bytes": doc["removed"]["bytes"]},
        kept={k: doc["kept"][k] for k in ("archives", "bytes", "environments")},
        cache_bytes_after=doc["cache_bytes_after"],
        warnings=warnings,
    )


HELPER_WAIT = 2.0  # seconds: the helper that started an automatic prune exits right after


def _take(lock: ExclusiveLock, root: str) -> bool:
    """uv's lock at once, or once uv-shim's own helpers, if they alone held it, let go (within
    ``HELPER_WAIT``): a cache a uv command is using is left alone at once."""
    from shim.followup import only_helpers_hold

    deadline = time.monotonic() + HELPER_WAIT
    while not lock.try_acquire():
        if time.monotonic() > deadline or not only_helpers_hold(root):
            return False
        time.sleep(0.02)
    return True


def _space_needed(root: str, policy: AutoPolicy) -> int:
    """Bytes to reclaim for ``min-free`` (0: enough free space, or no min-free)."""
    if policy.min_free is None:
        return 0
    try:
        st = os.statvfs(root)
    except OSError:
        return 0
    free = st.f_bavail * st.f_frsize
    return max(0, policy.min_free - free)


def log(root: str, outcome: str, policy: Optional[AutoPolicy] = None, **fields: Any) -> dict[str, Any]:
    """One JSON line in the host's gc log (rotated at LOG_MAX, one older generation kept)."""
    import json

    entry: dict[str, Any] = {"time": time.time(), "cache": root, "outcome": outcome}
    if policy is not None:
        entry["policy"] = policy.describe()
    entry.update({k: v for k, v in fields.items() if v not in (None, [])})
    path = os.path.join(paths.state_dir(), LOG)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            if os.path.getsize(path) > LOG_MAX:
                os.replace(path, path + ".old")
        except FileNotFoundError:
            pass
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, (json.dumps(entry, sort_keys=True) + "\n").encode("utf-8", "surrogateescape"))
        finally:
            os.close(fd)
    except OSError:
        pass
    return entry


def last_entry(root: str) -> Optional[dict[str, Any]]:
    """The newest log line about this cache, if any."""
    import json

    path = os.path.join(paths.state_dir(), LOG)
    for name in (path, path + ".old"):
        try:
            with open(name, "rb") as f:
                lines = f.read().decode("utf-8", "surrogateescape").splitlines()
        except OSError:
            continue
        for line in reversed(lines):
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("cache") == root:
                return entry
    return None


def next_due(root: str) -> Optional[float]:
    try:
        return os.stat(stamp_path(root)).st_mtime
    except OSError:
        return None


def describe(entry: dict[str, Any]) -> str:
    """One log entry as a line: ``ran 3h ago: removed ...`` / ``skipped 5m ago: the cache is in use``."""
    from shim import report

    def number(d: Any, key: str) -> int:
        value = d.get(key) if isinstance(d, dict) else None
        return int(value) if isinstance(value, (int, float)) and 0 <= value < 2**63 else 0

    try:  # the log is a file anyone with this account can edit: every field is checked
        when = report.human_age(time.time() - float(entry.get("time", 0))) + " ago"
    except (TypeError, ValueError, OverflowError):
        when = "some time ago"
    if entry.get("outcome") == "ran":
        r, k = entry.get("removed"), entry.get("kept")
        return (
            f"ran {when}: removed {report.plural(number(r, 'archives'), 'archive')} "
            f"({report.human_size(number(r, 'bytes'))} freed), kept {report.plural(number(k, 'archives'), 'archive')} "
            f"({report.human_size(number(k, 'bytes'))}) used by {report.plural(number(k, 'environments'), 'environment')}"
        )
    return f"{entry.get('outcome', '?')} {when}: {entry.get('reason', '')}"
