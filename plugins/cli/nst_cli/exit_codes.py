"""The exit codes of ``nst`` (documented for users in EXIT_CODES.md)."""

from __future__ import annotations

OK = 0
"""Success."""

USER_ERROR = 1
"""A user error (any :class:`nst_core.NSTError`): bad file, unknown name, invalid number, ..."""

USAGE_ERROR = 2
"""The command line could not be parsed (typer/click's own code)."""

NON_FINITE = 3
"""The run ended because the loss became non-finite; the last finite image was saved."""


SOME_FAILED = 4
"""``nst batch``: some items failed (their errors are in OUTDIR/batch.jsonl); the others were written.
``nst video`` in chunks: some chunks failed; the others are kept in its frames folder."""


def interrupted(signum: int) -> int:
    """128 + the signal number, as shells report it: 130 for SIGINT, 143 for SIGTERM."""
    return 128 + signum
