"""Put uv-shim on PATH for every future shell, the way uv's own installer does.

``uv-shim install`` writes two small env scripts beside the launchers (``uv-shim.env`` for POSIX
shells, ``uv-shim.env.fish``) that put the launcher folder first on PATH (names of our own: uv's
installer writes an ``env`` of its own in ``~/.local/bin``), and adds one marked line sourcing them
to the profiles uv's installer uses: ``~/.profile`` (login ``sh``, ``dash``, and ``bash`` without
its own login file), ``~/.bashrc`` (interactive ``bash``), ``~/.bash_profile`` and
``~/.bash_login`` when they exist (a login ``bash`` reads those instead of ``~/.profile``),
``$ZDOTDIR/.zshenv`` and ``$ZDOTDIR/.zshrc`` (every ``zsh``; ``.zshrc`` again after macOS's
``path_helper`` has reordered PATH), and for fish a file of its own in
``~/.config/fish/conf.d/``. Idempotent; ``uv-shim uninstall`` removes exactly those lines and
files. ``--no-modify-path`` (or ``UV_SHIM_NO_MODIFY_PATH=1``) leaves every profile alone.
"""

from __future__ import annotations

import os
import shlex

from shim import paths

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

MARK = "# uv-shim (`uv-shim uninstall` removes this line)"
FISH_FILE = "uv-shim.env.fish"
ENV_SH, ENV_FISH = "uv-shim.env", "uv-shim.env.fish"  # beside the launchers: names of our own
HEADER = "# uv-shim: put its launchers first on PATH."


def _q(path: str) -> str:
    """A single shell word for sh, bash and zsh."""
    return shlex.quote(path)


def _q_fish(path: str) -> str:
    """A single word for fish (its single quotes know only the escapes \\' and \\\\)."""
    return "'" + path.replace("\\", "\\\\").replace("'", "\\'") + "'"


def env_scripts(bin_dir: str) -> dict[str, str]:
    """File name (beside the launchers) -> content."""
    q = _q(bin_dir)
    posix = (
        f"{HEADER} Written by `uv-shim install`, sourced by your\n"
        "# shell profiles; `uv-shim uninstall` removes it and those lines.\n"
        f'case ":$PATH:" in\n    :{q}:*) ;;\n    *) export PATH={q}":$PATH" ;;\nesac\n'
    )
    f = _q_fish(bin_dir)
    fish = (
        f"{HEADER} Written by `uv-shim install`; `uv-shim uninstall`\n"
        "# removes it.\n"
        f'if test "$PATH[1]" != {f}\n    set -gx PATH {f} $PATH\nend\n'
    )
    return {ENV_SH: posix, ENV_FISH: fish}


def profiles(env: Mapping[str, str]) -> list[tuple[str, bool]]:
    """(profile, create it if missing) for the POSIX shells, in the order they are reported."""
    home = env.get("HOME") or os.path.expanduser("~")
    zdot = env.get("ZDOTDIR") or home
    out = [(os.path.join(home, ".profile"), True), (os.path.join(home, ".bashrc"), True)]
    out += [(os.path.join(home, name), False) for name in (".bash_profile", ".bash_login")]
    out += [(os.path.join(zdot, ".zshenv"), True), (os.path.join(zdot, ".zshrc"), True)]
    return out


def fish_file(env: Mapping[str, str]) -> str:
    home = env.get("HOME") or os.path.expanduser("~")
    config = env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    return os.path.join(config, "fish", "conf.d", FISH_FILE)


def _line(bin_dir: str) -> str:
    """Harmless if the file has gone (a profile another uninstall did not see, say)."""
    env = _q(os.path.join(bin_dir, ENV_SH))
    return f"[ -f {env} ] && . {env}  {MARK}\n"


def _ours(line: str) -> bool:
    return line.rstrip().endswith(MARK)


def _read(path: str) -> str:
    """A profile's text as it is: line endings untouched, any bytes kept."""
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
        return f.read()


def write_env(bin_dir: str) -> None:
    for name, text in env_scripts(bin_dir).items():
        path = os.path.join(bin_dir, name)
        if os.path.lexists(path) and not _is_ours(path):
            raise OSError(17, "exists and is not uv-shim's; choose another --bin-dir", path)
        paths.write_atomic(path, text.encode())


def _is_ours(path: str) -> bool:
    try:
        return _read(path).startswith(HEADER)
    except (OSError, ValueError):
        return False


def add(bin_dir: str, env: Mapping[str, str], warn: Callable[[str], None]) -> list[str]:
    """Write the env scripts and the profile lines; return the files changed (none when all
    were already there). A profile that cannot be read or written is one warning, and the
    others are still done."""
    write_env(bin_dir)
    changed = []
    line = _line(bin_dir)
    for profile, create in profiles(env):
        try:
            try:
                text = _read(profile)
            except FileNotFoundError:
                if not create:
                    continue
                text = ""
            lines = text.splitlines(keepends=True)
            if any(ln.rstrip() == line.rstrip() for ln in lines):
                continue  # already there
            body = "".join(ln for ln in lines if not _ours(ln))
            newline = "\r\n" if "\r\n" in body else "\n"
            if body and not body.endswith("\n"):
                body += newline
            _write(profile, body + line.replace("\n", newline))
            changed.append(profile)
        except (OSError, ValueError) as e:
            warn(f"cannot add uv-shim's line to {profile}: {getattr(e, 'strerror', None) or e}")
    fish = fish_file(env)
    if os.path.isdir(os.path.dirname(os.path.dirname(fish))):  # fish is set up here
        text = f"source {_q_fish(os.path.join(bin_dir, ENV_FISH))}  {MARK}\n"
        try:
            try:
                same = _read(fish) == text
            except FileNotFoundError:
                same = False
            if not same:
                os.makedirs(os.path.dirname(fish), exist_ok=True)
                _write(fish, text)
                changed.append(fish)
        except (OSError, ValueError) as e:
            warn(f"cannot write {fish}: {getattr(e, 'strerror', None) or e}")
    return changed


def remove(bin_dir: str, env: Mapping[str, str]) -> list[str]:
    """Take out exactly the marked lines, the fish file and the env scripts; return what changed."""
    changed = []
    fish = fish_file(env)
    for profile in [p for p, _create in profiles(env)] + [fish]:
        try:
            text = _read(profile)
            kept = "".join(ln for ln in text.splitlines(keepends=True) if not _ours(ln))
            if kept == text:
                continue
            if profile == fish and not kept.strip():
                os.unlink(fish)  # the file is ours alone: it goes (lines someone added stay)
            else:
                _write(profile, kept)
            changed.append(profile)
        except (OSError, ValueError):
            continue
    for name in env_scripts(bin_dir):
        path = os.path.join(bin_dir, name)
        if _is_ours(path):
            os.unlink(path)
    return changed


def _write(path: str, text: str) -> None:
    """Replace a profile atomically, keeping its permissions (and following a symlinked
    profile, as dotfile managers make them, to the file it names)."""
    real = os.path.realpath(path)
    try:
        mode = os.stat(real).st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o644
    paths.write_atomic(real, text.encode("utf-8", "surrogateescape"), mode=mode)


def source_line(bin_dir: str, shell: str = "sh") -> str:
    """What to run in the current shell to get the same PATH now."""
    if shell == "fish":
        return f"source {_q_fish(os.path.join(bin_dir, ENV_FISH))}"
    return f". {_q(os.path.join(bin_dir, ENV_SH))}"
