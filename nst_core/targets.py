"""Bind every loss term of a plan to one scale's targets (features computed once, no grad)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from nst_core.contract import call_plugin
from nst_core.errors import PluginError
from nst_core.image import resize
from nst_core.planning import BoundTerm, Model, working_shape
from nst_core.types import Targets


def _resize_guide(guide: Tensor, height: int, width: int) -> Tensor:
    """Bilinear resize of ``(1, C, H, W)`` (antialiased when shrinking); values are not clamped."""
    if tuple(guide.shape[-2:]) == (height, width):
        return guide
    shrinking = height < guide.shape[-2] or width < guide.shape[-1]
    return torch.nn.functional.interpolate(guide, size=(height, width), mode="bilinear", align_corners=False,
                                           antialias=shrinking)


def bind_targets(terms: Sequence[BoundTerm], model: Model, layers: Sequence[str], *, content: Tensor,
                 styles: Sequence[Tensor], blend: tuple[float, ...], masks: Sequence[Tensor | None],
                 guides: Mapping[str, Tensor], style_scale: float, precision: str, device: torch.device) -> None:
    """Compute the features of the content and style images at this scale and bind every term.

    :param content: ``(1, 3, h, w)`` on ``device`` at the working size.
    :param styles: ``(1, 3, Hs, Ws)`` on the CPU at full size; each is resized so its longest side
        is ``style_scale`` times the working size.
    :param masks: ``(1, 1, h, w)`` on ``device`` per style, or None.
    :param guides: ``(1, C, Hg, Wg)`` on the CPU; resized (bilinear) to ``(h, w)`` on ``device``.
    Sets ``term.loss`` of every term; a plug-in that fails to bind (or a backbone that fails on
    the targets) is a one-line PluginError.
    """
    backbone = model.backbone
    h, w = content.shape[-2:]
    content_feats = model.features(content, layers, precision, grad=False)
    style_tensors, style_feats = [], []
    for style in styles:
        sh, sw = working_shape(style.shape[-2], style.shape[-1], max(16, round(max(h, w) * style_scale)))
        s = resize(style, sh, sw).to(device)
        style_tensors.append(s)
        style_feats.append(model.features(s, layers, precision, grad=False))
    scaled_guides = {name: _resize_guide(g, h, w).to(device) for name, g in guides.items()}
    for t in terms:
        targets = Targets(
            layers=t.layers,
            content={layer: content_feats[layer] for layer in t.layers},
            styles=tuple({layer: feats[layer] for layer in t.layers} for feats in style_feats),
            style_weights=blend,
            content_image=content,
            style_images=tuple(style_tensors),
            channels={layer: backbone.channels[layer] for layer in t.layers},
            masks=tuple(masks),
            guides=scaled_guides,
        )
        what = f"loss term {t.name!r} from {t.label}"
        loss = call_plugin(f"{what}, binding its targets,", t.term.bind, targets)
        if not callable(loss):
            raise PluginError(f"{what}: bind() returned {type(loss).__name__}; it must return the loss function "
                              f"loss(image, features, layer_weights) -> 0-d tensor")
        t.loss = loss
