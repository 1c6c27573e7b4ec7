"""The one shared judge of every benchmark: the Gatys et al. (2015) objective of a finished image.

J(G) = J_content + J_style with
  J_content = ½ ‖a(C) − a(G)‖² / (nH·nW)            at relu4_2 (per position, nst_core's default)
  J_style   = Σ_l λ[l] ‖G[l](S) − G[l](G)‖²_F / (2 nC)²,  Grams normalised by nH·nW,
              l = relu1_1 … relu5_1, λ[l] ∝ 1/nC[l]² normalised to sum 1 (Gatys' 1e3/n²).
This is exactly nst_core's default objective (content_weight 1, style_weight 1), computed with
:mod:`nst_core.functional` through a *plain* VGG19 built here from the Caffe weights (float32,
contiguous, out-of-place ReLU, no checkpointing, no autocast), so no engine optimisation can
change the verdict. Every engine's output is judged as the user gets it: clamped to [0, 1]
and, by default, rounded to 8 bits.

Content and style targets are computed from the very tensors every engine was given
(:func:`benchmarks.common.prepare_pair` writes them as PNGs at the working size).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
import torch.nn.functional as F

from nst_core import functional as Fn
from nst_core.builtins.vgg import CAFFE_MEAN_BGR, VGG19_BLOCKS, caffe_vgg19_convs, layer_plan

CONTENT_LAYERS = ("relu4_2",)
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
LAYERS = STYLE_LAYERS[:4] + CONTENT_LAYERS + STYLE_LAYERS[4:]


class PlainVGG19(nn.Module):
    """Caffe VGG19 up to the deepest of ``layers``, written the obvious way (the reference)."""

    def __init__(self, layers=LAYERS) -> None:
        super().__init__()
        plan = layer_plan(VGG19_BLOCKS)
        names = [name for name, *_ in plan]
        deepest = max(names.index(layer) for layer in layers)
        self.plan = plan[: deepest + 1]
        self.layers = tuple(layers)
        self.channels = {name: out_ch for name, _, _, out_ch in self.plan}
        convs = caffe_vgg19_convs()
        self.convs = nn.ModuleList()
        for weight, bias in convs[: sum(1 for _, kind, *_ in self.plan if kind == "conv")]:
            conv = nn.Conv2d(weight.shape[1], weight.shape[0], 3, padding=1)
            conv.weight = nn.Parameter(weight.clone(), requires_grad=False)
            conv.bias = nn.Parameter(bias.clone(), requires_grad=False)
            self.convs.append(conv)
        self.register_buffer("mean", torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        """``(N, 3, H, W)`` RGB in [0, 1] -> ``{layer: features}`` at ``self.layers``."""
        x = image.flip(1) * 255.0 - self.mean
        out, i = {}, 0
        for name, kind, _, _ in self.plan:
            if kind == "conv":
                x = self.convs[i](x)
                i += 1
            elif kind == "relu":
                x = F.relu(x)
            else:
                x = F.max_pool2d(x, 2, 2)
            if name in self.layers:
                out[name] = x
        return out


def layer_weights(channels: dict[str, int]) -> dict[str, float]:
    raw = {layer: 1.0 / channels[layer] ** 2 for layer in STYLE_LAYERS}
    total = sum(raw.values())
    return {layer: v / total for layer, v in raw.items()}


@dataclass(frozen=True)
class Score:
    total: float
    content: float
    style: float

    def as_dict(self) -> dict[str, float]:
        return {"total": self.total, "content": self.content, "style": self.style}


class Evaluator:
    """Binds a content and a style image (``(1, 3, H, W)`` RGB in [0, 1]) and scores images.

    ``device`` only decides where the judge runs; the verdict is float32 either way.
    """

    def __init__(self, content: Tensor, style: Tensor, *, device: str | torch.device = "cpu",
                 quantize: bool = True) -> None:
        self.device = torch.device(device)
        self.net = PlainVGG19().to(self.device)
        self.quantize = quantize
        self.lambdas = layer_weights(self.net.channels)
        with torch.no_grad():
            feats_c = self.net(content.to(self.device, torch.float32))
            feats_s = self.net(style.to(self.device, torch.float32))
        self.shape = tuple(content.shape[-2:])
        self.content_target = {layer: feats_c[layer] for layer in CONTENT_LAYERS}
        self.style_target = {layer: Fn.gram_matrix(feats_s[layer], normalize=True) for layer in STYLE_LAYERS}

    def prepare(self, image: Tensor) -> Tensor:
        image = image.detach().to(self.device, torch.float32).clamp(0, 1)
        if self.quantize:
            image = (image * 255).round() / 255
        return image

    @torch.no_grad()
    def __call__(self, image: Tensor) -> Score:
        """J(G) of ``image`` ``(1, 3, H, W)`` RGB (clamped to [0, 1], rounded to 8 bits)."""
        if tuple(image.shape[-2:]) != self.shape:
            raise ValueError(f"image is {tuple(image.shape[-2:])}, the evaluator was bound at {self.shape}")
        feats = self.net(self.prepare(image))
        content = sum(Fn.content_loss(feats[layer], target, normalize=True)
                      for layer, target in self.content_target.items())
        style = sum(self.lambdas[layer] * Fn.gram_style_loss(Fn.gram_matrix(feats[layer], normalize=True),
                                                              target, 1, 1, feats[layer].shape[1])
                    for layer, target in self.style_target.items())
        content, style = float(content), float(style)
        return Score(total=content + style, content=content, style=style)
