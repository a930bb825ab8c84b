#!/usr/bin/env python3
"""Check uv-shim's knowledge of uv against the real binaries of every uv release line.

    .test-env/bin/python scripts/uv_versions.py                 # last patch of 0.6 .. newest line
    .test-env/bin/python scripts/uv_versions.py --versions 0.7.0 0.13.9 --json

Missing binaries are pip-installed into ``--dir/<version>`` (default ``~/.cache/uv-shim/uv-versions``).
Per version, in fresh offline worlds (own cache and home, ``--no-index --find-links`` tiny packages
made here, ``UV_LINK_MODE=symlink``):

- buckets: the sdists/wheels bucket names ``realuv.build_of`` reads from the binary, against the
  ``sdists-v*``/``wheels-v*`` folders the bare uv creates installing a wheel and an sdist (an
  in-tree build backend, no build requirements); a bucket uv did not create is "n/a".
- locks cache: with an exclusive flock on ``<cache>/.lock`` held here, ``uv pip install`` blocks
  for 5 s (then the same install, unlocked, must finish in 5 s) -- against ``uvfeatures.LOCKS_CACHE``.
- prune/clean ``--force`` in ``uv cache prune|clean --help`` -- against PRUNE_FORCE / CLEAN_FORCE.
- pins: the refresh scenario (venvs A, B; alpha 1.0 into A through the shim; the wheel's mtime +5 s;
  alpha 1.0 into B with ``--refresh``, bare), then a bare ``uv cache prune`` (``--ci`` in a second
  world): A must work (RECORD files present, ``import alpha`` has a ``__file__``). The control does
  the same with the bare uv everywhere and must break A.
- dry run: the refresh scenario plus a third venv C (mtime +5 s again, ``--refresh``, bare), so
  B's archive is orphaned; the ids ``uv cache prune --dry-run --json`` (shim) predicts must be the
  archive folders the following ``uv cache prune`` through the shim removes.
- files-v0: where the binary knows the content-addressed-cache preview, whether
  ``UV_PREVIEW_FEATURES=content-addressed-cache uv pip install`` creates ``files-v0``.

Prints a markdown table (or ``--json``); exits 1 on any MISMATCH, pins not held or a control that
did not break. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from shim import uvfeatures  # noqa: E402
from shim.realuv import RealUv, build_of, version_tuple  # noqa: E402

DEFAULT_VERSIONS = "0.6.17 0.7.22 0.8.24 0.9.30 0.10.12 0.11.33 0.12.24 0.13.9".split()
ALPHA = "alpha-1.0-py3-none-any.whl"
LOCK_WAIT = 5.0
FIXED_ENV = {"UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1", "UV_LINK_MODE": "symlink", "NO_COLOR": "1"}
BACKEND = (
    "import os, shutil\n"
    "W = 'srcpkg-1.0-py3-none-any.whl'\n"
    "def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):\n"
    "    shutil.copy(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'prebuilt', W), wheel_directory)\n"
    "    return W\n"
)
PKG_INFO = "Metadata-Version: 2.1\nName: srcpkg\nVersion: 1.0\n"
PYPROJECT = (
    '[project]\nname = "srcpkg"\nversion = "1.0"\n'
    '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
)


def log(msg: str) -> None:
    print(f"uv_versions: {msg}", file=sys.stderr, flush=True)


class Ctx:
    """What every world shares: the shim's launchers, the interpreter, the package folder."""

    def __init__(self, root: Path, python: str) -> None:
        from conftest import _BROKEN_PROBE, make_wheel

        self.root, self.python, self.probe = root, python, _BROKEN_PROBE
        self.shim_home = root / "shimhome"
        self.shim_uv = root / "bin" / "uv"
        cmd, env = [sys.executable, "-m", "shim", "install", "--bin-dir", str(root / "bin")], dict(os.environ)
        subprocess.run(cmd, check=True, capture_output=True, cwd=REPO, env={**env, "UV_SHIM_HOME": str(self.shim_home)})
        self.packages = root / "packages"
        make_wheel(self.packages, "alpha", "1.0")
        prebuilt = make_wheel(root / "prebuilt", "srcpkg", "1.0")
        with tarfile.open(self.packages / "srcpkg-1.0.tar.gz", "w:gz") as tar:
            for name, text in {"pyproject.toml": PYPROJECT, "PKG-INFO": PKG_INFO, "backend.py": BACKEND}.items():
                src = root / "prebuilt" / name
                src.write_text(text)
                tar.add(src, f"srcpkg-1.0/{name}")
            tar.add(prebuilt, f"srcpkg-1.0/prebuilt/{prebuilt.name}")


class World:
    """A scratch cache and home, a copy of the packages, one real uv (and the shim before it)."""

    def __init__(self, ctx: Ctx, name: str, uv: Path) -> None:
        self.ctx, self.uv = ctx, uv
        self.root = ctx.root / name
        self.cache = self.root / "cache"
        self.packages = self.root / "packages"
        (self.root / "home").mkdir(parents=True)
        shutil.copytree(ctx.packages, self.packages)

    def env(self, **extra: str) -> dict[str, str]:
        drop = ("UV_", "VIRTUAL_ENV", "CONDA_PREFIX", "XDG_")
        env = {k: v for k, v in os.environ.items() if not k.startswith(drop) and k != "PYTHONPATH"}
        path = f"{self.uv.parent}{os.pathsep}{os.environ.get('PATH', '')}"
        env.update(FIXED_ENV, PATH=path, HOME=str(self.root / "home"), UV_CACHE_DIR=str(self.cache))
        return {**env, "UV_SHIM_REAL_UV": str(self.uv), "UV_SHIM_HOME": str(self.ctx.shim_home), **extra}

    def run(
        self, *args: str, shim: bool = False, check: bool = True, timeout: float = 300, **env: str
    ) -> subprocess.CompletedProcess[str]:
        exe = str(self.ctx.shim_uv if shim else self.uv)
        proc = subprocess.run(
            [exe, *args], cwd=self.root, env=self.env(**env), capture_output=True, text=True, timeout=timeout
        )
        if check and proc.returncode != 0:
            who = "shim uv" if shim else "uv"
            raise RuntimeError(f"{who} {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()[-400:]}")
        return proc

    def venv(self, name: str) -> Path:
        self.run("venv", "-q", "--python", self.ctx.python, str(self.root / name))
        return self.root / name

    def install(self, venv: Path, *specs: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        """``pip install -q --python VENV --no-index --find-links PACKAGES SPECS`` (``kw``: as ``run``)."""
        py, links = str(venv / "bin" / "python"), str(self.packages)
        return self.run("pip", "install", "-q", "--python", py, "--no-index", "--find-links", links, *specs, **kw)

    def bump(self) -> None:
        """The refresh: the wheel file looks newer, so ``--refresh`` unpacks it into a new archive."""
        wheel = self.packages / ALPHA
        st = wheel.stat()
        os.utime(wheel, (st.st_atime + 5, st.st_mtime + 5))

    def archives(self) -> set[str]:
        d = self.cache / "archive-v0"
        return set(os.listdir(d)) if d.is_dir() else set()

    def broken(self, venv: Path) -> list[str]:
        out = subprocess.run(
            [str(venv / "bin" / "python"), "-c", self.ctx.probe], capture_output=True, text=True, env=self.env()
        )
        if out.returncode != 0:
            return [f"probe failed: {out.stderr.strip()[-300:]}"]
        return [line for line in out.stdout.splitlines() if line.strip()]


def refresh_world(ctx: Ctx, name: str, uv: Path, through_shim: bool) -> tuple[World, Path]:
    """Venvs A and B; alpha 1.0 into A (shim or bare); wheel mtime +5 s; alpha into B, --refresh, bare."""
    w = World(ctx, name, uv)
    a, b = w.venv("a"), w.venv("b")
    w.install(a, "alpha==1.0", shim=through_shim)
    w.bump()
    w.install(b, "--refresh", "alpha==1.0")
    return w, a


def has_option(help_text: str, option: str) -> bool:
    return re.search(rf"^\s*(-\w, )?{re.escape(option)}\b", help_text, re.M) is not None


def probe_version(ctx: Ctx, version: str, uv: Path) -> dict[str, Any]:
    vt = version_tuple(version)
    row: dict[str, Any] = {"version": version, "errors": []}

    def step(name: str, fn: Any) -> None:
        log(f"{version}: {name}")
        try:
            fn()
        except Exception as e:  # one failing step must not hide the others
            row["errors"].append(f"{name}: {type(e).__name__}: {e}")
            log(f"{version}: {name} FAILED: {e}")

    def buckets_and_lock() -> None:
        build = build_of(RealUv(str(uv), "uv_versions"))
        row["shim_buckets"] = {k: build.buckets[k] for k in ("sdists", "wheels")}
        row["shim_all_buckets"] = build.all_buckets
        w = World(ctx, f"{version}/probe", uv)
        v = w.venv("v")
        w.cache.mkdir(exist_ok=True)
        blocked: Optional[bool] = False
        with open(w.cache / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                w.install(v, "alpha==1.0", timeout=LOCK_WAIT)
            except subprocess.TimeoutExpired:
                blocked = True
        if blocked:  # it must have been the lock: the same install unlocked finishes in time
            t0 = time.monotonic()
            w.install(v, "alpha==1.0")
            if time.monotonic() - t0 >= LOCK_WAIT:
                blocked = None
        row["locks_probe"] = blocked
        sdist = w.install(v, "srcpkg==1.0", check=False)
        row["sdist_install"] = "ok" if sdist.returncode == 0 else sdist.stderr.strip()[-300:]
        tops = sorted(os.listdir(w.cache))
        row["cache_buckets"] = {k: [t for t in tops if re.fullmatch(rf"{k}-v\d+", t)] for k in ("sdists", "wheels")}

    def helps() -> None:
        for cmd in ("prune", "clean"):
            text = subprocess.run([str(uv), "cache", cmd, "--help"], capture_output=True, text=True).stdout
            row[f"{cmd}_force_probe"] = has_option(text, "--force")

    def pins() -> None:
        for label, extra in (("prune", []), ("ci", ["--ci"])):
            for kind, through_shim in (("shim", True), ("control", False)):
                w, a = refresh_world(ctx, f"{version}/{kind}-{label}", uv, through_shim)
                w.run("cache", "prune", *extra)
                row[f"{kind}_{label}_broken"] = w.broken(a)

    def dry_run() -> None:
        w, a = refresh_world(ctx, f"{version}/dry-run", uv, True)
        c = w.venv("c")
        w.bump()
        w.install(c, "--refresh", "alpha==1.0")
        before = w.archives()
        doc = json.loads(w.run("cache", "prune", "--dry-run", "--json", shim=True).stdout)
        predicted = sorted(x["id"] for x in doc["remove"]["archives"])
        w.run("cache", "prune", shim=True)
        row["dry_run"] = {"predicted": predicted, "removed": sorted(before - w.archives()), "a_broken": w.broken(a)}

    def files_v0() -> None:
        row["files_v0"] = "n/a"
        if b"content-addressed-cache" not in uv.read_bytes():
            return
        w = World(ctx, f"{version}/files-v0", uv)
        v = w.venv("v")
        proc = w.install(v, "alpha==1.0", check=False, UV_PREVIEW_FEATURES="content-addressed-cache")
        row["files_v0"] = "yes" if (w.cache / "files-v0").is_dir() else "no"
        row["files_v0_install"] = "ok" if proc.returncode == 0 else proc.stderr.strip()[-300:]
        row["files_v0_in_shim_buckets"] = "files-v0" in row.get("shim_all_buckets", [])

    for name, fn in [("buckets, lock", buckets_and_lock), ("--help", helps), ("pins", pins), ("dry run", dry_run)]:
        step(name, fn)
    step("files-v0", files_v0)
    row["locks_table"] = vt >= uvfeatures.LOCKS_CACHE
    row["prune_force_table"] = vt >= uvfeatures.PRUNE_FORCE
    row["clean_force_table"] = vt >= uvfeatures.CLEAN_FORCE
    return row


def yn(value: Optional[bool]) -> str:
    return "?" if value is None else "yes" if value else "no"


def cells(row: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The table cells of one version and its problems (each MISMATCH, FAIL and error)."""
    problems: list[str] = list(row["errors"])
    out = [row["version"]]
    for kind in ("sdists", "wheels"):
        shim_name = row.get("shim_buckets", {}).get(kind, "?")
        seen = row.get("cache_buckets", {}).get(kind)
        if seen and seen != [shim_name]:
            out.append(f"MISMATCH: shim {shim_name}, cache {', '.join(seen)}")
            problems.append(f"{kind} bucket: shim reads {shim_name}, cache has {seen}")
        else:
            out.append(shim_name if seen else f"{shim_name} (cache: {'n/a' if seen == [] else 'not probed'})")
    for key, what in (("locks", "locks cache"), ("prune_force", "prune --force"), ("clean_force", "clean --force")):
        probe, table = row.get(f"{key}_probe"), row[f"{key}_table"]
        cell = f"{yn(probe)} / {yn(table)}"
        if probe is not None and probe != table:
            cell += " MISMATCH"
            problems.append(f"{what}: probe {yn(probe)}, uvfeatures {yn(table)}")
        out.append(cell)
    held, broke = [], []
    for label in ("prune", "ci"):
        shim_b, ctl_b = row.get(f"shim_{label}_broken"), row.get(f"control_{label}_broken")
        held.append("?" if shim_b is None else "yes" if not shim_b else "NO")
        broke.append("?" if ctl_b is None else "yes" if ctl_b else "no")
        if shim_b:
            problems.append(f"pins not honoured by bare `uv cache {label}`: {'; '.join(shim_b)}")
        if ctl_b == []:
            problems.append(f"control did not break on `{label}`: the pins result is meaningless")
    cell = f"{held[0]}, {held[1]} (control broke: {broke[0]}, {broke[1]})"
    out.append(cell + (" meaningless" if "no" in broke else ""))
    dr = row.get("dry_run")
    if dr is None:
        out.append("?")
    elif dr["predicted"] == dr["removed"]:
        out.append(f"yes ({len(dr['removed'])} archive{'s' * (len(dr['removed']) != 1)})")
    else:
        out.append(f"MISMATCH: predicted {len(dr['predicted'])}, removed {len(dr['removed'])}")
        problems.append(f"dry run predicted {dr['predicted']}, the prune removed {dr['removed']}")
    if dr is not None and dr["a_broken"]:
        problems.append(f"A broken after the prune through the shim: {'; '.join(dr['a_broken'])}")
    out.append(row.get("files_v0", "?"))
    return out, problems


HEADER = (
    "version|sdists bucket|wheels bucket|locks cache (probe / table)|prune --force (probe / table)|"
    "clean --force (probe / table)|pins hold: prune, --ci (control broke?)|dry-run = prune|files-v0 preview"
).split("|")


def ensure_uv(folder: Path, version: str) -> Path:
    uv = folder / version / "bin" / "uv"
    if not uv.exists():
        log(f"installing uv {version} into {folder / version}")
        pip = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        subprocess.run([*pip, "--target", str(folder / version), f"uv=={version}"], check=True)
    return uv


def default_python() -> str:
    pinned = "/root/.pyenv/versions/3.11.7/bin/python3.11"
    return pinned if os.access(pinned, os.X_OK) else getattr(sys, "_base_executable", None) or sys.executable


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--versions", nargs="+", default=DEFAULT_VERSIONS, help="uv versions (space or comma separated)")
    p.add_argument("--dir", type=Path, default=Path("~/.cache/uv-shim/uv-versions"), help="where binaries go")
    p.add_argument("--python", default=default_python(), help="the interpreter of every venv")
    p.add_argument("--jobs", type=int, default=2, help="versions checked in parallel")
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    p.add_argument("--keep", action="store_true", help="keep the scratch worlds (their path goes to stderr)")
    args = p.parse_args(argv)
    versions = [v for item in args.versions for v in item.split(",") if v]
    folder = args.dir.expanduser().resolve()
    started = time.monotonic()
    binaries = {v: ensure_uv(folder, v) for v in versions}
    root = Path(tempfile.mkdtemp(prefix="uv-versions."))
    os.environ["UV_SHIM_HOME"] = str(root / "shimhome")  # build_of's memo: this run's, not the user's
    try:
        ctx = Ctx(root, args.python)
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            rows = list(pool.map(lambda v: probe_version(ctx, v, binaries[v]), versions))
    finally:
        if args.keep:
            log(f"worlds kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for row in rows:
        out, row["problems"] = cells(row)
        lines.append("| " + " | ".join(out) + " |")
    wall = time.monotonic() - started
    if args.json:
        print(json.dumps({"python": args.python, "wall_seconds": round(wall, 1), "versions": rows}, indent=2))
    else:
        print("\n".join(lines))
        for row in rows:
            for problem in row["problems"]:
                print(f"- {row['version']}: {problem}")
    log(f"{len(versions)} versions in {wall:.0f} s")
    return 1 if any(row["problems"] for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
