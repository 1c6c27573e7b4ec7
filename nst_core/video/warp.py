"""Backward warping: bring an image of frame t-1 into frame t along a backward flow.

``warp(image, flow)(x) = image(x + flow(x))``, bilinear, for ``image`` ``(1, C, H, W)`` and
``flow`` ``(H, W, 2)`` (dx, dy) in pixels (see :mod:`nst_core.video.flow`). Positions outside the
image take the nearest border value; the reliability mask of :mod:`nst_core.video.consistency`
is 0 there, so those pixels are never trusted.
"""

from __future__ import annotations

import torch
from torch import Tensor
import torch.nn.functional as F


def sampling_grid(flow: Tensor) -> Tensor:
    """``(H, W, 2)`` pixel flow -> ``(1, H, W, 2)`` grid in [-1, 1] for ``grid_sample``
    (``align_corners=True``: -1 and 1 are the centers of the first and last pixels)."""
    h, w = flow.shape[:2]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=flow.dtype, device=flow.device),
                            torch.arange(w, dtype=flow.dtype, device=flow.device), indexing="ij")
    gx = (xs + flow[..., 0]) * (2.0 / max(w - 1, 1)) - 1.0
    gy = (ys + flow[..., 1]) * (2.0 / max(h - 1, 1)) - 1.0
    return torch.stack([gx, gy], dim=-1)[None]


def warp(image: Tensor, flow: Tensor) -> Tensor:
    """``image`` ``(1, C, H, W)`` sampled at ``x + flow(x)`` (bilinear, border padding); same shape."""
    if tuple(image.shape[-2:]) != tuple(flow.shape[:2]):
        raise ValueError(f"image is {tuple(image.shape[-2:])} but the flow is {tuple(flow.shape[:2])}")
    grid = sampling_grid(flow.to(image.device, torch.float32))
    return F.grid_sample(image.float(), grid, mode="bilinear", padding_mode="border", align_corners=True)


def warped_init(previous: Tensor, content: Tensor, flow: Tensor, mask: Tensor) -> Tensor:
    """The starting image of frame t (Ruder et al. 2016): ``c · warp(previous) + (1 − c) · content``.

    :param previous: the stylized frame t-1 ``(1, 3, H, W)`` in [0, 1].
    :param content: frame t of the input ``(1, 3, H, W)`` in [0, 1] (fills disoccluded areas).
    :param flow: backward flow ``(H, W, 2)`` of frame t to frame t-1.
    :param mask: reliability ``c`` ``(1, 1, H, W)`` in [0, 1].
    """
    return (mask * warp(previous, flow) + (1 - mask) * content).clamp(0, 1)
