"""uv-shim status | envs | why | doctor | adopt, with the real uv and real environments."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import World
from test_protection import _refresh_scenario


def shim_cmd(w: World, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess:
    out = subprocess.run(
        [sys.executable, "-m", "shim", *args], env=w.env(**env), capture_output=True, text=True, cwd=w.root
    )
    if check and out.returncode != 0:
        raise AssertionError(f"uv-shim {' '.join(args)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out


@pytest.fixture
def scene(world: World, wheels):
    """A live symlink venv, a deleted one, a hardlink venv, and one of another host."""
    live, gone, hard, other = (world.venv(n) for n in ("live", "gone", "hard", "other"))
    world.install(live, "alpha==1.0", "beta==1.0", find_links=wheels)
    world.install(gone, "alpha==2.0", find_links=wheels)
    world.install(hard, "gamma==1.0", find_links=wheels, mode="hardlink")
    world.install(other, "beta==1.0", find_links=wheels, UV_SHIM_HOST_ID="container-9")
    shutil.rmtree(gone)
    return {"live": live, "gone": gone, "hard": hard, "other": other}


def test_envs_table_and_json(world: World, scene):
    out = shim_cmd(world, "envs")
    header, *rows = out.stdout.splitlines()
    assert header.split() == ["PATH", "WHAT", "HOST", "LINK", "DISTS", "LAST", "USED", "STATE"]
    assert [r.split()[0] for r in rows] == sorted(r.split()[0] for r in rows)  # by path
    assert len(rows) == 4
    doc = json.loads(shim_cmd(world, "envs", "--json").stdout)
    by_path = {e["path"]: e for e in doc["environments"]}
    assert set(doc) == {"cache", "environments"}
    for e in doc["environments"]:
        assert isinstance(e["host"], str)
        assert isinstance(e["this_host"], bool) and "(" not in e["host"]
        assert set(e) == {
            "path",
            "what",
            "host",
            "this_host",
            "host_id",
            "link_modes",
            "distributions",
            "pinned_archives",
            "last_used",
            "last_used_age",
            "state",
            "reason",
        }
    assert by_path[str(scene["live"].resolve())]["state"] == "live"
    assert by_path[str(scene["live"].resolve())]["distributions"] == 2
    assert by_path[str(scene["gone"].resolve())]["state"] == "dead"
    assert by_path[str(scene["hard"].resolve())]["link_modes"] == ["hardlink"]
    assert by_path[str(scene["other"].resolve())]["state"] == "foreign"
    assert by_path[str(scene["other"].resolve())]["this_host"] is False
    assert by_path[str(scene["live"].resolve())]["this_host"] is True
    assert {e["what"] for e in doc["environments"]} == {"venv"}
    assert len(world.records()) == 4  # read-only: the dead root is still recorded


def test_status(world: World, scene):
    doc = json.loads(shim_cmd(world, "status", "--json").stdout)
    assert set(doc) == {
        "cache",
        "uv_version",
        "size_bytes",
        "archives",
        "policies",
        "environments",
        "next_lease_end_seconds",
        "last_prune",
        "largest",
        "auto_gc",
    }
    assert doc["auto_gc"] == {"policy": None, "last": None, "next_due": None}
    assert [r["name"] for r in doc["largest"]][:1] and all(
        set(r) >= {"name", "version", "bytes"} for r in doc["largest"]
    )
    assert doc["archives"]["symlinked"]["count"] == 2  # alpha 1.0 and beta (live, other host)
    assert doc["archives"]["hardlinked"]["count"] == 1  # gamma
    assert doc["archives"]["only_cached"]["count"] == 1  # alpha 2.0 of the deleted venv
    assert doc["environments"] == {"live": 2, "dead": 1, "other_hosts": 1, "expired": 0, "unverifiable": 0, "broken": 0}
    assert doc["policies"]["uv cache prune --ci"]["archives"] == 2  # alpha 2.0, and gamma (hardlinked, unpinned)
    assert 29 * 86400 < doc["next_lease_end_seconds"] <= 30 * 86400
    assert doc["last_prune"] is None
    world.uv("cache", "prune")
    text = shim_cmd(world, "status").stdout
    assert "Last prune:" in text and "s ago" in text and "1 on other hosts (next lease ends in 29d)" in text


def test_why(world: World, scene):
    out = shim_cmd(world, "why", "alpha")
    assert "alpha==1.0 (" in out.stdout and f"used by {scene['live'].resolve()}" in out.stdout
    assert "alpha==2.0 (" in out.stdout and "`uv cache clean alpha` would remove it" in out.stdout
    doc = json.loads(shim_cmd(world, "why", "gamma==1.0", "--json").stdout)
    (g,) = doc["archives"]
    assert g["hardlinked"] and g["environments"] == [] and g["referenced_by_uv"]
    by_id = shim_cmd(world, "why", "--", g["id"]).stdout  # ids may start with "-"
    assert by_id.startswith(f"gamma==1.0 ({g['id']})")
    missing = shim_cmd(world, "why", "no-such-thing", check=False)
    assert missing.returncode == 1 and missing.stderr.splitlines() == [
        f"uv-shim: error: no archive or package named `no-such-thing` in {world.cache}"
    ]


def test_doctor_repairs_an_environment_broken_before_the_shim(world: World, wheels):
    a, b = _refresh_scenario(world, wheels, shim=False)
    world.prune()  # the bare uv breaks a
    assert world.value(a, "alpha") is None
    out = shim_cmd(world, "doctor", str(a), str(b), check=False)
    assert out.returncode == 1
    assert f"{a}: 1 broken distribution" in out.stdout and "alpha==1.0 (archive" in out.stdout
    assert str(b) not in out.stdout
    fixed = shim_cmd(world, "doctor", "--fix", str(a), "--", "--no-index", "--find-links", str(world.root / "wheels"))
    assert "(fixed)" in fixed.stdout
    assert world.value(a, "alpha") == "alpha-1.0"
    assert str(a.resolve()) in world.records()  # and now it is protected
    world.prune()
    assert world.value(a, "alpha") == "alpha-1.0"
    notenv = shim_cmd(world, "doctor", str(world.root / "wheels"), check=False)
    assert (
        notenv.returncode == 1
        and notenv.stderr
        == f"uv-shim: error: {world.root / 'wheels'} is not a Python environment (no pyvenv.cfg or site-packages)\n"
    )
    clean = shim_cmd(world, "doctor", "--json", str(a))
    assert json.loads(clean.stdout)["broken"] == [] and "No broken environments found" in clean.stderr


def test_doctor_checks_recorded_environments_by_default(world: World, wheels):
    v = world.venv("v")
    world.install(v, "alpha==1.0", find_links=wheels)
    for aid in world.pinned():  # another tool (a size-budget cleaner, say) deletes its archive
        shutil.rmtree(world.cache / "archive-v0" / aid)
    doc = json.loads(shim_cmd(world, "doctor", "--json", check=False).stdout)
    assert [e["path"] for e in doc["broken"]] == [str(v.resolve())]
    assert doc["broken"][0]["distributions"][0]["name"] == "alpha"


def test_adopt(world: World, wheels):
    a, b = world.venv("a"), world.venv("b")
    nested = world.root / "projects" / "p1"
    nested.mkdir(parents=True)
    c = world.venv("projects/p1/.venv")
    for v in (a, b, c):
        world.install(v, "alpha==1.0", find_links=wheels, shim=False)
    assert world.records() == {}
    out = shim_cmd(world, "adopt", str(a))
    assert "Adopted 1 environment" in out.stderr
    shim_cmd(world, "adopt", str(a))  # idempotent
    assert list(world.records()) == [str(a.resolve())]
    doc = json.loads(shim_cmd(world, "adopt", "--discover", str(world.root), "--json").stdout)
    found = sorted(e["path"] for e in doc["environments"])
    assert found == sorted(str(p.resolve()) for p in (a, b, c))
    assert all(e["recorded"] for e in doc["environments"])
    assert sorted(world.records()) == found
    world.prune()
    assert all(world.value(v, "alpha") == "alpha-1.0" for v in (a, b, c))
    bad = shim_cmd(world, "adopt", str(world.root / "projects"), check=False)
    assert bad.returncode == 1 and len(bad.stderr.splitlines()) == 1 and "is not a Python environment" in bad.stderr


def _documented(command: str) -> list[list[tuple]]:
    """The key paths README's JSON list gives for ``command``: `a`, `a.b`, `a.{x,y}`,
    `a[].{x,y}`, `a["k1"|"k2"].{x,y}`, as steps ("key", names) / ("list",) / ("keys", names).
    Only the comma-separated items count: a backticked word inside a remark is not a key."""
    import re

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    bullet = re.search(rf"^- `{command}`: (.*?)(?=^- `|^\n)", readme, re.M | re.S)
    assert bullet, command
    paths = []
    for m in re.finditer(r"(?:^|,\s+)`([a-z_][^`]*)`", bullet.group(1)):  # the list's items, not remarks
        steps: list[tuple] = []
        for part in re.findall(r"\{[^}]*\}|[^.]+", m.group(1)):
            if part.startswith("{"):
                steps.append(("key", part[1:-1].split(",")))
                continue
            name, _, bracket = part.partition("[")
            steps.append(("key", [name]))
            if bracket == "]":
                steps.append(("list",))
            elif bracket:
                steps.append(("keys", re.findall(r'"([^"]+)"', bracket)))
        if all(re.fullmatch(r"[a-z_]+", n) for kind, *rest in steps if kind == "key" for n in rest[0]):
            paths.append(steps)
    return paths


def _holds(doc, steps) -> bool:
    if not steps:
        return True
    kind, *rest = steps[0]
    if kind == "list":
        return isinstance(doc, list) and all(_holds(item, steps[1:]) for item in doc[:3])
    names = rest[0]
    return isinstance(doc, dict) and all(n in doc and _holds(doc[n], steps[1:]) for n in names)


@pytest.mark.parametrize("command", ["status", "envs", "why", "du", "doctor", "adopt"])
def test_readme_json_schemas_are_true(world: World, scene, command):
    args = {"why": ["beta"], "adopt": [str(scene["live"])]}.get(command, [])
    doc = json.loads(shim_cmd(world, command, *args, "--json", check=command != "doctor").stdout)
    documented = _documented(command)
    assert {p[0][1][0] for p in documented} == set(doc), (command, sorted(set(doc)))  # every top-level key, no more
    for steps in documented:
        assert _holds(doc, steps), (command, steps)
