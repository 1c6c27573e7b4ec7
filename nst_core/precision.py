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
"""Precisions a run uses; a config may also say ``"auto"`` (see :func:`resolve_precision`)."""
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 convolutions natively (so bf16 is ~3x faster, not slower).

    CUDA: compute capability 8.0 or newer (Ampere, Hopper, ...). CPU: AMX tiles or AVX512-BF16
    (Intel Sapphire Rapids and newer, AMD Zen 4 and newer); elsewhere oneDNN emulates bf16 and
    float32 is faster. MPS: False (not measured).
    """
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device)[0] >= 8
    if device.type == "cpu":
        probes = [getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
        return any(probe is not None and probe() for probe in probes)
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"auto"`` -> ``"bf16"`` where :func:`native_bf16`, else ``"float32"``; others unchanged.

    bf16 keeps the result: the shared evaluator's J of bf16 and float32 runs of the same steps
    agree within 1-2 % (tests/test_perf_precision.py, benchmarks/RESULTS.md).
    """
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(device) else "float32"


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
