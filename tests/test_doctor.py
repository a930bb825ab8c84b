"""`uv-shim doctor --fix` never makes things worse (issue 15): each broken distribution is
restored from where it came from (its direct_url.json: a local folder, editable or not, a git
repository, a URL; a project's lock file), never by name from a package index, and one that
cannot be restored does not stop the others. Newest uv (its built-in uv_build backend builds the
local packages offline). Environments are broken with the bare `uv cache clean`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BASE_PYTHON, World

LOCAL = "LOCAL_CODE = True\n"


@pytest.fixture(autouse=True)
def _home(shim_home, monkeypatch):
    monkeypatch.setenv("UV_SHIM_HOME", str(shim_home))


def _local_package(w: World, folder: str, name: str, version: str) -> Path:
    """A local project built by uv's own backend: `name` at `version`, marked as local code."""
    w.uv("init", "-q", "--lib", "--name", name, "--python", BASE_PYTHON, folder, shim=False)
    src = w.root / folder
    text = (src / "pyproject.toml").read_text().replace('version = "0.1.0"', f'version = "{version}"')
    (src / "pyproject.toml").write_text(text.replace('requires-python = ">=3.11"', 'requires-python = ">=3.9"'))
    (src / "src" / name.replace("-", "_") / "__init__.py").write_text(LOCAL)
    return src


def _doctor(w: World, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shim", "doctor", *args], env=w.env(), capture_output=True, text=True)


def _is_local(w: World, venv: Path, module: str) -> bool:
    out = w.python(venv, f"import {module}; print(getattr({module}, 'LOCAL_CODE', False))")
    return out.stdout.strip() == "True"


def test_a_local_package_named_like_an_index_package_is_restored_from_its_folder(world: World):
    """`six` 1.16.0 also exists on PyPI: doctor must reinstall the user's own folder."""
    src = _local_package(world, "six-src", "six", "1.16.0")
    v = world.venv("v")
    world.uv("pip", "install", "-q", "--python", str(v / "bin" / "python"), str(src), UV_LINK_MODE="symlink")
    assert _is_local(world, v, "six")
    world.uv("cache", "clean", shim=False)  # bare: every archive goes
    assert not world.works(v)
    out = _doctor(world, "--fix", "--json", str(v))
    assert out.returncode == 0, out
    (env,) = json.loads(out.stdout)["broken"]
    (dist,) = env["distributions"]
    assert dist["fixed"] and dist["from"].startswith("file://"), dist
    assert world.works(v) and _is_local(world, v, "six")  # the user's code, not the index's


def test_an_editable_install_stays_editable(world: World):
    src = _local_package(world, "ed-src", "edpkg", "1.0")
    v = world.venv("v")
    world.uv("pip", "install", "-q", "--python", str(v / "bin" / "python"), "-e", str(src), UV_LINK_MODE="symlink")
    world.uv("cache", "clean", shim=False)
    out = _doctor(world, "--fix", str(v))
    assert out.returncode == 0, out
    (src / "src" / "edpkg" / "__init__.py").write_text("LOCAL_CODE = True\nEDITED = 1\n")
    assert world.python(v, "import edpkg; print(edpkg.EDITED)").stdout.strip() == "1"  # still the folder


def test_a_git_requirement_is_restored_from_its_repository(world: World):
    if shutil.which("git") is None:
        pytest.skip("needs git")
    src = _local_package(world, "git-src", "gitpkg", "1.0")
    git = ["git", "-C", str(src), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(src)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "one"], check=True)
    v = world.venv("v")
    spec = f"gitpkg @ git+file://{src}"
    world.uv("pip", "install", "-q", "--python", str(v / "bin" / "python"), spec, UV_LINK_MODE="symlink")
    world.uv("cache", "clean", shim=False)
    out = _doctor(world, "--fix", "--json", str(v))
    assert out.returncode == 0, out
    (dist,) = json.loads(out.stdout)["broken"][0]["distributions"]
    assert dist["from"].startswith("git+file://") and world.works(v) and _is_local(world, v, "gitpkg")


def test_what_can_be_restored_is_restored_and_the_rest_says_how(world: World, wheels):
    """An index package (find-links given to doctor) and a local package whose folder is gone:
    the first is repaired, the second reported with its reason; exit 1."""
    src = _local_package(world, "gone-src", "gonepkg", "1.0")
    v = world.venv("v")
    world.uv("pip", "install", "-q", "--python", str(v / "bin" / "python"), str(src), UV_LINK_MODE="symlink")
    world.install(v, "alpha==1.0", find_links=wheels)
    world.uv("cache", "clean", shim=False)
    shutil.rmtree(src)
    out = _doctor(world, "--fix", "--json", str(v), "--", "--no-index", "--find-links", str(wheels))
    assert out.returncode == 1, out
    dists = {d["name"]: d for d in json.loads(out.stdout)["broken"][0]["distributions"]}
    assert dists["alpha"]["fixed"] and dists["alpha"]["from"] == "the package index"
    assert not dists["gonepkg"]["fixed"] and "is gone" in dists["gonepkg"]["error"]
    assert world.python(v, "import alpha; print(alpha.VALUE)").stdout.strip() == "alpha-1.0"
    text = _doctor(world, "--fix", str(v), "--", "--no-index", "--find-links", str(wheels))
    assert "gonepkg==1.0" in text.stdout and "NOT fixed" in text.stdout


def test_a_project_environment_is_restored_by_its_lock_file(world: World, wheels):
    from conftest import make_project

    proj = make_project(world, wheels, '"alpha==1.0"')
    world.uv("sync", "-q", "--python", BASE_PYTHON, cwd=proj, UV_LINK_MODE="symlink")
    world.uv("cache", "clean", shim=False)
    out = _doctor(world, "--fix", "--json", str(proj / ".venv"))
    assert out.returncode == 0, out
    (dist,) = json.loads(out.stdout)["broken"][0]["distributions"]
    assert "lock file" in dist["from"] and dist["command"].startswith("uv sync --project"), dist
    assert world.works(proj / ".venv")
