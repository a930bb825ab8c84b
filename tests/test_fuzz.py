"""Fuzzing (hypothesis): argv and record parsing never raise anything but their own errors,
and nothing a record says makes the shim delete outside the cache."""

from __future__ import annotations

import os
import string

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shim import manifest, policy, realuv, uvargs
from shim import targets as shim_targets
from shim.cache import Cache, archive_ids, is_archive_id
from shim.confined import Dir
from shim.manifest import pin_id, pin_name
from shim.realuv import UvBuild

pytestmark = pytest.mark.fast  # in-process: the fast tier

WORDS = [
    "pip",
    "install",
    "sync",
    "uninstall",
    "run",
    "venv",
    "tool",
    "cache",
    "prune",
    "clean",
    "add",
    "remove",
    "lock",
    "--",
    "-q",
    "-v",
    "-qq",
    "--cache-dir",
    "--cache-dir=x",
    "-p",
    "--python",
    "--target",
    "--prefix",
    "--system",
    "--directory",
    "--project",
    "--with",
    "--script",
    "--help",
    "-h",
    "help",
    "--no-project",
    "--active",
    "x",
    "",
    "-",
    "--=",
    "-p3.12",
]
argv_items = st.one_of(st.sampled_from(WORDS), st.text(max_size=12))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(argv_items, max_size=12))
@example(argv=["run", "\x00"])  # found by hypothesis: a NUL where a script path may be
def test_argv_model_never_raises(tmp_path, argv):
    inv = uvargs.parse(argv)
    assert isinstance(inv.intercepted, bool)
    env = {"VIRTUAL_ENV": str(tmp_path), "HOME": str(tmp_path)}
    targets = shim_targets.targets(UvBuild("0.13.9", {}, ["UV_WORKING_DIR", "UV_PROJECT"]), inv, str(tmp_path), env)
    assert all(os.path.isabs(t.path) for t in targets)
    uvargs.uses_cached_env(inv)
    uvargs.no_cache(inv, env)


toml_text = st.one_of(
    st.binary(max_size=400),
    st.text(max_size=400).map(str.encode),
    st.builds(
        lambda schema, path, extra: (
            f'schema = {schema}\npath = "{path}"\nhost_id = "h"\nregistered = 2026-01-01T00:00:00Z\nlast_used = 2026-01-01T00:00:00Z\n{extra}'.encode()
        ),
        st.integers(-2, 3),
        st.text(alphabet=string.printable, max_size=30),
        st.text(max_size=120),
    ),
)


@settings(max_examples=400, deadline=None)
@given(toml_text)
def test_record_parsing_raises_only_record_errors(data):
    try:
        rec = manifest.parse(data)
    except manifest.RecordError:
        return
    assert isinstance(rec.path, str)
    for aid in rec.pinned:
        assert isinstance(aid, str)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(toml_text)
def test_header_reading_raises_only_record_errors(tmp_path, data):
    (tmp_path / manifest.RECORD).write_bytes(data)
    try:
        with Dir.top(str(tmp_path)) as d:
            manifest.read_header(d)
    except manifest.RecordError:
        pass


ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


@given(st.one_of(st.text(max_size=70), st.text(alphabet="aZ9_-.é/\0\n", max_size=70)))
def test_an_archive_id_is_ascii_letters_digits_dash_underscore_8_to_64_long(text):
    assert is_archive_id(text) == (8 <= len(text) <= 64 and ID_CHARS.issuperset(text))


@given(st.lists(st.one_of(st.text(max_size=70), st.text(alphabet="aZ9_-.é/\0\n ", max_size=70)), max_size=5))
def test_archive_ids_read_at_once_are_the_ids_read_one_by_one(texts):
    """``archive_ids`` (a memo's pins, all at once) says what ``is_archive_id`` says of each."""
    text = " ".join(texts)
    words = text.split(" ")
    try:
        got = archive_ids(text)
    except ValueError:
        assert not all(is_archive_id(w) or w == "" for w in words)
    else:
        assert all(is_archive_id(w) or w == "" for w in words) and got == {w for w in words if w}


@given(st.text(max_size=70))
def test_pin_names_round_trip_and_never_name_a_path(text):
    if is_archive_id(text):
        name = pin_name(text)
        assert pin_id(name) == text and os.sep not in name
    else:
        assert pin_id(text) is None or is_archive_id(pin_id(text))


@given(st.text(max_size=20))
def test_sizes_and_durations_parse_or_say_so(text):
    for parse in (policy.parse_size,):
        try:
            assert parse(text) >= 0
        except ValueError:
            pass
    from shim.report import parse_duration

    try:
        assert parse_duration(text) >= 0
    except ValueError:
        pass


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(alphabet=string.ascii_letters + string.digits + "-_./", min_size=1, max_size=40), max_size=6))
def test_hostile_record_contents_never_delete_outside_the_cache(tmp_path_factory, names):
    """Records and pins naming paths outside the cache, and entries that are symlinks out of it:
    a dry run and a prune's verification delete nothing outside the cache."""
    from shim import liveness

    root = tmp_path_factory.mktemp("fz")
    outside = root / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep")
    cache_dir = root / "cache"
    build = realuv.UvBuild(
        "0.13.9",
        {
            "sdists": "sdists-v11",
            "wheels": "wheels-v8",
            "environments": "environments-v2",
            "all": "sdists-v11|wheels-v8|archive-v0",
        },
    )
    cache = Cache(str(cache_dir), build)
    os.makedirs(cache.manifest)
    os.makedirs(cache.archives)
    for i, name in enumerate(names):
        entry = os.path.join(cache.manifest, f"k{i}")
        os.makedirs(entry)
        os.symlink(str(outside), os.path.join(entry, "pin_" + name.replace("/", "_") + "_0-0-py3-none-any"))
        os.symlink(str(outside / "precious"), os.path.join(entry, name.replace("/", "_") + ".tmp"))
        with open(os.path.join(entry, manifest.RECORD), "w") as f:
            f.write(
                f'schema = 1\npath = "{outside}/{name}"\nhost_id = "me"\nregistered = 2026-01-01T00:00:00Z\nlast_used = 2026-01-01T00:00:00Z\n[distributions."x==1"]\nname = "x"\nversion = "1"\nmode = "symlink"\narchive = "../../{name}"\n'
            )
    os.symlink(str(outside), os.path.join(cache.manifest, "k-link"))
    liveness.verify(cache, "me", dry_run=True)
    liveness.verify(cache, "me")
    assert (outside / "precious").read_text() == "keep"
    assert sorted(p.name for p in outside.iterdir()) == ["precious"]


def test_a_record_naming_a_path_as_archive_is_refused():
    data = b'schema = 1\npath = "/x"\nhost_id = "h"\nregistered = 2026-01-01T00:00:00Z\nlast_used = 2026-01-01T00:00:00Z\n[distributions."x==1"]\nname = "x"\nversion = "1"\nmode = "symlink"\narchive = "../../etc"\n'
    try:
        manifest.parse(data)
    except manifest.RecordError as e:
        assert "is not an archive id" in str(e)
    else:
        raise AssertionError("accepted")
