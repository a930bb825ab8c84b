"""Which cache archives an environment links, and how.

One readlink per distribution: ``<name>-<version>.dist-info/METADATA`` is linked from the archive
in every link mode (RECORD, INSTALLER and scripts are written fresh). A symlink names the archive;
otherwise one stat tells a hardlink (the archive's inode, link count > 1) from a copy or clone.
"""

from __future__ import annotations

import os

from shim.cache import Cache

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

SYMLINK = "symlink"
HARDLINK = "hardlink"
COPY = "copy"  # copy or clone (a reflink is not visible from user space)


class Dist:
    """One installed distribution and the archive it came from (``archive`` "" when unknown)."""

    __slots__ = ("name", "version", "mode", "archive")

    def __init__(self, name: str, version: str, mode: str, archive: str = "") -> None:
        self.name = name
        self.version = version
        self.mode = mode
        self.archive = archive

    def _t(self) -> tuple[str, str, str, str]:
        return (self.name, self.version, self.mode, self.archive)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Dist) and self._t() == other._t()

    def __hash__(self) -> int:
        return hash(self._t())

    def __repr__(self) -> str:
        return f"Dist({self.name!r}, {self.version!r}, {self.mode!r}, {self.archive!r})"

    @property
    def key(self) -> str:
        return f"{self.name}=={self.version}"


def normalize(name: str) -> str:
    return name.replace("_", "-").replace(".", "-").lower()


def site_dirs(root: str, kind: str) -> list[str]:
    """The folders holding ``*.dist-info`` for an environment root (a few stats, no realpath)."""
    return [path for path, _ in _sites(root, kind)]


def _sites(root: str, kind: str) -> list[tuple[str, os.stat_result]]:
    if kind == "target":
        try:
            return [(root, os.stat(root))]
        except (FileNotFoundError, NotADirectoryError):
            return []
    out: list[tuple[str, os.stat_result]] = []
    seen = set()
    sep = os.sep
    for lib in ("lib", "lib64", "Lib"):
        base = root + sep + lib
        if lib == "lib64" and os.path.islink(base):
            continue  # venvs make lib64 -> lib
        try:
            names = os.listdir(base)
        except (FileNotFoundError, NotADirectoryError):
            continue  # any other error (permission denied, I/O) is the caller's: fail closed
        for name in sorted(names):
            if lib == "Lib":
                cand = base + sep + name if name == "site-packages" else None
            elif name.startswith("python") or name.startswith("pypy"):
                cand = base + sep + name + sep + "site-packages"
            else:
                cand = None
            if cand is None:
                continue
            try:
                st = os.stat(cand)
            except (FileNotFoundError, NotADirectoryError):
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                out.append((cand, st))
    return out


def site_stamp(root: str, kind: str) -> str:
    """The modification times of the site-packages folders: a dist-info folder appears or goes
    (every install, upgrade and uninstall) only by changing them."""
    return ",".join(str(st.st_mtime_ns) for _, st in _sites(root, kind))


RACY = 2.0  # seconds: a stamp younger than this when scanned is not kept (see ``settled``)


def settled(stamp: str, scanned_at: float) -> str:
    """``stamp`` if it may be trusted later, else "". A folder's mtime moves when an entry comes
    or goes, but in clock ticks: a change in the same tick as the last one before a scan leaves
    it as it was (git's "racy clean"). So a stamp is kept only when every folder's mtime is
    ``RACY`` seconds older than the scan: any later change then lands on a later mtime."""
    limit = int((scanned_at - RACY) * 1e9)
    try:
        return stamp if stamp and all(int(part) <= limit for part in stamp.split(",")) else ""
    except ValueError:  # not a stamp we wrote (a record is untrusted input)
        return ""


def inode_of(root: str) -> str:
    """ "device:inode" of an environment folder: what finds it again after a move or a rename."""
    try:
        st = os.stat(root)
    except OSError:
        return ""
    return f"{st.st_dev}:{st.st_ino}"


def is_environment(root: str) -> bool:
    return os.path.isfile(os.path.join(root, "pyvenv.cfg")) or bool(site_dirs(root, "prefix"))


def python_version(root: str) -> str:
    try:
        with open(os.path.join(root, "pyvenv.cfg"), encoding="utf-8", errors="replace") as f:
            for line in f:
                k, _, v = line.partition("=")
                if k.strip() in ("version_info", "version"):
                    return v.strip()
    except OSError:
        pass
    for site in site_dirs(root, "prefix"):
        return os.path.basename(os.path.dirname(site)).replace("python", "")
    return ""


def _installed_by_uv(dist_info: str) -> bool:
    try:
        with open(os.path.join(dist_info, "INSTALLER"), "rb") as f:
            return f.read(16).strip() == b"uv"
    except OSError:
        return False


def _hardlink_archive(cache: Cache, name: str, distinfo: str, st: os.stat_result) -> str:
    """The archive a hardlinked METADATA came from: the wheels-bucket entry of that package
    whose archive holds the same inode, or "" if none does (a wheel built from an sdist)."""
    for _link, aid in cache.wheel_links(normalize(name)):
        try:
            ast = os.stat(os.path.join(cache.archive_path(aid), distinfo, "METADATA"))
        except (OSError, ValueError):
            continue
        if (ast.st_dev, ast.st_ino) == (st.st_dev, st.st_ino):
            return aid
    return ""


def dist_infos(root: str, kind: str) -> Iterator[tuple[str, str, str, str]]:
    """(site folder, ``*.dist-info`` folder name, normalized name, version) of every distribution
    installed in an environment, in name order. OSError if a site folder cannot be listed."""
    for site in site_dirs(root, kind):
        for entry in sorted(os.listdir(site)):
            if entry.endswith(".dist-info"):
                name, _, version = entry[: -len(".dist-info")].partition("-")
                if version:
                    yield site, entry, normalize(name), version


def scan(root: str, kind: str, cache: Cache) -> dict[str, Dist]:
    """Every distribution installed from this cache into the environment, keyed ``name==version``.

    Raises OSError when the environment cannot be read (the caller keeps what it had recorded).
    """
    found: dict[str, Dist] = {}
    for site, entry, name, version in dist_infos(root, kind):
        dist_info = site + os.sep + entry
        meta = dist_info + os.sep + "METADATA"
        key = f"{name}=={version}"
        try:
            target = os.readlink(meta)
        except OSError:
            target = None
        if target is not None:
            aid = cache.archive_of_link(target)
            if aid:
                found[key] = Dist(name, version, SYMLINK, aid)
            continue
        try:
            st = os.stat(meta)
        except FileNotFoundError:
            continue
        if st.st_nlink > 1:
            found[key] = Dist(name, version, HARDLINK, _hardlink_archive(cache, name, entry, st))
        elif _installed_by_uv(dist_info):
            found[key] = Dist(name, version, COPY)
    return found
