"""The plug-in manager: built-ins first, then third-party entry points, then ``check_pending``.

Environment:

``NST_DISABLE_PLUGIN_AUTOLOAD=1``
    load no third-party plug-ins (only the built-ins).
``NST_DISABLE_PLUGINS=name[,name...]``
    skip these plug-ins (entry-point names or distribution names).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
import difflib
from importlib import import_module, metadata
import os
import re
import traceback

import pluggy

from nst_core import hookspecs
from nst_core._markers import NAME
from nst_core.errors import PluginError

BUILTIN_PLUGINS = (
    "nst_core.builtins.vgg",
    "nst_core.builtins.losses",
    "nst_core.builtins.style_losses",
    "nst_core.builtins.schedules",
    "nst_core.builtins.presets",
    "nst_core.builtins.video",
)

AUTOLOAD_ENV = "NST_DISABLE_PLUGIN_AUTOLOAD"
DISABLE_ENV = "NST_DISABLE_PLUGINS"


@dataclass(frozen=True)
class PluginInfo:
    """A loaded (or failed) third-party plug-in, for ``nst plugins``."""

    name: str
    module: str
    distribution: str
    version: str
    error: str | None = None


def _normalized(dist_name: str) -> str:
    """PEP 503 name: ``Nst_Plugin.Example`` -> ``nst-plugin-example``."""
    return re.sub(r"[-_.]+", "-", dist_name).lower()


class NSTPluginManager(pluggy.PluginManager):
    """A pluggy manager that remembers which distribution each plug-in came from.

    Loading cannot be broken by one plug-in: an import failure, an unknown hook name (a typo such
    as ``nst_register_los_terms``) or an entry-point name another distribution already uses skips
    that plug-in and adds one line to :attr:`load_failures` (its traceback, if any, to
    :attr:`tracebacks`); a distribution listed twice (an editable install) is loaded once.
    """

    def __init__(self) -> None:
        super().__init__(NAME)
        self.add_hookspecs(hookspecs)
        self._builtins: set[str] = set()
        self.third_party: list[PluginInfo] = []
        self.load_failures: list[str] = []
        self.tracebacks: dict[str, str] = {}
        """``{failure line: the plug-in's formatted traceback}`` (what ``nst --debug`` shows)."""

    def _fail(self, message: str, exc: BaseException | None = None) -> None:
        self.load_failures.append(message)
        if exc is not None:
            self.tracebacks[message] = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))

    def unknown_hooks(self, plugin: object) -> list[str]:
        """Names of ``nst_*`` hooks ``plugin`` implements that no hook specification declares."""
        return sorted(caller.name for caller in self.get_hookcallers(plugin) or () if not caller.has_spec())

    def _register_checked(self, plugin: object, name: str | None, label: str) -> bool:
        """Register ``plugin``; if it implements an unknown hook, unregister it and record why."""
        self.register(plugin, name=name)
        unknown = self.unknown_hooks(plugin)
        if not unknown:
            return True
        self.unregister(plugin)
        hints = []
        for hook in unknown:
            close = difflib.get_close_matches(hook, hookspecs.__all__, n=1, cutoff=0.6)
            hints.append(f"{hook!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        self._fail(f"{label} implements unknown hook(s) {', '.join(hints)} and was skipped; the hooks are "
                   f"{', '.join(hookspecs.__all__)} (hook API {hookspecs.HOOK_API_VERSION})")
        return False

    def register_builtin(self, module_name: str) -> None:
        self.register(import_module(module_name), name=module_name)
        self._builtins.add(module_name)

    def is_builtin(self, plugin_name: str) -> bool:
        return plugin_name in self._builtins

    def distribution_of(self, plugin_name: str) -> str:
        if plugin_name in self._builtins:
            return "built-in"
        for info in self.third_party:
            if info.name == plugin_name:
                return f"{info.distribution} {info.version}"
        return "registered in code"

    def load_entry_points(self, disabled: Iterable[str] = ()) -> None:
        """Import every ``nst_core`` entry point; a failure is recorded, not raised.

        Each (distribution, entry point) is loaded once, however often ``importlib.metadata``
        lists it; an entry-point name that an earlier distribution already took is reported and
        the later one skipped (rename it: prefix it with the distribution's name).
        """
        disabled = set(disabled)
        seen: dict[str, tuple[str, str]] = {}  # entry-point name -> (normalized distribution, its label)
        for dist in metadata.distributions():
            for ep in dist.entry_points:
                if ep.group != NAME:
                    continue
                dist_name = dist.metadata["Name"] or "?"
                if ep.name in disabled or dist_name in disabled or _normalized(dist_name) in disabled:
                    continue
                label = f"plug-in {ep.name!r} ({dist_name} {dist.version})"
                if ep.name in seen:
                    first_dist, first_label = seen[ep.name]
                    if first_dist != _normalized(dist_name):
                        self._fail(f"{label} has the entry-point name of {first_label} and was skipped; entry-point "
                                   f"names must be unique: rename one (use the distribution's name)")
                    continue  # the same distribution listed twice (an editable install): loaded once
                seen[ep.name] = (_normalized(dist_name), label)
                if ep.name in self._builtins:
                    self._fail(f"{label} uses the name of a built-in plug-in and was skipped; rename it")
                    continue
                try:
                    plugin = ep.load()
                    registered = self._register_checked(plugin, ep.name, label)
                except Exception as exc:
                    message = f"{label} failed to load: {type(exc).__name__}: {' '.join(str(exc).split())}"
                    self._fail(message, exc)
                    self.third_party.append(PluginInfo(ep.name, ep.value, dist_name, dist.version, message))
                    continue
                error = None if registered else self.load_failures[-1]
                self.third_party.append(PluginInfo(ep.name, ep.value, dist_name, dist.version, error))


def _env_list(name: str) -> list[str]:
    return [part.strip() for part in os.environ.get(name, "").split(",") if part.strip()]


def get_plugin_manager(*, autoload: bool | None = None, extra: Iterable[object] = ()) -> NSTPluginManager:
    """A fresh plug-in manager (no global state): built-ins, entry points, then ``extra`` objects.

    :param autoload: load third-party entry points; default: unless ``NST_DISABLE_PLUGIN_AUTOLOAD``
        is set to a non-empty value other than ``0``.
    :param extra: plug-in objects (modules, classes, instances) to register in code, e.g. in tests.
    """
    pm = NSTPluginManager()
    for module_name in BUILTIN_PLUGINS:
        pm.register_builtin(module_name)
    if autoload is None:
        autoload = os.environ.get(AUTOLOAD_ENV, "") in ("", "0")
    if autoload:
        pm.load_entry_points(disabled=_env_list(DISABLE_ENV))
    for plugin in extra:
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
        pm._register_checked(plugin, None, f"plug-in {name!r} (registered in code)")
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:  # every unknown hook was skipped above: a bug
        raise PluginError(f"plug-in {exc.plugin!r} implements an unknown hook: {exc}") from None
    return pm
