"""nst-plugin-example: one of each kind of nst_core plug-in, as docs/plugins.md describes them.

* loss term ``mean-color``: ‖mean_rgb(G) − mean_rgb(S)‖^p, blended over the style images (an
  "image" term: it looks at pixels, not features), with a declared, typed parameter;
* style loss ``channel-mean``: matches each style layer's per-channel mean activation (a "style"
  term, so it can be the ``--style-loss``; front-ends such as the GIMP dialog list it there);
* backbone ``example-tiny``: two fixed random convolutions (no weights to download), for tests
  and as the smallest complete backbone;
* layer schedule ``example-deep-first``: weight moves from the deepest style layer to the
  shallowest over each scale (it varies with ``progress``);
* preset ``example-colorful``: the default look plus ``mean-color``.

The entry point in pyproject.toml names this module; nst_core imports it lazily, so nothing
heavy happens at import time.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from nst_core import Backbone, LayerSchedule, LossSpec, LossTerm, hookimpl
from nst_core.hookspecs import HOOK_API_VERSION
from nst_core.types import BoundLoss, FeatureMaps, Targets

if HOOK_API_VERSION[0] != 1:  # the contract this plug-in was written for (docs/plugins.md, "Stability")
    raise ImportError(f"nst-plugin-example needs nst_core hook API 1.x, this nst_core has {HOOK_API_VERSION}")


class MeanColorLoss(LossTerm):
    """Σ_c |mean(G_c) − Σ_s w_s mean(S_s,c)|^power over the RGB channels c; image ``(1, 3, H, W)``."""

    role = "image"

    @dataclass
    class Params:
        power: float = field(default=2.0, metadata={"help": "exponent p of the colour difference",
                                                     "min": 0.5, "max": 4.0})

    def __init__(self, power: float = 2.0) -> None:
        self.power = power

    def bind(self, targets: Targets) -> BoundLoss:
        target = sum(w * s.mean(dim=(0, 2, 3)) for w, s in zip(targets.style_weights, targets.style_images))
        power = self.power

        def loss(image: Tensor, features: FeatureMaps, layer_weights: Mapping[str, float]) -> Tensor:
            return (image.mean(dim=(0, 2, 3)) - target).abs().pow(power).sum()

        return loss


class ChannelMeanLoss(LossTerm):
    """Σ_l λ[l] · scale · ‖μ_l(G) − Σ_s w_s μ_l(S_s)‖² over the style layers l, where μ_l is the
    per-channel mean of the layer's features ``(1, C_l, H_l, W_l)`` over positions, ``(C_l,)``.

    The first moment of the statistics AdaIN aligns (the built-in ``mean-std`` adds the standard
    deviation): a small, complete "style" term for the docs and the tests, not a better loss.
    """

    role = "style"

    @dataclass
    class Params:
        scale: float = field(default=1000.0, metadata={"help": "brings the loss near the Gram loss's size",
                                                       "min": 0.0})

    def __init__(self, scale: float = 1000.0) -> None:
        self.scale = scale

    def bind(self, targets: Targets) -> BoundLoss:
        means = {layer: sum(w * s[layer].mean(dim=(0, 2, 3)) for w, s in zip(targets.style_weights, targets.styles))
                 for layer in targets.layers}
        scale = self.scale

        def loss(image: Tensor, features: FeatureMaps, layer_weights: Mapping[str, float]) -> Tensor:
            total = image.new_zeros(())
            for layer, target in means.items():
                total = total + layer_weights[layer] * (features[layer].mean(dim=(0, 2, 3)) - target).pow(2).sum()
            return scale * total

        return loss


class TinyBackbone(Backbone):
    """conv1 (3→16, 3×3) → relu1 → conv2 (16→32, 3×3, stride 2) → relu2, fixed random weights
    (seed 0). Input ``(N, 3, H, W)`` in [0, 1], mapped to [-1, 1]; ``relu2`` is ``(N, 32, ⌈H/2⌉, ⌈W/2⌉)``."""

    layer_names = ("conv1", "relu1", "conv2", "relu2")
    channels = {"conv1": 16, "relu1": 16, "conv2": 32, "relu2": 32}
    default_content_layers = ("relu2",)
    default_style_layers = ("relu1", "relu2")
    # memory_profile = None: the engine measures it when a run loads the backbone

    def __init__(self) -> None:  # no pooling option: runs with pooling="avg" are refused in one line
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1, stride=2)
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=generator) / (p[0].numel() ** 0.5 if p.dim() > 1 else 10)

    def forward(self, image: Tensor, layers: Collection[str]) -> FeatureMaps:
        out = {}
        x = self.conv1(image * 2 - 1)
        out["conv1"] = x
        x = torch.relu(x)
        out["relu1"] = x
        if "conv2" in layers or "relu2" in layers:
            x = self.conv2(x)
            out["conv2"] = x
            out["relu2"] = torch.relu(x)
        return {name: out[name] for name in layers}


def deep_first(layers: Sequence[str], channels: Mapping[str, int], progress: float) -> dict[str, float]:
    """λ[l] ∝ (1 − p)·d[l] + p·(1 − d[l]) + 0.05 with d[l] in [0, 1] the layer's depth rank and p
    the progress of the scale: deep layers first, shallow ones last; sums to 1."""
    n = len(layers)
    raw = {layer: ((1 - progress) * (k / (n - 1) if n > 1 else 1.0)
                   + progress * (1 - (k / (n - 1) if n > 1 else 0.0)) + 0.05)
           for k, layer in enumerate(layers)}
    total = sum(raw.values())
    return {layer: value / total for layer, value in raw.items()}


@hookimpl
def nst_register_loss_terms(register):
    register("mean-color", MeanColorLoss, description="pulls the mean colour toward the style's (example plug-in)")
    register("channel-mean", ChannelMeanLoss,
             description="style loss: match each style layer's mean channel activations (example plug-in)")


@hookimpl
def nst_register_backbones(register):
    register("example-tiny", TinyBackbone, description="two random convolutions (example plug-in; for tests)")


@hookimpl
def nst_register_layer_schedules(register):
    register("example-deep-first", LayerSchedule(deep_first, varies=True),
             description="weight moves from deep to shallow style layers over each scale (example plug-in)")


@hookimpl
def nst_register_presets(register):
    register("example-colorful", {"extra_losses": (LossSpec(name="mean-color", weight=0.5),)},
             description="the default look with the style's mean colour (example plug-in)")
