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
    from collections.abc import Callable, Iterator
    from typing import Optional

    from shim.bookkeeping import Book, Warnings
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


LOCK_FD = 9  # the launcher's shared flock on uv's cache lock, handed to the background helper


def after(name: str, real_path: str, uv_pid: int, locked: str, args: list[str]) -> None:
    """The background helper the launcher starts beside uv (it then ``exec``s uv as ``uv_pid``).

    The launcher has taken a shared ``flock`` on ``<locked>/.lock`` (fd ``LOCK_FD``) before uv
    started and handed it to us: no prune, through the shim or bare, runs until we let go, and we
    let go once the pins are written. We find the cache and the environments as the foreground
    path does (``bookkeeping.prepare``), register the roots while uv works, then pin: as uv's
    install lands for ``uv run``/``uvx`` (``watch``), after uv has exited for the rest. What we
    cannot say is kept (``manifest.NOTICES``); the next intercepted command prints it once."""
    detach(keep=LOCK_FD)
    from shim import autogc, bookkeeping, paths, uvargs

    real_path, locked = paths.physical(real_path), paths.physical(locked)  # the sh's may be relative

    inv = uvargs.parse_launched(name, args)
    if not inv.intercepted:  # `--help` anywhere (the sh reads only the first words): uv changes nothing
        return
    notices: list[str] = []
    warn = bookkeeping.Warnings(notices.append)
    real = realuv.RealUv(real_path, "the launcher")
    book = None
    try:
        started = _started(uv_pid)
        book, envs, cached, lock = bookkeeping.prepare(real, inv, warn)  # the lock: on this very file
        if book is not None:
            root = book.cache.path
            if not _holds(root):  # the launcher guessed another cache: a bug, but uv locks its own
                warn(
                    f"the launcher locked the cache {locked}, uv uses {root}; set UV_SHIM_FOREGROUND=1 "
                    "and report this to uv-shim"
                )
            if uvargs.runs_child(inv):
                _finish(root, book.cache.build, envs, inv, uv_pid, 0, cached, book.generations, started, warn)
            else:
                try:
                    wait_gone(uv_pid, started, time.monotonic() + GIVE_UP)
                    bookkeeping.update_all(book, envs, warn, "could not record what uv installed")
                finally:
                    if lock is not None:
                        lock.release()
    except Exception as e:
        warn(bookkeeping.describe(e, "could not record what uv installed"))
    finally:
        if notices:
            try:
                manifest.add_notice(
                    book.cache if book is not None else Cache(locked, realuv.build_of(real)), notices[0]
                )
            except Exception:  # nowhere left to report it
                pass
    if book is not None:
        autogc.maybe_start(book.cache.path, book.cache.build, real_path)
    # The launcher's lock (LOCK_FD) goes with every other descriptor when this process exits (the
    # caller exits at once): whoever waited for it finds no descriptor of ours left in the cache,
    # so the folder can be unmounted.


def helpers_hold(cache_dir: str) -> bool:
    """A uv-shim helper holds ``<cache_dir>/.lock`` (a prune waits for it)."""
    return any(_holders_are_helpers(cache_dir))


def only_helpers_hold(cache_dir: str) -> bool:
    """Nothing but uv-shim helpers holds ``<cache_dir>/.lock``: no uv command is using the cache
    (True when nothing holds it)."""
    return all(_holders_are_helpers(cache_dir))


def _holders_are_helpers(cache_dir: str) -> Iterator[bool]:
    """For each holder of ``<cache_dir>/.lock``, whether it is a uv-shim helper: one running the
    launchers' boot script, or one whose taker is gone (the launcher's ``flock``, whose descriptor
    the helper inherited)."""
    from shim.cache import LOCK_FILE
    from shim.locks import lock_holders

    return (realuv.BOOT_NAME in cmd or cmd == "?" for _, cmd in lock_holders(os.path.join(cache_dir, LOCK_FILE)))


def _holds(root: str) -> bool:
    """The launcher's descriptor is ``<root>/.lock`` itself (same file), not a symlink's target."""
    from shim.cache import LOCK_FILE

    try:
        ours = os.fstat(LOCK_FD)
        theirs = os.lstat(os.path.join(root, LOCK_FILE))
    except OSError:
        return False
    return (ours.st_dev, ours.st_ino) == (theirs.st_dev, theirs.st_ino)


def _started(pid: Optional[int] = None, unknown: float = 0.0) -> float:
    """When process ``pid`` (default: this one) started, in seconds since boot, ``unknown`` if that
    cannot be read. The kernel's own figure (``/proc/<pid>/stat``), which a clock step does not
    move: psutil's ``create_time`` adds the boot time, read again at each call, which does."""
    try:
        with open(f"/proc/{pid or 'self'}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()  # the name, before ")", may hold spaces
        return int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22, "starttime", in clock ticks
    except (OSError, ValueError, IndexError):
        return unknown


def _not_uv(pid: int, started: float) -> bool:
    """The process with ``pid`` now is not uv, which started at ``started`` (0: not known): it started
    at another time, or later than this helper (uv was exec'ed by the launcher that forked us, so
    it started no later than we did: ``started`` was then read from a stranger that took uv's pid
    before we looked). False when that cannot be told (no such process: the caller sees it gone)."""
    now = _started(pid)
    return bool(started and now) and (now != started or now > _started(unknown=float("inf")))


def wait_gone(pid: int, started: float, deadline: float) -> None:
    """Until uv (``pid``, started at ``started``) has exited: a pidfd where Linux has one, else
    polling (a zombie counts as exited; a process with its pid that is not uv, see ``_not_uv``,
    means uv has exited)."""
    import select

    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = -1
    if fd >= 0 and _not_uv(pid, started):  # checked once the pidfd holds the process: it is a stranger
        os.close(fd)
        return
    if fd >= 0:
        try:
            while time.monotonic() < deadline:
                if select.select([fd], [], [], min(60.0, max(0.0, deadline - time.monotonic())))[0]:
                    return
        finally:
            os.close(fd)
        return
    state = _process(pid, "", ignore=0, user_argv=[], started=started)
    delay = 0.001
    while state() != uvfeatures.GONE and time.monotonic() < deadline:
        time.sleep(delay)
        delay = min(delay * 2, LAST_POLL)


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


def detach(keep: int = -1) -> None:
    """A new session, stdio on /dev/null, every inherited descriptor closed (but ``keep``): whoever
    waits for the user's command (a CI step reading its output, a make jobserver) never waits for us."""
    try:
        os.setsid()
    except OSError:  # already a session leader
        pass
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if keep >= 3:
        os.closerange(3, keep)
        os.closerange(keep + 1, _max_fd())
    else:
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
    started: float = 0.0,
    warn: Optional[Warnings] = None,
) -> None:
    """``warn``: the caller's, who keeps the notice (one notice file per helper process: a second
    writer would replace the first's)."""
    from shim import bookkeeping
    from shim.locks import SharedLock

    notices: list[str] = []
    if warn is None:
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
            _process(uv_pid, root, ignore=middle, user_argv=inv.positionals, started=started),
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


def _process(pid: int, cache_root: str, ignore: int, user_argv: list[str], started: float = 0.0) -> Callable[[], str]:
    """uv's state by pid: INSTALLING, RUNNING (the user's program started) or GONE. A process that
    took uv's pid is not uv: checked once the psutil object holds it (``_not_uv``, if ``started``
    is known), then at each poll by its start time since boot (psutil's own check only where
    that cannot be read: before psutil 7.1 it compared wall-clock times)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        if _not_uv(pid, started):
            return lambda: uvfeatures.GONE
        started = started or _started(pid)
    except psutil.Error:
        return _blind(pid)  # no process table here (a hidden /proc): alive or not is all we see
    except Exception:
        return _blind(pid)

    def state() -> str:
        try:
            if (_started(pid) != started) if started else not proc.is_running():
                return uvfeatures.GONE  # exited, or its pid is another process's now
            if proc.status() == psutil.STATUS_ZOMBIE:
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
