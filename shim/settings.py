"""Every setting a user can give uv-shim, defined once: its variable, its option, its config key
and what it means. ``uv cache prune --help`` / ``uv cache clean --help`` through the shim and the
README's table come from here (``tests/test_settings.py`` keeps the code, the help and the README
in step). The eviction policies' names come from ``shim.policy``, which parses them.
"""

from __future__ import annotations

from shim.policy import AutoPolicy, Policy


class Setting:
    __slots__ = ("var", "option", "key", "meaning", "command")

    def __init__(self, var: str, meaning: str, option: str = "", key: str = "", command: str = "") -> None:
        self.var, self.meaning, self.option, self.key, self.command = var, meaning, option, key, command


_POLICY_MEANINGS = {
    "unused": "evict every archive no live environment uses",
    "max_age": "evict archives last used longer ago than this (30d, 12h)",
    "max_size": "evict least recently used archives until the cache fits (10GiB)",
    "keep_recent": "never evict what was used within this (1d)",
    "min_free": "reclaim until the cache's filesystem has this much free (10GiB)",
    "every": "how often the automatic prune may run (default 1d; 0: after every command)",
}
_VALUES = {"max_age": "AGE", "max_size": "SIZE", "keep_recent": "AGE"}


def _policy_settings() -> list[Setting]:
    out = []
    flags = {field: flag for flag, field in Policy.FLAGS.items()}
    keys = {field: key for key, field in Policy.CONFIG_KEYS.items()}
    for var, field in Policy.ENV.items():
        option = flags[field] + (f" <{_VALUES[field]}>" if field in _VALUES else "")
        out.append(Setting(var, _POLICY_MEANINGS[field], option, f"prune.{keys[field]}", "uv cache prune, uv-shim gc"))
    keys = {field: key for key, field in AutoPolicy.CONFIG_KEYS.items()}
    for var, field in AutoPolicy.ENV.items():
        meaning = _POLICY_MEANINGS[field] + ("" if field == "every" else ", in the automatic prune")
        out.append(Setting(var, meaning, "", f"gc.{keys[field]}", "after intercepted commands"))
    return out


SETTINGS: list[Setting] = [
    Setting(
        "UV_SHIM_REAL_UV",
        "the real uv to run (default: the first uv on PATH that is not uv-shim, else the one installed beside it)",
    ),
    Setting("UV_SHIM_DISABLE", "1: pass every command straight to the real uv (no records, no protection)"),
    Setting(
        "UV_SHIM_FOREGROUND",
        "1: keep Python in front of uv and finish the bookkeeping before the command returns (its warnings "
        "at once; default: a background helper holding uv's cache lock does it, and the next command says "
        "what it could not)",
    ),
    Setting(
        "UV_SHIM_HOME",
        "uv-shim's own folder: launchers in bin/, host state in state/ (default: the XDG data and state folders)",
    ),
    Setting("UV_SHIM_CONFIG", "the config file (default: $XDG_CONFIG_HOME/uv-shim/config.toml)"),
    Setting(
        "UV_SHIM_HOST_ID",
        "this host's identity in the records (default: derived from the machine id, boot and mount namespace)",
    ),
    Setting(
        "UV_SHIM_LEASE",
        "how long roots of other hosts are kept after their last use (default 30d)",
        command="uv cache prune, uv cache clean",
    ),
    Setting(
        "UV_SHIM_ALLOW_BREAK",
        "1: let `uv cache clean` remove archives live environments use (as --all)",
        "--all",
        command="uv cache clean",
    ),
    Setting(
        "UV_SHIM_NO_MODIFY_PATH",
        "1: `uv-shim install` leaves the shell profiles alone",
        "--no-modify-path",
        command="uv-shim install",
    ),
    *_policy_settings(),
]

# Not settings: what uv-shim sets for itself (the recursion guard), and the crash tests' hook.
INTERNAL = frozenset({"UV_SHIM_PID", "UV_SHIM_PPID", "UV_SHIM_DEPTH", "UV_SHIM_TEST_KILL_AT", "UV_SHIM_TEST_KILLED"})

_EXTRA_OPTIONS = {
    "prune": [
        ("--dry-run", "say what would be removed and kept, with the same figures; change nothing"),
        ("--json", "the report as JSON on stdout (with or without --dry-run)"),
    ],
    "clean": [],
}


def help_section(command: str) -> str:
    """The shim's part of ``uv cache prune|clean --help``, after uv's own, in uv's layout."""
    options: list[tuple[str, str]] = []
    variables: list[tuple[str, str]] = []
    for s in SETTINGS:
        if f"uv cache {command}" not in s.command:
            continue
        where = f"[env: {s.var}=]" + (f" [config: {s.key}]" if s.key else "")
        text = f"{s.meaning[:1].upper()}{s.meaning[1:]} {where}"
        (options if s.option else variables).append((s.option or s.var, text))
    options += [(opt, text[:1].upper() + text[1:]) for opt, text in _EXTRA_OPTIONS[command]]
    lines = ["", "uv-shim options (uv-shim is in front of the real uv here):"]
    for head, text in options:
        lines += [f"      {head}", f"          {text}"]
    if variables:
        lines += ["", "uv-shim settings:"]
        for head, text in variables:
            lines += [f"      {head}", f"          {text}"]
    return "\n".join(lines) + "\n"


def readme_table() -> str:
    """The README's table of settings (checked against the README by the tests)."""
    lines = ["| variable | option | config key | for | meaning |", "|---|---|---|---|---|"]
    for s in SETTINGS:
        cells = [f"`{s.var}`", f"`{s.option}`" if s.option else "", f"`{s.key}`" if s.key else "", s.command, s.meaning]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
