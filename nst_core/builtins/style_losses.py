"""More style losses than the Gram matrix, each a loss-term plug-in citing its paper.

All compare the generated image's features with targets computed once per scale from the style
images; several styles are blended with the style weights. Each declares its
:attr:`~nst_core.types.LossTerm.weight_scale`, measured by ``benchmarks/bench_strength.py``
(benchmarks/results/strength_cpu.md): the factor at which weight 1 stylizes a photo as much as
the Gram loss at weight 1, so ``style_weight`` and ``--strength`` mean the same for all. The
``scale`` parameter is an extra factor on top of it (default 1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from nst_core import functional as Fn
from nst_core._markers import hookimpl
from nst_core.types import BoundLoss, FeatureMaps, LossTerm, Targets


class LayerwiseStyleLoss(LossTerm):
    """Σ_l λ[l] · scale · compare(a[l](G), target[l]); subclasses define ``target`` and ``compare``
    and declare their ``weight_scale`` (the engine multiplies the term's weight by it)."""

    role = "style"
    scale = 1.0

    def target(self, styles: Sequence[Tensor], weights: Sequence[float]) -> object:  # pragma: no cover
        raise NotImplementedError

    def compare(self, features: Tensor, target: object) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def bind(self, targets: Targets) -> BoundLoss:
        per_layer = {}
        for layer in targets.layers:
            used = [(s[layer], w) for s, w in zip(targets.styles, targets.style_weights) if w > 0]
            per_layer[layer] = self.target([f for f, _ in used], [w for _, w in used])
        scale = self.scale

        def loss(image: Tensor, features: FeatureMaps, layer_weights: Mapping[str, float]) -> Tensor:
            return Fn.sum_terms(layer_weights[layer] * scale * self.compare(features[layer], target)
                                for layer, target in per_layer.items())

        return loss


class MeanStdLoss(LayerwiseStyleLoss):
    """Match each channel's mean and standard deviation (the statistics AdaIN aligns;
    Huang & Belongie 2017, "Arbitrary Style Transfer in Real-time with Adaptive Instance
    Normalization"): ‖μ(G) − μ(S)‖² + ‖σ(G) − σ(S)‖² per layer."""

    weight_scale = 300.0  # measured: benchmarks/results/strength_cpu.md

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = float(scale)

    def target(self, styles, weights):
        stats = [Fn.feature_mean_std(s) for s in styles]
        return (sum(w * m[0] for w, (m, _) in zip(weights, stats)),
                sum(w * d[0] for w, (_, d) in zip(weights, stats)))

    def compare(self, features, target):
        return Fn.mean_std_loss(features, *target)


class WassersteinLoss(LayerwiseStyleLoss):
    """Squared 2-Wasserstein distance between Gaussians fitted to the features of G and of S
    (Kolkin et al. 2019 and crowsonkb's style-transfer-pytorch): matches means and full
    covariances. Several styles: their means and second moments are blended."""

    weight_scale = 70.0  # measured: benchmarks/results/strength_cpu.md

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = float(scale)

    def target(self, styles, weights):
        mean = sum(w * Fn.feature_mean_cov(s)[0] for w, s in zip(weights, styles))
        second = sum(w * (Fn.feature_mean_cov(s)[1] + torch.outer(*[Fn.feature_mean_cov(s)[0]] * 2))
                     for w, s in zip(weights, styles))
        cov = second - torch.outer(mean, mean)
        eigenvalues, eigenvectors = torch.linalg.eigh(cov.double())
        root = (eigenvectors * eigenvalues.clamp_min(0).sqrt()) @ eigenvectors.T
        return mean, root.to(cov.dtype)

    def compare(self, features, target):
        return Fn.gaussian_w2_loss(features, *target)


class HistogramLoss(LayerwiseStyleLoss):
    """Match each channel's full histogram (Risser, Wilmot & Barnes 2017, "Stable and
    Controllable Neural Texture Synthesis and Style Transfer Using Histogram Losses").
    Several styles: their quantile functions are averaged with the style weights."""

    weight_scale = 230.0  # measured: benchmarks/results/strength_cpu.md

    def __init__(self, scale: float = 1.0, bins: int = 1024) -> None:
        self.scale = float(scale)
        self.bins = int(bins)

    def target(self, styles, weights):
        quantiles = []
        for s in styles:
            values = s.flatten(2)[0].sort(dim=1).values
            positions = torch.linspace(0, values.shape[1] - 1, self.bins, device=values.device)
            quantiles.append(Fn._interp_rows(values, positions))
        return sum(w * q for w, q in zip(weights, quantiles))

    def compare(self, features, target):
        return Fn.histogram_loss(features, target)


class MRFLoss(LayerwiseStyleLoss):
    """Markov random field loss (Li & Wand 2016, "Combining Markov Random Fields and
    Convolutional Neural Networks for Image Synthesis"): every 3×3 feature patch of G is pulled
    toward its most similar style patch. Defaults to relu3_1 and relu4_1 as in the paper; style
    patches are taken with ``stride`` and capped at ``max_patches`` to bound memory."""

    default_layers = ("relu3_1", "relu4_1")
    weight_scale = 0.17  # measured 0.43, lowered by eye: benchmarks/results/strength_cpu.md

    def __init__(self, scale: float = 1.0, patch_size: int = 3, stride: int = 2, max_patches: int = 8192) -> None:
        self.scale = float(scale)
        self.patch_size = int(patch_size)
        self.stride = int(stride)
        self.max_patches = int(max_patches)

    def target(self, styles, weights):
        patches = torch.cat([Fn.extract_patches(s, self.patch_size, self.stride) for s in styles])
        if patches.shape[0] > self.max_patches:
            keep = torch.linspace(0, patches.shape[0] - 1, self.max_patches, device=patches.device).long()
            patches = patches[keep]
        return patches

    def compare(self, features, target):
        return Fn.mrf_loss(features, target, self.patch_size)


@hookimpl
def nst_register_loss_terms(register):
    register("mean-std", MeanStdLoss,
             description="match channel means and deviations (AdaIN statistics, Huang & Belongie 2017)")
    register("wasserstein", WassersteinLoss,
             description="2-Wasserstein distance of feature Gaussians (Kolkin et al. 2019; crowsonkb)")
    register("histogram", HistogramLoss, description="match channel histograms (Risser et al. 2017)")
    register("mrf", MRFLoss, description="nearest style patches in feature space (Li & Wand 2016)")
