"""``nst run``: stylise one image. Validates everything cheap first, then calls nst_core.stylize.

Order: plug-ins, the run record (``--from-record``), settings (record < preset < config file <
command line), inputs, output path, input images and masks, then the engine's plan (device,
precision, names and layers, seed, sizes, memory: :func:`nst_core.plan`), the resume file
(``--resume``); then the ``start`` event (which prints the plan), the run (:func:`nst_core.run`),
the output file with its run record and the ``done`` event. A user error stops before anything is
written; Ctrl-C / SIGTERM stop the run and the best image so far is saved (and, with
``--checkpoint-every`` or ``--resume``, where it stopped: :mod:`nst_cli.resume_file`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
import os
from pathlib import Path
from typing import Annotated, Any

from torch import Tensor
import typer

import nst_core
from nst_core import NSTError, Progress, RunPlan, StyleConfig, StyleResult
from nst_core.errors import ConfigError, ImageError
from nst_core.image import FORMATS, LoadedImage
from nst_core.resume import resume_path

from nst_cli import exit_codes, options
from nst_cli.record import RunRecord, cli_fields, load_record, sidecar_path
from nst_cli.registries import load_registries
from nst_cli.render import Outcome, ProgressMode, Reporter, RunInfo, make_reporter
from nst_cli.resume_file import ResumeFile
from nst_cli.settings import SETTINGS, RunSettings, resolve
from nst_cli.signals import Aborted, StopOnSignal

DEFAULTS = StyleConfig()


def check_output(output: Path, inputs: Iterable[Path], *, record: bool = False, resume: bool = False) -> None:
    """Refuse an output path that cannot be written or would overwrite an input (or, with
    ``record``, whose sidecar ``OUT.json`` would; with ``resume``, whose ``OUT.resume.pt``
    would), before any work."""
    if output.suffix.lower() not in FORMATS:
        raise ConfigError(f"{output}: unknown output extension {output.suffix!r}; "
                          f"use one of {', '.join(sorted(FORMATS))}")
    directory = output.parent
    if not directory.is_dir():
        raise ImageError(f"{output}: the output directory {str(directory)!r} does not exist; create it first")
    targets = [output, *([sidecar_path(output)] if record else []), *([resume_path(output)] if resume else [])]
    for target in targets:
        if target.is_dir():
            raise ImageError(f"{target}: is a directory; give the output a file name")
    inputs = list(inputs)
    for target in targets:
        for path in inputs:
            same = path.resolve() == target.resolve() or (path.exists() and target.exists()
                                                          and os.path.samefile(path, target))
            if same:
                what = "output" if target == output else "run record" if target.suffix == ".json" else "resume file"
                raise ConfigError(f"{output}: the {what} would overwrite the input {path}; choose another output "
                                  f"path")


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
    masks: tuple[Path | None, ...] | None
    """One per style (None: the whole image), or None: no masks."""
    plan: RunPlan
    """The engine's decisions (device, precision, seed, sizes, memory), printed before the run."""
    info: RunInfo
    alpha: Tensor | None
    """The content's alpha (or None), put back on intermediate images."""
    notes: tuple[str, ...]
    resume: ResumeFile | None = None
    """The resume file (``--checkpoint-every`` / ``--resume``), or None."""


def choose_inputs(content: Path | None, styles: Sequence[Path], settings: RunSettings, record: RunRecord | None,
                  warn: Callable[[str], None]) -> tuple[Path, tuple[Path, ...], tuple[Path | None, ...] | None]:
    """Content, styles and masks: the command line's, else the record's. The record's masks go
    with the record's styles (one per style), so new STYLE arguments drop them (with a warning)."""
    masks = settings.masks
    if record is None:
        assert content is not None and styles, "run() asks for CONTENT and STYLE without --from-record"
        return content, tuple(styles), masks
    if content is None or not styles:
        if record.content is None or not record.styles:
            raise ConfigError(f"{record.path}: the record names no input files (written by the Python API?); "
                              f"give CONTENT and STYLE")
    if not styles:
        styles = record.styles
        if masks is None:
            masks = record.masks
    elif masks is None and record.masks is not None:
        warn(f"{record.path}: the record's masks belong to its style images; without --mask the new STYLE "
             f"images apply to the whole image")
    return content if content is not None else record.content, tuple(styles), masks


def check_masks(masks: Sequence[Path | None], styles: Sequence[Path], content: LoadedImage,
                reporter: Reporter) -> list[LoadedImage]:
    """One mask per style image; each is read (so a bad file fails now) and a mask of another
    shape than the content gets a warning (it is stretched)."""
    if len(masks) != len(styles):
        raise ConfigError(f"--mask given {len(masks)} time(s) for {len(styles)} style image(s); give one per "
                          f"style image, in the same order ({options.MASK_NONE!r} for the whole image)")
    images = []
    cw, ch = content.size
    for path in masks:
        if path is None:
            continue
        image = nst_core.read_image(path)
        mw, mh = image.size
        if abs(mw * ch - mh * cw) > 0.02 * mh * cw:
            reporter.warning(f"{path}: the mask is {mw}x{mh} but the content is {cw}x{ch}; it is stretched to fit")
        images.append(image)
    return images


def prepare(content: Path | None, styles: Sequence[Path], output: Path, command_line: Mapping[str, Any],
            config_file: Path | None, reporter: Reporter, from_record: Path | None = None,
            resume: bool = False) -> Job:
    """Everything cheap, in the order a person would fix it; raises :class:`NSTError`."""
    registries = load_registries(reporter.warning)
    record = load_record(from_record) if from_record is not None else None
    settings = resolve(command_line, config_file, registries, record)
    content, styles, masks = choose_inputs(content, styles, settings, record, reporter.warning)
    config = settings.config
    if config.style_blend is not None and len(config.style_blend) != len(styles):
        raise ConfigError(f"--style-blend has {len(config.style_blend)} weight(s) for {len(styles)} style "
                          f"image(s); give one each")
    if record is not None and config.init == "image" and settings.init_image is None:
        raise ConfigError(f"{from_record}: the recorded run started from an image the record does not name; "
                          f"give --init PATH")
    images_in = [content, *styles, *([settings.init_image] if settings.init_image else [])]
    mask_paths = [m for m in masks or () if m is not None]
    check_output(output, [*images_in, *mask_paths, *([record.path] if record else [])], record=settings.record,
                 resume=settings.checkpoint_every is not None or resume)
    resume_file = ResumeFile.open(output, settings.checkpoint_every, resume, reporter)
    images = [nst_core.read_image(path) for path in images_in]
    mask_images: list[LoadedImage | None] | None = None
    if masks is not None:
        read = iter(check_masks(masks, styles, images[0], reporter))
        mask_images = [None if path is None else next(read) for path in masks]
        images += [m for m in mask_images if m is not None]
    notes = tuple(note for image in images for note in image.notes)
    for note in notes:
        reporter.warning(note)
    state = resume_file.state if resume_file is not None else None
    if config.seed is None and state is not None:
        config = config.replace(seed=state.seed)
    plan = nst_core.plan(content, list(styles), config, registries=registries, init_image=settings.init_image,
                         style_masks=None if masks is None else list(masks))
    settings = replace(settings, config=plan.config)  # the record says what ran: precision and seed
    for note in plan.notes:
        if note not in notes:
            reporter.warning(note)
    if resume_file is not None:
        init = images[1 + len(styles)] if settings.init_image else None
        resume_file.check(plan.config, images[:1 + len(styles)], mask_images, init, plan.sizes)
    info = RunInfo(content=content, styles=styles, output=output, version=nst_core.__version__,
                   device=str(plan.device), precision=plan.config.precision, seed=plan.seed, sizes=plan.sizes,
                   total=plan.total_steps, resumed=state.step if state is not None else 0,
                   resume_file=resume_file.path if state is not None else None)
    return Job(content, styles, output, settings, masks, plan, info, images[0].alpha, (*notes, *plan.notes),
               resume_file)


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
        if job.resume is not None:
            job.resume.on_progress(progress, reporter)

    reporter.start(job.info)
    result = nst_core.run(job.plan, on_progress=on_progress, should_stop=stop,
                          resume=job.resume.state if job.resume is not None else None)
    for note in result.notes:
        if note not in job.notes:
            reporter.warning(note)
    if result.status == "finished" and result.message != "finished":  # recovered from a non-finite loss
        reporter.warning(result.message)
    return _finish(result, job, stop, reporter)


def _finish(result: StyleResult, job: Job, stop: StopOnSignal, reporter: Reporter) -> tuple[Outcome, int]:
    """Write the result (also when stopped or non-finite: the best or last finite image) with its
    run record, then the resume file (deleted when finished, written when stopped), and pick the
    exit code."""
    settings = job.settings
    record: dict[str, Any] | bool = False
    if settings.record:
        record = result.record(**cli_fields(job.content, job.styles, job.masks, settings.init_image,
                                            settings.strength, settings.base_style_weight))
    written = result.save(job.output, record=record)
    resumable = job.resume.after(result, reporter) if job.resume is not None else False
    message, code = result.message, exit_codes.OK
    if result.status == "non-finite":
        code = exit_codes.NON_FINITE
    elif result.status == "stopped":
        message, code = f"interrupted by {stop.name}, {result.message}; saved the best image so far", stop.exit_code
        if resumable:
            message += f"; continue with the same command and --resume ({job.resume.path})"
    outcome = Outcome(output=job.output, status=result.status, message=message, steps=result.steps,
                      total=result.total_steps, elapsed=result.elapsed, loss=result.loss, seed=result.seed,
                      record=sidecar_path(Path(written)) if record else None)
    return outcome, code


OUTPUT = "Output"
LOOK = "Strength, colour and masks"
SIZE = "Size, steps and optimiser"
WEIGHTS = "Weights"
LAYERS = "Layers and loss terms"
START = "Start, seed, device and precision"
FILES = "Presets, config files and run records"

EPILOG = """\
[bold]Examples[/bold]

  nst run photo.jpg starry_night.jpg -o out.png

  nst run photo.jpg starry_night.jpg -o out.png --preset fast --seed 7

  nst run photo.jpg a.jpg b.jpg --style-blend 0.7,0.3 -o mix.png --size 768

  nst run photo.jpg style.jpg -o out.png --style-weight 10 --tv-weight 1e-4

  nst run photo.jpg style.jpg -o out.png --strength 0.7 --preserve-color luminance

  nst run photo.jpg style.jpg --mask sky.png -o out.png   [dim](style only where sky.png is white)[/dim]

  nst run photo.jpg a.jpg b.jpg --mask sky.png --mask ground.png -o out.png   [dim](a in the sky, b below)[/dim]

  nst run --from-record out.png -o again.png   [dim](the same run again: settings, seed, inputs)[/dim]

  nst run --from-record out.png other.jpg -o other.png --steps 100   [dim](its settings, another photo)[/dim]

  nst run photo.jpg style.jpg -o out.png --loss mean-color:0.5,power=1   [dim](a plug-in loss term)[/dim]

  nst run photo.jpg style.jpg -o out.png --config run.toml --steps 100

  nst run photo.jpg style.jpg -o out.png --progress jsonl   [dim](JSON events on stdout)[/dim]

  nst run photo.jpg style.jpg -o out.png --size 2048 --checkpoint-every 50   [dim](state in out.png.resume.pt)[/dim]

  nst run photo.jpg style.jpg -o out.png --size 2048 --checkpoint-every 50 --resume   [dim](go on after Ctrl-C)[/dim]

  nst run photo.jpg style.jpg -o out.png --size 4096 --on-oom retry   [dim](if memory runs out mid-run)[/dim]

[bold]Run records[/bold]

  Every output carries the settings, seed, versions and input paths that made it: in the PNG text
  (key nst-record) and in OUT.json next to it. --no-record writes neither.

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
    output: Annotated[Path, _option("Where to write the result: .png .jpg .jpeg .webp .tif .tiff (atomically).",
                                    OUTPUT, "--output", "-o")],
    content: Annotated[Path | None, typer.Argument(metavar="CONTENT", show_default=False,
                                                   help="The photo to stylise (with --from-record: "
                                                        "default the recorded one).")] = None,
    styles: Annotated[list[Path] | None, typer.Argument(metavar="STYLE", show_default=False,
                                                        help="One or more style images (several are blended; "
                                                             "with --from-record: default the recorded ones).")] = None,
    save_every: Annotated[int | None, _option("Also save the image every N steps, as OUT.stepN.ext.", OUTPUT)] = None,
    checkpoint_every: Annotated[int | None, _option(
        "Save the run's state every N steps in OUT.resume.pt (atomically; also when SIGINT/SIGTERM stops the run), "
        "so that --resume can continue it; a finished run deletes the file. Not gradient checkpointing.",
        OUTPUT)] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", show_default=False, rich_help_panel=OUTPUT,
        help="Continue the stopped run whose state is in OUT.resume.pt, at its scale and step; give the same "
             "inputs and settings (the seed may be left out). L-BFGS keeps only its last move.")] = False,
    record: Annotated[bool | None, typer.Option(
        "--record/--no-record", show_default=False, rich_help_panel=FILES,
        help="Store the run record (settings, seed, versions, input paths) in the PNG's text and in OUT.json. "
             "Default: on.")] = None,
    from_record: Annotated[Path | None, _option("Repeat a run: settings, seed and inputs from FILE, an image "
                                                "written by nst run or its .json record. CONTENT, STYLE and "
                                                "options given here override the record's.", FILES,
                                                "--from-record")] = None,
    preset: Annotated[str | None, _option("Start from a preset (`nst list presets`); your options override it.",
                                          FILES)] = None,
    config: Annotated[Path | None, _option("A TOML file with the long options as keys (size = 512, style-layers "
                                           "= [...]); command-line options override it.", FILES, "--config")] = None,
    strength: Annotated[float | None, _option(
        "One slider from content (0) to style (1); 0.5 changes nothing. It multiplies the style weight "
        "(--style-weight, else the preset's or 1): weight = style-weight × 10^(4 × (strength − 0.5)), so "
        "0 → ÷100, 0.25 → ÷10, 0.75 → ×10, 1 → ×100. The GIMP dialog's strength slider is this × 100.",
        LOOK)] = None,
    preserve_color: Annotated[str | None, _option(
        "Keep the content's colours: none; luminance (style only the brightness, Gatys et al. 2016); "
        "histogram (recolour the style images to the content's colours first).", LOOK,
        default=DEFAULTS.preserve_color)] = None,
    mask: Annotated[list[str] | None, _option(
        "Where a style applies: a grey or alpha image, white/opaque = style, black/transparent = content, soft "
        "edges blend. Give one --mask per style image, in the same order; 'none' = the whole image. Outside "
        "every mask the content is kept.", LOOK, "--mask")] = None,
    size: Annotated[int | None, _option("Longest side of the output in pixels.", SIZE, default=DEFAULTS.size)] = None,
    steps: Annotated[int | None, _option("Optimiser steps per scale.", SIZE, default=DEFAULTS.steps)] = None,
    scales: Annotated[int | None, _option("Coarse-to-fine scales. Default: as many as fit from --min-scale-size "
                                          "to --size.", SIZE)] = None,
    step_decay: Annotated[float | None, _option("Steps of each finer scale relative to the one before, in (0, 1]: "
                                                "0.5 halves them at every scale (the large scales cost the most).",
                                                SIZE, default=DEFAULTS.step_decay)] = None,
    fit_memory: Annotated[bool | None, typer.Option(
        "--fit-memory/--no-fit-memory", show_default=False, rich_help_panel=SIZE,
        help="When --size does not fit the device's free memory, work at the largest size that does (a warning "
             "says how much smaller) instead of refusing. Default: off.")] = None,
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
    precision: Annotated[str | None, _option("float32; or bf16 / fp16: the network runs in half precision "
                                             "(~3x faster where the chip computes it natively, less memory), the "
                                             "losses stay float32; auto: bf16 on such chips (CUDA Ampere or newer, "
                                             "CPUs with AMX or AVX512-BF16), else float32. The start line says "
                                             "which.", START, default=DEFAULTS.precision)] = None,
    on_oom: Annotated[str | None, _option(
        "When the device runs out of memory mid-run: fail (a one-line error), or retry: switch on gradient "
        "checkpointing, then bf16, and go on from the best image so far (a warning says what changed).", START,
        default=DEFAULTS.on_oom)] = None,
    progress: Annotated[ProgressMode, typer.Option(help="rich (a bar), plain (lines), jsonl (JSON events on stdout) "
                                                   "or none. auto: rich on a terminal, else plain.",
                                                   rich_help_panel=OUTPUT)] = ProgressMode.auto,
) -> None:
    """Stylise CONTENT with one or more STYLE images and write the result to OUT.

    The seed, device and working sizes are printed first, so a run can be repeated with --seed;
    OUT also carries its run record, so `nst run --from-record OUT -o OUT2` repeats it.

    Progress goes to stderr; with --progress jsonl, JSON events go to stdout (PROGRESS_JSONL.md).
    """
    if from_record is None:
        if content is None:
            raise typer.BadParameter("give CONTENT and STYLE (or --from-record FILE)", param_hint="'CONTENT'")
        if not styles:
            raise typer.BadParameter("give at least one STYLE image after CONTENT (or --from-record FILE)",
                                     param_hint="'STYLE'")
    command_line = {setting.key: ctx.params[setting.param] for setting in SETTINGS}
    with make_reporter(progress) as reporter, StopOnSignal() as stop:
        try:
            job = prepare(content, tuple(styles or ()), output, command_line, config, reporter, from_record, resume)
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
