"""One error hierarchy: every failure a user must see is one line, and its exit code is decided
here, turned into the process's exit status only at the entry points (``shim.cli``)."""

from __future__ import annotations


class ShimError(Exception):
    """A misconfiguration or a usage error the user must fix (uv's code for usage errors)."""

    exit_code = 2


class UserError(ShimError):
    """A ``uv-shim`` command that cannot do what was asked (not an environment, unknown archive)."""

    exit_code = 1
