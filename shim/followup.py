"""Finish the bookkeeping of a command that hands the terminal to the user's program.

``uv run`` and ``uvx`` sync an environment and then run the user's program under uv for as long
as it likes, so the shim ``exec``s uv and cannot wait for it to return. Before the ``exec`` it
starts a detached helper (two forks, a new session, no terminal, no inherited descriptors) that:

1. takes a shared ``flock`` on uv's cache lock, as every uv >= 0.8.19 does: no prune, through the
   shim or bare, can run until it lets go, and it lets go only once the pins are written;
2. watches the target environments while uv syncs them, scanning and pinning each time a
   ``site-packages`` folder changes (an install in progress is pinned as it lands);
3. stops when uv's install step is over (uv has started the user's program, see
   ``uvfeatures.is_install_step_child``) or when uv has exited, after one last full pass.

Its failures cannot be printed on a terminal that now belongs to the user's program: they are
kept in the record area (``manifest.NOTICES``) and the next intercepted uv command in that cache
prints them once.
"""

from __future__ import annotations

import os
import sys
import time

from shim import manifest, realuv, uvfeatures
from shim.cache import Cache

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from shim.bookkeeping import Book
    from shim.uvargs import Invocation

FIRST_POLL = 0.005  # seconds; doubles up to LAST_POLL while uv installs
LAST_POLL = 0.05
SLOW_POLL = 2.0  # once the user's program runs but an environment is still missing
QUIET = 60.0  # seconds without a change while uv runs a child we do not recognize: done
GIVE_UP = 6 * 3600.0  # a helper never outlives this, whatever uv does


def start(
    root: str,
    build: realuv.UvBuild,
    envs: list[tuple[str, str]],
    inv: Invocation,
    cached: bool,
    gens: list[str],
    uv_path: str = "",
) -> None:
    """Fork the detached helper for uv about to be exec'ed in this process (same pid).
    ``cached``: uv runs the program in an environment it keeps in the cache (found at the end)."""
    uv_pid = os.getpid()

    def work(middle: int) -> None:  # middle: uv's child for a moment, not the user's program
        _finish(root, build, envs, inv, uv_pid, middle, cached, gens)
        if uv_path:  # the automatic prune, if due: only now, with our pins in and our lock let go
            from shim import autogc

            autogc.maybe_start(root, build, uv_path)

    spawn_detached(work)


def spawn_detached(work: Callable[[int], None]) -> None:
    """Run ``work(pid of the middle process)`` in a detached grandchild and return at once: two
    forks (the middle exits at once, so the helper is nobody's zombie), then ``detach``. Nothing
    escapes the forked copy: it always ends in ``os._exit``."""
    sys.stdout.flush()
    sys.stderr.flush()
    first = os.fork()
    if first:
        os.waitpid(first, 0)
        return
    try:
        middle = os.getpid()
        if os.fork():
            os._exit(0)
        detach()
        code = 0
        try:
            work(middle)
        except BaseException:
            code = 1
        os._exit(code)
    except BaseException:
        os._exit(1)


def detach() -> None:
    """A new session, stdio on /dev/null, every inherited descriptor closed: whoever waits for
    the user's command (a CI step reading its output, a make jobserver) never waits for us."""
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.closerange(3, _max_fd())
    sys.stdout = sys.stderr = open(os.devnull, "w")


def _max_fd() -> int:
    try:
        return max(int(n) for n in os.listdir("/proc/self/fd")) + 1
    except (OSError, ValueError):
        return os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 1024


def _finish(
    root: str,
    build: realuv.UvBuild,
    envs: list[tuple[str, str]],
    inv: Invocation,
    uv_pid: int,
    middle: int,
    cached: bool,
    gens: list[str],
) -> None:
    from shim import bookkeeping
    from shim.locks import SharedLock

    notices: list[str] = []
    warn = bookkeeping.Warnings(notices.append)
    lock = SharedLock(root)
    try:
        lock.acquire()
        book = bookkeeping.Book(Cache(root, build), warn)
        book.generations = gens  # every uv generation seen (the parent synced them)
        watch(
            book,
            envs,
            cached,
            _process(uv_pid, root, ignore=middle, user_argv=inv.positionals),
            time.monotonic() + GIVE_UP,
        )
    except Exception as e:
        warn(bookkeeping.describe(e, "could not record what `uv run` installed"))
    finally:
        if notices:
            try:
                manifest.add_notice(Cache(root, build), notices[0])
            except Exception:  # nowhere left to report it
                pass
        lock.release()


def watch(
    book: Book,
    envs: list[tuple[str, str]],
    cached: bool,
    uv_state: Callable[[], str],
    deadline: float,
) -> None:
    """Pin while uv installs; one full pass when its install step is over (or uv is gone)."""
    from shim import envscan

    stamps: dict[str, str] = {}  # the stamp each environment was last scanned at
    delay = FIRST_POLL
    last_change = time.monotonic()
    while True:
        state = uv_state()
        for path, kind in envs:
            try:
                stamp = envscan.site_stamp(path, kind) if os.path.isdir(path) else ""
            except OSError:
                continue
            if stamp and stamp != stamps.get(path):
                stamps[path] = stamp
                last_change = time.monotonic()
                _update(book, path, kind, final=False)  # what has landed so far
        if state == uvfeatures.GONE or time.monotonic() > deadline:
            break
        quiet = time.monotonic() - last_change
        if state == uvfeatures.UNRECOGNIZED and quiet > QUIET and _all_exist(envs):
            break  # a program we do not recognize (a renamed title) and nothing landed for a while
        if state == uvfeatures.RUNNING:
            if _all_exist(envs):
                break
            delay = max(delay, LAST_POLL)  # running, yet an environment is missing: watch on, slowly
        time.sleep(delay)
        delay = min(delay * 2, SLOW_POLL if state == uvfeatures.RUNNING else LAST_POLL)
    if cached:  # the environment uv just made in the cache is new
        envs = envs + [(p, "cached") for p in book.cache.cached_envs() if (p, "cached") not in envs]
    for path, kind in envs:  # always a full pass: folder times are coarse (a few ms), and two
        _update(book, path, kind, final=True)  # packages landing in one tick leave the same stamp


def _all_exist(envs: list[tuple[str, str]]) -> bool:
    """Every environment uv was to make outside the cache is there (cached ones are found later)."""
    return all(os.path.isdir(p) for p, k in envs if k != "cached")


def _update(book: Book, path: str, kind: str, final: bool) -> None:
    """One environment; its failure is reported (once) and the others go on."""
    from shim import bookkeeping

    try:
        book.update(path, kind, final=final)
    except Exception as e:
        book.warn(bookkeeping.describe(e, f"could not record {path}"))


def _blind(pid: int) -> Callable[[], str]:
    """uv's state when its children cannot be seen: UNRECOGNIZED while it lives (so the watch ends
    after QUIET seconds without a change), GONE after."""

    def state() -> str:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return uvfeatures.GONE
        except OSError:
            pass  # alive, someone else's: cannot be (uv is ours), keep watching
        return uvfeatures.UNRECOGNIZED

    return state


def _process(pid: int, cache_root: str, ignore: int, user_argv: list[str]) -> Callable[[], str]:
    """uv's state by pid: INSTALLING, RUNNING (the user's program started) or GONE. The process
    is told apart from a later one with the same pid by its start time."""
    import psutil

    try:
        proc = psutil.Process(pid)
        started = proc.create_time()
    except psutil.Error:
        return _blind(pid)  # no process table here (a hidden /proc): alive or not is all we see
    except Exception:
        return _blind(pid)

    def state() -> str:
        try:
            if not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE or proc.create_time() != started:
                return uvfeatures.GONE
            children = proc.children()
            own = proc.cmdline()
        except psutil.Error:
            return uvfeatures.GONE
        unrecognized = False
        for child in children:
            if child.pid in (ignore, os.getpid()):  # the middle process; this helper when uv is PID 1
                continue
            try:
                argv = child.cmdline()
                if argv == own or child.status() == psutil.STATUS_ZOMBIE:
                    continue  # forked, not yet exec'ed: nobody yet
            except psutil.Error:
                continue
            if argv and uvfeatures.is_user_program(argv, user_argv, cache_root):
                return uvfeatures.RUNNING
            if argv and not uvfeatures.is_install_step_child(argv, cache_root):
                unrecognized = True
        return uvfeatures.UNRECOGNIZED if unrecognized else uvfeatures.INSTALLING

    return state
