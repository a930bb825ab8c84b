"""The site-packages stamp: what lets an unchanged environment skip its scan (a no-op install,
a prune's verification) without ever missing a change.

A folder's mtime moves when a dist-info folder comes or goes, but in clock ticks: a change in the
same tick as the last one leaves it as it was. A stamp is therefore kept only when it is older
than the racy window at the scan (``envscan.settled``). Each test replays a change the stamp alone
cannot see (the mtime put back to the recorded value, as a change in the same tick leaves it) or
one it must see, with the real uv; the control shows the same world breaking without the shim.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from conftest import World

HOUR = 3600


def _site(venv: Path) -> Path:
    (site,) = (venv / "lib").glob("python*/site-packages")
    return site


def _same_tick(w: World, wheels, first_shim: bool = True) -> Path:
    """alpha through the shim, then beta with the bare uv *in the same clock tick*: the
    site-packages mtime is what it was when the shim scanned."""
    a = w.venv("a")
    w.install(a, "alpha==1.0", find_links=wheels, shim=first_shim)
    st = _site(a).stat()
    w.install(a, "beta==1.0", find_links=wheels, shim=False)
    os.utime(_site(a), ns=(st.st_atime_ns, st.st_mtime_ns))
    return a


def test_a_stamp_taken_in_the_tick_of_a_change_is_not_trusted_by_a_prune(world: World, wheels):
    a = _same_tick(world, wheels)
    assert world.records()[str(a.resolve())].site_stamp == ""  # racy at the scan: not kept
    world.prune(shim=True)  # verifies a: its stamp cannot vouch for it, so a full scan finds beta
    world.prune("--ci")  # the bare uv
    assert world.works(a), world.broken(a)


def test_a_stamp_taken_in_the_tick_of_a_change_is_not_trusted_by_a_no_op(world: World, wheels):
    a = _same_tick(world, wheels)
    world.install(a, "alpha==1.0", find_links=wheels)  # a no-op for uv; the shim must rescan
    world.prune("--ci")
    assert world.works(a), world.broken(a)


def test_control_the_same_tick_world_breaks_without_the_shim_looking_again(world: World, wheels):
    a = _same_tick(world, wheels)
    world.prune("--ci")
    assert world.value(a, "alpha") == "alpha-1.0"  # pinned at its install
    assert not world.works(a), "beta, installed by the bare uv and never seen, was expected to go"


def test_a_settled_stamp_skips_the_scan_and_a_later_change_moves_it(world: World, wheels):
    a = world.venv("a")
    world.install(a, "alpha==1.0", find_links=wheels)
    old = time.time() - HOUR
    os.utime(_site(a), (old, old))  # installed an hour ago
    world.install(a, "alpha==1.0", find_links=wheels)  # a no-op: the settled stamp is kept now
    rec = world.records()[str(a.resolve())]
    assert rec.site_stamp == str(_site(a).stat().st_mtime_ns)
    record_file = next(world.manifest_dir().glob("*/root.toml"))
    before = record_file.stat().st_mtime_ns
    world.install(a, "alpha==1.0", find_links=wheels)  # stamp holds: nothing read, nothing written
    assert record_file.stat().st_mtime_ns == before
    st = _site(a).stat()
    world.install(a, "beta==1.0", find_links=wheels, shim=False)
    os.utime(_site(a), ns=(st.st_atime_ns, st.st_mtime_ns))  # beta, hidden from the stamp alone
    world.install(a, "alpha==1.0", find_links=wheels)
    assert sorted(world.records()[str(a.resolve())].distributions) == ["alpha==1.0"]  # so: no scan
    os.utime(_site(a))  # any real change moves the mtime on (a settled stamp is older than it)
    world.install(a, "alpha==1.0", find_links=wheels)  # so the next no-op rescans and pins beta
    assert sorted(world.records()[str(a.resolve())].distributions) == ["alpha==1.0", "beta==1.0"]
    world.prune("--ci")
    assert world.works(a), world.broken(a)
