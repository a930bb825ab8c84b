#!/usr/bin/env python3
"""How long a first `uv run` is exposed to a *bare* prune: the window between uv linking the
last file of the project's environment and the detached helper's pins being in place.

    .test-env/bin/python scripts/first_run_window.py --uv .test-env/uv/0.13.9/bin/uv [--rounds 10] [--dists 20]

Each round: a fresh cache and a fresh project depending on N tiny local wheels, then
`uv run python -c <wait>` through the shim (symlink mode). A poller (1 ms) records when the last
distribution's METADATA link appears in `.venv` (uv's install step is done) and when the last pin
appears in the cache (the helper is done); the window is the difference. For uv >= 0.8.19 a bare
prune cannot run inside that window at all (uv and the helper both hold uv's shared cache lock);
the figure matters for older uv and for `uv cache prune --force`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from conftest import make_wheel  # noqa: E402


def _count(pattern_root: Path, glob: str) -> int:
    return len(list(pattern_root.glob(glob))) if pattern_root.exists() else 0


def one_round(uv: str, launcher: Path, shim_home: Path, wheels: Path, n: int, work: Path) -> tuple[float, float]:
    cache, proj = work / "cache", work / "proj"
    proj.mkdir(parents=True)
    deps = ", ".join(f'"pkg{i:03d}"' for i in range(n))
    (proj / "pyproject.toml").write_text(
        f'[project]\nname = "proj"\nversion = "0.1"\nrequires-python = ">=3.9"\ndependencies = [{deps}]\n'
        f'[tool.uv]\nno-index = true\nfind-links = ["{wheels}"]\n'
    )
    env = {
        **os.environ,
        "UV_CACHE_DIR": str(cache),
        "UV_LINK_MODE": "symlink",
        "UV_SHIM_HOME": str(shim_home),
        "UV_SHIM_REAL_UV": uv,
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_PYTHON": sys.executable,
    }
    go = work / "go"
    code = f"import os,time\nwhile not os.path.exists({str(go)!r}): time.sleep(0.01)"
    proc = subprocess.Popen(
        [str(launcher), "run", "-q", "python", "-c", code], cwd=proj, env=env, stderr=subprocess.DEVNULL
    )
    site = proj / ".venv"
    installed = pinned = 0.0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not pinned:
        now = time.perf_counter()
        if not installed and _count(site, "lib/python*/site-packages/pkg*.dist-info/METADATA") >= n:
            installed = now
        if installed and _count(cache, "sdists-v*/uv-shim/*/pin_*") >= n:
            pinned = now
        time.sleep(0.001)
    go.write_text("")
    proc.wait(timeout=60)
    if not pinned:
        raise SystemExit("the helper did not pin within 120 s")
    return installed, pinned


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--uv", required=True, help="the real uv (absolute path)")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--dists", type=int, default=20)
    a = p.parse_args()
    uv = os.path.abspath(a.uv)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        wheels = t / "wheels"
        for i in range(a.dists):
            make_wheel(wheels, f"pkg{i:03d}", "1.0")
        shim_home = t / "shim"
        subprocess.run(
            [sys.executable, "-m", "shim", "install", "--bin-dir", str(shim_home / "bin")],
            check=True,
            capture_output=True,
            env={**os.environ, "UV_SHIM_HOME": str(shim_home)},
        )
        windows = []
        for r in range(a.rounds):
            installed, pinned = one_round(uv, shim_home / "bin" / "uv", shim_home, wheels, a.dists, t / f"r{r}")
            windows.append((pinned - installed) * 1000)
    version = subprocess.run([uv, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"{version}, {a.dists} distributions, {a.rounds} rounds, {os.cpu_count()} cores")
    print(
        f"install step done -> pins in place: median {statistics.median(windows):.1f} ms, "
        f"max {max(windows):.1f} ms (1 ms polling)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
