"""A long video on many workers: chunks stylized as chains on the executors of :mod:`nst_core.batch`.

:func:`stylize_video_chunked` does, for a clip of n frames at the working size (longest side
``config.size``):

1. **Plan.** The scene cuts of the clip (:func:`~nst_core.video.chain.detect_scene_cuts`; not with
   ``temporal=False``) and :func:`~nst_core.video.chain.plan_chunks`: every shot is a chunk of its
   own; a shot longer than ``chunk_length`` frames is cut into chunks of ``chunk_length`` frames,
   each beginning ``overlap`` frames before the previous one ends.
2. **Run.** Each chunk becomes a :class:`ChunkJob`: its content frames (PNG at the working size)
   and the style images as bytes, the config and the chain's options, so it can travel to a
   worker on another machine. The executor schedules the jobs as it schedules ``nst batch``'s
   items (:class:`~nst_core.batch.LocalExecutor`: a thread per device; a
   :class:`~nst_core.batch.RayExecutor`: Ray actors, a chunk whose worker died goes to another up
   to ``max_attempts`` times); the worker keeps its backbone loaded for every chunk it gets and
   runs the chunk as its own chain (:func:`~nst_core.video.chain.stylize_video` over the chunk's
   frames: the first frame like a still, the others from the warped previous one).
3. **Seams.** When every chunk is done, the frames two chunks share are crossfaded
   (:func:`~nst_core.video.chain.blend_overlap`: frame i of an overlap of o frames is
   ``(1 − a_i) · earlier + a_i · later`` with ``a_i = (i + 1) / (o + 1)``), so the look moves
   from one chain to the next over the overlap instead of jumping at one frame; chunks that meet
   at a scene cut need no blend. The frames are streamed into the output (video with the source's
   timing and audio, or an image sequence), one chunk in memory at a time.

**Resumable.** ``frames_dir`` (default ``<output>.frames``) holds ``chunks.json`` (the settings,
the scene cuts and the chunks) and a folder per chunk, ``chunk_000/`` ..., each a chain's frames
folder (``frame_00001.png`` ..., ``chain.json``). A chunk whose frames are all there is not run
again; the same call after a stop, a crash or a failed chunk runs only what is missing, and
settings that differ from ``chunks.json`` are refused (one line). The granularity depends on
the executor:

- an executor whose workers share this machine's files (``shares_filesystem``, the local one):
  the worker's chain writes each frame into its chunk's folder the moment it is done
  (atomically), so a stopped or killed run loses at most the frames being made;
- one whose workers may be elsewhere (Ray): a chunk's new frames come back as PNG bytes when it
  ends (finished, or stopped by ``should_stop`` with the frames so far) and this process writes
  them; a chunk whose worker dies loses the frames that worker had made (per chunk). A chunk
  begun earlier takes its finished frames and ``chain.json`` along and goes on from its first
  missing frame.

A chunk that fails (a bad setting found on the worker, out of memory, a worker that died
``max_attempts`` times) is reported in one line (``ChunkProgress`` ``chunk-done`` with status
``failed``); the other chunks go on and are kept, and the run ends ``"failed"`` without an
output, so that the same call later redoes only the failed chunks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
import io
import json
import os
from pathlib import Path
import tempfile
import time
from typing import TYPE_CHECKING, Any, Literal

from torch import Tensor

from nst_core.batch.items import EncodedImage, ItemEvent, ItemResult, one_line
from nst_core.config import StyleConfig
from nst_core.errors import ConfigError, NSTError
from nst_core.image import ImageSource, image_encoder, read_image, resize, save_bytes, save_text
from nst_core.registry import Registries, collect_registries
from nst_core.video.chain import (CHAIN_FILE, CHUNKS_FILE, DEFAULT_SCENE_CUT, DEFAULT_TEMPORAL_WEIGHT,
                                  ChainOptions, Chunk, _check_disk, _check_output,
                                  _prepare_frames_dir, _settings, detect_scene_cuts, frame_path, iter_assembled,
                                  load_settings_file, plan_chunks, stylize_video, working_size)
from nst_core.video.consistency import DEFAULT_DILATION
from nst_core.video.flow import DEFAULT_FLOW, get_flow_estimator
from nst_core.video.io import VideoInfo, VideoReader, open_video, write_video

if TYPE_CHECKING:
    from nst_core.batch.local import LocalExecutor
    from nst_core.batch.ray_executor import RayExecutor
    from nst_core.batch.worker import EventSink, Worker

DEFAULT_CHUNK_LENGTH = 48
"""Frames per chunk (2 s at 24 fps): a seam every ``length − overlap`` frames, and enough chunks
for a few workers on a clip of some seconds."""

DEFAULT_OVERLAP = 4
"""Frames two neighbouring chunks of one shot share (crossfaded)."""

CHUNKS_FORMAT = "nst-video-chunks/1"


def chunk_dir(frames_dir: str | os.PathLike, index: int) -> Path:
    """``frames_dir/chunk_<index:03d>``: the frames folder of chunk ``index``."""
    return Path(frames_dir) / f"chunk_{index:03d}"


def present_frames(folder: Path, frames: int) -> int:
    """How many of a chunk's ``frames`` frames are in ``folder``, counted from its first (a
    chain goes on from its first missing frame)."""
    count = 0
    while count < frames and frame_path(folder, count).exists():
        count += 1
    return count


def encode_png(image: Tensor) -> bytes:
    """``(1, 3, H, W)`` in [0, 1] as PNG file contents (8 bits per channel)."""
    buffer = io.BytesIO()
    image_encoder(image, "frame.png")(buffer)
    return buffer.getvalue()


class _FrameBytesReader(VideoReader):
    """A :class:`VideoReader` over frames given as encoded images (a chunk on a worker that does
    not see the source file). ``label`` names the frames in the chain's settings and messages."""

    def __init__(self, label: str, frames: Sequence[bytes], fps: Fraction) -> None:
        if not frames:
            raise ConfigError(f"{label}: a chunk without frames")
        first = read_image(frames[0], label=f"{label} frame 0").rgb
        info = VideoInfo(source=label, kind="images", width=int(first.shape[-1]), height=int(first.shape[-2]),
                         fps=fps, time_base=1 / fps, pts=tuple(range(len(frames))), end=float(len(frames) / fps))
        super().__init__(info)
        self._data = tuple(frames)

    def frames(self, first: int = 0, stop: int | None = None) -> Iterator[tuple[int, Tensor]]:
        stop = len(self._data) if stop is None else min(stop, len(self._data))
        for index in range(first, stop):
            yield index, read_image(self._data[index], label=f"{self.info.source} frame {index}").rgb


@dataclass(frozen=True)
class ChunkJob:
    """One chunk as a :class:`~nst_core.batch.worker.Task`: everything a worker needs, as bytes.

    ``frames``: the chunk's content frames, PNG at the working size; ``styles``: the style images'
    file contents; ``config`` (seed fixed; the worker sets its own device) and ``options`` (the
    chain's); ``label`` names the chunk's frames in its chain's settings. ``frames_dir``: the
    chunk's folder where the worker shares this machine's files (the chain writes each frame
    there as it finishes); else None, and ``done`` / ``chain_state`` are the frames and the
    ``chain.json`` text an earlier call finished, so the chain goes on from there. The result's
    ``frames`` are the PNGs of the frames this run made (none with ``frames_dir``), from frame
    ``record["first"]`` of the chunk on; ``record["chain"]`` is the chain's ``chain.json``.
    """

    id: str
    chunk: Chunk
    label: str
    frames: tuple[bytes, ...] = field(repr=False)
    styles: tuple[EncodedImage, ...] = field(repr=False)
    config: StyleConfig
    options: ChainOptions
    fps: Fraction
    done: tuple[bytes, ...] = field(default=(), repr=False)
    chain_state: str | None = field(default=None, repr=False)
    frames_dir: str | None = None
    extension: str = ".png"

    def _seeded(self, scratch: Path) -> Path:
        folder = scratch / "frames"
        folder.mkdir()
        for index, data in enumerate(self.done):
            frame_path(folder, index).write_bytes(data)
        if self.chain_state is not None:
            (folder / CHAIN_FILE).write_text(self.chain_state)
        return folder

    def run(self, worker: Worker, emit: EventSink, should_stop: Callable[[], bool] | None,
            attempts: int) -> ItemResult:
        """Stylize the chunk as one chain on ``worker`` (its device, its loaded backbone); emits
        ``start`` (``step``: frames already there) and a ``frame`` event per finished frame."""
        started = time.perf_counter()
        styles = [read_image(style.data, label=style.name).rgb for style in self.styles]
        config = self.config.replace(device=worker.device)
        model = worker.model(config)
        reader = _FrameBytesReader(self.label, self.frames, self.fps)
        with tempfile.TemporaryDirectory(prefix="nst-chunk-") as scratch:
            folder = Path(self.frames_dir) if self.frames_dir is not None else self._seeded(Path(scratch))
            emit(ItemEvent(self.id, "start", worker=worker.name, step=present_frames(folder, self.chunk.frames),
                           total=self.chunk.frames, seed=config.seed))

            def on_progress(p: Any) -> None:
                if p.kind == "frame":
                    emit(ItemEvent(self.id, "frame", worker=worker.name, step=p.done, total=p.frames,
                                   elapsed=p.elapsed))

            result = stylize_video(reader, styles, None, config, frames_dir=folder, model=model,
                                   registries=worker.registries, on_progress=on_progress, should_stop=should_stop,
                                   **asdict(self.options))
            first = len(self.done)
            data = () if self.frames_dir is not None else tuple(
                frame_path(folder, i).read_bytes() for i in range(first, result.frames_done))
            chain = json.loads((folder / CHAIN_FILE).read_text())
        finished = result.status == "finished"
        return ItemResult(self.id, "done" if finished else "stopped", frames=data,
                          record={"chain": chain, "first": first}, seconds=time.perf_counter() - started,
                          steps=sum(r.steps for r in result.records if r.mode != "resumed"), attempts=attempts,
                          worker=worker.name, notes=tuple(one_line(n) for n in result.notes),
                          error=None if finished else "stopped")


ChunkEventKind = Literal["plan", "chunk-start", "frame", "chunk-done", "chunk-retry"]


@dataclass(frozen=True)
class ChunkProgress:
    """Where a chunked run stands, handed to ``on_progress``.

    ``kind``: ``plan`` (once, before any chunk runs: ``chunks`` chunks, ``todo`` of them to run,
    ``scene_cuts``, ``worker`` describes the executor), ``chunk-start`` (a worker took ``chunk``;
    ``chunk_done`` of its frames were made before), ``frame`` (one more frame of ``chunk``:
    ``chunk_done`` of ``chunk.frames``), ``chunk-done`` (it ended: ``status`` ``done``,
    ``stopped`` or ``failed`` with ``message`` saying why in one line) and ``chunk-retry`` (its
    worker died; another one takes it). ``done`` of ``total`` counts chunk frames over all chunks
    (a frame in an overlap is made by both chunks and counts in each), earlier calls' included;
    ``frames`` is the clip's length; ``frames_per_minute`` and ``eta`` (seconds, None until a
    frame is made) are over the frames made by this call.
    """

    kind: ChunkEventKind
    chunk: Chunk | None
    chunks: int
    frames: int
    done: int
    total: int
    elapsed: float
    frames_per_minute: float
    eta: float | None
    chunk_done: int = 0
    todo: int = 0
    status: str = ""
    worker: str = ""
    message: str = ""
    attempts: int = 0
    scene_cuts: tuple[int, ...] = ()


@dataclass(frozen=True)
class ChunkedVideoResult:
    """What :func:`stylize_video_chunked` produced.

    ``status``: ``finished`` (every chunk done, the output written), ``stopped`` (``should_stop``:
    the finished frames are kept) or ``failed`` (``failures``: ``(chunk index, one line)`` per
    failed chunk; the others are kept, no output). ``ran``: the chunks this call gave to a worker
    (a chunk finished by an earlier call is not run again). ``frames_done``: frames of the clip
    whose every chunk has made them.
    """

    status: Literal["finished", "stopped", "failed"]
    output: Path | None
    frames_dir: Path
    info: VideoInfo
    chunks: tuple[Chunk, ...]
    scene_cuts: tuple[int, ...]
    ran: tuple[int, ...]
    failures: tuple[tuple[int, str], ...]
    frames_done: int
    elapsed: float
    workers: str = ""
    notes: tuple[str, ...] = ()


def _encoded_styles(styles: ImageSource | Sequence[ImageSource]) -> list[EncodedImage]:
    """Each style as file contents: a file's own bytes, anything else (a tensor, an array) as PNG."""
    sources: Sequence[ImageSource] = styles if isinstance(styles, (list, tuple)) else [styles]  # type: ignore[list-item]
    if not sources:
        raise ConfigError("give at least one style image")
    encoded = []
    for i, style in enumerate(sources):
        if isinstance(style, (str, os.PathLike)):
            read_image(style)  # a bad file: one line now, not on every worker
            encoded.append(EncodedImage.from_file(style))
        else:
            encoded.append(EncodedImage(f"style {i}", encode_png(read_image(style).rgb)))
    return encoded


class _PlanFile:
    """``frames_dir/chunks.json``: the settings, the scene cuts and the chunks (written once)."""

    def __init__(self, frames_dir: Path, settings: dict) -> None:
        self.path = frames_dir / CHUNKS_FILE
        self.settings = json.loads(json.dumps(settings))
        self.saved = load_settings_file(self.path, CHUNKS_FORMAT, "chunks", self.settings)

    def plan(self) -> tuple[list[int], list[Chunk]] | None:
        if self.saved is None:
            return None
        return [int(c) for c in self.saved["cuts"]], [Chunk(*map(int, c)) for c in self.saved["chunks"]]

    def save(self, cuts: Sequence[int], chunks: Sequence[Chunk]) -> None:
        data = {"format": CHUNKS_FORMAT, "settings": self.settings, "cuts": list(cuts),
                "chunks": [[c.index, c.start, c.stop, c.overlap] for c in chunks]}
        save_text(self.path, json.dumps(data, indent=1, sort_keys=True) + "\n")


class _Run:
    """The driver's side of one call: the jobs (read lazily, as workers get free), the
    executor's events and results turned into :class:`ChunkProgress`, the frames that come back
    written into the chunks' folders."""

    def __init__(self, reader: VideoReader, chunks: Sequence[Chunk], frames_dir: Path, job: dict[str, Any],
                 shared: bool, on_progress: Callable[[ChunkProgress], None] | None) -> None:
        self.reader, self.chunks, self.frames_dir, self.job, self.shared = reader, chunks, frames_dir, job, shared
        self.on_progress = on_progress
        self.shape = working_size(reader.info, job["config"].size)
        self.counts = {c.index: present_frames(chunk_dir(frames_dir, c.index), c.frames) for c in chunks}
        self.initial = dict(self.counts)
        self.by_id = {f"chunk_{c.index:03d}": c for c in chunks}
        self.started = time.perf_counter()
        self.ran: list[int] = []
        self.failures: dict[int, str] = {}

    @property
    def todo(self) -> list[Chunk]:
        return [c for c in self.chunks if self.counts[c.index] < c.frames]

    def report(self, kind: ChunkEventKind, chunk: Chunk | None, **fields: Any) -> None:
        if self.on_progress is None:
            return
        elapsed = time.perf_counter() - self.started
        made = sum(max(0, self.counts[k] - self.initial[k]) for k in self.counts)
        done, total = sum(self.counts.values()), sum(c.frames for c in self.chunks)
        fpm = made * 60.0 / elapsed if elapsed > 0 else 0.0
        self.on_progress(ChunkProgress(kind=kind, chunk=chunk, chunks=len(self.chunks),
                                       frames=self.reader.info.frames, done=done, total=total, elapsed=elapsed,
                                       frames_per_minute=fpm, eta=(total - done) * 60.0 / fpm if fpm > 0 else None,
                                       chunk_done=self.counts[chunk.index] if chunk is not None else 0, **fields))

    def jobs(self) -> Iterator[ChunkJob]:
        """A :class:`ChunkJob` per chunk that is not finished, made when the executor asks."""
        h, w = self.shape
        for chunk in self.todo:
            folder = chunk_dir(self.frames_dir, chunk.index)
            frames = tuple(encode_png(resize(frame, h, w)) for _, frame in self.reader.frames(chunk.start, chunk.stop))
            extra: dict[str, Any] = {}
            if self.shared:
                folder.mkdir(exist_ok=True)
                extra["frames_dir"] = str(folder)
            else:
                present = self.counts[chunk.index]
                extra["done"] = tuple(frame_path(folder, i).read_bytes() for i in range(present))
                if (folder / CHAIN_FILE).exists():
                    extra["chain_state"] = (folder / CHAIN_FILE).read_text()
            self.ran.append(chunk.index)
            yield ChunkJob(f"chunk_{chunk.index:03d}", chunk, f"{self.job['label']} frames {chunk.start}-"
                           f"{chunk.stop - 1}", frames, **{k: v for k, v in self.job.items() if k != "label"},
                           **extra)

    def on_event(self, event: ItemEvent) -> None:
        chunk = self.by_id.get(event.item)
        if chunk is None:
            return
        if event.kind == "start":
            self.counts[chunk.index] = event.step
            self.report("chunk-start", chunk, worker=event.worker)
        elif event.kind == "frame":
            self.counts[chunk.index] = event.step
            self.report("frame", chunk, worker=event.worker)
        elif event.kind == "retry":
            self.counts[chunk.index] = self.initial[chunk.index]  # what the lost worker made is gone
            self.report("chunk-retry", chunk, message=event.message)

    def _write(self, chunk: Chunk, result: ItemResult) -> None:
        """A remote chunk's frames and chain.json into its folder (each file atomically)."""
        if not result.frames or result.record is None:
            return
        folder = chunk_dir(self.frames_dir, chunk.index)
        folder.mkdir(exist_ok=True)
        save_text(folder / CHAIN_FILE, json.dumps(result.record["chain"], indent=1, sort_keys=True) + "\n")
        first = int(result.record["first"])
        for i, data in enumerate(result.frames):
            save_bytes(frame_path(folder, first + i), data)

    def finish(self, result: ItemResult) -> None:
        chunk = self.by_id.get(result.id)
        if chunk is None:
            return
        status, message = result.status, result.error or ""
        try:
            self._write(chunk, result)
        except (NSTError, OSError) as exc:
            status, message = "failed", f"could not write its frames: {one_line(exc)}"
        self.counts[chunk.index] = present_frames(chunk_dir(self.frames_dir, chunk.index), chunk.frames)
        if status == "failed":
            self.failures[chunk.index] = message
        elif status == "done" and self.counts[chunk.index] < chunk.frames:
            status = "failed"
            self.failures[chunk.index] = message = "its worker returned fewer frames than the chunk has"
        self.report("chunk-done", chunk, status=status, worker=result.worker, message=message,
                    attempts=result.attempts)

    def frames_done(self) -> int:
        """Frames of the clip that every chunk holding them has made."""
        return sum(all(self.counts[c.index] > f - c.start for c in self.chunks if c.start <= f < c.stop)
                   for f in range(self.reader.info.frames))

    def chunk_frames(self) -> Iterator[list[Tensor]]:
        """Each chunk's frames, read from its folder when the assembly gets to it."""
        for chunk in self.chunks:
            folder = chunk_dir(self.frames_dir, chunk.index)
            yield [read_image(frame_path(folder, i)).rgb for i in range(chunk.frames)]


def _plan(plan_file: _PlanFile, reader: VideoReader, config: StyleConfig, options: ChainOptions, length: int,
          overlap: int, registries: Registries) -> tuple[list[int], list[Chunk]]:
    """The saved plan of an earlier call, or scene cuts (temporal runs only) and chunks now."""
    saved = plan_file.plan()
    if saved is not None:
        return saved
    cuts = detect_scene_cuts(reader, config.size, flow=options.flow, dilation=options.dilation,
                             threshold=options.scene_cut, registries=registries) if options.temporal else []
    return cuts, plan_chunks(reader.info.frames, length, overlap, cuts)


# over 60 lines: half of it is the docstring of every argument
def stylize_video_chunked(
        source: str | os.PathLike | VideoReader, styles: ImageSource | Sequence[ImageSource],
        output: str | os.PathLike, config: StyleConfig | None = None, *,
        executor: LocalExecutor | RayExecutor | None = None, chunk_length: int = DEFAULT_CHUNK_LENGTH,
        overlap: int = DEFAULT_OVERLAP, temporal: bool = True, temporal_weight: float = DEFAULT_TEMPORAL_WEIGHT,
        long_term: Sequence[int] = (), first_steps: int | None = None, next_steps: int | None = None,
        flow: str = DEFAULT_FLOW, dilation: int = DEFAULT_DILATION, scene_cut: float = DEFAULT_SCENE_CUT,
        frames_dir: str | os.PathLike | None = None, start: float = 0.0, duration: float | None = None,
        every: int = 1, fps: float | None = None, max_frames: int | None = None, codec: str | None = None,
        crf: int | None = None, copy_audio: bool = True, registries: Registries | None = None,
        on_progress: Callable[[ChunkProgress], None] | None = None, should_stop: Callable[[], bool] | None = None,
        **overrides: Any) -> ChunkedVideoResult:
    """Stylize a video in chunks on an executor's workers; see the module docstring.

    :param executor: a :class:`~nst_core.batch.LocalExecutor` (default: one on ``config.device``,
        every GPU for ``"auto"``) or a :class:`~nst_core.batch.RayExecutor`; the caller closes it.
    :param chunk_length: frames per chunk (a shot longer than this is split).
    :param overlap: frames two chunks of one shot share, crossfaded (0 to ``chunk_length − 1``).
    :param on_progress: called with a :class:`ChunkProgress` for the plan, each chunk's start,
        each frame, each chunk's end and each retry, in the caller's thread.
    :param should_stop: checked a few times a second; True: no chunk starts, the running ones stop
        at their next step (their finished frames are kept) and the result is ``"stopped"``.

    Every other argument is :func:`~nst_core.video.chain.stylize_video`'s; ``output`` is needed
    (a video file or an image sequence). Bad input is one line (:class:`NSTError`) before any work.
    """
    import nst_core

    started = time.perf_counter()
    config = config or StyleConfig()
    if overrides:
        config = config.replace(**overrides)
    options = ChainOptions(temporal=temporal, temporal_weight=temporal_weight, long_term=tuple(long_term),
                           first_steps=first_steps, next_steps=next_steps, flow=flow, dilation=dilation,
                           scene_cut=scene_cut)
    plan_chunks(1, chunk_length, overlap)  # a bad length or overlap: one line now
    if output is None:
        raise ConfigError("a chunked run needs an output (a video file or an image sequence)")
    reader = source if isinstance(source, VideoReader) else open_video(
        source, start=start, duration=duration, every=every, fps=fps, max_frames=max_frames)
    encoded = _encoded_styles(styles)
    registries = registries or collect_registries()
    if temporal:
        get_flow_estimator(flow, registries)  # an unknown name: one line now
    _check_output(output, codec)
    frames_dir = _prepare_frames_dir(frames_dir, output, refuse=CHAIN_FILE)
    if config.seed is None:
        config = config.replace(seed=0)  # one seed for every chunk and every resumed call
    nst_core.load_model(config.replace(device="cpu"), registries=registries)  # names and layers, before any work
    settings = {**_settings(reader.info, [read_image(e.data, label=e.name).rgb for e in encoded], config,
                            options.as_dict(config)), "chunks": {"length": chunk_length, "overlap": overlap}}
    plan_file = _PlanFile(frames_dir, settings)
    cuts, chunks = _plan(plan_file, reader, config, options, chunk_length, overlap, registries)
    executor = executor if executor is not None else _default_executor(config, registries)
    label = str(Path(reader.info.source).name) if reader.info.kind == "video" else reader.info.source
    run = _Run(reader, chunks, frames_dir, {"label": label, "styles": tuple(encoded), "config": config,
                                            "options": options, "fps": reader.info.fps},
               getattr(executor, "shares_filesystem", False), on_progress)
    _check_disk(frames_dir if frames_dir.exists() else frames_dir.parent,
                sum(c.frames - run.counts[c.index] for c in chunks), run.shape)
    frames_dir.mkdir(exist_ok=True)
    if plan_file.saved is None:
        plan_file.save(cuts, chunks)
    workers = executor.describe()
    run.report("plan", None, todo=len(run.todo), worker=workers, scene_cuts=tuple(cuts))
    for result in executor.run(run.jobs(), should_stop=should_stop, on_event=run.on_event):
        run.finish(result)
    complete = not run.todo
    status: Literal["finished", "stopped", "failed"] = \
        "failed" if run.failures else "finished" if complete else "stopped"
    notes: list[str] = list(reader.info.notes)
    written = None
    if status == "finished":
        written = write_video(iter_assembled(chunks, run.chunk_frames()), output, timing=reader.info, codec=codec,
                              crf=crf, copy_audio=copy_audio, notes=notes)
    return ChunkedVideoResult(status=status, output=written, frames_dir=frames_dir, info=reader.info,
                              chunks=tuple(chunks), scene_cuts=tuple(cuts), ran=tuple(run.ran),
                              failures=tuple(sorted(run.failures.items())), frames_done=run.frames_done(),
                              elapsed=time.perf_counter() - started, workers=workers, notes=tuple(notes))


def _default_executor(config: StyleConfig, registries: Registries) -> LocalExecutor:
    from nst_core.batch.local import LocalExecutor

    return LocalExecutor(config.device, registries=registries)


__all__ = ["DEFAULT_CHUNK_LENGTH", "DEFAULT_OVERLAP", "ChunkJob", "ChunkProgress", "ChunkedVideoResult",
           "chunk_dir", "encode_png", "present_frames", "stylize_video_chunked"]
