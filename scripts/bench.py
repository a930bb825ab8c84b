#!/usr/bin/env python3
"""Overhead of uv-shim against the bare uv, measured in the same run, same cache, same machine.

    python scripts/bench.py [--uv /path/to/uv] [--rounds 21]

Prints medians for the bare uv and through the shim, the difference and the target:
  passthrough      `uv --version`                                         target: +5 ms
  no-op install    `uv pip install pkg000` into a 100-distribution venv   target: +25 ms
  no-op run        `uv run python -c pass` in a 100-distribution project  target: +25 ms
  100-dist install symlink install of 100 wheels into a fresh venv        target: +10 %
  generations      the same install with a second uv generation seen on the cache  target: x1.05
  prune            10,000 archives, 1,000 roots (synthetic, scripts/gencache.py)  target: x1.5, 200 MiB
  auto gc check    the no-op install with an automatic policy set (not due) against none  target: +1 ms

Bare and shim runs alternate so machine noise hits both alike. All paths are absolute (no
pyenv shim or PATH lookup in the measured command). Uses tiny local wheels: no network.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO))

from conftest import make_wheel  # noqa: E402


def timed(cmd, env, cwd) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def pair(rounds, bare_cmd, shim_cmd, env, cwd, before=None):
    bare, shim = [], []
    for i in range(rounds):
        order = [(bare, bare_cmd), (shim, shim_cmd)] if i % 2 == 0 else [(shim, shim_cmd), (bare, bare_cmd)]
        for out, cmd in order:
            if before:
                before()
            out.append(timed(cmd, env, cwd))
    return statistics.median(bare), statistics.median(shim)


def report(name, bare, shim, target_ms=None, target_pct=None, check=True):
    diff = (shim - bare) * 1000
    pct = (shim / bare - 1) * 100
    if target_ms is not None:
        ok = diff <= target_ms
        target = f"+{target_ms} ms"
    else:
        ok = pct <= target_pct
        target = f"+{target_pct}%"
    verdict = ("ok" if ok else "MISSED") if check else "(whole command, for reference)"
    print(
        f"{name:<30} bare {bare * 1000:8.1f} ms   shim {shim * 1000:8.1f} ms   {diff:+7.1f} ms ({pct:+5.1f}%)   target {target:<7} {verdict}"
    )
    return ok or not check


def install_100(args, real_uv, shim_uv, env, tmp, python, files) -> bool:
    """A fresh venv per round (a new root each time), 100 wheels of ``files`` modules each,
    warm cache (archives unpacked, as on any machine that installed them once)."""
    wheels = tmp / f"wheels-{files}"
    names = [f"w{files}pkg{i:03d}" for i in range(100)]
    for n in names:
        make_wheel(wheels, n, "1.0", {f"{n}/m{j}.py": f"X = {j}\n" for j in range(files - 1)})
    find = ["--no-index", "--find-links", str(wheels)]
    counter = iter(range(10**6))
    current = {}

    def new_venv():
        current["venv"] = tmp / f"fresh-{files}-{next(counter)}"
        subprocess.run([real_uv, "venv", "-q", "--python", python, str(current["venv"])], check=True, env=env)

    new_venv()
    subprocess.run(
        [real_uv, "pip", "install", "-q", "--python", str(current["venv"] / "bin" / "python"), *find, *names],
        check=True,
        env=env,
    )
    bare, shim, book = [], [], []
    for i in range(max(5, args.rounds // 2)):
        for which in ("bare", "shim") if i % 2 == 0 else ("shim", "bare"):
            new_venv()
            exe = real_uv if which == "bare" else shim_uv
            cmd = [exe, "pip", "install", "-v", "--python", str(current["venv"] / "bin" / "python"), *find, *names]
            t0 = time.perf_counter()
            out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
            (bare if which == "bare" else shim).append(time.perf_counter() - t0)
            if which == "shim":
                line = [ln for ln in out.stderr.splitlines() if ln.startswith("uv-shim: bookkeeping took ")]
                book.append(float(line[0].split()[3].rstrip("ms")) / 1000)
    b, s = statistics.median(bare), statistics.median(shim)
    ok = report(f"100-dist install ({files} file{'s' if files > 1 else ''})", b, s, target_pct=10, check=False)
    k = statistics.median(book)
    print(
        f"{'  of which bookkeeping':<30} {k * 1000:8.1f} ms ({k / b * 100:+5.1f}% of the bare install)   target +10%    {'ok' if k / b <= 0.10 else 'MISSED'}"
    )
    return ok and k / b <= 0.10


def generations_bench(args, real_uv, shim_uv, env, tmp, python) -> bool:
    """Bookkeeping cost of a second uv generation seen on the cache (issue 14): the same fresh
    100-distribution symlink install through the shim into a cache that only the running uv has
    used, and into one where another generation's record area exists (so every root is mirrored
    there). Both caches warm; runs alternate."""
    wheels = tmp / "wheels"
    names = [f"pkg{i:03d}" for i in range(100)]
    find = ["--no-index", "--find-links", str(wheels)]
    caches = {"one": tmp / "cache-one", "two": tmp / "cache-two"}
    counter = iter(range(10**6))

    def install(which: str) -> float:
        venv = tmp / f"gen-{which}-{next(counter)}"
        e = {**env, "UV_CACHE_DIR": str(caches[which])}
        subprocess.run([real_uv, "venv", "-q", "--python", python, str(venv)], check=True, env=e)
        t0 = time.perf_counter()
        subprocess.run(
            [shim_uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), *find, *names],
            check=True,
            env=e,
        )
        return time.perf_counter() - t0

    install("one")
    install("two")
    from shim import realuv  # the other generation: any sdists bucket name but the running uv's

    current = realuv.build_of(realuv.RealUv(real_uv, "bench")).buckets["sdists"]
    other = "sdists-v9" if current != "sdists-v9" else "sdists-v11"
    (caches["two"] / other / "uv-shim").mkdir(parents=True)
    install("two")  # restores the copies there: from now on, every install mirrors
    runs = {"one": [], "two": []}
    for i in range(max(5, args.rounds // 2)):
        for which in ("one", "two") if i % 2 == 0 else ("two", "one"):
            runs[which].append(install(which))
    one, two = statistics.median(runs["one"]), statistics.median(runs["two"])
    good = two / one <= 1.05
    print(
        f"{'two uv generations, 100 dists':<30} one {one * 1000:8.1f} ms   two {two * 1000:8.1f} ms   "
        f"x{two / one:.3f}   target x1.05 {'ok' if good else 'MISSED'}"
    )
    return good


def autogc_bench(args, shim_uv, env, tmp, noop) -> bool:
    """The automatic prune's check on the hot path: the same intercepted no-op with a policy set
    (and not due) against the policy off; and the check itself, in process."""
    from shim import autogc

    on = {**env, "UV_SHIM_AUTO_MAX_SIZE": "1TiB", "UV_SHIM_AUTO_EVERY": "1000d"}
    subprocess.run([shim_uv, *noop], env=on, check=True, capture_output=True)  # the first run sets the stamp
    time.sleep(1)
    off_t, on_t = [], []
    for i in range(args.rounds):
        order = [(off_t, env), (on_t, on)] if i % 2 == 0 else [(on_t, on), (off_t, env)]
        for out, e in order:
            out.append(timed([shim_uv, *noop], e, tmp))
    ok = report("auto gc check", statistics.median(off_t), statistics.median(on_t), target_ms=1)
    saved = dict(os.environ)
    os.environ.update(on)
    try:
        n = 20000
        t0 = time.perf_counter()
        for _ in range(n):
            autogc.maybe_start(env["UV_CACHE_DIR"], None, "")  # type: ignore[arg-type]  # not due: never spawns
        per_call = (time.perf_counter() - t0) / n * 1e6
    finally:
        os.environ.clear()
        os.environ.update(saved)
    print(f"  the check in process: {per_call:.1f} us per call (one stat of the stamp)")
    return ok


def run_rss(cmd, env):
    """(seconds, peak RSS in MiB of the process and what it waited for)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{cmd} failed")
    return elapsed, usage.ru_maxrss / 1024


def prune_bench(args, real_uv, shim_uv, env, tmp) -> bool:
    """`uv cache prune` on a synthetic cache of 10,000 archives and 1,000 recorded environments
    (10% of them deleted since): bare uv on one copy, the shim on an identical copy."""
    from gencache import generate

    ok = True
    caches = {}
    for which in ("bare", "shim"):
        info = generate(tmp / f"gen-{which}", real_uv, args.archives, args.envs, seed=7)
        caches[which] = str(info["cache"])
    for label, rounds in (("first prune", 1), ("later prunes", max(3, args.rounds // 4))):
        runs = {"bare": [], "shim": []}
        for i in range(rounds):
            for which in ("bare", "shim") if i % 2 == 0 else ("shim", "bare"):
                exe = real_uv if which == "bare" else shim_uv
                runs[which].append(run_rss([exe, "cache", "prune"], {**env, "UV_CACHE_DIR": caches[which]}))
        b, brss = statistics.median(t for t, _ in runs["bare"]), max(r for _, r in runs["bare"])
        s, srss = statistics.median(t for t, _ in runs["shim"]), max(r for _, r in runs["shim"])
        ratio = s / b
        good = ratio <= 1.5 and srss <= 200
        ok &= good
        print(
            f"{'prune ' + label:<30} bare {b * 1000:8.1f} ms   shim {s * 1000:8.1f} ms   x{ratio:.2f}, peak {srss:.0f} MiB"
            f" (bare {brss:.0f} MiB)   target x1.5, 200 MiB {'ok' if good else 'MISSED'}"
        )
    # --max-size: the same cache, a budget of half its size, against a plain prune through the shim
    budget = str(
        int(sum(f.stat().st_size for f in Path(caches["shim"]).rglob("*") if f.is_file() and not f.is_symlink()) / 2)
    )
    plain, sized, dry = [], [], []
    for i in range(max(3, args.rounds // 4)):
        info = generate(tmp / f"gen-size-{i}", real_uv, args.archives, args.envs, seed=7)
        env_i = {**env, "UV_CACHE_DIR": str(info["cache"])}
        run_rss([shim_uv, "cache", "prune"], env_i)  # settle: dead roots dropped, memos written
        plain.append(run_rss([shim_uv, "cache", "prune"], env_i))
        dry.append(run_rss([shim_uv, "cache", "prune", "--max-size", budget, "--dry-run"], env_i))
        sized.append(run_rss([shim_uv, "cache", "prune", "--max-size", budget], env_i))
        shutil.rmtree(tmp / f"gen-size-{i}", ignore_errors=True)
    p, s, d = (statistics.median(t for t, _ in runs) for runs in (plain, sized, dry))
    srss = max(r for _, r in sized)
    good = s / p <= 2.0
    ok &= good
    print(
        f"{'prune --max-size (half)':<30} plain {p * 1000:7.1f} ms   sized {s * 1000:8.1f} ms   x{s / p:.2f} of a plain prune through the shim, peak {srss:.0f} MiB   target x2 {'ok' if good else 'MISSED'}"
    )
    print(
        f"{'  deciding only (--dry-run)':<30} {d * 1000:8.1f} ms (x{d / p:.2f}); the rest is uv deleting half the archives"
    )
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--uv",
        default=shutil.which("uv", path=os.environ.get("UV_SHIM_BENCH_PATH")),
        help="the real uv (absolute path)",
    )
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--files", type=int, default=40, help="modules per wheel in the second install benchmark")
    ap.add_argument("--archives", type=int, default=10000, help="archives in the synthetic prune cache")
    ap.add_argument("--envs", type=int, default=1000, help="recorded environments in the synthetic prune cache")
    ap.add_argument("--only", choices=["overhead", "prune", "generations", "autogc"], help="run one part only")
    args = ap.parse_args()
    if not args.uv:
        ap.error("no real uv found: pass --uv /path/to/uv")
    real_uv = os.path.realpath(args.uv)
    tmp = Path(tempfile.mkdtemp(prefix="uv-shim-bench-"))
    try:
        home = tmp / "shim"
        env = {
            "PATH": f"{Path(real_uv).parent}:/usr/bin:/bin",
            "HOME": str(tmp / "home"),
            "UV_CACHE_DIR": str(tmp / "cache"),
            "UV_SHIM_HOME": str(home),
            "UV_LINK_MODE": "symlink",
            "UV_PYTHON_DOWNLOADS": "never",
            "UV_NO_PROGRESS": "1",
        }
        subprocess.run(
            [sys.executable, "-m", "shim", "install", "--bin-dir", str(home / "bin")],
            check=True,
            env={**os.environ, **env},
            capture_output=True,
            cwd=REPO,
        )
        shim_uv = str(home / "bin" / "uv")
        env["PATH"] = f"{home / 'bin'}:{env['PATH']}"
        wheels = tmp / "wheels"
        names = [f"pkg{i:03d}" for i in range(100)]
        for n in names:
            make_wheel(wheels, n, "1.0")
        python = getattr(sys, "_base_executable", sys.executable)
        version = subprocess.run([real_uv, "--version"], capture_output=True, text=True).stdout.strip()
        print(
            f"uv-shim benchmark: {version} at {real_uv}; {os.cpu_count()} cpus; python {sys.version.split()[0]}; {args.rounds} rounds, medians"
        )

        ok = True
        if args.only == "prune":
            return 0 if prune_bench(args, real_uv, shim_uv, env, tmp) else 1
        if args.only == "generations":
            return 0 if generations_bench(args, real_uv, shim_uv, env, tmp, python) else 1
        if args.only != "autogc":
            bare, shim = pair(args.rounds, [real_uv, "--version"], [shim_uv, "--version"], env, tmp)
            ok &= report("passthrough", bare, shim, target_ms=5)

        venv = tmp / "venv100"
        subprocess.run([real_uv, "venv", "-q", "--python", python, str(venv)], check=True, env=env)
        find = ["--no-index", "--find-links", str(wheels)]
        subprocess.run(
            [shim_uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), *find, *names],
            check=True,
            env=env,
        )
        noop = ["pip", "install", "-q", "--python", str(venv / "bin" / "python"), *find, "pkg000"]
        if args.only == "autogc":
            return 0 if autogc_bench(args, shim_uv, env, tmp, noop) else 1
        bare, shim = pair(args.rounds, [real_uv, *noop], [shim_uv, *noop], env, tmp)
        ok &= report("no-op install", bare, shim, target_ms=25)
        ok &= autogc_bench(args, shim_uv, env, tmp, noop)

        proj = tmp / "proj"
        proj.mkdir()
        deps = ", ".join(f'"{n}"' for n in names)
        (proj / "pyproject.toml").write_text(
            f'[project]\nname = "proj"\nversion = "0"\nrequires-python = ">=3.9"\ndependencies = [{deps}]\n'
            f'[tool.uv]\nno-index = true\nfind-links = ["{wheels}"]\n'
        )
        subprocess.run([shim_uv, "sync", "-q", "--python", python], check=True, env=env, cwd=proj)
        run = ["run", "-q", "python", "-c", "pass"]
        bare, shim = pair(args.rounds, [real_uv, *run], [shim_uv, *run], env, proj)
        ok &= report("no-op run", bare, shim, target_ms=25)

        for files in (1, args.files):
            ok &= install_100(args, real_uv, shim_uv, env, tmp, python, files)
        ok &= generations_bench(args, real_uv, shim_uv, env, tmp, python)
        if args.only != "overhead":
            ok &= prune_bench(args, real_uv, shim_uv, env, tmp)
        return 0 if ok else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
