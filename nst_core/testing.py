"""Test helpers for plug-in authors: run every name a plug-in registers through the real engine.

In a plug-in package's tests::

    from nst_core.testing import check_plugin
    import my_package.plugin

    def test_my_plugin():
        report = check_plugin(my_package.plugin)
        assert report.names["loss term"] == ["my-loss"]

:func:`check_plugin` registers the plug-in in code (third-party autoload off, so only the
built-ins and this plug-in are present), fails on any registration problem, then for every name
it registered runs what a user would: a short run with each loss term (as the style loss for a
"style" term, else added to the defaults), each layer schedule, each backbone (its declared or
measured memory profile too) and a plan with each preset. Every contract check of the engine
applies (nst_core.contract), so a broken plug-in fails here with the same one-line
:class:`~nst_core.errors.NSTError` its users would see. Images are synthetic (no files), 48 px,
2 steps on the CPU: seconds per name with a small backbone; the default VGG19 loads once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
import warnings

import torch

from nst_core.config import LossSpec, StyleConfig
from nst_core.contract import measure_memory_profile
from nst_core.errors import PluginWarning
from nst_core.plugins import get_plugin_manager
from nst_core.registry import Registries, collect_registries
from nst_core.types import MemoryProfile

__all__ = ["PluginReport", "check_plugin", "measure_memory_profile", "plugin_registries", "sample_images"]

KINDS = ("backbone", "loss term", "layer schedule", "preset")


@dataclass
class PluginReport:
    """What :func:`check_plugin` found: the names per kind (``"backbone"``, ``"loss term"``,
    ``"layer schedule"``, ``"preset"``), each run's final loss and each backbone's memory profile."""

    names: dict[str, list[str]] = field(default_factory=lambda: {kind: [] for kind in KINDS})
    losses: dict[str, float] = field(default_factory=dict)
    memory_profiles: dict[str, MemoryProfile] = field(default_factory=dict)


def sample_images(size: int = 48, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A smooth synthetic "photo" and a striped "painting", ``(1, 3, size, size)`` in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    content = torch.stack([x, y, 1 - x * y]).unsqueeze(0)
    stripes = (torch.sin(x * 20 + y * 7) * 0.5 + 0.5)
    style = torch.stack([stripes, 1 - stripes, stripes * 0.5]).unsqueeze(0)
    style = (style + 0.05 * torch.randn(style.shape, generator=g)).clamp(0, 1)
    return content.contiguous(), style.contiguous()


def plugin_registries(*plugins: object) -> Registries:
    """Registries of the built-ins and ``plugins`` (modules or objects with ``@hookimpl``
    functions), third-party autoload off; raises AssertionError listing any registration problem."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginWarning)
        regs = collect_registries(get_plugin_manager(autoload=False, extra=plugins))
    if regs.problems:
        raise AssertionError("plug-in problems: " + " | ".join(regs.problems))
    return regs


def _own(registry: Iterable, builtins: set[str]) -> list[str]:
    return [entry.name for entry in registry if entry.name not in builtins]


def check_plugin(plugin: object, *, size: int = 48, steps: int = 2, device: str = "cpu") -> PluginReport:
    """Register ``plugin`` and run each name it provides (see the module docstring).

    :param plugin: the module (or object) your entry point names.
    :raises AssertionError: a registration problem, or a run that did not finish.
    :raises nst_core.errors.NSTError: a contract violation, named as users would see it.
    """
    import nst_core

    baseline = plugin_registries()
    regs = plugin_registries(plugin)
    report = PluginReport()
    pairs = (("backbone", regs.backbones, baseline.backbones), ("loss term", regs.loss_terms, baseline.loss_terms),
             ("layer schedule", regs.schedules, baseline.schedules), ("preset", regs.presets, baseline.presets))
    for kind, registry, base in pairs:
        report.names[kind] = _own(registry, set(base.names()))
    content, style = sample_images(size)
    common: dict[str, Any] = {"size": size, "steps": steps, "device": device, "seed": 0, "precision": "float32"}

    def finish(label: str, config: StyleConfig) -> None:
        result = nst_core.stylize(content, style, config, registries=regs)
        if result.status != "finished" or result.steps != result.total_steps:
            raise AssertionError(f"{label}: the run ended {result.status!r}: {result.message}")
        report.losses[label] = result.loss

    for name in report.names["backbone"]:
        model = nst_core.load_model(StyleConfig(backbone=name, **common), registries=regs)
        profile = model.backbone.memory_profile or measure_memory_profile(model.backbone, model.layers, device)
        report.memory_profiles[name] = profile
        finish(f"backbone {name}", StyleConfig(backbone=name, **common))
    for name in report.names["loss term"]:
        term = regs.loss_terms.get(name)
        if getattr(term, "role", None) == "style":
            finish(f"loss term {name}", StyleConfig(style_loss=name, **common))
        else:
            finish(f"loss term {name}", StyleConfig(extra_losses=(LossSpec(name=name),), **common))
    for name in report.names["layer schedule"]:
        finish(f"layer schedule {name}", StyleConfig(layer_schedule=name, **common))
    for name in report.names["preset"]:
        nst_core.plan(content, style, registries=regs, preset=name, **common)
    return report
