"""Collect the plug-in registries once per command, their problems as one line each.

``collect_registries`` reports each broken plug-in as a :class:`PluginWarning`; the CLI silences
those Python warnings and hands the same lines (``Registries.problems``) to ``warn`` instead, so
the user sees ``nst: warning: plug-in 'x' ...`` (or a jsonl ``warning`` event), not warning spam.
"""

from __future__ import annotations

from collections.abc import Callable
import warnings

from nst_core import Registries, collect_registries
from nst_core.errors import PluginWarning
from nst_core.plugins import NSTPluginManager


def load_registries(warn: Callable[[str], None], pm: NSTPluginManager | None = None) -> Registries:
    """The registries of ``pm`` (default: a fresh plug-in manager); each problem goes to ``warn``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginWarning)
        registries = collect_registries(pm)
    for problem in registries.problems:
        warn(problem)
    return registries
