"""One answer to "which cache": the shim's, ``uv cache dir``'s and the real uv's agree (issue 10).

Each row is a world (files, environment, working directory, global options). For the oldest
and the newest uv the suite drives, three answers must be the same folder:

- the shim's hot-path answer (``find_cache_dir``: cheap where certain, asks uv otherwise),
- the shim's off-hot-path answer (``ask=True``: always uv's own ``uv cache dir``),
- the truth: where the real uv creates its cache when it runs a command (``uv venv``) there.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Optional

import pytest
from conftest import BASE_PYTHON, NEWEST, OLDEST, _vt, symlink_up, uv_path

# (id, global args, environment, working directory relative to the world, files to write)
# In values, {root} is the world folder and {home} its HOME.
Row = tuple[str, list[str], dict[str, str], str, dict[str, str]]
CFG = 'cache-dir = "{value}"\n'
ROWS: list[Row] = [
    ("default", [], {}, ".", {}),
    ("xdg-absolute", [], {"XDG_CACHE_HOME": "{root}/xdg"}, ".", {}),
    ("xdg-relative-ignored", [], {"XDG_CACHE_HOME": "relxdg"}, ".", {}),
    ("home-relative", [], {"HOME": "rel"}, ".", {}),
    ("home-relative-directory", ["--directory", "sub"], {"HOME": "rel"}, ".", {}),
    (
        "home-relative-user-config-directory",
        ["--directory", "sub"],
        {"HOME": "rel"},
        ".",
        {"sub/rel/.config/uv/uv.toml": CFG.format(value="{root}/cfg")},
    ),
    ("env-absolute", [], {"UV_CACHE_DIR": "{root}/c"}, ".", {}),
    ("env-relative", [], {"UV_CACHE_DIR": "c"}, ".", {}),
    ("env-dot-dot", [], {"UV_CACHE_DIR": "../c"}, "sub", {}),
    ("env-literal-tilde", [], {"UV_CACHE_DIR": "~/stuff"}, ".", {}),
    ("env-trailing-slash", [], {"UV_CACHE_DIR": "c/"}, ".", {}),
    ("cli-absolute", ["--cache-dir", "{root}/c"], {}, ".", {}),
    ("cli-relative", ["--cache-dir", "c"], {}, ".", {}),
    ("cli-equals", ["--cache-dir=c"], {}, ".", {}),
    ("cli-literal-tilde", ["--cache-dir=~/x"], {}, ".", {}),
    ("cli-beats-env", ["--cache-dir", "cli"], {"UV_CACHE_DIR": "env"}, ".", {}),
    ("directory-env-relative", ["--directory", "sub"], {"UV_CACHE_DIR": "c"}, ".", {}),
    ("directory-cli-relative", ["--directory", "sub", "--cache-dir", "c"], {}, ".", {}),
    ("directory-absolute-cache", ["--directory", "sub"], {"UV_CACHE_DIR": "{root}/c"}, ".", {}),
    ("working-dir-env", [], {"UV_WORKING_DIR": "sub", "UV_CACHE_DIR": "c"}, ".", {}),
    ("directory-beats-working-dir", ["--directory", "sub"], {"UV_WORKING_DIR": "other", "UV_CACHE_DIR": "c"}, ".", {}),
    ("directory-literal-tilde", ["--directory", "~"], {"UV_CACHE_DIR": "c"}, ".", {}),
    ("project-does-not-move", ["--project", "sub"], {"UV_CACHE_DIR": "c"}, ".", {}),
    ("uv-project-env", [], {"UV_PROJECT": "sub", "UV_CACHE_DIR": "c"}, ".", {}),
    ("uv-toml-here", [], {}, ".", {"uv.toml": CFG.format(value="{root}/cfg")}),
    ("uv-toml-relative", [], {}, ".", {"uv.toml": CFG.format(value="cfgrel")}),
    ("uv-toml-in-parent", [], {}, "sub", {"uv.toml": CFG.format(value="{root}/cfg")}),
    (
        "pyproject-tool-uv",
        [],
        {},
        ".",
        {"pyproject.toml": '[project]\nname = "p"\nversion = "0"\n[tool.uv]\n' + CFG.format(value="{root}/cfg")},
    ),
    ("pyproject-without-cache-dir", [], {}, ".", {"pyproject.toml": '[project]\nname = "p"\nversion = "0"\n'}),
    ("uv-toml-tilde", [], {}, ".", {"uv.toml": CFG.format(value="~/cfgtilde")}),
    ("config-in-directory", ["--directory", "sub"], {}, ".", {"sub/uv.toml": CFG.format(value="cfgrel")}),
    ("config-in-project", ["--project", "sub"], {}, ".", {"sub/uv.toml": CFG.format(value="{root}/cfg")}),
    (
        "config-file-option",
        ["--config-file", "conf/my.toml"],
        {},
        ".",
        {"conf/my.toml": CFG.format(value="{root}/cfg")},
    ),
    (
        "config-file-env",
        [],
        {"UV_CONFIG_FILE": "{root}/conf/my.toml"},
        ".",
        {"conf/my.toml": CFG.format(value="{root}/cfg")},
    ),
    ("no-config-flag", ["--no-config"], {}, ".", {"uv.toml": CFG.format(value="{root}/cfg")}),
    ("no-config-env", [], {"UV_NO_CONFIG": "1"}, ".", {"uv.toml": CFG.format(value="{root}/cfg")}),
    (
        "user-config-xdg",
        [],
        {"XDG_CONFIG_HOME": "{root}/xdgconf"},
        ".",
        {"xdgconf/uv/uv.toml": CFG.format(value="{root}/cfg")},
    ),
    ("user-config-home", [], {}, ".", {"home/.config/uv/uv.toml": CFG.format(value="{root}/cfg")}),
    ("env-beats-config", [], {"UV_CACHE_DIR": "{root}/env"}, ".", {"uv.toml": CFG.format(value="{root}/cfg")}),
    ("cache-is-a-symlink", [], {"UV_CACHE_DIR": "{root}/link"}, ".", {}),
    # `..` after a symlink (`up` -> deep/inner): uv leaves it to the kernel, which goes up from
    # deep/inner; dropping `..` from the text (Python's abspath) names another folder
    ("env-dot-dot-after-symlink", [], {"UV_CACHE_DIR": "{root}/up/../c"}, ".", {}),
    ("env-relative-dot-dot-after-symlink", [], {"UV_CACHE_DIR": "up/../c"}, ".", {}),
    ("cli-dot-dot-after-symlink", ["--cache-dir", "up/../c"], {}, ".", {}),
    ("directory-dot-dot-after-symlink", ["--directory", "up/.."], {"UV_CACHE_DIR": "c"}, ".", {}),
    ("home-dot-dot-after-symlink", [], {"HOME": "{root}/up/../h"}, ".", {}),
    ("xdg-dot-dot-after-symlink", [], {"XDG_CACHE_HOME": "{root}/up/../x"}, ".", {}),
    ("uv-toml-dot-dot-after-symlink", [], {}, ".", {"uv.toml": CFG.format(value="{root}/up/../cfg")}),
    ("no-cache-flag", ["--no-cache"], {}, ".", {}),
    ("no-cache-env", [], {"UV_NO_CACHE": "true"}, ".", {}),
]


def _fill(text: str, root: Path) -> str:
    return text.replace("{root}", str(root)).replace("{home}", str(root / "home"))


def _tags(root: Path) -> set:
    return {os.path.realpath(d) for d, _dirs, files in os.walk(root) if "CACHEDIR.TAG" in files}


@pytest.mark.parametrize("version", sorted({OLDEST, NEWEST}, key=_vt))
@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_the_shim_uses_the_cache_uv_uses(tmp_path, version, row):
    from shim import realuv, uvargs
    from shim.cachedir import find_cache_dir

    name, args, env_extra, wd, files = row
    root = tmp_path / "w"
    for d in ("home", "sub", "other", "~", "target"):
        (root / d).mkdir(parents=True, exist_ok=True)
    os.symlink(root / "target", root / "link")
    symlink_up(root)
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(_fill(text, root))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "XDG_", "VIRTUAL_ENV"))}
    env.update(HOME=str(root / "home"), UV_PYTHON_DOWNLOADS="never", UV_NO_PROGRESS="1")
    env.update({k: _fill(v, root) for k, v in env_extra.items()})
    args = [_fill(a, root) for a in args]
    cwd = str(root / wd)
    uv = str(uv_path(version))
    real = realuv.RealUv(uv, "test")
    build = realuv.build_of(real)
    inv = uvargs.parse([*args, "venv"])

    hot = find_cache_dir(real, build, inv, cwd, env)
    asked = find_cache_dir(real, build, inv, cwd, env, ask=True)
    before = _tags(root)
    proc = subprocess.run(
        [uv, *args, "venv", "-q", "--python", BASE_PYTHON, str(tmp_path / "venv")],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    made = _tags(root) - before
    truth: Optional[str] = made.pop() if made else None
    assert not made, f"uv made more than one cache: {made}"
    if hot is None or asked is None:
        assert hot is None and asked is None and truth is None, (hot, asked, truth)
        return
    assert (os.path.realpath(hot), os.path.realpath(asked)) == (truth, truth), f"{name} on uv {version}"
    for found in (hot, asked):  # as every later step takes it: absolute, no `..` left to misread
        assert os.path.isabs(found) and ".." not in found.split(os.sep), found


def test_literal_tilde_is_never_expanded_by_clean(world, tmp_path):
    """`UV_CACHE_DIR='~/stuff' uv cache clean` (CI YAML does not expand `~`): uv cleans the folder
    literally named `~/stuff` here; through the shim the same, and `$HOME/stuff` is untouched."""
    victim = world.home / "stuff"
    victim.mkdir()
    (victim / "thesis.tex").write_text("years of work")
    literal = world.root / "~" / "stuff"
    world.uv("venv", "-q", "--python", BASE_PYTHON, str(world.root / "v"), UV_CACHE_DIR="~/stuff", cwd=world.root)
    assert (literal / "CACHEDIR.TAG").is_file()
    out = world.uv("cache", "clean", UV_CACHE_DIR="~/stuff", cwd=world.root)
    assert f"Clearing cache at: {literal}" in out.stderr
    assert (victim / "thesis.tex").read_text() == "years of work"
    assert not list((literal).glob("interpreter-v*"))


@pytest.mark.parametrize("how", ["--directory", "UV_WORKING_DIR"])
def test_relative_cache_follows_the_working_directory_like_uv(world, how):
    """A relative cache path is relative to uv's working directory: `--directory D` (and
    `UV_WORKING_DIR`, on uv versions that read it) move it. The shim cleans the cache uv uses, and
    a folder of the same name where the user stands, which is not a cache, stays."""
    sub = world.root / "sub"
    sub.mkdir()
    here = world.root / "c"
    here.mkdir()
    (here / "notes.txt").write_text("mine")
    args, env = (["--directory", "sub"], {}) if how == "--directory" else ([], {"UV_WORKING_DIR": "sub"})
    world.uv(*args, "venv", "-q", "--python", BASE_PYTHON, str(world.root / "v"), UV_CACHE_DIR="c", **env)
    assert (sub / "c" / "CACHEDIR.TAG").is_file()
    out = world.uv(*args, "cache", "clean", UV_CACHE_DIR="c", **env)
    assert "Clearing cache at" in out.stderr
    assert (here / "notes.txt").read_text() == "mine"
    assert not list((sub / "c").glob("interpreter-v*"))
