"""Plan a run before any pixel moves: every decision of the engine as one value.

:func:`plan` resolves the device, precision and seed, reads the images, works out the working
size of every coarse-to-fine scale, decides memory (or refuses what cannot fit) and binds every
loss-term name to its plug-in; the result, a :class:`RunPlan`, is what front-ends print and what
:func:`nst_core.engine.run` executes. :func:`load_model` loads a backbone once so that many plans
(a batch, the frames of a video) reuse it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
import secrets
from typing import Any, cast

import torch
from torch import Tensor

from nst_core.config import LossSpec, StyleConfig
from nst_core.device import resolve_device
from nst_core.errors import ConfigError, NSTError, PluginError, ResourceError, UnknownNameError
from nst_core.image import ImageSource, fit_longest_side
from nst_core.inputs import RunInputs, prepare_inputs
from nst_core.memory import MemoryPlan, available_bytes, largest_fitting_size, plan_memory
from nst_core.precision import resolve_precision
from nst_core.registry import Entry, Registries, collect_registries
from nst_core.types import Backbone, BoundLoss, LayerSchedule, LossTerm

MIN_WORKING_SIDE = 32
"""The shortest side the network works at: VGG's relu5_1 sees 1/16 of it (2 px here)."""


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


def scale_shapes(config: StyleConfig, height: int, width: int) -> list[tuple[int, int]]:
    """The working ``(h, w)`` of every scale for a ``height × width`` content image."""
    sides = scale_sizes(config.size, config.scales, config.scale_factor, min(config.min_scale_size, config.size))
    return [working_shape(height, width, side) for side in sides]


def steps_per_scale(config: StyleConfig, scales: int) -> tuple[int, ...]:
    """Optimiser steps of each of ``scales`` scales, coarse to fine: scale ``i`` runs
    ``max(1, round(config.steps · config.step_decay^i))`` (all ``config.steps`` at decay 1)."""
    return tuple(max(1, round(config.steps * config.step_decay ** i)) for i in range(scales))


@dataclass(frozen=True)
class SizePlan:
    """The size decisions of a run: what :func:`plan` and the GIMP filter's estimate share.

    ``config`` is the config with ``size`` lowered when ``fit_memory`` had to (else unchanged);
    ``shapes`` the working ``(h, w)`` per scale, coarse to fine; ``steps`` the steps per scale;
    ``output_size`` the result's ``(w, h)``; ``requested_size`` the longest side asked for.
    """

    config: StyleConfig
    shapes: tuple[tuple[int, int], ...]
    steps: tuple[int, ...]
    output_size: tuple[int, int]
    memory: MemoryPlan | None
    requested_size: int
    notes: tuple[str, ...] = ()


def plan_sizes(config: StyleConfig, height: int, width: int, device: torch.device, *,
               model_memory: bool = True, available: int | None = None) -> SizePlan:
    """Working sizes, steps per scale and the memory decision for a ``height × width`` content.

    With ``config.fit_memory`` a size that cannot fit is lowered to the largest that does (the
    note says so and by how much the result falls short); otherwise :func:`plan_memory` refuses
    it. ``model_memory=False`` (a backbone whose memory is not modelled) skips the memory part.
    :raises ResourceError: it cannot fit, even at the smallest size.
    """
    requested = config.size
    notes: list[str] = []

    def decide(cfg: StyleConfig) -> tuple[tuple[tuple[int, int], ...], tuple[int, ...], MemoryPlan | None]:
        shapes = tuple(scale_shapes(cfg, height, width))
        steps = steps_per_scale(cfg, len(shapes))
        if not model_memory:
            return shapes, steps, None
        return shapes, steps, plan_memory(list(shapes), precision=cfg.precision, device=device, steps=steps[-1],
                                          optimizer=cfg.optimizer, checkpoint=cfg.checkpoint, available=available)

    try:
        shapes, steps, memory = decide(config)
    except ResourceError:
        if not config.fit_memory:
            raise
        free = available if available is not None else available_bytes(device)
        h, w = working_shape(height, width, config.size)
        side = largest_fitting_size(h, w, free or 0, precision=config.precision, device=device,
                                    checkpoint=config.checkpoint is not False, optimizer=config.optimizer,
                                    steps=steps_per_scale(config, len(scale_shapes(config, height, width)))[-1])
        side = min(side, config.size - 1)
        while True:  # fewer scales can mean more steps (L-BFGS pairs) at the top: step down until it fits
            if side < MIN_WORKING_SIDE:
                raise
            try:
                shapes, steps, memory = decide(config.replace(size=side))
                break
            except ResourceError:
                side = int(side * 0.9)
        config = config.replace(size=side)
        out_h, out_w = fit_longest_side(height, width, side)
        notes.append(f"memory: {w}×{h} does not fit the free memory of {device.type}, so the run stops at "
                     f"{out_w}×{out_h} (the largest size that fits) and the result is {requested / side:.2f}× "
                     f"smaller than asked")
    if memory is not None and memory.note:
        notes.append(memory.note)
    out_h, out_w = fit_longest_side(height, width, config.size)
    return SizePlan(config, shapes, steps, (out_w, out_h), memory, requested, tuple(notes))


def one_line(exc: BaseException) -> str:
    """``"TypeName: message"`` on one line, for messages that quote a plug-in's exception."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def plugin_label(entry: Entry) -> str:
    """``plug-in 'name' (distribution)`` for messages that blame a plug-in."""
    return f"plug-in {entry.plugin!r} ({entry.distribution})"


@dataclass
class BoundTerm:
    """One term of J(G) resolved against the registries: its plug-in object, weight, layers and
    λ[l]; ``loss`` is set when the engine binds the term to a scale's targets."""

    name: str
    label: str
    """``plug-in 'x' (dist 1.0)``, for messages."""
    weight: float
    layers: tuple[str, ...]
    schedule: LayerSchedule | None
    fixed_weights: dict[str, float] | None
    term: LossTerm
    loss: BoundLoss | None = None

    def layer_weights(self, layers: Sequence[str], channels: Mapping[str, int], progress: float) -> dict[str, float]:
        """λ[l] for ``layers`` at ``progress`` (fraction of the scale's steps done, in [0, 1])."""
        if self.fixed_weights is not None:
            return self.fixed_weights
        assert self.schedule is not None, "a term with layers has fixed weights or a schedule"
        return self.schedule(layers, channels, progress)

    @property
    def low_precision_features(self) -> bool:
        return bool(getattr(self.term, "low_precision_features", False))


@dataclass(frozen=True)
class LayerInfo:
    """What a backbone says about its layers before it is truncated."""

    names: tuple[str, ...]
    channels: Mapping[str, int]
    default_content: tuple[str, ...]
    default_style: tuple[str, ...]

    @classmethod
    def of(cls, backbone: Backbone) -> LayerInfo:
        return cls(tuple(backbone.layer_names), dict(backbone.channels), tuple(backbone.default_content_layers),
                   tuple(backbone.default_style_layers))


@dataclass
class Model:
    """A backbone built once, on its device, computing features up to the deepest of ``layers``.

    Reused by every plan that asks for the same backbone, pooling and device and no deeper
    layer (:meth:`serves`): a batch or a video loads the weights once. Runs using one model take
    turns (the engine sets its checkpointing per run); one model per worker thread.
    """

    name: str
    pooling: str
    device: torch.device
    backbone: Backbone
    layers: tuple[str, ...]
    info: LayerInfo

    def serves(self, config: StyleConfig, device: torch.device, layers: Sequence[str]) -> bool:
        """True when this model computes every one of ``layers`` for ``config`` on ``device``."""
        if (self.name, self.pooling, self.device) != (config.backbone, config.pooling, device):
            return False
        deepest = max((self.info.names.index(layer) for layer in self.layers), default=-1)
        return all(self.info.names.index(layer) <= deepest for layer in layers)


def _build_backbone(config: StyleConfig, registries: Registries) -> Backbone:
    entry = registries.backbones.entry(config.backbone)
    try:
        backbone = entry.obj(pooling=config.pooling)
    except NSTError:
        raise
    except Exception as exc:
        raise PluginError(f"backbone {config.backbone!r} from {plugin_label(entry)} failed to "
                          f"load: {one_line(exc)}") from exc
    return cast(Backbone, backbone)


def resolve_term(spec: LossSpec, config: StyleConfig, registries: Registries, info: LayerInfo) -> BoundTerm:
    """A :class:`LossSpec` -> its plug-in object with layers and λ[l] (not bound to targets yet)."""
    entry = registries.loss_terms.entry(spec.name)
    try:
        term = entry.obj(**spec.params)
    except TypeError as exc:
        raise ConfigError(f"loss term {spec.name!r} does not accept parameters {dict(spec.params)}: {exc}") from None
    except NSTError:
        raise
    except Exception as exc:
        raise PluginError(f"loss term {spec.name!r} from {plugin_label(entry)} failed to start: "
                          f"{one_line(exc)}") from exc
    role = getattr(term, "role", None)
    if role not in ("content", "style", "image"):
        raise PluginError(f"loss term {spec.name!r} from {plugin_label(entry)} has role {role!r}; "
                          f"expected 'content', 'style' or 'image'")
    layers = _term_layers(spec, term, role, info)
    for layer in layers:
        if layer not in info.channels:
            raise UnknownNameError(f"layer of backbone {config.backbone!r}", layer, info.names)
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
        schedule = registries.schedules.get(spec.schedule or "uniform")
        if not schedule.varies:
            fixed = schedule(layers, info.channels, 0.0)
    return BoundTerm(spec.name, plugin_label(entry), spec.weight, layers, schedule, fixed, cast(LossTerm, term))


def _term_layers(spec: LossSpec, term: Any, role: str, info: LayerInfo) -> tuple[str, ...]:
    if role == "image":
        return ()
    if spec.layers is not None:
        return spec.layers
    if spec.layer_weights is not None:
        return tuple(spec.layer_weights)
    if getattr(term, "default_layers", None):
        return tuple(term.default_layers)
    return info.default_content if role == "content" else info.default_style


def resolve_terms(config: StyleConfig, registries: Registries, info: LayerInfo) -> list[BoundTerm]:
    """Every term of ``config``, resolved; a term named twice is a ConfigError."""
    terms = [resolve_term(spec, config, registries, info) for spec in config.loss_specs()]
    names = [t.name for t in terms]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ConfigError(f"loss term(s) {', '.join(sorted(duplicates))} appear twice; give each once")
    return terms


def _layers_of(terms: Sequence[BoundTerm]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(layer for t in terms for layer in t.layers))


def load_model(config: StyleConfig | None = None, *, registries: Registries | None = None,
               **overrides: Any) -> Model:
    """Build ``config``'s backbone on its device, truncated after the deepest layer its loss terms
    read. Pass the result to :func:`plan` (``model=``) for every run that should reuse it.

    :raises UnknownNameError, ConfigError, PluginError: before any weight is moved to the device.
    """
    config = (config or StyleConfig()).replace(**overrides) if overrides else (config or StyleConfig())
    registries = registries or collect_registries()
    device = resolve_device(config.device)
    backbone = _build_backbone(config, registries)
    info = LayerInfo.of(backbone)
    layers = _layers_of(resolve_terms(config, registries, info))
    if layers:
        backbone = backbone.truncated(layers)
    return Model(config.backbone, config.pooling, device, backbone.to(device), layers, info)


@dataclass(frozen=True, kw_only=True)
class RunPlan:
    """Every decision of a run, made before it starts; :func:`nst_core.engine.run` executes it.

    ``config`` is what runs (precision resolved, seed fixed); ``requested`` is the config as
    asked (its seed may be None), which the result and the resume state keep.
    ``shapes`` are the working ``(h, w)`` of each scale, coarse to fine, and ``sizes`` the same
    as ``(w, h)``; ``output_size`` is the result's ``(w, h)``. ``memory`` is the memory decision
    (None for a backbone whose memory is not modelled). A plan binds its terms to targets when it
    runs: run one plan at a time.
    """

    config: StyleConfig
    requested: StyleConfig
    device: torch.device
    seed: int
    seed_given: bool
    shapes: tuple[tuple[int, int], ...]
    output_size: tuple[int, int]
    memory: MemoryPlan | None
    model: Model
    terms: tuple[BoundTerm, ...]
    inputs: RunInputs = field(repr=False)
    notes: tuple[str, ...] = ()
    steps: tuple[int, ...] = ()
    """Optimiser steps of each scale, coarse to fine (``()``: ``config.steps`` at every scale)."""

    @property
    def sizes(self) -> tuple[tuple[int, int], ...]:
        """Working ``(width, height)`` of each scale, coarse to fine."""
        return tuple((w, h) for h, w in self.shapes)

    def scale_steps(self, scale: int) -> int:
        """Steps of scale ``scale`` (1 = the coarsest)."""
        return self.steps[scale - 1] if self.steps else self.config.steps

    @property
    def total_steps(self) -> int:
        return sum(self.steps) if self.steps else self.config.steps * len(self.shapes)

    @property
    def layers(self) -> tuple[str, ...]:
        """The backbone layers the terms read, shallow to deep as first named."""
        return _layers_of(self.terms)


def plan(content: ImageSource, styles: ImageSource | Sequence[ImageSource], config: StyleConfig | None = None,
         *, registries: Registries | None = None, model: Model | None = None,
         init_image: ImageSource | None = None, style_masks: Sequence[ImageSource | None] | None = None,
         guides: Mapping[str, Tensor] | None = None, **overrides: Any) -> RunPlan:
    """Decide everything about a run of ``content`` with ``styles`` (see :func:`nst_core.stylize`
    for the arguments), read its images and refuse what cannot run, without optimising anything.

    :param model: a :func:`load_model` result to reuse when it serves this config (else a new
        one is built: ``plan.model`` says which).
    :param guides: extra tensors for loss terms, ``{name: (1, C, H, W)}`` float at any size;
        each scale gets them resized to its working size in ``Targets.guides``.
    :raises NSTError: an unknown name or layer, a bad image, a size that cannot fit in memory.
    """
    config = config or StyleConfig()
    if overrides:
        config = config.replace(**overrides)
    device = resolve_device(config.device)
    config = config.replace(precision=resolve_precision(config.precision, device))
    requested = config
    registries = registries or collect_registries()
    if model is not None:
        terms = resolve_terms(config, registries, model.info)
        if not model.serves(config, device, _layers_of(terms)):
            model = None
    if model is None:
        model = load_model(config, registries=registries)
        terms = resolve_terms(config, registries, model.info)
    inputs = prepare_inputs(content, styles, style_masks, init_image, config, guides)
    seed = config.seed if config.seed is not None else secrets.randbelow(2**31)
    height, width = inputs.content.shape[-2:]
    # the VGG backbones, whose memory nst_core.memory has measured; ResourceError if it cannot fit
    sized = plan_sizes(config, height, width, device, model_memory=hasattr(model.backbone, "checkpoint"))
    if sized.config.size != config.size:  # fit_memory lowered it: the record says what ran
        config, requested = sized.config, requested.replace(size=sized.config.size)
    return RunPlan(config=config.replace(seed=seed), requested=requested, device=device, seed=seed,
                   seed_given=config.seed is not None, shapes=sized.shapes, output_size=sized.output_size,
                   memory=sized.memory, model=model, terms=tuple(terms), inputs=inputs,
                   notes=(*inputs.notes, *sized.notes), steps=sized.steps)
