"""Human output in uv's style: sizes like ``41.2MiB``, ages like ``3d``, one fact per line."""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from typing import Any, Optional

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")
_DURATIONS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def human_size(n: float) -> str:
    """uv's format: ``0B``, ``512B``, ``1.5KiB``, ``41.2MiB``."""
    i = 0
    while n >= 1024 and i < len(_UNITS) - 1:
        n /= 1024
        i += 1
    return f"{int(n)}{_UNITS[i]}" if i == 0 else f"{n:.1f}{_UNITS[i]}"


def human_age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def parse_duration(text: str) -> float:
    """``30d``, ``12h``, ``90m``, ``45s``, ``2w`` or plain seconds; ValueError otherwise."""
    t = text.strip().lower()
    if t and t[-1] in _DURATIONS:
        value, unit = t[:-1], t[-1]
    else:
        value, unit = t, "s"
    number = float(value)
    if not 0 <= number < 1e15:  # NaN, infinities, negatives and absurd spans are not durations
        raise ValueError(text)
    return number * _DURATIONS[unit]


def shown(value: object) -> str:
    """A value from the user, safe on one line: control characters escaped (``\\n``, ``\\x1b``)."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def plural(n: int, word: str, words: Optional[str] = None) -> str:
    return f"{n} {word if n == 1 else (words or word + 's')}"


def walk(top: str, descend: Optional[Callable[[os.DirEntry], bool]] = None) -> Iterator[os.DirEntry]:
    """Every entry under ``top`` (os.DirEntry), depth first, never following a symlink.
    ``descend(entry)`` decides whether to go into a folder (default: always). Unreadable folders
    are skipped."""
    stack = [top]
    while stack:
        d = stack.pop()
        try:
            it = os.scandir(d)
        except OSError:
            continue
        with it:
            for e in it:
                yield e
                try:
                    is_dir = e.is_dir(follow_symlinks=False)
                except OSError:
                    continue
                if is_dir and (descend is None or descend(e)):
                    stack.append(e.path)


def table(rows: list[list[Any]], header: list[str]) -> str:
    """Columns padded to their widest cell, a header first: uv-shim's tables on stdout."""
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    for r in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    return "\n".join(lines) + "\n"


class Result:
    """What a command computed, apart from how it is shown: ``doc`` (its ``--json`` document),
    ``text`` (stdout), ``facts`` (stderr lines) and ``exit_code``. ``render`` shows it, once."""

    exit_code = 0

    def doc(self) -> dict[str, Any]:
        raise NotImplementedError

    def text(self) -> str:
        return ""

    def facts(self) -> list[str]:
        return []


class RowsResult(Result):
    """A result that is one list of rows, under ``key`` in its document beside the cache."""

    key = "rows"

    def __init__(self, cache: str, rows: list[dict[str, Any]]) -> None:
        self.cache = cache
        self.rows = rows

    def doc(self) -> dict[str, Any]:
        return {"cache": self.cache, self.key: self.rows}


def render(result: Result, as_json: bool, out: Out) -> int:
    """The one renderer of ``uv-shim`` commands: data on stdout (JSON or text), facts on stderr."""
    import json

    out.data(json.dumps(result.doc(), indent=2, default=str) + "\n" if as_json else result.text())
    out.facts(result.facts())
    return result.exit_code


class Out:
    """stderr for facts (silenced by -q), stdout for data."""

    def __init__(self, quiet: bool = False, verbose: bool = False) -> None:
        self.quiet = quiet
        self.verbose = verbose

    def fact(self, line: str) -> None:
        if not self.quiet:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()

    def detail(self, line: str) -> None:
        if self.verbose and not self.quiet:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()

    def warn(self, line: str) -> None:
        from shim import style

        style.warn(line)

    def data(self, text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    def facts(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.fact(line)
