"""What a run will do and how long it will take, before it starts (``nst gimp estimate``).

The GIMP filter shows this in its dialog: the working size of every scale, the size of the
result (and the upscale factor to the layer when memory stops the run short of it) and the time
on the chosen device. Sizes, steps and the memory decision come from the engine's own
:func:`nst_core.planning.plan_sizes` (the same code :func:`nst_core.plan` runs), so the estimate
and the run cannot disagree about them. The time comes from a short measured *calibration*:

    t(step at P pixels) = a + b · P        (seconds; a: per-step overhead, b: seconds per pixel)

fitted through the median step time of a few real steps of the engine at two sizes (256 and
512 px on a CPU, 512 and 1024 px on a GPU: the time of a VGG19 pass grows linearly with the
pixels once the device is busy). The run's estimate is ``start + Σ_scales steps_i · t(P_i)``,
``start`` being the measured time to load the backbone. The calibration is cached per device,
precision, torch version and CPU thread count in ``$XDG_CACHE_HOME/nst-core/calibration.json``
(default ``~/.cache``), so only the first estimate on a machine pays for it (about 10-30 s on a
CPU, a few seconds on a GPU).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
import json
import math
import os
from pathlib import Path
import statistics
import time
from typing import Any, cast

import torch

import nst_core
from nst_core import StyleConfig
from nst_core.config import Precision
from nst_core.planning import plan_sizes
from nst_core.precision import resolve_precision

CACHE_ENV = "NST_CALIBRATION_FILE"
CALIBRATION_STEPS = 5
"""Steps per calibration size; the first is left out of the median (warm-up)."""


@dataclass(frozen=True)
class Calibration:
    """Measured seconds per step ``a + b · pixels`` and the model's start-up time on one device."""

    device: str
    precision: str
    a: float
    b: float
    start: float
    sizes: tuple[int, int]
    measured: tuple[float, float]
    """Median seconds per step at the two calibration sizes (longest side, square images)."""

    def step_seconds(self, pixels: int) -> float:
        return max(0.0, self.a + self.b * pixels)


def cache_path(environ: dict[str, str] | None = None) -> Path:
    environ = dict(os.environ) if environ is None else environ
    if environ.get(CACHE_ENV):
        return Path(environ[CACHE_ENV])
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nst-core" / "calibration.json"


def cache_key(device: torch.device, precision: str) -> str:
    return f"{device.type}|{precision}|torch {torch.__version__}|threads {torch.get_num_threads()}"


def fit_line(sizes: tuple[int, int], seconds: tuple[float, float]) -> tuple[float, float]:
    """``(a, b)`` of ``t = a + b · pixels`` through two square sizes (longest sides) and their
    seconds per step; ``b >= 0`` and ``a >= 0`` (a noisy pair never gives negative times)."""
    (s1, s2), (t1, t2) = sizes, seconds
    p1, p2 = s1 * s1, s2 * s2
    b = max(0.0, (t2 - t1) / (p2 - p1))
    a = max(0.0, t2 - b * p2)
    if b == 0.0:  # no growth measured: charge everything per pixel from the larger size (a safe upper side)
        b = t2 / p2
    return a, b


def measure(device: torch.device, precision: str, sizes: tuple[int, int] | None = None,
            steps: int = CALIBRATION_STEPS) -> Calibration:
    """Run the engine for ``steps`` steps at two sizes on a synthetic image and fit the line."""
    if sizes is None:
        sizes = (256, 512) if device.type == "cpu" else (512, 1024)
    generator = torch.Generator().manual_seed(0)
    config = StyleConfig(device=str(device), precision=cast(Precision, precision), steps=steps, scales=1,
                         seed=0, fit_memory=True)
    started = time.perf_counter()
    model = nst_core.load_model(config)
    start = time.perf_counter() - started
    medians = []
    for side in sizes:
        content = torch.rand(1, 3, side // 8, side // 8, generator=generator)
        content = torch.nn.functional.interpolate(content, size=(side, side), mode="bilinear")
        style = torch.rand(1, 3, side, side, generator=generator)
        times: list[float] = []
        last = [time.perf_counter()]

        def on_progress(progress, times=times, last=last) -> None:
            now = time.perf_counter()
            times.append(now - last[0])
            last[0] = now

        plan = nst_core.plan(content, style, config.replace(size=side), model=model)
        last[0] = time.perf_counter()
        nst_core.run(plan, on_progress=on_progress)
        medians.append(statistics.median(times[1:] or times))
    a, b = fit_line(sizes, (medians[0], medians[1]))
    return Calibration(str(device), precision, a, b, start, (sizes[0], sizes[1]), (medians[0], medians[1]))


def calibration(device: torch.device, precision: str, *, refresh: bool = False,
                path: Path | None = None, measure_fn: Callable[..., Calibration] = measure) -> tuple[Calibration, bool]:
    """The cached calibration for ``device`` and ``precision``, measuring it when there is none.
    Returns it and whether it was measured now."""
    path = path or cache_path()
    key = cache_key(device, precision)
    try:
        cache = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(cache, dict):
            cache = {}
    except (OSError, ValueError):
        cache = {}
    if not refresh and isinstance(cache.get(key), dict):
        try:
            entry = dict(cache[key])
            entry["sizes"], entry["measured"] = tuple(entry["sizes"]), tuple(entry["measured"])
            return Calibration(**entry), False
        except (TypeError, KeyError):
            pass
    found = measure_fn(device, precision)
    cache[key] = asdict(found)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home: measure again next time
    return found, True


def estimate_run(width: int, height: int, config: StyleConfig, *, calibrated: Calibration | None = None,
                 available: int | None = None) -> dict[str, Any]:
    """Everything the dialog shows for a ``width × height`` content with ``config``, as JSON-safe
    values: device, precision, per-scale sizes ``[w, h]`` and steps, the result's size, the
    upscale factor to ``width × height`` (1.0 when it works at full size), notes, and with a
    calibration the estimated ``seconds``.
    """
    device = nst_core.resolve_device(config.device)
    config = config.replace(precision=resolve_precision(config.precision, device))
    sized = plan_sizes(config, height, width, device, available=available)
    out_w, out_h = sized.output_size
    answer: dict[str, Any] = {
        "device": str(device), "precision": config.precision,
        "sizes": [[w, h] for h, w in sized.shapes], "steps": list(sized.steps),
        "output": [out_w, out_h], "content": [width, height],
        "upscale": round(max(width / out_w, height / out_h), 3),
        "checkpoint": bool(sized.memory.checkpoint) if sized.memory is not None else None,
        "notes": list(sized.notes),
    }
    if calibrated is not None:
        seconds = calibrated.start + sum(steps * calibrated.step_seconds(h * w)
                                         for (h, w), steps in zip(sized.shapes, sized.steps))
        answer["seconds"] = round(seconds, 1) if math.isfinite(seconds) else None
        answer["calibration"] = asdict(calibrated)
    return answer
