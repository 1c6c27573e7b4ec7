"""The pluggy project name and the two markers; kept apart to avoid import cycles."""

import pluggy

NAME = "nst_core"
"""Project name of the hook markers and the entry-point group of third-party plug-ins."""

hookspec = pluggy.HookspecMarker(NAME)
hookimpl = pluggy.HookimplMarker(NAME)
