"""``uv-shim: warning:`` and ``uv-shim: error:`` coloured as uv colours its own (bold yellow,
bold red), when uv would colour: ``--color always|never|auto``, then ``NO_COLOR`` (it wins over
``FORCE_COLOR``, as in uv), then ``FORCE_COLOR`` / ``CLICOLOR_FORCE``, else only on a terminal
that is not ``TERM=dumb``. On the hot path: builtins only."""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

CHOICE = "auto"  # `--color` of the uv command being run (set by shim.cli)
_CODES = {"warning": "33", "error": "31"}


def enabled(stream: Any = None) -> bool:
    if CHOICE in ("always", "never"):
        return CHOICE == "always"
    env = os.environ
    if env.get("NO_COLOR"):
        return False
    if env.get("FORCE_COLOR") or env.get("CLICOLOR_FORCE", "0") not in ("", "0"):
        return True
    s = stream if stream is not None else sys.stderr
    try:
        return bool(s.isatty()) and env.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


def label(kind: str) -> str:
    """``warning:`` / ``error:`` as uv prints them."""
    if not enabled():
        return f"{kind}:"
    return f"\x1b[1m\x1b[{_CODES[kind]}m{kind}\x1b[0m\x1b[1m:\x1b[0m"


def warn(message: str) -> None:
    sys.stderr.write(f"uv-shim: {label('warning')} {message}\n")
    sys.stderr.flush()


def error(message: str) -> None:
    sys.stderr.write(f"uv-shim: {label('error')} {message}\n")
    sys.stderr.flush()
