"""The progress record every front-end receives after each optimiser step."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from torch import Tensor

if TYPE_CHECKING:
    from nst_core.resume import RunState


@dataclass(frozen=True, kw_only=True)
class Progress:
    """One optimiser step.

    ``step`` counts from 1 across all scales up to ``total``; ``scale`` counts from 1 up to
    ``scales`` (coarse to fine); ``size`` is the working ``(width, height)`` of this scale.
    ``loss`` is the weighted objective J(G) at the iterate before this step and ``terms`` its
    weighted parts by loss-term name. ``elapsed`` is seconds since the run started.
    ``image`` is the iterate this step evaluated ``(1, 3, H, W)`` in [0, 1] on the run's device;
    it is overwritten by the next step, so copy it if you keep it.
    ``state()`` returns a :class:`~nst_core.resume.RunState` from which ``stylize(..., resume=...)``
    continues after this step (it copies two images to the CPU: call it only for the steps you
    keep, and from inside ``on_progress``: later the run has moved on).
    """

    step: int
    total: int
    scale: int
    scales: int
    size: tuple[int, int]
    loss: float
    terms: dict[str, float] = field(default_factory=dict)
    elapsed: float = 0.0
    image: Tensor | None = field(default=None, repr=False, compare=False)
    state: Callable[[], RunState] | None = field(default=None, repr=False, compare=False)

    @property
    def fraction(self) -> float:
        """Share of the run done, in [0, 1]."""
        return self.step / self.total if self.total else 1.0

    @property
    def eta(self) -> float:
        """Seconds left, estimated from the mean time per step so far (coarse scales are cheaper,
        so this over-estimates early in a multi-scale run)."""
        return self.elapsed / self.step * (self.total - self.step) if self.step else float("nan")
