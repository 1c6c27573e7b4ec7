"""What plug-ins implement: backbones, loss terms and layer schedules.

Shapes and ranges everywhere: images are ``(N, 3, H, W)`` float RGB in [0, 1]; a feature map is
``(N, C, h, w)``; ``FeatureMaps`` maps a layer name (``"relu4_2"``) to its feature map.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

FeatureMaps = dict[str, Tensor]
Role = Literal["content", "style", "image"]

BoundLoss = Callable[[Tensor, FeatureMaps, Mapping[str, float]], Tensor]
"""``loss(image, features, layer_weights) -> scalar``.

``image`` is the current ``(1, 3, H, W)`` iterate in [0, 1], ``features`` its feature maps at (at
least) the layers the term asked for, ``layer_weights`` λ[l] for those layers at this step.
"""


class Backbone(nn.Module):
    """A feature extractor with named layers.

    Subclasses set ``layer_names`` (shallow to deep), ``channels`` (layer -> C) and the default
    content and style layers, normalise their own input and implement :meth:`forward`.
    Weights must not require grad; the engine never trains them.
    """

    layer_names: tuple[str, ...] = ()
    channels: Mapping[str, int] = {}
    default_content_layers: tuple[str, ...] = ()
    default_style_layers: tuple[str, ...] = ()

    def forward(self, image: Tensor, layers: Collection[str]) -> FeatureMaps:  # pragma: no cover
        """Features of ``image`` ``(N, 3, H, W)`` in [0, 1] at ``layers``; stops at the deepest."""
        raise NotImplementedError

    def truncated(self, layers: Collection[str]) -> Backbone:
        """This backbone without the modules after the deepest of ``layers`` (saves memory)."""
        return self


@dataclass(frozen=True, kw_only=True)
class Targets:
    """What a loss term binds to, computed once per scale under ``torch.no_grad()``.

    ``content`` and each of ``styles`` hold the feature maps of the content image and the style
    images at the term's ``layers``; ``style_weights`` are the style blend weights (sum 1).
    ``content_image`` is ``(1, 3, H, W)``; ``style_images`` are ``(1, 3, Hs, Ws)``, all in [0, 1].
    ``masks`` has one entry per style: ``None`` (the style applies everywhere) or a
    ``(1, 1, H, W)`` mask in [0, 1] at the content's size saying where it applies.
    ``guides`` holds the caller's extra tensors (``stylize(..., guides={name: tensor})``), each
    ``(1, C, H, W)`` at the content's working size on its device: per-run data a term needs that is
    not an image role (a video's warped previous frame and its reliability mask).
    """

    layers: tuple[str, ...]
    content: FeatureMaps
    styles: tuple[FeatureMaps, ...]
    style_weights: tuple[float, ...]
    content_image: Tensor
    style_images: tuple[Tensor, ...]
    channels: Mapping[str, int] = field(default_factory=dict)
    masks: tuple[Tensor | None, ...] = ()
    guides: Mapping[str, Tensor] = field(default_factory=dict)


class LossTerm:
    """A loss term plug-in. Registered by name; constructed with the user's ``params``.

    ``role`` says which layers it uses by default (the backbone's content or style layers, or
    none for ``"image"`` terms that look at pixels) and which targets it needs.
    :meth:`bind` computes whatever depends only on the targets (Gram matrices, statistics) and
    returns a :data:`BoundLoss` evaluated at every step.
    """

    role: ClassVar[Role] = "style"

    def bind(self, targets: Targets) -> BoundLoss:  # pragma: no cover
        raise NotImplementedError


LayerScheduleFn = Callable[[Sequence[str], Mapping[str, int], float], dict[str, float]]
"""``schedule(layers, channels, progress) -> {layer: λ}``.

``progress`` is the fraction of the current scale's steps done, in [0, 1]; schedules that do not
vary over the run ignore it. Built-in schedules return weights that sum to 1.
"""


@dataclass(frozen=True)
class LayerSchedule:
    """A registered layer-weight schedule: the function and whether it depends on ``progress``."""

    fn: LayerScheduleFn
    varies: bool = False

    def __call__(self, layers: Sequence[str], channels: Mapping[str, int], progress: float) -> dict[str, float]:
        return self.fn(layers, channels, progress)


def no_grad_features(backbone: Backbone, image: Tensor, layers: Collection[str]) -> FeatureMaps:
    """Features of a fixed image (a target): no autograd graph kept."""
    with torch.no_grad():
        return {k: v.detach() for k, v in backbone(image, layers).items()}
