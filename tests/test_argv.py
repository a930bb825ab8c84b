"""The argv model: subcommand with global options anywhere, and the environment uv targets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shim import targets, uvargs
from shim.realuv import UvBuild

pytestmark = pytest.mark.fast  # in-process: the fast tier


@pytest.mark.parametrize(
    "argv, words, intercepted",
    [
        (["pip", "install", "x"], ("pip", "install"), True),
        (["--cache-dir", "c", "pip", "install", "x"], ("pip", "install"), True),
        (["--cache-dir=c", "-q", "pip", "-v", "install", "x"], ("pip", "install"), True),
        (["pip", "--directory", "d", "sync", "r.txt"], ("pip", "sync"), True),
        (["pip", "compile", "r.in"], ("pip", "compile"), False),
        (["pip", "list"], ("pip", "list"), False),
        (["-qq", "sync"], ("sync",), True),
        (["--project", "p", "run", "python", "-c", "pass"], ("run",), True),
        (["run", "--with", "rich", "python"], ("run",), True),
        (["venv", "--python", "3.12", "envdir"], ("venv",), True),
        (["tool", "install", "black"], ("tool", "install"), True),
        (["tool", "list"], ("tool", "list"), False),
        (["cache", "dir"], ("cache", "dir"), False),
        (["lock"], ("lock",), False),
        (["--version"], (), False),
        (["sync", "--help"], ("sync",), False),
        (["help", "sync"], ("help",), False),
        (["--", "sync"], (), False),
        (["python", "install", "3.12"], ("python", "install"), False),
        (["self", "update"], ("self", "update"), False),
    ],
)
def test_subcommand(argv, words, intercepted):
    inv = uvargs.parse(argv)
    assert inv.words == words
    assert inv.intercepted is intercepted


def test_values_and_flags():
    inv = uvargs.parse(["--cache-dir", "/c", "pip", "install", "-p", "/v/bin/python", "--target=t", "-qv", "x", "y"])
    assert inv.globals == {"--cache-dir": "/c"}
    assert inv.opt("--python", "-p") == "/v/bin/python"
    assert inv.opt("--target") == "t"
    assert inv.has("-q") and inv.has("-v")
    assert inv.positionals == ["x", "y"]


def test_run_stops_at_the_child_command():
    inv = uvargs.parse(["run", "--with", "rich", "python", "--cache-dir", "not-ours", "-p", "x"])
    assert inv.positionals == ["python", "--cache-dir", "not-ours", "-p", "x"]
    assert "--cache-dir" not in inv.globals
    assert uvargs.uses_cached_env(inv) and uvargs.runs_child(inv)


def test_attached_short_value():
    inv = uvargs.parse(["pip", "install", "-p3.12", "x"])
    assert inv.opt("-p") == "3.12"


# -- target environments, on real folders -------------------------------------------------------


def _venv(path: Path) -> Path:
    (path / "bin").mkdir(parents=True)
    (path / "pyvenv.cfg").write_text("home = /usr/bin\nversion_info = 3.11.7\n")
    (path / "bin" / "python").write_text("")
    return path


NEWEST_BUILD = UvBuild("0.13.9", {}, ["UV_WORKING_DIR", "UV_PROJECT"])  # reads both variables
OLD_BUILD = UvBuild("0.7.0", {}, ["UV_PROJECT"])  # no UV_WORKING_DIR yet


def _t(argv, cwd, env=None, build=NEWEST_BUILD):
    return [(t.path, t.kind) for t in targets.targets(build, uvargs.parse(argv), str(cwd), env or {})]


def test_pip_targets(tmp_path):
    a = _venv(tmp_path / "a")
    b = _venv(tmp_path / "proj" / ".venv")
    sub = tmp_path / "proj" / "src" / "pkg"
    sub.mkdir(parents=True)
    assert _t(["pip", "install", "x", "--python", str(a / "bin" / "python")], tmp_path) == [(str(a), "venv")]
    assert _t(["pip", "install", "x", "-p", str(a)], tmp_path) == [(str(a), "venv")]
    assert _t(["pip", "install", "x", "--prefix", "pfx"], tmp_path) == [(str(tmp_path / "pfx"), "prefix")]
    assert _t(["pip", "install", "x", "--target", "tgt"], tmp_path) == [(str(tmp_path / "tgt"), "target")]
    assert _t(["pip", "install", "x"], tmp_path, {"VIRTUAL_ENV": str(a)}) == [(str(a), "venv")]
    assert _t(["pip", "install", "x"], tmp_path, {"CONDA_PREFIX": str(a)}) == [(str(a), "venv")]
    assert _t(["pip", "install", "x"], tmp_path, {"VIRTUAL_ENV": str(a), "CONDA_PREFIX": "/nope"}) == [(str(a), "venv")]
    assert _t(["pip", "install", "x"], sub) == [(str(b), "venv")]  # .venv in a parent
    assert _t(["--directory", str(sub), "pip", "install", "x"], tmp_path) == [(str(b), "venv")]
    assert _t(["pip", "install", "x", "--system"], tmp_path, {"VIRTUAL_ENV": str(a)}) == []  # asked from uv later
    # a symlink to a venv's python placed elsewhere runs as the base interpreter: asked from it
    (tmp_path / "links").mkdir()
    (tmp_path / "links" / "py").symlink_to(a / "bin" / "python")
    assert _t(["pip", "install", "x", "-p", "links/py"], tmp_path) == [(str(tmp_path / "links" / "py"), "interpreter")]
    # uv expands no `~`: a folder named `~` under the working directory
    assert _t(["pip", "install", "x", "--target", "~/t"], tmp_path) == [(str(tmp_path / "~" / "t"), "target")]
    assert _t(["pip", "install", "x"], tmp_path, {"UV_WORKING_DIR": "proj/src"}) == [(str(b), "venv")]
    assert _t(["pip", "install", "x"], tmp_path, {"UV_WORKING_DIR": "proj/src"}, OLD_BUILD) == []  # not read by 0.7.0


def test_project_targets(tmp_path):
    ws = tmp_path / "ws"
    member = ws / "packages" / "m"
    member.mkdir(parents=True)
    (ws / "pyproject.toml").write_text('[project]\nname = "ws"\n[tool.uv.workspace]\nmembers = ["packages/*"]\n')
    (member / "pyproject.toml").write_text('[project]\nname = "m"\n')
    assert _t(["sync"], member) == [(str(ws / ".venv"), "venv")]
    assert _t(["run", "python"], member, {"UV_PROJECT_ENVIRONMENT": "envs/x"}) == [(str(ws / "envs" / "x"), "venv")]
    assert _t(["add", "rich"], tmp_path, {"UV_PROJECT_ENVIRONMENT": "/abs/env"}) == []  # no project here
    assert _t(["--project", str(member), "sync"], tmp_path, {"UV_PROJECT_ENVIRONMENT": "/abs/env"}) == [
        ("/abs/env", "venv")
    ]
    assert _t(["--directory", str(member), "remove", "x"], tmp_path) == [(str(ws / ".venv"), "venv")]
    assert _t(["run", "--no-project", "python"], member) == []
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "pyproject.toml").write_text('[project]\nname = "lone"\n')
    assert _t(["sync"], lone) == [(str(lone / ".venv"), "venv")]
    assert _t(["sync"], tmp_path, {"UV_PROJECT": "lone"}) == [(str(lone / ".venv"), "venv")]
    assert _t(["sync"], tmp_path, {"UV_WORKING_DIR": "lone"}) == [(str(lone / ".venv"), "venv")]
    assert _t(["sync"], tmp_path, {"UV_WORKING_DIR": "lone"}, OLD_BUILD) == []  # 0.7.0 ignores it
    assert _t(["--directory", "lone", "sync"], tmp_path, {"UV_PROJECT_ENVIRONMENT": "~/e"}) == [
        (str(lone / "~" / "e"), "venv")
    ]
    assert _t(["version", "--bump", "patch"], lone) == [(str(lone / ".venv"), "venv")]


def test_venv_and_tool_targets(tmp_path):
    assert _t(["venv"], tmp_path) == [(str(tmp_path / ".venv"), "venv")]
    assert _t(["venv", "--python", "3.12", "my env"], tmp_path) == [(str(tmp_path / "my env"), "venv")]
    assert _t(["tool", "install", "black"], tmp_path, {"UV_TOOL_DIR": str(tmp_path / "tools")}) == [
        (str(tmp_path / "tools"), "tools")
    ]
    assert _t(["tool", "uninstall", "black"], tmp_path, {"UV_TOOL_DIR": "~/t"}) == [
        (str(tmp_path / "~" / "t"), "tools")
    ]
    home = {"HOME": str(tmp_path)}
    assert _t(["tool", "upgrade", "--all"], tmp_path, home) == [
        (os.path.join(str(tmp_path), ".local", "share", "uv", "tools"), "tools")
    ]


@pytest.mark.parametrize(
    "argv, help_, positionals",
    [
        (["sync", "-h"], True, []),
        (["help"], True, []),
        (["tool", "run", "black", "--cache-dir", "x", "-h"], False, ["black", "--cache-dir", "x", "-h"]),
        (["pip", "install", "-", "x"], False, ["-", "x"]),
        (["pip", "install", "-pthon", "x"], False, ["x"]),
    ],
)
def test_help_and_where_options_end(argv, help_, positionals):
    inv = uvargs.parse(argv)
    assert (inv.help, inv.positionals) == (help_, positionals)
    if argv[:2] == ["tool", "run"]:
        assert inv.globals == {} and uvargs.runs_child(inv)


def test_what_uses_a_cached_environment():
    cached = lambda *a: uvargs.uses_cached_env(uvargs.parse(list(a)))  # noqa: E731
    assert (
        cached("tool", "run", "black")
        and cached("run", "--with", "rich", "python")
        and cached("run", "--script", "s.py")
    )
    assert cached("run", "-w", "rich", "python") and cached("run", "--with-requirements", "r.txt", "python")
    assert not cached("run", "python") and not cached("tool", "install", "black") and not cached("sync")
    assert not uvargs.runs_child(uvargs.parse(["sync"])) and uvargs.runs_child(uvargs.parse(["run", "x"]))


def test_more_targets(tmp_path):
    a = _venv(tmp_path / "a")
    _venv(tmp_path / "proj" / ".venv")
    (tmp_path / "proj" / "pyproject.toml").write_text('[project]\nname = "p"\n')
    (tmp_path / "bare" / ".venv").mkdir(parents=True)  # no pyvenv.cfg: not an environment
    assert _t(["pip", "install", "x"], tmp_path, {"UV_PYTHON": str(a / "bin" / "python")}) == [(str(a), "venv")]
    assert _t(["pip", "install", "x", "--system"], tmp_path, {"UV_PYTHON": str(a / "bin" / "python")}) == []
    assert _t(["pip", "install", "x"], tmp_path, {"UV_SYSTEM_PYTHON": "true"}) == []
    assert _t(["pip", "install", "x"], tmp_path, {"UV_SYSTEM_PYTHON": "1", "VIRTUAL_ENV": str(a)}) == []
    assert _t(["pip", "install", "x"], tmp_path, {"VIRTUAL_ENV": "a"}) == [(str(a), "venv")]  # relative to cwd
    assert _t(["pip", "install", "x", "-p", "a/bin/python"], tmp_path) == [(str(a), "venv")]
    assert _t(["pip", "install", "x"], tmp_path / "bare") == []
    proj = tmp_path / "proj"
    assert _t(["sync", "--active"], proj, {"VIRTUAL_ENV": str(a)}) == [(str(a), "venv")]
    assert _t(["sync"], proj, {"VIRTUAL_ENV": str(a)}) == [(str(proj / ".venv"), "venv")]
    assert _t(["run", "--isolated", "python"], proj) == [] and _t(["sync", "--isolated"], proj) == [
        (str(proj / ".venv"), "venv")
    ]
    assert _t(["run", "--script", "s.py"], proj) == [] and _t(["add", "--script", "s.py", "x"], proj) == []
    assert _t(["add", "x"], proj) == [(str(proj / ".venv"), "venv")]
    assert _t(["venv"], tmp_path, {"UV_PROJECT_ENVIRONMENT": "envs/p"}) == [(str(tmp_path / "envs" / "p"), "venv")]
    assert _t(["tool", "upgrade", "black"], tmp_path, {"UV_TOOL_DIR": str(tmp_path / "t")}) == [
        (str(tmp_path / "t"), "tools")
    ]
