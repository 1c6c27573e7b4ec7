"""Where a backward flow can be trusted: Ruder et al.'s forward-backward check (2016, sec. 3.2).

For frame t with backward flow ŵ (t -> t-1) and forward flow w (t-1 -> t), let
w̃(x) = w(x + ŵ(x)) (the forward flow read where x lands in frame t-1). A pixel is **occluded**
(disoccluded in t: frame t-1 does not show it) when

    |w̃ + ŵ|² > 0.01 (|w̃|² + |ŵ|²) + 0.5,

on a **motion boundary** when

    |∇û|² + |∇v̂|² > 0.01 |ŵ|² + 0.002        (ŵ = (û, v̂), central differences),

and untrusted when x + ŵ(x) lands more than half a pixel outside frame t-1 (Ruder's C++ checker
uses no such margin; without it a flow of -0.01 px along the top row flags the whole row). The untrusted area is
grown by ``dilation`` px (default 3): DIS smooths motion edges, so the flagged ring sits slightly
off the true edge; 3 px lifts the recall of truly disoccluded pixels from 58 % to 92 % on the
synthetic clip (video research notes, section 1). The reliability mask c is 1 where trusted and 0
elsewhere, ``(1, 1, H, W)`` float32 in {0, 1}.
"""

from __future__ import annotations

import torch
from torch import Tensor
import torch.nn.functional as F

from nst_core.video.warp import sampling_grid

DEFAULT_DILATION = 3


def _gradient_energy(flow: Tensor) -> Tensor:
    """|∇u|² + |∇v|² of ``flow`` ``(H, W, 2)`` with central differences ([-½, 0, ½], replicated edges)."""
    f = flow.permute(2, 0, 1)[None]  # (1, 2, H, W)
    padded = F.pad(f, (1, 1, 1, 1), mode="replicate")
    dx = (padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2]) / 2
    dy = (padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1]) / 2
    return (dx ** 2 + dy ** 2).sum(dim=1)[0]


def unreliable(backward: Tensor, forward: Tensor, *, motion_boundaries: bool = True) -> Tensor:
    """``(H, W)`` bool: pixels of frame t failing the check (occluded, motion boundary or leaving
    the frame), before dilation. ``backward`` is ŵ (t -> t-1), ``forward`` is w (t-1 -> t), both
    ``(H, W, 2)`` in pixels."""
    h, w = backward.shape[:2]
    grid = sampling_grid(backward)
    w_tilde = F.grid_sample(forward.permute(2, 0, 1)[None].float(), grid, mode="bilinear",
                            padding_mode="border", align_corners=True)[0].permute(1, 2, 0)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=backward.dtype), torch.arange(w, dtype=backward.dtype),
                            indexing="ij")
    tx, ty = xs + backward[..., 0], ys + backward[..., 1]
    outside = (tx < -0.5) | (tx > w - 0.5) | (ty < -0.5) | (ty > h - 0.5)  # beyond half a pixel past the edge
    sum_sq = ((w_tilde + backward) ** 2).sum(-1)
    occluded = sum_sq > 0.01 * ((w_tilde ** 2).sum(-1) + (backward ** 2).sum(-1)) + 0.5
    bad = outside | occluded
    if motion_boundaries:
        bad = bad | (_gradient_energy(backward) > 0.01 * (backward ** 2).sum(-1) + 0.002)
    return bad


def dilate(mask: Tensor, radius: int) -> Tensor:
    """Grow the True area of ``mask`` ``(H, W)`` bool by ``radius`` px (a disc)."""
    if radius <= 0:
        return mask
    k = 2 * radius + 1
    yy, xx = torch.meshgrid(torch.arange(k) - radius, torch.arange(k) - radius, indexing="ij")
    disc = ((yy ** 2 + xx ** 2) <= radius ** 2 + 0.5).float()[None, None]
    grown = F.conv2d(mask.float()[None, None], disc, padding=radius)
    return grown[0, 0] > 0.5


def reliability(backward: Tensor, forward: Tensor, *, dilation: int = DEFAULT_DILATION,
                motion_boundaries: bool = True) -> Tensor:
    """The reliability mask c ``(1, 1, H, W)`` float32 in {0, 1}: 1 where the backward flow of
    frame t (``backward``, t -> t-1) passes Ruder's check against ``forward`` (t-1 -> t), with the
    failing area grown by ``dilation`` px."""
    bad = dilate(unreliable(backward, forward, motion_boundaries=motion_boundaries), dilation)
    return (~bad).float()[None, None]


def inconsistent_fraction(mask: Tensor) -> float:
    """Share of pixels the mask ``(1, 1, H, W)`` does not trust, in [0, 1] (scene-cut test)."""
    return float(1.0 - mask.float().mean())
