"""Which cache archives an environment links, and how.

One readlink per distribution: ``<name>-<version>.dist-info/METADATA`` is linked from the archive
in every link mode (RECORD, INSTALLER and scripts are written fresh). A symlink names the archive;
otherwise one stat tells a hardlink (the archive's inode, link count > 1) from a copy or clone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional

from shim.cache import Cache

SYMLINK = "symlink"
HARDLINK = "hardlink"
COPY = "copy"  # copy or clone (a reflink is not visible from user space)


@dataclass(frozen=True)
class Dist:
    name: str
    version: str
    mode: str
    archive: str = ""  # archive id, when known

    @property
    def key(self) -> str:
        return f"{self.name}=={self.version}"


def normalize(name: str) -> str:
    return name.replace("_", "-").replace(".", "-").lower()


def site_dirs(root: Path, kind: str) -> List[Path]:
    """The folders holding ``*.dist-info`` for an environment root."""
    if kind == "target":
        return [root]
    out: List[Path] = []
    seen = set()
    for lib in ("lib", "lib64", "Lib"):
        base = root / lib
        try:
            names = os.listdir(base)
        except OSError:
            continue
        for name in sorted(names):
            if lib == "Lib":
                cand = base / "site-packages" if name == "site-packages" else None
            elif name.startswith("python") or name.startswith("pypy"):
                cand = base / name / "site-packages"
            else:
                cand = None
            if cand is None or not cand.is_dir():
                continue
            real = os.path.realpath(cand)
            if real not in seen:
                seen.add(real)
                out.append(cand)
    return out


def is_environment(root: Path) -> bool:
    return (root / "pyvenv.cfg").is_file() or bool(site_dirs(root, "prefix"))


def python_version(root: Path) -> str:
    try:
        with open(root / "pyvenv.cfg", encoding="utf-8", errors="replace") as f:
            for line in f:
                k, _, v = line.partition("=")
                if k.strip() in ("version_info", "version"):
                    return v.strip()
    except OSError:
        pass
    for site in site_dirs(root, "prefix"):
        return site.parent.name.replace("python", "")
    return ""


def _installed_by_uv(dist_info: Path) -> bool:
    try:
        with open(dist_info / "INSTALLER", "rb") as f:
            return f.read(16).strip() == b"uv"
    except OSError:
        return False


def _hardlink_archive(cache: Cache, name: str, distinfo: str, st: os.stat_result, hint: str) -> str:
    """Find the archive a hardlinked METADATA came from: the previous answer, else the wheels bucket."""
    candidates: List[str] = [hint] if hint else []
    if not hint:
        candidates = [aid for _link, aid in cache.wheel_links(normalize(name))]
    for aid in candidates:
        try:
            ast = os.stat(cache.archive_path(aid) / distinfo / "METADATA")
        except (OSError, AssertionError):
            continue
        if (ast.st_dev, ast.st_ino) == (st.st_dev, st.st_ino):
            return aid
    if hint:
        return _hardlink_archive(cache, name, distinfo, st, "")
    return ""


def scan(root: Path, kind: str, cache: Cache, previous: Optional[Mapping[str, Dist]] = None) -> Dict[str, Dist]:
    """Every distribution installed from this cache into the environment, keyed ``name==version``.

    Raises OSError when the environment cannot be read (the caller keeps what it had recorded).
    """
    previous = previous or {}
    found: Dict[str, Dist] = {}
    for site in site_dirs(root, kind):
        for entry in os.listdir(site):
            if not entry.endswith(".dist-info"):
                continue
            stem = entry[: -len(".dist-info")]
            name, _, version = stem.partition("-")
            if not version:
                continue
            dist_info = site / entry
            meta = dist_info / "METADATA"
            try:
                target = os.readlink(meta)
            except OSError:
                target = None
            if target is not None:
                aid = cache.archive_of_link(target)
                if aid:
                    d = Dist(normalize(name), version, SYMLINK, aid)
                    found[d.key] = d
                continue
            try:
                st = os.stat(meta)
            except FileNotFoundError:
                continue
            key = f"{normalize(name)}=={version}"
            if st.st_nlink > 1:
                prev = previous.get(key)
                hint = prev.archive if prev and prev.mode == HARDLINK else ""
                aid = _hardlink_archive(cache, name, entry, st, hint)
                found[key] = Dist(normalize(name), version, HARDLINK, aid)
            elif key in previous and previous[key].mode == COPY or _installed_by_uv(dist_info):
                found[key] = Dist(normalize(name), version, COPY)
    return found


def dangling(root: Path, kind: str, cache: Cache) -> List[str]:
    """Distributions whose METADATA symlink into this cache no longer resolves."""
    out = []
    for d in scan(root, kind, cache).values():
        if d.mode == SYMLINK and not cache.archive_path(d.archive).is_dir():
            out.append(d.key)
    return out
