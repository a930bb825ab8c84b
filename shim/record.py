"""A root's record: the ``Record`` type and its TOML, as written to ``root.toml``.

The record carries a ``fingerprint`` of its distributions. The no-op path (an install that
changed nothing) compares fingerprints with a byte search and never parses TOML (tomllib alone
costs more than the whole check); a prune reads only the header (``parse_header``) of thousands
of records. Where records live and how they are written: ``shim.manifest``.
"""

from __future__ import annotations

import sys

from shim.cache import is_archive_id
from shim.envscan import Dist

TYPE_CHECKING = False
if TYPE_CHECKING:
    from datetime import datetime
    from typing import Any, Optional

try:  # the bare C hash: hashlib pulls in OpenSSL, several milliseconds at startup
    from _sha2 import sha256 as _sha256  # Python >= 3.12
except ImportError:  # pragma: no cover - depends on the Python version
    try:
        from _sha256 import sha256 as _sha256
    except ImportError:
        from hashlib import sha256 as _sha256

SCHEMA = 1


class RecordError(Exception):
    """The record exists but cannot be used (unreadable, corrupt, or a newer schema)."""

    def __init__(self, message: str, future: bool = False) -> None:
        super().__init__(message)
        self.future = future  # written by a newer uv-shim: leave it alone, never overwrite it


def now() -> datetime:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).replace(microsecond=0)


def entry_key(host_id: str, env_path: str) -> str:
    return _sha256(f"{host_id}\0{env_path}".encode("utf-8", "surrogateescape")).hexdigest()[:24]


def fingerprint(dists: dict[str, Dist]) -> str:
    lines = "\n".join(f"{k} {d.mode} {d.archive}" for k, d in sorted(dists.items()))
    return _sha256(lines.encode("utf-8", "surrogateescape")).hexdigest()[:32]


class Record:
    """One root: an environment, who recorded it, and what it links from the cache."""

    def __init__(
        self,
        path: str,
        host: str,
        host_id: str,
        kind: str = "venv",
        python: str = "",
        uv_version: str = "",
        link_modes: Optional[list[str]] = None,
        registered: Optional[datetime] = None,
        last_used: Optional[datetime] = None,
        scanned: bool = False,
        distributions: Optional[dict[str, Dist]] = None,
        site_stamp: str = "",
        inode: str = "",
    ) -> None:
        self.path = path
        self.host = host
        self.host_id = host_id
        self.kind = kind
        self.python = python
        self.uv_version = uv_version
        self.link_modes = link_modes or []
        self.registered = registered or now()
        self.last_used = last_used or self.registered
        self.scanned = scanned  # False until scanned after uv ran (an install may be in flight)
        self.distributions = distributions or {}
        self.site_stamp = site_stamp  # mtimes of the site-packages folders at the last scan
        self.inode = inode  # "device:inode" of the environment folder: finds it again after a move

    def set_dists(self, dists: dict[str, Dist]) -> None:
        self.distributions = dict(sorted(dists.items()))
        self.link_modes = sorted({d.mode for d in dists.values()})
        self.scanned = True

    @property
    def pinned(self) -> list[str]:
        """Archives this environment links by symlink: the ones that need a pin."""
        return sorted({d.archive for d in self.distributions.values() if d.mode == "symlink" and d.archive})


def _record(values: dict[str, Any], **extra: Any) -> Record:
    """A Record from the top-level keys of a parsed record (full TOML or header only)."""
    return Record(
        path=str(values["path"]),
        host=str(values.get("host", "")),
        host_id=str(values["host_id"]),
        kind=str(values.get("kind", "venv")),
        python=str(values.get("python", "")),
        uv_version=str(values.get("uv_version", "")),
        site_stamp=str(values.get("site_stamp", "")),
        inode=str(values.get("inode", "")),
        **extra,
    )


def _ts(value: Any, what: str) -> datetime:
    from datetime import datetime, timezone

    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    raise RecordError(f"{what} is not a date-time")


def parse(data: bytes) -> Record:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python < 3.11
        import tomli as tomllib
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise RecordError(f"not valid TOML: {e}") from None
    schema = doc.get("schema")
    if not isinstance(schema, int):
        raise RecordError("no schema version")
    if schema > SCHEMA:
        raise RecordError(
            f"schema {schema} is newer than this uv-shim understands ({SCHEMA}); upgrade uv-shim", future=True
        )
    try:
        dists = {}
        for key, d in (doc.get("distributions") or {}).items():
            archive = str(d.get("archive", ""))
            if archive and not is_archive_id(archive):
                raise RecordError(f"{key}: `{archive}` is not an archive id")
            dists[str(key)] = Dist(str(d["name"]), str(d["version"]), str(d["mode"]), archive)
        return _record(
            doc,
            registered=_ts(doc.get("registered"), "registered"),
            last_used=_ts(doc.get("last_used"), "last_used"),
            scanned=bool(doc.get("scanned", False)),
            link_modes=[str(m) for m in doc.get("link_modes", [])],
            distributions=dists,
        )
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise RecordError(f"missing or malformed field: {e}") from None


_HEADER_KEYS = (
    "schema",
    "path",
    "host",
    "host_id",
    "kind",
    "python",
    "uv_version",
    "last_used",
    "registered",
    "fingerprint",
    "site_stamp",
    "inode",
)


def parse_header(data: bytes) -> tuple[Record, str]:
    """(record without its distributions, fingerprint) from the top-level keys only.

    What a prune needs for each of thousands of roots, without a TOML parse: the keys above are
    written by ``dump`` first, one per line, strings as JSON-compatible TOML basic strings.
    Anything unexpected raises RecordError, and the caller falls back to ``load``.
    """
    import json
    from datetime import datetime, timezone

    values: dict[str, Any] = {}
    lines = iter(data.decode("utf-8", "replace").splitlines())
    for line in lines:
        if line.startswith("["):
            break
        key, sep, raw = line.partition(" = ")
        if key == "link_modes" and raw.startswith("["):  # ["a", "b"], or one item per line until "]"
            items = raw[1:]
            while not items.rstrip().endswith("]"):
                items += next(lines, "]")
            values[key] = [m.strip().strip('"') for m in items.rstrip()[:-1].split(",") if m.strip()]
            continue
        if not sep or key not in _HEADER_KEYS:
            continue
        try:
            if raw.startswith('"'):
                plain = raw[1:-1]
                values[key] = plain if raw.endswith('"') and "\\" not in plain and '"' not in plain else json.loads(raw)
            elif key == "schema":
                values[key] = int(raw)
            else:
                stamp = datetime.fromisoformat(raw.replace("Z", "+00:00"))
                values[key] = stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)
        except ValueError as e:
            raise RecordError(f"unreadable {key}: {e}") from None
    if values.get("schema") != SCHEMA or not all(k in values for k in ("path", "host_id", "fingerprint", "last_used")):
        raise RecordError("not a header this uv-shim writes")
    rec = _record(
        values,
        registered=values.get("registered"),
        last_used=values["last_used"],
        scanned=True,
        link_modes=values.get("link_modes"),
    )
    return rec, str(values["fingerprint"])


def dump(record: Record) -> bytes:
    import tomli_w

    doc: dict[str, Any] = {
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
        "fingerprint": fingerprint(record.distributions),
        "site_stamp": record.site_stamp,
        "inode": record.inode,
        "distributions": {
            k: {"name": d.name, "version": d.version, "mode": d.mode, **({"archive": d.archive} if d.archive else {})}
            for k, d in record.distributions.items()
        },
    }
    return tomli_w.dumps(doc).encode("utf-8")
