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


@dataclass(frozen=True)
class MemoryProfile:
    """How much memory a backbone's backward pass keeps, for the engine's memory check.

    ``saved_bytes_per_pixel``: bytes autograd keeps for the backward pass per pixel of a float32
    ``(1, 3, H, W)`` input when the backbone computes its default content and style layers,
    weights excluded (the slope between two sizes, so fixed costs drop out). The built-in VGG19
    keeps 1532 (:data:`nst_core.memory.VGG19_SAVED_BYTES_PER_PIXEL`), and nst_core.memory's
    measured peak bytes per pixel are scaled by ``saved_bytes_per_pixel / 1532``.
    :func:`nst_core.testing.measure_memory_profile` measures it; a backbone that declares none
    is measured the same way when a run loads it.
    """

    saved_bytes_per_pixel: float

    def __post_init__(self) -> None:
        value = self.saved_bytes_per_pixel
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or value == float("inf"):
            raise ValueError(f"MemoryProfile.saved_bytes_per_pixel must be a positive number, got {value!r}")


class Backbone(nn.Module):
    """A feature extractor with named layers: the contract a backbone plug-in implements.

    Subclasses set ``layer_names`` (shallow to deep), ``channels`` (layer -> C, for every name
    in ``layer_names``) and the default content and style layers (names from ``layer_names``),
    normalize their own input and implement :meth:`forward`. The engine puts the backbone in
    eval mode and stops its weights from requiring grad; it never trains them.

    Declared, with defaults, for the engine's memory check (:mod:`nst_core.memory`):

    * ``memory_profile``: a :class:`MemoryProfile`, or ``None`` (default): the engine measures
      one when it loads the backbone (one forward pass at 64 and at 128 px);
    * ``supports_checkpoint``: ``True`` if the backbone honours ``checkpoint`` (gradient
      checkpointing: recompute instead of keep, less memory). The engine sets ``checkpoint``
      before a run only on backbones that support it; others always run without.

    Declared, with a default, for one meaning of the weights (and of ``--strength``):

    * ``weight_scales``: ``{role: factor}`` for the roles ``"content"``, ``"style"`` and
      ``"image"`` (a missing role: 1.0). The engine multiplies the weight of every term of that
      role by the factor, so that the default weights stylize about as much on this backbone as
      on the built-in ``vgg19``, whose factors are all 1. Feature maps of another size than
      Caffe VGG19's (another input normalization, other weights) change the balance of content
      and style by orders of magnitude: a backbone whose style layers give features ``k`` times
      smaller moves the Gram loss by ``k⁴`` and the content loss by ``k²``. Measure the factor
      with ``benchmarks/bench_strength.py --backbone NAME`` (the style-weight multiplier at which
      the Gram loss lands at VGG19's degree of stylization) and declare it, e.g.
      ``weight_scales = {"style": 3000.0}``.
    """

    layer_names: tuple[str, ...] = ()
    channels: Mapping[str, int] = {}
    default_content_layers: tuple[str, ...] = ()
    default_style_layers: tuple[str, ...] = ()
    memory_profile: MemoryProfile | None = None
    supports_checkpoint: bool = False
    checkpoint: bool = False
    weight_scales: Mapping[str, float] = {}

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

    Declared, with defaults (the engine reads nothing else):

    * ``role``: which layers it uses by default (the backbone's content or style layers, or
      none for ``"image"`` terms that look at pixels) and which targets it needs;
    * ``default_layers``: layers to use instead of the backbone's defaults for the role
      (``None``: the backbone's); the user's ``LossSpec.layers`` override both;
    * ``low_precision_features``: ``True`` if the term accepts bf16/fp16 feature maps under
      ``precision="bf16"``/``"fp16"`` and computes in float32 itself (saves memory); ``False``
      (default): it gets float32 features;
    * ``weight_scale``: the factor that makes weight 1 of this term as strong as the Gram loss
      at weight 1 on VGG19 (1.0, the default, for ``gram`` itself and for ``content``). The
      engine minimizes ``weight · weight_scale · backbone.weight_scales[role] · term``, so
      ``style_weight`` (and ``--strength``) gives about the same degree of stylization whichever
      style loss runs. "As strong" is measured, not guessed: ``benchmarks/bench_strength.py``
      finds the multiplier at which the term moves the photo as far from itself (content
      distance relative to the painting's, by the shared evaluator) as ``gram`` does at weight
      1. The built-ins declare: mean-std 300, wasserstein 70, histogram 230,
      mrf 0.17 (r-matched 0.43, lowered by eye; benchmarks/results/strength_cpu.md).

    :meth:`bind` computes whatever depends only on the targets (Gram matrices, statistics) and
    returns a :data:`BoundLoss` evaluated at every step. The loss must return a 0-d floating
    tensor computed from ``image`` or ``features`` (on the autograd graph), finite; the engine
    checks each value and names the term when one is not.
    """

    role: ClassVar[Role] = "style"
    default_layers: ClassVar[tuple[str, ...] | None] = None
    low_precision_features: ClassVar[bool] = False
    weight_scale: ClassVar[float] = 1.0

    def bind(self, targets: Targets) -> BoundLoss:  # pragma: no cover
        raise NotImplementedError


LayerScheduleFn = Callable[[Sequence[str], Mapping[str, int], float], dict[str, float]]
"""``schedule(layers, channels, progress) -> {layer: λ}``.

``progress`` is the fraction of the current scale's steps done, in [0, 1]; schedules that do not
vary over the run ignore it. The result must have a finite weight >= 0 (a Python number) for
every one of ``layers``; the engine checks it. Built-in schedules return weights that sum to 1.
"""


@dataclass(frozen=True)
class LayerSchedule:
    """A registered layer-weight schedule: the function and whether it depends on ``progress``
    (``varies=False``: the engine calls it once per run; ``True``: once per step)."""

    fn: LayerScheduleFn
    varies: bool = False

    def __call__(self, layers: Sequence[str], channels: Mapping[str, int], progress: float) -> dict[str, float]:
        return self.fn(layers, channels, progress)


def no_grad_features(backbone: Backbone, image: Tensor, layers: Collection[str]) -> FeatureMaps:
    """Features of a fixed image (a target): no autograd graph kept."""
    with torch.no_grad():
        return {k: v.detach() for k, v in backbone(image, layers).items()}
