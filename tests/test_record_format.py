"""The record's hand-written TOML (``shim.record.dump``) against tomli-w and tomllib.

The hot path writes records without tomli-w and reads them without tomllib (both, with the
``re`` and ``datetime`` they import, cost more than the bookkeeping itself). These tests hold
the hand-written writer to the library's bytes, and the header reader to the library's parse,
for any record: paths with quotes, backslashes, control characters, non-ASCII; any keys.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone

import pytest
import tomli_w
from hypothesis import given, settings
from hypothesis import strategies as st

from shim import envscan
from shim.envscan import Dist
from shim.record import SCHEMA, Record, RecordError, dump, fingerprint, format_time, parse, parse_header, parse_time

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

pytestmark = pytest.mark.fast

text = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)  # strict UTF-8: no lone surrogates
epochs = st.integers(min_value=0, max_value=253402300799)  # 1970 .. 9999-12-31T23:59:59
dists = st.dictionaries(
    text,
    st.builds(Dist, text, text, st.sampled_from(["symlink", "hardlink", "copy"]), st.sampled_from(["", "a" * 16])),
    max_size=4,
)


def _by_tomli_w(record: Record) -> bytes:
    """What uv-shim wrote with tomli-w before the hand-written writer (the same document)."""
    utc = timezone.utc
    doc = {
        "schema": SCHEMA,
        "path": record.path,
        "host": record.host,
        "host_id": record.host_id,
        "kind": record.kind,
        "python": record.python,
        "uv_version": record.uv_version,
        "link_modes": record.link_modes,
        "registered": datetime.fromtimestamp(record.registered_at, utc),
        "last_used": datetime.fromtimestamp(record.last_used_at, utc),
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


@settings(max_examples=300, deadline=None)
@given(path=text, host=text, stamp=text, registered=epochs, used=epochs, dists=dists, scanned=st.booleans())
def test_the_writer_writes_what_tomli_w_writes_and_both_readers_agree(
    path, host, stamp, registered, used, dists, scanned
):
    rec = Record(path, host, "hid", python="3.12", uv_version="0.13.9", registered=registered, last_used=used)
    rec.site_stamp = stamp
    if dists:
        rec.set_dists(dists)
    rec.scanned = scanned
    data = dump(rec)
    assert data == _by_tomli_w(rec)
    doc = tomllib.loads(data.decode("utf-8"))
    assert doc["path"] == path and doc["site_stamp"] == stamp
    assert doc["registered"].timestamp() == registered and doc["last_used"].timestamp() == used
    if not path or "\0" in path:  # no environment has such a path: both readers refuse the record
        for read in (parse, parse_header):
            with pytest.raises(RecordError, match="empty or holds a NUL"):
                read(data)
        return
    full = parse(data)
    assert (full.path, full.registered_at, full.last_used_at, full.distributions) == (
        path,
        registered,
        used,
        rec.distributions,
    )
    head, fp = parse_header(data)
    assert (head.path, head.host, head.site_stamp, head.registered_at, head.last_used_at) == (
        path,
        host,
        stamp,
        registered,
        used,
    )
    assert fp == fingerprint(rec.distributions) and head.link_modes == rec.link_modes


@given(epochs)
def test_times_read_without_datetime_are_datetimes_own(epoch):
    assert parse_time(format_time(epoch)) == epoch
    iso = datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert parse_time(iso) == epoch


@pytest.mark.parametrize(
    "raw", ["2026-02-30 00:00:00+00:00", "2026-13-01 00:00:00+00:00", "2026-01-01 24:00:00Z", "yesterday"]
)
def test_an_impossible_time_is_an_error_not_a_guess(raw):
    with pytest.raises(ValueError):
        parse_time(raw)


def test_an_offset_time_goes_through_datetime():
    assert parse_time("2026-01-01T02:00:00+02:00") == datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp()


def test_a_stamp_is_kept_only_when_settled(tmp_path):
    """A site-packages mtime younger than RACY seconds at the scan is not trusted later (a change
    in the same clock tick would not move it); an older one is."""
    site = tmp_path / "lib" / "python3.12" / "site-packages"
    site.mkdir(parents=True)
    stamp = envscan.site_stamp(str(tmp_path), "prefix")
    assert stamp and envscan.settled(stamp, time.time()) == ""
    old = time.time() - 10
    import os

    os.utime(site, (old, old))
    stamp = envscan.site_stamp(str(tmp_path), "prefix")
    assert envscan.settled(stamp, time.time()) == stamp
    assert envscan.settled("?", time.time()) == ""
