"""The temporal loss of Ruder, Dosovitskiy & Brox (2016), a loss term like any other.

Short-term (their eq. 5), for the frame G being optimized, the previous stylized frame warped into
it ω = warp(S_{t-1}, ŵ) and the reliability mask c (:mod:`nst_core.video.consistency`)::

    L_temporal(G) = 1/D · Σ_k c_k (G_k − ω_k)²        (D = 3·H·W: a mean over pixels and channels)

Long-term (their eq. 6), over earlier stylized frames t−j, j in J (e.g. 1, 2, 4)::

    L_long(G) = Σ_j 1/D · Σ_k c_k^(j) (G_k − ω_k^(j))²

with the "closest first" masks c^(j) = max(0, c_j − Σ_{k<j} c_k) (:func:`closest_first`), so each
pixel is pulled toward the nearest earlier frame that shows it, once.

The term (registered as loss term ``"temporal"``, role ``"image"``) reads its per-frame data from
:attr:`nst_core.types.Targets.guides`: ``temporal_target`` ``(1, 3, H, W)`` in [0, 1] and
``temporal_mask`` ``(1, 1, H, W)`` in [0, 1], and for long-term consistency more pairs
``temporal_target_<j>`` / ``temporal_mask_<j>``. :func:`temporal_guides` builds them. A run without
these guides (the term used outside a video) is a one-line ConfigError.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from nst_core.errors import ConfigError
from nst_core.types import BoundLoss, FeatureMaps, LossTerm, Targets

TARGET = "temporal_target"
MASK = "temporal_mask"


def closest_first(masks: Sequence[Tensor]) -> list[Tensor]:
    """Ruder's combined long-term masks: ``c_j := max(0, c_j − Σ_{k<j} c_k)`` for masks ordered
    nearest frame first, each ``(1, 1, H, W)`` in [0, 1]; a pixel's weights then sum to at most 1."""
    out: list[Tensor] = []
    covered = None
    for mask in masks:
        out.append(mask.clone() if covered is None else (mask - covered).clamp_min(0))
        covered = mask.clone() if covered is None else covered + mask
    return out


def temporal_guides(targets: Sequence[Tensor], masks: Sequence[Tensor]) -> dict[str, Tensor]:
    """Guides for the term: the first pair as ``temporal_target`` / ``temporal_mask`` (the
    previous frame), the others as ``temporal_target_<i>`` / ``temporal_mask_<i>`` (i = 1, 2 ...);
    ``targets[i]`` ``(1, 3, H, W)`` in [0, 1], ``masks[i]`` ``(1, 1, H, W)`` in [0, 1]."""
    if len(targets) != len(masks) or not targets:
        raise ConfigError(f"temporal guides need one mask per warped frame, got {len(targets)} frame(s) and "
                          f"{len(masks)} mask(s)")
    guides: dict[str, Tensor] = {}
    for i, (target, mask) in enumerate(zip(targets, masks)):
        suffix = "" if i == 0 else f"_{i}"
        guides[TARGET + suffix], guides[MASK + suffix] = target, mask
    return guides


def temporal_loss(image: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """``mean(c · (G − ω)²)`` over pixels and channels (Ruder eq. 5): ``image`` G and ``target`` ω
    ``(1, 3, H, W)``, ``mask`` c ``(1, 1, H, W)`` in [0, 1]; a scalar."""
    return (mask * (image - target) ** 2).mean()


def _pairs(guides: Mapping[str, Tensor]) -> list[tuple[Tensor, Tensor]]:
    names = sorted((n for n in guides if n == TARGET or n.startswith(TARGET + "_")),
                   key=lambda n: (n != TARGET, n))
    pairs = []
    for name in names:
        mask_name = MASK + name[len(TARGET):]
        if mask_name not in guides:
            raise ConfigError(f"loss term 'temporal': guide {name!r} has no mask {mask_name!r}; pass both")
        pairs.append((guides[name], guides[mask_name]))
    return pairs


class TemporalLoss(LossTerm):
    """Σ_j mean(c_j · (G − ω_j)²) over the temporal guide pairs (see the module's docstring)."""

    role = "image"

    def bind(self, targets: Targets) -> BoundLoss:
        pairs = _pairs(getattr(targets, "guides", {}) or {})
        if not pairs:
            raise ConfigError("loss term 'temporal' needs the guides 'temporal_target' and 'temporal_mask' (the "
                              "warped previous frame and its reliability); use it through "
                              "nst_core.video.stylize_video or pass guides=")
        h, w = targets.content_image.shape[-2:]
        bound = []
        for target, mask in pairs:
            if target.shape[1] != 3 or mask.shape[1] != 1 or tuple(target.shape[-2:]) != (h, w) \
                    or tuple(mask.shape[-2:]) != (h, w):
                raise ConfigError(f"loss term 'temporal': guides must be (1, 3, {h}, {w}) and (1, 1, {h}, {w}), got "
                                  f"{tuple(target.shape)} and {tuple(mask.shape)}")
            bound.append((target.detach(), mask.detach().clamp(0, 1)))

        def loss(image: Tensor, features: FeatureMaps, layer_weights: Mapping[str, float]) -> Tensor:
            total = torch.zeros((), device=image.device, dtype=torch.float32)
            for target, mask in bound:
                total = total + temporal_loss(image.float(), target, mask)
            return total

        return loss
