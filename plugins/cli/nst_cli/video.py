"""``nst video``: stylize a video or an image sequence with temporal consistency (Ruder et al. 2016).

A thin front-end over :func:`nst_core.video.stylize_video` (one chain) and, with any of the
"Where it runs" options (``--devices``, ``--workers``, ``--ray``, ``--ray-address``,
``--chunk-length``, ``--overlap``: the same as ``nst batch``'s, :mod:`nst_cli.executors`),
:func:`nst_core.video.stylize_video_chunked` (chunks on several workers): the artist's options of
``nst run`` (one shared set, :mod:`nst_cli.run_options`), the video's own options, progress
(frames done, frames per minute, ETA, chunks) on stderr or as jsonl events on stdout, and Ctrl-C
that keeps the finished frames so the same command goes on.
"""

from __future__ import annotations

from pathlib import Path
import sys
from typing import Annotated, Any

import typer

from nst_core.errors import ConfigError

from nst_cli import executors, exit_codes, messages, run_options
from nst_cli.registries import load_registries
from nst_cli.render import JsonlStream, ProgressMode
from nst_cli.render import duration as format_duration
from nst_cli.reported import reported_errors
from nst_cli.run_options import OUTPUT, option
from nst_cli.settings import resolve
from nst_cli.signals import StopOnSignal

VIDEO = "Video"

EPILOG = """\
[bold]Examples[/bold]

  nst video clip.mp4 starry_night.jpg -o out.mp4

  nst video clip.mp4 starry_night.jpg -o out.mp4 --start 5 --duration 2   [dim](try a look on two seconds)[/dim]

  nst video frames/%05d.png style.jpg -o styled/%05d.png --size 768   [dim](image sequences in and out)[/dim]

  nst video clip.mp4 style.jpg -o out.mp4 --no-temporal   [dim](every frame on its own: the flickering look)[/dim]

  nst video clip.mp4 style.jpg -o out.mp4 --long-term 2,4 --temporal-weight 100

  nst video clip.mp4 style.jpg -o out.mp4 --devices cuda:0,cuda:1   [dim](chunks on two GPUs, seams crossfaded)[/dim]

  nst video clip.mp4 style.jpg -o out.mp4 --ray-address auto --chunk-length 96   [dim](on a Ray cluster)[/dim]

Finished frames are kept in OUT.frames/ as they finish; after Ctrl-C the same command goes on from
the first missing frame (on Ray: from the first chunk not finished). The audio is copied, not
re-encoded. Exit codes: 0 written, 1 user error, 4 some chunks failed (the others are kept: run
the same command to redo them), 130 / 143 interrupted.
"""

NOT_FOR_VIDEO = {"mask": "--mask", "save_every": "--save-every", "checkpoint_every": "--checkpoint-every",
                 "init": "--init"}
"""Options of `nst run` that do not apply to a video (each frame's start is the chain's)."""


class _Progress(JsonlStream):
    """Frames done / total, frames per minute and ETA: a line per frame on stderr, or jsonl (a
    :class:`~nst_cli.render.JsonlStream`: inside ``with``, other prints go to stderr)."""

    def __init__(self, mode: ProgressMode) -> None:
        super().__init__()
        self.jsonl = mode == ProgressMode.jsonl
        self.quiet = mode == ProgressMode.none

    def __enter__(self) -> _Progress:
        if self.jsonl:
            super().__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.jsonl:
            super().__exit__(*exc_info)

    def emit(self, event: str, **fields: Any) -> None:
        self._emit(event, **fields)

    def __call__(self, p: Any) -> None:
        if p.kind != "frame":
            return
        if self.jsonl:
            self.emit("frame", frame=p.frame, frames=p.frames, done=p.done, elapsed=round(p.elapsed, 3),
                      frames_per_minute=round(p.frames_per_minute, 3),
                      eta=None if p.eta is None else round(p.eta, 3), scene_cut=p.scene_cut)
        elif not self.quiet:
            eta = f", about {format_duration(p.eta)} left" if p.eta is not None and p.done < p.frames else ""
            cut = " (scene cut: the chain restarts)" if p.scene_cut else ""
            print(f"frame {p.done}/{p.frames}{cut}, {p.frames_per_minute:.2f} frames/min{eta}", file=sys.stderr,
                  flush=True)

    def chunk(self, p: Any) -> None:
        """A :class:`~nst_core.video.ChunkProgress`: jsonl ``chunks``, ``chunk-start``, ``chunk-frame``,
        ``chunk-done`` and ``chunk-retry`` events, or a line on stderr."""
        if self.jsonl:
            event, fields = _chunk_event(p)
            self.emit(event, **fields)
        elif not self.quiet:
            line = _chunk_line(p)
            if line:
                print(line, file=sys.stderr, flush=True)

    def warning(self, text: str) -> None:
        if self.jsonl:
            self.emit("warning", message=messages.one_line(text))
        else:
            messages.warn(text)

    def error(self, text: str, code: int) -> None:
        if self.jsonl:
            self.emit("error", message=messages.one_line(text), exit_code=code)


def _chunk_event(p: Any) -> tuple[str, dict[str, Any]]:
    """The jsonl event of a chunk progress (PROGRESS_JSONL.md); chunks are counted from 0."""
    if p.kind == "plan":
        return "chunks", {"chunks": p.chunks, "todo": p.todo, "frames": p.frames, "total": p.total,
                          "scene_cuts": list(p.scene_cuts), "workers": p.worker}
    chunk = p.chunk
    if p.kind == "chunk-start":
        return "chunk-start", {"chunk": chunk.index, "start": chunk.start, "stop": chunk.stop, "worker": p.worker,
                               "chunk_done": p.chunk_done}
    if p.kind == "frame":
        return "chunk-frame", {"chunk": chunk.index, "frame": chunk.start + p.chunk_done - 1,
                               "chunk_done": p.chunk_done, "chunk_frames": chunk.frames, "done": p.done,
                               "total": p.total, "elapsed": round(p.elapsed, 3),
                               "frames_per_minute": round(p.frames_per_minute, 3),
                               "eta": None if p.eta is None else round(p.eta, 3)}
    if p.kind == "chunk-retry":
        return "chunk-retry", {"chunk": chunk.index, "message": messages.one_line(p.message)}
    return "chunk-done", {"chunk": chunk.index, "status": p.status, "worker": p.worker, "attempts": p.attempts,
                          "done": p.done, "total": p.total,
                          "error": messages.one_line(p.message) if p.status == "failed" else None}


def _chunk_line(p: Any) -> str | None:
    """The stderr line of a chunk progress (None: nothing to say); chunks are counted from 1."""
    if p.kind == "plan":
        cuts = f"; scene cuts at {', '.join(map(str, p.scene_cuts))}" if p.scene_cuts else ""
        return f"{p.chunks} chunks ({p.todo} to run) of {p.frames} frames on {p.worker}{cuts}"
    name = f"chunk {p.chunk.index + 1}/{p.chunks} (frames {p.chunk.start}-{p.chunk.stop - 1})"
    if p.kind == "chunk-start":
        return f"{name} on {p.worker}"
    if p.kind == "frame":
        eta = f", about {format_duration(p.eta)} left" if p.eta is not None and p.done < p.total else ""
        return f"frame {p.done}/{p.total} (chunk {p.chunk.index + 1}/{p.chunks}), {p.frames_per_minute:.2f} " \
               f"frames/min{eta}"
    if p.kind == "chunk-retry":
        return f"{name}: {messages.one_line(p.message)}"
    if p.status == "failed":
        return f"{name} failed: {messages.one_line(p.message)}"
    return f"{name} done" if p.status == "done" else None


def _long_term(text: str | None) -> tuple[int, ...]:
    if not text:
        return ()
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--long-term wants earlier frame offsets like 2,4, got {text!r}") from None
    if any(v < 2 for v in values):
        raise ConfigError(f"--long-term offsets are 2 or more (1 is the short-term term), got {text!r}")
    return values


@run_options.with_run_options
def video(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(metavar="IN", show_default=False,
                                          help="A video file (mp4, mov, webm, mkv, gif), a folder of frames or a "
                                               "pattern like frames/%05d.png.")],
    styles: Annotated[list[Path], typer.Argument(metavar="STYLE", show_default=False,
                                                 help="One or more style images (several are blended).")],
    output: Annotated[str, option("The stylized video (its extension picks the container) or an image "
                                  "sequence (a folder or a pattern like out/%05d.png).", OUTPUT,
                                  "--output", "-o")],
    temporal: Annotated[bool, typer.Option("--temporal/--no-temporal", rich_help_panel=VIDEO,
                                           help="Temporal consistency (warped start and temporal loss); "
                                                "--no-temporal stylizes every frame on its own.")] = True,
    temporal_weight: Annotated[float | None, option(
        "λ_t relative to J of the chain's first frame (higher: steadier, less restyling of moving parts).",
        VIDEO)] = None,
    long_term: Annotated[str | None, option("Also hold frames this many back, e.g. 2,4 (Ruder's long-term "
                                            "consistency).", VIDEO)] = None,
    first_steps: Annotated[int | None, option("Steps of a chain's first frame. Default: --steps.", VIDEO)] = None,
    next_steps: Annotated[int | None, option("Steps of every later frame (it starts from the warped previous "
                                             "one). Default: half the first frame's.", VIDEO)] = None,
    start: Annotated[float, typer.Option(rich_help_panel=VIDEO, help="Seconds to skip at the start.")] = 0.0,
    duration: Annotated[float | None, option("Seconds to stylize. Default: to the end.", VIDEO)] = None,
    every: Annotated[int, typer.Option(rich_help_panel=VIDEO, help="Keep every Nth frame.")] = 1,
    codec: Annotated[str | None, option("Video codec (libx264, libx265, libvpx-vp9, prores_ks ...). Default: "
                                        "the container's usual one that the installed encoder offers.",
                                        VIDEO)] = None,
    crf: Annotated[int | None, option("Quality for x264/x265/VP9 (lower is better; x264 default 18).",
                                      VIDEO)] = None,
    audio: Annotated[bool, typer.Option("--audio/--no-audio", rich_help_panel=VIDEO,
                                        help="Copy the audio stream (not re-encoded where the container can "
                                             "hold it).")] = True,
    frames_dir: Annotated[Path | None, option("Where finished frames are kept (resume). Default: OUT.frames.",
                                              VIDEO)] = None,
    devices: executors.Devices = None,
    workers: executors.Workers = None,
    ray: executors.Ray = False,
    ray_address: executors.RayAddress = None,
    cpus_per_worker: executors.CpusPerWorker = None,
    chunk_length: Annotated[int | None, option(
        "Frames per chunk when several workers share the clip (cut at scene cuts first). Default: 48.",
        executors.WHERE, "--chunk-length")] = None,
    overlap: Annotated[int | None, option(
        "Frames two neighbouring chunks share, crossfaded so the seam does not jump. Default: 4 (at most "
        "half of --chunk-length).",
        executors.WHERE, "--overlap")] = None,
) -> None:
    """Stylize the video IN with STYLE image(s), frame by frame with temporal consistency, into OUT.

    Takes the artist's options of nst run (--size, --steps, --strength, --preserve-color, --style-loss,
    --preset, --config ...). The frame rate, length, rotation and audio of IN are kept. With any
    option of "Where it runs" the clip is cut into chunks, each stylized as its own chain on a
    worker (local devices or a Ray cluster, as nst batch), and the overlaps are crossfaded.
    """
    from nst_core.video.chain import DEFAULT_TEMPORAL_WEIGHT

    where = {"devices": devices, "workers": workers, "ray": ray or None, "ray_address": ray_address,
             "cpus_per_worker": cpus_per_worker, "chunk_length": chunk_length, "overlap": overlap}
    with _Progress(run_options.progress_mode(ctx.params)) as reporter, StopOnSignal() as stop:
        with reported_errors(reporter):
            for param, flag in NOT_FOR_VIDEO.items():
                if ctx.params.get(param):
                    raise ConfigError(f"{flag} does not apply to nst video")
            registries = load_registries(reporter.warning)
            settings = resolve(run_options.command_line(ctx.params), run_options.config_file(ctx.params), registries)
            options = dict(temporal=temporal,
                           temporal_weight=DEFAULT_TEMPORAL_WEIGHT if temporal_weight is None else temporal_weight,
                           long_term=_long_term(long_term), first_steps=first_steps, next_steps=next_steps,
                           start=start, duration=duration, every=every, codec=codec, crf=crf, copy_audio=audio,
                           frames_dir=frames_dir, registries=registries, should_stop=stop)
            if any(value is not None for value in where.values()):
                result = _chunked(source, list(styles), output, settings.config, where, reporter, options)
            else:
                from nst_core.video import stylize_video

                result = stylize_video(source, list(styles), output, settings.config, on_progress=reporter,
                                       **options)
        _finish(result, reporter, stop)


def _chunked(source: str, styles: list[Path], output: str, config: Any, where: dict[str, Any], reporter: _Progress,
             options: dict[str, Any]) -> Any:
    """The clip in chunks on the executor the "Where it runs" options name."""
    from nst_core.video.chunked import DEFAULT_CHUNK_LENGTH, DEFAULT_OVERLAP, stylize_video_chunked

    executors.check_where(bool(where["ray"]), where["ray_address"], where["cpus_per_worker"])
    length = DEFAULT_CHUNK_LENGTH if where["chunk_length"] is None else where["chunk_length"]
    overlap = min(DEFAULT_OVERLAP, length // 2) if where["overlap"] is None else where["overlap"]
    with executors.make_executor(bool(where["ray"]), where["ray_address"], where["devices"] or config.device,
                                 where["workers"], where["cpus_per_worker"], options["registries"]) as executor:
        return stylize_video_chunked(source, styles, output, config, executor=executor, chunk_length=length,
                                     overlap=overlap, on_progress=reporter.chunk, **options)


def _finish(result: Any, reporter: _Progress, stop: StopOnSignal) -> None:
    """The last event and line of a one-chain or a chunked run, and its exit code."""
    failures = getattr(result, "failures", ())
    for note in result.notes:
        reporter.warning(note)
    if reporter.jsonl:
        written = None if result.output is None else str(result.output)
        reporter.emit("video-done", status=result.status, output=written,
                      frames=result.info.frames, done=result.frames_done, elapsed=round(result.elapsed, 3),
                      scene_cuts=list(result.scene_cuts))
    if result.status == "failed":
        messages.error(f"{len(failures)} of {len(result.chunks)} chunks failed (the others are kept in "
                       f"{result.frames_dir}); run the same command to redo them")
        raise typer.Exit(exit_codes.SOME_FAILED)
    if result.status == "stopped":
        messages.say(f"interrupted by {stop.name}: {result.frames_done} of {result.info.frames} frames are in "
                     f"{result.frames_dir}; run the same command to go on")
        raise typer.Exit(stop.exit_code)
    if not reporter.jsonl and not reporter.quiet:
        messages.say(f"wrote {result.output} ({result.info.frames} frames in {format_duration(result.elapsed)})")
