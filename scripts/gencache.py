#!/usr/bin/env python3
"""Generate a synthetic uv cache with real on-disk structure, for benchmarks and randomized tests.

    python scripts/gencache.py DIR --uv /path/to/uv [--archives 10000] [--envs 1000] [--seed 1]

Writes ``DIR/cache`` in the layout of that uv version (bucket names read from the binary) and
``DIR/envs/env-NNNN``: symlink environments that each link ~20 archives file by file, the way
``UV_LINK_MODE=symlink`` does. Every archive has a ``wheels`` bucket link (as a registry download
has); some environments are recorded through uv-shim, some are deleted afterwards (dead roots),
some archives are orphans nobody references, and there are stale buckets and cached
environments for the prune to remove. Deterministic for a given seed.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"


def archive_id(rng: random.Random, n: int = 16) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(n))


def generate(
    root: Path,
    real_uv: str,
    archives: int = 10000,
    envs: int = 1000,
    seed: int = 1,
    per_env: int = 20,
    record: bool = True,
) -> dict:
    from shim import realuv
    from shim.bookkeeping import Book, Warnings
    from shim.cache import Cache

    rng = random.Random(seed)
    build = realuv.build_of(realuv.RealUv(real_uv, "gencache"))
    cache_dir = root / "cache"
    cache = Cache(str(cache_dir), build)
    arch = cache_dir / "archive-v0"
    arch.mkdir(parents=True, exist_ok=True)
    (cache_dir / "CACHEDIR.TAG").write_text("Signature: 8a477f597d28d172789f06886806bc55\n")
    wheels = Path(cache.wheels) / "pypi"
    ids = []
    dists = []
    for i in range(archives):
        aid = archive_id(rng)
        name, version = f"pkg{i:05d}", f"1.{rng.randrange(10)}"
        a = arch / aid
        (a / f"{name}-{version}.dist-info").mkdir(parents=True)
        (a / f"{name}-{version}.dist-info" / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        )
        (a / name).mkdir()
        body = "X = 1\n" * rng.randrange(1, 200)
        (a / name / "__init__.py").write_text(body)
        (a / f"{name}-{version}.dist-info" / "RECORD").write_text(
            f"{name}/__init__.py,sha256=x,{len(body)}\n{name}-{version}.dist-info/METADATA,,\n{name}-{version}.dist-info/RECORD,,\n"
        )
        ids.append(aid)
        dists.append((name, version))
        if rng.random() < 0.9:  # the rest are orphans uv's own index forgot
            link = wheels / name / f"{version}-py3-none-any"
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.path.join("..", "..", "..", "archive-v0", aid), link)
    for stale in ("wheels-v1", "sdists-v2", "simple-v3"):  # other uv versions' buckets
        (cache_dir / stale / "x").mkdir(parents=True, exist_ok=True)
    envdir = Path(cache.environments) / "cachedenv"
    envdir.mkdir(parents=True, exist_ok=True)
    env_paths = []
    book = Book(cache, Warnings())
    for e in range(envs):
        venv = root / "envs" / f"env-{e:04d}"
        site = venv / "lib" / "python3.11" / "site-packages"
        site.mkdir(parents=True)
        (venv / "pyvenv.cfg").write_text("home = /usr/bin\nversion_info = 3.11.7\n")
        for k in rng.sample(range(archives), per_env):
            name, version = dists[k]
            src = arch / ids[k]
            di = site / f"{name}-{version}.dist-info"
            di.mkdir()
            os.symlink(src / di.name / "METADATA", di / "METADATA")
            (di / "INSTALLER").write_text("uv\n")
            (site / name).mkdir()
            os.symlink(src / name / "__init__.py", site / name / "__init__.py")
        old = time.time() - 3600  # made an hour ago, as real environments are (older than the
        os.utime(site, (old, old))  # racy window of envscan.settled: their stamps are kept)
        if record:
            book.update(str(venv), "venv")
        env_paths.append(venv)
    dead = 0
    for venv in env_paths:
        if rng.random() < 0.1:  # deleted after they were recorded: dead roots
            import shutil

            shutil.rmtree(venv)
            dead += 1
    return {"cache": cache_dir, "archives": archives, "envs": envs, "dead": dead}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--uv", required=True)
    ap.add_argument("--archives", type=int, default=10000)
    ap.add_argument("--envs", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    info = generate(args.dir, args.uv, args.archives, args.envs, args.seed)
    print(
        f"wrote {info['archives']} archives and {info['envs']} environments ({info['dead']} deleted) in {info['cache']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
