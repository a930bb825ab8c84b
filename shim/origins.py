"""Where an installed distribution came from, and the uv command that restores it from there.

``uv-shim doctor --fix`` must never make things worse: a package installed from a local folder,
a wheel file, a URL or a git repository is restored from that same place (PEP 610's
``direct_url.json``, which uv writes into every such ``*.dist-info``), never by name from a
package index, where a stranger's project of the same name may live (dependency confusion). A
distribution of a project's environment is restored by the project's own ``uv sync``, so its
lock file decides. Only a distribution with no recorded origin outside a project comes from an
index, by exact version, with the indexes the user passes (``doctor --fix -- UV-ARGS``).
"""

from __future__ import annotations

import json
import os
from urllib.parse import unquote, urlparse

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Optional

DIRECT_URL = "direct_url.json"
LOCK_FILE = "uv.lock"
PYPROJECT = "pyproject.toml"


class Restore:
    """How one distribution is restored: ``args`` for the real uv (after the uv path), what the
    origin is, and why it cannot be restored (``args`` None then)."""

    def __init__(self, origin: str, args: Optional[list[str]], reason: str = "", cwd: Optional[str] = None) -> None:
        self.origin = origin
        self.args = args
        self.reason = reason
        self.cwd = cwd


def _dist_info(env: str, name: str, version: str) -> Optional[str]:
    from shim import envscan

    for site, entry, n, v in envscan.dist_infos(env, "venv"):
        if (n, v) == (name, version):
            return os.path.join(site, entry)
    return None


def _local_path(url: str) -> Optional[str]:
    parsed = urlparse(url)
    return unquote(parsed.path) if parsed.scheme == "file" else None


def project_of(env: str, environ: Mapping[str, str]) -> Optional[str]:
    """The project (folder with pyproject.toml and uv.lock) whose environment ``env`` is, if any."""
    from shim.targets import project_env

    real = os.path.realpath(env)
    d = os.path.dirname(real)
    for _ in range(8):
        if os.path.isfile(os.path.join(d, PYPROJECT)) and os.path.isfile(os.path.join(d, LOCK_FILE)):
            synced = project_env(d, environ)  # two places (through `..`): uv's choice, not ours to sync
            if len(synced) == 1 and os.path.realpath(synced[0].path) == real:
                return d
        up = os.path.dirname(d)
        if up == d:
            break
        d = up
    return None


def _locked(project: str, name: str) -> bool:
    """Whether the project's lock file names the package (else it came from elsewhere: `uv pip`)."""
    try:
        with open(os.path.join(project, LOCK_FILE), encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return False
    from shim import envscan

    return any(
        envscan.normalize(line.split('"')[1]) == name
        for line in text.splitlines()
        if line.startswith('name = "') and line.count('"') >= 2
    )


def restore(
    env: str, python: str, name: str, version: str, uv_args: Sequence[str], environ: Mapping[str, str]
) -> Restore:
    """The command that reinstalls exactly this distribution from where it came from."""
    common = ["--link-mode", "symlink", *uv_args]
    project = project_of(env, environ)
    if project is not None and _locked(project, name):
        return Restore(
            f"the lock file of {project}",
            ["sync", "--project", project, "--inexact", "--reinstall-package", name, *common],
            cwd=project,
        )
    pip = ["pip", "install", "--python", python, "--no-deps", "--reinstall-package", name, *common]
    info = _dist_info(env, name, version)
    direct: object = {}
    if info is not None:
        try:
            with open(os.path.join(info, DIRECT_URL), encoding="utf-8") as f:
                direct = json.load(f)
        except (OSError, ValueError):
            direct = {}
    if not isinstance(direct, dict):
        direct = {}
    url = direct.get("url")
    if not isinstance(url, str) or not url:
        return Restore("the package index", [*pip, f"{name}=={version}"])
    local = _local_path(url)
    if local is not None and not os.path.exists(local):
        return Restore(url, None, f"its source {local} is gone")
    vcs = direct.get("vcs_info")
    if isinstance(vcs, dict):
        rev = vcs.get("commit_id") or vcs.get("requested_revision")
        kind = vcs.get("vcs", "git")
        spec = f"{name} @ {kind}+{url}" + (f"@{rev}" if rev else "")
        return Restore(f"{kind}+{url}", [*pip, spec])
    dir_info = direct.get("dir_info")
    if isinstance(dir_info, dict) and dir_info.get("editable") and local is not None:
        return Restore(f"{local} (editable)", [*pip, "--editable", local])
    return Restore(url, [*pip, f"{name} @ {url}"])
