"""Entry points: ``launch`` (uv and uvx, from a launcher) and ``main`` (the ``uv-shim`` command)."""

from __future__ import annotations

import os
import sys

from shim import __version__, realuv, uvargs
from shim.realuv import ShimError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn, Optional

_TRUE = ("1", "true", "yes")


def _error(message: str, code: int = 2) -> NoReturn:
    sys.stderr.write(f"uv-shim: error: {message}\n")
    sys.stderr.flush()
    os._exit(code)


def launch(name: str, self_path: str, args: list[str]) -> NoReturn:
    """Run as ``uv`` or ``uvx``: pass through, or intercept and keep the manifest."""
    env = os.environ
    try:
        realuv.check_guard(env)
        real = realuv.find(env, own=[self_path] if self_path else [])
    except ShimError as e:
        _error(str(e))
    if self_path and os.path.getmtime(uvargs.__file__) > _mtime(self_path):
        _refresh_launchers(self_path)
    if name == "uvx":
        uv_args = ["tool", "run", *args]
        exec_path = real.sibling("uvx")
        argv0, run_args = (name, args) if exec_path != real.path else ("uv", uv_args)
    else:
        uv_args, exec_path, argv0, run_args = args, real.path, "uv", args
    inv = uvargs.parse(uv_args)
    if env.get("UV_SHIM_DISABLE", "").lower() in _TRUE or not inv.intercepted:
        realuv.exec_uv(exec_path, argv0, run_args, env)
    if inv.words[0] == "cache":
        from shim import clean, prune

        (prune.run if inv.words[1] == "prune" else clean.run)(real, argv0, exec_path, run_args, inv)
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
        sys.stderr.write(f"uv-shim: warning: cannot refresh the launchers in {os.path.dirname(self_path)}: {e}\n")


def main(argv: Optional[list[str]] = None) -> int:
    import argparse
    from pathlib import Path

    from shim import launcher

    parser = argparse.ArgumentParser(prog="uv-shim", description="A drop-in uv that makes uv's cache safe to prune.")
    parser.add_argument("--version", action="version", version=f"uv-shim {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p_which = sub.add_parser("which", help="print the real uv uv-shim runs, and why")
    p_which.add_argument("-v", "--verbose", action="store_true", help="also print its version and cache buckets")
    p_install = sub.add_parser("install", help="write uv and uvx launchers and print how to put them first on PATH")
    p_install.add_argument(
        "--bin-dir", type=Path, default=None, help=f"where to write them (default: {launcher.default_bin_dir()})"
    )
    p_shell = sub.add_parser("shell-init", help="print the snippet that puts uv-shim in front of uv in a shell")
    p_shell.add_argument("shell", choices=["bash", "zsh", "fish"])
    p_shell.add_argument("--alias", action="store_true", help="alias uv and uvx instead of changing PATH")
    p_shell.add_argument("--bin-dir", type=Path, default=None, help="launcher folder (default: as `uv-shim install`)")

    def common(p: argparse.ArgumentParser, json_: bool = True) -> argparse.ArgumentParser:
        p.add_argument("--cache-dir", help="the uv cache (default: the one uv uses here)")
        if json_:
            p.add_argument("--json", action="store_true", help="machine-readable output on stdout")
        p.add_argument("-q", "--quiet", action="store_true")
        p.add_argument("-v", "--verbose", action="store_true")
        return p

    common(sub.add_parser("status", help="cache size, archives by state, what prune would free, environments"))
    common(sub.add_parser("envs", help="one row per recorded environment"))
    p_why = common(sub.add_parser("why", help="which environments keep an archive or package"))
    p_why.add_argument(
        "target", metavar="ARCHIVE-ID|PACKAGE[==VERSION]", help="an id that starts with '-' goes after `--`"
    )
    p_doctor = common(
        sub.add_parser("doctor", help="find environments with dangling links into the cache; --fix reinstalls")
    )
    p_doctor.add_argument(
        "paths", nargs="*", metavar="PATH", help="environments to check (default: every recorded one)"
    )
    p_doctor.add_argument(
        "--fix", action="store_true", help="reinstall the broken distributions (same versions, symlink mode)"
    )
    p_adopt = common(sub.add_parser("adopt", help="record existing environments"))
    p_adopt.add_argument("paths", nargs="*", metavar="PATH")
    p_adopt.add_argument("--discover", metavar="DIR", help="find environments (pyvenv.cfg) under DIR")
    sub.add_parser(
        "gc",
        help="`uv cache prune` through the shim: --unused, --max-age 30d, --max-size 10GiB, --keep-recent 1h, --dry-run, ...",
    )
    p_uninstall = sub.add_parser("uninstall", help="remove the launchers uv-shim wrote")
    p_uninstall.add_argument("--bin-dir", type=Path, default=None)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["gc"] and not {"-h", "--help"} & set(argv):  # every option goes to the prune
        try:
            real = realuv.find(os.environ)
        except ShimError as e:
            _error(str(e))
        from shim import prune

        args = ["cache", "prune", *argv[1:]]
        prune.run(real, "uv", real.path, args, uvargs.parse(args))
    uv_args: list[str] = []
    if argv[:1] == ["doctor"] and "--" in argv:  # `uv-shim doctor --fix -- --index-url ...`: arguments for uv
        i = argv.index("--")
        argv, uv_args = argv[:i], argv[i + 1 :]
    ns = parser.parse_args(argv)
    ns.uv_args = uv_args
    if ns.command in ("status", "envs", "why", "doctor", "adopt"):
        from shim import views

        try:
            return views.run(ns)
        except ShimError as e:
            _error(str(e))

    try:
        if ns.command == "which":
            real = realuv.find(os.environ)
            print(real.path)
            sys.stderr.write(f"uv-shim: using {real.path}: {real.why}\n")
            if ns.verbose:
                build = realuv.build_of(real)
                sys.stderr.write(f"uv-shim: uv {build.version}, buckets: {', '.join(sorted(build.buckets.values()))}\n")
            return 0
        if ns.command == "install":
            bin_dir = os.path.abspath(ns.bin_dir or launcher.default_bin_dir())
            launcher.install(bin_dir)
            try:
                found: Optional[str] = realuv.find(_path_without(bin_dir)).path
            except ShimError:
                found = None
            sys.stderr.write(f"Installed uv-shim launchers in {bin_dir}\n")
            if found is None:
                sys.stderr.write("uv-shim: warning: no real uv found yet: install uv, or set UV_SHIM_REAL_UV\n")
            else:
                sys.stderr.write(f"Real uv: {found}\n")
            if any(os.path.realpath(p) == bin_dir for p in os.environ.get("PATH", "").split(os.pathsep)[:1]):
                sys.stderr.write(f"{bin_dir} is already first on PATH\n")
            else:
                sys.stderr.write("Put it first on PATH (add this line to your shell's startup file):\n")
            print(launcher.path_line(bin_dir))
            return 0
        if ns.command == "shell-init":
            from shim import shells

            bin_dir = os.path.abspath(ns.bin_dir or launcher.default_bin_dir())
            if not os.path.isfile(os.path.join(bin_dir, "uv")):
                launcher.install(bin_dir)  # out of the box: the snippet needs launchers to point at
            sys.stdout.write(
                shells.snippet(ns.shell, alias=ns.alias, bin_dir=os.path.abspath(ns.bin_dir) if ns.bin_dir else "")
            )
            return 0
        if ns.command == "uninstall":
            bin_dir = os.path.abspath(ns.bin_dir or launcher.default_bin_dir())
            removed = launcher.uninstall(bin_dir)
            sys.stderr.write(
                f"Removed {len(removed)} files from {bin_dir}\n" if removed else f"Nothing to remove in {bin_dir}\n"
            )
            return 0
    except ShimError as e:
        _error(str(e))
    except OSError as e:
        _error(f"{e.strerror}: {e.filename}" if e.filename else str(e))
    parser.print_help(sys.stderr)
    return 2


def _path_without(bin_dir: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if os.path.abspath(p or ".") != bin_dir
    )
    return env
