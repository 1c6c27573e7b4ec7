"""Run configuration: frozen, keyword-only dataclasses validated on construction.

Bad values fail here with the field named, before any weights load or pixels move.
No torch import: front-ends build these cheaply.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
import math
import reprlib
from types import MappingProxyType
from typing import Any, Literal

from nst_core.errors import ConfigError

Optimizer = Literal["lbfgs", "adam"]
Init = Literal["content", "noise", "gray", "image"]
Pooling = Literal["max", "avg"]
ColorMode = Literal["none", "luminance", "histogram"]
Precision = Literal["auto", "float32", "bf16", "fp16"]
OnOOM = Literal["fail", "retry"]

DEFAULT_STYLE_WEIGHT = 1.0
DEFAULT_TV_WEIGHT = 0.0


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict = 3, 60, 60, 6, 6, 6
INTEGER_FIELDS = ("size", "steps", "scales", "min_scale_size", "seed")
"""StyleConfig fields that hold whole numbers: ``3.0`` (TOML, JSON) is accepted and stored as ``3``."""


def _show(value: Any) -> str:
    """``repr(value)``, shortened (at most 3 levels, 6 items, 60 characters a string) for one-line messages."""
    return _REPR.repr(value)


def _check_number(owner: str, name: str, value: Any, *, minimum: float | None = 0.0,
                  strict: bool = False, maximum: float | None = None, integer: bool = False) -> None:
    where = f"{owner}.{name}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where} must be a number, got {_show(value)}")
    if integer and not float(value).is_integer():
        raise ConfigError(f"{where} must be a whole number, got {_show(value)}")
    if not math.isfinite(value):
        raise ConfigError(f"{where} must be finite, got {_show(value)}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        raise ConfigError(f"{where} must be {'>' if strict else '>='} {minimum:g}, got {_show(value)}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{where} must be <= {maximum:g}, got {_show(value)}")


def _check_name(owner: str, name: str, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{owner}.{name} must be a non-empty name, got {_show(value)}")


def _check_layers(owner: str, name: str, value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = (value,)
    layers = tuple(value)
    if not layers or not all(isinstance(layer, str) and layer for layer in layers):
        raise ConfigError(f"{owner}.{name} must be a non-empty list of layer names, got {_show(value)}")
    return layers


def _check_layer_weights(owner: str, value: Any) -> Mapping[str, float] | None:
    if value is None:
        return None
    try:
        weights = dict(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{owner}.layer_weights must map layer names to numbers, got {_show(value)}") from None
    for layer, weight in weights.items():
        _check_number(owner, f"layer_weights[{layer!r}]", weight)
    if not weights or sum(weights.values()) <= 0:
        raise ConfigError(f"{owner}.layer_weights must have at least one positive weight")
    return MappingProxyType(weights)


@dataclass(frozen=True, kw_only=True)
class LossSpec:
    """One term of the objective J(G) = Σ weight · term.

    :param name: registered loss term ("content", "gram", "tv", or a plug-in's name).
    :param weight: the term's factor (α for content, β for style), >= 0.
    :param layers: backbone layers the term reads; ``None``: the backbone's default for the
        term's role (content or style layers).
    :param schedule: layer-weight schedule name for λ[l]; ``None``: "uniform" for content terms,
        the config's ``layer_schedule`` for style terms.
    :param layer_weights: explicit λ[l] per layer (overrides ``schedule``); normalised to sum 1.
    :param params: keyword arguments for the term's factory.
    """

    name: str
    weight: float = 1.0
    layers: tuple[str, ...] | None = None
    schedule: str | None = None
    layer_weights: Mapping[str, float] | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_name("LossSpec", "name", self.name)
        _check_number(f"LossSpec({self.name})", "weight", self.weight)
        object.__setattr__(self, "layers", _check_layers(f"LossSpec({self.name})", "layers", self.layers))
        if self.schedule is not None:
            _check_name(f"LossSpec({self.name})", "schedule", self.schedule)
        object.__setattr__(self, "layer_weights", _check_layer_weights(f"LossSpec({self.name})", self.layer_weights))
        if not isinstance(self.params, Mapping):
            raise ConfigError(f"LossSpec({self.name}).params must be a mapping, got {_show(self.params)}")
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))


@dataclass(frozen=True, kw_only=True)
class StyleConfig:
    """Everything that decides a run. Defaults follow Gatys et al. and the peers' consensus.

    Objective: J(G) = content_weight · J_content + style_weight · Σ_l λ[l] J_style[l]
    (+ tv_weight · TV + Σ extra terms), see :mod:`nst_core.functional` for each term.

    :param size: longest side of the output in pixels.
    :param steps: optimiser steps at each scale (see ``scales``).
    :param scales: number of coarse-to-fine scales; ``None``: as many as fit between
        ``min_scale_size`` and ``size`` with ``scale_factor`` between them.
    :param step_decay: steps of each finer scale relative to the one before it, in (0, 1]: scale
        ``i`` (0 = the coarsest) runs ``max(1, round(steps · step_decay^i))`` steps. 1 (the
        default): every scale runs ``steps``; 0.5: each finer (4× larger) scale runs half as many.
    :param fit_memory: ``True``: when the run does not fit the device's free memory, lower ``size``
        to the largest that fits (with a note) instead of refusing; the result is then smaller
        than asked (see :mod:`nst_core.memory`).
    :param style_scale: the style image's longest side relative to the working size (1.0: same).
    :param style_blend: one weight per style image (normalised to sum 1); ``None``: equal.
    :param layer_schedule: λ[l] schedule of the style term ("inverse-channels" is Gatys' 1/C²).
    :param losses: the full list of terms; ``None``: content + style + tv from the fields above
        plus ``extra_losses``.
    :param seed: random seed; ``None`` picks one, reported in the result.
    :param preserve_color: ``"none"``; ``"luminance"``: transfer on luminance only and keep the
        content's colours (Gatys et al. 2016); ``"histogram"``: recolour the style to the
        content's colour mean and covariance first (see :mod:`nst_core.color`).
    :param precision: ``"float32"``, or ``"bf16"``/``"fp16"``: the backbone runs under autocast,
        Gram matrices, losses and the optimiser stay float32 (see :mod:`nst_core.precision`);
        ``"auto"``: bf16 where the device computes it natively (CUDA with bf16, CPUs with AMX or
        AVX512-BF16), float32 elsewhere. The result's config holds the precision used.
    :param checkpoint: gradient checkpointing of the backbone's first blocks (less memory, about
        10-15% more time per step); ``None``: on only where the run would not fit without it
        (see :mod:`nst_core.memory`, which also refuses sizes that cannot fit at all).
    :param on_oom: what to do when the device runs out of memory mid-run: ``"fail"`` raises a
        one-line :class:`~nst_core.errors.ResourceError`; ``"retry"`` frees memory, switches to the
        next lower-memory mode (gradient checkpointing on, then ``precision="bf16"``) and continues
        the scale from its best image so far, with a note in the result; with no lower mode left it
        raises the same ResourceError.
    """

    backbone: str = "vgg19"
    pooling: Pooling = "max"
    content_layers: tuple[str, ...] | None = None
    style_layers: tuple[str, ...] | None = None
    content_weight: float = 1.0
    style_weight: float = DEFAULT_STYLE_WEIGHT
    tv_weight: float = DEFAULT_TV_WEIGHT
    style_loss: str = "gram"
    layer_schedule: str = "inverse-channels"
    layer_weights: Mapping[str, float] | None = None
    extra_losses: tuple[LossSpec, ...] = ()
    losses: tuple[LossSpec, ...] | None = None
    style_blend: tuple[float, ...] | None = None
    size: int = 512
    style_scale: float = 1.0
    steps: int = 500
    scales: int | None = None
    step_decay: float = 1.0
    fit_memory: bool = False
    scale_factor: float = 2.0
    min_scale_size: int = 256
    optimizer: Optimizer = "lbfgs"
    learning_rate: float | None = None
    init: Init = "content"
    seed: int | None = None
    device: str = "auto"
    preserve_color: ColorMode = "none"
    precision: Precision = "auto"
    checkpoint: bool | None = None
    on_oom: OnOOM = "fail"

    def __post_init__(self) -> None:  # noqa: C901 - one flat check per field, in field order
        own = "StyleConfig"
        _check_name(own, "backbone", self.backbone)
        if self.pooling not in ("max", "avg"):
            raise ConfigError(f"{own}.pooling must be 'max' or 'avg', got {_show(self.pooling)}")
        object.__setattr__(self, "content_layers", _check_layers(own, "content_layers", self.content_layers))
        object.__setattr__(self, "style_layers", _check_layers(own, "style_layers", self.style_layers))
        for name in ("content_weight", "style_weight", "tv_weight"):
            _check_number(own, name, getattr(self, name))
        _check_name(own, "style_loss", self.style_loss)
        _check_name(own, "layer_schedule", self.layer_schedule)
        object.__setattr__(self, "layer_weights", _check_layer_weights(own, self.layer_weights))
        object.__setattr__(self, "extra_losses", tuple(self.extra_losses))
        if self.losses is not None:
            object.__setattr__(self, "losses", tuple(self.losses))
            if not self.losses:
                raise ConfigError(f"{own}.losses must not be empty (use None for the defaults)")
        for spec in (*self.extra_losses, *(self.losses or ())):
            if not isinstance(spec, LossSpec):
                raise ConfigError(f"{own}.losses entries must be LossSpec, got {_show(spec)}")
        if self.style_blend is not None:
            blend = tuple(self.style_blend)
            for i, weight in enumerate(blend):
                _check_number(own, f"style_blend[{i}]", weight)
            if not blend or sum(blend) <= 0:
                raise ConfigError(f"{own}.style_blend needs at least one positive weight, got {_show(blend)}")
            object.__setattr__(self, "style_blend", blend)
        _check_number(own, "size", self.size, minimum=16, maximum=65536, integer=True)
        _check_number(own, "style_scale", self.style_scale, minimum=0.05, maximum=8.0)
        _check_number(own, "steps", self.steps, minimum=1, maximum=1_000_000, integer=True)
        if self.scales is not None:
            _check_number(own, "scales", self.scales, minimum=1, maximum=16, integer=True)
        _check_number(own, "step_decay", self.step_decay, minimum=0.0, strict=True, maximum=1.0)
        if not isinstance(self.fit_memory, bool):
            raise ConfigError(f"{own}.fit_memory must be True or False, got {self.fit_memory!r}")
        _check_number(own, "scale_factor", self.scale_factor, minimum=1.0, strict=True, maximum=4.0)
        _check_number(own, "min_scale_size", self.min_scale_size, minimum=16, integer=True)
        if self.optimizer not in ("lbfgs", "adam"):
            raise ConfigError(f"{own}.optimizer must be 'lbfgs' or 'adam', got {_show(self.optimizer)}")
        if self.learning_rate is not None:
            _check_number(own, "learning_rate", self.learning_rate, minimum=0.0, strict=True, maximum=1e6)
        if self.init not in ("content", "noise", "gray", "image"):
            raise ConfigError(f"{own}.init must be content, noise, gray or image, got {_show(self.init)}")
        if self.seed is not None:
            _check_number(own, "seed", self.seed, minimum=0, maximum=2**63 - 1, integer=True)
        _check_name(own, "device", self.device)
        if self.preserve_color not in ("none", "luminance", "histogram"):
            raise ConfigError(f"{own}.preserve_color must be none, luminance or histogram, "
                              f"got {_show(self.preserve_color)}")
        if self.precision not in ("auto", "float32", "bf16", "fp16"):
            raise ConfigError(f"{own}.precision must be auto, float32, bf16 or fp16, got {_show(self.precision)}")
        if self.checkpoint is not None and not isinstance(self.checkpoint, bool):
            raise ConfigError(f"{own}.checkpoint must be True, False or None (automatic), got {_show(self.checkpoint)}")
        if self.on_oom not in ("fail", "retry"):
            raise ConfigError(f"{own}.on_oom must be 'fail' or 'retry', got {_show(self.on_oom)}")
        for name in INTEGER_FIELDS:  # validated as whole numbers above; 3.0 from TOML or JSON becomes 3
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, int(value))

    def loss_specs(self) -> tuple[LossSpec, ...]:
        """The terms of J(G): ``losses`` if given, else content + style (+ tv) + ``extra_losses``."""
        if self.losses is not None:
            return self.losses
        specs = [
            LossSpec(name="content", weight=self.content_weight, layers=self.content_layers),
            LossSpec(name=self.style_loss, weight=self.style_weight, layers=self.style_layers,
                     schedule=self.layer_schedule, layer_weights=self.layer_weights),
        ]
        if self.tv_weight > 0:
            specs.append(LossSpec(name="tv", weight=self.tv_weight))
        return (*specs, *self.extra_losses)

    def replace(self, **changes: Any) -> StyleConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)


def config_from_preset(settings: Mapping[str, Any], **overrides: Any) -> StyleConfig:
    """A :class:`StyleConfig` from a preset's ``settings`` with ``overrides`` (user options) on top."""
    fields = set(StyleConfig.__dataclass_fields__)
    unknown = sorted(set(settings) - fields)
    if unknown:
        raise ConfigError(f"preset sets unknown setting(s) {', '.join(unknown)}")
    return StyleConfig(**{**dict(settings), **overrides})


def style_weight_for_strength(strength: float, base: float = DEFAULT_STYLE_WEIGHT) -> float:
    """The style weight β for a one-slider content↔style ``strength`` in [0, 1] (the CLI's
    ``--strength``, the GIMP dialog's slider / 100).

    The look follows the logarithm of β, so the slider is logarithmic: 0.5 keeps ``base`` and
    every 0.25 is a factor of 10, i.e. ``β = base · 10 ** (4 · (strength − 0.5))``::

        strength   0           0.25       0.5    0.75       1
        β          base / 100  base / 10  base   10 · base  100 · base
    """
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0.0 <= strength <= 1.0:
        raise ConfigError(f"strength must be a number from 0 to 1, got {_show(strength)}")
    _check_number("strength", "base", base)
    return base * 10.0 ** (4.0 * (strength - 0.5))


def _plain(value: Any) -> Any:
    """JSON-safe copy: mappings -> dicts, tuples -> lists, LossSpec -> dicts."""
    if isinstance(value, LossSpec):
        return {name: _plain(getattr(value, name)) for name in LossSpec.__dataclass_fields__}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def config_to_dict(config: StyleConfig) -> dict[str, Any]:
    """Every field of ``config`` as JSON-safe values; :func:`config_from_dict` inverts it."""
    return {name: _plain(getattr(config, name)) for name in StyleConfig.__dataclass_fields__}


def config_from_dict(data: Mapping[str, Any]) -> StyleConfig:
    """A :class:`StyleConfig` from :func:`config_to_dict`'s output (e.g. a run record).

    Unknown keys are refused (a record from a newer version says so instead of being misread).
    """
    fields = StyleConfig.__dataclass_fields__
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)} (from a newer nst-core?)")
    values = dict(data)
    for name in ("extra_losses", "losses"):
        if values.get(name) is not None:
            values[name] = tuple(LossSpec(**{**spec, "layers": tuple(spec["layers"]) if spec.get("layers") else None})
                                 for spec in values[name])
    for name in ("content_layers", "style_layers", "style_blend"):
        if values.get(name) is not None:
            values[name] = tuple(values[name])
    return StyleConfig(**values)
