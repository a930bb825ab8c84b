"""What to reclaim: ``--unused``, ``--max-age``, ``--max-size``, ``--keep-recent``, from options,
``UV_SHIM_*`` variables and the config file (options beat variables beat the file; a bad
option is an error, a bad variable or file value one warning)."""

from __future__ import annotations

import os
import sys

from shim import report
from shim.uvargs import is_true

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

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
    FLAGS = {"--unused": "unused", "--max-age": "max_age", "--max-size": "max_size", "--keep-recent": "keep_recent"}
    ENV = {
        "UV_SHIM_UNUSED": "unused",
        "UV_SHIM_MAX_AGE": "max_age",
        "UV_SHIM_MAX_SIZE": "max_size",
        "UV_SHIM_KEEP_RECENT": "keep_recent",
    }
    CONFIG_KEYS = {"unused": "unused", "max-age": "max_age", "max-size": "max_size", "keep-recent": "keep_recent"}

    def __init__(self) -> None:
        self.unused = False
        self.max_age: Optional[float] = None
        self.max_size: Optional[int] = None
        self.keep_recent: Optional[float] = None

    @property
    def active(self) -> bool:
        return self.unused or self.max_age is not None or self.max_size is not None

    def set(self, field: str, value: object, where: str) -> None:
        try:
            if field == "unused":
                self.unused = value if isinstance(value, bool) else is_true(str(value))
            elif field == "max_size":
                self.max_size = parse_size(str(value))
            else:
                setattr(self, field, report.parse_duration(str(value)))
        except ValueError:
            kind = "a size (like 10GiB)" if field == "max_size" else "a duration (like 30d, 12h)"
            raise PolicyError(f"{where}: `{value}` is not {kind}") from None


def config_path(env: Mapping[str, str]) -> str:
    explicit = env.get("UV_SHIM_CONFIG")
    if explicit:
        return explicit
    base = env.get("XDG_CONFIG_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".config")
    return os.path.join(base, "uv-shim", "config.toml")


def policy_from(
    args: Sequence[str], env: Mapping[str, str], warn: Optional[Callable[[str], None]] = None
) -> tuple[Policy, list[str]]:
    """The policy (config file < UV_SHIM_* variables < options) and the args left for uv.

    A bad option raises PolicyError; a bad config file or variable is reported through ``warn``
    and ignored, so a plain ``uv cache prune`` still runs."""
    policy = Policy()
    path = config_path(env)
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        doc = {}
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        if warn:
            warn(f"ignoring {path}: {e}")
        doc = {}
    section = doc.get("prune", {})
    if not isinstance(section, dict):
        section = {}
    soft = [(section[k], f, f"{path}: prune.{k}") for k, f in Policy.CONFIG_KEYS.items() if k in section]
    soft += [(env[v], f, v) for v, f in Policy.ENV.items() if env.get(v)]
    for value, field, where in soft:
        try:
            policy.set(field, value, where)
        except PolicyError as e:
            if warn:
                warn(f"ignoring {e}")
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
                value = next(it, None)
                if value is None:
                    raise PolicyError(f"{name} needs a value")
            policy.set(attr, value, name)
    return policy, rest
