#!/bin/sh
# uv-shim container entrypoint: puts uv-shim in front of uv, then runs the container's command.
#
#   COPY hooks/docker-entrypoint.sh /usr/local/bin/uv-shim-entrypoint
#   ENTRYPOINT ["uv-shim-entrypoint"]
#   CMD ["sh"]
#
# Needs uv-shim installed in the image (pip install uv-shim). Writes the launchers once, into
# $UV_SHIM_BIN_DIR (default: $UV_SHIM_HOME/bin, else $XDG_DATA_HOME/uv-shim/bin, else
# ~/.local/share/uv-shim/bin), puts that folder first on PATH and execs the command. If uv-shim
# is missing it says so on stderr and runs the command anyway: the container still works.
set -eu
if [ -z "${UV_SHIM_BIN_DIR:-}" ]; then
  if [ -n "${UV_SHIM_HOME:-}" ]; then
    UV_SHIM_BIN_DIR=$UV_SHIM_HOME/bin
  else
    UV_SHIM_BIN_DIR=${XDG_DATA_HOME:-${HOME:-/root}/.local/share}/uv-shim/bin
  fi
fi
if [ ! -x "$UV_SHIM_BIN_DIR/uv" ]; then
  if command -v uv-shim >/dev/null 2>&1; then
    uv-shim install --bin-dir "$UV_SHIM_BIN_DIR" >/dev/null 2>&1 ||
      echo "uv-shim: warning: cannot write launchers to $UV_SHIM_BIN_DIR; running without uv-shim" >&2
  else
    echo "uv-shim: warning: uv-shim is not installed in this image (pip install uv-shim); running without it" >&2
  fi
fi
if [ -x "$UV_SHIM_BIN_DIR/uv" ]; then
  case "$PATH" in
    "$UV_SHIM_BIN_DIR:"*) ;;
    *) PATH="$UV_SHIM_BIN_DIR:$PATH"; export PATH ;;
  esac
fi
[ "$#" -gt 0 ] || set -- sh
exec "$@"
