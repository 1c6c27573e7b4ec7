"""Built-in loss terms: thin binders over :mod:`nst_core.functional`."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from nst_core import functional as Fn
from nst_core._markers import hookimpl
from nst_core.types import BoundLoss, FeatureMaps, LossTerm, Targets


class ContentLoss(LossTerm):
    """Σ_l λ[l] · ½‖a[l](C) − a[l](G)‖², divided by nH·nW unless ``normalize=False``.

    With ``normalize=False`` and one layer this is exactly the seed's J_content.
    """

    role = "content"
    low_precision_features = True  # (a − target) promotes bf16/fp16 features to float32

    def __init__(self, normalize: bool = True) -> None:
        self.normalize = bool(normalize)

    def bind(self, targets: Targets) -> BoundLoss:
        content = {layer: targets.content[layer] for layer in targets.layers}
        normalize = self.normalize

        def loss(image: Tensor, features: FeatureMaps, layer_weights: Mapping[str, float]) -> Tensor:
            return Fn.sum_terms(layer_weights[layer] * Fn.content_loss(features[layer], target, normalize=normalize)
                                for layer, target in content.items())

        return loss


class GramStyleLoss(LossTerm):
    """J_style = Σ_l λ[l] ‖G[l](S) − G[l](G)‖²_F / (2 nH nW nC)² (Gatys et al. 2015, the seed).

    Several style images: the target Gram is their blend Σ_s w_s G[l](S_s), each normalised by
    its own nH·nW, so style images need not have the content's size (as in Johnson's
    neural-style); with one style image of the generated image's size the value is the seed's.

    With masks (spatial control, Gatys et al. 2017, "Controlling Perceptual Factors in Neural
    Style Transfer"): each style s is compared with the guided Gram of G in its region,
    Σ_ij m_ij a_ijk a_ijk' / Σ_ij m_ij with the mask m resized to the layer, weighted by w_s.
    """

    role = "style"
    low_precision_features = True  # Fn.gram_matrix accumulates bf16/fp16 features in float32

    def bind(self, targets: Targets) -> BoundLoss:
        if any(m is not None for m in targets.masks):
            return self._bind_regions(targets)
        blended = {}
        for layer in targets.layers:
            blended[layer] = Fn.sum_terms(w * Fn.gram_matrix(style[layer], normalize=True)
                                          for w, style in zip(targets.style_weights, targets.styles))

        def loss(image: Tensor, features: FeatureMaps, layer_weights: Mapping[str, float]) -> Tensor:
            parts = []
            for layer, target in blended.items():
                f = features[layer]
                gram = Fn.gram_matrix(f, normalize=True)
                parts.append(layer_weights[layer] * Fn.gram_style_loss(gram, target, 1, 1, f.shape[1]))
            return Fn.sum_terms(parts)

        return loss

    def _bind_regions(self, targets: Targets) -> BoundLoss:
        regions = []  # (weight, {layer: target gram}, {layer: mask at the layer's size, or None})
        for weight, style, mask in zip(targets.style_weights, targets.styles, targets.masks):
            grams = {layer: Fn.gram_matrix(style[layer], normalize=True) for layer in targets.layers}
            layer_masks = {layer: None if mask is None else
                           torch.nn.functional.interpolate(mask, size=targets.content[layer].shape[-2:],
                                                           mode="bilinear", align_corners=False, antialias=True)
                           for layer in targets.layers}
            regions.append((weight, grams, layer_masks))

        def loss(image: Tensor, features: FeatureMaps, layer_weights: Mapping[str, float]) -> Tensor:
            parts = []
            for weight, grams, layer_masks in regions:
                for layer, target in grams.items():
                    f, m = features[layer], layer_masks[layer]
                    if m is None:
                        gram = Fn.gram_matrix(f, normalize=True)
                    else:
                        gram = Fn.gram_matrix(f * m.sqrt(), normalize=False) / m.sum().clamp_min(1e-6)
                    parts.append(weight * layer_weights[layer] * Fn.gram_style_loss(gram, target, 1, 1, f.shape[1]))
            return Fn.sum_terms(parts)

        return loss


class TotalVariationLoss(LossTerm):
    """Mean total variation of the image (pixel space), ``exponent`` 2 (smooth) or 1."""

    role = "image"

    def __init__(self, exponent: float = 2.0) -> None:
        self.exponent = float(exponent)

    def bind(self, targets: Targets) -> BoundLoss:
        exponent = self.exponent

        def loss(image: Tensor, features: FeatureMaps, layer_weights: Mapping[str, float]) -> Tensor:
            return Fn.total_variation(image, exponent=exponent, normalize=True)

        return loss


@hookimpl
def nst_register_loss_terms(register):
    register("content", ContentLoss,
             description="feature reconstruction ½‖a(C) − a(G)‖² per position (Gatys et al. 2015)")
    register("gram", GramStyleLoss,
             description="Gram-matrix style cost ‖G(S) − G(G)‖² / (2 nH nW nC)² (Gatys et al. 2015)")
    register("tv", TotalVariationLoss,
             description="total variation of the pixels, a smoothness prior (Mahendran & Vedaldi 2015)")
