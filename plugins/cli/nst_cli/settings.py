"""The settings of ``nst run``: one table shared by its options and ``--config`` files.

Precedence, lowest first: StyleConfig's defaults, the preset (``--preset`` or ``preset = ...`` in
the file), the config file, the command line. Only what is given at each level overrides.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nst_core import Registries, StyleConfig
from nst_core.config import config_from_preset
from nst_core.errors import UnknownNameError

from nst_cli import options
from nst_cli.config_file import read_config_file


@dataclass(frozen=True)
class Setting:
    """One ``nst run`` option: ``--key`` on the command line and ``key`` in a config file.

    ``field`` is the :class:`StyleConfig` field it sets, or one of the run's own settings
    (``preset``, ``init``, ``save_every``); ``parse`` turns the raw value into the field's value.
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
    Setting("scale-factor", "scale_factor"),
    Setting("min-scale-size", "min_scale_size"),
    Setting("style-scale", "style_scale"),
    Setting("save-every", "save_every", lambda value, where: options.whole_number(value, where)),
)
BY_KEY = {setting.key: setting for setting in SETTINGS}


@dataclass(frozen=True)
class RunSettings:
    """What ``nst run`` does, besides its input and output paths."""

    config: StyleConfig
    init_image: Path | None
    save_every: int | None
    preset: str | None


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


def resolve(command_line: Mapping[str, Any], config_file: Path | None, registries: Registries) -> RunSettings:
    """Merge preset, config file and command line (``{key: raw or None}``) into :class:`RunSettings`."""
    merged = file_values(config_file) if config_file is not None else {}
    merged.update(parse_values(command_line, lambda key: f"--{key}"))
    preset = merged.pop("preset", None)
    save_every = merged.pop("save_every", None)
    init_image = None
    if merged.get("init") not in (None, *options.INIT_KEYWORDS):
        init_image = Path(merged["init"])
        merged["init"] = "image"
    base = registries.presets.get(preset) if preset is not None else {}
    return RunSettings(config_from_preset(base, **merged), init_image, save_every, preset)
