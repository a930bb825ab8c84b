"""uv-shim: a drop-in uv that makes uv's cache safe to prune."""

__version__ = "0.1.0"

# The modules an intercepted uv command imports (the hot path: paid on every `uv run`). They
# import only builtins at module level; anything heavier (typing, dataclasses, json, tomllib,
# subprocess, pathlib, argparse, enum-based signal, hashlib) only inside the function that needs
# it, off the common path. tests/test_hot_path.py holds them to it.
HOT_PATH = (
    "shim.cli",
    "shim.realuv",
    "shim.uvargs",
    "shim.targets",
    "shim.paths",
    "shim.bookkeeping",
    "shim.cache",
    "shim.cachedir",
    "shim.locks",
    "shim.confined",
    "shim.envscan",
    "shim.manifest",
    "shim.record",
    "shim.hostid",
    "shim.followup",
    "shim.autogc",
    "shim.style",
    "shim.uvfeatures",
)
