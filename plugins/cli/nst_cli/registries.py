"""Collect the plug-in registries once per command, their problems as one line each.

``collect_registries`` reports each broken plug-in as a :class:`PluginWarning`; the CLI silences
those Python warnings and hands the same lines (``Registries.problems``) to ``warn`` instead, so
the user sees ``nst: warning: plug-in 'x' ...`` (or a jsonl ``warning`` event), not warning spam.
"""

from __future__ import annotations

from collections.abc import Callable
import os
import sys
import warnings

from nst_core import Registries, collect_registries
from nst_core.errors import PluginWarning
from nst_core.plugins import NSTPluginManager


DEBUG = False
"""Set by ``nst --debug`` (the app's callback) for the command being run."""


def debugging() -> bool:
    """Whether ``nst --debug`` (or ``NST_DEBUG``) is on for the command being run."""
    return DEBUG or os.environ.get("NST_DEBUG", "") not in ("", "0")


def load_registries(warn: Callable[[str], None], pm: NSTPluginManager | None = None) -> Registries:
    """The registries of ``pm`` (default: a fresh plug-in manager); each problem goes to ``warn``,
    and with ``--debug`` the plug-in's own traceback to stderr after it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginWarning)
        registries = collect_registries(pm)
    debug = debugging()
    for problem in registries.problems:
        warn(problem)
        if debug and problem in registries.tracebacks:
            print(registries.tracebacks[problem], end="", file=sys.stderr, flush=True)
    return registries
