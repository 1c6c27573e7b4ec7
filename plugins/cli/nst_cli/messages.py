"""One-line messages on stderr: ``nst: error: ...``, ``nst: warning: ...``, ``nst: ...``.

stdout is kept for results (tables, ``--progress jsonl``); everything said *to the person* goes to
stderr, one line per message, so scripts can capture or drop it.
"""

from __future__ import annotations

import sys

from nst_core.errors import printable


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines too) made one space, and any other control
    character (a terminal escape sequence in a file name or a file's text) shown as ``\\x1b``."""
    return printable(" ".join(str(text).split()))


def say(text: str) -> None:
    """An informational line."""
    print(f"nst: {one_line(text)}", file=sys.stderr, flush=True)


def warn(text: str) -> None:
    """A warning line (plug-in problems, image notes, recoveries)."""
    print(f"nst: warning: {one_line(text)}", file=sys.stderr, flush=True)


def error(text: str) -> None:
    """The one line a user error prints."""
    print(f"nst: error: {one_line(text)}", file=sys.stderr, flush=True)
