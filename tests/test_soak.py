"""Concurrency soak (issue 7): 8 parallel installs through the shim into different and into the
same symlink environments while prunes run in a loop, for UV_SHIM_SOAK_SECONDS (default 60).
Zero broken environments, zero lost records, every record parses."""

from __future__ import annotations

import os
import random
import threading
import time

from conftest import World

from shim import manifest

SECONDS = float(os.environ.get("UV_SHIM_SOAK_SECONDS", "60"))


def test_parallel_installs_and_prunes(world: World, wheels):
    venvs = [world.venv(f"v{i}") for i in range(5)]  # 8 workers on 5 venvs: some share one
    stop = time.monotonic() + SECONDS
    errors: list = []
    counts = {"installs": 0, "prunes": 0}
    lock = threading.Lock()

    def installer(i: int) -> None:
        rng = random.Random(i)
        while time.monotonic() < stop and not errors:
            v = venvs[i % len(venvs)]
            specs = rng.choice(
                [["alpha==1.0", "beta==1.0"], ["alpha==2.0"], ["gamma==1.0", "beta==1.0"], ["alpha==1.0"]]
            )
            out = world.install(
                v, *specs, find_links=wheels, check=False, extra=["--refresh"] if rng.random() < 0.2 else []
            )
            if out.returncode != 0:
                errors.append(f"install {specs} into {v.name} failed ({out.returncode}):\n{out.stderr}")
            with lock:
                counts["installs"] += 1

    def pruner() -> None:
        rng = random.Random(99)
        while time.monotonic() < stop and not errors:
            args = rng.choice([[], ["--ci"], ["--unused"]])
            out = world.uv("cache", "prune", "-q", *args, check=False)
            if out.returncode != 0:
                errors.append(out.stderr)
            with lock:
                counts["prunes"] += 1

    threads = [threading.Thread(target=installer, args=(i,)) for i in range(8)] + [threading.Thread(target=pruner)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert counts["installs"] >= 8 and counts["prunes"] >= 1, counts
    world.uv("cache", "prune", "--ci")
    world.prune()  # the bare uv too
    recs = world.records()  # every record parses
    for v in venvs:
        assert str(v.resolve()) in recs, f"record of {v.name} lost"
        assert world.works(v), (v.name, world.broken(v))
    for entry in world.manifest_dir().iterdir():
        if (entry / manifest.RECORD).exists():
            manifest.load(str(entry))
