"""Built-in layer-weight schedules λ[l]; each returns weights that sum to 1."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from nst_core._markers import hookimpl
from nst_core.types import LayerSchedule


def _normalized(raw: Mapping[str, float]) -> dict[str, float]:
    total = sum(raw.values())
    return {layer: value / total for layer, value in raw.items()}


def uniform(layers: Sequence[str], channels: Mapping[str, int], progress: float) -> dict[str, float]:
    """λ[l] = 1 / L: every layer counts the same (the Gatys et al. 2015 paper, w_l = 1/5)."""
    return _normalized({layer: 1.0 for layer in layers})


def inverse_channels(layers: Sequence[str], channels: Mapping[str, int], progress: float) -> dict[str, float]:
    """λ[l] ∝ 1 / nC[l]²: Gatys' own reference code (1e3 / n², n = 64 ... 512)."""
    return _normalized({layer: 1.0 / channels[layer] ** 2 for layer in layers})


def geometric(layers: Sequence[str], channels: Mapping[str, int], progress: float,
              ratio: float = 0.25) -> dict[str, float]:
    """λ[l] ∝ ratio^k for the k-th layer (shallow first): deeper layers down-weighted by 4× each,
    as crowsonkb's style-transfer-pytorch does (256 : 64 : 16 : 4 : 1)."""
    return _normalized({layer: ratio ** k for k, layer in enumerate(layers)})


def coarse_to_fine(layers: Sequence[str], channels: Mapping[str, int], progress: float) -> dict[str, float]:
    """Varies over the run: weight starts on the deep layers (large structures) and moves to the
    shallow ones (fine texture) as each scale proceeds.

    λ[l] ∝ (1/nC[l]²) · ((1 − p)·d[l] + p·(1 − d[l]) + 0.001), where p is ``progress`` and d[l]
    in [0, 1] is the layer's rank by depth (0 shallowest, 1 deepest).
    """
    base = inverse_channels(layers, channels, progress)
    n = len(layers)
    if n == 1:
        return base
    depth = {layer: k / (n - 1) for k, layer in enumerate(layers)}  # 0 shallow .. 1 deep
    return _normalized({layer: base[layer] * ((1 - progress) * depth[layer] + progress * (1 - depth[layer]) + 1e-3)
                        for layer in layers})


@hookimpl
def nst_register_layer_schedules(register):
    register("uniform", LayerSchedule(uniform), description="equal weights, as in the paper")
    register("inverse-channels", LayerSchedule(inverse_channels),
             description="∝ 1/C², Gatys' reference notebook (default)")
    register("geometric", LayerSchedule(geometric), description="deeper layers down-weighted 4× each")
    register("coarse-to-fine", LayerSchedule(coarse_to_fine, varies=True),
             description="weight moves from deep to shallow layers over each scale")
