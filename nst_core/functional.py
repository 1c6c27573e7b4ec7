"""Pure tensor math of the objective: no state, no device or dtype choices.

Notation of Gatys et al. (2015) and of the project's seed: a feature map ``a`` of layer l has
shape ``(N, C, H, W)`` with nC = C channels and nH × nW = H × W positions. Every function sums
over the batch dimension N. Deviations from the seed are named where they occur.
"""

from __future__ import annotations

import torch
from torch import Tensor


def gram_matrix(features: Tensor, *, normalize: bool = False) -> Tensor:
    """Gram matrix G[l]_kk' = Σ_ij a_ijk a_ijk' of ``features`` ``(N, C, H, W)`` -> ``(N, C, C)``.

    :param normalize: divide by nH·nW (the mean over positions instead of the sum). The seed's
        style cost is unchanged by this if both Grams are normalised the same way and nH·nW is
        moved into the denominator (see :func:`gram_style_loss`); it keeps float32 values small
        and lets a style image of another size serve as target.
    """
    n, c, h, w = features.shape
    flat = features.reshape(n, c, h * w)
    gram = torch.bmm(flat, flat.transpose(1, 2))
    return gram / (h * w) if normalize else gram


def content_loss(generated: Tensor, target: Tensor, *, normalize: bool = False) -> Tensor:
    """J_content(C, G) = ½ ‖a[l](C) − a[l](G)‖² for features ``(N, C, H, W)`` -> scalar.

    :param normalize: divide by nH·nW (the mean over positions, still summed over channels). The
        seed's sum grows with the image area while the style cost does not, so the same α/β would
        give a different balance at 256 px and at 2048 px; the built-in ``content`` term
        normalises by default for that reason.
    """
    loss = 0.5 * (generated - target).pow(2).sum()
    if normalize:
        loss = loss / (generated.shape[-2] * generated.shape[-1])
    return loss


def gram_style_loss(gram_generated: Tensor, gram_style: Tensor, n_h: int, n_w: int, n_c: int) -> Tensor:
    """J_style[l](S, G) = ‖G[l](S) − G[l](G)‖²_F / (2 nH nW nC)², the seed's equation, -> scalar.

    ``gram_*`` are ``(N, C, C)`` or ``(C, C)``. With Grams normalised by nH·nW
    (:func:`gram_matrix` ``normalize=True``) pass ``n_h = n_w = 1``: the value is identical.
    """
    return (gram_style - gram_generated).pow(2).sum() / (2.0 * n_h * n_w * n_c) ** 2


def total_variation(image: Tensor, *, exponent: float = 2.0, normalize: bool = False) -> Tensor:
    """Total variation Σ_ij (|x[i+1,j] − x[i,j]|^β + |x[i,j+1] − x[i,j]|^β) of ``(N, C, H, W)`` -> scalar.

    Not in the seed; the image prior of Mahendran & Vedaldi (2015) used by most peers, with
    β = ``exponent`` (2: smooth, 1: edge-preserving).
    :param normalize: divide by N·C·H·W so the value does not grow with the image area.
    """
    dh = (image[..., 1:, :] - image[..., :-1, :]).abs().pow(exponent).sum()
    dw = (image[..., :, 1:] - image[..., :, :-1]).abs().pow(exponent).sum()
    loss = dh + dw
    return loss / image.numel() if normalize else loss
