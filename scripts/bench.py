#!/usr/bin/env python3
"""What uv-shim adds to uv, measured against the bare uv in the same run, same cache, same machine.

    python scripts/bench.py [--uv /path/to/uv] [--rounds 15] [--only PART]

Parts (``--only``), each printing its rows as it goes, then one table at the end with the
machine named; exit 1 if a target is missed:
  hot          passthrough, the no-op `uv pip install` / `uv sync` / `uv run` in a 100-distribution
               environment the shim has seen, `uvx <cached tool>`, `uv run --with <cached pkg>`
  install      a fresh install, warm cache, of 10 and 100 wheels in every link mode
  autogc       the automatic prune's check on the hot path (policy set, not due, against none)
  generations  the bookkeeping with a second uv generation seen on the cache
  prune        `uv cache prune` on a synthetic cache of 10,000 archives / 1,000 roots: first and
               later prunes, `--max-size` (half the cache) against a plain prune, peak memory
  growth       the shim's added prune time at 1k/10k/30k archives and 100/1,000/5,000 roots, peak
               memory at 30k archives
  verify       the cost of verifying one unchanged root (10,000 archives / 1,000 roots, settled)

Bare and shim runs alternate so machine noise hits both alike; figures are medians. Where runs
are paired (the hot path, fresh installs), "added" is the median of each pair's difference, with
half its interquartile spread after ``±``: a verdict is only as good as that spread. All paths are
absolute (no pyenv shim or PATH lookup in the measured command). Tiny local wheels: no network.
"""

from __future__ import annotations

import argparse
import os
import platform
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

LINK_MODES = ("symlink", "hardlink", "copy", "clone")
ROWS: list[tuple[str, str, str, str, str, bool]] = []  # case, bare, shim, added, target, met


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def row(case: str, bare: str, shim: str, added: str, target: str, met: bool) -> bool:
    ROWS.append((case, bare, shim, added, target, met))
    print(f"{case:<52} {bare:>11} {shim:>11} {added:>24}   {target:<12} {'ok' if met else 'MISSED'}", flush=True)
    return met


def paired(bare: list[float], shim: list[float], relative: bool = False) -> tuple[float, float]:
    """The median of the rounds' differences (shim minus bare; with ``relative``, shim over bare
    minus 1) and half their interquartile spread. A round runs the two back to back, so a slow
    moment of the machine hits both and drops out of the difference, where it moves a
    difference of two medians taken over the whole run."""
    diffs = [s / b - 1 if relative else s - b for b, s in zip(bare, shim)]
    if len(diffs) < 2:
        return diffs[0], 0.0
    q1, _, q3 = statistics.quantiles(diffs, n=4)
    return statistics.median(diffs), (q3 - q1) / 2


def delta_row(case: str, bare: list[float], shim: list[float], target_ms: float) -> bool:
    diff, spread = (x * 1000 for x in paired(bare, shim))
    med = (ms(statistics.median(t)) for t in (bare, shim))
    return row(case, *med, f"{diff:+.1f} ms ±{spread:.1f}", f"+{target_ms:g} ms", diff <= target_ms)


def percent_row(case: str, bare: list[float], shim: list[float], target_pct: float) -> bool:
    diff, _ = paired(bare, shim)
    pct, pct_spread = (x * 100 for x in paired(bare, shim, relative=True))
    added = f"{diff * 1000:+.1f} ms ({pct:+.1f}% ±{pct_spread:.1f})"
    med = (ms(statistics.median(t)) for t in (bare, shim))
    return row(case, *med, added, f"+{target_pct:g}%", pct <= target_pct)


def ratio_row(case: str, bare: float, shim: float, target: float, extra: str = "") -> bool:
    r = shim / bare
    return row(case, ms(bare), ms(shim), f"x{r:.2f}{extra}", f"x{target:g}", r <= target)


def timed(cmd, env, cwd) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def helpers_done(cache: Path, timeout: float = 120.0) -> float:
    """Wait until no uv-shim background helper holds the cache lock; return when (perf_counter)."""
    from shim.followup import helpers_hold

    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if not helpers_hold(str(cache)):
            break
        time.sleep(0.002)
    return time.perf_counter()


def pair(rounds, bare_cmd, shim_cmd, env, cwd, before=None):
    """``rounds`` timings of each, run in pairs, alternating which goes first."""
    bare, shim = [], []
    for i in range(rounds):
        order = [(bare, bare_cmd), (shim, shim_cmd)] if i % 2 == 0 else [(shim, shim_cmd), (bare, bare_cmd)]
        for out, cmd in order:
            if before:
                before()
            out.append(timed(cmd, env, cwd))
    return bare, shim


class Bench:
    def __init__(self, args, real_uv: str, shim_uv: str, env: dict, tmp: Path, python: str) -> None:
        self.args, self.real_uv, self.shim_uv, self.env, self.tmp, self.python = (
            args,
            real_uv,
            shim_uv,
            env,
            tmp,
            python,
        )
        self.wheels = tmp / "wheels"
        self.names = [f"pkg{i:03d}" for i in range(100)]
        for n in self.names:
            make_wheel(self.wheels, n, "1.0")
        make_wheel(  # a tool with a command, for uvx
            self.wheels,
            "benchtool",
            "1.0",
            {
                "benchtool/cli.py": "def main():\n    pass\n",
                "benchtool-1.0.dist-info/entry_points.txt": "[console_scripts]\nbenchtool = benchtool.cli:main\n",
            },
        )
        self.find = ["--no-index", "--find-links", str(self.wheels)]
        self.counter = iter(range(10**6))

    def venv(self, name: str, env=None) -> Path:
        path = self.tmp / f"{name}-{next(self.counter)}"
        subprocess.run(
            [self.real_uv, "venv", "-q", "--python", self.python, str(path)], check=True, env=env or self.env
        )
        return path

    # -- the hot path ------------------------------------------------------------------------
    def hot(self) -> bool:
        a, env, tmp = self.args, self.env, self.tmp
        ok = True
        bare, shim = pair(a.rounds, [self.real_uv, "--version"], [self.shim_uv, "--version"], env, tmp)
        ok &= delta_row("passthrough `uv --version`", bare, shim, 2)

        venv = self.venv("venv100")
        py = str(venv / "bin" / "python")
        subprocess.run(
            [self.shim_uv, "pip", "install", "-q", "--python", py, *self.find, *self.names], check=True, env=env
        )
        self.noop = ["pip", "install", "-q", "--python", py, *self.find, "pkg000"]
        settle = time.time()
        subprocess.run([self.shim_uv, *self.noop], check=True, env=env)  # the shim has seen it since
        time.sleep(max(0.0, 2.5 - (time.time() - settle)))  # past the racy window of a fresh stamp
        subprocess.run([self.shim_uv, *self.noop], check=True, env=env)
        bare, shim = pair(a.rounds, [self.real_uv, *self.noop], [self.shim_uv, *self.noop], env, tmp)
        ok &= delta_row("no-op `uv pip install`, 100-dist venv", bare, shim, 10)

        proj = tmp / "proj"
        proj.mkdir()
        deps = ", ".join(f'"{n}"' for n in self.names)
        (proj / "pyproject.toml").write_text(
            f'[project]\nname = "proj"\nversion = "0"\nrequires-python = ">=3.9"\ndependencies = [{deps}]\n'
            f'[tool.uv]\nno-index = true\nfind-links = ["{self.wheels}"]\n'
        )
        subprocess.run([self.shim_uv, "sync", "-q", "--python", self.python], check=True, env=env, cwd=proj)
        time.sleep(2.5)
        subprocess.run([self.shim_uv, "sync", "-q"], check=True, env=env, cwd=proj)
        bare, shim = pair(a.rounds, [self.real_uv, "sync", "-q"], [self.shim_uv, "sync", "-q"], env, proj)
        ok &= delta_row("no-op `uv sync`, 100-dist project", bare, shim, 10)
        run = ["run", "-q", "python", "-c", "pass"]
        bare, shim = pair(a.rounds, [self.real_uv, *run], [self.shim_uv, *run], env, proj)
        ok &= delta_row("no-op `uv run python -c pass`, same project", bare, shim, 10)
        with_ = ["run", "-q", "--with", "pkg001", "python", "-c", "pass"]
        subprocess.run([self.shim_uv, *with_], check=True, env=env, cwd=proj)  # cached from now on
        bare, shim = pair(a.rounds, [self.real_uv, *with_], [self.shim_uv, *with_], env, proj)
        ok &= delta_row("`uv run --with <cached pkg> python -c pass`", bare, shim, 15)
        uvx_real = str(Path(self.real_uv).with_name("uvx"))
        uvx_shim = str(Path(self.shim_uv).with_name("uvx"))
        tool = ["-q", *self.find, "benchtool"]
        subprocess.run([uvx_shim, *tool], check=True, env=env, cwd=tmp)
        bare, shim = pair(a.rounds, [uvx_real, *tool], [uvx_shim, *tool], env, tmp)
        ok &= delta_row("`uvx <cached tool>`", bare, shim, 15)
        return ok

    # -- a fresh install ---------------------------------------------------------------------
    def install(self) -> bool:
        ok = True
        for mode in LINK_MODES:
            env = {**self.env, "UV_LINK_MODE": mode}
            for n in (10, 100):
                names = self.names[:n]
                bare, shim, helper = [], [], []
                for i in range(max(5, self.args.rounds)):
                    for which in ("bare", "shim") if i % 2 == 0 else ("shim", "bare"):
                        venv = self.venv(f"fresh-{mode}-{n}", env)
                        exe = self.real_uv if which == "bare" else self.shim_uv
                        cmd = [
                            exe,
                            "pip",
                            "install",
                            "-q",
                            "--python",
                            str(venv / "bin" / "python"),
                            *self.find,
                            *names,
                        ]
                        t0 = time.perf_counter()
                        subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
                        (bare if which == "bare" else shim).append(time.perf_counter() - t0)
                        if which == "shim":  # the background helper's pins, after the command returned
                            helper.append(helpers_done(Path(self.env["UV_CACHE_DIR"])) - t0)
                        shutil.rmtree(venv)
                case = f"fresh {mode} install, {n} wheels (helper done {ms(statistics.median(helper))} after start)"
                if n == 10:
                    ok &= delta_row(case, bare, shim, 15)
                else:
                    ok &= percent_row(case, bare, shim, 5)
        return ok

    # -- two uv generations ------------------------------------------------------------------
    def generations(self) -> bool:
        """The same fresh 100-distribution install through the shim into a cache that only the
        running uv has used, and into one where another generation's record area exists (so
        every root is mirrored there). Both caches warm; runs alternate."""
        caches = {"one": self.tmp / "cache-one", "two": self.tmp / "cache-two"}

        def install(which: str) -> float:
            e = {**self.env, "UV_CACHE_DIR": str(caches[which])}
            venv = self.venv(f"gen-{which}", e)
            t0 = time.perf_counter()
            subprocess.run(
                [
                    self.shim_uv,
                    "pip",
                    "install",
                    "-q",
                    "--python",
                    str(venv / "bin" / "python"),
                    *self.find,
                    *self.names,
                ],
                check=True,
                env=e,
            )
            return time.perf_counter() - t0

        install("one")
        install("two")
        from shim import realuv  # the other generation: any sdists bucket name but the running uv's

        current = realuv.build_of(realuv.RealUv(self.real_uv, "bench")).buckets["sdists"]
        other = "sdists-v9" if current != "sdists-v9" else "sdists-v11"
        (caches["two"] / other / "uv-shim").mkdir(parents=True)
        install("two")  # restores the copies there: from now on, every install mirrors
        runs: dict[str, list[float]] = {"one": [], "two": []}
        for i in range(max(5, self.args.rounds // 2)):
            for which in ("one", "two") if i % 2 == 0 else ("two", "one"):
                runs[which].append(install(which))
        one, two = statistics.median(runs["one"]), statistics.median(runs["two"])
        return ratio_row("100-wheel install, a 2nd uv generation seen (vs one)", one, two, 1.05)

    # -- the automatic prune's check ---------------------------------------------------------
    def autogc(self) -> bool:
        from shim import autogc

        if not hasattr(self, "noop"):
            venv = self.venv("venv-gc")
            py = str(venv / "bin" / "python")
            subprocess.run(
                [self.shim_uv, "pip", "install", "-q", "--python", py, *self.find, "pkg000"], check=True, env=self.env
            )
            self.noop = ["pip", "install", "-q", "--python", py, *self.find, "pkg000"]
        on = {**self.env, "UV_SHIM_AUTO_MAX_SIZE": "1TiB", "UV_SHIM_AUTO_EVERY": "1000d"}
        subprocess.run([self.shim_uv, *self.noop], env=on, check=True, capture_output=True)  # sets the stamp
        time.sleep(1)
        off_t, on_t = [], []
        for i in range(self.args.rounds):
            order = [(off_t, self.env), (on_t, on)] if i % 2 == 0 else [(on_t, on), (off_t, self.env)]
            for out, e in order:
                out.append(timed([self.shim_uv, *self.noop], e, self.tmp))
        saved = dict(os.environ)
        os.environ.update(on)
        try:
            n = 20000
            t0 = time.perf_counter()
            for _ in range(n):
                autogc.maybe_start(self.env["UV_CACHE_DIR"], None, "")  # type: ignore[arg-type]  # not due
            per_call = (time.perf_counter() - t0) / n * 1e6
        finally:
            os.environ.clear()
            os.environ.update(saved)
        off, on_ = statistics.median(off_t), statistics.median(on_t)
        diff = (on_ - off) * 1000
        return row(
            f"auto-prune check, policy set vs off ({per_call:.0f} us in process)",
            ms(off),
            ms(on_),
            f"{diff:+.1f} ms",
            "+1 ms",
            diff <= 1,
        )

    # -- prunes ------------------------------------------------------------------------------
    def _caches(self, archives: int, envs: int, tag: str) -> dict[str, str]:
        from gencache import generate

        return {
            which: str(generate(self.tmp / f"gen-{tag}-{which}", self.real_uv, archives, envs, seed=7)["cache"])
            for which in ("bare", "shim")
        }

    def _prunes(self, caches: dict[str, str], rounds: int) -> dict[str, list[tuple[float, float]]]:
        runs: dict[str, list[tuple[float, float]]] = {"bare": [], "shim": []}
        for i in range(rounds):
            for which in ("bare", "shim") if i % 2 == 0 else ("shim", "bare"):
                exe = self.real_uv if which == "bare" else self.shim_uv
                runs[which].append(run_rss([exe, "cache", "prune"], {**self.env, "UV_CACHE_DIR": caches[which]}))
        return runs

    def prune(self) -> bool:
        a = self.args
        ok = True
        caches = self._caches(a.archives, a.envs, "main")
        label = f"{a.archives // 1000}k archives, {a.envs} roots"
        for what, rounds in (("first prune", 1), ("later prunes", max(3, a.rounds // 3))):
            runs = self._prunes(caches, rounds)
            b, s = (statistics.median(t for t, _ in runs[w]) for w in ("bare", "shim"))
            peak = max(r for _, r in runs["shim"])
            target = 1.3  # issue 18: every prune of this cache (the first also builds the size memo)
            ok &= ratio_row(f"`uv cache prune`, {label}, {what}", b, s, target, f", {peak:.0f} MiB")
        for c in caches.values():
            shutil.rmtree(Path(c).parent, ignore_errors=True)
        # --max-size: the same cache, a budget of half its size, against a plain prune through the shim
        plain, sized, dry, floor = [], [], [], []
        budget = None
        for i in range(max(3, a.rounds // 5)):
            from gencache import generate

            info = generate(self.tmp / f"gen-size-{i}", self.real_uv, a.archives, a.envs, seed=7)
            env_i = {**self.env, "UV_CACHE_DIR": str(info["cache"])}
            run_rss([self.shim_uv, "cache", "prune"], env_i)  # settle: dead roots dropped, memos written
            if budget is None:
                budget = str(du(info["cache"]) // 2)
            plain.append(run_rss([self.shim_uv, "cache", "prune"], env_i))
            dry.append(run_rss([self.shim_uv, "cache", "prune", "--max-size", budget, "--dry-run"], env_i))
            sized.append(run_rss([self.shim_uv, "cache", "prune", "--max-size", budget], env_i))
            shutil.rmtree(self.tmp / f"gen-size-{i}", ignore_errors=True)
            floor.append(self._bare_eviction(i, int(budget)))
        p, s, d, f = (statistics.median(t for t, _ in runs) for runs in (plain, sized, dry, floor))
        peak = max(r for _, r in sized)
        ok &= ratio_row(
            f"`--max-size` half the cache vs a plain prune (dry run x{d / p:.2f}; the bare uv removing the same "
            f"archives: {ms(f)}, x{f / p:.2f})",
            p, s, 1.5, f", {peak:.0f} MiB",
        )  # fmt: skip
        return ok

    def _bare_eviction(self, i: int, budget: int) -> tuple[float, float]:
        """The floor of a ``--max-size`` prune: the bare uv's prune of an identical settled cache
        once uv's references to the archives the shim would evict are set aside (``holds``),
        i.e. uv deleting the same archives with no deciding at all. (seconds, MiB)"""
        from gencache import generate

        from shim import evict, holds, hostid, liveness, realuv
        from shim.cache import Cache
        from shim.policy import Policy

        info = generate(self.tmp / f"gen-floor-{i}", self.real_uv, self.args.archives, self.args.envs, seed=7)
        env_i = {**self.env, "UV_CACHE_DIR": str(info["cache"])}
        run_rss([self.shim_uv, "cache", "prune"], env_i)  # settled as the measured cache was
        run_rss([self.shim_uv, "cache", "prune"], env_i)
        saved = dict(os.environ)
        os.environ.update(env_i)
        try:
            cache = Cache(str(info["cache"]), realuv.build_of(realuv.RealUv(self.real_uv, "bench")))
            roots = liveness.verify(cache, hostid.identity()[1], dry_run=True)
            policy = Policy()
            policy.max_size = budget
            held = holds.apply(cache, evict.choose(cache, roots, policy, write=False))
        finally:
            os.environ.clear()
            os.environ.update(saved)
        took = run_rss([self.real_uv, "cache", "prune"], env_i)
        held.finish()
        shutil.rmtree(self.tmp / f"gen-floor-{i}", ignore_errors=True)
        return took

    def growth(self) -> bool:
        """The shim's added prune time as the cache grows, then as the roots grow; peak memory at
        30k archives."""
        ok = True
        rounds = max(3, self.args.rounds // 5)
        for archives, envs in ((1000, 1000), (10000, 1000), (30000, 1000), (10000, 100), (10000, 5000)):
            caches = self._caches(archives, envs, f"{archives}-{envs}")
            self._prunes(caches, 1)  # the first prune: dead roots go, memos fill
            runs = self._prunes(caches, rounds)
            b, s = (statistics.median(t for t, _ in runs[w]) for w in ("bare", "shim"))
            peak = max(r for _, r in runs["shim"])
            case = f"growth: {archives // 1000}k archives, {envs} roots, later prune"
            if archives == 30000:
                ok &= row(case, ms(b), ms(s), f"{(s - b) * 1000:+.0f} ms, {peak:.0f} MiB", "100 MiB", peak <= 100)
            else:
                row(case, ms(b), ms(s), f"{(s - b) * 1000:+.0f} ms, {peak:.0f} MiB", "(growth)", True)
            for c in caches.values():
                shutil.rmtree(Path(c).parent, ignore_errors=True)
        return ok

    def verify(self) -> bool:
        """One unchanged root's verification, on a settled cache (a prune through the shim, then
        another once its changes are older than ``envscan.RACY``: the one that remembers them)."""
        from gencache import generate

        from shim.envscan import RACY

        cache_dir = str(generate(self.tmp / "gen-verify", self.real_uv, 10000, 1000, seed=7)["cache"])
        run_rss([self.shim_uv, "cache", "prune"], {**self.env, "UV_CACHE_DIR": cache_dir})
        time.sleep(RACY + 0.1)
        run_rss([self.shim_uv, "cache", "prune"], {**self.env, "UV_CACHE_DIR": cache_dir})
        try:
            return self._verify_cost(cache_dir)
        finally:
            shutil.rmtree(self.tmp / "gen-verify", ignore_errors=True)

    def _verify_cost(self, cache_dir: str) -> bool:
        """``liveness.verify`` of every root of a settled cache, in process, per root (median of 9)."""
        from shim import hostid, liveness, realuv
        from shim.cache import Cache

        saved = dict(os.environ)
        os.environ.update({**self.env, "UV_CACHE_DIR": cache_dir})
        try:
            cache = Cache(cache_dir, realuv.build_of(realuv.RealUv(self.real_uv, "bench")))
            _, host_id = hostid.identity()
            times, n = [], 0
            for _ in range(9):
                t0 = time.perf_counter()
                roots = liveness.verify(cache, host_id, dry_run=True, memo=True)  # as a prune verifies
                times.append(time.perf_counter() - t0)
                n = len(roots)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        per = statistics.median(times) / max(n, 1) * 1000
        spread = f"{min(times) / max(n, 1) * 1000:.3f}-{max(times) / max(n, 1) * 1000:.3f}"
        return row(
            f"verifying one unchanged root ({n} roots, in process; runs {spread} ms)",
            "",
            f"{per:.3f} ms",
            "",
            "0.1 ms",
            per <= 0.1,
        )


def du(path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file() and not f.is_symlink())


def run_rss(cmd, env):
    """(seconds, peak RSS in MiB of the command). The peak comes from /usr/bin/time (GNU time
    reports its own child's): a child forked or spawned from this process, which holds whole
    synthetic caches' worth of memory by now, inherits a high-water mark from us at exec."""
    timer = "/usr/bin/time"
    with tempfile.NamedTemporaryFile("r") as out:
        wrapped = [timer, "-f", "%M", "-o", out.name, *cmd] if os.access(timer, os.X_OK) else cmd
        t0 = time.perf_counter()
        proc = subprocess.run(wrapped, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        elapsed = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"{cmd} failed")
        text = out.read().strip().splitlines()
    return elapsed, (int(text[-1]) / 1024 if wrapped is not cmd and text else float("nan"))


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        mem = f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB"
    except (ValueError, OSError):
        mem = "? GiB"
    fs = subprocess.run(["df", "-T", tempfile.gettempdir()], capture_output=True, text=True).stdout.split()
    return f"{platform.node()}: {cpu}, {os.cpu_count()} cpus, {mem}, {fs[-6] if len(fs) >= 7 else '?'} temp fs, {platform.system()} {platform.release()}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--uv",
        default=shutil.which("uv", path=os.environ.get("UV_SHIM_BENCH_PATH")),
        help="the real uv (absolute path)",
    )
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--archives", type=int, default=10000, help="archives in the synthetic prune cache")
    ap.add_argument("--envs", type=int, default=1000, help="recorded environments in the synthetic prune cache")
    parts = ["hot", "install", "autogc", "generations", "prune", "growth", "verify"]
    ap.add_argument("--only", choices=parts, action="append", help="run these parts only (repeatable)")
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
            "UV_TOOL_DIR": str(tmp / "tools"),
            "UV_LINK_MODE": "symlink",
            "UV_PYTHON_DOWNLOADS": "never",
            "UV_NO_PROGRESS": "1",
        }
        subprocess.run(
            [sys.executable, "-m", "shim", "install", "--bin-dir", str(home / "bin"), "--no-modify-path"],
            check=True,
            env={**os.environ, **env},
            capture_output=True,
            cwd=REPO,
        )
        shim_uv = str(home / "bin" / "uv")
        env["PATH"] = f"{home / 'bin'}:{env['PATH']}"
        python = getattr(sys, "_base_executable", sys.executable)
        version = subprocess.run([real_uv, "--version"], capture_output=True, text=True).stdout.strip()
        header = (
            f"uv-shim benchmark: {version} at {real_uv}; python {sys.version.split()[0]}; {args.rounds} rounds, medians"
        )
        print(f"{header}\n{machine()}\n", flush=True)
        bench = Bench(args, real_uv, shim_uv, env, tmp, python)
        ok = True
        for part in parts:
            if args.only is None or part in args.only:
                ok &= getattr(bench, part)()
        print(f"\n{header}\n{machine()}\n")
        print("| case | bare | through uv-shim | added | target | |\n|---|---|---|---|---|---|")
        for case, bare, shim, added, target, met in ROWS:
            print(f"| {case} | {bare} | {shim} | {added} | {target} | {'ok' if met else 'MISSED'} |")
        return 0 if ok else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
