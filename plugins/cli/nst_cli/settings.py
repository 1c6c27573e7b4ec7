"""The settings of ``nst run``: one table shared by its options and ``--config`` files.

Precedence, lowest first: StyleConfig's defaults (or, with ``--from-record``, the recorded run),
the preset (``--preset`` or ``preset = ...`` in the file), the config file, the command line. Only
what is given at each level overrides. ``--strength`` then multiplies the style weight that won
(:func:`nst_core.config.style_weight_for_strength`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nst_core import Registries, StyleConfig
from nst_core.config import config_from_preset, style_weight_for_strength
from nst_core.errors import ConfigError, UnknownNameError

from nst_cli import options
from nst_cli.config_file import read_config_file
from nst_cli.record import RunRecord


@dataclass(frozen=True)
class Setting:
    """One ``nst run`` option: ``--key`` on the command line and ``key`` in a config file.

    ``field`` is the :class:`StyleConfig` field it sets, or one of the run's own settings
    (``preset``, ``save_every``, ``checkpoint_every``, ``style_masks``, ``strength``, ``record``);
    ``parse`` turns the raw value into the field's value.
    """

    key: str
    field: str
    parse: Callable[[Any, str], Any] = options.same

    @property
    def param(self) -> str:
        """The Python parameter name typer gives the option (``content_weight``)."""
        return self.key.replace("-", "_")


SETTINGS = (
    Setting("preset", "preset"),
    Setting("size", "size"),
    Setting("steps", "steps"),
    Setting("optimizer", "optimizer"),
    Setting("lr", "learning_rate"),
    Setting("content-weight", "content_weight"),
    Setting("style-weight", "style_weight"),
    Setting("style-blend", "style_blend", options.numbers),
    Setting("tv-weight", "tv_weight"),
    Setting("backbone", "backbone"),
    Setting("pooling", "pooling"),
    Setting("content-layers", "content_layers", options.names),
    Setting("style-layers", "style_layers", options.names),
    Setting("layer-schedule", "layer_schedule"),
    Setting("layer-weights", "layer_weights", options.layer_weights),
    Setting("style-loss", "style_loss"),
    Setting("loss", "extra_losses", options.loss_specs),
    Setting("init", "init", options.init),
    Setting("seed", "seed"),
    Setting("device", "device"),
    Setting("scales", "scales"),
    Setting("step-decay", "step_decay"),
    Setting("fit-memory", "fit_memory", options.flag),
    Setting("scale-factor", "scale_factor"),
    Setting("min-scale-size", "min_scale_size"),
    Setting("style-scale", "style_scale"),
    Setting("preserve-color", "preserve_color"),
    Setting("mask", "style_masks", options.masks),
    Setting("precision", "precision"),
    Setting("on-oom", "on_oom"),
    Setting("strength", "strength", options.unit_interval),
    Setting("save-every", "save_every", lambda value, where: options.whole_number(value, where)),
    Setting("checkpoint-every", "checkpoint_every", lambda value, where: options.whole_number(value, where)),
    Setting("record", "record", options.flag),
)
RUN_FIELDS = ("preset", "save_every", "checkpoint_every", "style_masks", "strength", "record")
"""Settings of the run itself, not StyleConfig fields."""
BY_KEY = {setting.key: setting for setting in SETTINGS}


@dataclass(frozen=True)
class RunSettings:
    """What ``nst run`` does, besides its input and output paths."""

    config: StyleConfig
    init_image: Path | None
    save_every: int | None
    preset: str | None
    masks: tuple[Path | None, ...] | None = None
    """One per style image (None: the whole image), or None when no --mask was given."""
    strength: float | None = None
    base_style_weight: float | None = None
    """The style weight before ``strength`` multiplied it (the run record keeps both)."""
    record: bool = True
    checkpoint_every: int | None = None
    """Write the resume file ``OUT.resume.pt`` every N steps (``--checkpoint-every``)."""


def _given(value: Any) -> bool:
    return value is not None and value != () and value != []


def parse_values(values: Mapping[str, Any], where: Callable[[str], str]) -> dict[str, Any]:
    """``{key: raw}`` -> ``{field: value}`` for the values that were given."""
    return {BY_KEY[key].field: BY_KEY[key].parse(value, where(key)) for key, value in values.items() if _given(value)}


def file_values(path: Path) -> dict[str, Any]:
    """The settings of a ``--config`` file, by field; unknown keys fail with did-you-mean."""
    raw = read_config_file(path)
    for key in raw:
        if key not in BY_KEY:
            raise UnknownNameError(f"key in {path}", key, BY_KEY)
    return parse_values(raw, lambda key: f"{path}: {key}")


def _record_base(record: RunRecord) -> tuple[dict[str, Any], dict[str, Any]]:
    """The lowest level from a run record: its StyleConfig fields (the style weight before any
    recorded strength) and its run settings (strength)."""
    fields = {name: getattr(record.config, name) for name in StyleConfig.__dataclass_fields__}
    run: dict[str, Any] = {}
    if record.strength is not None and record.base_style_weight is not None:
        fields["style_weight"] = record.base_style_weight
        run["strength"] = record.strength
    return fields, run


DOWNLOADING_BACKBONES = {"vgg19-torchvision": ("vgg19", "548 MB"), "vgg16-torchvision": ("vgg16", "528 MB")}
"""Built-in backbones whose weights are downloaded on first use: their torchvision name and size."""


def _refuse_recorded_download(record: RunRecord, backbone: str) -> None:
    """A replayed record never starts a download by itself: when the backbone it names (and the
    command line, config file and preset leave) would fetch its weights, ask for ``--backbone``."""
    if backbone not in DOWNLOADING_BACKBONES:
        return
    from nst_core.builtins.vgg import torchvision_checkpoint

    arch, size = DOWNLOADING_BACKBONES[backbone]
    try:
        present = torchvision_checkpoint(arch).is_file()
    except Exception:  # noqa: BLE001 - no torchvision: the backbone's own error says so later
        return
    if not present:
        raise ConfigError(f"{record.path}: the recorded run used backbone {backbone!r}, whose weights ({size}) are "
                          f"not on this machine; give --backbone {backbone} to download them, or --backbone vgg19 "
                          f"for the shipped one")


def resolve(command_line: Mapping[str, Any], config_file: Path | None, registries: Registries,
            record: RunRecord | None = None) -> RunSettings:
    """Merge record, preset, config file and command line (``{key: raw or None}``) into
    :class:`RunSettings`; then ``strength`` scales the style weight."""
    merged = file_values(config_file) if config_file is not None else {}
    merged.update(parse_values(command_line, lambda key: f"--{key}"))
    base, run = _record_base(record) if record is not None else ({}, {})
    run.update({name: merged.pop(name) for name in RUN_FIELDS if name in merged})
    preset = run.get("preset")
    init_image = None
    if merged.get("init") not in (None, *options.INIT_KEYWORDS):
        init_image = Path(merged["init"])
        merged["init"] = "image"
    elif "init" not in merged and record is not None and record.config.init == "image":
        init_image = record.init
    preset_settings = registries.presets.get(preset) if preset is not None else {}
    base.update(preset_settings)
    if record is not None and "backbone" not in merged and "backbone" not in preset_settings:
        _refuse_recorded_download(record, record.config.backbone)  # the backbone comes from the record alone
    config = config_from_preset(base, **merged)
    strength = run.get("strength")
    base_style_weight = config.style_weight
    if strength is not None:
        config = config.replace(style_weight=style_weight_for_strength(strength, base_style_weight))
    masks = run.get("style_masks")
    return RunSettings(config, init_image, run.get("save_every"), preset,
                       masks=None if masks is None else tuple(None if m is None else Path(m) for m in masks),
                       strength=strength, base_style_weight=base_style_weight, record=run.get("record", True),
                       checkpoint_every=run.get("checkpoint_every"))
