#!/usr/bin/env python3
"""uv-prune, uv-cache-warden and uv-shim on the same cache: which environments break, what is freed.

    python scripts/compare_tools.py --uv /path/to/uv

The mixed scenario of issue 4, built with tiny local wheels and the real uv: two live symlink
venvs (one orphaned by a rebuilt wheel installed with --refresh), a live hardlink venv, a deleted
hardlink venv, a live copy venv and a deleted symlink venv. Each tool gets its own copy (built
with the bare uv for the other tools, through uv-shim for uv-shim) and is asked to reclaim what
nothing uses: `uv-prune` (link counts), `uvcw gc --max-size` with the budget uv-shim ends at
(LRU through uv), `uv cache prune --unused` through uv-shim. "freed" is measured on disk: bytes of
distinct inodes under the cache and the live environments, before minus after.

The tools come from the registry (uv-prune ships only musllinux/macOS/Windows wheels: its static
musl binary is taken from the musllinux wheel).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from conftest import make_wheel  # noqa: E402

from shim.report import human_size  # noqa: E402

LIVE = {
    "sym_a": ("alpha", "alpha-1.0"),
    "sym_b": ("alpha", "alpha-1.0"),
    "hard": ("beta", "beta-1.0"),
    "copy": ("alpha", "alpha-2.0"),
}


def run(cmd, env, check=True, **kw):
    out = subprocess.run([str(c) for c in cmd], env=env, capture_output=True, text=True, **kw)
    if check and out.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{out.stdout}\n{out.stderr}")
    return out


def disk_bytes(*roots: Path) -> int:
    seen, total = set(), 0
    for root in roots:
        for dirpath, _dirs, files in os.walk(root):
            for f in files:
                try:
                    st = os.lstat(os.path.join(dirpath, f))
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_size
    return total


def scenario(root: Path, uv: str, env: dict, python: str) -> None:
    wheels = root / "wheels"
    for name, version in (("alpha", "1.0"), ("alpha", "2.0"), ("beta", "1.0"), ("gamma", "1.0")):
        make_wheel(wheels, name, version, {f"{name}/data.py": "X = 1\n" * 2000})
    venvs = {n: root / n for n in ("sym_a", "sym_b", "hard", "hard_gone", "copy", "sym_gone")}
    for v in venvs.values():
        run([uv, "venv", "-q", "--python", python, v], env)

    def install(v, *specs, mode="symlink", extra=()):
        run(
            [
                uv,
                "pip",
                "install",
                "-q",
                "--python",
                v / "bin" / "python",
                "--no-index",
                "--find-links",
                wheels,
                *extra,
                *specs,
            ],
            {**env, "UV_LINK_MODE": mode},
        )

    install(venvs["sym_a"], "alpha==1.0")
    whl = wheels / "alpha-1.0-py3-none-any.whl"
    st = whl.stat()
    os.utime(whl, ns=(st.st_atime_ns, st.st_mtime_ns + 5 * 10**9))  # rebuilt: a new archive, sym_a's is orphaned
    install(venvs["sym_b"], "alpha==1.0", extra=["--refresh"])
    install(venvs["hard"], "beta==1.0", mode="hardlink")
    install(venvs["hard_gone"], "gamma==1.0", mode="hardlink")
    install(venvs["copy"], "alpha==2.0", mode="copy")
    install(venvs["sym_gone"], "gamma==1.0", "alpha==2.0")
    shutil.rmtree(venvs["hard_gone"])
    shutil.rmtree(venvs["sym_gone"])


def broken(root: Path, env: dict) -> list:
    out = []
    for name, (module, value) in LIVE.items():
        r = run([root / name / "bin" / "python", "-c", f"import {module}; print({module}.VALUE)"], env, check=False)
        if r.returncode != 0 or r.stdout.strip() != value:
            out.append(name)
    return out


def tools(tmp: Path, uv: str, env: dict) -> dict:
    venv = tmp / "tools"
    run([uv, "venv", "-q", "--python", sys.executable, venv], env)
    run([uv, "pip", "install", "-q", "--python", venv / "bin" / "python", "uv-cache-warden"], env)
    dl = tmp / "uv-prune-dl"
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--platform",
            "musllinux_1_2_x86_64",
            "--only-binary=:all:",
            "-d",
            dl,
            "uv-prune",
        ],
        env,
    )
    import zipfile

    (whl,) = dl.glob("*.whl")
    with zipfile.ZipFile(whl) as z:
        z.extract("uv_prune/_bin/uv-prune", dl)
    binary = dl / "uv_prune" / "_bin" / "uv-prune"
    binary.chmod(0o755)
    return {"uv-prune": binary, "uvcw": venv / "bin" / "uvcw"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--uv", default=shutil.which("uv"), help="the real uv (absolute path)")
    args = ap.parse_args()
    uv = os.path.realpath(args.uv)
    python = getattr(sys, "_base_executable", sys.executable)
    tmp = Path(tempfile.mkdtemp(prefix="uv-shim-compare-"))
    try:
        home = tmp / "shim"
        base = {
            "PATH": f"{Path(uv).parent}:/usr/bin:/bin",
            "HOME": str(tmp / "home"),
            "UV_PYTHON_DOWNLOADS": "never",
            "UV_SHIM_HOME": str(home),
        }
        run([sys.executable, "-m", "shim", "install", "--bin-dir", home / "bin"], {**os.environ, **base}, cwd=REPO)
        shim_uv = str(home / "bin" / "uv")
        bins = tools(tmp, uv, {**os.environ, **base})
        print(
            f"uv {run([uv, '--version'], base).stdout.split()[1]}; the mixed scenario of issue 4; live: {', '.join(LIVE)}"
        )
        results = []
        # uv-shim first: its final cache size is the budget uv-cache-warden gets
        order = [
            ("uv-shim", shim_uv, lambda c, e: [shim_uv, "cache", "prune", "--unused"]),
            ("uv-prune", uv, lambda c, e: [bins["uv-prune"], "--cache-dir", c, "--no-timing"]),
            (
                "uv-cache-warden",
                uv,
                lambda c, e: [
                    bins["uvcw"],
                    "gc",
                    "--cache-dir",
                    c,
                    "--uv",
                    uv,
                    "--max-size",
                    str(e["budget"]),
                    "--no-color",
                ],
            ),
        ]
        budget = 0
        for name, installer, command in order:
            root = tmp / name
            root.mkdir()
            env = {**os.environ, **base, "UV_CACHE_DIR": str(root / "cache")}
            scenario(root, installer, env, python)
            live = [root / n for n in LIVE]
            before, cache_before = disk_bytes(root / "cache", *live), disk_bytes(root / "cache")
            out = run(command(root / "cache", {"budget": budget}), env, check=False)
            after, cache_after = disk_bytes(root / "cache", *live), disk_bytes(root / "cache")
            if name == "uv-shim":
                budget = cache_after
            bad = broken(root, env)
            results.append((name, bad, before - after, cache_before, cache_after, out.returncode))
        print(
            f"{'tool':<16} {'broken environments':<28} {'freed on disk':>14} {'cache before':>13} {'cache after':>12}  exit"
        )
        for name, bad, freed, cb, ca, code in results:
            print(
                f"{name:<16} {(', '.join(bad) or 'none'):<28} {human_size(freed):>14} {human_size(cb):>13} {human_size(ca):>12}  {code}"
            )
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
