"""How much memory a run needs, how much the device has, and the decision taken before step 1.

The peak of a run comes at its largest scale, in the backward pass, and grows linearly with the
number of pixels (crowsonkb and htoyryla observed the same for their engines): the feature maps
kept for the backward pass, the gradients flowing back through them, the optimiser's state and
L-BFGS's history of curvature pairs. :func:`estimate` adds these up from bytes per pixel
*measured* with ``benchmarks/bench_memory.py`` (peak RSS on a CPU, peak allocated on CUDA, with
the default VGG19 up to relu5_1; see benchmarks/RESULTS.md), and :func:`plan_memory` compares
the estimate with what the device has free:

* it fits: go;
* it fits only with gradient checkpointing (``StyleConfig.checkpoint=None``, the default):
  switch it on and say so in the result's notes;
* it does not fit: raise :class:`ResourceError` before anything heavy is allocated, naming the
  largest size that would fit and what else would help.

``NST_MEMORY_CHECK=0`` in the environment turns the refusal off (the estimate is then only a
note), for machines whose free memory the check cannot see (e.g. swap).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
import os
from pathlib import Path

import torch

from nst_core.oom import is_out_of_memory  # noqa: F401 - part of this module's API
from nst_core.errors import ResourceError

GIB = 2**30
MEMORY_CHECK_ENV = "NST_MEMORY_CHECK"
SAFETY = 1.10
"""Estimates are multiplied by this before they are compared with the free memory."""

# Bytes per working pixel of the activations, their gradients, the targets and the optimiser's
# state (without L-BFGS pairs), and a fixed part, by device kind, precision and checkpointing:
# straight-line fits through two sizes measured with benchmarks/bench_memory.py (1024 and 2048
# px, 3 steps; CPU: peak RSS above the RSS once torch and the weights are loaded), rounded up.
# CUDA: peak allocated from benchmarks/gpu_check.py on an H100 (float32 and bf16 without
# checkpointing, 1024/2048/4096 px); the checkpointed CUDA rows are the CPU ratios applied to
# them (not measured on a GPU).
BYTES_PER_PIXEL = {
    ("cpu", "float32", False): 2200,
    ("cpu", "float32", True): 1450,
    ("cpu", "bf16", False): 1300,
    ("cpu", "bf16", True): 900,
    ("cpu", "fp16", False): 1300,
    ("cpu", "fp16", True): 900,
    ("cuda", "float32", False): 2150,
    ("cuda", "float32", True): 1450,
    ("cuda", "bf16", False): 1700,
    ("cuda", "bf16", True): 1200,
    ("cuda", "fp16", False): 1700,
    ("cuda", "fp16", True): 1200,
}
FIXED_BYTES = {
    ("cpu", False): 450 * 2**20,
    ("cpu", True): 800 * 2**20,
    ("cuda", False): 250 * 2**20,
    ("cuda", True): 300 * 2**20,
}
"""What a run needs beyond the per-pixel part: style targets, workspaces, allocator slack."""

VGG19_SAVED_BYTES_PER_PIXEL = 1532.0
"""What autograd keeps per input pixel for the default VGG19 layers (relu1_1 ... relu5_1, relu4_2),
float32, weights excluded (:func:`nst_core.contract.measure_memory_profile`, the slope between 64
and 256 px). The tables above are for this backbone; another backbone's estimate is scaled by its
:class:`~nst_core.types.MemoryProfile` over this."""

LBFGS_PAIR_BYTES_PER_PIXEL = 2 * 3 * 4  # one (s, y) pair: two float32 copies of (3, h, w)

STYLE_PEAK_BYTES_PER_PIXEL = 800
"""Peak bytes per pixel of a style image's forward pass (no gradients) while its targets are
computed: the activations in flight plus the target layers' features it keeps. Measured on a
CPU (peak RSS, default VGG19, 512 and 1024 px: 790 float32, 770 bf16), rounded up."""
STYLE_KEPT_BYTES_PER_PIXEL = 600
"""Bytes per pixel of a style image's target features kept while the next style's are computed
(measured: 570 float32, 555 bf16), rounded up."""
MASK_BYTES_PER_PIXEL = 2 * 4
"""A mask at the working size (float32) and its copies at the layers' sizes (a geometric series)."""

DECODE_BYTES_PER_PIXEL = 40
"""Peak bytes per pixel of reading an image file (Pillow's buffer, the float32 array, the tensor):
measured with peak RSS on 4000 × 3000 PNGs, 28 for RGB and 36 for RGBA, rounded up."""


@dataclass(frozen=True)
class Estimate:
    """Bytes a run needs at its largest scale, beyond what is in use before it starts."""

    activations: int
    lbfgs: int
    fixed: int
    styles: int = 0
    """The peak while the style targets are computed (before the optimisation, whose memory it
    then gives back): the largest style's forward pass plus the other styles' kept features."""

    @property
    def total(self) -> int:
        return max(self.activations + self.lbfgs, self.styles) + self.fixed


def lbfgs_pairs(pixels: int, steps: int, history_bytes: int = GIB) -> int:
    """Curvature pairs L-BFGS holds at most: the engine's history rule, and no more than steps − 1."""
    history = int(min(100, max(5, history_bytes // (LBFGS_PAIR_BYTES_PER_PIXEL * pixels))))
    return max(0, min(history, steps - 1))


def estimate(height: int, width: int, *, precision: str = "float32", device: torch.device | str = "cpu",
             checkpoint: bool = False, steps: int = 500, optimizer: str = "lbfgs", scale: float = 1.0,
             style_ratios: Sequence[float] = (), masks: int = 0) -> Estimate:
    """Peak extra bytes of one scale at ``height`` × ``width`` (default backbone and layers).

    :param scale: the backbone's activation memory relative to the default VGG19's
        (``profile.saved_bytes_per_pixel / VGG19_SAVED_BYTES_PER_PIXEL``).
    :param style_ratios: each style image's pixels at this scale (its longest side is
        ``style_scale`` × the working size) divided by ``height · width``; () leaves the styles
        out (they are then no larger than the working size and the measured per-pixel bytes
        cover them).
    :param masks: the number of style masks.

    Styles: ``STYLE_PEAK · max_i p_i + STYLE_KEPT · (Σ_i p_i − max_i p_i)`` bytes for style pixel
    counts ``p_i`` (scaled like the activations); the total is
    ``max(activations + L-BFGS pairs, styles) + fixed``.
    """
    kind = torch.device(device).type
    kind = kind if kind in ("cpu", "cuda") else "cuda"  # MPS: unified memory, like a GPU allocator
    pixels = height * width
    per_pixel = BYTES_PER_PIXEL[(kind, precision, bool(checkpoint))] * scale
    pairs = lbfgs_pairs(pixels, steps) if optimizer == "lbfgs" else 0
    style_pixels = [ratio * pixels for ratio in style_ratios]
    styles = 0
    if style_pixels:
        largest = max(style_pixels)
        styles = int(scale * (STYLE_PEAK_BYTES_PER_PIXEL * largest
                               + STYLE_KEPT_BYTES_PER_PIXEL * (sum(style_pixels) - largest)))
    return Estimate(activations=int((per_pixel + MASK_BYTES_PER_PIXEL * masks) * pixels),
                    lbfgs=pairs * LBFGS_PAIR_BYTES_PER_PIXEL * pixels,
                    fixed=FIXED_BYTES[(kind, bool(checkpoint))], styles=styles)


def style_ratios(shape: tuple[int, int], style_sizes: Sequence[tuple[int, int]], style_scale: float) -> list[float]:
    """Each style's pixels over the working pixels at a scale of ``shape`` ``(h, w)``: the style
    ``(h, w)`` is resized so its longest side is ``style_scale`` × the working size's."""
    h, w = shape
    side = max(16, round(max(h, w) * style_scale))
    ratios = []
    for sh, sw in style_sizes:
        scale = side / max(sh, sw)
        ratios.append(max(32, round(sh * scale)) * max(32, round(sw * scale)) / (h * w))
    return ratios


def _cgroup_free() -> int | None:
    """Bytes left under this process's cgroup (v2 or v1) memory limit, if there is one."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit == "max" or not limit.isdigit() or int(limit) >= 1 << 60:
            return None
        return max(0, int(limit) - usage)
    return None


def available_bytes(device: torch.device | str) -> int | None:
    """Memory a run on ``device`` can still take, or ``None`` where it cannot be told.

    CPU: ``MemAvailable`` of /proc/meminfo (page cache that can be dropped included), capped by
    a cgroup limit; elsewhere ``os.sysconf``'s available pages. CUDA: free device memory plus
    what PyTorch's allocator holds unused. MPS: the recommended maximum less what is allocated.
    """
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    if device.type == "mps":
        try:
            return int(torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory())
        except (AttributeError, RuntimeError):
            return None
    free = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if free is None:
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    cgroup = _cgroup_free()
    return min(free, cgroup) if cgroup is not None else free


def check_decode(label: str, width: int, height: int, *, available: int | None = None) -> None:
    """Refuse, before decoding, an image file whose ``width`` × ``height`` pixels need more memory
    (:data:`DECODE_BYTES_PER_PIXEL` each) than the machine has free (``NST_MEMORY_CHECK=0``: no
    check). A small file may declare a huge image: it is the declared size that counts.

    :raises ResourceError: one line naming the file, what it needs and what is free.
    """
    if os.environ.get(MEMORY_CHECK_ENV, "1").strip() in ("0", "false", "no", "off"):
        return
    free = available if available is not None else available_bytes("cpu")
    needed = DECODE_BYTES_PER_PIXEL * width * height
    if free is not None and SAFETY * needed > free:
        raise ResourceError(f"{label}: decoding its {width} x {height} pixels needs about {_gib(SAFETY * needed)} "
                            f"but only {_gib(free)} is free; use a smaller image, or free some memory "
                            f"(set {MEMORY_CHECK_ENV}=0 to try anyway)")


def largest_fitting_size(height: int, width: int, budget: int, **options) -> int:
    """The longest side (same aspect as ``height`` × ``width``) whose estimate fits ``budget``."""
    longest = max(height, width)
    lo, hi = 0, 1
    while hi < 65536 and SAFETY * estimate(*_scaled(height, width, hi * 2, longest), **options).total <= budget:
        hi *= 2
    hi = min(hi * 2, 65536)
    while hi - lo > 1:  # estimate is monotone in the size
        mid = (lo + hi) // 2
        if SAFETY * estimate(*_scaled(height, width, mid, longest), **options).total <= budget:
            lo = mid
        else:
            hi = mid
    return lo


def _scaled(height: int, width: int, side: int, longest: int) -> tuple[int, int]:
    return max(1, round(height * side / longest)), max(1, round(width * side / longest))


def _gib(n: float) -> str:
    return f"{n / GIB:.1f} GiB" if n >= GIB else f"{n / 2**20:.0f} MiB"


@dataclass(frozen=True)
class MemoryPlan:
    checkpoint: bool
    estimate: Estimate
    available: int | None
    note: str | None = None


def plan_memory(shapes: list[tuple[int, int]], *, precision: str, device: torch.device | str, steps: int,
                optimizer: str, checkpoint: bool | None, supports_checkpoint: bool = True,
                available: int | None = None, scale: float = 1.0, style_sizes: Sequence[tuple[int, int]] = (),
                style_scale: float = 1.0, masks: int = 0) -> MemoryPlan:
    """Decide checkpointing and refuse what cannot fit (see the module docstring).

    :param shapes: ``(h, w)`` of every scale; the largest decides.
    :param supports_checkpoint: whether the backbone can checkpoint (``Backbone.supports_checkpoint``).
    :param scale: the backbone's memory relative to the default VGG19's (see :func:`estimate`).
    :param available: bytes free (default: :func:`available_bytes`).
    :param style_sizes: ``(h, w)`` of each style image as read; with ``style_scale`` (their
        longest side relative to the working size) they are counted at the size they are used.
    :param masks: the number of style masks.
    """
    device = torch.device(device)
    h, w = max(shapes, key=lambda s: s[0] * s[1])
    options = dict(precision=precision, device=device, steps=steps, optimizer=optimizer, scale=scale,
                   style_ratios=style_ratios((h, w), style_sizes, style_scale), masks=masks)
    free = available if available is not None else available_bytes(device)
    plain = estimate(h, w, checkpoint=False, **options)
    light = estimate(h, w, checkpoint=True, **options) if supports_checkpoint else plain
    wanted = bool(checkpoint) if checkpoint is not None else False
    chosen = light if wanted else plain
    if free is None:
        return MemoryPlan(wanted, chosen, None)
    if SAFETY * chosen.total <= free:
        return MemoryPlan(wanted, chosen, free)
    if checkpoint is None and supports_checkpoint and SAFETY * light.total <= free:
        return MemoryPlan(True, light, free, note=(
            f"memory: a {w}×{h} run needs about {_gib(plain.total)} and {_gib(free)} is free, so gradient "
            f"checkpointing is on (about {_gib(light.total)}, a little slower)"))
    best = light if (checkpoint is None or checkpoint) and supports_checkpoint else chosen
    use_ckpt = best is light and supports_checkpoint
    side = largest_fitting_size(h, w, free, checkpoint=use_ckpt, **options)
    hints = [f"use size={side} or smaller" if side >= 16 else "free some memory"]
    if precision == "float32":
        bf16_side = largest_fitting_size(h, w, free, checkpoint=use_ckpt, **{**options, "precision": "bf16"})
        if bf16_side > side:
            hints.append(f"precision='bf16' (fits up to about {bf16_side} px)")
    if checkpoint is False and supports_checkpoint:
        hints.append("checkpoint=True")
    if best.styles > best.activations + best.lbfgs:
        hints.append(f"a smaller style_scale (the style images alone need about {_gib(best.styles)} at "
                     f"{style_scale:g})")
    if optimizer == "lbfgs" and best.lbfgs > 0.1 * best.total:
        hints.append(f"optimizer='adam' (no L-BFGS history: {_gib(best.lbfgs)} less)")
    message = (f"a {w}×{h} run on {device.type} needs about {_gib(SAFETY * best.total)} "
               f"({precision}{', gradient checkpointing' if use_ckpt else ''}) but only {_gib(free)} is free; "
               + "; or ".join(hints)
               + f" (set {MEMORY_CHECK_ENV}=0 to try anyway)")
    if os.environ.get(MEMORY_CHECK_ENV, "1").strip() in ("0", "false", "no", "off"):
        return MemoryPlan(use_ckpt, best, free, note="memory check off: " + message)
    raise ResourceError(message)


__all__ = ["VGG19_SAVED_BYTES_PER_PIXEL", "Estimate", "MemoryPlan", "available_bytes", "check_decode", "estimate",
           "is_out_of_memory", "largest_fitting_size", "lbfgs_pairs", "plan_memory", "style_ratios"]
