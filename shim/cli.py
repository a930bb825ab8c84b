"""Entry points: ``launch`` (uv and uvx, from a launcher) and ``main`` (the ``uv-shim`` command)."""

from __future__ import annotations

import os
import sys

from shim import __version__, paths, realuv, style, uvargs
from shim.realuv import ShimError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from typing import NoReturn, Optional


def _fail(e: ShimError) -> NoReturn:
    style.error(str(e))
    sys.exit(e.exit_code)


def launch(name: str, self_path: str, args: list[str]) -> NoReturn:
    """Run as ``uv`` or ``uvx``: pass through, or intercept and keep the manifest. ``+uv`` and
    ``+uvx``: the background helper of a command the launcher hands to uv itself (its arguments
    start with the real uv, uv's pid and the cache it locked; see ``followup.after``)."""
    if name[:1] == "+":
        code = 1
        try:
            from shim import followup

            followup.after(name[1:], args[0], int(args[1]), args[2], args[3:])
            code = 0
        finally:
            os._exit(code)
    env = os.environ
    try:
        realuv.check_guard(env)
        real = realuv.find(env, own=[self_path] if self_path else [])
    except ShimError as e:
        _fail(e)
    if self_path and os.path.getmtime(uvargs.__file__) > _mtime(self_path):
        _refresh_launchers(self_path)
    exec_path, argv0, run_args = real.path, "uv", args
    if name == "uvx":  # run as the uvx binary runs the uv beside it
        run_args = [*uvargs.UVX_WORDS, *args]
    inv = uvargs.parse_launched(name, args)
    style.CHOICE = inv.opt("--color") or "auto"
    if uvargs.env_true(env, "UV_SHIM_DISABLE"):
        realuv.exec_uv(exec_path, argv0, run_args, env)
    if inv.help and inv.words[:2] in (("cache", "prune"), ("cache", "clean")) and name == "uv":
        from shim import settings

        code = realuv.run_uv(exec_path, argv0, run_args, env)  # uv's own help, as uv prints it
        if code == 0:
            try:
                sys.stdout.write(settings.help_section(inv.words[1]))
                sys.stdout.flush()
            except BrokenPipeError:  # `| head`: uv's exit code stands
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        realuv.mirror_exit(code)
    if not inv.intercepted:
        realuv.exec_uv(exec_path, argv0, run_args, env)
    if inv.words[0] == "cache":
        from shim import clean, prune

        try:
            (prune.run if inv.words[1] == "prune" else clean.run)(real, argv0, exec_path, run_args, inv)
        except ShimError as e:
            _fail(e)
    from shim import bookkeeping

    bookkeeping.intercept(real, argv0, exec_path, run_args, inv)


def _mtime(path: str) -> float:
    try:
        return os.path.getmtime(path)
    except OSError:
        return float("inf")


def _refresh_launchers(self_path: str) -> None:
    """uv-shim was upgraded after the launchers were written: rewrite them in place."""
    try:
        from shim import launcher

        launcher.install(os.path.dirname(self_path))
    except Exception as e:
        style.warn(f"cannot refresh the launchers in {os.path.dirname(self_path)}: {e}")


UNSUPPORTED = (
    "uv-shim does not support this platform yet (it needs POSIX file locks and symlinks); "
    "run uv itself: every uv command works there, without uv-shim's protection"
)


def supported() -> bool:
    """POSIX with ``fcntl`` (Linux, macOS, the BSDs); not Windows."""
    import importlib.util

    return os.name == "posix" and importlib.util.find_spec("fcntl") is not None


def main(argv: Optional[list[str]] = None) -> int:
    """``uv-shim COMMAND``: parse, run one command, turn its error into an exit code (here only)."""
    if not supported():
        style.error(UNSUPPORTED)
        return 2
    argv = list(sys.argv[1:] if argv is None else argv)
    uv_args: list[str] = []
    if argv[:1] == ["doctor"] and "--" in argv:  # `doctor [PATH...] -- UV-ARGS`: argparse cannot declare it
        i = argv.index("--")
        argv, uv_args = argv[:i], argv[i + 1 :]
    parser = build_parser()
    ns, rest = parser.parse_known_args(argv)
    if rest and ns.command != "gc":  # only gc passes what it does not know on to uv (uv checks it)
        parser.parse_args(argv)  # argparse's own usage error, exit 2
    ns.uv_args = uv_args if ns.command == "doctor" else rest
    command = COMMANDS.get(ns.command or "")
    if command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return command(ns)
    except ShimError as e:  # UserError included: each kind carries its exit code
        style.error(str(e))
        return e.exit_code
    except OSError as e:
        style.error(f"{e.strerror}: {e.filename}" if e.filename else str(e))
        return 1


def build_parser() -> argparse.ArgumentParser:
    """Every ``uv-shim`` command and option, declared once."""
    import argparse
    from pathlib import Path

    from shim import launcher

    class UvStyle(argparse.HelpFormatter):
        """uv's help layout: ``Usage:``, ``Commands:``, ``Arguments:``, ``Options:``."""

        def add_usage(self, usage, actions, groups, prefix=None):  # type: ignore[no-untyped-def]
            return super().add_usage(usage, actions, groups, prefix="Usage: " if prefix is None else prefix)

        def start_section(self, heading):  # type: ignore[no-untyped-def]
            titles = {"positional arguments": "Arguments", "options": "Options", "optional arguments": "Options"}
            return super().start_section(titles.get(heading, heading))

    parser = argparse.ArgumentParser(
        prog="uv-shim", description="A drop-in uv that makes uv's cache safe to prune.", formatter_class=UvStyle
    )
    parser.add_argument("--version", action="version", version=f"uv-shim {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="Commands")
    add_parser = sub.add_parser
    sub.add_parser = lambda *a, **k: add_parser(*a, formatter_class=UvStyle, **k)  # type: ignore[method-assign]
    p = sub.add_parser("which", help="print the real uv uv-shim runs, and why")
    p.add_argument("-v", "--verbose", action="store_true", help="also print its version and cache buckets")
    p = sub.add_parser(
        "install", help="write the uv, uvx and uv-shim launchers and put them first on PATH for new shells"
    )
    p.add_argument(
        "--bin-dir", type=Path, default=None, help=f"where to write them (default: {launcher.default_bin_dir()})"
    )
    p.add_argument(
        "--no-modify-path",
        action="store_true",
        help="leave the shell profiles alone [env: UV_SHIM_NO_MODIFY_PATH]",
    )
    p = sub.add_parser("shell-init", help="print the snippet that puts uv-shim in front of uv in a shell")
    p.add_argument("shell", choices=["bash", "zsh", "fish"])
    p.add_argument("--alias", action="store_true", help="alias uv and uvx instead of changing PATH")
    p.add_argument("--bin-dir", type=Path, default=None, help="launcher folder (default: as `uv-shim install`)")
    p = sub.add_parser("uninstall", help="remove the launchers and the profile lines uv-shim wrote")
    p.add_argument("--bin-dir", type=Path, default=None)

    def common(p: argparse.ArgumentParser, json_: bool = True) -> argparse.ArgumentParser:
        p.add_argument("--cache-dir", help="the uv cache (default: the one uv uses here)")
        if json_:
            p.add_argument("--json", action="store_true", help="machine-readable output on stdout")
        p.add_argument("-q", "--quiet", action="store_true", help="print only data and errors")
        p.add_argument("-v", "--verbose", action="store_true", help="print more detail")
        return p

    common(sub.add_parser("status", help="cache size, archives by state, what prune would free, environments"))
    common(sub.add_parser("envs", help="one row per recorded environment"))
    p = common(sub.add_parser("why", help="which environments keep an archive or package"))
    p.add_argument("target", metavar="ARCHIVE-ID|PACKAGE[==VERSION]", help="an id that starts with '-' goes after `--`")
    p = common(sub.add_parser("doctor", help="find environments with dangling links into the cache; --fix reinstalls"))
    p.add_argument("paths", nargs="*", metavar="PATH", help="environments to check (default: every recorded one)")
    p.add_argument(
        "--fix", action="store_true", help="reinstall the broken distributions (same versions, symlink mode)"
    )
    p.usage = "uv-shim doctor [options] [PATH ...] [-- UV-ARGS ...]"
    p = common(sub.add_parser("adopt", help="record existing environments"))
    p.add_argument("paths", nargs="*", metavar="PATH")
    p.add_argument("--discover", metavar="DIR", help="find environments (pyvenv.cfg) under DIR")
    p = common(sub.add_parser("gc", help="`uv cache prune` through the shim, with eviction options"))
    p.add_argument(
        "--unused", action="store_true", help="evict every archive no live environment uses [env: UV_SHIM_UNUSED]"
    )
    p.add_argument(
        "--max-age",
        metavar="AGE",
        help="evict archives last used longer ago than AGE (30d, 12h) [env: UV_SHIM_MAX_AGE]",
    )
    p.add_argument(
        "--max-size",
        metavar="SIZE",
        help="evict least recently used archives until the cache fits (10GiB) [env: UV_SHIM_MAX_SIZE]",
    )
    p.add_argument(
        "--keep-recent", metavar="AGE", help="never evict what was used within AGE [env: UV_SHIM_KEEP_RECENT]"
    )
    p.add_argument("--dry-run", action="store_true", help="say what would be removed and kept; change nothing")
    p.add_argument("--ci", action="store_true", help="as `uv cache prune --ci`")
    p.add_argument("--force", action="store_true", help="as `uv cache prune --force` (do not wait for the cache lock)")
    p.add_argument(
        "--auto",
        action="store_true",
        help="run the automatic policy ([gc] in the config file, UV_SHIM_AUTO_*) now, in the foreground,"
        " as it runs in the background when due; print what it logged",
    )
    common(sub.add_parser("du", help="the cache by package and version: size on disk, last use, who holds it"))
    return parser


def cmd_which(ns: argparse.Namespace) -> int:
    real = realuv.find(os.environ)
    print(real.path)
    sys.stderr.write(f"uv-shim: using {real.path}: {real.why}\n")
    if ns.verbose:
        build = realuv.build_of(real)
        sys.stderr.write(f"uv-shim: uv {build.version}, buckets: {', '.join(sorted(build.all_buckets))}\n")
    return 0


def cmd_install(ns: argparse.Namespace) -> int:
    from shim import launcher, profiles

    bin_dir = paths.physical(ns.bin_dir or launcher.default_bin_dir())
    launcher.install(bin_dir)
    try:
        found: Optional[str] = realuv.find(_path_without(bin_dir)).path
    except ShimError:
        found = None
    say = sys.stderr.write
    say(f"Installed uv-shim in {bin_dir} (uv, uvx, uv-shim)\n")
    if found is None:
        style.warn("no real uv found yet: install uv, or set UV_SHIM_REAL_UV")
    else:
        say(f"Real uv: {found}\n")
    if ns.no_modify_path or uvargs.env_true(os.environ, "UV_SHIM_NO_MODIFY_PATH"):
        say(f"Left your shell profiles alone: put {bin_dir} first on PATH yourself, or source {bin_dir}/uv-shim.env\n")
        profiles.write_env(bin_dir)
    else:
        changed = profiles.add(bin_dir, os.environ, style.warn)
        home = os.path.expanduser("~")
        shown = ", ".join(p.replace(home, "~", 1) if p.startswith(home + os.sep) else p for p in changed)
        if changed:
            say(f"Put it first on PATH for new shells in: {shown}\n")
        else:
            say("Your shell profiles already put it first on PATH\n")
    say(f"To use it in this shell now: {profiles.source_line(bin_dir)}\n")
    print(profiles.source_line(bin_dir))
    return 0


def cmd_shell_init(ns: argparse.Namespace) -> int:
    from shim import launcher, shells

    bin_dir = paths.physical(ns.bin_dir or launcher.default_bin_dir())
    if not os.path.isfile(os.path.join(bin_dir, "uv")):
        launcher.install(bin_dir)  # out of the box: the snippet needs launchers to point at
    sys.stdout.write(shells.snippet(ns.shell, alias=ns.alias, bin_dir=bin_dir if ns.bin_dir else ""))
    return 0


def cmd_uninstall(ns: argparse.Namespace) -> int:
    from shim import launcher, profiles

    bin_dir = paths.physical(ns.bin_dir or launcher.default_bin_dir())
    changed = profiles.remove(bin_dir, os.environ)
    removed = launcher.uninstall(bin_dir)
    sys.stderr.write(
        f"Removed {len(removed)} files from {bin_dir}\n" if removed else f"Nothing to remove in {bin_dir}\n"
    )
    if changed:
        sys.stderr.write(f"Removed uv-shim's line from: {', '.join(changed)}\n")
    return 0


def cmd_gc(ns: argparse.Namespace) -> int:
    """``uv cache prune`` through the shim, its options rebuilt for it (uv checks the rest)."""
    from shim import prune

    if ns.auto:
        return _gc_auto(ns)
    real = realuv.find(os.environ)
    args = ["cache", "prune"]
    for flag in ("unused", "dry_run", "ci", "force", "json", "quiet", "verbose"):
        if getattr(ns, flag):
            args.append("--" + flag.replace("_", "-"))
    for option in ("max_age", "max_size", "keep_recent", "cache_dir"):
        if getattr(ns, option) is not None:
            args += ["--" + option.replace("_", "-"), getattr(ns, option)]
    args += ns.uv_args
    prune.run(real, "uv", real.path, args, uvargs.parse(args))


def _gc_auto(ns: argparse.Namespace) -> int:
    import json

    from shim import autogc
    from shim.cachecmd import open_cache
    from shim.errors import UserError

    if ns.uv_args:
        raise UserError(f"--auto takes no uv options: {' '.join(ns.uv_args)}")
    real, cache = open_cache(ns.cache_dir)
    entry = autogc.run(cache.path, cache.build, real.path, os.environ)
    if entry is None:
        sys.stderr.write("uv-shim: no automatic policy ([gc] in the config file, UV_SHIM_AUTO_*)\n")
        return 0
    if ns.json:
        sys.stdout.write(json.dumps(entry, indent=2, sort_keys=True) + "\n")
    elif not ns.quiet:
        sys.stderr.write(autogc.describe(entry) + "\n")
    return 0 if entry["outcome"] != "failed" else 1


def cmd_view(ns: argparse.Namespace) -> int:
    from shim import views

    return views.run(ns)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "which": cmd_which,
    "install": cmd_install,
    "shell-init": cmd_shell_init,
    "uninstall": cmd_uninstall,
    "gc": cmd_gc,
    "du": cmd_view,
    **{name: cmd_view for name in ("status", "envs", "why", "doctor", "adopt")},
}


def _path_without(bin_dir: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if paths.physical(p or ".") != bin_dir
    )
    return env
