"""What a run produced: :class:`StyleResult`, its run record and how it is saved."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
import json
import math
import os
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from nst_core.config import StyleConfig, config_to_dict
from nst_core.image import image_encoder, save_image, save_together, to_pil
from nst_core.resume import RunState

RECORD_FORMAT = "nst-record/1"
RECORD_KEY = "nst-record"
"""PNG text key (and sidecar ``<image>.json``) of the run record."""

Status = Literal["finished", "stopped", "non-finite"]


@dataclass(frozen=True, kw_only=True)
class StyleResult:
    """What a run produced.

    ``image`` is ``(1, 3, H, W)`` float32 RGB in [0, 1] on the CPU with the longest side
    ``config.size``; ``alpha`` is the content's alpha resized to it (or ``None``). ``status`` is
    ``"finished"``, ``"stopped"`` (``should_stop`` returned True: ``image`` is the best so far) or
    ``"non-finite"`` (the loss became NaN/inf: ``image`` is the last finite iterate).
    ``loss`` and ``terms`` are J(G) and its weighted parts for ``image`` at the last scale.
    """

    image: Tensor
    alpha: Tensor | None
    seed: int
    status: Status
    message: str
    steps: int
    total_steps: int
    loss: float
    terms: dict[str, float]
    elapsed: float
    device: str
    sizes: tuple[tuple[int, int], ...]
    config: StyleConfig
    notes: tuple[str, ...] = ()
    recoveries: int = 0
    state: RunState | None = field(default=None, repr=False, compare=False)
    """With ``status == "stopped"``: where the run stopped; ``stylize(..., resume=state)`` goes on."""
    plugins: tuple[Mapping[str, str], ...] = ()
    """Where each name the run used came from (:attr:`nst_core.RunPlan.plugins`)."""
    weights: dict[str, float] = field(default_factory=dict)
    """The factor of each term in J(G) as it ran: its weight times the declared weight scales of
    the term and the backbone (:attr:`nst_core.planning.BoundTerm.effective_weight`)."""

    def to_pil(self):
        """The image as an 8-bit PIL image (RGBA when the content had alpha)."""
        return to_pil(self.image, self.alpha)

    def record(self, **extra: Any) -> dict[str, Any]:
        """What made this image, JSON-safe: settings (with the seed used), versions, device, outcome.

        ``config_from_dict(record["config"])`` rebuilds the settings; ``extra`` adds keys (the
        CLI adds the input files).
        """
        import platform

        from nst_core import __version__

        return {
            "format": RECORD_FORMAT,
            "nst_core": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "device": self.device,
            "seed": self.seed,
            "config": config_to_dict(self.config.replace(seed=self.seed)),
            "status": self.status,
            "steps": self.steps,
            "loss": self.loss if math.isfinite(self.loss) else None,
            "terms": self.terms,
            "elapsed": round(self.elapsed, 3),
            "sizes": [list(s) for s in self.sizes],
            "plugins": [dict(p) for p in self.plugins],
            "weights": dict(self.weights),
            **extra,
        }

    def save(self, path: str | os.PathLike, *, record: Mapping[str, Any] | bool = False, **options: Any):
        """Write the image atomically; the format follows the extension (see :func:`save_image`).

        :param record: ``True`` (or a record from :meth:`record`) also stores the run record in
            the PNG's text (key ``nst-record``) and in a sidecar ``<path>.json``.
        """
        if record is True:
            record = self.record()
        if record:
            text = json.dumps(record, indent=2, sort_keys=True)
            path = Path(path)  # the image and its record are written together, or neither
            encode = image_encoder(self.image, path, alpha=self.alpha, text={RECORD_KEY: text}, **options)
            return save_together([(path, encode), (Path(f"{path}.json"), (text + "\n").encode("utf-8"))])[0]
        return save_image(self.image, path, alpha=self.alpha, **options)
