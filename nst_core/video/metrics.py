"""Flicker: the warping error of Lai et al. 2018 ("Learning Blind Video Temporal Consistency").

For consecutive output frames O_{t-1}, O_t and the *input* video's own backward flow ŵ_t
(t -> t-1) with its reliability mask M_t (forward-backward consistent, non-occluded pixels;
:func:`nst_core.video.consistency.reliability`)::

    E_warp(O_t, O_{t-1}) = Σ_x M_t(x) ‖O_t(x) − warp(O_{t-1}, ŵ_t)(x)‖² / Σ_x M_t(x)

(squared RGB distance in [0, 1] units summed over channels, averaged over reliable pixels), and the
clip's warping error is the mean over t = 1 .. n-1. Lower is steadier; 0 means each output frame
is exactly the previous one carried along the input's motion. The flow is computed on the input,
so a method cannot lower the score by distorting the motion.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from nst_core.image import resize
from nst_core.video.consistency import DEFAULT_DILATION, reliability
from nst_core.video.flow import FlowEstimator, estimate_flow
from nst_core.video.warp import warp


@dataclass(frozen=True)
class InputMotion:
    """The input's backward flows and masks at one size: ``flows[t]`` ``(H, W, 2)`` and
    ``masks[t]`` ``(1, 1, H, W)`` for t >= 1 (index 0 is None)."""

    flows: list[Tensor | None]
    masks: list[Tensor | None]


def input_motion(frames: Sequence[Tensor], estimator: FlowEstimator, *,
                 dilation: int = DEFAULT_DILATION) -> InputMotion:
    """Backward flow and reliability mask of every input frame ``(1, 3, H, W)`` to the one before."""
    flows: list[Tensor | None] = [None]
    masks: list[Tensor | None] = [None]
    for t in range(1, len(frames)):
        backward = estimate_flow(estimator, frames[t], frames[t - 1])
        forward = estimate_flow(estimator, frames[t - 1], frames[t])
        flows.append(backward)
        masks.append(reliability(backward, forward, dilation=dilation))
    return InputMotion(flows, masks)


def warping_error(current: Tensor, previous: Tensor, flow: Tensor, mask: Tensor) -> float:
    """E_warp of one pair: outputs ``(1, 3, H, W)`` in [0, 1], the input's backward flow
    ``(H, W, 2)`` and mask ``(1, 1, H, W)`` at the same size (module docstring)."""
    diff = ((current.float() - warp(previous.float(), flow)) ** 2).sum(dim=1, keepdim=True)
    weight = mask.float()
    return float((weight * diff).sum() / weight.sum().clamp_min(1.0))


def clip_warping_errors(outputs: Sequence[Tensor], motion: InputMotion) -> list[float]:
    """E_warp for t = 1 .. n-1; outputs are resized to the motion's size if they differ."""
    errors = []
    for t in range(1, len(outputs)):
        flow, mask = motion.flows[t], motion.masks[t]
        assert flow is not None and mask is not None
        h, w = flow.shape[:2]
        cur, prev = (o if tuple(o.shape[-2:]) == (h, w) else resize(o, h, w) for o in (outputs[t], outputs[t - 1]))
        errors.append(warping_error(cur, prev, flow, mask))
    return errors


def mean_warping_error(outputs: Sequence[Tensor], motion: InputMotion) -> float:
    """The clip's warping error: the mean of :func:`clip_warping_errors` (0 for one frame)."""
    errors = clip_warping_errors(outputs, motion)
    return float(torch.tensor(errors).mean()) if errors else 0.0
