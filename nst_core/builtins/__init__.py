"""Built-in plug-ins, registered exactly like third-party ones (see nst_core.plugins.BUILTIN_PLUGINS)."""
