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
import inspect
import secrets
from typing import Any

import torch
from torch import Tensor

from nst_core.config import LossSpec, StyleConfig, config_from_preset
from nst_core.contract import (call_plugin, check_backbone, check_features, check_layer_weights,
                               check_weight_scale, measure_memory_profile, one_line, plugin_label)
from nst_core.device import resolve_device
from nst_core.errors import ConfigError, PluginError, ResourceError, UnknownNameError
from nst_core.image import ImageSource, fit_longest_side
from nst_core.inputs import RunInputs, prepare_inputs
from nst_core.memory import VGG19_SAVED_BYTES_PER_PIXEL, MemoryPlan, plan_memory
from nst_core.params import ParamSpec, check_params, param_spec
from nst_core.precision import resolve_precision
from nst_core.registry import Registries, Registry, collect_registries
from nst_core.types import Backbone, BoundLoss, LayerSchedule, LossTerm, MemoryProfile

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
    memory: MemoryPlan
    requested_size: int
    notes: tuple[str, ...] = ()


def plan_sizes(config: StyleConfig, height: int, width: int, device: torch.device, *,
               available: int | None = None, **memory: Any) -> SizePlan:
    """Working sizes, steps per scale and the memory decision for a ``height × width`` content.

    With ``config.fit_memory`` a size that cannot fit is lowered to the largest that does (the
    note says so and by how much the result falls short); otherwise :func:`plan_memory` refuses
    it. ``memory`` goes to :func:`plan_memory` (``supports_checkpoint``, ``scale``,
    ``style_sizes``, ``masks``: the backbone's and the inputs' share; ``style_scale`` is the config's).
    :raises ResourceError: it cannot fit, even at the smallest size.
    """
    requested = config.size
    notes: list[str] = []

    def decide(cfg: StyleConfig) -> tuple[tuple[tuple[int, int], ...], tuple[int, ...], MemoryPlan]:
        shapes = tuple(scale_shapes(cfg, height, width))
        steps = steps_per_scale(cfg, len(shapes))
        return shapes, steps, plan_memory(list(shapes), precision=cfg.precision, device=device, steps=steps[-1],
                                          optimizer=cfg.optimizer, checkpoint=cfg.checkpoint, available=available,
                                          style_scale=cfg.style_scale, **memory)

    try:
        shapes, steps, plan = decide(config)
    except ResourceError:
        if not config.fit_memory:
            raise
        lo, hi = MIN_WORKING_SIDE - 1, config.size  # decide() fits at lo (or nothing does), not at hi
        found = None
        while hi - lo > 1:  # the memory needed grows with the size
            mid = (lo + hi) // 2
            try:
                found, lo = decide(config.replace(size=mid)), mid
            except ResourceError:
                hi = mid
        if found is None:
            raise
        shapes, steps, plan = found
        h, w = working_shape(height, width, config.size)
        config = config.replace(size=lo)
        out_h, out_w = fit_longest_side(height, width, lo)
        notes.append(f"memory: {w}×{h} does not fit the free memory of {device.type}, so the run stops at "
                     f"{out_w}×{out_h} (the largest size that fits) and the result is {requested / lo:.2f}× "
                     f"smaller than asked")
    if plan.note:
        notes.append(plan.note)
    out_h, out_w = fit_longest_side(height, width, config.size)
    return SizePlan(config, shapes, steps, (out_w, out_h), plan, requested, tuple(notes))


__all__ = ["BoundTerm", "LayerInfo", "Model", "RunPlan", "SizePlan", "load_model", "one_line", "plan", "plan_sizes",
           "plugin_label", "steps_per_scale"]


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
    schedule_label: str = ""
    """``layer schedule 'x' from plug-in 'p' (dist 1.0)``, for messages (when ``schedule`` varies)."""
    scale: float = 1.0
    """The declared factors on ``weight``: the term's :attr:`LossTerm.weight_scale` times the
    backbone's :attr:`Backbone.weight_scales` for the term's role (1.0 for gram and content on
    vgg19)."""

    @property
    def effective_weight(self) -> float:
        """``weight · scale``: the factor of the term's value in J(G), what the engine multiplies."""
        return self.weight * self.scale

    def layer_weights(self, layers: Sequence[str], channels: Mapping[str, int], progress: float) -> dict[str, float]:
        """λ[l] for ``layers`` at ``progress`` (fraction of the scale's steps done, in [0, 1]);
        a varying schedule's weights are checked (finite, >= 0, one per layer) at every call."""
        if self.fixed_weights is not None:
            return self.fixed_weights
        assert self.schedule is not None, "a term with layers has fixed weights or a schedule"
        what = f"{self.schedule_label} (weighting loss term {self.name!r})"
        return check_layer_weights(what, call_plugin(what, self.schedule, layers, channels, progress), layers)

    @property
    def low_precision_features(self) -> bool:
        """The term's declared :attr:`LossTerm.low_precision_features`."""
        return self.term.low_precision_features is True


@dataclass(frozen=True)
class LayerInfo:
    """What a backbone says about its layers before it is truncated."""

    names: tuple[str, ...]
    channels: Mapping[str, int]
    default_content: tuple[str, ...]
    default_style: tuple[str, ...]
    weight_scales: Mapping[str, float] = field(default_factory=dict)
    """The backbone's declared :attr:`Backbone.weight_scales` (checked by ``check_backbone``)."""

    @classmethod
    def of(cls, backbone: Backbone) -> LayerInfo:
        return cls(tuple(backbone.layer_names), dict(backbone.channels), tuple(backbone.default_content_layers),
                   tuple(backbone.default_style_layers), dict(backbone.weight_scales))


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
    label: str = "backbone"
    """``backbone 'x' from plug-in 'p' (dist 1.0)``, for messages that blame it."""
    memory_profile: MemoryProfile = MemoryProfile(VGG19_SAVED_BYTES_PER_PIXEL)
    """The backbone's declared profile, or the one measured when it was loaded."""

    def features(self, image: Tensor, layers: Sequence[str], precision: str, **options: Any) -> dict[str, Tensor]:
        """:func:`nst_core.precision.backbone_features` of this backbone, checked: a forward that
        raises, lacks a requested layer or has another channel count than declared is a
        one-line PluginError naming the backbone's plug-in."""
        from nst_core.precision import backbone_features

        features = call_plugin(self.label, backbone_features, self.backbone, image, layers, precision, **options)
        return check_features(self.label, features, layers, self.backbone.channels, image)

    def serves(self, config: StyleConfig, device: torch.device, layers: Sequence[str]) -> bool:
        """True when this model computes every one of ``layers`` for ``config`` on ``device``."""
        if (self.name, self.pooling, self.device) != (config.backbone, config.pooling, device):
            return False
        deepest = max((self.info.names.index(layer) for layer in self.layers), default=-1)
        return all(self.info.names.index(layer) <= deepest for layer in layers)


def _accepts(factory: Any, **kwargs: Any) -> bool:
    """Whether ``factory``'s signature takes ``kwargs`` (True when it cannot be told)."""
    try:
        inspect.signature(factory).bind(**kwargs)
    except TypeError:
        return False
    except ValueError:  # no signature (a builtin): let the call decide
        return True
    return True


def term_params(name: str, registries: Registries) -> ParamSpec:
    """The declared parameters of loss term ``name`` (:mod:`nst_core.params`).

    :raises UnknownNameError: no such loss term. :raises PluginError: a declaration that cannot
        be checked (an unsupported type), naming the plug-in.
    """
    entry = registries.loss_terms.entry(name)
    try:
        return param_spec(entry.obj)
    except TypeError as exc:
        raise PluginError(f"loss term {name!r} from {plugin_label(entry)} declares its parameters wrongly: "
                          f"{exc}") from None


def build_backbone(config: StyleConfig, registries: Registries) -> Backbone:
    """``config``'s backbone, built and checked as a run builds it (for listing its layers)."""
    return _build_backbone(config, registries)[0]


def _build_backbone(config: StyleConfig, registries: Registries) -> tuple[Backbone, str]:
    """Call the backbone's factory (``factory()``, or ``factory(pooling=...)`` for a pooling
    other than "max") and check what it returns; returns the backbone and its label."""
    entry = registries.backbones.entry(config.backbone)
    label = f"backbone {config.backbone!r} from {plugin_label(entry)}"
    kwargs = {} if config.pooling == "max" else {"pooling": config.pooling}
    if kwargs and not _accepts(entry.obj, **kwargs):
        raise ConfigError(f"backbone {config.backbone!r} has no pooling option; use pooling='max' with it")
    backbone = check_backbone(label, call_plugin(f"{label}, loading,", entry.obj, **kwargs))
    backbone.eval()
    backbone.requires_grad_(False)
    return backbone, label


def resolve_term(spec: LossSpec, config: StyleConfig, registries: Registries, info: LayerInfo) -> BoundTerm:
    """A :class:`LossSpec` -> its plug-in object with layers and λ[l] (not bound to targets yet)."""
    entry = registries.loss_terms.entry(spec.name)
    label = f"loss term {spec.name!r} from {plugin_label(entry)}"
    params = check_params(spec.name, term_params(spec.name, registries), spec.params)
    term = call_plugin(f"{label}, starting,", entry.obj, **params)
    if not isinstance(term, LossTerm):
        raise PluginError(f"{label}: its factory returned {type(term).__name__}; it must return an instance of "
                          f"nst_core.LossTerm")
    role = term.role
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
    schedule_label = ""
    if spec.layer_weights is None and layers:
        schedule_name = spec.schedule or "uniform"
        schedule_entry = registries.schedules.entry(schedule_name)
        schedule = schedule_entry.obj
        schedule_label = f"layer schedule {schedule_name!r} from {plugin_label(schedule_entry)}"
        if not isinstance(schedule, LayerSchedule):
            raise PluginError(f"{schedule_label} is a {type(schedule).__name__}; register a nst_core.LayerSchedule")
        if not schedule.varies:
            what = f"{schedule_label} (weighting loss term {spec.name!r})"
            fixed = check_layer_weights(what, call_plugin(what, schedule, layers, info.channels, 0.0), layers)
    scale = check_weight_scale(label, term.weight_scale) * info.weight_scales.get(role, 1.0)
    return BoundTerm(spec.name, plugin_label(entry), spec.weight, layers, schedule, fixed, term,
                     schedule_label=schedule_label, scale=scale)


def _term_layers(spec: LossSpec, term: LossTerm, role: str, info: LayerInfo) -> tuple[str, ...]:
    if role == "image":
        return ()
    if spec.layers is not None:
        return spec.layers
    if spec.layer_weights is not None:
        return tuple(spec.layer_weights)
    if term.default_layers:
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
    backbone, label = _build_backbone(config, registries)
    info = LayerInfo.of(backbone)
    layers = _layers_of(resolve_terms(config, registries, info))
    if layers:
        backbone = check_backbone(label, call_plugin(f"{label}, in truncated(),", backbone.truncated, layers), layers)
    backbone = call_plugin(f"{label}, moving to {device},", backbone.to, device)
    profile = backbone.memory_profile
    if profile is None and layers:  # measured: one forward at 64 and 128 px, which also checks forward()
        def measured_forward(image: Tensor, wanted: Sequence[str]) -> dict[str, Tensor]:
            return check_features(label, backbone(image, wanted), wanted, backbone.channels, image)

        profile = call_plugin(label, measure_memory_profile, backbone, layers, device, forward=measured_forward)
    return Model(config.backbone, config.pooling, device, backbone, layers, info, label=label,
                 memory_profile=profile or MemoryProfile(VGG19_SAVED_BYTES_PER_PIXEL))


@dataclass(frozen=True, kw_only=True)
class RunPlan:
    """Every decision of a run, made before it starts; :func:`nst_core.engine.run` executes it.

    ``config`` is what runs (precision resolved, seed fixed); ``requested`` is the config as
    asked (its seed may be None), which the result and the resume state keep.
    ``shapes`` are the working ``(h, w)`` of each scale, coarse to fine, and ``sizes`` the same
    as ``(w, h)``; ``output_size`` is the result's ``(w, h)``. ``memory`` is the memory decision
    (from the backbone's declared or measured :class:`~nst_core.types.MemoryProfile`). A plan
    binds its terms to targets when it runs: run one plan at a time.
    """

    config: StyleConfig
    requested: StyleConfig
    device: torch.device
    seed: int
    seed_given: bool
    shapes: tuple[tuple[int, int], ...]
    output_size: tuple[int, int]
    memory: MemoryPlan
    model: Model
    terms: tuple[BoundTerm, ...]
    inputs: RunInputs = field(repr=False)
    notes: tuple[str, ...] = ()
    plugins: tuple[Mapping[str, str], ...] = ()
    """Where every name the run uses comes from: ``{"kind", "name", "plugin", "distribution"}``
    per backbone, loss term, layer schedule and preset (``distribution`` is ``"built-in"`` or
    ``"dist-name version"``); run records keep it."""
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


def provenance(config: StyleConfig, registries: Registries, terms: Sequence[BoundTerm],
               preset: str | None = None) -> tuple[dict[str, str], ...]:
    """``{"kind", "name", "plugin", "distribution"}`` for the backbone, every loss term, every
    layer schedule the terms use and the preset (if any): what :attr:`RunPlan.plugins` holds."""
    wanted: list[tuple[str, Registry[Any], str]] = [("backbone", registries.backbones, config.backbone)]
    wanted += [("loss term", registries.loss_terms, t.name) for t in terms]
    specs = {spec.name: spec for spec in config.loss_specs()}
    wanted += [("layer schedule", registries.schedules, specs[t.name].schedule or "uniform")
               for t in terms if t.schedule is not None]
    if preset is not None:
        wanted.append(("preset", registries.presets, preset))
    out: dict[tuple[str, str], dict[str, str]] = {}
    for kind, registry, name in wanted:
        entry = registry.entry(name)
        out[(kind, name)] = {"kind": kind, "name": name, "plugin": entry.plugin, "distribution": entry.distribution}
    return tuple(out.values())


def config_for_preset(preset: str, config: StyleConfig | None, registries: Registries) -> StyleConfig:
    """The config a ``preset=`` argument starts from (``overrides`` then go on top).

    :raises ConfigError: ``config`` given too (say one or the other). :raises UnknownNameError:
        no such preset.
    """
    if config is not None:
        raise ConfigError("give either config= or preset= (a preset is a starting config; change its fields "
                          "with keyword arguments: preset='fast', size=256)")
    return config_from_preset(registries.presets.get(preset))


def plan(content: ImageSource, styles: ImageSource | Sequence[ImageSource], config: StyleConfig | None = None,
         *, registries: Registries | None = None, model: Model | None = None,
         init_image: ImageSource | None = None, style_masks: Sequence[ImageSource | None] | None = None,
         guides: Mapping[str, Tensor] | None = None, preset: str | None = None, **overrides: Any) -> RunPlan:
    """Decide everything about a run of ``content`` with ``styles`` (see :func:`nst_core.stylize`
    for the arguments), read its images and refuse what cannot run, without optimising anything.

    :param model: a :func:`load_model` result to reuse when it serves this config (else a new
        one is built: ``plan.model`` says which).
    :param guides: extra tensors for loss terms, ``{name: (1, C, H, W)}`` float at any size;
        each scale gets them resized to its working size in ``Targets.guides``.
    :param preset: start from this preset's settings (``nst list presets``) instead of
        ``config`` (give one or the other); ``overrides`` change fields on top.
    :raises NSTError: an unknown name or layer, a bad image, a size that cannot fit in memory.
    """
    registries = registries or collect_registries()
    if preset is not None:
        config = config_for_preset(preset, config, registries)
    config = config or StyleConfig()
    if overrides:
        config = config.replace(**overrides)
    device = resolve_device(config.device)
    config = config.replace(precision=resolve_precision(config.precision, device))
    requested = config
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
    sized = plan_sizes(config, height, width, device,  # ResourceError if it cannot fit
                       supports_checkpoint=model.backbone.supports_checkpoint,
                       scale=model.memory_profile.saved_bytes_per_pixel / VGG19_SAVED_BYTES_PER_PIXEL,
                       style_sizes=[(s.shape[-2], s.shape[-1]) for s in inputs.styles],
                       masks=sum(m is not None for m in inputs.masks))
    if sized.config.size != config.size:  # fit_memory lowered it: the record says what ran
        config, requested = sized.config, requested.replace(size=sized.config.size)
    return RunPlan(config=config.replace(seed=seed), requested=requested, device=device, seed=seed,
                   seed_given=config.seed is not None, shapes=sized.shapes, output_size=sized.output_size,
                   memory=sized.memory, model=model, terms=tuple(terms), inputs=inputs,
                   notes=(*inputs.notes, *sized.notes), plugins=provenance(config, registries, terms, preset),
                   steps=sized.steps)
