"""uv's command line: which subcommand runs, its global options, and the environment it targets.

Everything the shim knows about uv's argv lives here, so a new uv release is a change to the
tables at the top of this module. The POSIX-sh launcher's fast path is generated from the same
tables (see ``shim.launcher``), so the two can never disagree.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs milliseconds at startup; only the type checker needs it
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Optional

# Global options that take a value and may appear anywhere in argv (before or after the
# subcommand). ``--opt=value`` is accepted for all of them.
GLOBAL_VALUE_OPTIONS: frozenset[str] = frozenset(
    {
        "--cache-dir",
        "--config-file",
        "--directory",
        "--project",
        "--color",
        "--allow-insecure-host",
        "--trusted-host",
        "--python-preference",
        "--python-fetch",
        "--preview-features",
    }
)

# Commands that may change an environment, as (word, second word or None for "any"); everything
# else is passed straight through. Derived from the real uv by `scripts/uv_commands.py` (every
# subcommand driven against a project, a venv and a tool, site-packages watched), and checked
# against it by tests/test_commands.py on the oldest and newest uv the suite drives:
#
#   pip install|sync|uninstall, sync, add, remove, run, venv,
#   tool install|upgrade|uninstall|run           every uv version checked (0.7.0, 0.9.5, 0.13.9)
#   version (with --bump or a new version)     syncs the project since 0.9.5 (0.7.0: no sync)
#   check                                      syncs the project (new in 0.13.x)
#   cache prune|clean                          the prune itself (shim.prune, shim.clean)
#
# Never an environment (checked the same way): init, lock, export, tree, build, format,
# pip compile|freeze|list|show|tree|check, python *, tool list|dir|update-shell, cache dir|size,
# self version, help, workspace *. Skipped by the script (network or credentials): publish,
# auth *, python install|uninstall|upgrade, self update, audit.
INTERCEPTED: dict[str, Optional[frozenset[str]]] = {
    "pip": frozenset({"install", "sync", "uninstall"}),
    "sync": None,
    "add": None,
    "remove": None,
    "run": None,
    "venv": None,
    "version": None,
    "check": None,
    "tool": frozenset({"install", "upgrade", "uninstall", "run"}),
    "cache": frozenset({"prune", "clean"}),
}
# Commands in INTERCEPTED that change nothing without one of these options or a positional value
# (`uv version` only prints the version): passed straight through then.
ONLY_WITH: dict[tuple[str, ...], frozenset[str]] = {("version",): frozenset({"--bump"})}

# Subcommand options that take a value, per command family. Only needed to find positional
# arguments (``uv venv PATH``, ``uv tool install NAME``, ``uv run CMD``) and the options we read.
_COMMON_VALUE = {
    "--index",
    "--default-index",
    "-i",
    "--index-url",
    "--extra-index-url",
    "-f",
    "--find-links",
    "--index-strategy",
    "--keyring-provider",
    "--exclude-newer",
    "--exclude-newer-package",
    "--link-mode",
    "--python",
    "-p",
    "--config-setting",
    "-C",
    "--config-settings-package",
    "--resolution",
    "--prerelease",
    "--fork-strategy",
    "--refresh-package",
    "--reinstall-package",
    "--upgrade-package",
    "-P",
    "--no-build-isolation-package",
    "--no-binary-package",
    "--only-binary-package",
    "--no-build-package",
    "--no-binary",
    "--only-binary",
    "--python-platform",
    "--python-version",
    "--torch-backend",
    "--no-sources-package",
    "--build-constraints",
    "-b",
    "--build-constraint",
    "--overrides",
    "--override",
    "--constraints",
    "-c",
    "--constraint",
    "--requirements",
    "-r",
    "--requirement",
    "--editable",
    "-e",
    "--with",
    "-w",
    "--with-editable",
    "--with-requirements",
    "--from",
    "--extra",
    "--group",
    "--no-group",
    "--only-group",
    "--package",
    "--prompt",
    "--env-file",
    "--target",
    "--prefix",
    "--script",
    "--dev",
    "--optional",
    "--tag",
    "--branch",
    "--rev",
    "--bounds",
    "--marker",
    "-m",
    "--relocatable",
    "--all-packages",
    "--exclude",
    "--excludes",
    "--output-format",
    "--emit-index-annotation",
    "--bump",
}
# Flags in _COMMON_VALUE by mistake would make us skip a positional; keep flags out of it.
_FLAGS_NOT_VALUES = {"--dev", "--relocatable", "--all-packages", "--script", "-m"}
SUB_VALUE_OPTIONS: frozenset[str] = frozenset(_COMMON_VALUE - _FLAGS_NOT_VALUES)
# ``uv run --script`` / ``uv add --script`` take a value, ``uv run -m`` does not: special cases.
_SCRIPT_VALUE_IN = {"add", "remove", "sync"}


class Invocation:
    """A parsed uv command line."""

    def __init__(self, argv: Sequence[str]) -> None:
        self.argv = list(argv)
        self.words: tuple[str, ...] = ()  # subcommand words, e.g. ("pip", "install")
        self.globals: dict[str, str] = {}  # global options with values
        self.flags: frozenset[str] = frozenset()  # every option seen, without values
        self.options: dict[str, list[str]] = {}  # every value option seen
        self.positionals: list[str] = []  # after the subcommand words
        self.help = False

    @property
    def intercepted(self) -> bool:
        if self.help or not self.words:
            return False
        rule = INTERCEPTED.get(self.words[0], False)
        if rule is False:
            return False
        if rule is None:
            only = ONLY_WITH.get(self.words)
            return only is None or bool(self.positionals) or any(o in self.flags for o in only)
        return len(self.words) > 1 and self.words[1] in rule  # type: ignore[operator]

    def opt(self, *names: str) -> Optional[str]:
        """The last value given for any of ``names`` (uv: the last occurrence wins)."""
        found = None
        for name in names:
            values = self.options.get(name)
            if values:
                found = values[-1]
        return found

    def has(self, *names: str) -> bool:
        return any(n in self.flags for n in names)


def _takes_value(opt: str, words: tuple[str, ...]) -> bool:
    if opt in GLOBAL_VALUE_OPTIONS:
        return True
    if opt == "--script":
        return bool(words) and words[0] in _SCRIPT_VALUE_IN
    if opt == "-m" or opt == "--module":
        return False
    return opt in SUB_VALUE_OPTIONS


def _depth(words: tuple[str, ...]) -> int:
    """How many subcommand words the command has (``pip install`` has two, ``sync`` one)."""
    if not words:
        return 2
    rule = INTERCEPTED.get(words[0], False)
    return 2 if isinstance(rule, frozenset) or words[0] in {"cache", "python", "self"} else 1


# What the `uvx` binary runs: the `uv` in its own folder, exec'ed with these words before the
# user's arguments (0.7.0 .. 0.13.9, the environment unchanged). The shim runs the real uv so,
# itself: the uvx beside a uv the user named (`UV_SHIM_REAL_UV=.../uv-0.9`) may run another uv.
UVX_WORDS: tuple[str, ...] = ("tool", "uvx")


def parse_launched(name: str, args: Sequence[str]) -> Invocation:
    """What a launcher named ``name`` (``uv`` or ``uvx``) was asked: ``uvx ARGS`` is ``uv tool run ARGS``."""
    return parse(["tool", "run", *args] if name == "uvx" else args)


def parse(argv: Sequence[str]) -> Invocation:
    """Parse uv's argv (without the program name).

    ``uv run`` and ``uv tool run`` stop option parsing at the command to run, as uv does: what
    follows belongs to the child.
    """
    inv = Invocation(argv)
    words: tuple[str, ...] = ()
    flags = set()
    i = 0
    n = len(argv)
    while i < n:
        arg = argv[i]
        i += 1
        if arg == "--":
            inv.positionals.extend(argv[i:])
            break
        if arg.startswith("-") and arg != "-":
            name, eq, value = arg.partition("=")
            if not name.startswith("--") and len(name) > 2 and not eq:
                # short option with attached value (-pfoo) or bundled flags (-qq)
                short = name[:2]
                if _takes_value(short, words):
                    name, eq, value = short, "=", name[2:]
                else:
                    for ch in name[1:]:
                        flags.add("-" + ch)
                    if "h" in name[1:]:  # `-qh` asks for help as `-h` does: never a prune
                        inv.help = True
                    continue
            flags.add(name)
            if name in ("-h", "--help"):
                inv.help = True
            if eq or _takes_value(name, words):
                if not eq:
                    if i >= n:
                        break
                    value = argv[i]
                    i += 1
                inv.options.setdefault(name, []).append(value)
                if name in GLOBAL_VALUE_OPTIONS:
                    inv.globals[name] = value
            continue
        if len(words) < _depth(words):
            words = words + (arg,)
            if arg == "help":
                inv.help = True
            continue
        inv.positionals.append(arg)
        if words in RUNS_CHILD:
            # the command to run: everything after it is the child's argv
            inv.positionals.extend(argv[i:])
            break
    inv.words = words
    inv.flags = frozenset(flags)
    return inv


def uses_cached_env(inv: Invocation) -> bool:
    """Commands that run in an environment uv keeps inside the cache (``uvx``, ``run --with``)."""
    return inv.words[:2] == ("tool", "run") or (
        inv.words[:1] == ("run",)
        and bool(inv.opt("--with", "-w", "--with-requirements", "--with-editable") or inv.has("--script"))
    )


# Commands that run a user program for as long as it likes (``uvx`` is ``tool run``): the shim
# registers, then execs uv (the launcher's sh reads the same list)
RUNS_CHILD: tuple[tuple[str, ...], ...] = (("run",), ("tool", "run"))


def runs_child(inv: Invocation) -> bool:
    """Commands that run a user program for as long as it likes: register, then exec."""
    return any(inv.words[: len(w)] == w for w in RUNS_CHILD)


_TRUE = ("1", "true", "yes", "y", "t", "on")


def is_true(value: str) -> bool:
    """A boolean as uv reads one (clap's boolish values: 1, true, yes, y, t, on)."""
    return value.strip().lower() in _TRUE


def env_true(env: Mapping[str, str], name: str) -> bool:
    """A boolean variable (``UV_NO_CACHE``, ``UV_SHIM_DISABLE``...), read the one way."""
    return is_true(env.get(name, ""))


def no_cache(inv: Invocation, env: Mapping[str, str]) -> bool:
    return inv.has("--no-cache", "-n") or env_true(env, "UV_NO_CACHE")
