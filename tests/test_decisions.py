"""The fast tier: every decision uv-shim makes, in-process, on real folders (issue 11).

No uv runs here. Caches and environments are laid out on disk exactly as uv lays them out
(archives, wheels-bucket links, dist-info METADATA linked by symlink or hardlink), and the
shim's own code records, verifies, chooses and plans on them. The slow tier proves the same
promises against the real uv; this tier makes a broken decision fail in seconds.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import symlink_up

from shim import bookkeeping, envscan, evict, holds, hostid, liveness, manifest, paths, policy, realuv, report, uvargs
from shim.cache import Cache
from shim.cachedir import find_cache_dir
from shim.confined import Dir, Unsafe
from shim.manifest import pin_id, pins
from shim.sizes import tree_bytes

pytestmark = pytest.mark.fast

BUILD = realuv.UvBuild(
    "0.13.9",
    {
        "sdists": "sdists-v11",
        "wheels": "wheels-v8",
        "environments": "environments-v2",
        "all": "wheels-v8|sdists-v11|environments-v2|archive-v0",
    },
    ["UV_WORKING_DIR"],
)
ME = "this-host"
DAY = 86400.0


@pytest.fixture(autouse=True)
def host(monkeypatch):
    monkeypatch.setenv("UV_SHIM_HOST_ID", ME)
    monkeypatch.setattr(hostid, "_identity", None)


class Lab:
    """A cache and environments laid out as uv lays them out."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "cache" / "archive-v0").mkdir(parents=True)
        (root / "cache" / "CACHEDIR.TAG").write_text("Signature: 8a477f597d28d172789f06886806bc55\n")
        self.cache = Cache(str(root / "cache"), BUILD)
        self.n = 0

    def archive(self, name: str, version: str = "1.0", size: int = 100, indexed: bool = True) -> str:
        self.n += 1
        aid = f"A{self.n:015d}"
        a = Path(self.cache.archives) / aid
        info = a / f"{name}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        (a / name).mkdir()
        body = "x" * size
        (a / name / "__init__.py").write_text(body)
        (info / "RECORD").write_text(f"{name}/__init__.py,sha256=x,{size}\n{name}-{version}.dist-info/METADATA,,\n")
        if indexed:
            pkg = Path(self.cache.wheels) / "pypi" / name
            pkg.mkdir(parents=True, exist_ok=True)
            key = f"{name}-{version}-py3-none-any"
            os.symlink(f"../../../archive-v0/{aid}", pkg / key)
            (pkg / f"{key}.http").write_text("pointer")
        return aid

    def env(self, path: Path, dists: list[tuple[str, str, str, str]]) -> Path:
        """A venv whose dist-info METADATA is linked from the archive (symlink / hardlink / copy)."""
        site = path / "lib" / "python3.11" / "site-packages"
        site.mkdir(parents=True)
        (path / "pyvenv.cfg").write_text("home = /usr/bin\nversion_info = 3.11.7\n")
        for name, version, aid, mode in dists:
            info = site / f"{name}-{version}.dist-info"
            info.mkdir()
            meta = Path(self.cache.archives) / aid / f"{name}-{version}.dist-info" / "METADATA"
            if mode == "symlink":
                os.symlink(meta, info / "METADATA")
            elif mode == "hardlink":
                os.link(meta, info / "METADATA")
            else:
                (info / "METADATA").write_bytes(meta.read_bytes())
                (info / "INSTALLER").write_text("uv\n")
        return path

    def record(self, env: Path) -> None:
        bookkeeping.Book(self.cache, bookkeeping.Warnings()).update(str(env), "venv")

    def roots(self, **kw) -> list[liveness.Root]:
        return liveness.verify(self.cache, ME, **kw)

    def pinned(self) -> set:
        out = set()
        area = self.cache.area()
        for key in area.listdir() if area else []:
            if not key.startswith("."):
                with area.sub(key) as d:
                    out.update(pins(d))
        return out


@pytest.fixture
def lab(tmp_path) -> Lab:
    return Lab(tmp_path)


# -- recording and liveness ----------------------------------------------------------------------


def test_mixed_link_modes_pin_only_the_symlinked(lab: Lab):
    a, b, c = lab.archive("alpha"), lab.archive("beta"), lab.archive("gamma")
    v = lab.env(
        lab.root / "v", [("alpha", "1.0", a, "symlink"), ("beta", "1.0", b, "hardlink"), ("gamma", "1.0", c, "copy")]
    )
    lab.record(v)
    assert lab.pinned() == {a}
    (root,) = lab.roots()
    assert root.state == liveness.LIVE and root.archives == {a}
    dists = root.distributions(lab.cache)
    assert {k: (d.mode, d.archive) for k, d in dists.items()} == {
        "alpha==1.0": ("symlink", a),
        "beta==1.0": ("hardlink", b),
        "gamma==1.0": ("copy", ""),
    }


@pytest.mark.parametrize("how", ["reached-through-a-symlinked-parent", "the-path-itself-is-a-symlink"])
def test_an_environment_behind_a_symlink_is_live(lab: Lab, how):
    a = lab.archive("alpha")
    real = lab.env(lab.root / "real" / "v", [("alpha", "1.0", a, "symlink")])
    if how == "reached-through-a-symlinked-parent":
        os.symlink(lab.root / "real", lab.root / "link")
        path = lab.root / "link" / "v"
    else:
        os.symlink(real, lab.root / "vlink")
        path = lab.root / "vlink"
    lab.record(path)
    for _ in range(2):  # the first prune rescans, the second takes the fast path
        (root,) = lab.roots()
        assert (root.state, root.archives) == (liveness.LIVE, {a})
    assert lab.pinned() == {a}


def test_a_gone_environment_is_dead_and_released(lab: Lab):
    a, b = lab.archive("alpha"), lab.archive("beta")
    keep = lab.env(lab.root / "keep", [("alpha", "1.0", a, "symlink")])
    gone = lab.env(lab.root / "gone", [("beta", "1.0", b, "symlink")])
    lab.record(keep)
    lab.record(gone)
    import shutil

    shutil.rmtree(gone)
    states = {r.path: r.state for r in lab.roots(dry_run=True)}
    assert states == {str(keep): liveness.LIVE, str(gone): liveness.DEAD}
    assert lab.pinned() == {a, b}  # a dry run writes nothing
    lab.roots()
    assert lab.pinned() == {a}


def test_a_rescan_follows_what_the_environment_links_now(lab: Lab):
    a, b = lab.archive("alpha"), lab.archive("beta")
    v = lab.env(lab.root / "v", [("alpha", "1.0", a, "symlink")])
    lab.record(v)
    site = v / "lib" / "python3.11" / "site-packages"
    time.sleep(0.01)
    info = site / "beta-1.0.dist-info"
    info.mkdir()  # a bare uv install added beta: the site-packages folder changed
    os.symlink(Path(lab.cache.archives) / b / "beta-1.0.dist-info" / "METADATA", info / "METADATA")
    (root,) = lab.roots()
    assert root.archives == {a, b} and lab.pinned() == {a, b}


def test_an_unreadable_record_keeps_its_pins(lab: Lab):
    a = lab.archive("alpha")
    v = lab.env(lab.root / "v", [("alpha", "1.0", a, "symlink")])
    lab.record(v)
    (entry,) = [p for p in Path(lab.cache.manifest).iterdir() if not p.name.startswith(".")]
    (entry / manifest.RECORD).write_text("not = [toml")
    (root,) = lab.roots()
    assert root.state == liveness.UNVERIFIABLE and root.archives == {a} and lab.pinned() == {a}


def _foreign(lab: Lab, aid: str, registered_days: float, last_used_days: float) -> None:
    now = datetime.now(timezone.utc).replace(microsecond=0)
    rec = manifest.Record(
        path="/elsewhere/v",
        host="other",
        host_id="other-host",
        registered=now - timedelta(days=registered_days),
        last_used=now - timedelta(days=last_used_days),
    )
    rec.set_dists({"alpha==1.0": envscan.Dist("alpha", "1.0", "symlink", aid)})
    with lab.cache.entry("f" * 24, create=True) as entry:
        manifest.save(entry, rec)


@pytest.mark.parametrize(
    "registered, last_used, state",
    [(40, 1, liveness.FOREIGN), (40, 29, liveness.FOREIGN), (40, 31, liveness.EXPIRED), (2, 31, liveness.EXPIRED)],
)
def test_a_foreign_lease_runs_from_last_use(lab: Lab, registered, last_used, state):
    a = lab.archive("alpha")
    _foreign(lab, a, registered, last_used)
    (root,) = lab.roots(lease=30 * DAY)
    assert root.state == state
    assert lab.pinned() == ({a} if state == liveness.FOREIGN else set())


# -- eviction: choice, order, arithmetic ---------------------------------------------------------


def _evict_lab(lab: Lab):
    """pinned (live symlink env), hard (hardlinked), old/mid/new unpinned by last use."""
    pinned = lab.archive("pinned", size=1000)
    hard = lab.archive("hard", size=1000)
    old, mid, new = lab.archive("old", size=3000), lab.archive("mid", size=2000), lab.archive("new", size=1000)
    v = lab.env(lab.root / "v", [("pinned", "1.0", pinned, "symlink"), ("hard", "1.0", hard, "hardlink")])
    lab.record(v)
    now = time.time()
    for aid, age in ((old, 30), (mid, 20), (new, 1), (pinned, 50), (hard, 50)):
        t = now - age * DAY
        os.utime(Path(lab.cache.archives) / aid, (t, t))
    return pinned, hard, old, mid, new, now


def test_unused_takes_every_unpinned_archive_least_recent_first(lab: Lab):
    pinned, hard, old, mid, new, now = _evict_lab(lab)
    p = policy.Policy()
    p.unused = True
    ev = evict.choose(lab.cache, lab.roots(), p, now=now, write=False)
    assert ev.chosen == [old, mid, new]  # oldest first; never the pinned one
    assert ev.hardlinked == [hard]
    sizes = {aid: tree_bytes(os.path.join(lab.cache.archives, aid))[0] for aid in (old, mid, new)}
    assert ev.freed == sum(sizes.values())


def test_max_age_and_keep_recent(lab: Lab):
    pinned, hard, old, mid, new, now = _evict_lab(lab)
    p = policy.Policy()
    p.max_age = 10 * DAY
    ev = evict.choose(lab.cache, lab.roots(), p, now=now, write=False)
    assert ev.chosen == [old, mid]
    p = policy.Policy()
    p.unused, p.keep_recent = True, 25 * DAY
    ev = evict.choose(lab.cache, lab.roots(), p, now=now, write=False)
    assert ev.chosen == [old] and sorted(ev.recent) == sorted([mid, new])


def test_max_size_stops_as_soon_as_the_cache_fits(lab: Lab):
    pinned, hard, old, mid, new, now = _evict_lab(lab)
    roots = lab.roots()
    total = evict.Survey(lab.cache, write=False).total
    p = policy.Policy()
    p.max_size = total - 1  # one byte over: the least recently used archive alone is enough
    ev = evict.choose(lab.cache, roots, p, now=now, write=False)
    assert ev.chosen == [old] and ev.size_before == total
    p.max_size = 1  # out of reach: everything unpinned, nothing pinned or hardlinked
    ev = evict.choose(lab.cache, roots, p, now=now, write=False)
    assert ev.chosen == [old, mid, new] and pinned not in ev.chosen and hard not in ev.chosen


def test_last_use_comes_from_records_not_file_times(lab: Lab):
    """An archive a live root linked recently is recent, however old its folder's mtime (images,
    restored CI caches); the root's last use outlives the root."""
    a = lab.archive("alpha")
    t = time.time() - 100 * DAY
    os.utime(Path(lab.cache.archives) / a, (t, t))
    v = lab.env(lab.root / "v", [("alpha", "1.0", a, "hardlink")])
    lab.record(v)
    memo = evict.remember_last_use(lab.cache, lab.roots())
    assert time.time() - memo[a] < 60


# -- policy precedence and bad values ------------------------------------------------------------


def test_option_beats_variable_beats_config_file(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text('[prune]\nmax-size = "1GiB"\nmax-age = "3d"\n')
    env = {"UV_SHIM_CONFIG": str(cfg), "UV_SHIM_MAX_SIZE": "2GiB"}
    p, rest = policy.policy_from(["--max-size", "3GiB", "--ci"], env)
    assert (p.max_size, p.max_age, rest) == (3 * 1024**3, 3 * DAY, ["--ci"])
    p, _ = policy.policy_from([], env)
    assert p.max_size == 2 * 1024**3
    p, _ = policy.policy_from([], {"UV_SHIM_CONFIG": str(cfg)})
    assert p.max_size == 1024**3


def test_the_config_file_follows_the_xdg_rule(tmp_path, monkeypatch):
    """A relative XDG_CONFIG_HOME is ignored (the XDG rule, as uv and uv-shim's other folders
    take it): the command and the automatic prune it starts in `/` must read the same file."""
    home = str(tmp_path / "h")
    assert policy.config_path({"HOME": home, "XDG_CONFIG_HOME": "rel"}) == f"{home}/.config/uv-shim/config.toml"
    assert policy.config_path({"HOME": home, "XDG_CONFIG_HOME": "/x"}) == "/x/uv-shim/config.toml"


def test_a_bad_variable_or_file_value_is_one_warning_and_is_ignored(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text('[prune]\nmax-size = "lots"\nmax-age = "3d"\n')
    warnings: list[str] = []
    p, _ = policy.policy_from([], {"UV_SHIM_CONFIG": str(cfg), "UV_SHIM_KEEP_RECENT": "soon"}, warn=warnings.append)
    assert p.max_size is None and p.max_age == 3 * DAY and p.keep_recent is None
    assert len(warnings) == 2 and "prune.max-size" in warnings[0] and "UV_SHIM_KEEP_RECENT" in warnings[1]
    cfg.write_text("not toml [")
    warnings.clear()
    p, _ = policy.policy_from([], {"UV_SHIM_CONFIG": str(cfg)}, warn=warnings.append)
    assert not p.active and len(warnings) == 1 and str(cfg) in warnings[0]
    with pytest.raises(policy.PolicyError):
        policy.policy_from(["--max-size", "lots"], {})
    with pytest.raises(policy.PolicyError):
        policy.policy_from(["--max-age"], {})


@pytest.mark.parametrize(
    "text, n",
    [("10GiB", 10 * 1024**3), ("500MB", 500 * 1000**2), ("2g", 2 * 1024**3), ("123", 123), ("1.5KiB", 1536), ("0", 0)],
)
def test_sizes(text, n):
    assert policy.parse_size(text) == n


@pytest.mark.parametrize(
    "text, s", [("30d", 30 * DAY), ("12h", 43200), ("90m", 5400), ("45s", 45), ("2w", 14 * DAY), ("3600", 3600)]
)
def test_durations(text, s):
    assert report.parse_duration(text) == s


@pytest.mark.parametrize(
    "n, text", [(0, "0B"), (512, "512B"), (1536, "1.5KiB"), (41.2 * 1024**2, "41.2MiB"), (3 * 1024**4, "3.0TiB")]
)
def test_human_sizes(n, text):
    assert report.human_size(n) == text


# -- which cache: the hot path decides without asking uv where it is certain ---------------------


NOWHERE = realuv.RealUv("/nonexistent/uv", "test: asking uv would fail")


@pytest.mark.parametrize(
    "argv, env, expect",
    [
        ([], {"UV_CACHE_DIR": "c"}, "{cwd}/c"),
        ([], {"UV_CACHE_DIR": "~/c"}, "{cwd}/~/c"),
        (["--cache-dir", "x"], {"UV_CACHE_DIR": "c"}, "{cwd}/x"),
        (["--directory", "sub"], {"UV_CACHE_DIR": "c"}, "{cwd}/sub/c"),
        ([], {"UV_WORKING_DIR": "sub", "UV_CACHE_DIR": "c"}, "{cwd}/sub/c"),
        ([], {"UV_CACHE_DIR": "/abs/c"}, "/abs/c"),
        ([], {"XDG_CACHE_HOME": "/xdg"}, "/xdg/uv"),
        ([], {"XDG_CACHE_HOME": "rel"}, "{home}/.cache/uv"),
        ([], {}, "{home}/.cache/uv"),
        (["--no-cache"], {"UV_CACHE_DIR": "c"}, None),
        ([], {"UV_NO_CACHE": "1"}, None),
    ],
)
def test_cache_dir_on_the_hot_path(tmp_path, argv, env, expect):
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), **env}
    got = find_cache_dir(NOWHERE, BUILD, uvargs.parse([*argv, "sync"]), str(tmp_path), env)
    assert got == (expect.format(cwd=tmp_path, home=home) if expect else None)


def test_working_dir_variable_only_where_uv_reads_it(tmp_path):
    old = realuv.UvBuild("0.7.0", BUILD.buckets, [])
    env = {"HOME": str(tmp_path), "UV_WORKING_DIR": "sub", "UV_CACHE_DIR": "c"}
    assert find_cache_dir(NOWHERE, old, uvargs.parse(["sync"]), str(tmp_path), env) == str(tmp_path / "c")


@pytest.mark.parametrize(
    "given, expect",
    [
        ("up/../c", "deep/c"),  # the kernel goes up from deep/inner
        ("up/./../c/", "deep/c"),
        ("up/../../x", "x"),
        ("up/../inner/../c", "deep/c"),
        ("a/./b//c", "a/b/c"),  # no `..`: only the spelling changes
        ("clink", "clink"),  # after the last `..` nothing is resolved: a symlinked cache keeps its name
        ("up/../clink", "deep/clink"),
        ("gone/../c", "c"),  # a folder that is not there is no symlink
        ("up/..", "deep"),
    ],
)
def test_physical_paths_go_up_from_where_a_symlink_points(tmp_path, monkeypatch, given, expect):
    symlink_up(tmp_path)
    (tmp_path / "clink").symlink_to(tmp_path / "deep")
    monkeypatch.chdir(tmp_path)
    assert paths.physical(given) == str(tmp_path / expect)
    assert paths.physical(str(tmp_path / given)) == str(tmp_path / expect)
    env = {"HOME": str(tmp_path), "UV_CACHE_DIR": given}
    assert find_cache_dir(NOWHERE, BUILD, uvargs.parse(["sync"]), str(tmp_path), env) == str(tmp_path / expect)


def test_doctor_syncs_a_project_only_into_its_one_environment(tmp_path):
    """`doctor --fix` repairs a project's environment with `uv sync --project`. When the project's
    environment is reached through `..` after a symlink and a venv exists at both places, uv's
    interpreter choice decides which one a sync changes: the project is not named (doctor falls
    back to `pip install --python`, which changes exactly that environment). Control: without
    the `..`, the project is named."""
    from shim import origins

    symlink_up(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "p"\nversion = "0"\n')
    (tmp_path / "uv.lock").write_text("version = 1\n")
    for where in (tmp_path / "deep", tmp_path):  # the kernel's place and the text's place
        (where / "env").mkdir()
        (where / "env" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    env = {"HOME": str(tmp_path), "UV_PROJECT_ENVIRONMENT": "up/../env"}
    assert origins.project_of(str(tmp_path / "deep" / "env"), env) is None
    assert origins.project_of(str(tmp_path / "env"), {**env, "UV_PROJECT_ENVIRONMENT": "env"}) == str(tmp_path)


# -- confinement -----------------------------------------------------------------------------------


def test_confined_folders_never_follow_a_symlink(tmp_path):
    victim = tmp_path / "victim"
    (victim / "d").mkdir(parents=True)
    (victim / "f").write_text("keep")
    (victim / "d" / "g").write_text("keep")
    top = tmp_path / "top"
    (top / "real" / "deep").mkdir(parents=True)
    (top / "real" / "deep" / "x").write_text("x")
    os.symlink(victim, top / "real" / "link")
    os.symlink(victim / "f", top / "real" / "flink")
    os.symlink(victim, top / "ours")
    with Dir.top(str(top)) as d:
        with pytest.raises(Unsafe):
            d.sub("ours")
        with d.sub("ours", create=True, ours=True) as fresh:  # our own folder: the link goes, a real folder comes
            assert fresh.listdir() == []
        d.remove_tree("real")
        assert sorted(d.listdir()) == ["ours"]
    assert (victim / "f").read_text() == "keep" and (victim / "d" / "g").read_text() == "keep"
    with pytest.raises(ValueError):
        Dir.top(str(top)).sub("../victim")


def test_pin_names_round_trip():
    from shim.manifest import pin_name

    for aid in ("abcdefghijklmnopqrstu", "abc-def_ghi-jklmnop-", "0123456789abcdef", "a_b-c" * 4):
        assert pin_id(pin_name(aid)) == aid
    assert pin_id("pin_../../etc_0-0-py3-none-any") is None


@pytest.mark.parametrize("text", ["nan", "NAN", "inf", "-inf", "1e400", "-1", "1e400d", ""])
def test_non_finite_sizes_and_durations_are_refused(text):
    with pytest.raises(ValueError):
        report.parse_duration(text)
    with pytest.raises(ValueError):
        policy.parse_size(text)


# -- killing the mutants that matter (scripts/mutate) --------------------------------------------


def _aged(lab: Lab, ages_days) -> list[str]:
    """Archives created newest first (so their ids sort against their age), aged by mtime."""
    ids = [lab.archive(f"p{i}", size=100) for i in range(len(ages_days))]
    now = time.time()
    for aid, age in zip(ids, ages_days):
        os.utime(Path(lab.cache.archives) / aid, (now - age * DAY, now - age * DAY))
    return ids


def test_eviction_order_is_last_use_not_id(lab: Lab):
    new, mid, old = _aged(lab, [1, 10, 20])
    p = policy.Policy()
    p.unused = True
    assert evict.choose(lab.cache, lab.roots(), p, write=False).chosen == [old, mid, new]


def test_eviction_reads_the_clock_it_is_given(lab: Lab):
    a, b = _aged(lab, [1, 2])
    p = policy.Policy()
    p.max_age = 30 * DAY
    assert evict.choose(lab.cache, lab.roots(), p, write=False).chosen == []
    later = time.time() + 100 * DAY
    assert sorted(evict.choose(lab.cache, lab.roots(), p, now=later, write=False).chosen) == sorted([a, b])


def test_cached_environments_are_never_chosen(lab: Lab):
    (env,) = _aged(lab, [50])
    (Path(lab.cache.archives) / env / "pyvenv.cfg").write_text("home = /usr/bin\n")
    p = policy.Policy()
    p.unused = True
    assert evict.choose(lab.cache, lab.roots(), p, write=False).chosen == []


def test_last_use_outlives_the_root(lab: Lab):
    import shutil

    a = lab.archive("alpha")
    t = time.time() - 100 * DAY
    os.utime(Path(lab.cache.archives) / a, (t, t))
    v = lab.env(lab.root / "v", [("alpha", "1.0", a, "hardlink")])
    lab.record(v)
    evict.remember_last_use(lab.cache, lab.roots())  # what a prune does
    shutil.rmtree(v)
    assert [r.state for r in lab.roots()] == [liveness.DEAD]  # released
    p = policy.Policy()
    p.max_age = 30 * DAY
    assert evict.choose(lab.cache, lab.roots(), p, write=False).chosen == []  # used a moment ago
    assert evict.choose(lab.cache, lab.roots(), p, now=time.time() + 31 * DAY, write=False).chosen == [a]


def _refs(lab: Lab) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(lab.cache.wheels):
        out += [
            os.path.relpath(os.path.join(dirpath, n), lab.cache.path)
            for n in dirnames + filenames
            if os.path.islink(os.path.join(dirpath, n)) or n.endswith(".http")
        ]
    return sorted(out)


def test_evicted_references_are_held_then_dropped_or_put_back(lab: Lab):
    a, b = lab.archive("alpha"), lab.archive("beta")
    before = _refs(lab)
    p = policy.Policy()
    p.unused = True
    ev = evict.choose(lab.cache, lab.roots(), p)
    assert sorted(ev.chosen) == sorted([a, b])
    held = holds.apply(lab.cache, ev)
    assert _refs(lab) == []
    assert held.restore() == 2 and _refs(lab) == before  # the prune failed: everything back
    assert not [n for n in lab.cache.area().listdir() if n.startswith(manifest.HOLD_PREFIX)]
    held = holds.apply(lab.cache, ev)
    held.finish()  # the prune succeeded: uv deleted the archives, the references stay gone
    assert _refs(lab) == [] and not [n for n in lab.cache.area().listdir() if n.startswith(manifest.HOLD_PREFIX)]


def test_references_held_by_a_dead_prune_are_put_back(lab: Lab):
    lab.archive("alpha")
    before = _refs(lab)
    p = policy.Policy()
    p.unused = True
    held = holds.apply(lab.cache, evict.choose(lab.cache, lab.roots(), p))
    area = lab.cache.area()
    area.replace(held.name, f"{manifest.HOLD_PREFIX}999999999")  # its process is gone
    assert holds.recover(lab.cache) == 1 and _refs(lab) == before


def test_a_held_reference_whose_archive_went_is_not_put_back(lab: Lab):
    """The prune deleted one archive, then failed: the other's references go back (into the
    package folder again, which a --ci prune had removed); the gone one's would only dangle."""
    import shutil

    a, _b = lab.archive("alpha"), lab.archive("beta")
    p = policy.Policy()
    p.unused = True
    held = holds.apply(lab.cache, evict.choose(lab.cache, lab.roots(), p))
    shutil.rmtree(Path(lab.cache.archives) / a)
    shutil.rmtree(Path(lab.cache.wheels) / "pypi")
    assert held.restore() == 1
    assert _refs(lab) == ["wheels-v8/pypi/beta/beta-1.0-py3-none-any", "wheels-v8/pypi/beta/beta-1.0-py3-none-any.http"]


def test_max_age_and_max_size_together(lab: Lab):
    """--max-age picks first, --max-size only what is still needed beyond that."""
    pinned, hard, old, mid, new, now = _evict_lab(lab)
    roots = lab.roots()
    survey = evict.Survey(lab.cache, write=False)
    total, freed_by_old = survey.total, survey.freeable[old]
    p = policy.Policy()
    p.max_age, p.max_size = 25 * DAY, total - freed_by_old  # old (30 days) is enough for both
    assert evict.choose(lab.cache, roots, p, now=now, write=False).chosen == [old]
    p.max_size = total - freed_by_old - 1  # one byte more: the next least recently used goes too
    assert evict.choose(lab.cache, roots, p, now=now, write=False).chosen == [old, mid]


def test_a_dry_run_choice_writes_nothing(lab: Lab):
    _evict_lab(lab)
    p = policy.Policy()
    p.max_size = 1
    roots = lab.roots(dry_run=True)
    before = sorted(os.listdir(lab.cache.manifest))
    evict.choose(lab.cache, roots, p, write=False)
    assert sorted(os.listdir(lab.cache.manifest)) == before


def test_every_root_after_a_foreign_one_is_verified_and_protected(lab: Lab):
    other, mine = lab.archive("other"), lab.archive("mine")
    _foreign(lab, other, 1, 1)  # its key sorts first
    v = lab.env(lab.root / "v", [("mine", "1.0", mine, "symlink")])
    lab.record(v)
    roots = lab.roots()
    assert sorted(r.state for r in roots) == [liveness.FOREIGN, liveness.LIVE]
    p = policy.Policy()
    p.unused = True
    assert evict.choose(lab.cache, roots, p, write=False).chosen == []


def test_a_rescan_drops_pins_the_environment_no_longer_needs(lab: Lab):
    import shutil

    a, b = lab.archive("alpha"), lab.archive("beta")
    v = lab.env(lab.root / "v", [("alpha", "1.0", a, "symlink"), ("beta", "1.0", b, "symlink")])
    lab.record(v)
    time.sleep(0.01)
    shutil.rmtree(next(v.glob("lib/python*/site-packages/beta-1.0.dist-info")))  # a bare uninstall
    (root,) = lab.roots()
    assert root.archives == {a} and lab.pinned() == {a}


def test_pins_without_a_record_are_kept_and_an_empty_leftover_goes(lab: Lab):
    from shim.manifest import pin

    a = lab.archive("alpha")
    with lab.cache.entry("a" * 24, create=True) as d:
        pin(d, a)
    with lab.cache.entry("b" * 24, create=True):
        pass
    roots = lab.roots()
    assert [(r.key, r.state, r.archives) for r in roots] == [("a" * 24, liveness.UNVERIFIABLE, {a})]
    assert sorted(n for n in lab.cache.area().listdir() if not n.startswith(".")) == ["a" * 24]


def test_leftovers_go_in_a_prune_and_stay_in_a_dry_run(lab: Lab):
    a = lab.archive("alpha")
    v = lab.env(lab.root / "v", [("alpha", "1.0", a, "symlink")])
    lab.record(v)
    area = Path(lab.cache.manifest)
    (entry,) = [p for p in area.iterdir() if not p.name.startswith(".")]
    for leftover in (area / ".archive-sizes.999999999.ab.tmp", entry / ".root.toml.999999999.cd.tmp"):
        leftover.write_text("torn")
    lab.roots(dry_run=True)
    assert (area / ".archive-sizes.999999999.ab.tmp").exists() and (entry / ".root.toml.999999999.cd.tmp").exists()
    half = area / f"{manifest.RELEASED}{'c' * 24}.999999999"  # a release a killed prune did not finish
    half.mkdir()
    (half / "root.toml").write_text("torn")
    lab.roots(dry_run=True)
    assert half.exists()
    lab.roots()
    assert (
        not (area / ".archive-sizes.999999999.ab.tmp").exists() and not (entry / ".root.toml.999999999.cd.tmp").exists()
    )
    assert not half.exists()


def test_a_record_from_another_uv_version_is_carried_into_this_ones_bucket(lab: Lab):
    a = lab.archive("alpha")
    v = lab.env(lab.root / "v", [("alpha", "1.0", a, "symlink")])
    older = Cache(lab.cache.path, realuv.UvBuild("0.13.8", {**BUILD.buckets, "sdists": "sdists-v10"}))
    bookkeeping.Book(older, bookkeeping.Warnings()).update(str(v), "venv")
    assert lab.pinned() == set()
    (root,) = lab.roots()
    assert root.state == liveness.LIVE and lab.pinned() == {a}
    with lab.cache.entry(root.key) as d:
        assert manifest.load(d).path == str(v)


# -- moves.Finder: where gone environments went, each sibling looked at once per prune ----------


def _inode(path: Path) -> str:
    st = path.lstat()
    return f"{st.st_dev}:{st.st_ino}"


def test_the_finder_looks_at_each_sibling_once_for_many_gone_roots(tmp_path, monkeypatch):
    from shim import moves

    runners = tmp_path / "runners"
    venvs = [runners / f"r{i:02d}" / ".venv" for i in range(20)]
    for v in venvs:
        v.mkdir(parents=True)
    inodes = [_inode(v) for v in venvs]
    for i in (3, 11):  # moved within the folder: found again
        venvs[i].parent.rename(runners / f"moved-{i:02d}")
    for i in (5, 6, 7):  # deleted: not found
        venvs[i].rmdir()
        venvs[i].parent.rmdir()
    siblings = len(os.listdir(runners))
    calls: list[str] = []
    real_lstat = os.lstat
    monkeypatch.setattr(os, "lstat", lambda p, *a, **k: calls.append(str(p)) or real_lstat(p, *a, **k))
    finder = moves.Finder()
    for i in (5, 3, 6, 11, 7):
        found = finder.find(str(venvs[i]), inodes[i])
        assert found == (str(runners / f"moved-{i:02d}" / ".venv") if i in (3, 11) else None), i
    # five looks at the gone paths themselves, each of the 17 siblings once (a search per root
    # looked at up to all of them: 54 here), and each place found looked at again
    assert siblings == 17 and len([p for p in calls if p.endswith(".venv")]) == 5 + siblings + 2, calls
    # another rest below the same folder is its own search
    assert finder.find(str(runners / "gone" / "env"), inodes[0]) is None


def test_the_finder_follows_a_move_made_after_it_looked(tmp_path):
    from shim import moves

    top = tmp_path / "projects"
    a, b = top / "a" / ".venv", top / "b" / ".venv"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    (top / "d").mkdir()
    ia, ib = _inode(a), _inode(b)
    finder = moves.Finder()
    a.parent.rename(top / "a-renamed")
    assert finder.find(str(a), ia) == str(top / "a-renamed" / ".venv")
    time.sleep(0.05)  # a folder's mtime moves in clock ticks: a rename in the same tick goes unseen
    b.parent.rename(top / "b2")  # after the finder looked: the folder changed, it looks again
    assert finder.find(str(b), ib) == str(top / "b2" / ".venv")
    (top / "b2" / ".venv").rename(top / "d" / ".venv")  # the folder itself unchanged: where it was
    assert finder.find(str(b), ib) == str(top / "d" / ".venv")  # seen is no longer so, looked again
    (top / "d" / ".venv").rename(top / "a-renamed" / "elsewhere")  # out of reach: not followed
    assert finder.find(str(b), ib) is None
    (top / "a-renamed" / "elsewhere").rename(top / "a-renamed" / ".venv2")
    (top / "a-renamed" / ".venv").rename(top / "c")  # the one it found moves on within the folder
    assert finder.find(str(a), ia) is None  # no longer a/…/.venv anywhere: never a stale answer


def test_the_finder_keeps_to_its_time_budget_and_resumes(tmp_path):
    from shim import moves

    top = tmp_path / "top"
    v = top / "z" / "env"
    v.mkdir(parents=True)
    for i in range(5):
        (top / f"a{i}").mkdir()
    inode = _inode(v)
    v.parent.rename(top / "zz")
    assert moves.Finder(budget=-1).find(str(v), inode) is None  # out of time before looking
    finder = moves.Finder()
    assert finder.find(str(v), inode) == str(top / "zz" / "env")
    assert finder.find(str(top / "y" / "env" / "nul\0here"), inode) is None  # never a traceback


# -- rootmemo: what the last prune read from each record folder ---------------------------------


def _folder_reads(monkeypatch) -> list[str]:
    """The record folders a verification lists on its common path, as they are listed."""
    seen: list[str] = []
    real = manifest.pins_and_leftovers

    def counting(d):
        seen.append(os.path.basename(d.path))
        return real(d)

    monkeypatch.setattr(manifest, "pins_and_leftovers", counting)
    return seen


def _decided(roots: list[liveness.Root]) -> list[tuple]:
    from shim.record import header_doc

    return [(r.key, r.state, r.archives, header_doc(r.record) if r.record else None) for r in roots]


def test_record_folders_unchanged_since_the_last_prune_are_not_read_again(lab: Lab, monkeypatch):
    a, b, c, d = (lab.archive(n) for n in ("alpha", "beta", "gamma", "delta"))
    envs = {
        n: lab.env(lab.root / n, [(n, "1.0", aid, "symlink")]) for n, aid in (("alpha", a), ("beta", b), ("gamma", c))
    }
    for v in envs.values():
        lab.record(v)
    keys = {r.path: r.key for r in lab.roots(memo=True)}
    memo = Path(lab.cache.manifest) / manifest.ROOTS_SEEN
    assert not memo.exists()  # every folder changed within RACY seconds: nothing remembered yet
    time.sleep(envscan.RACY + 0.1)
    lab.roots(dry_run=True, memo=True)
    assert not memo.exists()  # a dry run writes nothing
    read = lab.roots(memo=True)
    assert memo.exists()
    reads = _folder_reads(monkeypatch)
    assert _decided(lab.roots(memo=True)) == _decided(read) and reads == []  # all three from the memo

    # alpha installs delta (a pin and a record written), beta is deleted, gamma's record is
    # rewritten in place with the same bytes (its folder unchanged: only the record's stat shows it)
    site = envs["alpha"] / "lib" / "python3.11" / "site-packages"
    (site / "delta-1.0.dist-info").mkdir()
    os.symlink(
        Path(lab.cache.archives) / d / "delta-1.0.dist-info" / "METADATA", site / "delta-1.0.dist-info" / "METADATA"
    )
    lab.record(envs["alpha"])
    import shutil

    shutil.rmtree(envs["beta"])
    record = Path(lab.cache.manifest) / keys[str(envs["gamma"])] / manifest.RECORD
    with open(record, "r+b") as f:
        data = f.read()
        f.seek(0)
        f.write(data)
    reads.clear()
    states = {r.path: (r.state, r.archives) for r in lab.roots(memo=True)}
    assert sorted(reads) == sorted([keys[str(envs["alpha"])], keys[str(envs["gamma"])]])  # beta: read in full
    assert states == {
        str(envs["alpha"]): (liveness.LIVE, {a, d}),
        str(envs["beta"]): (liveness.DEAD, set()),
        str(envs["gamma"]): (liveness.LIVE, {c}),
    }
    assert lab.pinned() == {a, c, d}
    from shim.rootmemo import RootMemo

    assert RootMemo(lab.cache.area()).old == {}  # changed within RACY seconds, or gone: not kept


def test_a_broken_or_planted_memo_is_read_around(lab: Lab, monkeypatch):
    import json

    a, b = lab.archive("alpha"), lab.archive("beta")
    v = lab.env(lab.root / "v", [("alpha", "1.0", a, "symlink")])
    lab.record(v)
    lab.roots(memo=True)
    time.sleep(envscan.RACY + 0.1)
    truth = _decided(lab.roots(memo=True))
    memo = Path(lab.cache.manifest) / manifest.ROOTS_SEEN
    doc = json.loads(memo.read_text())
    (key,) = doc["roots"]

    def planted(where: int, value) -> bytes:
        forged = json.loads(json.dumps(doc))
        if where == 2:
            forged["roots"][key][2].update(value)
        else:
            forged["roots"][key][where] = value
        return json.dumps(forged).encode()

    reads = _folder_reads(monkeypatch)
    plants = {
        "not JSON": b"\xff\xfe{",
        "nested too deep": b"[" * 100_000,
        "another version": json.dumps({**doc, "version": 99}).encode(),
        "a pin that is a path": planted(4, f"{b} ../../../../etc"),
        "a pin list that is no string": planted(4, [a]),
        "link modes that are no list": planted(2, {"link_modes": "symlink"}),
        "a path with a NUL": planted(2, {"path": f"{v}\0x"}),
        "a time that is no number": planted(2, {"last_used": "soon"}),
        "a time too large for a float": planted(2, {"last_used": 10**400}),
        "a time that is NaN": planted(2, {"last_used": float("nan")}),
        "a time that is infinite": planted(2, {"registered": float("inf")}),
        "stats that are no list": planted(0, "same"),
    }
    for why, data in plants.items():
        memo.unlink()
        memo.write_bytes(data)
        reads.clear()
        assert _decided(lab.roots(dry_run=True, memo=True)) == truth, why
        assert reads == [key], why  # read from the folder, as if there were no memo
    memo.unlink()
    os.symlink(lab.root / "elsewhere", memo)  # never followed
    (lab.root / "elsewhere").write_text(json.dumps(doc))
    reads.clear()
    assert _decided(lab.roots(dry_run=True, memo=True)) == truth and reads == [key]
    memo.unlink()
    os.mkfifo(memo)  # never blocks
    reads.clear()
    assert _decided(lab.roots(dry_run=True, memo=True)) == truth and reads == [key]
    memo.unlink()
    memo.write_bytes(plants["a time that is NaN"])
    assert _decided(lab.roots(memo=True)) == truth  # a prune reads around it, and writes a good one
    reads.clear()
    assert _decided(lab.roots(dry_run=True, memo=True)) == truth and reads == []  # the control: a memo as written
    assert _decided(lab.roots(dry_run=True)) == truth and reads == [key]  # without memo=True (uv cache clean)


def test_a_fifo_planted_as_a_record_never_blocks_an_install_or_a_prune(lab: Lab):
    import threading

    a = lab.archive("alpha")
    v = lab.env(lab.root / "v", [("alpha", "1.0", a, "symlink")])
    lab.record(v)
    (entry,) = [p for p in Path(lab.cache.manifest).iterdir() if not p.name.startswith(".")]
    (entry / manifest.RECORD).unlink()
    os.mkfifo(entry / manifest.RECORD)
    done: list[object] = []
    worker = threading.Thread(target=lambda: done.extend([lab.roots(memo=True), lab.record(v)]), daemon=True)
    worker.start()
    worker.join(30)
    if worker.is_alive():  # unblock it: a writer opens the FIFO
        os.close(os.open(entry / manifest.RECORD, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("reading the record blocked on a FIFO")
    (root,) = done[0]
    assert (root.state, root.archives) == (liveness.UNVERIFIABLE, {a})  # its pins kept
    assert lab.pinned() == {a}
