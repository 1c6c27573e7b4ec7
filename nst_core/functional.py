"""Pure tensor math of the objective: no state, no device or dtype choices.

Notation of Gatys et al. (2015) and of the project's seed: a feature map ``a`` of layer l has
shape ``(N, C, H, W)`` with nC = C channels and nH × nW = H × W positions. Every function sums
over the batch dimension N. Deviations from the seed are named where they occur.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor


def gram_matrix(features: Tensor, *, normalize: bool = False) -> Tensor:
    """Gram matrix G[l]_kk' = Σ_ij a_ijk a_ijk' of ``features`` ``(N, C, H, W)`` -> ``(N, C, C)``.

    :param normalize: divide by nH·nW (the mean over positions instead of the sum). The seed's
        style cost is unchanged by this if both Grams are normalised the same way and nH·nW is
        moved into the denominator (see :func:`gram_style_loss`); it keeps float32 values small
        and lets a style image of another size serve as target.

    bf16/fp16 features (mixed precision) give a float32 Gram, accumulated in float32.
    """
    n, c, h, w = features.shape
    if features.dim() == 4 and not features.is_contiguous() and features.is_contiguous(
            memory_format=torch.channels_last):
        flat = features.permute(0, 2, 3, 1).reshape(n, h * w, c).transpose(1, 2)  # a view, no copy
    else:
        flat = features.reshape(n, c, h * w)
    gram = _Gram.apply(flat)
    return gram / (h * w) if normalize else gram


class _Gram(torch.autograd.Function):
    """F Fᵀ for ``(N, C, M)`` with the gradient (dG + dGᵀ) F: one matrix product each way.

    Autograd's ``bmm(F, Fᵀ)`` differentiates both factors separately (two products and a sum)
    and is 3-4× slower on a CPU at relu1_1 sizes (benchmarks/RESULTS.md); same values. The
    gradient keeps the layout of ``F`` (channels-last features get a channels-last gradient)."""

    @staticmethod
    def forward(ctx, flat: Tensor) -> Tensor:
        ctx.save_for_backward(flat)
        if flat.dtype in _LOW_PRECISION:
            return _low_precision_gram(flat)
        if flat.shape[0] == 1:
            return torch.mm(flat[0], flat[0].t()).unsqueeze(0)
        return torch.bmm(flat, flat.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (flat,) = ctx.saved_tensors
        sym = grad + grad.transpose(1, 2)
        if flat.dtype in _LOW_PRECISION:
            return _low_precision_gram_grad(flat, sym)
        if flat.stride(-1) != 1:  # (N, C, M) view of (N, M, C) memory
            return torch.bmm(flat.transpose(1, 2), sym).transpose(1, 2)
        if flat.shape[0] == 1:
            return torch.mm(sym[0], flat[0]).unsqueeze(0)
        return torch.bmm(sym, flat)


_LOW_PRECISION = (torch.bfloat16, torch.float16)
_GRAM_CHUNK = 1 << 16
"""Positions per float32 chunk when the features are bf16/fp16 (64 channels: 16 MB)."""


def _low_precision_gram(flat: Tensor) -> Tensor:
    """F Fᵀ of bf16/fp16 ``(N, C, M)`` accumulated in float32, a chunk of positions at a time: no
    float32 copy of the whole feature map (at relu1_1 that copy is 256 bytes per pixel)."""
    with torch.autocast(flat.device.type, enabled=False):
        out = torch.zeros(flat.shape[0], flat.shape[1], flat.shape[1], dtype=torch.float32, device=flat.device)
        for start in range(0, flat.shape[2], _GRAM_CHUNK):
            f = flat[:, :, start:start + _GRAM_CHUNK].float()
            out.baddbmm_(f, f.transpose(1, 2))
    return out


def _low_precision_gram_grad(flat: Tensor, sym: Tensor) -> Tensor:
    """(dG + dGᵀ) F in float32, chunk by chunk, stored in F's dtype and layout."""
    grad = torch.empty_like(flat)
    with torch.autocast(flat.device.type, enabled=False):
        for start in range(0, flat.shape[2], _GRAM_CHUNK):
            part = flat[:, :, start:start + _GRAM_CHUNK]
            grad[:, :, start:start + _GRAM_CHUNK] = torch.bmm(sym, part.float())
    return grad


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


def range_penalty(image: Tensor, low: float = 0.0, high: float = 1.0) -> Tensor:
    """Mean squared excess of ``image`` (any shape) outside ``[low, high]``: 0 inside the range.

    P(x) = mean((x − high)₊² + (low − x)₊²). Not part of the Gatys objective: the engine adds it
    to what L-BFGS minimises (weighted relative to J) so that the unclamped iterate stays in
    range, and J of the clamped image written out is the J the optimiser reached.
    """
    return ((image - high).clamp_min(0).square() + (low - image).clamp_min(0).square()).mean()


def feature_mean_std(features: Tensor, eps: float = 1e-5) -> tuple[Tensor, Tensor]:
    """Per-channel mean and standard deviation over positions of ``(N, C, H, W)`` -> two ``(N, C)``."""
    flat = features.flatten(2)
    mean = flat.mean(dim=2)
    std = (flat.var(dim=2, unbiased=False) + eps).sqrt()
    return mean, std


def mean_std_loss(features: Tensor, target_mean: Tensor, target_std: Tensor) -> Tensor:
    """‖μ(a) − μ_S‖² + ‖σ(a) − σ_S‖², the feature statistics AdaIN aligns (Huang & Belongie 2017),
    used as a style loss; ``features`` ``(N, C, H, W)``, targets ``(C,)`` or ``(N, C)`` -> scalar."""
    mean, std = feature_mean_std(features)
    return (mean - target_mean).pow(2).sum() + (std - target_std).pow(2).sum()


def feature_mean_cov(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean ``(C,)`` and covariance ``(C, C)`` of the features of a ``(1, C, H, W)`` map."""
    flat = features.flatten(2)[0]
    mean = flat.mean(dim=1)
    centred = flat - mean[:, None]
    return mean, centred @ centred.T / flat.shape[1]


def gaussian_w2_loss(features: Tensor, target_mean: Tensor, target_cov_sqrt: Tensor, eps: float = 1e-6) -> Tensor:
    """Squared 2-Wasserstein distance between Gaussians fitted to the features and to the style:
    ‖μ − μ_S‖² + tr(Σ + Σ_S − 2 (Σ_S^½ Σ Σ_S^½)^½) (as crowsonkb's style-transfer-pytorch uses).

    ``features`` ``(1, C, H, W)``; ``target_cov_sqrt`` is Σ_S^½ ``(C, C)``. Returns a scalar.
    The trace of the matrix square root is Σ √λ over the eigenvalues of the symmetric
    Σ_S^½ Σ Σ_S^½ (``eps`` keeps the gradient of √λ finite at λ = 0).
    """
    mean, cov = feature_mean_cov(features)
    cross = target_cov_sqrt @ cov @ target_cov_sqrt
    eigenvalues = torch.linalg.eigvalsh(0.5 * (cross + cross.T))
    trace = cov.diagonal().sum() + target_cov_sqrt.pow(2).sum() - 2 * (eigenvalues.clamp_min(0) + eps).sqrt().sum()
    return (mean - target_mean).pow(2).sum() + trace


def histogram_matched(features: Tensor, target_sorted: Tensor) -> Tensor:
    """``features`` ``(1, C, H, W)`` remapped channel by channel so that each channel has the
    histogram of the style: the value of rank r becomes the style's quantile of rank r.
    ``target_sorted`` is ``(C, K)``: each style channel's values, sorted. No gradient."""
    with torch.no_grad():
        flat = features.flatten(2)[0]
        n = flat.shape[1]
        order = flat.argsort(dim=1)
        positions = torch.linspace(0, target_sorted.shape[1] - 1, n, device=flat.device)
        quantiles = _interp_rows(target_sorted, positions)
        matched = torch.empty_like(flat)
        matched.scatter_(1, order, quantiles)
    return matched.view_as(features)


def _interp_rows(rows: Tensor, positions: Tensor) -> Tensor:
    low = positions.floor().long().clamp(max=rows.shape[1] - 1)
    high = (low + 1).clamp(max=rows.shape[1] - 1)
    frac = (positions - low.to(positions.dtype))[None, :]
    return rows[:, low] * (1 - frac) + rows[:, high] * frac


def histogram_loss(features: Tensor, target_sorted: Tensor) -> Tensor:
    """Risser et al. (2017): ‖a − H(a)‖² where H(a) is ``a`` histogram-matched to the style
    (:func:`histogram_matched`), divided by nH·nW. ``features`` ``(1, C, H, W)`` -> scalar."""
    target = histogram_matched(features, target_sorted)
    return (features - target).pow(2).sum() / (features.shape[-2] * features.shape[-1])


def extract_patches(features: Tensor, size: int = 3, stride: int = 1) -> Tensor:
    """All ``size``×``size`` patches of ``(1, C, H, W)`` -> ``(P, C, size, size)``."""
    patches = features.unfold(2, size, stride).unfold(3, size, stride)  # 1, C, h', w', s, s
    return patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, features.shape[1], size, size)


def mrf_loss(features: Tensor, style_patches: Tensor, size: int = 3) -> Tensor:
    """Li & Wand (2016): Σ_i ‖Ψ_i(a) − Ψ_NN(i)(S)‖², each patch of the generated features matched
    to its most similar style patch by normalised cross-correlation, divided by the patch count.
    ``features`` ``(1, C, H, W)``; ``style_patches`` ``(P, C, size, size)`` -> scalar."""
    with torch.no_grad():
        norms = style_patches.flatten(1).norm(dim=1).clamp_min(1e-8)
        scores = torch.nn.functional.conv2d(features, style_patches / norms.view(-1, 1, 1, 1))
        nearest = scores.argmax(dim=1).flatten()  # (h' w',)
    own = extract_patches(features, size, 1)
    return (own - style_patches[nearest]).pow(2).sum() / own.shape[0]


def sum_terms(parts: Iterable[Tensor]) -> Tensor:
    """Σ parts, left to right (the value ``sum(parts)`` gives), typed as a Tensor: at least one part."""
    total: Tensor | None = None
    for part in parts:
        total = part if total is None else total + part
    if total is None:
        raise ValueError("sum_terms needs at least one part")
    return total
