"""What to reclaim: ``--unused``, ``--max-age``, ``--max-size``, ``--keep-recent``, from options,
``UV_SHIM_*`` variables and the config file (options beat variables beat the file; a bad
option is an error, a bad variable or file value one warning)."""

from __future__ import annotations

import os
import sys

from shim import report
from shim.uvargs import is_true

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Optional

_UNITS = {
    "b": 1,
    "k": 1024,
    "kb": 1000,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "t": 1024**4,
    "tb": 1000**4,
    "tib": 1024**4,
}


class PolicyError(Exception):
    """A bad option, variable or config value: one line naming it."""


def parse_size(text: str) -> int:
    """``10GiB``, ``500MB``, ``2g``, ``123`` (bytes)."""
    t = text.strip().lower().replace(" ", "")
    digits = t.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = t[len(digits) :] or "b"
    if unit not in _UNITS or not digits:
        raise ValueError(text)
    number = float(digits) * _UNITS[unit]
    if not 0 <= number < 2**63:  # NaN, infinities (1e400), negatives: not sizes
        raise ValueError(text)
    return int(number)


class Policy:
    """What ``uv cache prune`` evicts: from options, ``UV_SHIM_*`` and the ``[prune]`` table."""

    SECTION = "prune"
    FLAGS = {"--unused": "unused", "--max-age": "max_age", "--max-size": "max_size", "--keep-recent": "keep_recent"}
    ENV = {
        "UV_SHIM_UNUSED": "unused",
        "UV_SHIM_MAX_AGE": "max_age",
        "UV_SHIM_MAX_SIZE": "max_size",
        "UV_SHIM_KEEP_RECENT": "keep_recent",
    }
    CONFIG_KEYS = {"unused": "unused", "max-age": "max_age", "max-size": "max_size", "keep-recent": "keep_recent"}
    SIZES: tuple[str, ...] = ("max_size",)

    def __init__(self) -> None:
        self.unused = False
        self.max_age: Optional[float] = None
        self.max_size: Optional[int] = None
        self.keep_recent: Optional[float] = None
        self.reclaim = 0  # bytes to take off the cache besides (min-free): set by shim.autogc

    @property
    def active(self) -> bool:
        return self.unused or self.max_age is not None or self.max_size is not None or self.reclaim > 0

    def set(self, field: str, value: object, where: str) -> None:
        try:
            if field == "unused":
                self.unused = value if isinstance(value, bool) else is_true(str(value))
            elif field in self.SIZES:
                setattr(self, field, parse_size(str(value)))
            else:
                setattr(self, field, report.parse_duration(str(value)))
        except ValueError:
            kind = "a size (like 10GiB)" if field in self.SIZES else "a duration (like 30d, 12h)"
            raise PolicyError(f"{where}: `{report.shown(value)}` is not {kind}") from None

    def describe(self) -> dict[str, object]:
        """The settings in force, by their config-file names (for status and logs)."""
        out: dict[str, object] = {}
        for key, field in self.CONFIG_KEYS.items():
            value = getattr(self, field)
            if value not in (None, False):
                out[key] = value
        return out


class AutoPolicy(Policy):
    """The automatic collection after intercepted commands (``shim.autogc``): the ``[gc]`` table
    and ``UV_SHIM_AUTO_*``; off unless one of them sets something to reclaim."""

    SECTION = "gc"
    FLAGS: dict[str, str] = {}
    ENV = {
        "UV_SHIM_AUTO_UNUSED": "unused",
        "UV_SHIM_AUTO_MAX_AGE": "max_age",
        "UV_SHIM_AUTO_MAX_SIZE": "max_size",
        "UV_SHIM_AUTO_MIN_FREE": "min_free",
        "UV_SHIM_AUTO_KEEP_RECENT": "keep_recent",
        "UV_SHIM_AUTO_EVERY": "every",
    }
    CONFIG_KEYS = {
        "unused": "unused",
        "max-age": "max_age",
        "max-size": "max_size",
        "min-free": "min_free",
        "keep-recent": "keep_recent",
        "every": "every",
    }
    SIZES = ("max_size", "min_free")
    EVERY = 86400.0  # cargo's default: once a day

    def __init__(self) -> None:
        super().__init__()
        self.min_free: Optional[int] = None
        self.every = self.EVERY

    @property
    def enabled(self) -> bool:
        return self.active or self.min_free is not None

    def describe(self) -> dict[str, object]:
        out = super().describe()
        out["every"] = self.every
        return out


def config_path(env: Mapping[str, str]) -> str:
    explicit = env.get("UV_SHIM_CONFIG")
    if explicit:
        return explicit
    base = env.get("XDG_CONFIG_HOME") or ""
    if not os.path.isabs(base):  # a relative one is ignored, as the XDG rule says (paths._xdg)
        base = os.path.join(env.get("HOME") or os.path.expanduser("~"), ".config")
    return os.path.join(base, "uv-shim", "config.toml")


def _toml(data: bytes, path: str, warn: Optional[Callable[[str], None]]) -> dict:
    """The config file's document; tomllib (and the ``re`` it compiles, ~20 ms) only when there
    is a file to read."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        if warn:
            warn(f"ignoring {path}: {report.shown(e)}")
        return {}


def _soft(policy: Policy, env: Mapping[str, str], warn: Optional[Callable[[str], None]]) -> None:
    """The config file's table, then the variables: a bad value is one warning and ignored."""
    path = config_path(env)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        data = None
    except OSError as e:
        if warn:
            warn(f"ignoring {path}: {report.shown(e)}")
        data = None
    doc = _toml(data, path, warn) if data is not None else {}
    section = doc.get(policy.SECTION, {})
    if not isinstance(section, dict):
        section = {}
    where = f"{path}: {policy.SECTION}."
    soft = [(section[k], f, where + k) for k, f in policy.CONFIG_KEYS.items() if k in section]
    soft += [(env[v], f, v) for v, f in policy.ENV.items() if env.get(v)]
    for value, field, name in soft:
        try:
            policy.set(field, value, name)
        except PolicyError as e:
            if warn:
                warn(f"ignoring {e}")


def auto_policy(env: Mapping[str, str], warn: Optional[Callable[[str], None]] = None) -> AutoPolicy:
    policy = AutoPolicy()
    _soft(policy, env, warn)
    return policy


def policy_from(
    args: Sequence[str], env: Mapping[str, str], warn: Optional[Callable[[str], None]] = None
) -> tuple[Policy, list[str]]:
    """The policy (config file < UV_SHIM_* variables < options) and the args left for uv.

    A bad option raises PolicyError; a bad config file or variable is reported through ``warn``
    and ignored, so a plain ``uv cache prune`` still runs."""
    policy = Policy()
    _soft(policy, env, warn)
    rest: list[str] = []
    it = iter(args)
    for arg in it:
        name, eq, value = arg.partition("=")
        attr: Optional[str] = Policy.FLAGS.get(name)
        if attr is None:
            rest.append(arg)
        elif attr == "unused":
            policy.unused = True
        else:
            if not eq:
                following = next(it, None)
                if following is None:
                    raise PolicyError(f"{name} needs a value")
                value = following
            policy.set(attr, value, name)
    return policy, rest
