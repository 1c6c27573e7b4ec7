"""The boundary between the engine and plug-in code: every call into a plug-in and every value a
plug-in hands back goes through here.

A call that raises becomes a one-line :class:`~nst_core.errors.PluginError` naming the plug-in,
its distribution and what it was doing (its own traceback stays on the exception's
``__cause__`` for ``nst --debug``); a value that breaks the contract of :mod:`nst_core.types`
becomes one naming what was wrong. The checks look only at tensor metadata (shape, dtype,
device, ``requires_grad``) and Python numbers, so they cost no device synchronization.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
import math
from typing import Any, TypeVar

import torch
from torch import Tensor

from nst_core.errors import NSTError, PluginError
from nst_core.oom import OutOfMemory, is_out_of_memory
from nst_core.registry import Entry
from nst_core.types import Backbone, FeatureMaps, MemoryProfile

T = TypeVar("T")


def one_line(exc: BaseException) -> str:
    """``"TypeName: message"`` on one line, for messages that quote a plug-in's exception."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def plugin_label(entry: Entry) -> str:
    """``plug-in 'name' (distribution version)`` for messages that blame a plug-in."""
    return f"plug-in {entry.plugin!r} ({entry.distribution})"


def call_plugin(what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``; anything but an :class:`NSTError` or running out of memory it
    raises becomes ``PluginError(f"{what} raised TypeName: message")`` with the original as its
    cause. ``what`` names the culprit: ``"loss term 'x' from plug-in 'p' (dist 1.0)"``."""
    try:
        return fn(*args, **kwargs)
    except (NSTError, OutOfMemory):
        raise
    except Exception as exc:
        if is_out_of_memory(exc):  # the CPU allocator's RuntimeError
            raise
        raise PluginError(f"{what} raised {one_line(exc)}") from exc


def _shape(t: Tensor) -> str:
    return str(tuple(t.shape))


def check_loss_value(what: str, value: object, image: Tensor) -> Tensor:
    """A loss term's value, checked: a 0-d floating :class:`Tensor` on ``image``'s device that is
    on the autograd graph when gradients are being computed (``image.requires_grad`` and grad
    mode on). Finiteness is checked by the engine with the other values of the step (one host
    synchronization for all of them), which then names the term.

    :raises PluginError: naming ``what`` and what was wrong, with a hint.
    """
    if not isinstance(value, Tensor):
        raise PluginError(f"{what} returned {type(value).__name__} {value!r:.60}; a loss must return a 0-d torch "
                          f"tensor computed from the image or its features (so that it has a gradient)")
    if value.dim() != 0:
        raise PluginError(f"{what} returned a tensor of shape {_shape(value)}; a loss must return a 0-d tensor "
                          f"(reduce it with .sum() or .mean())")
    if not value.is_floating_point():
        raise PluginError(f"{what} returned a {value.dtype} tensor; a loss must be floating point")
    if value.device != image.device:
        raise PluginError(f"{what} returned a tensor on {value.device}, the run is on {image.device}; create "
                          f"tensors on the targets' device in bind()")
    if image.requires_grad and torch.is_grad_enabled() and not value.requires_grad:
        raise PluginError(f"{what} returned a tensor that does not depend on the image (no autograd graph: "
                          f"detached, computed under torch.no_grad(), or from the targets only), so it cannot "
                          f"steer the result; compute it from the image or features it is given")
    return value


def check_features(what: str, features: object, layers: Collection[str], channels: Mapping[str, int],
                   image: Tensor) -> FeatureMaps:
    """A backbone's ``forward`` result, checked: a mapping with a ``(N, C, h, w)`` floating
    tensor for every one of ``layers``, ``N`` as the input's, ``C`` as the backbone declares in
    ``channels``. Layers beyond those asked for are passed through.

    :raises PluginError: naming ``what`` (the backbone and its plug-in) and the layer.
    """
    if not isinstance(features, Mapping):
        raise PluginError(f"{what} returned {type(features).__name__} from forward(); expected a dict "
                          f"{{layer name: (N, C, h, w) tensor}}")
    for layer in layers:
        f = features.get(layer)
        if f is None:
            raise PluginError(f"{what} returned no feature map for the requested layer {layer!r} (it returned "
                              f"{', '.join(map(repr, features)) or 'none'})")
        if not isinstance(f, Tensor) or f.dim() != 4 or not f.is_floating_point():
            got = f"a tensor of shape {_shape(f)} ({f.dtype})" if isinstance(f, Tensor) else type(f).__name__
            raise PluginError(f"{what} returned {got} for layer {layer!r}; expected a floating (N, C, h, w) tensor")
        if f.shape[0] != image.shape[0] or f.shape[1] != channels.get(layer):
            raise PluginError(f"{what} returned shape {_shape(f)} for layer {layer!r} but declares "
                              f"{channels.get(layer)} channels for it (input batch {image.shape[0]}); fix its "
                              f"forward() or its channels")
    return dict(features)


def check_layer_weights(what: str, weights: object, layers: Sequence[str]) -> dict[str, float]:
    """A layer schedule's result, checked: a finite number >= 0 for every one of ``layers`` and
    no other key.

    :raises PluginError: naming ``what`` (the schedule, its plug-in and the term it weights).
    """
    if not isinstance(weights, Mapping):
        raise PluginError(f"{what} returned {type(weights).__name__}; expected a dict {{layer: weight}}")
    missing = [layer for layer in layers if layer not in weights]
    extra = [layer for layer in weights if layer not in layers]
    if missing or extra:
        wrong = ([f"no weight for {', '.join(map(repr, missing))}"] if missing else []) + \
                ([f"weights for layers not asked for: {', '.join(map(repr, extra))}"] if extra else [])
        raise PluginError(f"{what} returned {'; '.join(wrong)}; it must return one weight per requested layer")
    checked = {}
    for layer in layers:
        value = weights[layer]
        if isinstance(value, Tensor) and value.numel() == 1:
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise PluginError(f"{what} returned {value!r} for layer {layer!r}; a layer weight must be a finite "
                              f"number >= 0")
        checked[layer] = float(value)
    return checked


def check_backbone(what: str, backbone: object, truncated_to: Collection[str] | None = None) -> Backbone:
    """A backbone factory's result (or, with ``truncated_to``, what ``truncated(truncated_to)``
    returned), checked against the declared contract of :class:`Backbone`.

    :raises PluginError: naming ``what`` and the attribute that is wrong.
    """
    if not isinstance(backbone, Backbone):
        raise PluginError(f"{what}'s factory returned {type(backbone).__name__}; it must return an instance of "
                          f"nst_core.Backbone (an nn.Module subclass)")
    names = backbone.layer_names
    if not isinstance(names, (tuple, list)) or not names or not all(isinstance(n, str) and n for n in names):
        raise PluginError(f"{what} declares layer_names {names!r:.80}; expected a non-empty tuple of layer names")
    channels = backbone.channels
    if not isinstance(channels, Mapping):
        raise PluginError(f"{what} declares channels of type {type(channels).__name__}; expected a dict "
                          f"{{layer: channels}}")
    for name in names:
        c = channels.get(name)
        if isinstance(c, bool) or not isinstance(c, int) or c < 1:
            raise PluginError(f"{what} declares channels {c!r} for layer {name!r}; every layer needs a whole "
                              f"number of channels >= 1")
    for layer in truncated_to or ():
        if layer not in names:
            raise PluginError(f"{what}: truncated() dropped the requested layer {layer!r}; it must keep every "
                              f"layer up to the deepest one asked for")
    for field in () if truncated_to is not None else ("default_content_layers", "default_style_layers"):
        value = getattr(backbone, field)
        if not isinstance(value, (tuple, list)) or not value or any(layer not in names for layer in value):
            raise PluginError(f"{what} declares {field} {value!r:.80}; expected a non-empty tuple of its "
                              f"layer_names")
    if backbone.memory_profile is not None and not isinstance(backbone.memory_profile, MemoryProfile):
        raise PluginError(f"{what} declares memory_profile {backbone.memory_profile!r:.60}; expected a "
                          f"nst_core.MemoryProfile or None")
    _check_weight_scales(what, backbone.weight_scales)
    return backbone


def _check_weight_scales(what: str, scales: object) -> None:
    """A backbone's declared ``weight_scales``: ``{role: finite factor > 0}``."""
    if not isinstance(scales, Mapping) or any(role not in ("content", "style", "image") for role in scales):
        raise PluginError(f"{what} declares weight_scales {scales!r:.80}; expected a dict {{role: factor}} with "
                          f"roles 'content', 'style', 'image'")
    for role, value in scales.items():
        check_weight_scale(f"{what} (weight_scales[{role!r}])", value)


def check_weight_scale(what: str, value: object) -> float:
    """A declared weight factor (:attr:`LossTerm.weight_scale`, a value of
    :attr:`Backbone.weight_scales`), checked: a finite number > 0.

    :raises PluginError: naming ``what``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise PluginError(f"{what} declares a weight scale of {value!r:.60}; it must be a finite number > 0 "
                          f"(1.0: as strong as the Gram loss on vgg19)")
    return float(value)


def measure_memory_profile(backbone: Backbone, layers: Collection[str], device: torch.device | str = "cpu",
                           sizes: tuple[int, int] = (64, 128),
                           forward: Callable[[Tensor, list[str]], object] | None = None) -> MemoryProfile:
    """Measure what ``backbone``'s backward pass keeps per input pixel at ``layers``.

    Runs ``forward`` on a random float32 ``(1, 3, s, s)`` image that requires grad at the two
    ``sizes`` and counts the bytes of the tensors autograd saves (``saved_tensors_hooks``; one
    count per storage, parameters excluded); the slope between the two sizes is
    ``saved_bytes_per_pixel``. About as costly as one optimization step at 128 px.

    :param forward: called instead of ``backbone(image, layers)`` (the engine checks the result).
    """
    forward = forward or backbone
    device = torch.device(device)
    with torch.enable_grad():  # once first: a backbone may re-lay its weights on its first call
        forward(torch.rand(1, 3, sizes[0], sizes[0], device=device, requires_grad=True), list(layers))
    params = {p.untyped_storage().data_ptr() for p in backbone.parameters()}
    params |= {b.untyped_storage().data_ptr() for b in backbone.buffers()}
    totals = []
    for side in sizes:
        seen: dict[tuple[int, int], int] = {}

        def pack(t: Tensor, seen: dict[tuple[int, int], int] = seen) -> Tensor:
            storage = t.untyped_storage()
            if storage.data_ptr() not in params:
                seen[(storage.data_ptr(), storage.nbytes())] = storage.nbytes()
            return t

        image = torch.rand(1, 3, side, side, device=device, requires_grad=True)
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            forward(image, list(layers))
        totals.append(sum(seen.values()))
    pixels = [s * s for s in sizes]
    slope = (totals[1] - totals[0]) / (pixels[1] - pixels[0])
    return MemoryProfile(max(slope, totals[1] / pixels[1] * 0.5, 1.0))
