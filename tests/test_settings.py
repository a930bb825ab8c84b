"""Every setting is defined once (shim/settings.py) and shown from there: the README's table,
`uv cache prune|clean --help` through the shim. And no value of any of them, however odd, ends
in a traceback: a one-line error naming it (exit 2) or a one-line warning, nothing else."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import World
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shim import cachecmd, policy
from shim.errors import ShimError
from shim.settings import INTERNAL, SETTINGS, readme_table

REPO = Path(__file__).resolve().parent.parent
VARS = [s.var for s in SETTINGS]


@pytest.mark.fast
def test_every_variable_in_the_code_is_a_defined_setting_and_in_the_readme():
    used = set()
    for f in (REPO / "shim").glob("*.py"):
        used |= {v for v in re.findall(r"UV_SHIM_[A-Z_]+", f.read_text()) if not v.endswith("_")}  # not prefixes
    used -= INTERNAL
    assert used == set(VARS), (sorted(used - set(VARS)), sorted(set(VARS) - used))
    assert readme_table() in (REPO / "README.md").read_text()


@pytest.mark.parametrize("command", ["prune", "clean"])
def test_cache_help_through_the_shim_lists_the_shims_options(world: World, command):
    out = world.uv("cache", command, "--help")
    bare = world.uv("cache", command, "--help", shim=False)
    assert out.stdout.startswith(bare.stdout)  # uv's own help first, as uv prints it
    tail = out.stdout[len(bare.stdout) :]
    for s in SETTINGS:
        if f"uv cache {command}" in s.command:
            assert f"[env: {s.var}=]" in tail and (not s.option or f"      {s.option}\n" in tail), s.var
    assert "Traceback" not in out.stderr and out.stderr == bare.stderr


values = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["inf", "-inf", "nan", "1e400", "-5", "", " ", "0", "1e-400", "10GiB", "30d", "１２"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
)
toml_values = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.integers(max_value=9), max_size=2),
)


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return (
            '"'
            + value.replace("\\", "\\\\").replace('"', '\\"').encode("unicode_escape").decode().replace('\\\\"', '\\"')
            + '"'
        )
    return repr(value)


@pytest.mark.fast
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(var=st.sampled_from(VARS), value=values, key=st.sampled_from(VARS), toml_value=toml_values)
@example(var="UV_SHIM_MAX_SIZE", value="1e400", key="UV_SHIM_LEASE", toml_value=float("inf"))
@example(var="UV_SHIM_LEASE", value="nan", key="UV_SHIM_AUTO_EVERY", toml_value=-1)
def test_no_value_of_any_setting_raises_anything_but_a_one_line_error(tmp_path, var, value, key, toml_value):
    setting = next(s for s in SETTINGS if s.var == key)
    config = tmp_path / "config.toml"
    if setting.key:
        table, _, name = setting.key.partition(".")
        config.write_text(f"[{table}]\n{name} = {_toml(toml_value)}\n")
    env = {var: value, "UV_SHIM_CONFIG": str(config)}
    warnings: list[str] = []
    for parse in (
        lambda: policy.policy_from(["cache", "prune"], env, warnings.append),
        lambda: policy.auto_policy(env, warnings.append),
        lambda: cachecmd.lease_seconds(env),
        lambda: cachecmd.lock_timeout(env),
    ):
        try:
            parse()
        except (ShimError, policy.PolicyError) as e:
            assert "\n" not in str(e) and var in str(e)
    assert all("\n" not in w for w in warnings)
    flag = next((s.option.split()[0] for s in SETTINGS if s.var == var and s.option.startswith("--max")), None)
    if flag:
        try:
            policy.policy_from([flag, value], {}, None)
        except policy.PolicyError as e:
            assert "\n" not in str(e) and flag in str(e)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(var=st.sampled_from(VARS), value=values)
@example(var="UV_SHIM_LEASE", value="1e400")
@example(var="UV_SHIM_MAX_SIZE", value="nan")
def test_no_value_ends_in_a_traceback_through_the_real_commands(world: World, var, value):
    if "\x00" in value:
        return  # no process can carry it in its environment
    for cmd in (
        [sys.executable, "-m", "shim", "status", "--json"],
        [str(world.shim_uv), "cache", "prune", "--dry-run"],
    ):
        out = subprocess.run(cmd, env=world.env(**{var: value}), capture_output=True, text=True, cwd=world.root)
        assert "Traceback" not in out.stderr and out.returncode in (0, 1, 2), (cmd, out.stderr)
        if out.returncode:
            assert len([ln for ln in out.stderr.splitlines() if "error" in ln]) == 1, out.stderr


@pytest.mark.parametrize(
    "env,coloured",
    [
        ({"NO_COLOR": None}, False),  # not a terminal
        ({"NO_COLOR": None, "FORCE_COLOR": "1"}, True),
        ({"NO_COLOR": "1", "FORCE_COLOR": "1"}, False),  # NO_COLOR wins, as in uv
        ({"NO_COLOR": None, "CLICOLOR_FORCE": "1"}, True),
    ],
)
def test_errors_are_coloured_as_uv_colours_them(world: World, env, coloured):
    out = subprocess.run(
        [sys.executable, "-m", "shim", "why", "no-such-package"], env=world.env(**env), capture_output=True, text=True
    )
    assert out.returncode == 1 and out.stderr.count("\n") == 1
    assert ("\x1b[1m\x1b[31merror\x1b[0m" in out.stderr) == coloured, out.stderr
    assert out.stderr.startswith("uv-shim: ")


@pytest.mark.parametrize("color", ["always", "never"])
def test_an_intercepted_commands_warning_follows_its_color_option(world: World, wheels, color):
    v = world.venv("v")
    gone = world.root / "gone"
    gone.mkdir()
    script = f"cd {gone} && rmdir {gone} && exec {world.shim_uv} --color {color} pip install -q --python {v}/bin/python --no-index --find-links {wheels} alpha==1.0"
    out = subprocess.run(
        ["sh", "-c", script],
        env=world.env(NO_COLOR=None, FORCE_COLOR="1") if color == "never" else world.env(),  # the flag wins both ways
        capture_output=True,
        text=True,
    )
    line = next(ln for ln in out.stderr.splitlines() if ln.startswith("uv-shim: "))
    assert ("\x1b[" in line) == (color == "always"), line


def test_forced_colours_do_not_cost_the_protection(world: World, wheels):
    """FORCE_COLOR made `uv cache dir` print its answer in escape codes: the shim then found "no
    cache" and handed `uv cache clean` to the bare uv, which removed what live environments use.
    Control: the bare clean breaks the same environment."""
    v = world.venv("v")
    world.install(v, "alpha==1.0", find_links=wheels)
    out = world.uv("cache", "clean", NO_COLOR=None, FORCE_COLOR="1")
    assert world.works(v), out.stderr
    world.uv("cache", "clean", shim=False, NO_COLOR=None, FORCE_COLOR="1")
    assert not world.works(v)


@pytest.mark.parametrize("flag", ["-h", "-qh", "-hq", "--help"])
def test_asking_for_help_never_prunes(world: World, wheels, flag):
    """`-qh` is help too: it ran a real prune with the policy in force (a review found it).
    Control: the same command without help evicts the archive."""
    gone = world.venv("gone")
    world.install(gone, "beta==1.0", find_links=wheels)
    shutil.rmtree(gone)
    out = world.uv("cache", "prune", flag, UV_SHIM_UNUSED="1")
    assert "Usage:" in out.stdout and "uv-shim options" in out.stdout
    assert len(world.archives()) == 1
    world.uv("cache", "prune", "-q", UV_SHIM_UNUSED="1")
    assert world.archives() == []
