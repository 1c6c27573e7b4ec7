"""Errors a person can act on.

Every message says what was wrong and what to do. Front-ends print ``str(error)`` as one line
(the CLI) or show it in a dialog (GIMP); a traceback is only for bug reports.
"""

from __future__ import annotations

from collections.abc import Iterable
import difflib
import unicodedata


def printable(text: str) -> str:
    """``text`` with control and format characters (terminal escape sequences, newlines, NUL,
    bidirectional overrides …) written as ``\\x1b``-style escapes, so that text read from a file
    (a resume file's notes, a file name) cannot drive the terminal it is shown on."""
    return "".join(ch if ch == " " or unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn")
                   else ascii(ch)[1:-1] for ch in str(text))


class NSTError(Exception):
    """Base class of every error nst_core raises on purpose."""


class ConfigError(NSTError, ValueError):
    """A configuration value is invalid; the message names the field."""


class UnknownNameError(ConfigError, KeyError):
    """A backbone, loss term, schedule or layer name is not known; suggests close matches."""

    def __init__(self, kind: str, name: str, known: Iterable[str], hint: str = "") -> None:
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        message = f"unknown {kind} {name!r}"
        if close:
            message += f"; did you mean {' or '.join(repr(c) for c in close)}?"
        message += f" (known: {', '.join(known) if known else 'none'})"
        if hint:
            message += f". {hint}"
        super().__init__(message)
        self.kind, self.name, self.known, self.suggestions = kind, name, known, close

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class PluginError(NSTError):
    """A plug-in failed: it could not be imported, registered a duplicate name, or raised."""


class PluginWarning(UserWarning):
    """A plug-in was skipped (import error, duplicate name, hook raising); others still work."""


class DeviceError(NSTError):
    """The requested device does not exist or cannot be used here."""


class ImageError(NSTError):
    """An image file could not be read or written."""


class BackboneUnavailableError(NSTError):
    """A backbone's weights are not on this machine and cannot be downloaded now."""


class ResourceError(NSTError):
    """The run would not fit in the memory available (or ran out of it)."""


class ResumeError(NSTError):
    """A saved run state cannot be used: unreadable, not a resume file, or from another run
    (other settings, other images); the message names what differs."""
