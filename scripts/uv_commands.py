#!/usr/bin/env python3
"""Which uv subcommands change a Python environment's installed packages, derived from a real uv.

What it is for: `shim/uvargs.py` keeps `INTERCEPTED`, the table of uv commands the shim must see
because they link packages from the cache into an environment (or create one). This script checks
that table against real uv binaries instead of memory: it asks each binary for its commands
(`uv --help`, then `uv <cmd> --help` for every command that has its own "Commands:" section), runs
every leaf command once in a fresh offline scratch world and reports which environments changed.

    .test-env/bin/python scripts/uv_commands.py --uv .test-env/uv/0.7.0/bin/uv --uv .test-env/uv/0.13.9/bin/uv
    .test-env/bin/python scripts/uv_commands.py --uv ... --json      # machine-readable, on stdout

Options: --python INTERP (the interpreter of every venv; default: the base of the one running this),
--jobs N (commands run in parallel). Three uv versions take about 20 s on 2 cores.

The world (one per command, in a temp dir; nothing outside it is touched): tiny wheels made here
(alpha, beta, delta with a console script, gamma 1.0/1.1 with a console script) served with
`--no-index --find-links` (and `[tool.uv]` in the project); a project depending on alpha, locked
and synced into `.venv`; a plain `uv venv` with alpha installed (VIRTUAL_ENV is not set; pip commands
get `--python <plain venv>`); the tool gamma 1.0 installed in an isolated UV_TOOL_DIR. Before each
command "beta" is added to the project's dependencies without relocking or syncing, so a command
that syncs as a side effect shows it. Every directory holding a `pyvenv.cfg` anywhere in the world
(cache included) is snapshotted before and after: its `*.dist-info` names and the mtime_ns of its
site-packages. A command "changes env" when one of them differs, appears or disappears. A command
that exits non-zero is "error" (with uv's first error line and last cause), "error (changed env)" if
it changed one anyway. Whether uv.lock was rewritten is reported too (not an environment change).

What it cannot see: behaviour behind options it does not pass (only one plausible invocation per
command, see ARGS), anything needing the network (UV_OFFLINE=1: such commands are reported as
"error" with uv's message, e.g. `format`, `build` without a local build backend), environments
created and removed again within the command (build isolation, temp dirs), files changed in an
environment other than site-packages' top level (e.g. a rewritten file inside a package folder),
and commands that prompt (stdin is empty). Dangerous or downloading commands are skipped (SKIP).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional

TIMEOUT = 60
Cmd = tuple[str, ...]
Snap = dict[str, tuple[frozenset[str], int]]  # env dir (relative to the world) -> (dist-infos, mtime_ns)

# The one plausible invocation per command (placeholders: {py} plain venv's python, {world}, {pyver}).
# Not listed: no arguments. An option listed here that the command's --help lacks: no arguments.
ARGS: dict[str, list[str]] = {
    "run": ["python", "-c", "pass"],
    "init": ["sub"],
    "add": ["delta"],
    "remove": ["alpha"],
    "version": ["--bump", "patch"],
    "tool run": ["delta"],
    "tool install": ["delta"],
    "tool upgrade": ["gamma"],
    "tool uninstall": ["gamma"],
    "tool audit": ["gamma"],
    "venv": ["--clear"],  # uv >= 0.8 keeps (0.8-0.9) or refuses (newer) an existing .venv without it
    "python find": ["{pyver}"],
    "python pin": ["{pyver}"],
    "pip compile": ["--python", "{py}", "{world}/requirements.in"],
    "pip sync": ["--python", "{py}", "{world}/requirements.txt"],
    "pip install": ["--python", "{py}", "delta"],
    "pip uninstall": ["--python", "{py}", "alpha"],
    "pip show": ["--python", "{py}", "alpha"],
    **{f"pip {name}": ["--python", "{py}"] for name in ("freeze", "list", "tree", "check")},
}
# Matched against the command words and their prefixes ("auth" covers every auth subcommand).
SKIP: dict[str, str] = {
    "self update": "would replace the uv binary (network)",
    "cache clean": "empties the cache, not an environment operation",
    "cache prune": "removes cache entries, not an environment operation",
    "python install": "downloads Python",
    "python uninstall": "removes managed Pythons (none offline)",
    "python upgrade": "downloads Python",
    "publish": "uploads to an index",
    "auth": "touches credentials",
}


def commands_section(text: str) -> list[str]:
    """The command names of a clap help text's "Commands:" section."""
    names: list[str] = []
    inside = False
    for line in text.splitlines():
        if line.strip() == "Commands:":
            inside = True
        elif inside and not line.strip():
            break
        elif inside and (m := re.match(r"  ([a-z][\w-]*)\s", line)):
            names.append(m.group(1))
    return names


def discover(uv: str, env: dict[str, str], words: Cmd = ()) -> dict[Cmd, str]:
    """Every leaf command of ``uv`` (words -> its --help text), in help order."""
    text = subprocess.run([uv, *words, "--help"], env=env, capture_output=True, text=True, timeout=TIMEOUT).stdout
    subs = commands_section(text)
    if words and not subs:
        return {words: text}
    found: dict[Cmd, str] = {}
    for sub in subs:
        found.update(discover(uv, env, (*words, sub)))
    return found


def wheel(dest: Path, name: str, version: str, script: bool = False) -> None:
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"def main():\n    print('{name} {version}')\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: uv_commands\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    if script:
        files[f"{dist}/entry_points.txt"] = f"[console_scripts]\n{name} = {name}:main\n"
    record = []
    for path, body in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(body.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(body.encode())}")
    files[f"{dist}/RECORD"] = "\n".join([*record, f"{dist}/RECORD,,"]) + "\n"
    with zipfile.ZipFile(dest / f"{name}-{version}-py3-none-any.whl", "w") as zf:
        for path, body in files.items():
            zf.writestr(path, body)


def world_env(root: Path, interpreter: str) -> dict[str, str]:
    drop = {"VIRTUAL_ENV", "CONDA_PREFIX", "PYTHONPATH", "PYTHONHOME"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("UV_") and k not in drop}
    dirs = {"HOME": "home", "XDG_CACHE_HOME": "xdg/cache", "XDG_DATA_HOME": "xdg/data"}
    dirs.update(XDG_CONFIG_HOME="xdg/config", XDG_STATE_HOME="xdg/state", XDG_BIN_HOME="xdg/bin")
    dirs.update(UV_CACHE_DIR="cache", UV_TOOL_DIR="tools", UV_TOOL_BIN_DIR="toolbin")
    dirs.update(UV_PYTHON_INSTALL_DIR="pythons", UV_PYTHON_BIN_DIR="pythonbin")
    for var, rel in dirs.items():
        (root / rel).mkdir(parents=True, exist_ok=True)
        env[var] = str(root / rel)
    path = [str(Path(interpreter).parent), env["UV_TOOL_BIN_DIR"], env.get("PATH", "/usr/bin:/bin")]
    env.update(PATH=os.pathsep.join(path), UV_PYTHON_DOWNLOADS="never", UV_NO_PROGRESS="1", UV_OFFLINE="1")
    env["NO_COLOR"] = "1"
    return env


def pyproject(links: Path, deps: list[str]) -> str:
    listed = ", ".join(f'"{d}"' for d in deps)
    return (
        f'[project]\nname = "proj"\nversion = "0.1.0"\nrequires-python = ">=3.9"\ndependencies = [{listed}]\n\n'
        f'[tool.uv]\nno-index = true\nfind-links = ["{links}"]\n'
    )


def build_world(uv: str, root: Path, links: Path, interpreter: str) -> dict[str, str]:
    env = world_env(root, interpreter)
    proj = root / "proj"
    proj.mkdir()
    (proj / "pyproject.toml").write_text(pyproject(links, ["alpha"]))
    index = ["--no-index", "--find-links", str(links)]
    steps = [
        ["lock"],
        ["sync", "--python", interpreter],
        ["venv", str(root / "plain"), "--python", interpreter],
        ["pip", "install", "--python", str(root / "plain/bin/python"), *index, "alpha"],
        # gamma from a folder holding only 1.0, so that `tool upgrade gamma` has a 1.1 to find
        [
            "tool",
            "install",
            "--no-index",
            "--find-links",
            str(links.parent / "wheels-old"),
            "--python",
            interpreter,
            "gamma",
        ],
    ]
    for step in steps:
        done = subprocess.run([uv, *step], cwd=proj, env=env, capture_output=True, text=True, timeout=TIMEOUT)
        if done.returncode:
            raise RuntimeError(f"setup `uv {' '.join(step)}` failed: {done.stderr.strip()}")
    (root / "requirements.txt").write_text("delta==1.0\n")
    (root / "requirements.in").write_text("delta\n")
    (proj / "pyproject.toml").write_text(pyproject(links, ["alpha", "beta"]))  # the edit nobody synced
    return env


def snapshot(root: Path) -> Snap:
    snap: Snap = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if "pyvenv.cfg" in filenames:
            env = Path(dirpath)
            sites = sorted(env.glob("lib*/python*/site-packages"))
            names = frozenset(p.name[: -len(".dist-info")] for s in sites for p in s.glob("*.dist-info"))
            snap[str(env.relative_to(root))] = (names, max((s.stat().st_mtime_ns for s in sites), default=0))
            dirnames[:] = []
    return snap


def label(rel: str) -> str:
    if rel == "proj/.venv":
        return "project venv"
    if rel == "plain":
        return "plain venv"
    if rel.startswith("tools/"):
        return f"tool env {rel[len('tools/') :]}"
    return f"env {rel}"


def diff(before: Snap, after: Snap) -> list[str]:
    changes = []
    for rel in sorted(before.keys() | after.keys()):
        old, new = before.get(rel), after.get(rel)
        if new is None:
            changes.append(f"removed {label(rel)}")
        elif old is None:
            changes.append(f"created {label(rel)} [{' '.join(sorted(new[0]))}]")
        elif old[0] != new[0]:
            moved = [f"+{n}" for n in sorted(new[0] - old[0])] + [f"-{n}" for n in sorted(old[0] - new[0])]
            changes.append(f"{label(rel)}: {' '.join(moved)}")
        elif old[1] != new[1]:
            changes.append(f"{label(rel)}: site-packages rewritten, same dist-infos")
    return changes


def first_error(stderr: str) -> str:
    """uv's first error line, with the last cause of its chain (the actual reason) appended."""
    for block in stderr.split("\n\n"):
        lines = [line.strip() for line in block.splitlines() if line.strip()]
        heads = [i for i, line in enumerate(lines) if line.lower().startswith(("error", "×"))]
        if heads:
            causes = [i for i, line in enumerate(lines) if line.startswith(("cause:", "├─▶", "╰─▶"))]
            cause = " ".join(lines[causes[-1] :]).split(maxsplit=1)[1] if causes else ""
            return f"{lines[heads[0]]} [{cause}]" if cause else lines[heads[0]]
    return next((line.strip() for line in stderr.splitlines() if line.strip()), "")


def run_one(
    uv: str, version: str, cmd: Cmd, help_text: str, links: Path, interpreter: str, pyver: str
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "uv": version,
        "command": list(cmd),
        "argv": None,
        "exit_code": None,
        "changes": [],
        "lock_rewritten": None,
    }
    name = " ".join(cmd)
    reason = next((why for key, why in SKIP.items() if name == key or name.startswith(key + " ")), None)
    if reason:
        return {**result, "status": "skipped", "reason": reason}
    args = ARGS.get(name, [])
    if any(a.startswith("--") and not re.search(rf"{re.escape(a)}\b", help_text) for a in args):
        args = []  # this uv lacks the option: run the command bare
    index = ["--no-index", "--find-links", str(links)] if "--find-links" in help_text else []
    with tempfile.TemporaryDirectory(prefix="uvcmd-") as tmp:
        root = Path(tmp)
        try:
            env = build_world(uv, root, links, interpreter)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            return {**result, "status": "error", "reason": f"world setup: {str(exc).splitlines()[0]}"}
        fill = {"py": str(root / "plain/bin/python"), "world": str(root), "pyver": pyver}
        argv = [uv, *cmd, *index, *(a.format(**fill) for a in args)]
        result["argv"] = ["uv", *(a.replace(str(root), "$WORLD").replace(str(links), "$WHEELS") for a in argv[1:])]
        lock = root / "proj/uv.lock"
        before, lock_before = snapshot(root), lock.read_bytes()
        try:
            done = subprocess.run(
                argv,
                cwd=root / "proj",
                env=env,
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
                stdin=subprocess.DEVNULL,
            )
            result["exit_code"], stderr = done.returncode, done.stderr
        except subprocess.TimeoutExpired:
            stderr = f"error: timed out after {TIMEOUT} s"
        result["changes"] = diff(before, snapshot(root))
        result["lock_rewritten"] = not lock.exists() or lock.read_bytes() != lock_before
    if result["exit_code"] != 0:
        return {**result, "status": "error", "reason": first_error(stderr)}
    return {**result, "status": "yes" if result["changes"] else "no", "reason": None}


def default_interpreter() -> str:
    base = Path(sys.base_prefix) / "bin" / "python3"  # not a venv's python: uv would see through it anyway
    return str(base) if base.exists() else sys.executable


def cell(rec: Optional[dict[str, Any]]) -> str:
    if rec is None:
        return "-"
    if rec["status"] == "error" and rec["changes"]:
        return "error (changed env)"
    return str(rec["status"])


def text_report(versions: list[str], results: list[dict[str, Any]]) -> str:
    by_key = {(" ".join(r["command"]), r["uv"]): r for r in results}
    names = list(dict.fromkeys(" ".join(r["command"]) for r in results))
    head = ["command", *(f"uv {v}" for v in versions)]
    rows = [[n, *(cell(by_key.get((n, v))) for v in versions)] for n in names]
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    fmt = " | ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*head), "-+-".join("-" * w for w in widths), *(fmt.format(*row) for row in rows)]
    for v in versions:
        lines += ["", f"uv {v}: what happened (commands that changed an environment, errors, skips)"]
        for rec in (r for r in results if r["uv"] == v and (r["status"] != "no")):
            what = "; ".join(rec["changes"]) if rec["changes"] else str(rec["reason"])
            if rec["status"] == "error" and rec["changes"]:
                what += f" (and exited {rec['exit_code']}: {rec['reason']})"
            lines.append(f"  {' '.join(rec['command'])}: {rec['status']}: {what}")
        relocked = [" ".join(r["command"]) for r in results if r["uv"] == v and r["lock_rewritten"]]
        lines.append(f"  (uv.lock rewritten by: {', '.join(relocked) or 'none'})")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--uv", action="append", required=True, help="a real uv binary (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--python", default=default_interpreter(), help="the interpreter the worlds use")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="commands run in parallel")
    opts = parser.parse_args(argv)
    pyver = subprocess.run(
        [opts.python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True, text=True
    ).stdout.strip()
    results: list[dict[str, Any]] = []
    versions: list[str] = []
    with tempfile.TemporaryDirectory(prefix="uvcmd-") as tmp:
        links = Path(tmp) / "wheels"
        links.mkdir()
        for name, version, script in [("alpha", "1.0", False), ("beta", "1.0", False), ("delta", "1.0", True)]:
            wheel(links, name, version, script)
        (Path(tmp) / "wheels-old").mkdir()
        wheel(Path(tmp) / "wheels-old", "gamma", "1.0", True)
        wheel(links, "gamma", "1.1", True)
        for uv in opts.uv:
            uv = str(Path(uv).resolve())
            env = world_env(Path(tmp) / "discover", opts.python)
            version = subprocess.run([uv, "--version"], env=env, capture_output=True, text=True).stdout.split()[1]
            versions.append(version)
            commands = discover(uv, env)
            print(f"uv {version}: {len(commands)} commands", file=sys.stderr)
            with ThreadPoolExecutor(max_workers=opts.jobs) as pool:
                jobs = [
                    pool.submit(run_one, uv, version, cmd, text, links, opts.python, pyver)
                    for cmd, text in commands.items()
                ]
                results += [job.result() for job in jobs]
    if opts.json:
        print(json.dumps({"python": opts.python, "results": results}, indent=2))
    else:
        print(text_report(versions, results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
