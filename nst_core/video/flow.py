"""Optical flow: the estimator interface, the registry lookup and OpenCV DIS, the default.

An estimator is any callable ``estimate(frame_a, frame_b) -> flow``:

- ``frame_a``, ``frame_b``: ``(1, 3, H, W)`` float RGB in [0, 1] (CPU);
- ``flow``: ``(H, W, 2)`` float32 (dx, dy) in pixels, the *backward* mapping
  ``frame_a(x) ≈ frame_b(x + flow(x))``. For frame t of a video, ``estimate(frame_t, frame_prev)``
  is the flow that :func:`nst_core.video.warp.warp` uses to bring the previous stylized frame
  into frame t.

Estimators are registered by name through the ``nst_register_flow_estimators`` hook (a plug-in
can bring RAFT); the built-in ``dis`` is OpenCV's DIS flow (Kroeger et al. 2016) at its MEDIUM
preset: no weights, a few ms per 512 px pair, and exact on the synthetic clip (notes of the
video research: 8 ms at 512x384, recovers (-2, 0) and (-12, -4) exactly).
"""

from __future__ import annotations

from collections.abc import Callable
import threading
from typing import ClassVar

import torch
from torch import Tensor

from nst_core.errors import NSTError, PluginError
from nst_core.registry import Registries, collect_registries
from nst_core.video._deps import require_cv2

FlowEstimator = Callable[[Tensor, Tensor], Tensor]

DEFAULT_FLOW = "dis"


def to_gray_uint8(frame: Tensor):  # -> numpy (H, W) uint8
    """``(1, 3, H, W)`` in [0, 1] -> ``(H, W)`` uint8 luma (ITU-R BT.601 weights)."""
    image = frame.detach().to("cpu", torch.float32)
    if image.dim() == 4:
        image = image[0]
    luma = 0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2]
    return (luma.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


class DISFlow:
    """OpenCV's Dense Inverse Search flow at a preset (``"medium"`` default; ``"fast"``,
    ``"ultrafast"``). Returns ``(H, W, 2)`` float32 (dx, dy) with ``a(x) ≈ b(x + flow(x))``."""

    PRESETS: ClassVar[dict[str, str]] = {
        "ultrafast": "DISOPTICAL_FLOW_PRESET_ULTRAFAST", "fast": "DISOPTICAL_FLOW_PRESET_FAST",
        "medium": "DISOPTICAL_FLOW_PRESET_MEDIUM"}

    def __init__(self, preset: str = "medium") -> None:
        cv2 = require_cv2()
        if preset not in self.PRESETS:
            raise NSTError(f"unknown DIS preset {preset!r}; use one of {', '.join(self.PRESETS)}")
        self._cv2 = cv2
        self._preset = getattr(cv2, self.PRESETS[preset])
        self._local = threading.local()  # a DIS object is not thread-safe: one per thread

    def __call__(self, frame_a: Tensor, frame_b: Tensor) -> Tensor:
        if frame_a.shape[-2:] != frame_b.shape[-2:]:
            raise NSTError(f"flow needs frames of one size, got {tuple(frame_a.shape[-2:])} and "
                           f"{tuple(frame_b.shape[-2:])}")
        dis = getattr(self._local, "dis", None)
        if dis is None:
            dis = self._local.dis = self._cv2.DISOpticalFlow_create(self._preset)
        flow = dis.calc(to_gray_uint8(frame_a), to_gray_uint8(frame_b), None)
        return torch.from_numpy(flow).float()


class FarnebackFlow:
    """OpenCV's Farnebäck polynomial-expansion flow (2003): slower and smoother than DIS, no
    weights. Used by the benchmark to *measure* flicker with a flow other than the one the chain
    was made with. Returns ``(H, W, 2)`` float32 (dx, dy) with ``a(x) ≈ b(x + flow(x))``."""

    def __init__(self) -> None:
        self._cv2 = require_cv2()

    def __call__(self, frame_a: Tensor, frame_b: Tensor) -> Tensor:
        flow = self._cv2.calcOpticalFlowFarneback(to_gray_uint8(frame_a), to_gray_uint8(frame_b), None,
                                                  0.5, 4, 15, 5, 5, 1.1, 0)
        return torch.from_numpy(flow).float()


def get_flow_estimator(name: str = DEFAULT_FLOW, registries: Registries | None = None) -> FlowEstimator:
    """The registered estimator ``name``, built (an unknown name: one-line UnknownNameError with
    close matches; a factory raising: PluginError naming the plug-in)."""
    registries = registries or collect_registries()
    entry = registries.flow_estimators.entry(name)
    try:
        estimator = entry.obj()
    except NSTError:
        raise
    except Exception as exc:
        raise PluginError(f"flow estimator {name!r} from plug-in {entry.plugin!r} ({entry.distribution}) failed "
                          f"to start: {type(exc).__name__}: {' '.join(str(exc).split())}") from exc
    if not callable(estimator):
        raise PluginError(f"flow estimator {name!r} from plug-in {entry.plugin!r} returned {type(estimator).__name__},"
                          f" not a callable estimate(frame_a, frame_b) -> flow")
    return estimator


def estimate_flow(estimator: FlowEstimator, frame_a: Tensor, frame_b: Tensor) -> Tensor:
    """``estimator(frame_a, frame_b)`` checked: ``(H, W, 2)`` float32 finite on the CPU, or a
    one-line PluginError saying what the estimator returned."""
    try:
        flow = estimator(frame_a, frame_b)
    except NSTError:
        raise
    except Exception as exc:
        raise PluginError(f"the flow estimator raised {type(exc).__name__}: {' '.join(str(exc).split())}") from exc
    h, w = frame_a.shape[-2:]
    if not isinstance(flow, Tensor):
        flow = torch.as_tensor(flow)
    if tuple(flow.shape) != (h, w, 2):
        raise PluginError(f"the flow estimator returned shape {tuple(flow.shape)}; expected ({h}, {w}, 2)")
    flow = flow.detach().to("cpu", torch.float32)
    if not torch.isfinite(flow).all():
        raise PluginError("the flow estimator returned NaN or infinite values")
    return flow
