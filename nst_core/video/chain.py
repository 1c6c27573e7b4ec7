"""Stylize a video frame by frame as a chain (Ruder, Dosovitskiy & Brox 2016), resumably.

For frames ``t = 0 .. n-1`` of the source, at the working size (longest side ``config.size``):

1. frame 0 (and the first frame after a scene cut) is stylized like a still image, with
   ``first_steps`` steps and the config's coarse-to-fine scales;
2. frame t > 0: the backward flow ŵ (t -> t-1) and forward flow w (t-1 -> t) of the *input*
   frames give the reliability mask c (:func:`~nst_core.video.consistency.reliability`); the
   run starts from ``c · warp(S_{t-1}, ŵ) + (1 − c) · C_t`` (``config.init = "image"``, one
   scale, ``next_steps`` steps) and minimizes J(G) + λ_t · Σ_j mean(c_j (G − ω_j)²), the
   temporal term (:mod:`nst_core.video.temporal`) with ω_1 = warp(S_{t-1}, ŵ) and, for
   ``long_term=(2, 4, ...)``, earlier stylized frames warped by the flow t -> t-j with
   closest-first masks;
3. a scene cut, more than ``scene_cut`` (default 50 %) of the pixels inconsistent, restarts the
   chain at step 1.

**The temporal weight is relative to J.** λ_t = ``temporal_weight`` · J(S_first), where J(S_first)
is the objective of the chain's first stylized frame: a mean squared deviation of 1 (the whole
[0, 1] range everywhere) would cost ``temporal_weight`` times the whole objective. The absolute
loss scale of J changes with the size, the style image and the loss weights (by orders of
magnitude), so a fixed absolute weight (Ruder's 1e3 for their Torch losses) does not carry over;
this one does. The default :data:`DEFAULT_TEMPORAL_WEIGHT` was measured with
``benchmarks/bench_video.py`` (see the README's video table).

**Resumable.** Each finished frame is written atomically as ``frames_dir/frame_00001.png`` ...
the moment it is done, with ``frames_dir/chain.json`` holding the settings; a stopped run (or a
killed process) called again with the same arguments starts at the first missing frame, reading
back the frame before it. Settings that differ from the folder's are refused (one line). The
output video is assembled from the PNGs at the end.

**Chunks** for executors (several workers): :func:`plan_chunks` cuts a clip at scene cuts, else
into fixed lengths with a few frames of overlap; :func:`run_chunk` stylizes one chunk as its own
chain (an executor calls it on a worker); :func:`blend_overlap` crossfades the frames two chunks
share and :func:`assemble_chunks` joins the chunks' frames.
:func:`nst_core.video.chunked.stylize_video_chunked` puts these together on the executors of
:mod:`nst_core.batch` (several local devices or a Ray cluster), resumably.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
import hashlib
import json
import math
import os
from pathlib import Path
import shutil
import time
from typing import Any, Literal

from torch import Tensor

from nst_core.config import LossSpec, StyleConfig, config_to_dict
from nst_core.errors import ConfigError, ResourceError, ResumeError
from nst_core.image import ImageSource, fit_longest_side, read_image, resize, save_image, save_text
from nst_core.planning import Model
from nst_core.progress import Progress
from nst_core.registry import Registries, collect_registries
from nst_core.video.consistency import DEFAULT_DILATION, inconsistent_fraction, reliability
from nst_core.video.flow import DEFAULT_FLOW, FlowEstimator, estimate_flow, get_flow_estimator
from nst_core.video.io import VideoInfo, VideoReader, open_video, sequence_path, write_video
from nst_core.video.temporal import closest_first, temporal_guides
from nst_core.video.warp import warp

DEFAULT_TEMPORAL_WEIGHT = 50.0
"""λ_t / J(first frame). Measured (benchmarks/results/video_cpu.md): at 256 px, 16 frames of a
24 fps clip, 50 gives 0.13x the warping error of frame-by-frame at 0.95x its style loss, 500 gives
0.09x at 1.05x (128 px, 6 frames: 0.17x at 0.91x and 0.13x at 0.97x)."""

DEFAULT_NEXT_STEPS_FRACTION = 0.5
"""Frames after the first run ``round(fraction · first_steps)`` steps by default: the warped
start is most of the work. Measured (benchmarks/results/video_cpu.md): 24 instead of 12 later
steps changed neither the warping error (0.13x) nor the style loss (0.96x vs 0.97x). Ruder et al.
used 1000 after 2000."""

DEFAULT_SCENE_CUT = 0.5
"""More than this share of inconsistent pixels between two frames is a scene cut."""

CHAIN_FILE = "chain.json"
CHAIN_FORMAT = "nst-video-chain/1"
CHUNKS_FILE = "chunks.json"
"""The bookkeeping file of a chunked run (:mod:`nst_core.video.chunked`) in its frames folder."""


@dataclass(frozen=True)
class VideoProgress:
    """Where a video run stands, handed to ``on_progress``.

    ``kind`` is ``"step"`` (an optimizer step of frame ``frame``; ``step`` is the engine's
    :class:`~nst_core.progress.Progress`) or ``"frame"`` (frame ``frame`` was written).
    ``done`` counts finished frames of ``frames`` (resumed ones included); ``frames_per_minute``
    and ``eta`` (seconds, None until a frame is done) are over the frames stylized by this run.
    """

    kind: Literal["step", "frame"]
    frame: int
    frames: int
    done: int
    elapsed: float
    frames_per_minute: float
    eta: float | None
    step: Progress | None = None
    scene_cut: bool = False


@dataclass(frozen=True)
class FrameRecord:
    """How one frame was made: ``mode`` ``"first"`` (a chain start), ``"cut"`` (a start after a
    scene cut), ``"temporal"`` (warped start + temporal term), ``"independent"`` (temporal off)
    or ``"resumed"`` (made by an earlier call: its numbers come from the folder's chain.json); its
    J, steps, seconds (flow included) and the share of pixels whose flow was unreliable."""

    index: int
    mode: str
    loss: float
    steps: int
    seconds: float
    unreliable: float = 0.0


@dataclass(frozen=True)
class VideoResult:
    """What :func:`stylize_video` produced. ``status`` is ``"finished"`` (every frame done and,
    with an output, the video written) or ``"stopped"`` (``should_stop``: the frames so far are in
    ``frames_dir``; the same call again goes on)."""

    status: Literal["finished", "stopped"]
    output: Path | None
    frames_dir: Path
    info: VideoInfo
    records: tuple[FrameRecord, ...]
    scene_cuts: tuple[int, ...]
    elapsed: float
    notes: tuple[str, ...] = ()

    @property
    def frames_done(self) -> int:
        return len(self.records)


# --------------------------------------------------------------------------------- the chain

def working_size(info: VideoInfo, size: int) -> tuple[int, int]:
    """``(h, w)`` every frame is stylized at: the source's aspect, longest side ``size``."""
    return fit_longest_side(info.height, info.width, size)


def _quantize(image: Tensor) -> Tensor:
    """As a PNG stores it: 8 bits per channel (so a resumed chain continues from the same pixels)."""
    return (image.clamp(0, 1) * 255).round() / 255


def _style_hash(styles: Sequence[ImageSource]) -> list[str]:
    hashes = []
    for style in styles:
        rgb = read_image(style).rgb.contiguous().numpy()  # a tensor: read_image passes it through
        hashes.append(hashlib.sha256(rgb.tobytes()).hexdigest()[:16] + f"{tuple(rgb.shape)}")
    return hashes


def _settings(info: VideoInfo, styles: Sequence[ImageSource], config: StyleConfig, chain: Mapping[str, Any]) -> dict:
    """What a frames folder was made with. Not the device: a chain stopped on one device may go on
    on another (an executor's chunk goes to whichever worker is free), as ``nst batch``'s keys."""
    settings = config_to_dict(config)
    settings.pop("device", None)
    return {
        "source": {"path": str(Path(info.source).resolve()) if info.kind == "video" else info.source,
                   "start": info.start, "frames": info.frames, "every": info.every,
                   "size": [info.width, info.height]},
        "styles": _style_hash(styles),
        "config": settings,
        "chain": dict(chain),
    }


def load_settings_file(path: Path, file_format: str, kind: str, settings: dict) -> dict | None:
    """The saved JSON of a frames folder's settings file (``chain.json``, ``chunks.json``), or None
    when there is none; a file that cannot be read, of another ``file_format`` or whose
    ``"settings"`` differ from ``settings`` is a one-line :class:`ResumeError` (``kind`` names
    the file in it)."""
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ResumeError(f"{path}: cannot be read ({exc}); delete it (and the frames) to start again") from None
    if not isinstance(data, dict) or data.get("format") != file_format:
        raise ResumeError(f"{path}: is not an nst video {kind} file; choose another frames folder")
    saved = data.get("settings")
    if isinstance(saved, dict) and isinstance(saved.get("config"), dict):
        saved["config"].pop("device", None)  # a folder from before the device was dropped
    diff = _differences(saved, json.loads(json.dumps(settings)))
    if diff:
        raise ResumeError(f"{path.parent}: its frames were made with other settings: {'; '.join(diff[:3])}; "
                          f"use the same settings, another frames folder, or delete it to start again")
    return data


def _differences(saved: Any, now: Any, prefix: str = "") -> list[str]:
    if isinstance(saved, dict) and isinstance(now, dict):
        out = []
        for key in sorted(set(saved) | set(now)):
            out += _differences(saved.get(key), now.get(key), f"{prefix}{key}.")
        return out
    return [] if saved == now else [f"{prefix[:-1]} ({saved!r} there, {now!r} now)"]


class _ChainFile:
    """``frames_dir/chain.json``: the settings, each chain start's J (the temporal weight's
    reference) and how each frame was made, written atomically whenever it changes."""

    def __init__(self, frames_dir: Path, settings: dict) -> None:
        self.path = frames_dir / CHAIN_FILE
        saved = load_settings_file(self.path, CHAIN_FORMAT, "chain", settings)
        self.data = saved or {"format": CHAIN_FORMAT, "settings": settings, "reference": {}}

    def reference(self, index: int) -> float | None:
        value = self.data["reference"].get(str(index))
        return None if value is None else float(value)

    def references(self) -> dict[int, float]:
        return {int(k): float(v) for k, v in self.data["reference"].items()}

    def set_reference(self, index: int, value: float) -> None:
        self.data["reference"][str(index)] = value
        self.save()

    def set_frame(self, record: FrameRecord) -> None:
        self.data.setdefault("frames", {})[str(record.index)] = {
            "mode": record.mode, "loss": record.loss, "steps": record.steps, "seconds": round(record.seconds, 3),
            "unreliable": round(record.unreliable, 5)}
        self.save()

    def resumed(self, index: int) -> FrameRecord:
        """The record of a frame made by an earlier call (mode ``"resumed"``; NaN/0 if unknown)."""
        saved = self.data.get("frames", {}).get(str(index), {})
        return FrameRecord(index, "resumed", float(saved.get("loss", math.nan)), int(saved.get("steps", 0)),
                           float(saved.get("seconds", 0.0)), float(saved.get("unreliable", 0.0)))

    def save(self) -> None:
        save_text(self.path, json.dumps(self.data, indent=1, sort_keys=True) + "\n")


def frame_path(frames_dir: str | os.PathLike, index: int) -> Path:
    """``frames_dir/frame_<index + 1:05d>.png``: where frame ``index`` (0-based) is kept."""
    return sequence_path(os.fspath(frames_dir), index)


def _check_disk(frames_dir: Path, frames: int, shape: tuple[int, int]) -> None:
    """Refuse (one line), before anything is written, a run whose ``frames`` missing frames of
    ``shape`` ``(h, w)`` would not fit on the disk of ``frames_dir``: ~1.5 bytes per pixel as PNG."""
    need = frames * shape[0] * shape[1] * 1.5
    free = shutil.disk_usage(frames_dir).free
    if need > free:
        raise ResourceError(f"{frames_dir}: {frames} frames of {shape[1]}x{shape[0]} px need about "
                            f"{need / 2**30:.1f} GiB, only {free / 2**30:.1f} GiB free; choose a shorter piece, a "
                            f"smaller size or another frames folder")


@dataclass
class ChainOptions:
    """The chain's own settings (the config holds the image settings). See :func:`stylize_video`."""

    temporal: bool = True
    temporal_weight: float = DEFAULT_TEMPORAL_WEIGHT
    long_term: tuple[int, ...] = ()
    first_steps: int | None = None
    next_steps: int | None = None
    flow: str = DEFAULT_FLOW
    dilation: int = DEFAULT_DILATION
    scene_cut: float = DEFAULT_SCENE_CUT

    def __post_init__(self) -> None:
        if not isinstance(self.temporal_weight, (int, float)) or not math.isfinite(self.temporal_weight) \
                or self.temporal_weight < 0:
            raise ConfigError(f"temporal_weight must be a number >= 0, got {self.temporal_weight!r}")
        terms = tuple(self.long_term)
        if any(isinstance(j, bool) or not isinstance(j, int) or j < 2 for j in terms) or len(set(terms)) != len(terms):
            raise ConfigError(f"long_term must be distinct whole numbers >= 2 (frames back; 1 is always used), "
                              f"got {self.long_term!r}")
        self.long_term = tuple(sorted(terms))
        for name in ("first_steps", "next_steps"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}")
        if isinstance(self.dilation, bool) or not isinstance(self.dilation, int) or self.dilation < 0:
            raise ConfigError(f"dilation must be a whole number of pixels >= 0, got {self.dilation!r}")
        if not isinstance(self.scene_cut, (int, float)) or not 0 < self.scene_cut <= 1:
            raise ConfigError(f"scene_cut must be a share in (0, 1], got {self.scene_cut!r}")

    def steps(self, config: StyleConfig) -> tuple[int, int]:
        first = self.first_steps or config.steps
        following = self.next_steps or max(1, round(first * DEFAULT_NEXT_STEPS_FRACTION))
        return first, following

    def as_dict(self, config: StyleConfig) -> dict[str, Any]:
        first, following = self.steps(config)
        return {"temporal": self.temporal, "temporal_weight": self.temporal_weight, "long_term": list(self.long_term),
                "first_steps": first, "next_steps": following, "flow": self.flow, "dilation": self.dilation,
                "scene_cut": self.scene_cut}


class _Chain:
    """Runs frames ``first .. stop-1`` of a reader as one chain into ``frames_dir``."""

    def __init__(self, reader: VideoReader, styles: Sequence[ImageSource], config: StyleConfig,
                 options: ChainOptions, frames_dir: Path, *, registries: Registries, model: Any,
                 estimator: FlowEstimator | None, on_progress: Callable[[VideoProgress], None] | None,
                 should_stop: Callable[[], bool] | None, chain_file: _ChainFile, total: int) -> None:
        self.reader, self.styles, self.config, self.options = reader, list(styles), config, options
        self.frames_dir, self.registries, self.model, self.estimator = frames_dir, registries, model, estimator
        self.on_progress, self.should_stop, self.chain_file, self.total = on_progress, should_stop, chain_file, total
        self.shape = working_size(reader.info, config.size)
        self.records: list[FrameRecord] = []
        self.cuts: list[int] = []
        self.started = time.perf_counter()
        self.made = 0
        self.stopped = False
        self.done = 0

    # ---- progress
    def _report(self, kind: Literal["step", "frame"], frame: int, step: Progress | None = None,
                cut: bool = False) -> None:
        if self.on_progress is None:
            return
        elapsed = time.perf_counter() - self.started
        fpm = 60.0 * self.made / elapsed if self.made and elapsed > 0 else 0.0
        eta = (self.total - self.done) * 60.0 / fpm if fpm > 0 else None
        self.on_progress(VideoProgress(kind=kind, frame=frame, frames=self.total, done=self.done, elapsed=elapsed,
                                       frames_per_minute=fpm, eta=eta, step=step, scene_cut=cut))

    def _stylize(self, index: int, content: Tensor, config: StyleConfig, **kwargs: Any):
        import nst_core

        def progress(p: Progress) -> None:
            self._report("step", index, p)

        return nst_core.stylize(content, self.styles, config, registries=self.registries, model=self.model,
                                on_progress=progress if self.on_progress is not None else None,
                                should_stop=self.should_stop, **kwargs)

    def _flow(self, a: Tensor, b: Tensor) -> Tensor:
        assert self.estimator is not None, "a temporal chain has a flow estimator"
        return estimate_flow(self.estimator, a, b)

    # ---- one frame
    def _first(self, index: int, content: Tensor, cut: bool) -> tuple[Tensor | None, FrameRecord | None]:
        first_steps, _ = self.options.steps(self.config)
        t0 = time.perf_counter()
        result = self._stylize(index, content, self.config.replace(steps=first_steps))
        if result.status == "stopped":
            return None, None
        if self.chain_file.reference(index) is None:
            self.chain_file.set_reference(index, float(result.loss))
        return result.image, FrameRecord(index, "cut" if cut else "first", float(result.loss), result.steps,
                                         time.perf_counter() - t0)

    def _temporal(self, index: int, content: Tensor, history: deque, reference: float,
                  backward: Tensor, mask: Tensor, fraction: float) -> tuple[Tensor | None, FrameRecord | None]:
        """Frame ``index`` from the warped previous stylized frame; ``history`` holds
        ``(index, content, stylized)`` of earlier frames, newest last."""
        _, next_steps = self.options.steps(self.config)
        t0 = time.perf_counter()
        _, prev_content, prev_styl = history[-1]
        warped = warp(prev_styl, backward)
        init = (mask * warped + (1 - mask) * content).clamp(0, 1)
        targets, masks = [warped], [mask]
        for j in self.options.long_term:
            older = [h for h in history if h[0] == index - j]
            if not older:
                continue
            _, old_content, old_styl = older[0]
            bw = self._flow(content, old_content)
            fw = self._flow(old_content, content)
            targets.append(warp(old_styl, bw))
            masks.append(reliability(bw, fw, dilation=self.options.dilation))
        masks = closest_first(masks)
        weight = self.options.temporal_weight * abs(reference)
        config = self.config.replace(
            init="image", steps=next_steps, scales=1,
            extra_losses=(*self.config.extra_losses, LossSpec(name="temporal", weight=weight)))
        result = self._stylize(index, content, config, init_image=init, guides=temporal_guides(targets, masks))
        if result.status == "stopped":
            return None, None
        return result.image, FrameRecord(index, "temporal", float(result.loss), result.steps,
                                         time.perf_counter() - t0, fraction)

    def _independent(self, index: int, content: Tensor) -> tuple[Tensor | None, FrameRecord | None]:
        first_steps, _ = self.options.steps(self.config)
        t0 = time.perf_counter()
        result = self._stylize(index, content, self.config.replace(steps=first_steps))
        if result.status == "stopped":
            return None, None
        return result.image, FrameRecord(index, "independent", float(result.loss), result.steps,
                                         time.perf_counter() - t0)

    def frames(self, first: int, stop: int) -> Iterator[tuple[int, Tensor]]:
        """Content frames ``first .. stop-1`` at the working size ``(1, 3, h, w)``."""
        h, w = self.shape
        for index, frame in self.reader.frames(first, stop):
            yield index, frame if tuple(frame.shape[-2:]) == (h, w) else resize(frame, h, w)

    def run(self, first: int, stop: int) -> None:
        opts = self.options
        depth = max((1, *opts.long_term))
        # resume: from the first missing frame, reading back up to `depth` frames before it
        missing = next((i for i in range(first, stop) if not frame_path(self.frames_dir, i).exists()), stop)
        self.done = missing - first
        for i in range(first, missing):
            self.records.append(self.chain_file.resumed(i))
        if missing >= stop:
            return
        history: deque = deque(maxlen=depth)
        chain_start = max((k for k in self.chain_file.references() if first <= k < missing), default=first)
        reference = self.chain_file.reference(chain_start)
        read_from = max(first, missing - depth) if opts.temporal else missing
        for index, content in self.frames(read_from, stop):
            if index < missing:  # read back a finished frame for the chain
                styl = read_image(frame_path(self.frames_dir, index)).rgb
                history.append((index, content, resize(styl, *self.shape)))
                continue
            if self.should_stop is not None and self.should_stop():
                self.stopped = True
                return
            cut = False
            began = time.perf_counter()  # the frame's time includes its flow, mask and warp
            if not opts.temporal:
                image, record = self._independent(index, content)
            elif not history or reference is None or history[-1][0] != index - 1:
                image, record = self._first(index, content, cut=False)
                reference = self.chain_file.reference(index)
            else:
                prev_content = history[-1][1]
                backward = self._flow(content, prev_content)
                forward = self._flow(prev_content, content)
                mask = reliability(backward, forward, dilation=opts.dilation)
                fraction = inconsistent_fraction(mask)
                if fraction > opts.scene_cut:
                    cut = True
                    self.cuts.append(index)
                    history.clear()
                    image, record = self._first(index, content, cut=True)
                    reference = self.chain_file.reference(index)
                else:
                    image, record = self._temporal(index, content, history, reference, backward, mask, fraction)
            if image is None or record is None:
                self.stopped = True
                return
            image = _quantize(image)
            save_image(image, frame_path(self.frames_dir, index))
            record = replace(record, seconds=time.perf_counter() - began)
            self.chain_file.set_frame(record)
            history.append((index, content, image))
            self.records.append(record)
            self.made += 1
            self.done += 1
            self._report("frame", index, cut=cut)


def _prepare_frames_dir(frames_dir: str | os.PathLike | None, output: str | os.PathLike | None,
                        refuse: str | None = None) -> Path:
    """The frames folder (default ``<output>.frames``), checked; ``refuse``: the bookkeeping file
    of the other kind of run (one chain / chunks), whose folder this run must not mix with."""
    if frames_dir is None:
        if output is None:
            raise ConfigError("give an output or a frames_dir (where the finished frames are kept)")
        frames_dir = Path(f"{os.fspath(output).rstrip('/')}.frames")
    frames_dir = Path(frames_dir)
    if frames_dir.exists() and not frames_dir.is_dir():
        raise ConfigError(f"{frames_dir}: exists and is not a folder; choose another frames_dir")
    if not frames_dir.parent.is_dir():
        raise ConfigError(f"{frames_dir}: the folder {str(frames_dir.parent)!r} does not exist")
    if refuse is not None and (frames_dir / refuse).exists():
        kind = "in chunks on several workers" if refuse == CHUNKS_FILE else "as one chain"
        raise ResumeError(f"{frames_dir}: holds the frames of a run made {kind}; run it the same way to go on, "
                          f"or give another frames folder")
    return frames_dir


def _check_output(output: str | os.PathLike | None, codec: str | None) -> None:
    """Refuse an output that cannot be written, before any frame is stylized."""
    if output is None:
        return
    from nst_core.video.io import choose_codec, is_image_sequence

    path = Path(output)
    if not path.parent.is_dir():
        raise ConfigError(f"{output}: the folder {str(path.parent)!r} does not exist; create it first")
    if not is_image_sequence(output):
        choose_codec(path, codec)


# over 60 lines: half of it is the docstring of every argument
def stylize_video(source: str | os.PathLike | VideoReader, styles: ImageSource | Sequence[ImageSource],
                  output: str | os.PathLike | None = None, config: StyleConfig | None = None, *,
                  temporal: bool = True, temporal_weight: float = DEFAULT_TEMPORAL_WEIGHT,
                  long_term: Sequence[int] = (), first_steps: int | None = None, next_steps: int | None = None,
                  flow: str = DEFAULT_FLOW, dilation: int = DEFAULT_DILATION, scene_cut: float = DEFAULT_SCENE_CUT,
                  frames_dir: str | os.PathLike | None = None, start: float = 0.0, duration: float | None = None,
                  every: int = 1, fps: float | None = None, max_frames: int | None = None, codec: str | None = None,
                  crf: int | None = None, copy_audio: bool = True, registries: Registries | None = None,
                  on_progress: Callable[[VideoProgress], None] | None = None,
                  should_stop: Callable[[], bool] | None = None, model: Model | None = None,
                  **overrides: Any) -> VideoResult:
    """Stylize a video (file or image sequence) with temporal consistency; see the module docstring.

    :param source: a video file, a folder of images, a pattern like ``frames/%05d.png``, or an
        opened :class:`~nst_core.video.io.VideoReader`.
    :param styles: one style image or a list (blended by ``config.style_blend``).
    :param output: a video file (its container decides the codec, see
        :func:`~nst_core.video.io.write_video`) or an image sequence (folder or pattern); None: only
        the frames folder.
    :param config: image settings (``size``, ``steps``, weights ...); ``overrides`` change fields.
        Without a seed the chain uses seed 0, so that a resumed call makes the same frames.
    :param temporal: False stylizes every frame independently (the flickering look), same steps.
    :param temporal_weight: λ_t relative to J of the chain's first frame (module docstring).
    :param long_term: earlier frames (2, 4 ...) also held by the temporal term, closest first.
    :param first_steps: steps of a chain's first frame (default ``config.steps``).
    :param next_steps: steps of the frames after it (default half of ``first_steps``).
    :param flow: a registered flow estimator (``"dis"``; plug-ins add more).
    :param dilation: px by which unreliable flow areas grow (Ruder's check, 3 by default).
    :param scene_cut: share of inconsistent pixels above which the chain restarts.
    :param frames_dir: where finished frames are kept (default ``<output>.frames``); a second
        call with the same arguments resumes from the first missing frame.
    :param start, duration, every, fps, max_frames: the piece of the source (see
        :func:`~nst_core.video.io.open_video`).
    :param codec, crf, copy_audio: how the output is encoded (see :func:`~nst_core.video.io.write_video`).
    :param on_progress: called with a :class:`VideoProgress` after every step and every frame.
    :param should_stop: checked before every step and frame; True stops with ``status="stopped"``
        (the finished frames stay).
    :param model: an already loaded :class:`nst_core.Model` for ``config`` (an executor's worker
        keeps one); default: loaded here.
    :raises NSTError: bad input (one line), before anything is written.
    """
    import nst_core

    started = time.perf_counter()
    config = config or StyleConfig()
    if overrides:
        config = config.replace(**overrides)
    options = ChainOptions(temporal=temporal, temporal_weight=temporal_weight, long_term=tuple(long_term),
                           first_steps=first_steps, next_steps=next_steps, flow=flow, dilation=dilation,
                           scene_cut=scene_cut)
    reader = source if isinstance(source, VideoReader) else open_video(
        source, start=start, duration=duration, every=every, fps=fps, max_frames=max_frames)
    # decoded once here, not once per frame
    sources: Sequence[ImageSource] = styles if isinstance(styles, (list, tuple)) else [styles]  # type: ignore[list-item]
    style_list = [read_image(s).rgb for s in sources]
    registries = registries or collect_registries()
    estimator = get_flow_estimator(flow, registries) if temporal else None
    _check_output(output, codec)
    frames_dir = _prepare_frames_dir(frames_dir, output, refuse=CHUNKS_FILE)
    if config.seed is None:
        config = config.replace(seed=0)  # one seed for every frame and every resumed call
    settings = _settings(reader.info, style_list, config, options.as_dict(config))
    chain_file = _ChainFile(frames_dir, settings)  # other settings in the folder: refused before any work
    model = model or nst_core.load_model(config, registries=registries)
    missing = sum(not frame_path(frames_dir, i).exists() for i in range(reader.info.frames))
    _check_disk(frames_dir if frames_dir.exists() else frames_dir.parent, missing,
                working_size(reader.info, config.size))
    frames_dir.mkdir(exist_ok=True)
    if not chain_file.path.exists():
        chain_file.save()
    chain = _Chain(reader, style_list, config, options, frames_dir, registries=registries, model=model,
                   estimator=estimator, on_progress=on_progress, should_stop=should_stop, chain_file=chain_file,
                   total=reader.info.frames)
    chain.run(0, reader.info.frames)
    notes: list[str] = list(reader.info.notes)
    written = None
    if not chain.stopped and output is not None:
        paths = [frame_path(frames_dir, i) for i in range(reader.info.frames)]
        frames = (read_image(p).rgb for p in paths)
        written = write_video(frames, output, timing=reader.info, codec=codec, crf=crf, copy_audio=copy_audio,
                              notes=notes)
    return VideoResult(status="stopped" if chain.stopped else "finished", output=written, frames_dir=frames_dir,
                       info=reader.info, records=tuple(chain.records), scene_cuts=tuple(chain.cuts),
                       elapsed=time.perf_counter() - started, notes=tuple(notes))


# --------------------------------------------------------------------------------- chunks

@dataclass(frozen=True)
class Chunk:
    """Frames ``start .. stop-1`` of a clip, stylized as one chain on one worker. ``overlap`` is
    how many of its first frames the previous chunk also made (crossfaded by
    :func:`assemble_chunks`); 0 for the first chunk and for a chunk starting at a scene cut."""

    index: int
    start: int
    stop: int
    overlap: int = 0

    @property
    def frames(self) -> int:
        return self.stop - self.start


def plan_chunks(frames: int, length: int, overlap: int = 4, cuts: Sequence[int] = ()) -> list[Chunk]:
    """Cut ``frames`` frames into chunks for several workers.

    Shots (split at the scene-cut frames ``cuts``, each the first frame of a new shot) become
    chunks of their own, with no overlap; a shot longer than ``length`` frames is split into
    chunks of ``length`` frames where each one after the first begins ``overlap`` frames before
    the previous one ends. Every frame is in at least one chunk; chunks are in order.
    """
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ConfigError(f"chunk length must be a whole number >= 1, got {length!r}")
    if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap < length:
        raise ConfigError(f"chunk overlap must be a whole number from 0 to length - 1, got {overlap!r}")
    bounds = sorted({0, frames, *(c for c in cuts if 0 < c < frames)})
    chunks: list[Chunk] = []
    for shot_start, shot_stop in zip(bounds, bounds[1:]):
        begin = shot_start
        while True:
            stop = min(begin + length, shot_stop)
            lap = 0 if begin == shot_start else overlap
            chunks.append(Chunk(len(chunks), begin, stop, lap))
            if stop >= shot_stop:
                break
            begin = stop - overlap
    return chunks


def blend_overlap(tail: Sequence[Tensor], head: Sequence[Tensor]) -> list[Tensor]:
    """Crossfade the ``o`` frames two chunks share: ``tail`` (the earlier chunk's last o frames)
    and ``head`` (the later chunk's first o). Frame i gets ``(1 − a_i) · tail_i + a_i · head_i``
    with ``a_i = (i + 1) / (o + 1)``, so the weight moves linearly from one chain to the other."""
    if len(tail) != len(head):
        raise ConfigError(f"blend_overlap needs as many frames from each chunk, got {len(tail)} and {len(head)}")
    o = len(tail)
    return [(1 - (i + 1) / (o + 1)) * a + ((i + 1) / (o + 1)) * b for i, (a, b) in enumerate(zip(tail, head))]


def assemble_chunks(chunks: Sequence[Chunk], outputs: Sequence[Sequence[Tensor]]) -> list[Tensor]:
    """The clip's frames from each chunk's frames (``outputs[k]`` has ``chunks[k].frames``
    frames): overlaps crossfaded by :func:`blend_overlap`, everything else as it is."""
    if len(chunks) != len(outputs):
        raise ConfigError(f"{len(chunks)} chunks but {len(outputs)} outputs")
    return list(iter_assembled(chunks, outputs))


def iter_assembled(chunks: Sequence[Chunk], outputs: Iterable[Sequence[Tensor]]) -> Iterator[Tensor]:
    """:func:`assemble_chunks` one frame at a time: ``outputs`` is read one chunk at a time
    (e.g. loaded from disk on demand) and only the frames the next chunk overlaps are held, so a
    long clip never sits in memory."""
    buffer: list[Tensor] = []
    count = 0
    for k, out in enumerate(outputs):
        if k >= len(chunks):
            raise ConfigError(f"{len(chunks)} chunks but more outputs")
        chunk = chunks[k]
        if len(out) != chunk.frames:
            raise ConfigError(f"chunk {chunk.index} should have {chunk.frames} frames, got {len(out)}")
        if chunk.overlap > len(buffer):
            raise ConfigError(f"chunk {chunk.index} overlaps {chunk.overlap} frames, but only {len(buffer)} are "
                              f"open before it")
        if chunk.overlap:
            buffer[-chunk.overlap:] = blend_overlap(buffer[-chunk.overlap:], out[:chunk.overlap])
        buffer.extend(out[chunk.overlap:])
        keep = chunks[k + 1].overlap if k + 1 < len(chunks) else 0
        yield from buffer[:len(buffer) - keep]
        del buffer[:len(buffer) - keep]
        count += 1
    if count != len(chunks):
        raise ConfigError(f"{len(chunks)} chunks but {count} outputs")


def detect_scene_cuts(reader: VideoReader, size: int, *, flow: str = DEFAULT_FLOW,
                      dilation: int = DEFAULT_DILATION, threshold: float = DEFAULT_SCENE_CUT,
                      registries: Registries | None = None) -> list[int]:
    """Frames that start a new shot: more than ``threshold`` of their pixels fail the consistency
    check against the frame before (flow at the working size for ``size``)."""
    estimator = get_flow_estimator(flow, registries)
    h, w = working_size(reader.info, size)
    cuts, prev = [], None
    for index, frame in reader.frames():
        frame = resize(frame, h, w)
        if prev is not None:
            mask = reliability(estimate_flow(estimator, frame, prev), estimate_flow(estimator, prev, frame),
                               dilation=dilation)
            if inconsistent_fraction(mask) > threshold:
                cuts.append(index)
        prev = frame
    return cuts


def run_chunk(source: str | os.PathLike | VideoReader, chunk: Chunk, styles: ImageSource | Sequence[ImageSource],
              config: StyleConfig | None = None, *, frames_dir: str | os.PathLike, start: float = 0.0,
              duration: float | None = None, every: int = 1, fps: float | None = None,
              **chain_options: Any) -> list[Tensor]:
    """Stylize one chunk as its own chain (resumable in ``frames_dir``, one folder per chunk) and
    return its frames ``(1, 3, h, w)`` in [0, 1], in order (fewer than ``chunk.frames`` only when
    ``should_stop`` stopped it; the same call later goes on). An executor calls this on a worker;
    ``source`` and the selection are the clip's, ``chunk`` says which frames. ``chain_options``
    are :func:`stylize_video`'s (``temporal_weight``, ``next_steps``, ``should_stop`` ...)."""
    reader = source if isinstance(source, VideoReader) else open_video(source, start=start, duration=duration,
                                                                       every=every, fps=fps)
    if not 0 <= chunk.start < chunk.stop <= reader.info.frames:
        raise ConfigError(f"chunk {chunk.index} ({chunk.start}..{chunk.stop - 1}) is outside the clip's "
                          f"{reader.info.frames} frames")
    piece = reader.piece(chunk.start, chunk.stop)
    result = stylize_video(piece, styles, None, config, frames_dir=frames_dir, **chain_options)
    frames = []
    for i in range(chunk.frames):  # all of them, or those before the stop
        path = frame_path(result.frames_dir, i)
        if not path.exists():
            break
        frames.append(read_image(path).rgb)
    return frames


__all__ = [
    "DEFAULT_NEXT_STEPS_FRACTION", "DEFAULT_SCENE_CUT", "DEFAULT_TEMPORAL_WEIGHT", "ChainOptions", "Chunk",
    "FrameRecord", "VideoProgress", "VideoResult", "assemble_chunks", "blend_overlap", "detect_scene_cuts",
    "frame_path", "iter_assembled", "plan_chunks", "run_chunk", "stylize_video", "working_size",
]
