"""SIGINT/SIGTERM during a run: the first one asks the engine to stop, a second one aborts.

``stylize(should_stop=...)`` checks the flag before every step, so the run ends cleanly and the
CLI saves the best image so far. A second signal raises :class:`Aborted` at once (a
``BaseException``, so no ``except Exception`` in the engine or a plug-in swallows it).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

from nst_cli.exit_codes import interrupted

HANDLED = (signal.SIGINT, signal.SIGTERM)


class Aborted(BaseException):
    """A second signal arrived while the run was already stopping."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"aborted by a second {signal.Signals(signum).name}; the image was not saved")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return interrupted(self.signum)


class StopOnSignal:
    """Context manager and ``should_stop`` callable.

    Inside ``with StopOnSignal() as stop:`` SIGINT and SIGTERM set ``stop.signum``; ``stop()`` is
    True once one arrived. The previous handlers come back on exit. Outside the main thread
    (where Python cannot install handlers) it installs none and never asks to stop.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for signum in HANDLED:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def __call__(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        """``"SIGINT"`` or ``"SIGTERM"`` (only once a signal arrived)."""
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        """130 for SIGINT, 143 for SIGTERM (only once a signal arrived)."""
        return interrupted(self.signum)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise Aborted(signum)
        self.signum = signum
