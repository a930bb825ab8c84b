"""uv's command line: which subcommand runs, its global options, and the environment it targets.

Everything the shim knows about uv's argv lives here, so a new uv release is a change to the
tables at the top of this module. The POSIX-sh launcher's fast path is generated from the same
tables (see ``shim.launcher``), so the two can never disagree.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing costs milliseconds at startup; only the type checker needs it
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence
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

# Commands that may change an environment, as (word, second word or None for "any").
# Everything else is passed straight through.
INTERCEPTED: dict[str, Optional[frozenset[str]]] = {
    "pip": frozenset({"install", "sync", "uninstall"}),
    "sync": None,
    "add": None,
    "remove": None,
    "run": None,
    "venv": None,
    "tool": frozenset({"install", "upgrade", "run"}),
    "cache": frozenset({"prune", "clean"}),
}

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
            return True
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
        if words in (("run",), ("tool", "run")):
            # the command to run: everything after it is the child's argv
            inv.positionals.extend(argv[i:])
            break
    inv.words = words
    inv.flags = frozenset(flags)
    return inv


# ---------------------------------------------------------------------------------------------
# Target environments
# ---------------------------------------------------------------------------------------------


class Target:
    """Where a command installs: an environment root, or a bare directory (``--target``)."""

    __slots__ = ("path", "kind")

    def __init__(self, path: str, kind: str = "venv") -> None:
        self.path = os.path.abspath(path)
        self.kind = kind  # venv | prefix | target | tools | cached

    def __repr__(self) -> str:
        return f"Target({self.path!r}, {self.kind!r})"


def start_dir(inv: Invocation, cwd: str) -> str:
    d = inv.globals.get("--directory")
    return os.path.join(cwd, os.path.expanduser(d)) if d else cwd


def _parents(start: str) -> Iterator[str]:
    d = os.path.abspath(start)
    while True:
        yield d
        up = os.path.dirname(d)
        if up == d:
            return
        d = up


def _find_upwards(start: str, name: str) -> Optional[str]:
    for d in _parents(start):
        if os.path.exists(os.path.join(d, name)):
            return d
    return None


def _is_workspace_root(pyproject: str) -> bool:
    try:
        with open(pyproject, "rb") as f:
            return b"[tool.uv.workspace]" in f.read()
    except OSError:
        return False


def project_root(inv: Invocation, cwd: str) -> Optional[str]:
    """The workspace root uv uses for ``sync|add|remove|run``, or None outside a project."""
    start = start_dir(inv, cwd)
    proj = inv.globals.get("--project")
    if proj:
        start = os.path.join(start, os.path.expanduser(proj))
    member = _find_upwards(start, "pyproject.toml")
    if member is None:
        return None
    for d in _parents(os.path.dirname(member)):
        if d != member and _is_workspace_root(os.path.join(d, "pyproject.toml")):
            return d
    return member


def project_env(root: str, env: Mapping[str, str]) -> str:
    custom = env.get("UV_PROJECT_ENVIRONMENT")
    if custom:
        return os.path.join(root, os.path.expanduser(custom))
    return os.path.join(root, ".venv")


def _env_of_interpreter(python: str) -> Optional[str]:
    """The environment an interpreter path belongs to (``venv/bin/python`` -> ``venv``)."""
    if os.path.isdir(python):
        return python
    parent = os.path.dirname(python)
    for d in (os.path.dirname(parent), parent):
        if os.path.isfile(os.path.join(d, "pyvenv.cfg")):
            return d
    return None


def _looks_like_path(value: str) -> bool:
    return os.sep in value or value.startswith(".") or value.startswith("~")


def tools_dir(env: Mapping[str, str]) -> str:
    custom = env.get("UV_TOOL_DIR")
    if custom:
        return os.path.abspath(os.path.expanduser(custom))
    data = env.get("XDG_DATA_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".local", "share")
    return os.path.join(data, "uv", "tools")


def pip_env(inv: Invocation, cwd: str, env: Mapping[str, str]) -> Optional[Target]:
    """The environment ``uv pip install|sync|uninstall`` changes, found the way uv finds it."""
    base = start_dir(inv, cwd)
    target = inv.opt("--target")
    if target:
        return Target(os.path.join(base, os.path.expanduser(target)), "target")
    prefix = inv.opt("--prefix")
    if prefix:
        return Target(os.path.join(base, os.path.expanduser(prefix)), "prefix")
    python = inv.opt("--python", "-p") or (None if inv.has("--system") else env.get("UV_PYTHON"))
    if python and _looks_like_path(python):
        found = _env_of_interpreter(os.path.join(base, os.path.expanduser(python)))
        return Target(found) if found else None
    if python or inv.has("--system") or env.get("UV_SYSTEM_PYTHON", "").lower() in ("1", "true"):
        return None  # an interpreter uv searches for: asked from uv (see bookkeeping)
    for var in ("VIRTUAL_ENV", "CONDA_PREFIX"):
        value = env.get(var)
        if value:
            return Target(os.path.join(cwd, value))
    found = _find_upwards(base, ".venv")
    if found is not None and os.path.isfile(os.path.join(found, ".venv", "pyvenv.cfg")):
        return Target(os.path.join(found, ".venv"))
    return None


def targets(inv: Invocation, cwd: str, env: Mapping[str, str]) -> list[Target]:
    """The environments the command may change (empty when there is nothing to record)."""
    words = inv.words
    if not words:
        return []
    if words[0] == "pip":
        t = pip_env(inv, cwd, env)
        return [t] if t else []
    if words[0] in ("sync", "add", "remove", "run"):
        if inv.has("--no-project", "--script") or (words[0] == "run" and inv.has("--isolated")):
            return []
        if inv.has("--active") and env.get("VIRTUAL_ENV"):
            return [Target(os.path.join(cwd, env["VIRTUAL_ENV"]))]
        root = project_root(inv, cwd)
        if root is None:
            return []
        return [Target(project_env(root, env))]
    if words[0] == "venv":
        base = start_dir(inv, cwd)
        path = inv.positionals[0] if inv.positionals else env.get("UV_PROJECT_ENVIRONMENT") or ".venv"
        return [Target(os.path.join(base, os.path.expanduser(path)))]
    if words[:2] in (("tool", "install"), ("tool", "upgrade")):
        return [Target(tools_dir(env), "tools")]
    return []


def uses_cached_env(inv: Invocation) -> bool:
    """Commands that run in an environment uv keeps inside the cache (``uvx``, ``run --with``)."""
    return inv.words[:2] == ("tool", "run") or (
        inv.words[:1] == ("run",)
        and bool(inv.opt("--with", "-w", "--with-requirements", "--with-editable") or inv.has("--script"))
    )


def runs_child(inv: Invocation) -> bool:
    """Commands that run a user program for as long as it likes: register, then exec."""
    return inv.words[:1] == ("run",) or inv.words[:2] == ("tool", "run")


_TRUE = ("1", "true", "yes", "y", "t", "on")


def env_true(env: Mapping[str, str], name: str) -> bool:
    """A boolean variable as uv reads it (clap's boolish values)."""
    return env.get(name, "").strip().lower() in _TRUE


def no_cache(inv: Invocation, env: Mapping[str, str]) -> bool:
    return inv.has("--no-cache", "-n") or env_true(env, "UV_NO_CACHE")
