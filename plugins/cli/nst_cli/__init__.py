"""nst_cli: the ``nst`` command line, a thin typer front-end over :mod:`nst_core`.

It translates arguments into a :class:`nst_core.StyleConfig`, calls :func:`nst_core.stylize` and
renders progress (rich, plain lines, or the ``--progress jsonl`` contract of PROGRESS_JSONL.md).
Exit codes are in EXIT_CODES.md and :mod:`nst_cli.exit_codes`.
"""
