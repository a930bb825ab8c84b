"""The environments a uv command changes, found the way uv finds them (hot path).

``targets`` answers from the command line, the environment variables and the folders on disk,
as uv reads them: relative paths against uv's working directory (``--directory``, or
``UV_WORKING_DIR`` where that uv reads it), ``UV_PROJECT`` like ``--project``, and no ``~``
expansion anywhere (uv makes a folder named ``~``). ``environments_for`` adds what needs asking:
which interpreter ``--system`` or ``-p 3.12`` means (``uv python find``), where an interpreter
that is not certainly a venv's installs (the interpreter itself, as uv asks it: a symlink to a
venv's python outside the venv is the base interpreter; a distribution's python installs into
``dist-packages``), and the environments uv keeps in the cache (``uvx``, ``uv run --with``).
"""

from __future__ import annotations

import os

from shim import realuv
from shim.cachedir import working_dir
from shim.paths import parents, physical, read_bytes
from shim.uvargs import Invocation, env_true, uses_cached_env

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Optional

    from shim.cache import Cache


# Commands that sync the project environment (see uvargs.INTERCEPTED).
PROJECT_COMMANDS = frozenset({"sync", "add", "remove", "run", "version", "check"})


class Target:
    """Where a command installs: an environment root, or a bare directory (``--target``).

    ``path`` is made absolute by dropping ``..`` from the text: Python does so for the environment
    an interpreter path names (its ``sys.prefix``), and so does uv for ``--project``. Folders uv
    creates or enters itself (``--target``, ``--prefix``, ``uv venv PATH``, ``UV_TOOL_DIR``,
    ``--directory``) come through ``paths.physical`` first; a project environment through
    ``synced_envs``. An interpreter to ask keeps its path as given: it is run by that text."""

    __slots__ = ("path", "kind")

    def __init__(self, path: str, kind: str = "venv") -> None:
        # an interpreter is run by the path as given: Python names its prefix from that text
        self.path = path if kind == "interpreter" else os.path.abspath(path)
        self.kind = kind  # venv | prefix | target | tools | cached | interpreter (to ask)

    def __repr__(self) -> str:
        return f"Target({self.path!r}, {self.kind!r})"


def _find_upwards(start: str, name: str) -> Optional[str]:
    for d in parents(start):
        if os.path.exists(os.path.join(d, name)):
            return d
    return None


def _is_workspace_root(pyproject: str) -> bool:
    try:
        return b"[tool.uv.workspace]" in read_bytes(pyproject)
    except OSError:
        return False


def workspace_root(build: realuv.UvBuild, inv: Invocation, cwd: str, env: Mapping[str, str]) -> Optional[str]:
    """The workspace root uv uses for ``sync|add|remove|run|...``, or None outside a project."""
    start = working_dir(build, inv, cwd, env)
    proj = inv.globals.get("--project")
    if proj is None and "UV_PROJECT" in build.env_vars:
        proj = env.get("UV_PROJECT") or None
    if proj:
        start = os.path.join(start, proj)
    member = _find_upwards(start, "pyproject.toml")
    if member is None:
        return None
    for d in parents(os.path.dirname(member)):
        if d != member and _is_workspace_root(os.path.join(d, "pyproject.toml")):
            return d
    return member


def project_env(root: str, env: Mapping[str, str]) -> list[Target]:
    """The project's environment (``synced_envs`` when ``UV_PROJECT_ENVIRONMENT`` names it); the
    first is where uv creates it."""
    custom = env.get("UV_PROJECT_ENVIRONMENT")
    return synced_envs(os.path.join(root, custom)) if custom else [Target(os.path.join(root, ".venv"))]


def synced_envs(path: str) -> list[Target]:
    """Where a project command installs when it syncs the environment at ``path``
    (``UV_PROJECT_ENVIRONMENT``, the ``VIRTUAL_ENV`` of ``--active``). Where the kernel looks
    (``..`` taken through the symlinks before it), always: uv creates the environment there, or
    replaces the one there when its interpreter does not do. When one is there and uv reuses it,
    uv installs where its python, run by the path as written, says it lives: Python drops ``..``
    from the text, so when that names another folder it is the venv there, or, with no venv
    there, Python's base (uv 0.7.0 and 0.13.9, Python 3.11; their ``sync --dry-run`` says which
    it is). Which of the two uv does depends on its interpreter choice: both are recorded, the
    one uv leaves alone costs a record and protects what it links."""
    found = physical(path)
    lexical = os.path.abspath(path)
    if found == lexical or not os.path.isfile(os.path.join(found, "pyvenv.cfg")):
        return [Target(found)]
    if os.path.isfile(os.path.join(lexical, "pyvenv.cfg")):
        return [Target(found), Target(lexical)]
    return [Target(found), Target(os.path.join(path, "bin", "python"), "interpreter")]


def _env_of_interpreter(python: str) -> Optional[str]:
    """The venv an interpreter path runs in, by Python's own rule: a ``pyvenv.cfg`` beside the
    executable or one folder up, looked up from the path as given with ``..`` dropped from the
    text (a symlink to a venv's python placed elsewhere runs as the base interpreter). None: not
    certainly a venv, ask it."""
    python = os.path.abspath(python)
    if os.path.isdir(python):
        return python if os.path.isfile(os.path.join(python, "pyvenv.cfg")) else None
    parent = os.path.dirname(python)
    for d in (parent, os.path.dirname(parent)):
        if os.path.isfile(os.path.join(d, "pyvenv.cfg")):
            return d
    return None


def _looks_like_path(value: str) -> bool:
    return os.sep in value or value.startswith(".")


def tools_dir(env: Mapping[str, str], base: str) -> str:
    custom = env.get("UV_TOOL_DIR")
    if custom:
        return physical(os.path.join(base, custom))
    data = env.get("XDG_DATA_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".local", "share")
    return physical(os.path.join(data, "uv", "tools"))


def pip_env(build: realuv.UvBuild, inv: Invocation, cwd: str, env: Mapping[str, str]) -> Optional[Target]:
    """The environment ``uv pip install|sync|uninstall`` changes, found the way uv finds it."""
    base = working_dir(build, inv, cwd, env)
    target = inv.opt("--target")
    if target:
        return Target(physical(os.path.join(base, target)), "target")
    prefix = inv.opt("--prefix")
    if prefix:
        return Target(physical(os.path.join(base, prefix)), "prefix")
    python = inv.opt("--python", "-p") or (None if inv.has("--system") else env.get("UV_PYTHON"))
    if python and _looks_like_path(python):
        path = os.path.join(base, python)
        found = _env_of_interpreter(path)
        return Target(found) if found else Target(path, "interpreter")
    if python or inv.has("--system") or env_true(env, "UV_SYSTEM_PYTHON"):
        return None  # an interpreter uv searches for: asked from uv (environments_for)
    for var in ("VIRTUAL_ENV", "CONDA_PREFIX"):
        value = env.get(var)
        if value:
            return Target(os.path.join(base, value))
    found = _find_upwards(base, ".venv")
    if found is not None and os.path.isfile(os.path.join(found, ".venv", "pyvenv.cfg")):
        return Target(os.path.join(found, ".venv"))
    return None


def targets(build: realuv.UvBuild, inv: Invocation, cwd: str, env: Mapping[str, str]) -> list[Target]:
    """The environments the command may change (empty when there is nothing to record)."""
    words = inv.words
    if not words:
        return []
    if words[0] == "pip":
        t = pip_env(build, inv, cwd, env)
        return [t] if t else []
    if words[0] in PROJECT_COMMANDS:
        if inv.has("--no-project", "--script") or (words[0] == "run" and inv.has("--isolated")):
            return []
        if words[0] == "run" and inline_script(inv, working_dir(build, inv, cwd, env)):
            return []  # its environment lives in the cache (environments_for), not the project's
        if inv.has("--active") and env.get("VIRTUAL_ENV"):
            return synced_envs(os.path.join(working_dir(build, inv, cwd, env), env["VIRTUAL_ENV"]))
        root = workspace_root(build, inv, cwd, env)
        if root is None:
            return []
        return project_env(root, env)
    if words[0] == "venv":
        base = working_dir(build, inv, cwd, env)
        path = inv.positionals[0] if inv.positionals else env.get("UV_PROJECT_ENVIRONMENT") or ".venv"
        return [Target(physical(os.path.join(base, path)))]
    if words[:2] in (("tool", "install"), ("tool", "upgrade"), ("tool", "uninstall")):
        return [Target(tools_dir(env, working_dir(build, inv, cwd, env)), "tools")]
    return []


INLINE_MARK = b"# /// script"  # PEP 723: a script with its own dependencies (uv gives it an environment)


_inline: dict[str, bool] = {}  # script path -> answer: one invocation asks up to three times


def inline_script(inv: Invocation, wd: str) -> bool:
    """``uv run FILE`` where FILE declares inline metadata (PEP 723): uv runs it in an
    environment it keeps in the cache, whatever project surrounds it."""
    if inv.words[:1] != ("run",) or not inv.positionals:
        return False
    path = os.path.join(wd, inv.positionals[0])
    if path not in _inline:
        _inline[path] = _declares_inline_metadata(path)
    return _inline[path]


def _declares_inline_metadata(path: str) -> bool:
    import stat

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False  # a FIFO or a device would block or never end
        with open(path, "rb") as f:
            head = f.read(65536)
    except (OSError, ValueError):  # ValueError: a NUL in the argument
        return False
    return any(line.rstrip() == INLINE_MARK for line in head.splitlines())


def wants_cached_envs(build: realuv.UvBuild, inv: Invocation, cwd: str, env: Mapping[str, str]) -> bool:
    """Whether the command runs in an environment uv keeps in the cache (``uvx``, ``uv run
    --with``, ``--script``, a script with inline metadata)."""
    return uses_cached_env(inv) or inline_script(inv, working_dir(build, inv, cwd, env))


def _tool_name(spec: str) -> str:
    """``black[d]>=24`` -> ``black``: the folder ``uv tool install`` uses."""
    out = ""
    for ch in spec:
        if not (ch.isalnum() or ch in "._-"):
            break
        out += ch
    return out


def _tool_envs(tools: str, inv: Invocation) -> list[tuple[str, str]]:
    out = []
    try:
        names = sorted(os.listdir(tools))
    except OSError:
        names = []
    for name in names:
        if os.path.isfile(os.path.join(tools, name, "pyvenv.cfg")):
            out.append((os.path.join(tools, name), "venv"))
    if inv.words[1:2] == ("install",):
        for spec in [inv.opt("--from") or ""] + inv.positionals[:1]:
            name = _tool_name(spec)
            if name and (os.path.join(tools, name), "venv") not in out:
                out.append((os.path.join(tools, name), "venv"))
    return out


def _find_interpreter(real: realuv.RealUv, inv: Invocation, cwd: str, env: Mapping[str, str]) -> Optional[str]:
    """For ``--system`` or ``-p 3.12``: the interpreter uv will use, asked from uv."""
    import subprocess

    args = [real.path, "python", "find"]
    req = inv.opt("--python", "-p") or (None if inv.has("--system") else env.get("UV_PYTHON"))
    if req:
        args.append(req)
    if inv.has("--system") or env_true(env, "UV_SYSTEM_PYTHON"):
        args.append("--system")
    try:
        out = subprocess.run(args, cwd=cwd, env=realuv.parsed_env(env), capture_output=True, text=True, timeout=60)
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0 or not out.stdout.strip():
        return None
    return out.stdout.strip().splitlines()[-1]


_SITES = "import sys, sysconfig; p = sysconfig.get_paths(); print(p['purelib']); print(p['platlib'])"


def interpreter_sites(python: str, env: Mapping[str, str]) -> list[tuple[str, str]]:
    """Where an interpreter that is not certainly a venv's installs, asked from it as uv does
    (``sysconfig``): its venv if it reports one, else its site folders as ``target`` roots."""
    import subprocess

    venv = _env_of_interpreter(python)
    if venv is not None:
        return [(venv, "venv")]
    try:
        out = subprocess.run(
            [python, "-I", "-c", "import sys; print(sys.prefix != sys.base_prefix and sys.prefix or ''); " + _SITES],
            env=realuv.parsed_env(env),
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return []
    lines = out.stdout.splitlines()
    if out.returncode != 0 or len(lines) != 3:
        return []
    if lines[0]:
        return [(lines[0], "venv")]
    sites: list[tuple[str, str]] = []
    for site in lines[1:]:
        if site and (site, "target") not in sites:
            sites.append((site, "target"))
    return sites


def environments_for(
    inv: Invocation, cache: Cache, real: realuv.RealUv, cwd: str, env: Mapping[str, str]
) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for t in targets(cache.build, inv, cwd, env):
        if t.kind == "tools":
            out.extend(_tool_envs(t.path, inv))
        elif t.kind == "interpreter":
            out.extend(interpreter_sites(t.path, env))
        else:
            out.append((t.path, t.kind))
    asks = inv.opt("--python", "-p") or inv.has("--system") or env_true(env, "UV_SYSTEM_PYTHON") or env.get("UV_PYTHON")
    if inv.words[:1] == ("pip",) and not out and asks and not inv.opt("--target", "--prefix"):
        python = _find_interpreter(real, inv, working_dir(cache.build, inv, cwd, env), env)
        if python is not None:
            out.extend(interpreter_sites(python, env))
    if wants_cached_envs(cache.build, inv, cwd, env):
        out.extend((path, "cached") for path in cache.cached_envs())
    return out
