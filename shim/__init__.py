"""uv-shim: a drop-in uv that makes uv's cache safe to prune."""

__version__ = "0.1.0"
