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
from importlib import import_module, metadata
import os

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


class NSTPluginManager(pluggy.PluginManager):
    """A pluggy manager that remembers which distribution each plug-in came from."""

    def __init__(self) -> None:
        super().__init__(NAME)
        self.add_hookspecs(hookspecs)
        self._builtins: set[str] = set()
        self.third_party: list[PluginInfo] = []
        self.load_failures: list[str] = []

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
        """Import every ``nst_core`` entry point; an import failure is recorded, not raised."""
        disabled = set(disabled)
        for dist in metadata.distributions():
            for ep in dist.entry_points:
                if ep.group != NAME:
                    continue
                dist_name = dist.metadata["Name"] or "?"
                if ep.name in disabled or dist_name in disabled or self.has_plugin(ep.name):
                    continue
                try:
                    plugin = ep.load()
                    self.register(plugin, name=ep.name)
                except Exception as exc:
                    message = (f"plug-in {ep.name!r} ({dist_name} {dist.version}) failed to load: "
                               f"{type(exc).__name__}: {exc}")
                    self.load_failures.append(message)
                    self.third_party.append(PluginInfo(ep.name, ep.value, dist_name, dist.version, message))
                    continue
                self.third_party.append(PluginInfo(ep.name, ep.value, dist_name, dist.version))


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
        pm.register(plugin)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plug-in {exc.plugin!r} implements an unknown hook: {exc}") from None
    return pm
