"""Roots on disk: one small TOML record per environment, written atomically.

A record lives in ``<cache>/<sdists bucket>/uv-shim/<key>/root.toml`` beside that
environment's pins. ``key`` is derived from the host identity and the environment's real path,
so writers of different environments never touch the same file; writers of the same
environment serialize on ``<key>/.lock`` (filelock).
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List

from shim import paths
from shim.envscan import Dist

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python < 3.11
    import tomli as tomllib

SCHEMA = 1
RECORD = "root.toml"


class RecordError(Exception):
    """The record exists but cannot be used (unreadable, corrupt, or a newer schema)."""


def now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def entry_key(host_id: str, env_path: str) -> str:
    digest = hashlib.sha256(f"{host_id}\0{env_path}".encode("utf-8", "surrogateescape")).hexdigest()
    return digest[:24]


@dataclass
class Record:
    path: str
    host: str
    host_id: str
    kind: str = "venv"
    python: str = ""
    uv_version: str = ""
    link_modes: List[str] = field(default_factory=list)
    registered: datetime = field(default_factory=now)
    last_used: datetime = field(default_factory=now)
    scanned: bool = False  # False until a scan after uv ran (an install may be in flight)
    distributions: Dict[str, Dist] = field(default_factory=dict)

    def set_dists(self, dists: Dict[str, Dist]) -> None:
        self.distributions = dict(sorted(dists.items()))
        self.link_modes = sorted({d.mode for d in dists.values()})
        self.scanned = True

    @property
    def archives(self) -> Dict[str, Dist]:
        """Archive id -> distribution, for every distribution whose archive is known."""
        return {d.archive: d for d in self.distributions.values() if d.archive}

    @property
    def pinned(self) -> List[str]:
        return sorted({d.archive for d in self.distributions.values() if d.mode == "symlink" and d.archive})


def _ts(value: Any, what: str) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    raise RecordError(f"{what} is not a date-time")


def parse(data: bytes) -> Record:
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise RecordError(f"not valid TOML ({e})") from None
    schema = doc.get("schema")
    if not isinstance(schema, int):
        raise RecordError("no schema version")
    if schema > SCHEMA:
        raise RecordError(f"schema {schema} is newer than this uv-shim understands ({SCHEMA}); upgrade uv-shim")
    try:
        dists = {}
        for key, d in (doc.get("distributions") or {}).items():
            dist = Dist(str(d["name"]), str(d["version"]), str(d["mode"]), str(d.get("archive", "")))
            dists[key] = dist
        return Record(
            path=str(doc["path"]),
            host=str(doc.get("host", "")),
            host_id=str(doc["host_id"]),
            kind=str(doc.get("kind", "venv")),
            python=str(doc.get("python", "")),
            uv_version=str(doc.get("uv_version", "")),
            link_modes=[str(m) for m in doc.get("link_modes", [])],
            registered=_ts(doc.get("registered"), "registered"),
            last_used=_ts(doc.get("last_used"), "last_used"),
            scanned=bool(doc.get("scanned", False)),
            distributions=dists,
        )
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise RecordError(f"missing or malformed field ({e})") from None


def dump(record: Record) -> bytes:
    import tomli_w

    doc: Dict[str, Any] = {
        "schema": SCHEMA,
        "path": record.path,
        "host": record.host,
        "host_id": record.host_id,
        "kind": record.kind,
        "python": record.python,
        "uv_version": record.uv_version,
        "link_modes": record.link_modes,
        "registered": record.registered,
        "last_used": record.last_used,
        "scanned": record.scanned,
        "distributions": {
            k: {"name": d.name, "version": d.version, "mode": d.mode, **({"archive": d.archive} if d.archive else {})}
            for k, d in record.distributions.items()
        },
    }
    return tomli_w.dumps(doc).encode("utf-8")


def load(entry: Path) -> Record:
    """Read a record; FileNotFoundError if there is none, RecordError if it is unusable."""
    try:
        with open(entry / RECORD, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise
    except OSError as e:
        raise RecordError(f"cannot read ({e.strerror})") from None
    return parse(data)


def save(entry: Path, record: Record) -> None:
    paths.write_atomic(entry / RECORD, dump(record))


def lock(entry: Path):  # -> filelock.FileLock
    import filelock

    entry.mkdir(parents=True, exist_ok=True)
    return filelock.FileLock(str(entry / ".lock"), timeout=120)


def remove(entry: Path) -> None:
    """Remove an entry's record, lock and pins: only our own files, never what pins point to."""
    try:
        names = os.listdir(entry)
    except FileNotFoundError:
        return
    for name in names:
        p = entry / name
        if p.is_symlink() or p.is_file():
            os.unlink(p)
        elif p.is_dir():
            for sub in os.listdir(p):
                os.unlink(p / sub)  # pins (symlinks) and stray temp links only
            os.rmdir(p)
    try:
        os.rmdir(entry)
    except OSError:
        pass
