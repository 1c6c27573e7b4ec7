"""Numeric precision of the backbone: float32, or bf16 / fp16 autocast with float32 losses.

Mixed precision runs only the backbone (convolutions, ReLU, pooling) under ``torch.autocast``;
its feature maps are cast back to float32 before any loss term sees them, so Gram matrices,
losses, gradients of the pixels and the optimiser stay float32. Targets go through the same path
as the iterate, so a content loss of the content image itself is exactly 0 in every precision.
Measured against float32 by the shared evaluator (benchmarks/RESULTS.md, tests/test_perf_precision.py).
"""

from __future__ import annotations

from collections.abc import Collection
from contextlib import nullcontext

import torch
from torch import Tensor

from nst_core.types import Backbone, FeatureMaps

PRECISIONS = ("float32", "bf16", "fp16")
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def backbone_features(backbone: Backbone, image: Tensor, layers: Collection[str], precision: str = "float32",
                      *, grad: bool = True, keep_low: Collection[str] = ()) -> FeatureMaps:
    """Float32 feature maps of ``image`` ``(N, 3, H, W)`` at ``layers``.

    :param precision: ``"float32"``, or ``"bf16"`` / ``"fp16"`` to run the backbone under autocast
        on the image's device.
    :param grad: ``False`` for targets: no autograd graph, detached results.
    :param keep_low: layers handed on in the autocast dtype instead of float32, for loss terms
        that compute in float32 themselves (``low_precision_features = True``: the built-in
        Gram and content terms). A float32 copy of relu1_1 costs 256 bytes per pixel, kept for
        the backward pass: the largest single item at high resolution.
    """
    if not layers:
        return {}
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    with nullcontext() if grad else torch.no_grad():
        if precision == "float32":
            features = backbone(image, layers)
        else:
            with torch.autocast(image.device.type, dtype=AUTOCAST_DTYPES[precision]):
                features = backbone(image, layers)
            features = {name: f if (grad and name in keep_low) else f.float() for name, f in features.items()}
    if not grad:
        features = {name: f.detach() for name, f in features.items()}
    return features


FP16_LOSS_SCALE = 1024.0
"""fp16 backward runs on J · s with s = FP16_LOSS_SCALE / |J|: gradients then have the same size
whatever the loss weights and image size, far below fp16's 65504 (with Caffe VGG's 0-255 input
the raw gradients overflow it), far above its underflow. Computed on the device: no host sync."""


def backward(total: Tensor, image: Tensor, precision: str = "float32") -> None:
    """``total.backward()``; for fp16 with the loss scaled as above and ``image.grad`` unscaled."""
    if precision != "fp16":
        total.backward()
        return
    scale = FP16_LOSS_SCALE / total.detach().abs().clamp_min(torch.finfo(torch.float32).tiny)
    (total * scale).backward()
    if image.grad is not None:
        image.grad.div_(scale)
