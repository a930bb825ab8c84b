"""A root's record: the ``Record`` type and its TOML, as written to ``root.toml``.

The record carries a ``fingerprint`` of its distributions. The hot paths never parse TOML:
tomllib (and the ``re`` it compiles) costs more than the whole bookkeeping of an install, and so
do ``datetime`` and ``json``. An install reads only the header (``parse_header``), as a prune does
for thousands of records, and ``dump`` writes our fixed schema by hand, byte for byte what
tomli-w writes for it (``tests/test_record_format.py`` checks both against tomllib and tomli-w).
Times are kept as epoch seconds; ``datetime`` is imported only by the views that print dates.
Where records live and how they are written: ``shim.manifest``.
"""

from __future__ import annotations

import sys
import time

from shim.cache import is_archive_id
from shim.envscan import Dist

TYPE_CHECKING = False
if TYPE_CHECKING:
    from datetime import datetime
    from typing import Any, Optional, Union

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


def now() -> float:
    """Now, in whole epoch seconds (what a record keeps)."""
    return float(int(time.time()))


def _epoch(value: Union[datetime, float]) -> float:
    return float(value) if isinstance(value, (int, float)) else value.timestamp()


def _datetime(epoch: float) -> datetime:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(epoch, timezone.utc)


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
        registered: Union[datetime, float, None] = None,
        last_used: Union[datetime, float, None] = None,
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
        self.registered_at = now() if registered is None else _epoch(registered)  # epoch seconds
        self.last_used_at = self.registered_at if last_used is None else _epoch(last_used)
        self.scanned = scanned  # False until scanned after uv ran (an install may be in flight)
        self.distributions = distributions or {}
        self.site_stamp = site_stamp  # mtimes of the site-packages folders at the last scan
        self.inode = inode  # "device:inode" of the environment folder: finds it again after a move

    @property
    def last_used(self) -> datetime:
        return _datetime(self.last_used_at)

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
    path = str(values["path"])
    if "\0" in path or not path:  # no path has one (a record in a shared cache is untrusted input)
        raise RecordError("its path is empty or holds a NUL character")
    return Record(
        path=path,
        host=str(values.get("host", "")),
        host_id=str(values["host_id"]),
        kind=str(values.get("kind", "venv")),
        python=str(values.get("python", "")),
        uv_version=str(values.get("uv_version", "")),
        site_stamp=str(values.get("site_stamp", "")),
        inode=str(values.get("inode", "")),
        **extra,
    )


def header_doc(rec: Record) -> dict[str, Any]:
    """The header of ``rec`` as plain values (what ``shim.rootmemo`` keeps); ``from_header_doc``
    reads them back as ``parse_header`` would have."""
    return {
        "path": rec.path,
        "host": rec.host,
        "host_id": rec.host_id,
        "kind": rec.kind,
        "python": rec.python,
        "uv_version": rec.uv_version,
        "site_stamp": rec.site_stamp,
        "inode": rec.inode,
        "link_modes": rec.link_modes,
        "registered": rec.registered_at,
        "last_used": rec.last_used_at,
    }


def from_header_doc(values: dict[str, Any]) -> Record:
    """A header-only Record from ``header_doc``'s values (untrusted: RecordError, TypeError or
    ValueError for anything malformed)."""
    modes = values["link_modes"]
    if not isinstance(modes, list):
        raise TypeError("link_modes is not a list")
    return _record(
        values,
        registered=_epoch_value(values["registered"]),
        last_used=_epoch_value(values["last_used"]),
        scanned=True,
        link_modes=[str(m) for m in modes],
    )


def _epoch_value(value: Any) -> float:
    """A plausible time in epoch seconds, or ValueError (no NaN, no infinity, no huge number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1e11:
        raise ValueError(f"not a time: {value!r}"[:80])
    return float(value)


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
    values: dict[str, Any] = {}
    end = data.find(b"\n[")  # the tables (distributions) start there: not read at all
    text = (data if end < 0 else data[:end]).decode("utf-8", "replace")
    lines = iter(text.split("\n"))  # not splitlines: U+2028 may be in a path
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
                if raw.endswith('"') and "\\" not in plain and '"' not in plain:
                    values[key] = plain
                else:
                    import json  # escapes (rare): TOML's basic strings as we write them are JSON's

                    values[key] = json.loads(raw, strict=False)  # a tab stays a tab in TOML
            elif key == "schema":
                values[key] = int(raw)
            else:
                values[key] = parse_time(raw)
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


def parse_time(raw: str) -> float:
    """Epoch seconds of a TOML offset date-time as records hold them (``2026-11-22 08:16:34+00:00``,
    or with ``T`` / ``Z``) without importing datetime; anything else through ``fromisoformat``."""
    if len(raw) in (20, 25) and raw[4] == raw[7] == "-" and raw[13] == raw[16] == ":" and raw[10] in " T":
        if (
            raw[19:] in ("Z", "+00:00")
            and (raw[:4] + raw[5:7] + raw[8:10] + raw[11:13] + raw[14:16] + raw[17:19]).isdigit()
        ):
            y, mo, d = int(raw[:4]), int(raw[5:7]), int(raw[8:10])
            h, mi, s = int(raw[11:13]), int(raw[14:16]), int(raw[17:19])
            if 1 <= mo <= 12 and 1 <= d <= _month_days(y, mo) and h < 24 and mi < 60 and s < 60:
                return float(_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s)
    from datetime import datetime, timezone

    stamp = datetime.fromisoformat(raw.replace("Z", "+00:00"))  # ValueError if it is no date-time
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)).timestamp()


def _month_days(y: int, m: int) -> int:
    if m == 2:
        return 29 if y % 4 == 0 and (y % 100 != 0 or y % 400 == 0) else 28
    return 30 if m in (4, 6, 9, 11) else 31


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def format_time(epoch: float) -> str:
    """A record's date-time as tomli-w writes an aware UTC datetime (``str(datetime)``)."""
    t = time.gmtime(int(epoch))
    return f"{t[0]:04d}-{t[1]:02d}-{t[2]:02d} {t[3]:02d}:{t[4]:02d}:{t[5]:02d}+00:00"


_ESCAPES = {"\b": "\\b", "\n": "\\n", "\f": "\\f", "\r": "\\r", '"': '\\"', "\\": "\\\\"}
_BARE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


def _string(s: str) -> str:
    """A TOML basic string, escaped as tomli-w escapes it."""
    if s.isprintable() and '"' not in s and "\\" not in s:
        return f'"{s}"'
    out = []
    for ch in s:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif (ch < " " and ch != "\t") or ch == "\x7f":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _key(k: str) -> str:
    return k if k and _BARE.issuperset(k) else _string(k)


def dump(record: Record) -> bytes:
    """The record's TOML: the header keys first, one per line (``parse_header`` relies on it),
    then one ``[distributions.KEY]`` table each. Strictly UTF-8 (UnicodeEncodeError otherwise)."""
    modes = "".join(f"    {_string(m)},\n" for m in record.link_modes)
    lines = [
        f"schema = {SCHEMA}\n",
        f"path = {_string(record.path)}\n",
        f"host = {_string(record.host)}\n",
        f"host_id = {_string(record.host_id)}\n",
        f"kind = {_string(record.kind)}\n",
        f"python = {_string(record.python)}\n",
        f"uv_version = {_string(record.uv_version)}\n",
        f"link_modes = [\n{modes}]\n" if modes else "link_modes = []\n",
        f"registered = {format_time(record.registered_at)}\n",
        f"last_used = {format_time(record.last_used_at)}\n",
        f"scanned = {'true' if record.scanned else 'false'}\n",
        f"fingerprint = {_string(fingerprint(record.distributions))}\n",
        f"site_stamp = {_string(record.site_stamp)}\n",
        f"inode = {_string(record.inode)}\n",
    ]
    if not record.distributions:
        lines.append("\n[distributions]\n")
    for k, d in record.distributions.items():
        lines.append(
            f"\n[distributions.{_key(k)}]\nname = {_string(d.name)}\nversion = {_string(d.version)}\n"
            f"mode = {_string(d.mode)}\n" + (f"archive = {_string(d.archive)}\n" if d.archive else "")
        )
    return "".join(lines).encode("utf-8")
