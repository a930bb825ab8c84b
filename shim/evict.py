"""Reclaim what nothing uses: ``--unused``, ``--max-age``, ``--max-size``, ``--keep-recent``.

The shim decides, uv deletes: a chosen archive loses uv's own references to it (its wheels-bucket
link with the ``.http``/``.rev`` pointer beside it, the sdists-bucket link of a built wheel), and
the real ``uv cache prune`` that follows deletes it. Afterwards uv installs the package again as
if it had never been cached (registry wheels are downloaded, built wheels re-unzipped from the
kept ``.whl``, local wheels unpacked again).

Never chosen: an archive a live environment links by symlink (it is pinned), or one hardlinked
into an environment (removing it frees nothing while that environment lives; reported).
"""

from __future__ import annotations

import os
import sys
import time

from shim import gc, manifest, report
from shim.cache import POINTERS, Cache, archive_id_of
from shim.manifest import HOLD_PREFIX, LAST_USE, held_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Optional

_UNITS = {
    "b": 1,
    "k": 1024,
    "kb": 1000,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "t": 1024**4,
    "tb": 1000**4,
    "tib": 1024**4,
}


class PolicyError(Exception):
    """A bad option, variable or config value: one line naming it."""


def parse_size(text: str) -> int:
    """``10GiB``, ``500MB``, ``2g``, ``123`` (bytes)."""
    t = text.strip().lower().replace(" ", "")
    digits = t.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = t[len(digits) :] or "b"
    if unit not in _UNITS or not digits:
        raise ValueError(text)
    number = float(digits) * _UNITS[unit]
    if not 0 <= number < 2**63:  # NaN, infinities (1e400), negatives: not sizes
        raise ValueError(text)
    return int(number)


class Policy:
    FLAGS = {"--unused": "unused", "--max-age": "max_age", "--max-size": "max_size", "--keep-recent": "keep_recent"}
    ENV = {
        "UV_SHIM_UNUSED": "unused",
        "UV_SHIM_MAX_AGE": "max_age",
        "UV_SHIM_MAX_SIZE": "max_size",
        "UV_SHIM_KEEP_RECENT": "keep_recent",
    }
    CONFIG_KEYS = {"unused": "unused", "max-age": "max_age", "max-size": "max_size", "keep-recent": "keep_recent"}

    def __init__(self) -> None:
        self.unused = False
        self.max_age: Optional[float] = None
        self.max_size: Optional[int] = None
        self.keep_recent: Optional[float] = None

    @property
    def active(self) -> bool:
        return self.unused or self.max_age is not None or self.max_size is not None

    def set(self, field: str, value: object, where: str) -> None:
        try:
            if field == "unused":
                self.unused = value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
            elif field == "max_size":
                self.max_size = parse_size(str(value))
            else:
                setattr(self, field, report.parse_duration(str(value)))
        except ValueError:
            kind = "a size (like 10GiB)" if field == "max_size" else "a duration (like 30d, 12h)"
            raise PolicyError(f"{where}: `{value}` is not {kind}") from None


def config_path(env: Mapping[str, str]) -> str:
    explicit = env.get("UV_SHIM_CONFIG")
    if explicit:
        return explicit
    base = env.get("XDG_CONFIG_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".config")
    return os.path.join(base, "uv-shim", "config.toml")


def policy_from(
    args: Sequence[str], env: Mapping[str, str], warn: Optional[Callable[[str], None]] = None
) -> tuple[Policy, list[str]]:
    """The policy (config file < UV_SHIM_* variables < options) and the args left for uv.

    A bad option raises PolicyError; a bad config file or variable is reported through ``warn``
    and ignored, so a plain ``uv cache prune`` still runs."""
    policy = Policy()
    path = config_path(env)
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        doc = {}
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        if warn:
            warn(f"ignoring {path}: {e}")
        doc = {}
    section = doc.get("prune", {})
    if not isinstance(section, dict):
        section = {}
    soft = [(section[k], f, f"{path}: prune.{k}") for k, f in Policy.CONFIG_KEYS.items() if k in section]
    soft += [(env[v], f, v) for v, f in Policy.ENV.items() if env.get(v)]
    for value, field, where in soft:
        try:
            policy.set(field, value, where)
        except PolicyError as e:
            if warn:
                warn(f"ignoring {e}")
    rest: list[str] = []
    it = iter(args)
    for arg in it:
        name, eq, value = arg.partition("=")
        attr: Optional[str] = Policy.FLAGS.get(name)
        if attr is None:
            rest.append(arg)
        elif attr == "unused":
            policy.unused = True
        else:
            if not eq:
                value = next(it, None)
                if value is None:
                    raise PolicyError(f"{name} needs a value")
            policy.set(attr, value, name)
    return policy, rest


# -- what the cache holds: one walk ---------------------------------------------------------


class Survey:
    """One walk of the cache: total size, each archive's freeable bytes, hardlinked archives,
    and every link in uv's wheels and sdists buckets by the archive it names.

    Archives themselves are not walked file by file: their sizes come from the size memo (an
    unpacked wheel never changes) and one stat of their METADATA tells whether an environment
    hardlinks them (uv links every file of a wheel the same way)."""

    def __init__(self, cache: Cache, write: bool = True) -> None:
        from shim.sizes import ArchiveSizes

        self.total = 0
        self.freeable: dict[str, int] = {}
        self.hardlinked: set[str] = set()
        self.refs: dict[str, list[str]] = {}
        seen: set[tuple[int, int]] = set()
        buckets = (cache.wheels + os.sep, cache.sdists + os.sep)
        manifest = cache.manifest + os.sep
        for e in report.walk(cache.root, descend=lambda e: e.path != cache.archives):
            try:
                if e.is_symlink():
                    d = os.path.dirname(e.path) + os.sep
                    if d.startswith(buckets) and not d.startswith(manifest):
                        aid = archive_id_of(os.readlink(e.path))
                        if aid:
                            self.refs.setdefault(aid, []).append(e.path)
                    continue
                if e.is_dir():
                    continue
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            key = (st.st_dev, st.st_ino)
            if key not in seen:
                seen.add(key)
                self.total += st.st_size
        sizes = ArchiveSizes(cache)
        try:
            archives = os.listdir(cache.archives)
        except OSError:
            archives = []
        for aid in archives:
            size = sizes.get(aid)
            self.total += size
            if _hardlinked(os.path.join(cache.archives, aid)):
                self.hardlinked.add(aid)
            else:
                self.freeable[aid] = size
        if write:
            sizes.save(archives)


def _hardlinked(archive: str) -> bool:
    """Does an environment hardlink this archive? (its METADATA has another link)"""
    try:
        names = os.listdir(archive)
    except OSError:
        return False
    for name in names:
        if name.endswith(".dist-info"):
            try:
                return os.stat(os.path.join(archive, name, "METADATA")).st_nlink > 1
            except OSError:
                return False
    return False


# -- last use ------------------------------------------------------------------------------


def _read_memo(cache: Cache) -> dict[str, float]:
    memo: dict[str, float] = {}
    area = cache.area()
    if area is None:
        return memo
    try:
        for line in area.read(LAST_USE).decode("ascii", "replace").splitlines():
            aid, _, ts = line.partition(" ")
            memo[aid] = float(ts)
    except (OSError, ValueError):
        pass
    return memo


def remember_last_use(cache: Cache, roots: list[gc.Root], write: bool = True) -> dict[str, float]:
    """Merge what the roots say (each archive: the newest ``last_used`` of the roots that name it)
    into the last-use memo (``manifest.LAST_USE``), so it outlives roots that are dropped. Every prune
    through the shim does this, with or without a policy."""
    memo = _read_memo(cache)
    changed = False
    for r in roots:
        if r.record is None:
            continue
        ts = int(r.record.last_used.timestamp())
        # a root verified from its header alone: its pins are its symlinked archives; read its
        # distributions only when it also links archives another way (hardlink)
        dists = r.record.distributions or (r.distributions(cache) if set(r.record.link_modes) - {"symlink"} else {})
        ids = set(r.archives) | {d.archive for d in dists.values() if d.archive}
        for aid in ids:
            if ts > memo.get(aid, 0):
                memo[aid] = ts
                changed = True
    if write:
        try:
            present = set(os.listdir(cache.archives))
        except OSError:
            present = set()
        if not changed and present.issuperset(memo):
            return memo  # nothing new: no write
        text = "".join(f"{a} {int(t)}\n" for a, t in sorted(memo.items()) if a in present)
        try:
            cache.area(create=True).write_atomic(LAST_USE, text.encode("ascii"))  # type: ignore[union-attr]
        except OSError:
            pass  # only costs precision: creation time stands in
    return memo


def last_use(cache: Cache, memo: dict[str, float], archives: Sequence[str]) -> dict[str, float]:
    """When each archive was last linked or used through the shim; never seen: its creation time."""
    out = {}
    for aid in archives:
        if aid in memo:
            out[aid] = memo[aid]
        else:
            try:
                out[aid] = os.stat(os.path.join(cache.archives, aid)).st_mtime
            except OSError:
                out[aid] = 0.0
    return out


# -- choose and apply ---------------------------------------------------------------------


class Eviction:
    def __init__(self) -> None:
        self.chosen: list[str] = []
        self.hardlinked: list[str] = []  # would have been chosen: frees nothing, skipped
        self.recent: list[str] = []  # would have been chosen: used within --keep-recent
        self.freed = 0
        self.size_before = 0
        self.refs: dict[str, list[str]] = {}


def choose(
    cache: Cache, roots: list[gc.Root], policy: Policy, now: Optional[float] = None, write: bool = True
) -> Eviction:
    now = time.time() if now is None else now
    survey = Survey(cache, write)
    ev = Eviction()
    ev.size_before = survey.total
    ev.refs = survey.refs
    protected = gc.protected(roots)
    try:
        archives = sorted(os.listdir(cache.archives))
    except OSError:
        archives = []
    used = last_use(cache, remember_last_use(cache, roots, write), archives)
    candidates = []
    for aid in archives:
        if aid in protected or cache.is_cached_env(aid):
            continue  # pinned, or a cached environment (uv's prune handles those)
        candidates.append(aid)
    candidates.sort(key=lambda a: (used.get(a, 0), a))  # least recently used first

    def eligible(aid: str) -> bool:
        if aid in survey.hardlinked:
            ev.hardlinked.append(aid)
            return False
        if policy.keep_recent is not None and now - used.get(aid, 0) < policy.keep_recent:
            ev.recent.append(aid)
            return False
        return True

    chosen: set[str] = set()
    for aid in candidates:
        if policy.unused or (policy.max_age is not None and now - used.get(aid, 0) > policy.max_age):
            if eligible(aid):
                chosen.add(aid)
    if policy.max_size is not None:
        size = survey.total - sum(survey.freeable.get(a, 0) for a in chosen)
        for aid in candidates:
            if size <= policy.max_size:
                break
            if aid in chosen or aid in ev.hardlinked or aid in ev.recent:
                continue
            if eligible(aid):
                chosen.add(aid)
                size -= survey.freeable.get(aid, 0)
    ev.chosen = [a for a in candidates if a in chosen]
    ev.freed = sum(survey.freeable.get(a, 0) for a in ev.chosen)
    ev.hardlinked = sorted(set(ev.hardlinked))
    ev.recent = sorted(set(ev.recent))
    return ev


_JOURNAL = "journal"


class Held:
    """uv's references to the evicted archives, moved aside into our own area while the real
    prune runs: dropped once it succeeded, put back if it failed or was killed (``restore``).

    Held names (``manifest.held_name``) are names no uv version's prune reads as a reference. The journal,
    written before anything moves, says where each came from, so a prune through the shim that
    finds the hold of a process that died puts it back (``recover``)."""

    def __init__(self, cache: Cache, name: str) -> None:
        self.cache = cache
        self.name = name

    def finish(self) -> None:
        area = self.cache.area()
        if area is not None:
            area.remove_tree(self.name)

    def restore(self) -> int:
        return _restore(self.cache, self.name)


def apply(cache: Cache, ev: Eviction) -> Held:
    """Take uv's references to the chosen archives out of its buckets (never the archives
    themselves): their links in the wheels and sdists buckets, with the pointer files beside
    wheels-bucket links, moved into a hold in our area. Every step walks from the cache's folder
    descriptor without following a symlink; a reference reached through one is left alone."""
    root = cache.dir()
    area = cache.area(create=True)
    assert area is not None
    name = f"{HOLD_PREFIX}{os.getpid()}"
    area.remove_tree(name)  # a leftover of an earlier process with our pid
    plan: list[tuple[list[str], list[str]]] = []  # (folder parts, names in it)
    for aid in ev.chosen:
        for link in ev.refs.get(aid, []):
            parts = os.path.relpath(link, cache.root).split(os.sep)
            names = [parts[-1]]
            if link.startswith(cache.wheels + os.sep):
                names += [parts[-1] + ext for ext in POINTERS]
            plan.append((parts[:-1], names))
    lines = []
    for i, (folder, names) in enumerate(plan):
        lines.append("\t".join([f"{held_name(i, j)}={'/'.join(folder + [n])}" for j, n in enumerate(names)]))
    with area.sub(name, create=True, ours=True) as hold:
        hold.write_atomic(_JOURNAL, ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape"))
        for i, (folder, names) in enumerate(plan):
            try:
                parent = root.walk_to(folder)
            except OSError:
                continue  # gone, or a symlink on the way: not ours to follow
            with parent:
                if not parent.is_symlink(names[0]):
                    continue
                for j, n in enumerate(names):
                    try:
                        parent.replace(n, held_name(i, j), dst_dir=hold)
                    except FileNotFoundError:
                        continue
    return Held(cache, name)


def _restore(cache: Cache, name: str) -> int:
    """Put held references back where they were, if their archive still exists and nothing took
    their place; drop the rest and the hold. Returns how many links went back."""
    area = cache.area()
    if area is None:
        return 0
    root = cache.dir()
    restored = 0
    try:
        hold = area.sub(name)
    except OSError:
        return 0
    with hold:
        try:
            journal = hold.read(_JOURNAL).decode("utf-8", "surrogateescape").splitlines()
        except OSError:
            journal = []
        for line in journal:
            items = [item.partition("=")[::2] for item in line.split("\t") if "=" in item]
            if not items or not hold.is_symlink(items[0][0]):
                continue
            aid = archive_id_of(hold.readlink(items[0][0]))
            if not (aid and os.path.isdir(os.path.join(cache.archives, aid))):
                continue  # its archive went: the reference would only dangle
            folder = items[0][1].split("/")[:-1]
            try:
                parent = root.walk_to(folder, create=True)
            except OSError:
                continue
            with parent:
                for held, rel in items:
                    dest = rel.split("/")[-1]
                    if hold.lexists(held) and not parent.lexists(dest):
                        hold.replace(held, dest, dst_dir=parent)
                        restored += held == items[0][0]
    area.remove_tree(name)
    return restored


def recover(cache: Cache) -> int:
    """Put back the references held by a prune through the shim that died before it finished."""
    area = cache.area()
    if area is None:
        return 0
    restored = 0
    for name in area.listdir():
        pid = name[len(HOLD_PREFIX) :]
        if name.startswith(HOLD_PREFIX) and pid.isdigit() and (int(pid) == os.getpid() or not manifest.alive(int(pid))):
            restored += _restore(cache, name)
    return restored
