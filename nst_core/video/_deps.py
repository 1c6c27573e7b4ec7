"""The optional packages of the video extra, imported only when used, and the video error."""

from __future__ import annotations

from types import ModuleType

from nst_core.errors import NSTError

INSTALL_HINT = "pip install 'nst-core[video]'"


class VideoError(NSTError):
    """A video or image sequence cannot be read or written; the message says what to do."""


def require_av() -> ModuleType:
    """PyAV (FFmpeg), or a one-line :class:`VideoError` saying how to install it."""
    try:
        import av
    except ImportError:
        raise VideoError(f"reading and writing video needs PyAV; install it with {INSTALL_HINT}") from None
    return av


def require_cv2() -> ModuleType:
    """OpenCV, or a one-line :class:`VideoError` saying how to install it."""
    try:
        import cv2
    except ImportError:
        raise VideoError(f"optical flow needs OpenCV; install it with {INSTALL_HINT}") from None
    return cv2
