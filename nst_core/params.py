"""Typed parameters of loss terms: declared once, shown by ``nst list losses``, checked the same
way whatever they come from (``--loss NAME:W,key=value``, a TOML config, a preset, a run record,
``LossSpec(params=...)`` in the API), because all of them reach the engine as ``LossSpec.params``
and :func:`check_params` checks them when a run is planned.

A loss term declares its parameters in one of two ways:

* a ``Params`` dataclass on the class its factory returns (or on the factory itself), whose
  fields are the parameters; ``field(metadata={"help": "...", "min": 0, "max": 8})`` adds a
  description and bounds, and a ``Literal[...]`` type lists the choices::

      class MeanColorLoss(LossTerm):
          @dataclass
          class Params:
              power: float = field(default=2.0, metadata={"help": "exponent of |mean(G) - mean(S)|", "min": 0.5})

          def __init__(self, power: float = 2.0): ...

* or, without ``Params``, the factory's own keyword parameters with type annotations and
  defaults (``def __init__(self, power: float = 2.0)``).

The factory is then called with the checked values as keyword arguments. Types: ``bool``,
``int``, ``float``, ``str`` and ``Literal`` of those; an ``int`` is accepted for a ``float``.
A factory that takes ``**kwargs`` and declares no ``Params`` accepts anything, unchecked.
"""

from __future__ import annotations

from collections.abc import Mapping
import dataclasses
from dataclasses import dataclass
import inspect
import math
import typing
from typing import Any, Literal

from nst_core.errors import ConfigError, UnknownNameError

SIMPLE_TYPES = (bool, int, float, str)


@dataclass(frozen=True)
class Param:
    """One declared parameter: its name, type (``bool``/``int``/``float``/``str``), default, the
    allowed ``choices`` (a ``Literal``) or bounds, and a one-line description."""

    name: str
    type: type
    default: Any = dataclasses.MISSING
    help: str = ""
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None

    @property
    def required(self) -> bool:
        return self.default is dataclasses.MISSING

    def describe(self) -> str:
        """``power: float = 2.0`` (``mode: 'a' | 'b' = 'a'``; ``n: int >= 1``)."""
        kind = " | ".join(repr(c) for c in self.choices) if self.choices else self.type.__name__
        text = f"{self.name}: {kind}"
        if self.minimum is not None:
            text += f" >= {self.minimum:g}"
        if self.maximum is not None:
            text += f" <= {self.maximum:g}"
        if not self.required:
            text += f" = {self.default!r}"
        return text


@dataclass(frozen=True)
class ParamSpec:
    """The parameters of one loss term; ``open`` when its factory takes ``**kwargs`` without
    declaring them (anything is passed through unchecked)."""

    params: tuple[Param, ...] = ()
    open: bool = False

    def describe(self) -> str:
        """``power: float = 2.0, ...`` for ``nst list losses``; ``any`` / ``-`` when open / none."""
        if self.open and not self.params:
            return "any (not declared)"
        return ", ".join(p.describe() for p in self.params) or "-"


def _type_of(annotation: Any, owner: str, name: str) -> tuple[type, tuple[Any, ...] | None]:
    """``float`` -> (float, None); ``Literal["a", "b"]`` -> (str, ("a", "b")); ``X | None`` is
    not supported (a parameter always has a value)."""
    if annotation in SIMPLE_TYPES:
        return annotation, None
    if typing.get_origin(annotation) is Literal:
        choices = typing.get_args(annotation)
        kinds = {type(c) for c in choices}
        if len(kinds) == 1 and kinds <= set(SIMPLE_TYPES):
            return kinds.pop(), choices
    raise TypeError(f"{owner}: parameter {name!r} has type {annotation!r}; use bool, int, float, str or a "
                    f"Literal of one of them")


def param_spec(factory: Any) -> ParamSpec:
    """The declared parameters of a loss-term ``factory`` (see the module docstring).

    :raises TypeError: a declaration the engine cannot check (an unsupported type).
    """
    owner = getattr(factory, "__qualname__", repr(factory))
    declared = getattr(factory, "Params", None)
    if declared is not None and dataclasses.is_dataclass(declared):
        hints = typing.get_type_hints(declared)
        params = []
        for f in dataclasses.fields(declared):
            kind, choices = _type_of(hints[f.name], owner, f.name)
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
            meta = f.metadata
            params.append(Param(f.name, kind, default, str(meta.get("help", "")), choices, meta.get("min"),
                                meta.get("max")))
        return ParamSpec(tuple(params))
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return ParamSpec(open=True)
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # annotations that cannot be evaluated: treat the parameters as untyped
        hints = {}
    params, is_open = [], False
    for p in signature.parameters.values():
        if p.kind is p.VAR_KEYWORD:
            is_open = True
            continue
        if p.kind in (p.VAR_POSITIONAL, p.POSITIONAL_ONLY):
            continue
        annotation = hints.get(p.name)
        if annotation is None:
            default = p.default
            annotation = type(default) if default is not p.empty and type(default) in SIMPLE_TYPES else None
        if annotation is None:
            raise TypeError(f"{owner}: parameter {p.name!r} has no type annotation; annotate it (bool, int, "
                            f"float, str or a Literal)")
        kind, choices = _type_of(annotation, owner, p.name)
        params.append(Param(p.name, kind, dataclasses.MISSING if p.default is p.empty else p.default,
                            choices=choices))
    return ParamSpec(tuple(params), open=is_open)


def _coerce(param: Param, value: Any, where: str) -> Any:
    kind = param.type
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
            raise ConfigError(f"{where} must be a whole number, got {value!r}")
        value = int(value)
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{where} must be a finite number, got {value!r}")
        value = float(value)
    elif kind is str:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ConfigError(f"{where} must be text, got {value!r}")
        value = str(value)
    if param.choices is not None and value not in param.choices:
        raise ConfigError(f"{where} must be one of {', '.join(repr(c) for c in param.choices)}, got {value!r}")
    if param.minimum is not None and value < param.minimum:
        raise ConfigError(f"{where} must be >= {param.minimum:g}, got {value!r}")
    if param.maximum is not None and value > param.maximum:
        raise ConfigError(f"{where} must be <= {param.maximum:g}, got {value!r}")
    return value


def check_params(term: str, spec: ParamSpec, given: Mapping[str, Any]) -> dict[str, Any]:
    """``given`` checked against ``spec``: unknown names (with did-you-mean), types, choices and
    bounds; returns the values to call the factory with (ints made floats where declared so).

    :raises ConfigError: one line naming the loss term and the parameter.
    """
    known = {p.name: p for p in spec.params}
    checked: dict[str, Any] = {}
    for name, value in given.items():
        if name not in known:
            if spec.open:
                checked[name] = value
                continue
            hint = f"Its parameters: {spec.describe()}" if spec.params else "It takes no parameters"
            raise UnknownNameError(f"parameter of loss term {term!r}", name, known, hint)
        checked[name] = _coerce(known[name], value, f"loss term {term!r} parameter {name!r}")
    missing = [p.name for p in spec.params if p.required and p.name not in given]
    if missing:
        raise ConfigError(f"loss term {term!r} needs the parameter(s) {', '.join(missing)} "
                          f"({spec.describe()})")
    return checked
