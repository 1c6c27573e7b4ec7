"""The value syntaxes of ``nst run`` options, shared by the command line and ``--config`` files.

Each parser takes the raw value (a string from the command line, or a TOML value: string,
number, list, table) and ``where`` (``"--style-layers"`` or ``"run.toml: style-layers"``) and
returns what :class:`nst_core.StyleConfig` expects, raising :class:`ConfigError` naming ``where``.
Range checks stay in StyleConfig, which names the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nst_core import LossSpec
from nst_core.errors import ConfigError

INIT_KEYWORDS = ("content", "noise", "gray")
"""``--init`` values that are not file paths."""

MASK_NONE = "none"
"""The ``--mask`` value for "this style applies to the whole image"."""


def same(value: Any, where: str) -> Any:
    """Numbers and names pass through; StyleConfig checks them."""
    return value


def _items(value: Any, where: str) -> list[str]:
    """``"a,b"`` or ``["a", "b"]`` (or a repeated option's tuple) -> ``["a", "b"]``."""
    if isinstance(value, str):
        parts = value.split(",")
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        raise ConfigError(f"{where}: expected a comma-separated list, got {value!r}")
    items = [str(part).strip() for part in parts]
    if not all(items):
        raise ConfigError(f"{where}: empty item in {value!r}")
    return items


def names(value: Any, where: str) -> tuple[str, ...]:
    """Comma-separated names: ``relu1_1,relu2_1``."""
    return tuple(_items(value, where))


def number(text: Any, where: str) -> float:
    """A float from a string or a TOML number."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    try:
        return float(str(text))
    except ValueError:
        raise ConfigError(f"{where}: {text!r} is not a number") from None


def numbers(value: Any, where: str) -> tuple[float, ...]:
    """Comma-separated numbers: ``0.7,0.3``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (float(value),)
    return tuple(number(item, where) for item in _items(value, where))


def whole_number(value: Any, where: str, *, minimum: int = 1) -> int:
    """An int >= ``minimum`` (``--save-every``, which is not a StyleConfig field)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where} must be a whole number >= {minimum}, got {value!r}")
    return value


def layer_weights(value: Any, where: str) -> dict[str, float]:
    """``relu1_1=0.5,relu2_1=0.25`` (or a TOML table) -> ``{"relu1_1": 0.5, "relu2_1": 0.25}``."""
    if isinstance(value, Mapping):
        return {str(layer): number(weight, f"{where} {layer}") for layer, weight in value.items()}
    weights = {}
    for item in _items(value, where):
        layer, sep, weight = item.partition("=")
        if not sep or not layer.strip():
            raise ConfigError(f"{where}: expected LAYER=WEIGHT, got {item!r}")
        weights[layer.strip()] = number(weight, f"{where} {layer.strip()}")
    return weights


def scalar(text: str) -> bool | int | float | str:
    """A loss-term parameter value: ``true``/``false``, an int, a float, else the string."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


LOSS_TABLE_KEYS = ("name", "weight", "layers", "schedule", "layer_weights", "params")
"""Keys of a ``[[loss]]`` table in a config file: the fields of :class:`LossSpec`."""


def loss_table(table: Mapping[str, Any], where: str) -> LossSpec:
    """A config file's ``[[loss]]`` table -> a :class:`LossSpec`, so that a term can have its own
    layers, schedule or layer weights: ``name = "mrf"``, ``weight = 0.5``,
    ``layers = ["relu3_1"]``, ``schedule = "uniform"``, ``params = {patch_size = 5}``."""
    unknown = [key for key in table if key not in LOSS_TABLE_KEYS]
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))} in a loss table; use "
                          f"{', '.join(LOSS_TABLE_KEYS)}")
    values = dict(table)
    if "name" not in values:
        raise ConfigError(f"{where}: a loss table needs a name")
    if "weight" in values:
        values["weight"] = number(values["weight"], f"{where} {values['name']} weight")
    if "layers" in values:
        values["layers"] = names(values["layers"], f"{where} {values['name']} layers")
    if "layer_weights" in values:
        values["layer_weights"] = layer_weights(values["layer_weights"], f"{where} {values['name']} layer_weights")
    if not isinstance(values.get("params", {}), Mapping):
        raise ConfigError(f"{where}: params of loss {values['name']!r} must be a table, got {values['params']!r}")
    return LossSpec(**values)


LOSS_SPEC_KEYS = ("layers", "schedule")
"""Keys of ``--loss NAME:W,key=value`` that set the term's :class:`LossSpec` fields instead of its
parameters: ``layers=relu3_1+relu4_1`` (``+`` between layers, as ``,`` separates the items) and
``schedule=uniform``."""


def loss_spec(text: Any, where: str) -> LossSpec:
    """``NAME[:WEIGHT][,key=value...]`` -> a :class:`LossSpec` (e.g. ``tv:1e-3,exponent=1``); in a
    config file also a ``[[loss]]`` table (:func:`loss_table`). The keys ``layers`` (``+``-joined
    layer names) and ``schedule`` set the term's own layers and layer-weight schedule
    (``mrf:0.5,layers=relu3_1+relu4_1,schedule=uniform,patch_size=5``); the rest are its parameters."""
    if isinstance(text, Mapping):
        return loss_table(text, where)
    if not isinstance(text, str):
        raise ConfigError(f"{where}: expected NAME[:WEIGHT][,key=value...], got {text!r}")
    head, *params = _items(text, where)
    name, sep, weight = head.partition(":")
    if not name.strip():
        raise ConfigError(f"{where}: the loss term needs a name (NAME[:WEIGHT][,key=value...]), got {text!r}")
    kwargs: dict[str, Any] = {}
    fields: dict[str, Any] = {}
    for item in params:
        key, eq, raw = item.partition("=")
        key, raw = key.strip(), raw.strip()
        if not eq or not key:
            raise ConfigError(f"{where}: expected key=value after the loss name, got {item!r} in {text!r}")
        if key in fields or key in kwargs:
            raise ConfigError(f"{where}: {key} given twice in {text!r}")
        if key == "layers":
            fields["layers"] = names(raw.split("+"), f"{where} {name.strip()} layers (join them with +)")
        elif key == "schedule":
            fields["schedule"] = raw
        else:
            kwargs[key] = scalar(raw)
    return LossSpec(name=name.strip(), weight=number(weight, where) if sep else 1.0, params=kwargs, **fields)


def loss_specs(value: Any, where: str) -> tuple[LossSpec, ...]:
    """Every ``--loss`` given (or the config file's list of them)."""
    values = [value] if isinstance(value, (str, Mapping)) else list(value)
    return tuple(loss_spec(item, where) for item in values)


def unit_interval(value: Any, where: str) -> float:
    """A number from 0 to 1 (``--strength``)."""
    result = number(value, where)
    if not 0.0 <= result <= 1.0:  # NaN fails too
        raise ConfigError(f"{where} must be a number from 0 to 1, got {value!r}")
    return result


def flag(value: Any, where: str) -> bool:
    """``true`` / ``false`` (``record = false`` in a config file; typer parses the command line)."""
    if not isinstance(value, bool):
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    return value


def masks(value: Any, where: str) -> tuple[str | None, ...]:
    """Every ``--mask`` given, in style order: a path, or ``none`` (None: the whole image)."""
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, (list, tuple)) or not all(isinstance(item, str) and item for item in values):
        raise ConfigError(f"{where}: expected mask image paths or {MASK_NONE!r}, one per style image, got {value!r}")
    return tuple(None if item.strip().lower() == MASK_NONE else item for item in values)


def init(value: Any, where: str) -> str:
    """``content``, ``noise``, ``gray`` or the path of a starting image."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: expected {', '.join(INIT_KEYWORDS)} or an image path, got {value!r}")
    return value
