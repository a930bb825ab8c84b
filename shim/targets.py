"""The environments a uv command changes, found the way uv finds them (hot path).

``targets`` answers from the command line, the environment variables and the folders on disk;
``environments_for`` adds what needs the real uv (``--system``, ``-p 3.12``: ``uv python find``) or the
cache (the environments uv keeps inside it for ``uvx`` and ``uv run --with``).
"""

from __future__ import annotations

import os

from shim import realuv
from shim.uvargs import Invocation, env_true, uses_cached_env

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from typing import Optional

    from shim.cache import Cache


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


def parents(start: str) -> Iterator[str]:
    d = os.path.abspath(start)
    while True:
        yield d
        up = os.path.dirname(d)
        if up == d:
            return
        d = up


def _find_upwards(start: str, name: str) -> Optional[str]:
    for d in parents(start):
        if os.path.exists(os.path.join(d, name)):
            return d
    return None


def _is_workspace_root(pyproject: str) -> bool:
    try:
        with open(pyproject, "rb") as f:
            return b"[tool.uv.workspace]" in f.read()
    except OSError:
        return False


def workspace_root(inv: Invocation, cwd: str) -> Optional[str]:
    """The workspace root uv uses for ``sync|add|remove|run``, or None outside a project."""
    start = start_dir(inv, cwd)
    proj = inv.globals.get("--project")
    if proj:
        start = os.path.join(start, os.path.expanduser(proj))
    member = _find_upwards(start, "pyproject.toml")
    if member is None:
        return None
    for d in parents(os.path.dirname(member)):
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
    if python or inv.has("--system") or env_true(env, "UV_SYSTEM_PYTHON"):
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
        root = workspace_root(inv, cwd)
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


def _system_env(real: realuv.RealUv, inv: Invocation, cwd: str, env: Mapping[str, str]) -> Optional[str]:
    """For ``--system`` or ``-p 3.12``: ask uv which interpreter it will use."""
    import subprocess

    args = [real.path, "python", "find"]
    req = inv.opt("--python", "-p")
    if req:
        args.append(req)
    if inv.has("--system"):
        args.append("--system")
    try:
        out = subprocess.run(
            args, cwd=cwd, env=realuv.child_env(env, exec_=False), capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0 or not out.stdout.strip():
        return None
    python = out.stdout.strip().splitlines()[-1]
    return os.path.dirname(os.path.dirname(python))


def environments_for(
    inv: Invocation, cache: Cache, real: realuv.RealUv, cwd: str, env: Mapping[str, str]
) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for t in targets(inv, cwd, env):
        if t.kind == "tools":
            out.extend(_tool_envs(t.path, inv))
        else:
            out.append((t.path, t.kind))
    if inv.words[:1] == ("pip",) and not out:
        prefix = _system_env(real, inv, cwd, env)
        if prefix is not None:
            out.append((prefix, "venv" if os.path.isfile(os.path.join(prefix, "pyvenv.cfg")) else "prefix"))
    if uses_cached_env(inv):
        out.extend((env, "cached") for env in cache.cached_envs())
    return out
