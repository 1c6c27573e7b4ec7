"""How a command's failure reaches its progress stream before the app turns it into one line."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from nst_core import NSTError

from nst_cli import exit_codes
from nst_cli.signals import Aborted


class ErrorSink(Protocol):
    def error(self, text: str, code: int) -> None:
        """Report ``text`` with the exit code the command ends with (jsonl: an ``error`` event)."""


@contextmanager
def reported_errors(reporter: ErrorSink) -> Iterator[None]:
    """Run a command's body; a user error (:class:`NSTError`), a second signal (:class:`Aborted`)
    or a bug reaches ``reporter.error`` with its exit code, then propagates unchanged (the app
    prints the one line, or the traceback for a bug)."""
    try:
        yield
    except NSTError as exc:
        reporter.error(str(exc), exit_codes.USER_ERROR)
        raise
    except Aborted as exc:
        reporter.error(str(exc), exc.exit_code)
        raise
    except Exception as exc:
        reporter.error(f"internal error (a bug: please report it with the traceback): "
                       f"{type(exc).__name__}: {exc}", exit_codes.USER_ERROR)
        raise
