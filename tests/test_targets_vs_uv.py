"""Where uv installs, according to the shim and according to the real uv (issue 13).

Each row is one way users point uv at an environment. The shim's answer
(``targets.environments_for``, computed before uv runs, as the intercepted command does) must
name exactly the site-packages folders in which the bare uv then creates ``*.dist-info``
folders. Rows run on the oldest and the newest uv the suite drives; where a uv version does not
know an option or variable it simply behaves differently, and the shim must agree with it.

Interpreters that are not venvs are private copies of the test Python (the executable copied,
its standard library linked, an empty site-packages), so nothing outside the test folder changes.
One case cannot be made private: a venv that only the kernel reaches through `..`, whose python
then reports the prefix its build names, the test Python's own; uv's `--dry-run` tells where it
would install instead (``test_a_venv_only_the_kernel_reaches_syncs_a_base_python``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import BASE_PYTHON, NEWEST, OLDEST, World, _vt, make_project, private_python, symlink_up

from shim import envscan, realuv, targets, uvargs, uvfeatures
from shim.cache import Cache

EDGE = sorted({OLDEST, NEWEST}, key=_vt)
FIND = ["--no-index", "--find-links", "{wheels}"]

# (id, cwd, argv, env, uv versions that reject the row: it then installs nothing anywhere)
ROWS: list[tuple[str, str, list[str], dict[str, str]]] = [
    ("pip-python-exe", ".", ["pip", "install", "--python", "venvA/bin/python", *FIND, "alpha"], {}),
    ("pip-python-dir", ".", ["pip", "install", "-p", "venvA", *FIND, "alpha"], {}),
    ("pip-python-attached", ".", ["pip", "install", "-pvenvA/bin/python", *FIND, "alpha"], {}),
    ("pip-virtual-env", ".", ["pip", "install", *FIND, "alpha"], {"VIRTUAL_ENV": "{root}/venvA"}),
    ("pip-virtual-env-relative", ".", ["pip", "install", *FIND, "alpha"], {"VIRTUAL_ENV": "venvA"}),
    ("pip-conda-prefix", ".", ["pip", "install", *FIND, "alpha"], {"CONDA_PREFIX": "{root}/venvA"}),
    ("pip-uv-python", ".", ["pip", "install", *FIND, "alpha"], {"UV_PYTHON": "venvA/bin/python"}),
    ("pip-dotvenv-upwards", "proj/sub", ["pip", "install", *FIND, "alpha"], {}),
    ("pip-directory", ".", ["--directory", "proj/sub", "pip", "install", *FIND, "alpha"], {}),
    ("pip-working-dir-var", ".", ["pip", "install", *FIND, "alpha"], {"UV_WORKING_DIR": "proj/sub"}),
    ("pip-target", ".", ["pip", "install", "--target", "tgt", *FIND, "alpha"], {}),
    ("pip-target-tilde", ".", ["pip", "install", "--target", "~/tgt", *FIND, "alpha"], {}),
    ("pip-target-in-directory", ".", ["--directory", "proj", "pip", "install", "--target", "t", *FIND, "alpha"], {}),
    ("pip-prefix", ".", ["pip", "install", "--prefix", "pfx", "--python", "venvA", *FIND, "alpha"], {}),
    ("pip-symlink-outside-venv", ".", ["pip", "install", "-p", "links/py", *FIND, "alpha"], {}),
    ("pip-base-interpreter", ".", ["pip", "install", "-p", "base/bin/python3", *FIND, "alpha"], {}),
    ("pip-system", ".", ["pip", "install", "--system", *FIND, "alpha"], {"VIRTUAL_ENV": "{root}/venvA"}),
    ("pip-system-var", ".", ["pip", "install", *FIND, "alpha"], {"UV_SYSTEM_PYTHON": "1"}),
    ("pip-sync", ".", ["pip", "sync", "--python", "venvA", *FIND, "reqs.txt"], {}),
    ("sync", "proj", ["sync"], {}),
    ("sync-from-subfolder", "proj/sub", ["sync"], {}),
    ("sync-directory", ".", ["--directory", "proj", "sync"], {}),
    ("sync-project", ".", ["--project", "proj", "sync"], {}),
    ("sync-project-var", ".", ["sync"], {"UV_PROJECT": "proj"}),
    ("sync-working-dir-var", ".", ["sync"], {"UV_WORKING_DIR": "proj"}),
    ("sync-project-env", "proj", ["sync"], {"UV_PROJECT_ENVIRONMENT": "penv"}),
    ("sync-project-env-tilde", "proj", ["sync"], {"UV_PROJECT_ENVIRONMENT": "~/penv"}),
    ("sync-project-env-absolute", "proj", ["sync"], {"UV_PROJECT_ENVIRONMENT": "{root}/abs-env"}),
    ("sync-workspace-member", "ws/pkgs/m", ["sync"], {}),
    ("run", "proj", ["run", "python", "-c", "pass"], {}),
    ("run-with", "proj", ["run", *FIND, "--with", "beta", "python", "-c", "pass"], {}),
    ("add", "proj", ["add", *FIND, "beta"], {}),
    ("version-bump", "proj", ["version", "--bump", "patch"], {}),
    ("tool-install", ".", ["tool", "install", *FIND, "gamma"], {}),
    ("tool-install-tilde-dir", ".", ["tool", "install", *FIND, "gamma"], {"UV_TOOL_DIR": "~/tools"}),
    # `..` after a symlink (`up` -> deep/inner): the kernel goes up from deep/inner, not from the
    # folder holding `up`, where a decoy venvD waits; uv's `--project` is the exception (it drops
    # `..` from the text, the way Python's abspath does)
    ("pip-python-dotdot", ".", ["pip", "install", "--python", "up/../venvD/bin/python", *FIND, "alpha"], {}),
    ("pip-python-dir-dotdot", ".", ["pip", "install", "-p", "up/../venvD", *FIND, "alpha"], {}),
    ("pip-virtual-env-dotdot", ".", ["pip", "install", *FIND, "alpha"], {"VIRTUAL_ENV": "{root}/up/../venvD"}),
    ("pip-target-dotdot", ".", ["pip", "install", "--target", "up/../tgt", *FIND, "alpha"], {}),
    ("pip-prefix-dotdot", ".", ["pip", "install", "--prefix", "up/../pfx", "-p", "venvA", *FIND, "alpha"], {}),
    ("pip-directory-dotdot", ".", ["--directory", "up/..", "pip", "install", "-p", "venvD", *FIND, "alpha"], {}),
    ("sync-directory-dotdot", ".", ["--directory", "up/..", "sync"], {}),
    ("sync-project-dotdot", ".", ["--project", "up/../proj", "sync"], {}),
    ("sync-project-env-dotdot", "proj", ["sync"], {"UV_PROJECT_ENVIRONMENT": "{root}/up/../penv"}),
    ("sync-project-env-dotdot-both", "proj", ["sync"], {"UV_PROJECT_ENVIRONMENT": "{root}/up/../penvB"}),
    ("sync-project-env-dotdot-lexical", "proj", ["sync"], {"UV_PROJECT_ENVIRONMENT": "{root}/up/../penvL"}),
    ("sync-active-dotdot-both", "proj", ["sync", "--active"], {"VIRTUAL_ENV": "{root}/up/../penvB"}),
    ("sync-active-dotdot-lexical", "proj", ["sync", "--active"], {"VIRTUAL_ENV": "{root}/up/../penvL"}),
    ("tool-install-dotdot-dir", ".", ["tool", "install", *FIND, "gamma"], {"UV_TOOL_DIR": "{root}/up/../tools"}),
]


def _world(w: World, wheels: Path, penvs: bool = False) -> None:
    """``penvs``: also the venvs reached through ``..`` by UV_PROJECT_ENVIRONMENT / --active rows."""
    root = w.root
    base = private_python(root / "base")
    w.uv("venv", "-q", "--python", BASE_PYTHON, str(root / "venvA"), shim=False)
    w.uv("venv", "-q", "--python", str(base), str(root / "venvP"), shim=False)
    (root / "links").mkdir()
    (root / "links" / "py").symlink_to(root / "venvP" / "bin" / "python")  # runs as `base`
    (root / "reqs.txt").write_text("alpha==1.0\n")
    project = f'requires-python = ">=3.9"\n[tool.uv]\nno-index = true\nfind-links = ["{wheels}"]\n'
    make_project(w, wheels, '"alpha==1.0"')
    (root / "proj" / "sub").mkdir()
    w.uv("venv", "-q", "--python", BASE_PYTHON, str(root / "proj" / ".venv"), shim=False)
    member = root / "ws" / "pkgs" / "m"
    member.mkdir(parents=True)
    (root / "ws" / "pyproject.toml").write_text(
        f'[project]\nname = "ws"\nversion = "0.1"\ndependencies = []\n{project}[tool.uv.workspace]\nmembers = ["pkgs/*"]\n'
    )
    (member / "pyproject.toml").write_text('[project]\nname = "m"\nversion = "0.1"\ndependencies = ["alpha==1.0"]\n')
    symlink_up(root)
    w.venv("deep/venvD")
    w.venv("venvD")  # a decoy, where dropping `..` from the text leads
    for name in ("deep/penvB", "penvB", "penvL", "deep/penvP") if penvs else ():  # `..` after a symlink:
        w.venv(name)  # a venv at both places, only at the lexical one, only at the physical one
    (root / "deep" / "pyproject.toml").write_text((root / "proj" / "pyproject.toml").read_text())


def _dist_infos(root: Path, cache: Path) -> set[str]:
    out = set()
    for d, dirs, _files in os.walk(root):
        if d == str(cache):
            dirs[:] = []
            continue
        for name in dirs:
            if name.endswith(".dist-info"):
                out.add(os.path.join(d, name))
    return out


def _sites(answer: list[tuple[str, str]]) -> set[str]:
    out = set()
    for path, kind in answer:
        if kind == "cached":
            continue
        out.update(os.path.realpath(s) for s in envscan.site_dirs(path, kind))
    return out


# Rows whose answer also names an environment uv may leave alone: a project environment reached
# through `..`, reused through its python or replaced where the kernel goes, as uv's choice of
# interpreter decides (targets.synced_envs records both; the extra is the kernel's place).
ALSO_RECORDED = {"sync-project-env-dotdot-both", "sync-active-dotdot-both"}


@pytest.mark.parametrize("version", EDGE)
@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_shim_and_uv_agree_on_the_target(tmp_path, shim_home, wheels, version, row, monkeypatch):
    name, cwd_rel, argv_t, env_t = row
    w = World(tmp_path, shim_home, version)
    _world(w, wheels, penvs="penv" in repr(row))
    sub = {"{wheels}": str(wheels), "{root}": str(w.root)}

    def fill(s: str) -> str:
        for k, v in sub.items():
            s = s.replace(k, v)
        return s

    argv = [fill(a) for a in argv_t]
    cwd = w.root / cwd_rel
    extra = {k: fill(v) for k, v in env_t.items()}
    env = w.env(**{"UV_LINK_MODE": "symlink", "PATH": f"{w.root / 'base' / 'bin'}:{w.env()['PATH']}", **extra})
    real = realuv.RealUv(str(w.real_uv), "test")
    cache = Cache(str(w.cache), realuv.build_of(real))
    inv = uvargs.parse(argv)
    monkeypatch.chdir(cwd)
    answer: list[tuple[str, str]] = []
    if inv.intercepted and uvfeatures.changes_environments(inv.words, _vt(version)):
        answer = targets.environments_for(inv, cache, real, str(cwd), env)

    before = _dist_infos(w.root, w.cache)
    out = w.uv(*argv, shim=False, check=False, cwd=cwd, **extra, PATH=env["PATH"], UV_LINK_MODE="symlink")
    created = _dist_infos(w.root, w.cache) - before
    actual = {os.path.realpath(os.path.dirname(d)) for d in created}
    assert out.returncode == 0 or not actual, out.stderr
    # the folders exist now (uv made them): the shim's answer, as site-packages folders
    assert _sites(answer) >= actual and (actual or not _sites(answer) or out.returncode != 0), (
        name,
        sorted(_sites(answer)),
        sorted(actual),
        out.stderr[-500:],
    )
    if out.returncode == 0 and name in ALSO_RECORDED:  # beyond what uv changed, only the kernel's place
        assert _sites(answer) - actual <= _sites(answer[:1]), (name, sorted(_sites(answer)), sorted(actual))
    elif out.returncode == 0:
        assert _sites(answer) == actual or (name == "version-bump" and not actual), (
            name,
            sorted(_sites(answer)),
            sorted(actual),
        )


def _another_python() -> str:
    """A CPython of another minor version than the test runner's (pyenv's), or ''."""
    import glob
    import sys

    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    for minor in (13, 12, 10, 9):
        if minor != sys.version_info[1]:
            found = sorted(glob.glob(f"{root}/versions/3.{minor}.*/bin/python3.{minor}"))
            if found:
                return found[-1]
    return ""


@pytest.mark.parametrize("version", EDGE)
@pytest.mark.parametrize("how", ["project-environment", "active", "pip-python", "project-environment-replaced"])
def test_a_venv_only_the_kernel_reaches_syncs_a_base_python(tmp_path, shim_home, wheels, version, how, monkeypatch):
    """`UV_PROJECT_ENVIRONMENT` (or `--active`'s `VIRTUAL_ENV`, or `uv pip install --python`)
    `up/../penvP`, the venv only at deep/penvP where the kernel goes: uv runs its python by the
    path as written, Python drops `..` from that text, finds no pyvenv.cfg at penvP and reports
    its base, and uv installs into that base (it says so). Unless uv wants another interpreter
    than the venv's: then it replaces the venv where the kernel goes. The shim must name the
    place uv names. Asked with `--dry-run`: a real install would go into the runner's Python."""
    w = World(tmp_path, shim_home, version)
    _world(w, wheels, penvs=True)
    value = str(w.root / "up" / ".." / "penvP")
    other = _another_python()
    if how.endswith("-replaced") and not other:
        pytest.skip("needs a Python of another minor version (pyenv's)")
    extra, argv = {
        "project-environment": ({"UV_PROJECT_ENVIRONMENT": value}, ["sync"]),
        "active": ({"VIRTUAL_ENV": value}, ["sync", "--active"]),
        "pip-python": ({}, ["pip", "install", "--python", value + "/bin/python", *FIND, "alpha"]),
        "project-environment-replaced": ({"UV_PROJECT_ENVIRONMENT": value, "UV_PYTHON": other}, ["sync"]),
    }[how]
    argv = [a.replace("{wheels}", str(wheels)) for a in argv]
    cwd = w.root / "proj"
    out = w.uv(*argv, "--dry-run", shim=False, cwd=cwd, **extra)
    said = [line.split(" at: ", 1)[1] for line in out.stderr.splitlines() if "environment at: " in line]
    assert len(said) == 1, out.stderr
    real = realuv.RealUv(str(w.real_uv), "test")
    cache = Cache(str(w.cache), realuv.build_of(real))
    monkeypatch.chdir(cwd)
    answer = targets.environments_for(uvargs.parse(argv), cache, real, str(cwd), w.env(**extra))
    if how.endswith("-replaced"):  # uv names the path as written; it replaces what the kernel finds
        assert "replace" in out.stderr and os.path.realpath(said[0]) == str((w.root / "deep" / "penvP").resolve())
        assert (os.path.realpath(said[0]), "venv") in [(os.path.realpath(p), k) for p, k in answer], answer
        return
    assert os.path.isfile(os.path.join(said[0], "bin", "python3")), out.stderr
    assert not os.path.isfile(os.path.join(said[0], "pyvenv.cfg"))  # a base Python, not penvP
    found = str((w.root / "deep" / "penvP").resolve())
    bases = [path for path, kind in answer if kind == "target"]
    assert bases and all(path.startswith(said[0] + os.sep) for path in bases), answer
    if how != "pip-python":  # a synced environment: also where uv would replace it
        assert answer == [(found, "venv"), *[(b, "target") for b in bases]], answer
    else:
        assert answer == [(b, "target") for b in bases], answer


DEBIAN_PYTHON = "/usr/bin/python3"


def _purelib(python: str) -> str:
    import subprocess

    out = subprocess.run(
        [python, "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() if out.returncode == 0 else ""


@pytest.mark.parametrize("version", EDGE)
def test_system_python_installing_into_dist_packages(tmp_path, shim_home, version, monkeypatch):
    """A distribution's Python (Debian: purelib is /usr/local/lib/python3.X/dist-packages) with
    --system: the shim records that dist-packages folder and pins what uv links there. Installs
    one uniquely named package there for the length of the test and removes it."""
    from conftest import make_wheel

    purelib = _purelib(DEBIAN_PYTHON) if os.path.exists(DEBIAN_PYTHON) else ""
    if not purelib.endswith("dist-packages") or os.geteuid() != 0:
        pytest.skip("needs root and a distribution Python that installs into dist-packages")
    name = f"uvshimprobe{version.replace('.', '')}"
    wheels = tmp_path / "probe-wheels"
    make_wheel(wheels, name, "1.0")
    w = World(tmp_path / "w", shim_home, version)
    env = {"PATH": f"/usr/bin:{w.env()['PATH']}", "UV_LINK_MODE": "symlink"}
    args = ["pip", "install", "--system", "--break-system-packages", "--python", DEBIAN_PYTHON]
    args += ["--no-index", "--find-links", str(wheels), name]
    try:
        real = realuv.RealUv(str(w.real_uv), "test")
        cache = Cache(str(w.cache), realuv.build_of(real))
        answer = targets.environments_for(uvargs.parse(args), cache, real, str(w.root), w.env(**env))
        w.uv(*args, **env)  # through the shim
        assert os.path.isdir(os.path.join(purelib, f"{name}-1.0.dist-info"))
        assert _sites(answer) == {os.path.realpath(purelib)}
        rec = w.records()[os.path.realpath(purelib)]
        assert f"{name}==1.0" in rec.distributions and len(rec.pinned) == 1
        assert rec.pinned[0] in w.pinned()
    finally:
        w.uv(
            "pip",
            "uninstall",
            "--system",
            "--break-system-packages",
            "--python",
            DEBIAN_PYTHON,
            name,
            shim=False,
            check=False,
        )
    assert not os.path.exists(os.path.join(purelib, f"{name}-1.0.dist-info"))
