"""``nst batch``: many pictures with one command, on this machine or on a Ray cluster.

Order: plug-ins and settings (preset < config file < command line < a manifest row), the jobs
(:mod:`nst_cli.batch_plan`: inputs, output names, collisions), every style, mask and starting
image read once (a bad one is a user error before any work), every name and layer checked, what
is done already; then the executor runs the rest. This process reads the inputs and writes the
outputs (atomically) and ``OUTDIR/batch.jsonl`` as items finish; the workers only see bytes.
A failed item is reported and the others go on; Ctrl-C stops the running items, which save
their best image, and the same command later goes on with what is left.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
import json
import math
import os
from pathlib import Path
import time
from typing import Annotated, Any

import typer

import nst_core
from nst_core import NSTError, Registries
from nst_core.batch import BatchItem, EncodedImage, ItemEvent, ItemResult, Job
from nst_core.batch.items import failed
from nst_core.errors import ConfigError
from nst_core.image import FORMATS

from nst_cli import executors, exit_codes, messages, run_options
from nst_cli.batch_plan import (DEFAULT_NAME, NAME_FIELDS, SUMMARY, BatchJob, Digests, check_collisions,
                                expand_inputs, is_done, job_key, output_path, read_manifest, read_summary,
                                render_name)
from nst_cli.batch_render import BatchInfo, BatchReporter, BatchTally, make_batch_reporter
from nst_cli.record import cli_fields
from nst_cli.registries import load_registries
from nst_cli.reported import reported_errors
from nst_cli.run_options import OUTPUT, option
from nst_cli.settings import RunSettings, resolve
from nst_cli.signals import StopOnSignal
from nst_cli.tables import print_table

JOBS = "Jobs and output names"

EPILOG = """\
[bold]Examples[/bold]

  nst batch photos/ --style starry_night.jpg -o out/   [dim](every image in photos/)[/dim]

  nst batch 'photos/**/*.jpg' --recursive --style a.jpg -o out/ --name '{rel}_{style}.{ext}'

  nst batch photo.jpg --style a.jpg --style b.jpg --style c.jpg --grid -o sheet/   [dim](one output per style)[/dim]

  nst batch @list.txt --style a.jpg --style b.jpg --style-blend 0.7,0.3 -o out/ --preset fast

  nst batch --manifest jobs.csv -o out/   [dim](per-row content, styles, name and settings)[/dim]

  nst batch photos/ --style a.jpg -o out/ --devices cuda:0,cuda:1

  nst batch photos/ --style a.jpg -o out/ --ray-address auto   [dim](on a Ray cluster: nst-core[ray])[/dim]

  nst batch --status out/

[bold]Resuming[/bold]

  An output that exists and whose run record has the same inputs, settings, seed and format is
  skipped, so after Ctrl-C (the running items save their best image) the same command goes on.
  Without --seed each item's seed comes from its input images, so it is the same every time.
  --force redoes everything.

[bold]Exit codes[/bold]

  0 every item done (or done before); 1 user error, nothing run; 2 usage error;
  4 some items failed (the others were written; see OUTDIR/batch.jsonl);
  130 / 143 interrupted by SIGINT / SIGTERM (finished items kept; run the same command to go on)
"""


def _manifest_settings(command_line: Mapping[str, Any], row: Mapping[str, Any], config_file: Path | None,
                       registries: Registries, where: str) -> RunSettings:
    try:
        return resolve({**command_line, **row}, config_file, registries)
    except NSTError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _check_settings(settings: RunSettings, styles: Sequence[Path], masks: Sequence[Path | None] | None,
                    where: str) -> None:
    config = settings.config
    if settings.save_every is not None or settings.checkpoint_every is not None:
        raise ConfigError(f"{where}: save-every and checkpoint-every are options of nst run, not of nst batch")
    if config.style_blend is not None and len(config.style_blend) != len(styles):
        raise ConfigError(f"{where}: --style-blend has {len(config.style_blend)} weight(s) for {len(styles)} style "
                          f"image(s); give one each (with --grid each output has one style: leave it out)")
    if masks is not None and len(masks) != len(styles):
        raise ConfigError(f"{where}: {len(masks)} mask(s) for {len(styles)} style image(s); give one per style "
                          f"image, in the same order ('none' for the whole image)")


def plan_jobs(inputs: Sequence[str], styles: Sequence[Path], outdir: Path, *, command_line: Mapping[str, Any],
              config_file: Path | None, registries: Registries, recursive: bool = False, grid: bool = False,
              manifest: Path | None = None, template: str = DEFAULT_NAME, fmt: str = "png",
              warn: Callable[[str], None] = lambda message: None) -> list[BatchJob]:
    """Every job of the batch, named and checked; raises :class:`NSTError` before any work."""
    base = resolve(command_line, config_file, registries)
    contents = expand_inputs(inputs, recursive=recursive, outdir=outdir, warn=warn)
    rows = read_manifest(manifest) if manifest is not None else []
    if not contents and not rows:
        raise ConfigError("no content images: give INPUTS (files, folders, globs or @list.txt) or --manifest")
    if contents and not styles:
        raise ConfigError("give at least one --style image for the INPUTS")
    fields: dict[str, Any] = {"ext": fmt}
    jobs: list[BatchJob] = []

    def add(content: Path, rel: str, combo: tuple[Path, ...], masks: tuple[Path | None, ...] | None,
            settings: RunSettings, name: str) -> None:
        fields.update(stem=content.stem, name=content.name, parent=content.absolute().parent.name, rel=rel,
                      style="+".join(s.stem for s in combo), index=len(jobs) + 1)
        item_id, output = output_path(outdir, render_name(name, fields), name)
        jobs.append(BatchJob(item_id, content, combo, masks, output, settings))

    if contents:
        _check_settings(base, styles if not grid else styles[:1], base.masks if not grid else None,
                        "the command line")
    for content in contents:
        if grid:
            for i, style in enumerate(styles):
                masks: tuple[Path | None, ...] | None = None if base.masks is None else (base.masks[i],)
                add(content.path, content.rel, (style,), masks, base, template)
        else:
            add(content.path, content.rel, tuple(styles), base.masks, base, template)
    if grid and base.masks is not None and len(base.masks) != len(styles):
        raise ConfigError(f"{len(base.masks)} --mask for {len(styles)} --style image(s); give one per style")
    cache: dict[str, RunSettings] = {}
    for row in rows:
        key = json.dumps(row.settings, sort_keys=True, default=str)
        if key not in cache:
            cache[key] = _manifest_settings(command_line, row.settings, config_file, registries, row.where)
        settings = cache[key]
        combo = row.styles or tuple(styles)
        if not combo:
            raise ConfigError(f"{row.where}: no style (give a \"styles\" column or --style)")
        row_masks = row.masks if row.masks is not None else settings.masks
        _check_settings(settings, combo, row_masks, row.where)
        add(row.content, row.content.with_suffix("").name, tuple(combo), row_masks, settings, row.name or template)
    check_collisions(jobs, template)
    return jobs


def check_shared_inputs(jobs: Sequence[BatchJob]) -> dict[Path, EncodedImage]:
    """Read (and decode, to check) every style, mask and starting image once: a bad one would fail
    every job, so it is a user error now. Returns their bytes, shared by every item."""
    shared: dict[Path, EncodedImage] = {}
    for job in jobs:
        init = job.settings.init_image
        for path in (*job.styles, *(m for m in job.masks or () if m is not None), *([init] if init else [])):
            if path not in shared:
                nst_core.read_image(path)  # ImageError: one line naming the file
                shared[path] = EncodedImage.from_file(path)
    return shared


def check_names(jobs: Sequence[BatchJob], registries: Registries) -> None:
    """Every backbone, loss term, schedule and layer the jobs name (the backbone is built once per
    distinct setting on the CPU, then dropped), before any work."""
    seen: set[str] = set()
    for job in jobs:
        config = job.settings.config.replace(device="cpu", seed=None)
        key = repr(config)
        if key not in seen:
            seen.add(key)
            nst_core.load_model(config, registries=registries)


def make_item(job: BatchJob, shared: Mapping[Path, EncodedImage]) -> BatchItem:
    """The job as a :class:`BatchItem`: the content's bytes read now, the shared images reused."""
    settings = job.settings
    init = settings.init_image
    return BatchItem(job.id, EncodedImage.from_file(job.content), tuple(shared[s] for s in job.styles),
                     settings.config,
                     masks=None if job.masks is None else tuple(None if m is None else shared[m] for m in job.masks),
                     init=shared[init] if init is not None else None, extension=job.output.suffix.lower(),
                     record=settings.record,
                     record_extra=cli_fields(job.content, job.styles, job.masks, init, settings.strength,
                                             settings.base_style_weight))


def items_of(jobs: Sequence[BatchJob], shared: Mapping[Path, EncodedImage]) -> Iterator[Job]:
    """Items read one at a time as workers become free; a content that cannot be read is a failed result."""
    for job in jobs:
        try:
            yield make_item(job, shared)
        except OSError as exc:
            yield failed(job.id, f"{job.content}: cannot read the file ({exc.strerror or exc})",
                         extension=job.output.suffix.lower())
        except NSTError as exc:
            yield failed(job.id, str(exc), extension=job.output.suffix.lower())


class Summary:
    """``OUTDIR/batch.jsonl``: a line per item as it ends (appended, flushed to disk)."""

    def __init__(self, outdir: Path) -> None:
        self.path = outdir / SUMMARY

    def add(self, result: ItemResult, job: BatchJob, output: Path | None, key: str | None) -> None:
        entry = {"item": result.id, "status": result.status,
                 "output": None if output is None else str(output.absolute()),
                 "seconds": round(result.seconds, 3), "loss": result.loss if math.isfinite(result.loss) else None,
                 "error": result.error, "attempts": result.attempts, "steps": result.steps, "worker": result.worker,
                 "content": str(job.content.absolute()), "key": key,
                 "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


def run_jobs(jobs: Sequence[BatchJob], outdir: Path, make_executor: Callable[[], Any], reporter: BatchReporter,
             stop: StopOnSignal, *, force: bool = False) -> tuple[BatchTally, int]:
    """Skip what is done, run the rest on ``make_executor()`` (not made when nothing is left), write
    each output and its summary line as it ends."""
    started = time.perf_counter()
    summary_lines = read_summary(outdir)
    digests = Digests()
    keys = {job.id: job_key(job, digests) for job in jobs}
    todo = [job for job in jobs if force or not is_done(job, keys[job.id], summary_lines)]
    shared = check_shared_inputs(todo)
    summary = Summary(outdir)
    tally = BatchTally(skipped=len(jobs) - len(todo), total=len(jobs), summary=summary.path)
    if not todo:
        reporter.begin(BatchInfo(total=len(jobs), todo=0, skipped=tally.skipped, outdir=outdir, workers="no workers"))
        reporter.end(tally)
        return tally, exit_codes.OK
    with make_executor() as executor:  # a cluster that cannot be reached stops here, before OUTDIR is made
        outdir.mkdir(parents=True, exist_ok=True)
        reporter.begin(BatchInfo(total=len(jobs), todo=len(todo), skipped=tally.skipped, outdir=outdir,
                                 workers=executor.describe()))
        _run(todo, shared, executor, reporter, stop, summary, tally, keys)
    tally.elapsed = time.perf_counter() - started
    reporter.end(tally)
    if stop():
        return tally, stop.exit_code
    return tally, exit_codes.SOME_FAILED if tally.failed else exit_codes.OK


def _run(todo: Sequence[BatchJob], shared: Mapping[Path, EncodedImage], executor: Any, reporter: BatchReporter,
         stop: StopOnSignal, summary: Summary, tally: BatchTally, keys: Mapping[str, str | None]) -> None:
    by_id = {job.id: job for job in todo}

    def on_event(event: ItemEvent) -> None:
        if event.kind == "start":
            reporter.item_start(event, by_id[event.item].output)
        elif event.kind == "step":
            reporter.item_step(event)
        else:
            reporter.item_retry(event)

    for result in executor.run(items_of(todo, shared), should_stop=stop, on_event=on_event):
        job = by_id[result.id]
        for note in result.notes:
            reporter.warning(f"{result.id}: {note}")
        written = None
        if result.data is not None:
            try:
                job.output.parent.mkdir(parents=True, exist_ok=True)
                written = result.save(job.output)
            except (NSTError, OSError) as exc:
                result = replace(result, status="failed", data=None, error=f"could not write the output: {exc}")
        setattr(tally, result.status, getattr(tally, result.status) + 1)
        summary.add(result, job, written, keys[job.id])
        reporter.item_done(result, written)


def show_status(outdir: Path) -> int:
    """``nst batch --status OUTDIR``: each item's last line of the summary; 4 when some failed."""
    path = outdir / SUMMARY
    if not path.is_file():
        raise ConfigError(f"{outdir}: no {SUMMARY} here; give the OUTDIR of an nst batch run")
    latest = read_summary(outdir)
    rows = [[e["item"], e.get("status", "?"), e.get("output") or "",
             f"{e['seconds']:.1f}" if isinstance(e.get("seconds"), (int, float)) else "",
             f"{e['loss']:.4g}" if isinstance(e.get("loss"), (int, float)) else "", e.get("error") or ""]
            for e in sorted(latest.values(), key=lambda e: e["item"])]
    print_table(["item", "status", "output", "seconds", "loss", "error"], rows, title=str(path))
    counts = {status: sum(1 for e in latest.values() if e.get("status") == status)
              for status in ("done", "failed", "stopped")}
    messages.say(f"{len(latest)} items: {counts['done']} done, {counts['failed']} failed, {counts['stopped']} "
                 f"stopped (in {path})")
    return exit_codes.SOME_FAILED if counts["failed"] else exit_codes.OK


@run_options.with_run_options
def batch(
    ctx: typer.Context,
    inputs: Annotated[list[str] | None, typer.Argument(
        metavar="INPUTS", show_default=False,
        help="Content images: files, folders (their images), globs ('photos/*.jpg') or @list.txt (one a "
             "line).")] = None,
    style: Annotated[list[Path] | None, option(
        "A style image; repeat for several (blended into each output as nst run does, or one output each "
        "with --grid).", JOBS, "--style", "-s")] = None,
    outdir: Annotated[Path | None, option("The folder the outputs go to (created if missing), with the summary "
                                          "batch.jsonl.", OUTPUT, "--output", "-o")] = None,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", rich_help_panel=JOBS,
                                            help="Folders and ** globs include their subfolders.")] = False,
    grid: Annotated[bool, typer.Option("--grid", rich_help_panel=JOBS,
                                       help="Every content with every style, one output each (a contact "
                                            "sheet), instead of the styles blended.")] = False,
    manifest: Annotated[Path | None, option(
        "Jobs from a .jsonl or .csv file: content, styles (a list, or a;b in CSV), masks, name, and any "
        "setting (steps, style-weight ...) that overrides the command line for that job. Paths are "
        "relative to the file.", JOBS, "--manifest")] = None,
    name: Annotated[str, typer.Option(
        "--name", rich_help_panel=JOBS,
        help="Output name template: " + ", ".join(f"{{{k}}} {v}" for k, v in NAME_FIELDS.items()) + ". "
             "Two jobs with one name are refused before anything runs.")] = DEFAULT_NAME,
    fmt: Annotated[str, typer.Option("--format", rich_help_panel=JOBS,
                                     help="{ext} in --name: png, jpg, webp or tif.")] = "png",
    force: Annotated[bool, typer.Option("--force", rich_help_panel=JOBS,
                                        help="Redo every item, also those already done.")] = False,
    status: Annotated[Path | None, option("Show the summary of the batch in this OUTDIR (each item's last "
                                          "status, output, time, loss and error) and exit.", OUTPUT,
                                          "--status")] = None,
    devices: executors.Devices = None,
    workers: executors.Workers = None,
    ray: executors.Ray = False,
    ray_address: executors.RayAddress = None,
    cpus_per_worker: executors.CpusPerWorker = None,
) -> None:
    """Stylise many images: every INPUT with the --style image(s), outputs in OUTDIR.

    Takes every option of nst run. Outputs are written as they finish, with a run record each, and
    OUTDIR/batch.jsonl says how each item went. An item that fails is reported and the others go on.
    Run the same command again to skip what is done (after Ctrl-C, or to retry the failures).

    Progress goes to stderr; with --progress jsonl, JSON events go to stdout (PROGRESS_JSONL.md).
    """
    if status is not None:
        code = show_status(status)
        if code:
            raise typer.Exit(code)
        return
    if outdir is None:
        raise typer.BadParameter("give the output folder (or --status OUTDIR)", param_hint="'--output' / '-o'")
    if f".{fmt.lower().lstrip('.')}" not in FORMATS:
        raise typer.BadParameter(f"{fmt!r}: use png, jpg, webp or tif", param_hint="'--format'")
    with make_batch_reporter(run_options.progress_mode(ctx.params)) as reporter, StopOnSignal() as stop:
        with reported_errors(reporter):
            registries = load_registries(reporter.warning)
            command_line = run_options.command_line(ctx.params)
            config_file = run_options.config_file(ctx.params)
            jobs = plan_jobs(inputs or [], style or [], outdir, command_line=command_line, config_file=config_file,
                             registries=registries, recursive=recursive, grid=grid, manifest=manifest,
                             template=name, fmt=fmt.lower().lstrip("."), warn=reporter.warning)
            check_names(jobs, registries)
            executors.check_where(ray, ray_address, cpus_per_worker)
            device = devices or jobs[0].settings.config.device
            tally, code = run_jobs(jobs, outdir, lambda: executors.make_executor(ray, ray_address, device, workers,
                                                                             cpus_per_worker, registries),
                                   reporter, stop, force=force)
    if code == exit_codes.SOME_FAILED:
        messages.error(f"{tally.failed} of {tally.total} items failed (the others were written); see "
                       f"nst batch --status {outdir}")
    elif code != exit_codes.OK:
        messages.say(f"interrupted by {stop.name}: the finished items are kept; run the same command to go on")
    if code != exit_codes.OK:
        raise typer.Exit(code)
