"""Test worlds: the real uv (several versions side by side), real venvs, tiny wheels.

Nothing about uv, the filesystem or the lock is mocked. ``scripts/test`` installs the uv
versions under ``.test-env/uv/<version>``; each test gets a scratch cache, home and launcher dir.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Optional

import pytest

REPO = Path(__file__).resolve().parent.parent
UV_ROOT = Path(os.environ.get("UV_SHIM_TEST_UV_ROOT") or REPO / ".test-env" / "uv")
VERSIONS: list[str] = (os.environ.get("UV_SHIM_TEST_UV_VERSIONS") or "0.7.0 0.9.5 0.13.9").split()
# installed beside them for the mixed-version matrix only: another bucket generation (sdists-v10)
EXTRA_VERSIONS: list[str] = (os.environ.get("UV_SHIM_TEST_UV_EXTRA") or "0.13.8").split()


def _vt(v: str):
    return tuple(int(x) for x in v.split("."))


NEWEST = max(VERSIONS, key=_vt)
OLDEST = min(VERSIONS, key=_vt)
BASE_PYTHON = getattr(sys, "_base_executable", None) or sys.executable


def pytest_collection_modifyitems(config, items):
    """Two tiers: ``fast`` (in-process decisions, marked by their modules) and ``slow`` (the real
    uv, real environments, faults, soak, crash): every test not marked fast is slow."""
    for item in items:
        if item.get_closest_marker("fast") is None:
            item.add_marker(pytest.mark.slow)


def uv_path(version: str) -> Path:
    path = UV_ROOT / version / "bin" / "uv"
    if not path.exists():
        pytest.skip(f"uv {version} is not installed under {UV_ROOT} (run scripts/test)")
    return path


# ---------------------------------------------------------------------------------------------
# Tiny wheels
# ---------------------------------------------------------------------------------------------


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def make_wheel(folder: Path, name: str, version: str, extra: Optional[dict[str, str]] = None) -> Path:
    """Write ``name-version-py3-none-any.whl`` with a module ``name`` whose VALUE names the build."""
    mod = name.replace("-", "_")
    dist = f"{mod}-{version}.dist-info"
    files: dict[str, bytes] = {
        f"{mod}/__init__.py": f"VALUE = {f'{name}-{version}'!r}\n".encode(),
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: uv-shim-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    for path, text in (extra or {}).items():
        files[path] = text.encode()
    record = [_record_line(p, d) for p, d in files.items()] + [f"{dist}/RECORD,,"]
    files[f"{dist}/RECORD"] = ("\n".join(record) + "\n").encode()
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{mod}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(out, "w") as z:
        for path, data in files.items():
            z.writestr(path, data)
    return out


def _base_site() -> str:
    import sysconfig

    return sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_prefix})["purelib"]


BASE_SITE = _base_site()  # the test runner's base Python's site-packages: never a test's to change


def _site_entries() -> set[str]:
    try:
        return set(os.listdir(BASE_SITE)) - {"__pycache__"}
    except OSError:
        return set()


def _uninstall_uv_installs(names: Iterable[str]) -> None:
    """Remove what uv installed among ``names``: each ``*.dist-info`` whose INSTALLER is uv, and the
    top-level files its RECORD lists. Nothing else is touched."""
    for name in names:
        info = Path(BASE_SITE) / name
        try:
            if not name.endswith(".dist-info") or (info / "INSTALLER").read_text(errors="replace").strip() != "uv":
                continue
            record = (info / "RECORD").read_text(errors="replace").splitlines()
        except OSError:
            continue
        for top in {line.split(",")[0].split("/")[0] for line in record} - {"", ".", ".."}:
            path = Path(BASE_SITE) / top
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


@pytest.fixture(autouse=True)
def _base_python_is_left_alone():
    """A test whose uv installs into, or removes from, the test runner's own base Python (an
    interpreter path that Python resolves to its base, say) fails here: such a change is
    invisible to the test's own checks, which look inside its world. What uv installed there is
    uninstalled; anything else is only reported. (With two workers, the other worker's test may
    be the one named.)"""
    before = _site_entries()
    yield
    after = _site_entries()
    added, removed = sorted(after - before), sorted(before - after)
    _uninstall_uv_installs(added)
    assert not (added or removed), (
        f"the test runner's base Python ({BASE_SITE}) changed: added {added}, removed {removed}"
    )


@pytest.fixture(scope="session")
def wheels(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("wheels")
    for name, version in [("alpha", "1.0"), ("alpha", "2.0"), ("beta", "1.0")]:
        make_wheel(folder, name, version)
    make_wheel(  # a tool: one console script
        folder,
        "gamma",
        "1.0",
        {
            "gamma/cli.py": "def main():\n    print('gamma says hi')\n",
            "gamma-1.0.dist-info/entry_points.txt": "[console_scripts]\ngamma = gamma.cli:main\n",
        },
    )
    return folder


@pytest.fixture(scope="session")
def many_wheels(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("many")
    for i in range(100):
        make_wheel(folder, f"pkg{i:03d}", "1.0")
    return folder


# ---------------------------------------------------------------------------------------------
# Launchers and worlds
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def shim_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("shim-home")
    subprocess.run(
        [sys.executable, "-m", "shim", "install", "--bin-dir", str(home / "bin")],
        check=True,
        capture_output=True,
        env={**os.environ, "UV_SHIM_HOME": str(home)},
    )
    return home


class World:
    """A scratch home and cache, the shim's launchers, and one real uv version."""

    def __init__(self, root: Path, shim_home: Path, version: str) -> None:
        self.root = root
        self.version = version
        self.real_uv = uv_path(version)
        self.shim_home = shim_home
        self.shim_uv = shim_home / "bin" / "uv"
        self.cache = root / "cache"
        self.home = root / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.prefix: list[str] = []  # run every command under this (``setpriv`` to another user)
        self.python_path = BASE_PYTHON  # the interpreter environments are made with

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("UV_", "VIRTUAL_ENV", "CONDA_PREFIX", "XDG_")) and k not in ("PYTHONPATH",)
        }
        env.update(
            PATH=os.pathsep.join([str(self.shim_home / "bin"), str(self.real_uv.parent), os.environ.get("PATH", "")]),
            HOME=str(self.home),
            UV_CACHE_DIR=str(self.cache),
            UV_SHIM_HOME=str(self.shim_home),
            UV_PYTHON_DOWNLOADS="never",
            UV_NO_PROGRESS="1",
            UV_TOOL_DIR=str(self.root / "tools"),
            UV_TOOL_BIN_DIR=str(self.root / "tool-bin"),
            NO_COLOR="1",
        )
        env.update(extra)
        return {k: v for k, v in env.items() if v is not None}

    def uv(
        self,
        *args: str,
        shim: bool = True,
        check: bool = True,
        cwd: Optional[Path] = None,
        input: Optional[str] = None,
        **env: str,
    ) -> subprocess.CompletedProcess:
        exe = str(self.shim_uv if shim else self.real_uv)
        proc = subprocess.run(
            [*self.prefix, exe, *args],
            cwd=cwd or self.root,
            env=self.env(**env),
            capture_output=True,
            text=True,
            input=input,
            timeout=600,
        )
        if shim:  # the bookkeeping the launcher handed to a background helper is done
            self.settle(cache=Path(env["UV_CACHE_DIR"]) if env.get("UV_CACHE_DIR") else None)
        if check and proc.returncode != 0:
            raise AssertionError(f"uv {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def settle(self, timeout: float = 60.0, cache: Optional[Path] = None) -> None:
        """Wait until no uv-shim helper holds uv's cache lock (as a prune would wait for them):
        the helpers that finish an intercepted command's bookkeeping in the background hold it
        shared until their pins are in. Other holders (a test's own) are not waited for."""
        import time

        from shim.followup import helpers_hold

        deadline = time.monotonic() + timeout
        while helpers_hold(str(cache or self.cache)):
            assert time.monotonic() < deadline, "a uv-shim helper still holds the cache lock"
            time.sleep(0.01)

    def said(self, out: subprocess.CompletedProcess, venv: Path, **env: str) -> list[str]:
        """uv-shim's lines about the command that gave ``out``: those on its own stderr (Python ran
        in front of uv) followed by those its background helper kept for the next intercepted
        command, which prints them (here `uv pip uninstall` of a package nobody installed)."""
        nxt = self.uv(
            "pip", "uninstall", "--python", str(venv / "bin" / "python"), "nobody-has-this", check=False, **env
        )
        return [line for o in (out, nxt) for line in o.stderr.splitlines() if line.startswith("uv-shim:")]

    def venv(self, name: str) -> Path:
        path = self.root / name
        self.uv("venv", "-q", "--python", self.python_path, str(path), shim=False)
        return path

    @staticmethod
    def install_args(venv: Path, *specs: str, find_links: Optional[Path] = None) -> list[str]:
        """``pip install -q --python VENV [--no-index --find-links DIR] SPECS``."""
        args = ["pip", "install", "-q", "--python", str(venv / "bin" / "python")]
        if find_links is not None:
            args += ["--no-index", "--find-links", str(find_links)]
        return [*args, *specs]

    def install(
        self,
        venv: Path,
        *specs: str,
        mode: str = "symlink",
        shim: bool = True,
        find_links: Optional[Path] = None,
        extra: Iterable[str] = (),
        check: bool = True,
        **env: str,
    ) -> subprocess.CompletedProcess:
        args = self.install_args(venv, find_links=find_links)
        return self.uv(*args, *extra, *specs, shim=shim, check=check, **{"UV_LINK_MODE": mode, **env})

    def prune(self, *extra: str, shim: bool = False) -> subprocess.CompletedProcess:
        return self.uv("cache", "prune", *extra, shim=shim)

    def python(self, venv: Path, code: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, env=self.env()
        )

    def value(self, venv: Path, module: str) -> Optional[str]:
        """``module.VALUE`` as the environment sees it, or None if the import is broken."""
        out = self.python(venv, f"import {module}; print({module}.VALUE)")
        return out.stdout.strip() if out.returncode == 0 else None

    def broken(self, venv: Path, site: Optional[Path] = None) -> list[str]:
        """What is broken in an environment ("works" is an empty list): files its distributions'
        RECORDs list that are missing, top-level packages that do not import or import only as
        an empty namespace package. ``site``: a bare folder of packages (``--target``), probed
        with ``venv`` as the interpreter's root."""
        if site is not None:
            out = subprocess.run(
                [str(venv / "bin" / "python"), "-c", _BROKEN_PROBE, str(site)],
                capture_output=True,
                text=True,
                env=self.env(),
            )
        else:
            out = self.python(venv, _BROKEN_PROBE)
        if out.returncode != 0:
            return [f"probe failed: {out.stderr.strip()[-300:]}"]
        return [line for line in out.stdout.splitlines() if line.strip()]

    def works(self, venv: Path, site: Optional[Path] = None) -> bool:
        return self.broken(venv, site) == []

    def cache_object(self):
        """The shim's view of this world's cache (``shim.cache.Cache``), for this uv's build."""
        from shim import realuv
        from shim.cache import Cache

        return Cache(str(self.cache), realuv.build_of(realuv.RealUv(str(self.real_uv), "test")))

    def manifest_dir(self) -> Path:
        from shim.cache import SHIM_DIR

        return self.cache / self.cache_object().build.buckets["sdists"] / SHIM_DIR

    def records(self) -> dict[str, object]:
        """Environment path -> parsed record, for every record in the running uv's bucket."""
        from shim import manifest

        out = {}
        d = self.manifest_dir()
        if d.is_dir():
            for entry in d.iterdir():
                if (entry / manifest.RECORD).is_file():
                    rec = manifest.load(str(entry))
                    out[rec.path] = rec
        return out

    def pins(self) -> list[Path]:
        d = self.manifest_dir()
        return sorted(p for p in d.glob("*/pin_*_0-0-py3-none-any")) if d.is_dir() else []

    def pinned(self) -> list[str]:
        """Archive ids pinned by any environment."""
        from shim.manifest import pin_id

        return sorted({pin_id(p.name) for p in self.pins()})

    def archives(self) -> list[str]:
        d = self.cache / "archive-v0"
        return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


_BROKEN_PROBE = r"""
import glob, importlib, os, sys
if len(sys.argv) > 1:
    site = sys.argv[1]
    sys.path.insert(0, site)
else:
    site = next(p for p in sys.path if p.endswith("site-packages"))
out = []
for info in sorted(glob.glob(os.path.join(site, "*.dist-info"))):
    rec = os.path.join(info, "RECORD")
    if not os.path.isfile(rec):
        out.append(os.path.basename(info) + ": RECORD is gone")
        continue
    tops = set()
    for line in open(rec, encoding="utf-8"):
        path = line.rsplit(",", 2)[0]
        if not path:
            continue
        if not os.path.exists(os.path.normpath(os.path.join(site, path))):
            out.append("missing " + path)
        top = path.split("/")[0]
        if not path.startswith("..") and not top.endswith((".dist-info", ".data", ".pth")) and top != "__pycache__":
            tops.add(top[:-3] if top.endswith(".py") else top)
    for top in sorted(tops):
        try:
            mod = importlib.import_module(top)
        except Exception as e:
            out.append(f"{top}: {type(e).__name__}: {e}")
            continue
        if getattr(mod, "__file__", None) is None:
            out.append(top + ": an empty namespace package")
print("\n".join(out))
"""


def hold_shared_lock(lock: Path, seconds: int = 120) -> subprocess.Popen:
    """Another process holding a shared flock on uv's cache lock, as a running uv does (until
    killed, or for ``seconds``); returns once the lock is held."""
    code = f"import fcntl,sys,time; f=open(sys.argv[1],'a'); fcntl.flock(f, fcntl.LOCK_SH); print('held', flush=True); time.sleep({seconds})"
    holder = subprocess.Popen([sys.executable, "-c", code, str(lock)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def du_bytes(*tops: Path, skip: str = "uv-shim") -> int:
    """``du -s --block-size=1 TOPS`` summed (each inode once across all of them), leaving out
    folders named ``skip`` (uv-shim's own records: a prune rewrites them)."""
    seen, total = set(), 0
    for top in tops:
        if not os.path.lexists(top):
            continue
        for d, dirs, files in os.walk(top):
            dirs[:] = [x for x in dirs if x != skip]
            for name in [*files, *(x for x in dirs if os.path.islink(os.path.join(d, x)))]:
                st = os.lstat(os.path.join(d, name))
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_blocks * 512
            dirs[:] = [x for x in dirs if not os.path.islink(os.path.join(d, x))]
            st = os.lstat(d)
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def runs_as(world: World, v, **env: str) -> str:
    """The executable of an intercepted command's own process once it is busy (uv waits on
    stdin): the real uv where the launcher took the background path, Python where it did not."""
    import time

    import psutil

    proc = subprocess.Popen(
        [str(world.shim_uv), "pip", "install", "--python", str(v / "bin" / "python"), "-r", "/dev/stdin"],
        env=world.env(**env),
        cwd=world.root,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        exe = ""
        while time.monotonic() < deadline:
            exe = os.path.realpath(psutil.Process(proc.pid).exe())
            if exe == os.path.realpath(world.real_uv) or "python" in os.path.basename(exe):
                break
            time.sleep(0.02)
        return exe
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
        world.settle()


def require_root_unshare(what: str = "") -> None:
    """Skip unless this runs as root with util-linux ``unshare`` (namespaces of its own)."""
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip(f"needs root and unshare{what}")


def symlink_up(root: Path) -> None:
    """``root/up``, a symlink to ``root/deep/inner``: to the kernel (and uv) ``up/..`` is
    ``root/deep``; Python's ``abspath`` drops ``..`` from the text and says ``root``."""
    (root / "deep" / "inner").mkdir(parents=True)
    (root / "up").symlink_to(root / "deep" / "inner")


def make_sdist(folder: Path, value: str = "built-from-sdist") -> Path:
    """``folder/dist/sdpkg-1.0.tar.gz``, an sdist with an in-tree PEP 517 backend (builds offline,
    no setuptools needed) whose module says ``VALUE = value``. Made again with another value, it
    is a new revision of the same sdist."""
    import tarfile

    src = folder / "src" / "sdpkg-1.0"
    (src / "sdpkg").mkdir(parents=True, exist_ok=True)
    (src / "sdpkg" / "__init__.py").write_text(f"VALUE = {value!r}\n")
    (src / "pyproject.toml").write_text(
        '[project]\nname = "sdpkg"\nversion = "1.0"\n[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
    )
    (src / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: sdpkg\nVersion: 1.0\n")
    (src / "backend.py").write_text(
        "import base64, hashlib, os, zipfile\n"
        "def _rec(n, d):\n    h = base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()\n    return f'{n},sha256={h},{len(d)}'\n"
        "def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):\n"
        "    name = 'sdpkg-1.0-py3-none-any.whl'\n"
        "    files = {'sdpkg/__init__.py': open('sdpkg/__init__.py', 'rb').read(),\n"
        "             'sdpkg-1.0.dist-info/METADATA': b'Metadata-Version: 2.1\\nName: sdpkg\\nVersion: 1.0\\n',\n"
        "             'sdpkg-1.0.dist-info/WHEEL': b'Wheel-Version: 1.0\\nGenerator: t\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n'}\n"
        "    rec = '\\n'.join([_rec(n, d) for n, d in files.items()] + ['sdpkg-1.0.dist-info/RECORD,,']) + '\\n'\n"
        "    files['sdpkg-1.0.dist-info/RECORD'] = rec.encode()\n"
        "    with zipfile.ZipFile(os.path.join(wheel_directory, name), 'w') as z:\n"
        "        for n, d in files.items():\n            z.writestr(n, d)\n"
        "    return name\n"
        "def get_requires_for_build_wheel(config_settings=None):\n    return []\n"
    )
    out = folder / "dist" / "sdpkg-1.0.tar.gz"
    out.parent.mkdir(exist_ok=True)
    with tarfile.open(out, "w:gz") as t:
        t.add(src, arcname="sdpkg-1.0")
    return out


def make_project(w: World, wheels: Path, dependencies: str = "") -> Path:
    """``<world>/proj``: a project resolving only from ``wheels``."""
    proj = w.root / "proj"
    proj.mkdir()
    (proj / "pyproject.toml").write_text(
        f'[project]\nname = "proj"\nversion = "0.1"\nrequires-python = ">=3.9"\ndependencies = [{dependencies}]\n'
        f'[tool.uv]\nno-index = true\nfind-links = ["{wheels}"]\n'
    )
    return proj


def private_python(folder: Path) -> Path:
    """A non-venv interpreter of our own: the test Python's executable copied, its standard
    library linked name by name, an empty site-packages (so nothing installs into a shared one)."""
    base = Path(os.path.realpath(BASE_PYTHON))
    prefix = Path(sys.base_prefix)
    ver = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    (folder / "bin").mkdir(parents=True)
    shutil.copy2(base, folder / "bin" / ver)
    (folder / "bin" / "python3").symlink_to(ver)
    (folder / "bin" / "python").symlink_to(ver)
    lib = folder / "lib" / ver
    lib.mkdir(parents=True)
    for entry in (prefix / "lib" / ver).iterdir():
        if entry.name != "site-packages":
            (lib / entry.name).symlink_to(entry)
    (lib / "site-packages").mkdir()
    for so in (prefix / "lib").glob("libpython*"):
        (folder / "lib" / so.name).symlink_to(so)
    return folder / "bin" / "python3"


def pair(tmp_path: Path, shim_home: Path, version: str):
    """Two separate worlds of one uv version: one to break with the bare uv (the control), one
    to protect through the shim."""
    return World(tmp_path / "bare", shim_home, version), World(tmp_path / "shim", shim_home, version)


@pytest.fixture
def world(tmp_path, shim_home, monkeypatch) -> World:
    monkeypatch.setenv("UV_SHIM_HOME", str(shim_home))
    return World(tmp_path, shim_home, NEWEST)


@pytest.fixture(params=VERSIONS)
def any_world(request, tmp_path, shim_home, monkeypatch) -> World:
    monkeypatch.setenv("UV_SHIM_HOME", str(shim_home))
    return World(tmp_path, shim_home, request.param)


@pytest.fixture(params=sorted({OLDEST, NEWEST}, key=_vt))
def edge_world(request, tmp_path, shim_home, monkeypatch) -> World:
    """The oldest and the newest uv we support."""
    monkeypatch.setenv("UV_SHIM_HOME", str(shim_home))
    return World(tmp_path, shim_home, request.param)
