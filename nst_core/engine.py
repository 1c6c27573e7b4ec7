"""The optimisation loop: bind targets once per scale, then step the pixels of G.

``stylize`` minimises J(G) = Σ_terms weight · term(G) over the pixels of G (Gatys et al. 2015),
coarse to fine: each scale starts from the previous result, upsampled. It never prints, never
exits and never reads argv: progress and cancellation are the ``on_progress`` and
``should_stop`` arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
import functools
import json
import math
import os
from pathlib import Path
import secrets
import time
from typing import Any, Literal

import torch
from torch import Tensor

from nst_core import functional as F
from nst_core.color import luminance_image, match_color, match_luminance, with_chroma_of
from nst_core.config import LossSpec, StyleConfig, config_to_dict
from nst_core.device import resolve_device
from nst_core.errors import ConfigError, NSTError, PluginError, ResourceError, UnknownNameError
from nst_core.optim import PixelLBFGS
from nst_core.memory import is_out_of_memory, plan_memory
from nst_core.precision import backbone_features, backward, resolve_precision
from nst_core.image import (ImageSource, LoadedImage, fit_longest_side, image_encoder, read_image, resize, save_image,
                            save_together, to_pil)
from nst_core.progress import Progress
from nst_core.resume import RunState, check_resume, inputs_fingerprint, settings_text
from nst_core.registry import Entry, Registries, collect_registries
from nst_core.types import Backbone, BoundLoss, LayerSchedule, LossTerm, Targets

RECORD_FORMAT = "nst-record/1"
RECORD_KEY = "nst-record"
"""PNG text key (and sidecar ``<image>.json``) of the run record."""

MIN_WORKING_SIDE = 32
"""The shortest side the network works at: VGG's relu5_1 sees 1/16 of it (2 px here)."""

LBFGS_HISTORY_BYTES = 1 << 30
"""Memory allowed for L-BFGS's history of (s, y) pairs; fewer pairs are kept for big images."""

RANGE_PENALTY = 100.0
"""Weight of :func:`~nst_core.functional.range_penalty` in what L-BFGS minimises, relative to J of
the scale's starting image: J + RANGE_PENALTY · J(x₀) · P(x). Without it the unclamped iterate
drifts out of [0, 1] (up to -0.5 … 1.7 after 80 steps) and the clamped output's J stops falling
while the optimiser's keeps falling (benchmarks/RESULTS.md, "range penalty")."""

MAX_RECOVERIES = 3
"""Times per scale a non-finite loss sends the run back to its best image before it gives up."""

Status = Literal["finished", "stopped", "non-finite"]


@dataclass(frozen=True, kw_only=True)
class StyleResult:
    """What a run produced.

    ``image`` is ``(1, 3, H, W)`` float32 RGB in [0, 1] on the CPU with the longest side
    ``config.size``; ``alpha`` is the content's alpha resized to it (or ``None``). ``status`` is
    ``"finished"``, ``"stopped"`` (``should_stop`` returned True: ``image`` is the best so far) or
    ``"non-finite"`` (the loss became NaN/inf: ``image`` is the last finite iterate).
    ``loss`` and ``terms`` are J(G) and its weighted parts for ``image`` at the last scale.
    """

    image: Tensor
    alpha: Tensor | None
    seed: int
    status: Status
    message: str
    steps: int
    total_steps: int
    loss: float
    terms: dict[str, float]
    elapsed: float
    device: str
    sizes: tuple[tuple[int, int], ...]
    config: StyleConfig
    notes: tuple[str, ...] = ()
    recoveries: int = 0
    state: RunState | None = field(default=None, repr=False, compare=False)
    """With ``status == "stopped"``: where the run stopped; ``stylize(..., resume=state)`` goes on."""

    def to_pil(self):
        """The image as an 8-bit PIL image (RGBA when the content had alpha)."""
        return to_pil(self.image, self.alpha)

    def record(self, **extra: Any) -> dict[str, Any]:
        """What made this image, JSON-safe: settings (with the seed used), versions, device, outcome.

        ``config_from_dict(record["config"])`` rebuilds the settings; ``extra`` adds keys (the
        CLI adds the input files).
        """
        import platform

        from nst_core import __version__

        return {
            "format": RECORD_FORMAT,
            "nst_core": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "device": self.device,
            "seed": self.seed,
            "config": config_to_dict(self.config.replace(seed=self.seed)),
            "status": self.status,
            "steps": self.steps,
            "loss": self.loss if math.isfinite(self.loss) else None,
            "terms": self.terms,
            "elapsed": round(self.elapsed, 3),
            "sizes": [list(s) for s in self.sizes],
            **extra,
        }

    def save(self, path: str | os.PathLike, *, record: Mapping[str, Any] | bool = False, **options: Any):
        """Write the image atomically; the format follows the extension (see :func:`save_image`).

        :param record: ``True`` (or a record from :meth:`record`) also stores the run record in
            the PNG's text (key ``nst-record``) and in a sidecar ``<path>.json``.
        """
        if record is True:
            record = self.record()
        if record:
            text = json.dumps(record, indent=2, sort_keys=True)
            path = Path(path)  # the image and its record are written together, or neither
            encode = image_encoder(self.image, path, alpha=self.alpha, text={RECORD_KEY: text}, **options)
            return save_together([(path, encode), (Path(f"{path}.json"), (text + "\n").encode("utf-8"))])[0]
        return save_image(self.image, path, alpha=self.alpha, **options)


@dataclass
class _BoundTerm:
    name: str
    label: str  # "plug-in 'x' (dist 1.0)" for messages
    weight: float
    layers: tuple[str, ...]
    schedule: LayerSchedule | None
    fixed_weights: dict[str, float] | None
    loss: BoundLoss | None = None
    term: LossTerm | None = None

    def layer_weights(self, layers: Sequence[str], channels: Mapping[str, int], progress: float) -> dict[str, float]:
        if self.fixed_weights is not None:
            return self.fixed_weights
        return self.schedule(layers, channels, progress)


@dataclass
class _Plan:
    config: StyleConfig
    backbone: Backbone
    terms: list[_BoundTerm]
    layers: tuple[str, ...]
    notes: list[str] = field(default_factory=list)


def scale_sizes(size: int, scales: int | None, factor: float, min_size: int) -> list[int]:
    """Longest sides of the coarse-to-fine scales, ending at ``size``.

    ``scales=None`` adds a coarser scale (``size / factor^k``) while it stays >= ``min_size``.
    """
    if scales is None:
        scales = 1
        while size / factor ** scales >= min_size - 1e-9:
            scales += 1
    return [max(16, round(size / factor ** k)) for k in reversed(range(scales))]


def working_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """``(h, w)`` for longest side ``size``; a side shorter than 32 px is stretched to 32 (the
    network needs that much; the result is resized back), never the long side."""
    h, w = fit_longest_side(height, width, size)
    return max(h, MIN_WORKING_SIDE), max(w, MIN_WORKING_SIDE)


def _as_sources(styles: ImageSource | Sequence[ImageSource]) -> list[ImageSource]:
    if isinstance(styles, (list, tuple)):
        if not styles:
            raise ConfigError("at least one style image is needed")
        return list(styles)
    return [styles]


OutOfMemory = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


def _out_of_memory(device: torch.device, size: tuple[int, int], config: StyleConfig) -> ResourceError:
    """The one-line error for a device that ran out of memory mid-run (the estimate was too low)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    hint = "a smaller size" if config.precision != "float32" else "precision='bf16' or a smaller size"
    return ResourceError(f"{device} ran out of memory at {size[0]}x{size[1]} px; try {hint} "
                         f"(or device='cpu', which has more memory)")


def _after_out_of_memory(plan: _Plan, config: StyleConfig, out: _ScaleOutcome, device: torch.device,
                         size: tuple[int, int], notes: list[str]) -> StyleConfig:
    """After an out-of-memory error at a scale of ``size`` ``(w, h)``: with ``on_oom="retry"``, free
    the device's cache, switch to the next lower-memory mode (gradient checkpointing on, then
    bf16) and set ``out`` to go on from the scale's best image so far; returns the config to go
    on with. Raises the one-line :class:`ResourceError` when retrying is off or no mode is left."""
    for t in plan.terms:
        t.loss = None  # the bound targets go; they are bound again in the new mode
    switched = None
    if config.on_oom == "retry":
        if getattr(plan.backbone, "checkpoint", None) is False:
            plan.backbone.checkpoint, switched = True, "gradient checkpointing on"
        elif config.precision == "float32":
            config, switched = config.replace(precision="bf16"), "precision bf16"
            plan.config = config
    if switched is None:
        raise _out_of_memory(device, size, config)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    out.x = out.best_x
    notes.append(f"{device} ran out of memory at {size[0]}x{size[1]} px after step {out.last_step}: switched to "
                 f"{switched} and went on from the best image so far")
    return config


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def _plugin_label(entry: Entry) -> str:
    return f"plug-in {entry.plugin!r} ({entry.distribution})"


def plan_run(config: StyleConfig, registries: Registries) -> _Plan:
    """Resolve every name in ``config`` (backbone, terms, schedules, layers) and build the backbone.

    Raises :class:`UnknownNameError` / :class:`ConfigError` before any pixel is touched.
    """
    backbone_entry = registries.backbones.entry(config.backbone)
    try:
        backbone = backbone_entry.obj(pooling=config.pooling)
    except NSTError:
        raise
    except Exception as exc:
        raise PluginError(f"backbone {config.backbone!r} from {_plugin_label(backbone_entry)} failed to "
                          f"load: {_one_line(exc)}") from exc
    terms: list[_BoundTerm] = []
    for spec in config.loss_specs():
        terms.append(_resolve_term(spec, config, registries, backbone))
    names = [t.name for t in terms]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ConfigError(f"loss term(s) {', '.join(sorted(duplicates))} appear twice; give each once")
    layers = tuple(dict.fromkeys(layer for t in terms for layer in t.layers))
    if layers:
        backbone = backbone.truncated(layers)
    return _Plan(config, backbone, terms, layers)


def _resolve_term(spec: LossSpec, config: StyleConfig, registries: Registries, backbone: Backbone) -> _BoundTerm:
    entry = registries.loss_terms.entry(spec.name)
    try:
        term = entry.obj(**spec.params)
    except TypeError as exc:
        raise ConfigError(f"loss term {spec.name!r} does not accept parameters {dict(spec.params)}: {exc}") from None
    except NSTError:
        raise
    except Exception as exc:
        raise PluginError(f"loss term {spec.name!r} from {_plugin_label(entry)} failed to start: "
                          f"{_one_line(exc)}") from exc
    role = getattr(term, "role", None)
    if role not in ("content", "style", "image"):
        raise PluginError(f"loss term {spec.name!r} from {_plugin_label(entry)} has role {role!r}; "
                          f"expected 'content', 'style' or 'image'")
    if role == "image":
        layers: tuple[str, ...] = ()
    elif spec.layers is not None:
        layers = spec.layers
    elif spec.layer_weights is not None:
        layers = tuple(spec.layer_weights)
    elif getattr(term, "default_layers", None):
        layers = tuple(term.default_layers)
    else:
        layers = backbone.default_content_layers if role == "content" else backbone.default_style_layers
    for layer in layers:
        if layer not in backbone.channels:
            raise UnknownNameError(f"layer of backbone {config.backbone!r}", layer, backbone.layer_names)
    fixed: dict[str, float] | None = {} if not layers else None
    schedule = None
    if spec.layer_weights is not None and layers:
        missing = [layer for layer in layers if layer not in spec.layer_weights]
        if missing:
            raise ConfigError(f"loss term {spec.name!r}: no layer weight given for {', '.join(missing)}")
        total = sum(spec.layer_weights[layer] for layer in layers)
        if total <= 0:
            raise ConfigError(f"loss term {spec.name!r}: the layer weights must not all be 0")
        fixed = {layer: spec.layer_weights[layer] / total for layer in layers}
    elif layers:
        schedule_name = spec.schedule or "uniform"
        schedule = registries.schedules.get(schedule_name)
        if not schedule.varies:
            fixed = schedule(layers, backbone.channels, 0.0)
    return _BoundTerm(spec.name, _plugin_label(entry), spec.weight, layers, schedule, fixed, term=term)


def _lbfgs_history(pixels: int) -> int:
    return int(min(100, max(5, LBFGS_HISTORY_BYTES // (2 * 3 * 4 * pixels))))


def _make_optimizer(config: StyleConfig, x: Tensor) -> PixelLBFGS | torch.optim.Adam:
    if config.optimizer == "lbfgs":
        return PixelLBFGS(x, lr=config.learning_rate or 1.0, history=_lbfgs_history(x.shape[-1] * x.shape[-2]))
    return torch.optim.Adam([x], lr=config.learning_rate or 0.02)


def _initial_image(config: StyleConfig, content: Tensor, init_image: Tensor | None,
                   generator: torch.Generator) -> Tensor:
    if config.init == "content":
        return content.clone()
    if config.init == "gray":
        return torch.full_like(content, 0.5)
    if config.init == "noise":
        noise = torch.rand(content.shape, generator=generator, dtype=torch.float32)
        return noise.to(content.device)
    if init_image is None:
        raise ConfigError("init='image' needs an init_image")
    return resize(init_image.to(content.device), *content.shape[-2:])


@dataclass
class _Inputs:
    """The images of a run, read once at full resolution on the CPU, after colour handling."""

    content: Tensor          # what the run sees: (1, 3, H, W), grey in luminance mode
    original: LoadedImage    # the content as read (its colours and alpha)
    styles: list[Tensor]     # (1, 3, Hs, Ws) each, recoloured / grey as the colour mode says
    masks: list[Tensor | None]  # (1, 1, H, W) in [0, 1] per style, or None: everywhere
    blend: tuple[float, ...]
    init: Tensor | None
    notes: list[str]
    read: tuple[list[LoadedImage], list[LoadedImage | None], LoadedImage | None] = ((), (), None)
    """The styles, masks and init image as read (for :attr:`fingerprint`)."""

    @functools.cached_property
    def fingerprint(self) -> dict[str, str]:
        """sha256 of each image as read, by name (:func:`nst_core.resume.inputs_fingerprint`)."""
        return inputs_fingerprint(self.original, *self.read)


def _mask_tensor(loaded: LoadedImage, height: int, width: int) -> Tensor:
    """A mask image -> ``(1, 1, height, width)`` in [0, 1]: its alpha if it has one, else its grey."""
    mask = loaded.alpha if loaded.alpha is not None else loaded.rgb.mean(dim=1, keepdim=True)
    return resize(mask, height, width)


def _prepare_inputs(content: ImageSource, styles: ImageSource | Sequence[ImageSource],
                    style_masks: Sequence[ImageSource | None] | None, init_image: ImageSource | None,
                    config: StyleConfig) -> _Inputs:
    original = read_image(content)
    style_imgs = [read_image(s) for s in _as_sources(styles)]
    blend = config.style_blend or tuple(1.0 for _ in style_imgs)
    if len(blend) != len(style_imgs):
        raise ConfigError(f"style_blend has {len(blend)} weight(s) but there are {len(style_imgs)} style image(s)")
    blend = tuple(w / sum(blend) for w in blend)
    height, width = original.rgb.shape[-2:]
    masks: list[Tensor | None] = [None] * len(style_imgs)
    mask_imgs: list[LoadedImage | None] = [None] * len(style_imgs)
    if style_masks is not None:
        if len(style_masks) != len(style_imgs):
            raise ConfigError(f"{len(style_masks)} style mask(s) given for {len(style_imgs)} style image(s); "
                              f"give one per style (None for the whole image)")
        mask_imgs = [None if m is None else read_image(m) for m in style_masks]
        masks = [None if m is None else _mask_tensor(m, height, width) for m in mask_imgs]
    content_rgb = original.rgb
    style_rgbs = [s.rgb for s in style_imgs]
    if config.preserve_color == "histogram":
        style_rgbs = [match_color(s, content_rgb) for s in style_rgbs]
    elif config.preserve_color == "luminance":
        style_rgbs = [match_luminance(s, content_rgb) for s in style_rgbs]
        content_rgb = luminance_image(content_rgb)
    init_img = read_image(init_image) if init_image is not None else None
    init = init_img.rgb if init_img is not None else None
    notes = [*original.notes, *(n for s in style_imgs for n in s.notes)]
    return _Inputs(content_rgb, original, style_rgbs, masks, blend, init, notes, (style_imgs, mask_imgs, init_img))


def _finish_image(x: Tensor, inputs: _Inputs, config: StyleConfig, out_h: int, out_w: int) -> Tensor:
    """The last iterate at the output size, with the content's colours back in luminance mode and,
    with masks, the content kept outside them (soft edges blend)."""
    image = resize(x.detach().to("cpu", torch.float32).clamp(0, 1), out_h, out_w)
    original = resize(inputs.original.rgb, out_h, out_w)
    if config.preserve_color == "luminance":
        image = with_chroma_of(image, original)
    if any(m is not None for m in inputs.masks):
        region = sum(resize(m, out_h, out_w) if m is not None else torch.ones(1, 1, out_h, out_w)
                     for m in inputs.masks).clamp(0, 1)
        image = original + region * (image - original)
    return image


def stylize(content: ImageSource, styles: ImageSource | Sequence[ImageSource], config: StyleConfig | None = None,
            *, registries: Registries | None = None, init_image: ImageSource | None = None,
            style_masks: Sequence[ImageSource | None] | None = None,
            on_progress: Callable[[Progress], None] | None = None,
            should_stop: Callable[[], bool] | None = None, resume: RunState | None = None,
            **overrides: Any) -> StyleResult:
    """Stylise ``content`` with one or more ``styles`` by optimising the pixels of G.

    :param content: path, PIL image, ``(1, 3, H, W)`` tensor in [0, 1] or ``(H, W, 3)`` array.
    :param styles: one such image or a list of them (blended by ``config.style_blend``).
    :param config: the run's settings; ``overrides`` change fields of it (``size=256, steps=100``).
    :param registries: plug-in registries to use (default: collected from installed plug-ins).
    :param init_image: the starting image when ``config.init == "image"``.
    :param style_masks: one mask per style image (or ``None`` for "everywhere"): where on the
        content that style applies (Gatys et al. 2017 spatial control), grey or alpha in [0, 1],
        soft edges allowed. Outside every mask the output keeps the content.
    :param on_progress: called after every step with a :class:`Progress`.
    :param should_stop: checked before every step; when it returns True the run ends and the
        result holds the best image so far (``status="stopped"``) and, in ``result.state``, where
        it stopped.
    :param resume: a :class:`~nst_core.resume.RunState` (``result.state`` of a stopped run, or
        ``Progress.state()``) to continue from: the same settings and images are required
        (:class:`~nst_core.errors.ResumeError` names what differs), the run goes on at the saved
        scale and step with the same total, and L-BFGS goes on from its last move (older pairs are
        not kept).
    :returns: a :class:`StyleResult`; its ``image`` is ``(1, 3, H, W)`` in [0, 1] on the CPU.
    """
    started = time.perf_counter()
    config = config or StyleConfig()
    if overrides:
        config = config.replace(**overrides)
    device = resolve_device(config.device)
    config = config.replace(precision=resolve_precision(config.precision, device))
    requested = config  # the result's; ``config`` is what runs (on_oom="retry" may lower its precision)
    registries = registries or collect_registries()
    plan = plan_run(config, registries)
    inputs = _prepare_inputs(content, styles, style_masks, init_image, config)

    seed = config.seed if config.seed is not None else resume.seed if resume is not None else secrets.randbelow(2**31)
    generator = torch.Generator().manual_seed(seed)
    plan.backbone = plan.backbone.to(device)

    height, width = inputs.content.shape[-2:]
    out_h, out_w = fit_longest_side(height, width, config.size)
    sizes = scale_sizes(config.size, config.scales, config.scale_factor, min(config.min_scale_size, config.size))
    shapes = [working_shape(height, width, s) for s in sizes]
    if hasattr(plan.backbone, "checkpoint"):  # the VGG backbones, whose memory nst_core.memory has measured
        memory = plan_memory(shapes, precision=config.precision, device=device, steps=config.steps,
                             optimizer=config.optimizer, checkpoint=config.checkpoint,  # ResourceError if it cannot fit
                             style_sizes=[tuple(s.shape[-2:]) for s in inputs.styles], style_scale=config.style_scale,
                             masks=sum(m is not None for m in inputs.masks))
        plan.backbone.checkpoint = memory.checkpoint
        if memory.note:
            inputs.notes.append(memory.note)
    total_steps = config.steps * len(shapes)
    step_count, recoveries = 0, 0
    if resume is not None:
        check_resume(resume, config=config, inputs=inputs.fingerprint, total=total_steps, shapes=shapes)
        config = plan.config = config.replace(precision=resume.precision)
        if resume.checkpoint and hasattr(plan.backbone, "checkpoint"):
            plan.backbone.checkpoint = True
        inputs.notes.extend(n for n in resume.notes if n not in inputs.notes)
        step_count, recoveries, started = resume.step, resume.recoveries, started - resume.elapsed
    x_prev: Tensor | None = None
    status: Status = "finished"
    message = "finished"
    last_values: list[float] = []
    stopped_at: RunState | None = None
    settings = settings_text(requested)

    def capture(scale_index: int, scale_step: int, x: Tensor, out: _ScaleOutcome) -> RunState:
        """The run's state after ``scale_step`` steps of scale ``scale_index`` (iterate ``x``)."""
        return RunState(scale=scale_index, scale_step=scale_step, step=out.last_step, total=total_steps,
                        x=x.detach().to("cpu", torch.float32, copy=True),
                        best_x=out.best_x.detach().to("cpu", torch.float32, copy=True),
                        best_values=tuple(out.best_values), seed=seed, settings=settings, inputs=inputs.fingerprint,
                        precision=config.precision, checkpoint=getattr(plan.backbone, "checkpoint", None),
                        notes=tuple(inputs.notes), recoveries=recoveries + out.recoveries,
                        range_weight=None if out.range_weight is None else float(out.range_weight),
                        lbfgs_move=_cpu_move(out.optimizer),
                        elapsed=time.perf_counter() - started)

    for scale_index, (h, w) in enumerate(shapes, start=1):
        if resume is not None and scale_index < resume.scale:
            continue  # done before the run was stopped
        content_s = resize(inputs.content, h, w).to(device)
        masks_s = [None if m is None else resize(m, h, w).to(device) for m in inputs.masks]
        out = _ScaleOutcome(best_x=None, best_values=[], last_step=step_count)
        if resume is not None and scale_index == resume.scale:
            out = _ScaleOutcome(best_x=resume.best_x.to(device), best_values=list(resume.best_values),
                                last_step=resume.step, x=resume.x.to(device), done=resume.scale_step,
                                range_weight=None if resume.range_weight is None
                                else torch.tensor(resume.range_weight, device=device),
                                carried_move=resume.lbfgs_move)
        while True:  # more than once only after running out of memory with on_oom="retry"
            try:
                _bind_targets(plan, content_s, inputs.styles, inputs.blend, masks_s, config, (h, w), device)
                if x_prev is None:
                    x0 = _initial_image(config, content_s, inputs.init, generator)
                else:
                    x0 = resize(x_prev.clamp(0, 1), h, w)
                outcome = _optimise_scale(plan, x0, config, first_step=step_count, total_steps=total_steps,
                                          scale=(scale_index, len(shapes)), started=started,
                                          on_progress=on_progress, should_stop=should_stop, out=out, capture=capture)
                break
            except Exception as exc:  # noqa: BLE001 - out of memory (GPU or CPU allocator) is handled below, once
                if not is_out_of_memory(exc):  # the frames of the traceback (and their tensors) are gone
                    raise
            config = _after_out_of_memory(plan, config, out, device, (w, h), inputs.notes)
        step_count = outcome.last_step
        recoveries += outcome.recoveries
        x_prev, last_values = outcome.best_x, outcome.best_values
        for t in plan.terms:
            t.loss = None
        if outcome.status != "finished":
            status, message, stopped_at = outcome.status, outcome.message, outcome.state
            break
    if status == "finished" and recoveries:
        message = (f"finished; the loss became non-finite {recoveries} time(s) and the run went back to the "
                   f"last finite image")

    image = _finish_image(x_prev, inputs, config, out_h, out_w)
    alpha = None
    if inputs.original.alpha is not None:
        alpha = resize(inputs.original.alpha, out_h, out_w)
    terms = {t.name: v for t, v in zip(plan.terms, last_values[1:-1])} if last_values else {}
    return StyleResult(image=image, alpha=alpha, seed=seed, status=status, message=message, steps=step_count,
                       total_steps=total_steps, loss=last_values[0] if last_values else math.nan, terms=terms,
                       elapsed=time.perf_counter() - started, device=str(device),
                       sizes=tuple((sw, sh) for sh, sw in shapes), config=requested, notes=tuple(inputs.notes),
                       recoveries=recoveries, state=stopped_at)


def _cpu_move(optimizer: PixelLBFGS | torch.optim.Adam | None) -> tuple[Tensor, Tensor] | None:
    move = optimizer.last_move() if isinstance(optimizer, PixelLBFGS) else None
    return None if move is None else tuple(t.detach().to("cpu", torch.float32, copy=True) for t in move)


@dataclass
class _ScaleOutcome:
    """One scale's progress: filled in as it runs, so that it survives an exception mid-scale."""

    best_x: Tensor | None
    best_values: list[float]
    last_step: int
    status: Status = "finished"
    message: str = "finished"
    recoveries: int = 0
    x: Tensor | None = None
    """Where the next step starts (resumed or after an out-of-memory retry); None: ``x0``."""
    done: int = 0
    """Iterations of this scale done (its steps, plus any recoveries from a non-finite loss)."""
    state: RunState | None = None
    """Set when the scale stopped (``should_stop``): where to resume."""
    range_weight: Tensor | None = None
    """RANGE_PENALTY · J(x₀) of this scale (L-BFGS only), fixed once its first step ran."""
    optimizer: PixelLBFGS | torch.optim.Adam | None = None
    """The scale's optimiser now (a resume state carries L-BFGS's last move)."""
    carried_move: tuple[Tensor, Tensor] | None = None
    """L-BFGS's last move ``(s, g)`` from a resume state, for the first optimiser of the scale."""


def _optimise_scale(plan: _Plan, x0: Tensor, config: StyleConfig, *, first_step: int, total_steps: int,
                    scale: tuple[int, int], started: float, on_progress: Callable[[Progress], None] | None,
                    should_stop: Callable[[], bool] | None, out: _ScaleOutcome | None = None,
                    capture: Callable[[int, int, Tensor, _ScaleOutcome], RunState] | None = None) -> _ScaleOutcome:
    """Run ``config.steps`` optimiser steps on one scale, starting from ``x0`` ``(1, 3, h, w)``.

    One function evaluation per step; keeps the best iterate (lowest J). A non-finite loss or
    gradient sends the run back to the best image with a fresh optimiser, at most
    ``MAX_RECOVERIES`` times per scale; then the scale ends with status ``"non-finite"``.
    L-BFGS iterates are not clamped to [0, 1] (clamping would corrupt its curvature pairs);
    Adam's are. Every image handed on is clamped.

    ``out`` (default: a fresh one from ``first_step``) is filled in place; when it already holds
    steps (``done``, ``x``, the best so far) the scale goes on from there with a fresh optimiser.
    ``capture(scale, scale_step, x, out)`` makes the :class:`RunState` that ``Progress.state()``
    and a stop hand out.
    """
    h, w = x0.shape[-2:]
    if out is None:
        out = _ScaleOutcome(best_x=None, best_values=[], last_step=first_step)
    x = (x0 if out.x is None else out.x).detach().clone().requires_grad_(True)
    optimizer = out.optimizer = _make_optimizer(config, x)
    if out.carried_move is not None and isinstance(optimizer, PixelLBFGS):
        optimizer.continue_from(*out.carried_move)
    out.carried_move = None
    if out.best_x is None:
        out.best_x = x.detach().clone()
    best_loss = out.best_values[0] if out.best_values else math.inf
    shown = torch.empty_like(x0) if on_progress is not None else None  # the iterate a step evaluated

    def evaluate(progress: float) -> tuple[Tensor, list[Tensor]]:
        """J(x) and its parts; fills x.grad with the gradient of what the optimiser minimises
        (for L-BFGS, J plus the range penalty)."""
        x.grad = None
        total, parts = _objective(plan, x, progress)
        minimised = total
        if isinstance(optimizer, PixelLBFGS):
            if out.range_weight is None:
                out.range_weight = RANGE_PENALTY * total.detach().abs()
            minimised = total + out.range_weight * F.range_penalty(x)
        backward(minimised, x, config.precision)
        return total, parts

    for i in range(out.done, config.steps):
        if should_stop is not None and should_stop():
            out.status, out.message = "stopped", f"stopped at step {out.last_step} of {total_steps}"
            if capture is not None:
                out.state = capture(scale[0], i, x, out)
            return out
        progress = i / max(config.steps - 1, 1)
        total, parts = evaluate(progress)
        grad_finite = torch.isfinite(x.grad).all().float()
        values = torch.stack([total.detach(), *(p.detach() for p in parts), grad_finite]).tolist()
        if not all(math.isfinite(v) for v in values) or values[-1] != 1.0:
            if out.recoveries < MAX_RECOVERIES and out.best_values:
                out.recoveries += 1
                with torch.no_grad():
                    x.copy_(out.best_x)
                optimizer = out.optimizer = _make_optimizer(config, x)
                out.done = i + 1
                continue
            out.status = "non-finite"
            out.message = (f"the loss became non-finite (NaN or inf) at step {out.last_step + 1}; kept the last "
                           f"finite image. Lower the loss weights or the learning rate")
            return out
        if values[0] < best_loss:
            best_loss, out.best_values = values[0], values
            out.best_x = x.detach().clone()
        if shown is not None:
            shown.copy_(x.detach())
        if isinstance(optimizer, PixelLBFGS):
            optimizer.step(x.grad)
        else:
            optimizer.step()
            with torch.no_grad():
                x.clamp_(0, 1)
        out.last_step, out.done = out.last_step + 1, i + 1
        if on_progress is not None:  # after the optimiser's step, so that state() resumes after it
            state = None if capture is None else functools.partial(capture, scale[0], i + 1, x, out)
            on_progress(Progress(step=out.last_step, total=total_steps, scale=scale[0], scales=scale[1],
                                 size=(w, h), loss=values[0],
                                 terms={t.name: v for t, v in zip(plan.terms, values[1:-1])},
                                 elapsed=time.perf_counter() - started, image=shown,
                                 state=state))
    with torch.no_grad():
        final_total, final_parts = _objective(plan, x, 1.0)
        final = torch.stack([final_total, *final_parts]).tolist()
    if all(math.isfinite(v) for v in final) and final[0] <= best_loss:
        out.best_x, out.best_values = x.detach().clone(), final + [1.0]
    return out


def _bind_targets(plan: _Plan, content: Tensor, styles: list[Tensor], blend: tuple[float, ...],
                  masks: list[Tensor | None], config: StyleConfig, shape: tuple[int, int],
                  device: torch.device) -> None:
    """Compute the features of the content and style images at this scale (once) and bind every
    term to them. Style images are resized so their longest side is ``style_scale`` times the
    working size; ``masks`` are ``(1, 1, h, w)`` at the working size (or None)."""
    h, w = shape
    content_feats = backbone_features(plan.backbone, content, plan.layers, config.precision, grad=False)
    style_tensors, style_feats = [], []
    for style in styles:
        sh, sw = working_shape(*style.shape[-2:], max(16, round(max(h, w) * config.style_scale)))
        s = resize(style, sh, sw).to(device)
        style_tensors.append(s)
        style_feats.append(backbone_features(plan.backbone, s, plan.layers, config.precision, grad=False))
    for t in plan.terms:
        targets = Targets(
            layers=t.layers,
            content={layer: content_feats[layer] for layer in t.layers},
            styles=tuple({layer: feats[layer] for layer in t.layers} for feats in style_feats),
            style_weights=blend,
            content_image=content,
            style_images=tuple(style_tensors),
            channels={layer: plan.backbone.channels[layer] for layer in t.layers},
            masks=tuple(masks),
        )
        try:
            t.loss = t.term.bind(targets)
        except (NSTError, OutOfMemory):
            raise
        except Exception as exc:
            if is_out_of_memory(exc):  # the CPU allocator's RuntimeError
                raise
            raise PluginError(f"loss term {t.name!r} from {t.label} failed to bind its targets: "
                              f"{_one_line(exc)}") from exc


def _objective(plan: _Plan, x: Tensor, progress: float) -> tuple[Tensor, list[Tensor]]:
    """J(x) = Σ weight · term(x) and the weighted parts, from one backbone pass."""
    low = [layer for layer in plan.layers
           if all(getattr(t.term, "low_precision_features", False) for t in plan.terms if layer in t.layers)]
    features = backbone_features(plan.backbone, x, plan.layers, plan.config.precision, keep_low=low)
    parts = []
    for t in plan.terms:
        weights = t.layer_weights(t.layers, plan.backbone.channels, progress)
        try:
            value = t.loss(x, features, weights)
        except (NSTError, OutOfMemory):
            raise
        except Exception as exc:
            if is_out_of_memory(exc):  # the CPU allocator's RuntimeError
                raise
            raise PluginError(f"loss term {t.name!r} from {t.label} raised {_one_line(exc)}") from exc
        if not isinstance(value, Tensor):
            value = torch.as_tensor(float(value), device=x.device)
        parts.append(t.weight * value)
    return torch.stack(parts).sum() if parts else x.sum() * 0, parts
