"""``nst run``: stylise one image. Validates everything cheap first, then calls nst_core.stylize.

Order: plug-ins, settings (preset < config file < command line), output path, input images,
device, names and layers (the engine's ``plan_run``), seed; then the ``start`` event, the run, the
output file and the ``done`` event. A user error stops before anything is written; Ctrl-C /
SIGTERM stop the run and the best image so far is saved.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
import os
from pathlib import Path
import secrets
from typing import Annotated, Any

from torch import Tensor
import typer

import nst_core
from nst_core import NSTError, Progress, Registries, StyleConfig, StyleResult
from nst_core.engine import plan_run, scale_sizes, working_shape
from nst_core.errors import ConfigError, ImageError
from nst_core.image import FORMATS, LoadedImage

from nst_cli import exit_codes
from nst_cli.registries import load_registries
from nst_cli.render import Outcome, ProgressMode, Reporter, RunInfo, make_reporter
from nst_cli.settings import SETTINGS, RunSettings, resolve
from nst_cli.signals import Aborted, StopOnSignal

DEFAULTS = StyleConfig()


def check_output(output: Path, inputs: Iterable[Path]) -> None:
    """Refuse an output path that cannot be written or would overwrite an input, before any work."""
    if output.suffix.lower() not in FORMATS:
        raise ConfigError(f"{output}: unknown output extension {output.suffix!r}; "
                          f"use one of {', '.join(sorted(FORMATS))}")
    directory = output.parent
    if not directory.is_dir():
        raise ImageError(f"{output}: the output directory {str(directory)!r} does not exist; create it first")
    if output.is_dir():
        raise ImageError(f"{output}: is a directory; give the output a file name")
    for path in inputs:
        same = path.resolve() == output.resolve() or (path.exists() and output.exists()
                                                      and os.path.samefile(path, output))
        if same:
            raise ConfigError(f"{output}: the output would overwrite the input {path}; choose another output path")


def planned_sizes(config: StyleConfig, image: LoadedImage) -> tuple[tuple[int, int], ...]:
    """The working ``(width, height)`` of each scale, computed as :func:`nst_core.stylize` does."""
    height, width = image.rgb.shape[-2:]
    sides = scale_sizes(config.size, config.scales, config.scale_factor, min(config.min_scale_size, config.size))
    return tuple((w, h) for h, w in (working_shape(height, width, side) for side in sides))


def intermediate_path(output: Path, step: int) -> Path:
    """``out.png`` -> ``out.step50.png``."""
    return output.with_name(f"{output.stem}.step{step}{output.suffix}")


@dataclass(frozen=True)
class Job:
    """A validated run, ready to start."""

    content: Path
    styles: tuple[Path, ...]
    output: Path
    settings: RunSettings
    registries: Registries
    info: RunInfo
    alpha: Tensor | None
    """The content's alpha (or None), put back on intermediate images."""
    notes: tuple[str, ...]


def prepare(content: Path, styles: tuple[Path, ...], output: Path, command_line: Mapping[str, Any],
            config_file: Path | None, reporter: Reporter) -> Job:
    """Everything cheap, in the order a person would fix it; raises :class:`NSTError`."""
    registries = load_registries(reporter.warning)
    settings = resolve(command_line, config_file, registries)
    config = settings.config
    if config.style_blend is not None and len(config.style_blend) != len(styles):
        raise ConfigError(f"--style-blend has {len(config.style_blend)} weight(s) for {len(styles)} style "
                          f"image(s); give one each")
    inputs = [content, *styles, *([settings.init_image] if settings.init_image else [])]
    check_output(output, inputs)
    images = [nst_core.read_image(path) for path in inputs]
    notes = tuple(note for image in images for note in image.notes)
    for note in notes:
        reporter.warning(note)
    device = nst_core.resolve_device(config.device)
    plan_run(config, registries)  # every name and layer (and the backbone's weights), before the start event
    if config.seed is None:
        config = config.replace(seed=secrets.randbelow(2**31))
        settings = replace(settings, config=config)
    sizes = planned_sizes(config, images[0])
    info = RunInfo(content=content, styles=styles, output=output, version=nst_core.__version__, device=str(device),
                   seed=config.seed, sizes=sizes, total=config.steps * len(sizes))
    return Job(content, styles, output, settings, registries, info, images[0].alpha, notes)


def execute(job: Job, reporter: Reporter, stop: StopOnSignal) -> tuple[Outcome, int]:
    """Run the engine, write the output atomically; returns the outcome and the exit code."""
    save_every = job.settings.save_every

    def on_progress(progress: Progress) -> None:
        reporter.step(progress)
        if save_every and progress.step % save_every == 0:
            path = intermediate_path(job.output, progress.step)
            try:  # a failed intermediate save must not end a long run
                nst_core.save_image(progress.image.detach().to("cpu", copy=True), path, alpha=job.alpha)
            except NSTError as exc:
                reporter.warning(f"could not save an intermediate image: {exc}")
            else:
                reporter.saved(path, progress.step)

    reporter.start(job.info)
    result = nst_core.stylize(job.content, list(job.styles), job.settings.config, registries=job.registries,
                              init_image=job.settings.init_image, on_progress=on_progress, should_stop=stop)
    for note in result.notes:
        if note not in job.notes:
            reporter.warning(note)
    if result.status == "finished" and result.message != "finished":  # recovered from a non-finite loss
        reporter.warning(result.message)
    return _finish(result, job, stop)


def _finish(result: StyleResult, job: Job, stop: StopOnSignal) -> tuple[Outcome, int]:
    """Write the result (also when stopped or non-finite: the best or last finite image) and pick the exit code."""
    result.save(job.output)
    message, code = result.message, exit_codes.OK
    if result.status == "non-finite":
        code = exit_codes.NON_FINITE
    elif result.status == "stopped":
        message, code = f"interrupted by {stop.name}, {result.message}; saved the best image so far", stop.exit_code
    outcome = Outcome(output=job.output, status=result.status, message=message, steps=result.steps,
                      total=result.total_steps, elapsed=result.elapsed, loss=result.loss, seed=result.seed)
    return outcome, code


OUTPUT = "Output"
SIZE = "Size, steps and optimiser"
WEIGHTS = "Weights"
LAYERS = "Layers and loss terms"
START = "Start, seed and device"
FILES = "Presets and config files"

EPILOG = """\
[bold]Examples[/bold]

  nst run photo.jpg starry_night.jpg -o out.png

  nst run photo.jpg starry_night.jpg -o out.png --preset fast --seed 7

  nst run photo.jpg a.jpg b.jpg --style-blend 0.7,0.3 -o mix.png --size 768

  nst run photo.jpg style.jpg -o out.png --style-weight 10 --tv-weight 1e-4

  nst run photo.jpg style.jpg -o out.png --loss mean-color:0.5,power=1   [dim](a plug-in loss term)[/dim]

  nst run photo.jpg style.jpg -o out.png --config run.toml --steps 100

  nst run photo.jpg style.jpg -o out.png --progress jsonl   [dim](JSON events on stdout)[/dim]

[bold]Exit codes[/bold]

  0 done; 1 user error; 2 usage error; 3 the loss became non-finite (last finite image saved);

  130 / 143 interrupted by SIGINT / SIGTERM (best image so far saved)
"""


def _option(help: str, panel: str, *names: str, default: Any = None) -> Any:
    """A ``typer.Option`` defaulting to None ("not given"); ``default`` is StyleConfig's, shown in the help."""
    if default is not None:
        help = f"{help} Default: {default:g}." if isinstance(default, float) else f"{help} Default: {default}."
    return typer.Option(*names, help=help, show_default=False, rich_help_panel=panel)


def run(
    ctx: typer.Context,
    content: Annotated[Path, typer.Argument(metavar="CONTENT", help="The photo to stylise.", show_default=False)],
    styles: Annotated[list[Path], typer.Argument(metavar="STYLE", show_default=False,
                                                 help="One or more style images (several are blended).")],
    output: Annotated[Path, _option("Where to write the result: .png .jpg .jpeg .webp .tif .tiff (atomically).",
                                    OUTPUT, "--output", "-o")],
    save_every: Annotated[int | None, _option("Also save the image every N steps, as OUT.stepN.ext.", OUTPUT)] = None,
    preset: Annotated[str | None, _option("Start from a preset (`nst list presets`); your options override it.",
                                          FILES)] = None,
    config: Annotated[Path | None, _option("A TOML file with the long options as keys (size = 512, style-layers "
                                           "= [...]); command-line options override it.", FILES, "--config")] = None,
    size: Annotated[int | None, _option("Longest side of the output in pixels.", SIZE, default=DEFAULTS.size)] = None,
    steps: Annotated[int | None, _option("Optimiser steps per scale.", SIZE, default=DEFAULTS.steps)] = None,
    scales: Annotated[int | None, _option("Coarse-to-fine scales. Default: as many as fit from --min-scale-size "
                                          "to --size.", SIZE)] = None,
    scale_factor: Annotated[float | None, _option("Size ratio between scales.", SIZE,
                                                  default=DEFAULTS.scale_factor)] = None,
    min_scale_size: Annotated[int | None, _option("Longest side of the coarsest scale.", SIZE,
                                                  default=DEFAULTS.min_scale_size)] = None,
    optimizer: Annotated[str | None, _option("lbfgs or adam.", SIZE, default=DEFAULTS.optimizer)] = None,
    lr: Annotated[float | None, _option("Learning rate. Default: 1 for lbfgs, 0.02 for adam.", SIZE)] = None,
    content_weight: Annotated[float | None, _option("α, the weight of the content loss.", WEIGHTS,
                                                    default=DEFAULTS.content_weight)] = None,
    style_weight: Annotated[float | None, _option("β, the weight of the style loss.", WEIGHTS,
                                                  default=DEFAULTS.style_weight)] = None,
    style_blend: Annotated[str | None, _option("One weight per style image, comma separated (0.7,0.3). "
                                               "Default: equal.", WEIGHTS)] = None,
    tv_weight: Annotated[float | None, _option("Total-variation weight (smoothness).", WEIGHTS,
                                               default=DEFAULTS.tv_weight)] = None,
    style_scale: Annotated[float | None, _option("Style image size relative to the working size (bigger: larger "
                                                 "brush strokes).", WEIGHTS, default=DEFAULTS.style_scale)] = None,
    backbone: Annotated[str | None, _option("Feature network (`nst list backbones`).", LAYERS,
                                            default=DEFAULTS.backbone)] = None,
    pooling: Annotated[str | None, _option("max or avg.", LAYERS, default=DEFAULTS.pooling)] = None,
    content_layers: Annotated[str | None, _option("Comma-separated content layers (`nst list layers`). "
                                                  "Default: the backbone's (relu4_2).", LAYERS)] = None,
    style_layers: Annotated[str | None, _option("Comma-separated style layers. Default: the backbone's "
                                                "(relu1_1 ... relu5_1).", LAYERS)] = None,
    layer_schedule: Annotated[str | None, _option("How the style layers are weighted (`nst list schedules`).",
                                                  LAYERS, default=DEFAULTS.layer_schedule)] = None,
    layer_weights: Annotated[str | None, _option("Explicit style layer weights instead of a schedule: "
                                                 "relu1_1=0.5,relu2_1=0.5.", LAYERS)] = None,
    style_loss: Annotated[str | None, _option("The style loss term (`nst list losses`).", LAYERS,
                                              default=DEFAULTS.style_loss)] = None,
    loss: Annotated[list[str] | None, _option("Add a loss term, plug-in terms too: NAME[:WEIGHT][,key=value...], "
                                              "e.g. mean-color:0.5,power=1. Repeatable.", LAYERS)] = None,
    init: Annotated[str | None, _option("Starting image: content, noise, gray or an image path.", START,
                                        default=DEFAULTS.init)] = None,
    seed: Annotated[int | None, _option("Random seed. Default: a new one, printed so the run can be repeated.",
                                        START)] = None,
    device: Annotated[str | None, _option("auto, cpu, cuda, cuda:N or mps.", START, default=DEFAULTS.device)] = None,
    progress: Annotated[ProgressMode, typer.Option(help="rich (a bar), plain (lines), jsonl (JSON events on stdout) "
                                                   "or none. auto: rich on a terminal, else plain.",
                                                   rich_help_panel=OUTPUT)] = ProgressMode.auto,
) -> None:
    """Stylise CONTENT with one or more STYLE images and write the result to OUT.

    The seed, device and working sizes are printed first, so a run can be repeated with --seed.

    Progress goes to stderr; with --progress jsonl, JSON events go to stdout (PROGRESS_JSONL.md).
    """
    command_line = {setting.key: ctx.params[setting.param] for setting in SETTINGS}
    with make_reporter(progress) as reporter, StopOnSignal() as stop:
        try:
            job = prepare(content, tuple(styles), output, command_line, config, reporter)
            outcome, code = execute(job, reporter, stop)
        except NSTError as exc:
            reporter.error(str(exc), exit_codes.USER_ERROR)
            raise
        except Aborted as exc:
            reporter.error(str(exc), exc.exit_code)
            raise
        except Exception as exc:
            reporter.error(f"internal error (a bug: please report it with the traceback): "
                           f"{type(exc).__name__}: {exc}", exit_codes.USER_ERROR)
            raise
        reporter.done(outcome)
    if code != exit_codes.OK:
        raise typer.Exit(code)
