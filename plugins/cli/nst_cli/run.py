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
from pathlib import Path
from typing import Annotated, Any

from torch import Tensor
import typer

import nst_core
from nst_core import NSTError, Progress, RunPlan, StyleResult
from nst_core.errors import ConfigError
from nst_core.image import LoadedImage

from nst_cli import exit_codes, options, output_guard, run_options
from nst_cli.output_guard import intermediate_path
from nst_cli.record import RunRecord, cli_fields, load_record, sidecar_path
from nst_cli.registries import load_registries
from nst_cli.render import Outcome, Reporter, RunInfo, make_reporter
from nst_cli.reported import reported_errors
from nst_cli.resume_file import ResumeFile
from nst_cli.run_options import FILES, OUTPUT
from nst_cli.settings import RunSettings, resolve
from nst_cli.signals import StopOnSignal

def check_output(output: Path, inputs: Iterable[Path], *, record: bool = False, resume: bool = False,
                 save_every: int | None = None, total: int | None = None) -> None:
    """Refuse, before any work, a run whose output, record, resume file or intermediates would
    overwrite an input or cannot be written; then remove temporaries a killed run left
    (:mod:`nst_cli.output_guard`)."""
    output_guard.check_output(output, inputs, record=record, resume=resume, save_every=save_every, total=total)
    output_guard.remove_stale_parts(output)


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
    check_output(output, [*images_in, *mask_paths, *([record.path] if record else []),
                          *([config_file] if config_file else [])],
                 record=settings.record, resume=settings.checkpoint_every is not None or resume,
                 save_every=settings.save_every, total=output_guard.total_steps(config))
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
    if settings.preset is not None:  # resolved here, not by the engine: the record names it too
        preset = {"kind": "preset", "name": settings.preset, **registries.provenance("presets", settings.preset)}
        plan = replace(plan, plugins=(*plan.plugins, preset))
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


_option = run_options.option


@run_options.with_run_options
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
    from_record: Annotated[Path | None, _option("Repeat a run: settings, seed and inputs from FILE, an image "
                                                "written by nst run or its .json record. CONTENT, STYLE and "
                                                "options given here override the record's.", FILES,
                                                "--from-record")] = None,
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
    command_line = run_options.command_line(ctx.params)
    config = run_options.config_file(ctx.params)
    with make_reporter(run_options.progress_mode(ctx.params)) as reporter, StopOnSignal() as stop:
        with reported_errors(reporter):
            job = prepare(content, tuple(styles or ()), output, command_line, config, reporter, from_record, resume)
            outcome, code = execute(job, reporter, stop)
        reporter.done(outcome)
    if code != exit_codes.OK:
        raise typer.Exit(code)
