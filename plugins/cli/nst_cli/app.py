"""The ``nst`` typer app: commands, ``--version``, ``--debug``, and how errors end a command.

A user error (any :class:`nst_core.NSTError`) becomes one ``nst: error: ...`` line on stderr and
exit code 1; ``--debug`` shows the traceback instead. A second Ctrl-C during a run ends it at
once with 130 (143 for SIGTERM). Anything else is a bug and shows its traceback.
"""

from __future__ import annotations

import platform
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from nst_core import NSTError, __version__

from nst_cli import exit_codes, messages, registries
from nst_cli.batch import EPILOG as BATCH_EPILOG, batch
from nst_cli.gimp import gimp_app
from nst_cli.listing import list_app, plugins
from nst_cli.run import EPILOG as RUN_EPILOG, run
from nst_cli.signals import Aborted
from nst_cli.video import EPILOG as VIDEO_EPILOG, video


class NSTGroup(TyperGroup):
    """The top-level group: turns user errors raised by any command into one line and an exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (NSTError, Aborted) as exc:
            if ctx.params.get("debug"):
                raise
            messages.error(str(exc))
            raise typer.Exit(getattr(exc, "exit_code", exit_codes.USER_ERROR)) from None


app = typer.Typer(
    name="nst", cls=NSTGroup, no_args_is_help=True, pretty_exceptions_show_locals=False,
    help="Neural style transfer (Gatys et al. 2015): repaint a photo in the style of a painting.",
    epilog="[bold]Examples[/bold]\n\n"
           "  nst run photo.jpg starry_night.jpg -o out.png --size 512 --seed 1\n\n"
           "  nst batch photos/ --style starry_night.jpg -o out/\n\n"
           "  nst list presets\n\n"
           "  nst --debug run photo.jpg style.jpg -o out.png   [dim](tracebacks for bug reports)[/dim]\n\n"
           "Run `nst COMMAND --help` for each command's options and examples.",
)
app.command("run", epilog=RUN_EPILOG)(run)
app.command("batch", epilog=BATCH_EPILOG)(batch)
app.command("video", epilog=VIDEO_EPILOG)(video)
app.add_typer(list_app, name="list")
app.add_typer(gimp_app, name="gimp")
PLUGINS_EPILOG = ("[bold]Examples[/bold]\n\n  nst plugins\n\n"
                  "  nst plugins --json   [dim](for scripts; exit code 1 when a plug-in failed)[/dim]")
app.command("plugins", epilog=PLUGINS_EPILOG)(plugins)


def _version(value: bool) -> None:
    if value:
        import torch

        typer.echo(f"nst {__version__} (torch {torch.__version__}, "
                   f"Python {platform.python_version()})")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", envvar="NST_DEBUG",
                                        help="Show tracebacks for errors (for bug reports).")] = False,
) -> None:
    """Neural style transfer (Gatys et al. 2015): repaint a photo in the style of a painting."""
    registries.DEBUG = debug  # plug-in problems then show the plug-in's traceback


def main() -> None:
    """The console script ``nst``."""
    app(prog_name="nst")
