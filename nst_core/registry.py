"""Registries of named plug-in objects, and the one place that calls the registration hooks."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
import traceback
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar
import warnings

from nst_core.errors import NSTError, PluginError, PluginWarning, UnknownNameError

if TYPE_CHECKING:
    from nst_core.plugins import NSTPluginManager
    from nst_core.types import LayerSchedule

T = TypeVar("T")


class Register(Protocol):
    """The ``register`` callable handed to every ``nst_register_*`` hook."""

    def __call__(self, name: str, obj: object, *, description: str = "") -> None: ...


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered object and where it came from (plug-in name and distribution)."""

    name: str
    obj: T
    description: str
    plugin: str
    distribution: str  # "built-in" or "dist-name version"


@dataclass
class Registry(Generic[T]):
    """Named objects of one kind (``kind`` is used in messages: "backbone", "loss term" ...)."""

    kind: str
    _entries: dict[str, Entry[T]] = field(default_factory=dict)
    broken_plugins: tuple[str, ...] = ()

    def add(self, name: str, obj: T, *, description: str = "", plugin: str = "?",
            distribution: str = "built-in") -> None:
        if not isinstance(name, str) or not name:
            raise PluginError(f"plug-in {plugin!r} ({distribution}) registered a {self.kind} "
                              f"with an invalid name {name!r}")
        if name in self._entries:
            old = self._entries[name]
            raise PluginError(
                f"{self.kind} {name!r} from plug-in {plugin!r} ({distribution}) is already "
                f"registered by plug-in {old.plugin!r} ({old.distribution}); the second one is "
                f"ignored. Rename it, or disable one with NST_DISABLE_PLUGINS={plugin}")
        self._entries[name] = Entry(name, obj, description, plugin, distribution)

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            hint = ""
            if self.broken_plugins:
                hint = "These plug-ins failed to load: " + "; ".join(self.broken_plugins)
            raise UnknownNameError(self.kind, name, self._entries, hint) from None

    def discard(self, name: str) -> None:
        """Remove ``name`` (a preset found invalid after registration)."""
        self._entries.pop(name, None)

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(self._entries.values())


@dataclass
class Registries:
    """Everything the installed plug-ins provide, collected once; pass it to repeated runs."""

    backbones: Registry[Callable[..., object]]
    loss_terms: Registry[Callable[..., object]]
    schedules: Registry[LayerSchedule]
    presets: Registry[Mapping[str, Any]]
    problems: list[str] = field(default_factory=list)
    """One line per plug-in that failed (import, duplicate name, hook raising)."""
    tracebacks: dict[str, str] = field(default_factory=dict)
    """``{problem line: the plug-in's formatted traceback}``, for problems that come from an
    exception in plug-in code (``nst --debug`` prints them)."""
    flow_estimators: Registry[Callable[..., object]] = field(default_factory=lambda: Registry("flow estimator"))
    """Optical-flow estimator factories for video (``nst_register_flow_estimators``)."""

    def provenance(self, kind: str, name: str) -> dict[str, str]:
        """``{"plugin": ..., "distribution": ...}`` of ``name`` in the registry of ``kind``
        ("backbones", "loss_terms", "schedules", "presets"), for run records."""
        entry = getattr(self, kind).entry(name)
        return {"plugin": entry.plugin, "distribution": entry.distribution}


def _check_object(kind: str, obj: object) -> str | None:
    """What is wrong with a registered object of ``kind`` (None: nothing)."""
    from nst_core.types import LayerSchedule

    if kind in ("backbone", "loss term", "flow estimator") and not callable(obj):
        return f"is a {type(obj).__name__}, not a factory (a class or function that returns the {kind})"
    if kind == "layer schedule" and not isinstance(obj, LayerSchedule):
        return f"is a {type(obj).__name__}; register nst_core.LayerSchedule(fn, varies=...)"
    if kind == "preset":
        if not isinstance(obj, Mapping):
            return f"is a {type(obj).__name__}; a preset is a mapping of StyleConfig fields"
        from nst_core.config import config_from_preset

        try:
            config_from_preset(obj)
        except NSTError as exc:
            return f"is invalid: {exc}"
        except (TypeError, ValueError) as exc:
            return f"is invalid: {type(exc).__name__}: {exc}"
    return None


def _preset_names(settings: Mapping[str, Any], regs: Registries) -> str | None:
    """The first name a preset uses that no plug-in provides, as a message (None: all known)."""
    from nst_core.config import config_from_preset

    config = config_from_preset(settings)
    wanted: list[tuple[Registry[Any], str]] = [(regs.backbones, config.backbone),
                                               (regs.schedules, config.layer_schedule)]
    wanted += [(regs.loss_terms, spec.name) for spec in config.loss_specs()]
    wanted += [(regs.schedules, spec.schedule) for spec in config.loss_specs() if spec.schedule]
    for registry, name in wanted:
        if name not in registry:
            return f"uses the unknown {registry.kind} {name!r}"
    from nst_core.params import check_params, param_spec

    for spec in config.loss_specs():
        try:
            check_params(spec.name, param_spec(regs.loss_terms.get(spec.name)), spec.params)
        except TypeError:
            pass  # the loss term's own declaration is wrong: reported when it is used
        except NSTError as exc:
            return f"is invalid: {exc}"
    return None


def _call_hook(pm: NSTPluginManager, hook_name: str, impl: Any, registry: Registry, regs: Registries) -> None:
    """Call one plug-in's implementation of a registration hook; what goes wrong is a line in
    ``regs.problems`` (with the traceback in ``regs.tracebacks``), or raised for a built-in."""
    plugin, dist = impl.plugin_name, pm.distribution_of(impl.plugin_name)

    def register(name: str, obj: object, *, description: str = "") -> None:
        try:
            wrong = _check_object(registry.kind, obj)
            if wrong is not None:
                raise PluginError(f"{registry.kind} {name!r} from plug-in {plugin!r} ({dist}) {wrong}; it is ignored")
            registry.add(name, obj, description=description, plugin=plugin, distribution=dist)
        except PluginError as exc:
            if pm.is_builtin(plugin):
                raise
            regs.problems.append(str(exc))

    try:
        impl.function(register=register)
    except Exception as exc:  # a third-party hook raising must not take the others down
        if pm.is_builtin(plugin):
            raise
        line = f"plug-in {plugin!r} ({dist}) raised in {hook_name}: {type(exc).__name__}: {' '.join(str(exc).split())}"
        regs.problems.append(line)
        regs.tracebacks[line] = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def _check_presets(regs: Registries) -> None:
    """Drop (with a problem line) each third-party preset that uses a name no plug-in provides or
    loss parameters its term does not accept; now that every name is registered."""
    for entry in list(regs.presets):
        wrong = _preset_names(entry.obj, regs)
        if wrong is not None:
            if entry.distribution == "built-in":
                raise PluginError(f"built-in preset {entry.name!r} {wrong}")
            regs.presets.discard(entry.name)
            regs.problems.append(f"preset {entry.name!r} from plug-in {entry.plugin!r} ({entry.distribution}) "
                                 f"{wrong}; it is ignored")


def collect_registries(pm: NSTPluginManager | None = None) -> Registries:
    """Call every registration hook of ``pm`` (default: a fresh plug-in manager).

    Each implementation is called on its own so a failure names its plug-in and distribution;
    a failing plug-in is reported as a :class:`PluginWarning` and skipped, the others still work.
    Built-ins are called first, so a third-party name clash never replaces a built-in.
    """
    if pm is None:
        from nst_core.plugins import get_plugin_manager

        pm = get_plugin_manager()
    problems = list(pm.load_failures)
    regs = Registries(Registry("backbone"), Registry("loss term"), Registry("layer schedule"), Registry("preset"),
                      problems, dict(pm.tracebacks))
    hooks = (
        (pm.hook.nst_register_backbones, regs.backbones),
        (pm.hook.nst_register_loss_terms, regs.loss_terms),
        (pm.hook.nst_register_layer_schedules, regs.schedules),
        (pm.hook.nst_register_presets, regs.presets),
        (pm.hook.nst_register_flow_estimators, regs.flow_estimators),
    )
    for hook, registry in hooks:
        impls = sorted(hook.get_hookimpls(), key=lambda i: (not pm.is_builtin(i.plugin_name), i.plugin_name))
        for impl in impls:
            _call_hook(pm, hook.name, impl, registry, regs)
    _check_presets(regs)
    broken = tuple(problems)
    for registry in (regs.backbones, regs.loss_terms, regs.schedules, regs.presets, regs.flow_estimators):
        registry.broken_plugins = broken
    for line in problems:
        warnings.warn(line, PluginWarning, stacklevel=2)
    return regs
