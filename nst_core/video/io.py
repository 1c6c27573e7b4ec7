"""Video files and image sequences <-> frames ``(1, 3, H, W)`` float32 RGB in [0, 1].

Reading (:func:`open_video`) takes a video file (mp4, mov, m4v, webm, mkv, avi, gif: whatever the
installed FFmpeg of PyAV decodes), a folder of images, or a printf pattern such as
``frames/%05d.png``. It checks everything it can before a single frame is handed out, each with one
line that names the source and says what to do (:class:`~nst_core.video._deps.VideoError`): not a
video, no video stream, a codec the installed FFmpeg cannot decode, zero frames, a declared length
over ``max_frames`` (a 10-hour header), images of different sizes. Frames come upright: a video's
display rotation (a multiple of 90°) is applied and kept in :attr:`VideoInfo.rotation` so that
:func:`write_video` can store the same rotation again.

Selection: ``start`` and ``duration`` in seconds from the first frame, then every ``every``-th
frame of that piece. Timing is kept as presentation timestamps: :attr:`VideoInfo.pts` holds each
selected frame's time in :attr:`VideoInfo.time_base` units, counted from the first selected frame,
so a written video has the source's frame rate (divided by ``every``), its length and any variable
frame rate.

Writing (:func:`write_video`) encodes with the codec the container and the installed encoders
offer (H.264 ``libx264`` yuv420p CRF 18 for mp4/mov/mkv, VP9 for webm, GIF for gif; ``codec`` and
``crf`` choose), stores the rotation, and copies the source's audio packets of the selected time
range unchanged (a remux, not a re-encode; re-encoded only when the output container cannot hold
the source's audio codec, with a note). Every write is atomic: a temporary file in the target's
folder, renamed over the target once complete. A folder or a printf pattern as target writes an
image sequence, each image atomically.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from nst_core.image import (  # the engine's atomic-write helpers
    _open_temporary,
    _sync_directory,
    _write_error,
    read_image,
    save_image,
)
from nst_core.video._deps import VideoError, require_av

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".gif")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")

DEFAULT_MAX_FRAMES = 20_000
"""Most frames a source may declare for the selected piece (about 14 minutes at 24 fps); more is
refused before decoding. ``NST_MAX_VIDEO_FRAMES`` or ``max_frames=`` raise it."""
MAX_FRAMES_ENV = "NST_MAX_VIDEO_FRAMES"

DEFAULT_FPS = 24.0
"""Frame rate of an image sequence (it has none of its own) unless ``fps=`` says otherwise."""

DEFAULT_CRF = 18
"""Constant rate factor of libx264/libx265/VP9: visually close to lossless, the usual choice."""

CONTAINER_CODECS: dict[str, tuple[str, ...]] = {
    ".mp4": ("libx264", "libopenh264", "h264", "mpeg4"),
    ".m4v": ("libx264", "libopenh264", "h264", "mpeg4"),
    ".mov": ("libx264", "libopenh264", "h264", "mpeg4"),
    ".mkv": ("libx264", "libopenh264", "h264", "libvpx-vp9", "mpeg4"),
    ".avi": ("libx264", "mpeg4"),
    ".webm": ("libvpx-vp9", "libvpx", "libaom-av1", "libsvtav1"),
    ".gif": ("gif",),
}
"""Video encoders tried in order for each container; the first the installed FFmpeg has wins."""

AUDIO_FALLBACK: dict[str, tuple[str, ...]] = {
    ".mp4": ("aac",), ".m4v": ("aac",), ".mov": ("aac",), ".mkv": ("aac", "libopus", "flac"),
    ".avi": ("libmp3lame", "aac"), ".webm": ("libopus", "opus", "libvorbis", "vorbis"),
}
"""Audio encoders for the rare case the container cannot hold the source's audio codec as it is."""

CRF_CODECS = {"libx264", "libx265", "libvpx-vp9", "libvpx", "libaom-av1", "libsvtav1"}

FORMAT_OF = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi",
             ".gif": "gif"}


@dataclass(frozen=True)
class AudioInfo:
    """The source's first audio stream: copied into the output by :func:`write_video`."""

    index: int
    """Stream index in the source container."""
    codec: str
    sample_rate: int
    channels: int


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`open_video` found, for the selected frames.

    ``width`` x ``height`` is the upright (displayed) size. ``pts[i]`` is the time of selected
    frame i in ``time_base`` seconds, counted from the first selected frame (``pts[0] == 0``).
    ``start`` / ``end`` are the selected piece in seconds of the source (from its first frame),
    ``end`` exclusive; ``fps`` is the frame rate of the selected frames (the source's / ``every``).
    """

    source: str
    kind: Literal["video", "images"]
    width: int
    height: int
    fps: Fraction
    time_base: Fraction
    pts: tuple[int, ...]
    rotation: int = 0
    """Display rotation, degrees counter-clockwise (0, 90, 180, 270), applied to the frames."""
    codec: str | None = None
    audio: AudioInfo | None = None
    start: float = 0.0
    end: float = math.inf
    every: int = 1
    notes: tuple[str, ...] = ()
    paths: tuple[Path, ...] = field(default=(), repr=False)
    """The image files of an image sequence, one per selected frame."""

    @property
    def frames(self) -> int:
        """Number of selected frames."""
        return len(self.pts)

    @property
    def duration(self) -> float:
        """Seconds the selected frames cover: the last frame's time plus one frame."""
        if not self.pts:
            return 0.0
        return float(self.pts[-1] * self.time_base + 1 / self.fps)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def max_frames_allowed(max_frames: int | None = None) -> int:
    """``max_frames`` if given, else ``NST_MAX_VIDEO_FRAMES``, else :data:`DEFAULT_MAX_FRAMES`."""
    if max_frames is not None:
        return int(max_frames)
    raw = os.environ.get(MAX_FRAMES_ENV, "").replace("_", "").strip()
    if raw:
        try:
            return int(raw)
        except ValueError:
            raise VideoError(f"{MAX_FRAMES_ENV}={raw!r} is not a whole number; unset it or give one") from None
    return DEFAULT_MAX_FRAMES


def _check_selection(start: float, duration: float | None, every: int) -> None:
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise VideoError(f"every must be a whole number >= 1, got {every!r}")
    if not isinstance(start, (int, float)) or not math.isfinite(start) or start < 0:
        raise VideoError(f"start must be a number of seconds >= 0, got {start!r}")
    if duration is not None and (not isinstance(duration, (int, float)) or not duration > 0
                                 or not math.isfinite(duration)):
        raise VideoError(f"duration must be a number of seconds > 0, got {duration!r}")


def select_frames(times: Sequence[float], start: float = 0.0, duration: float | None = None,
                  every: int = 1) -> list[int]:
    """Indices of the frames to keep: times ``t`` (seconds from the first frame, ascending) with
    ``start <= t < start + duration`` (to the end without ``duration``), then every ``every``-th."""
    _check_selection(start, duration, every)
    end = math.inf if duration is None else start + duration
    eps = 1e-9
    inside = [i for i, t in enumerate(times) if start - eps <= t < end - eps]
    return inside[::every]


def _hms(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _too_long(label: str, frames: float, fps: float, limit: int) -> VideoError:
    return VideoError(f"{label}: declares {int(frames)} frames for the piece asked ({_hms(frames / max(fps, 1e-9))} "
                      f"at {fps:g} fps), more than the {limit} allowed; choose a piece with start/duration/every, "
                      f"or raise the limit ({MAX_FRAMES_ENV} or max_frames)")


def is_image_sequence(path: str | os.PathLike) -> bool:
    """True for a printf pattern (``frames/%05d.png``), an existing folder, or a path with no suffix."""
    text = str(path)
    return "%" in text or Path(text).is_dir() or not Path(text).suffix


# ----------------------------------------------------------------------------------- reading

class VideoReader:
    """An opened, checked source; :meth:`frames` decodes the selected frames in order.

    Cheap to re-open in another process (an executor's worker): :func:`open_video` with the same
    arguments gives the same frames.
    """

    def __init__(self, info: VideoInfo, source_pts: tuple[int, ...] = ()) -> None:
        self.info = info
        self._source_pts = source_pts  # pts of each selected frame in the source's own units

    def __len__(self) -> int:
        return self.info.frames

    def frames(self, first: int = 0, stop: int | None = None) -> Iterator[tuple[int, Tensor]]:
        """``(index, frame)`` for selected frames ``first <= index < stop``; ``frame`` is
        ``(1, 3, height, width)`` float32 RGB in [0, 1], upright."""
        stop = self.info.frames if stop is None else min(stop, self.info.frames)
        if first >= stop:
            return
        if self.info.kind == "images":
            yield from self._image_frames(first, stop)
        else:
            yield from self._video_frames(first, stop)

    def piece(self, first: int, stop: int) -> VideoReader:
        """A reader of selected frames ``first <= i < stop`` only (a chunk), timed from ``first``."""
        return VideoReader(with_selection(self.info, first, stop), self._source_pts[first:stop])

    def read(self, index: int) -> Tensor:
        """Selected frame ``index`` ``(1, 3, H, W)`` (random access: decodes from a keyframe)."""
        for _, frame in self.frames(index, index + 1):
            return frame
        raise VideoError(f"{self.info.source}: frame {index} could not be decoded")

    def _image_frames(self, first: int, stop: int) -> Iterator[tuple[int, Tensor]]:
        for index in range(first, stop):
            path = self.info.paths[index]
            rgb = read_image(path).rgb
            if tuple(rgb.shape[-2:]) != (self.info.height, self.info.width):
                raise VideoError(f"{path}: is {rgb.shape[-1]}x{rgb.shape[-2]} px but the sequence's first frame is "
                                 f"{self.info.width}x{self.info.height}; give frames of one size")
            yield index, rgb

    def _video_frames(self, first: int, stop: int) -> Iterator[tuple[int, Tensor]]:
        av = require_av()
        wanted = {pts: i for i, pts in enumerate(self._source_pts) if first <= i < stop}
        last = max(wanted)
        label = self.info.source
        try:
            container = av.open(label)
        except (av.FFmpegError, OSError) as exc:
            raise VideoError(f"{label}: could not be opened again ({_one_line(exc)})") from None
        with container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            target = self._source_pts[first]
            if first > 0:
                try:
                    container.seek(target, stream=stream, backward=True, any_frame=False)
                except av.FFmpegError:
                    container.seek(0)
            try:
                for frame in container.decode(stream):
                    pts = frame.pts if frame.pts is not None else frame.dts
                    index = wanted.get(pts)
                    if index is not None:
                        yield index, _upright(_to_tensor(frame), self.info.rotation)
                    if pts is not None and pts >= last:
                        return
            except av.FFmpegError as exc:
                raise VideoError(f"{label}: decoding failed ({_one_line(exc)}); the file may be damaged") from None


def _to_tensor(frame: Any) -> Tensor:
    """An av.VideoFrame -> ``(1, 3, H, W)`` float32 RGB in [0, 1] (as coded, not yet upright)."""
    array = frame.to_ndarray(format="rgb24")
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def _upright(image: Tensor, rotation: int) -> Tensor:
    """Rotate a coded frame ``(1, C, H, W)`` counter-clockwise by ``rotation`` degrees (display)."""
    k = (rotation // 90) % 4
    return torch.rot90(image, k, dims=(-2, -1)).contiguous() if k else image


def _coded(image: Tensor, rotation: int) -> Tensor:
    """The inverse of :func:`_upright`: an upright frame back to its coded orientation."""
    k = (rotation // 90) % 4
    return torch.rot90(image, -k, dims=(-2, -1)).contiguous() if k else image


def _rotation_of(frame: Any, notes: list[str], label: str) -> int:
    raw = getattr(frame, "rotation", 0) or 0
    degrees = float(raw) % 360
    rounded = round(degrees / 90.0) * 90 % 360
    if abs(degrees - round(degrees / 90.0) * 90) > 1:
        notes.append(f"{label}: display rotation {raw:g}° is not a multiple of 90°; frames are used as stored")
        return 0
    return rounded


def open_video(source: str | os.PathLike, *, start: float = 0.0, duration: float | None = None, every: int = 1,
               fps: float | None = None, max_frames: int | None = None) -> VideoReader:
    """Open and check a video file or an image sequence; select ``[start, start + duration)``
    seconds, every ``every``-th frame. ``fps`` is the rate of an image sequence (default 24; a
    video has its own). Raises a one-line :class:`VideoError` on anything unusable, before any
    frame is handed out (see the module's docstring)."""
    _check_selection(start, duration, every)
    limit = max_frames_allowed(max_frames)
    text = os.fspath(source)
    if is_image_sequence(text):
        return _open_images(text, start, duration, every, fps, limit)
    path = Path(text)
    if not path.exists():
        raise VideoError(f"{text}: no such file; give a video file, a folder of images or a pattern like "
                         f"frames/%05d.png")
    if not path.is_file():
        raise VideoError(f"{text}: is not a regular file; give a video file, a folder of images or a pattern")
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        raise VideoError(f"{text}: is a single image, not a video; give a video file, a folder of images or a "
                         f"pattern like frames/%05d.png")
    return _open_container(text, start, duration, every, limit)


_WHAT = "give an mp4, mov, webm, mkv or gif file (or a folder of images)"


def _check_declared(label: str, container: Any, stream: Any, rate: float, start: float, duration: float | None,
                    every: int, limit: int) -> None:
    """Refuse a declared length over ``limit`` frames for the piece, before reading any packet: a
    lying header must not make us demux for hours."""
    time_base = stream.time_base
    declared_s = 0.0
    if stream.duration and time_base:
        declared_s = float(stream.duration * time_base)
    elif container.duration:
        declared_s = container.duration / 1_000_000
    piece_s = max(0.0, declared_s - start) if duration is None else min(duration, max(0.0, declared_s - start))
    declared = max(float(stream.frames or 0) * (piece_s / declared_s if declared_s else 1.0), piece_s * rate)
    if declared / every > limit:
        raise _too_long(label, declared / every, rate / every if rate else 0.0, limit)


def _demux_pts(av: Any, label: str, container: Any, stream: Any, rate: float, start: float, every: int,
               limit: int, notes: list[str]) -> list[int]:
    """The presentation timestamps of every video packet, sorted (no decoding)."""
    source_pts: list[int] = []
    cap = (limit + 1) * every + int(start * max(rate, 1.0)) + 1000
    try:
        for packet in container.demux(stream):
            pts = packet.pts if packet.pts is not None else packet.dts
            if pts is None:
                continue
            source_pts.append(pts)
            if len(source_pts) > cap:
                raise _too_long(label, len(source_pts), rate, limit)
    except av.FFmpegError as exc:
        if not source_pts:
            raise VideoError(f"{label}: not a video FFmpeg can read ({_one_line(exc)}); {_WHAT}") from None
        notes.append(f"{label}: reading stopped early ({_one_line(exc)}); the frames before it are used")
    return sorted(set(source_pts))


def _probe(av: Any, label: str, container: Any, stream: Any, codec_name: str,
           notes: list[str]) -> tuple[int, int, int]:
    """Decode the first frame (an unreadable codec or damaged data fails here, not later):
    ``(upright width, upright height, rotation)``."""
    container.seek(0)
    probe = None
    try:
        for frame in container.decode(stream):
            probe = frame
            break
    except av.FFmpegError as exc:
        raise VideoError(f"{label}: its {codec_name} video cannot be decoded ({_one_line(exc)}); convert it, "
                         f"e.g. ffmpeg -i {label} -c:v libx264 out.mp4") from None
    if probe is None:
        raise VideoError(f"{label}: has no decodable video frames; {_WHAT}")
    rotation = _rotation_of(probe, notes, label)
    width, height = probe.width, probe.height
    return (height, width, rotation) if rotation in (90, 270) else (width, height, rotation)


def _audio_info(container: Any) -> AudioInfo | None:
    if not container.streams.audio:
        return None
    a = container.streams.audio[0]
    cc = a.codec_context
    return AudioInfo(index=a.index, codec=getattr(cc, "name", "?"), sample_rate=int(a.sample_rate or 0),
                     channels=int(getattr(cc, "channels", 0) or 0))


def _open_container(label: str, start: float, duration: float | None, every: int, limit: int) -> VideoReader:
    av = require_av()
    try:
        container = av.open(label, metadata_errors="ignore")
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise VideoError(f"{label}: not a video FFmpeg can read ({_one_line(exc)}); {_WHAT}") from None
    notes: list[str] = []
    with container:
        if not container.streams.video:
            raise VideoError(f"{label}: has no video stream; {_WHAT}")
        stream = container.streams.video[0]
        codec_name = getattr(stream.codec_context, "name", None) if stream.codec_context is not None else None
        if not codec_name or codec_name == "none":
            raise VideoError(f"{label}: its video codec cannot be decoded by the installed FFmpeg; convert it, "
                             f"e.g. ffmpeg -i {label} -c:v libx264 out.mp4")
        time_base = Fraction(stream.time_base) if stream.time_base else Fraction(1, 90000)
        rate = max(float(stream.average_rate or 0), float(stream.base_rate or 0), float(stream.guessed_rate or 0))
        _check_declared(label, container, stream, rate, start, duration, every, limit)
        source_pts = _demux_pts(av, label, container, stream, rate, start, every, limit, notes)
        if not source_pts:
            raise VideoError(f"{label}: has no video frames; {_WHAT}")
        times = [float((p - source_pts[0]) * time_base) for p in source_pts]
        chosen = select_frames(times, start, duration, every)
        if not chosen:
            raise VideoError(f"{label}: no frame between {start:g} s and "
                             f"{'the end' if duration is None else f'{start + duration:g} s'} (the video is "
                             f"{times[-1] + (1 / rate if rate else 0):.2f} s long); choose another start")
        if len(chosen) > limit:
            raise _too_long(label, len(chosen), rate / every if rate else 0.0, limit)
        width, height, rotation = _probe(av, label, container, stream, codec_name, notes)
        audio = _audio_info(container)
    selected = tuple(source_pts[i] for i in chosen)
    base = selected[0]
    src_fps = Fraction(rate).limit_denominator(1001) if rate else Fraction(24)
    info = VideoInfo(source=label, kind="video", width=width, height=height, fps=src_fps / every,
                     time_base=time_base, pts=tuple(p - base for p in selected), rotation=rotation,
                     codec=codec_name, audio=audio, start=times[chosen[0]],
                     end=times[chosen[-1]] + float(1 / src_fps) * every, every=every, notes=tuple(notes))
    return VideoReader(info, selected)


_PATTERN = re.compile(r"%(0?)(\d*)d")


def _sequence_files(text: str) -> list[Path]:
    """The image files of a folder (natural order) or a printf pattern (by number)."""
    if "%" in text:
        path = Path(text)
        folder = path.parent
        match = _PATTERN.search(path.name)
        if match is None or path.name.count("%") != 1:
            raise VideoError(f"{text}: a pattern needs exactly one %d or %0Nd in the file name, like frames/%05d.png")
        if not folder.is_dir():
            raise VideoError(f"{text}: the folder {str(folder)!r} does not exist")
        width = match.group(2)
        digits = rf"\d{{{int(width)}}}" if match.group(1) and width else r"\d+"
        regex = re.compile(re.escape(path.name[:match.start()]) + f"({digits})" + re.escape(path.name[match.end():])
                           + "$")
        found = []
        for entry in folder.iterdir():
            m = regex.match(entry.name)
            if m and entry.is_file():
                found.append((int(m.group(1)), entry))
        return [p for _, p in sorted(found)]
    folder = Path(text)
    if not folder.exists():
        raise VideoError(f"{text}: no such folder; give a video file, a folder of images or a pattern")

    def natural(p: Path) -> list:
        return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", p.name)]

    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                   and not p.name.startswith(".")), key=natural)


def _open_images(text: str, start: float, duration: float | None, every: int, fps: float | None,
                 limit: int) -> VideoReader:
    rate = DEFAULT_FPS if fps is None else fps
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate <= 0:
        raise VideoError(f"fps must be a number > 0, got {fps!r}")
    files = _sequence_files(text)
    if not files:
        raise VideoError(f"{text}: no image files found ({', '.join(IMAGE_EXTENSIONS)}); give a folder of frames "
                         f"or a pattern like frames/%05d.png")
    fraction = Fraction(rate).limit_denominator(1001)
    times = [float(i / fraction) for i in range(len(files))]
    chosen = select_frames(times, start, duration, every)
    if not chosen:
        raise VideoError(f"{text}: no frame between {start:g} s and the end ({len(files)} frames at {rate:g} fps)")
    if len(chosen) > limit:
        raise _too_long(text, len(chosen), rate / every, limit)
    first = read_image(files[chosen[0]]).rgb
    height, width = first.shape[-2:]
    info = VideoInfo(source=text, kind="images", width=int(width), height=int(height), fps=fraction / every,
                     time_base=1 / fraction, pts=tuple(i - chosen[0] for i in chosen), start=times[chosen[0]],
                     end=times[chosen[-1]] + float(every / fraction), every=every,
                     paths=tuple(files[i] for i in chosen))
    return VideoReader(info)


# ----------------------------------------------------------------------------------- writing

def available_encoders(names: Iterable[str]) -> list[str]:
    """Those of ``names`` the installed FFmpeg can encode with."""
    av = require_av()
    found = []
    for name in names:
        try:
            av.Codec(name, "w")
        except Exception:  # noqa: BLE001, S112  (UnknownCodecError, or a codec with no encoder)
            continue
        found.append(name)
    return found


def choose_codec(path: str | os.PathLike, codec: str | None = None) -> str:
    """The video encoder for ``path``'s container: ``codec`` if the installed FFmpeg has it, else
    the first available of :data:`CONTAINER_CODECS`."""
    suffix = Path(path).suffix.lower()
    if suffix not in CONTAINER_CODECS:
        raise VideoError(f"{path}: unknown video extension {suffix or '(none)'!r}; use one of "
                         f"{', '.join(VIDEO_EXTENSIONS)}, or a folder / pattern for an image sequence")
    if codec is not None:
        if not available_encoders([codec]):
            offered = ", ".join(available_encoders(CONTAINER_CODECS[suffix])) or "none"
            raise VideoError(f"{path}: the installed FFmpeg has no {codec!r} encoder; for {suffix} it offers {offered}")
        return codec
    found = available_encoders(CONTAINER_CODECS[suffix])
    if not found:
        raise VideoError(f"{path}: the installed FFmpeg has no encoder for {suffix} "
                         f"(tried {', '.join(CONTAINER_CODECS[suffix])}); write .mp4 or an image sequence")
    return found[0]


def _pad_even(image: Tensor) -> Tensor:
    """Replicate the last row / column so that both sides are even (yuv420p needs it)."""
    h, w = image.shape[-2:]
    pad = (0, w % 2, 0, h % 2)
    if pad == (0, 0, 0, 0):
        return image
    return torch.nn.functional.pad(image, pad, mode="replicate")


def _to_uint8(image: Tensor) -> Any:
    if image.dim() == 4:
        image = image[0]
    if not torch.isfinite(image).all():
        raise VideoError("a frame contains NaN or infinite values; nothing was written")
    return (image.detach().to("cpu", torch.float32).clamp(0, 1) * 255).round().to(torch.uint8) \
        .permute(1, 2, 0).contiguous().numpy()


def write_video(frames: Iterable[Tensor], path: str | os.PathLike, *, timing: VideoInfo | None = None,
                fps: float | None = None, codec: str | None = None, crf: int | None = None,
                copy_audio: bool = True, notes: list[str] | None = None) -> Path:
    """Write upright frames ``(1, 3, H, W)`` in [0, 1] as a video file or an image sequence.

    :param timing: the :class:`VideoInfo` of the source: its ``pts`` / ``time_base`` (one per
        frame, so the frame rate and length are the source's), ``rotation`` (frames are rotated
        back and the display rotation stored) and audio (copied for ``[start, end)``). Without
        it, frames are spaced ``1 / fps`` (default 24) and there is no audio.
    :param codec: an encoder name (``libx264``, ``libvpx-vp9``, ``mpeg4``, ``gif`` ...); default:
        the first the installed FFmpeg has for the container (:data:`CONTAINER_CODECS`).
    :param crf: constant rate factor for libx264/libx265/VP9/AV1 (default :data:`DEFAULT_CRF`).
    :param notes: a list that receives one line per compromise (audio re-encoded, sides padded).
    :returns: ``path``. An image sequence target (a folder or a ``%05d`` pattern) gets one PNG/JPEG
        ... per frame, each written atomically. A video is complete at ``path`` or absent (an
        existing file stays as it was): it is written to a temporary file and renamed.
    """
    notes = notes if notes is not None else []
    target = Path(path)
    if is_image_sequence(path):
        return _write_sequence(frames, os.fspath(path))
    av = require_av()
    folder = target.parent
    if not folder.is_dir():
        raise VideoError(f"{target}: the folder {str(folder)!r} does not exist; create it or choose another path")
    if target.is_dir():
        raise VideoError(f"{target}: is a folder")
    suffix = target.suffix.lower()
    name = choose_codec(target, codec)
    if crf is not None and (isinstance(crf, bool) or not isinstance(crf, int) or not 0 <= crf <= 63):
        raise VideoError(f"crf must be a whole number from 0 to 63, got {crf!r}")
    rate = Fraction(timing.fps if timing is not None else (fps or DEFAULT_FPS)).limit_denominator(1001)
    time_base = timing.time_base if timing is not None else 1 / rate
    pts_list = timing.pts if timing is not None else None
    rotation = timing.rotation if timing is not None else 0
    temporary: Path | None = None
    try:
        fd, temporary = _open_temporary(folder, target.name)
        os.close(fd)
    except OSError as exc:
        raise _write_error(target, folder, exc) from None
    try:
        count = _encode(av, frames, temporary, FORMAT_OF[suffix], name, rate, time_base, pts_list, rotation, crf,
                        timing if copy_audio else None, suffix, notes)
        if count == 0:
            raise VideoError(f"{target}: no frames to write; nothing was written")
        os.replace(temporary, target)
        temporary = None
    except OSError as exc:
        raise _write_error(target, folder, exc) from None
    except av.FFmpegError as exc:
        raise VideoError(f"{target}: encoding with {name} failed ({_one_line(exc)}); try another codec or an image "
                         f"sequence; nothing was written") from None
    finally:
        if temporary is not None:
            try:
                os.unlink(temporary)
            except OSError:
                pass
    _sync_directory(folder)
    return target


def _encode(av: Any, frames: Iterable[Tensor], temporary: Path, fmt: str, codec: str, rate: Fraction,
            time_base: Fraction, pts_list: Sequence[int] | None, rotation: int, crf: int | None,
            audio_from: VideoInfo | None, suffix: str, notes: list[str]) -> int:
    count = 0
    if rotation and fmt not in ("mp4", "mov", "matroska"):
        notes.append(f"{fmt} cannot store a display rotation; the frames are written upright")
        rotation = 0
    wants_audio = audio_from is not None and audio_from.audio is not None and audio_from.kind == "video"
    with av.open(str(temporary), mode="w", format=fmt) as out:
        stream = None
        audio = None
        for index, image in enumerate(frames):
            image = _coded(image if image.dim() == 4 else image[None], rotation)
            if stream is None:
                stream = _video_stream(av, out, codec, rate, time_base, image, crf, rotation, notes)
                if wants_audio and audio_from is not None:  # every stream must exist before the first packet
                    audio = _AudioCopy(av, out, audio_from, fmt, suffix, notes)
            if stream.pix_fmt.startswith("yuv420"):
                image = _pad_even(image)
            frame = av.VideoFrame.from_ndarray(_to_uint8(image), format="rgb24")
            if stream.pix_fmt != "rgb24":
                frame = frame.reformat(format=stream.pix_fmt)
            frame.pts = pts_list[index] if pts_list is not None and index < len(pts_list) else index
            frame.time_base = time_base
            for packet in stream.encode(frame):
                out.mux(packet)
            count += 1
        if stream is None:
            return 0
        for packet in stream.encode():
            out.mux(packet)
        if audio is not None:
            audio.write()
    return count


def _video_stream(av: Any, out: Any, codec: str, rate: Fraction, time_base: Fraction, first: Tensor,
                  crf: int | None, rotation: int, notes: list[str]) -> Any:
    """The output's video stream, set up from the first (coded-orientation) frame."""
    stream = out.add_stream(codec, rate=rate)
    h, w = first.shape[-2:]
    if codec == "gif":
        stream.pix_fmt = "rgb8"
    else:
        formats = _pix_fmts(av, codec)
        stream.pix_fmt = "yuv420p" if "yuv420p" in formats else formats[0]
    if stream.pix_fmt.startswith("yuv420"):
        if h % 2 or w % 2:
            notes.append(f"{w}x{h} has an odd side; the last row/column was repeated (yuv420p needs even sides)")
        h, w = h + h % 2, w + w % 2
    stream.width, stream.height = w, h
    stream.time_base = time_base
    if codec in CRF_CODECS:
        options = {"crf": str(DEFAULT_CRF if crf is None else crf)}
        if codec.startswith("libvpx"):
            options["b"] = "0"
        if codec == "libx264":
            options["preset"] = "medium"
        stream.options = options
    elif crf is not None:
        notes.append(f"crf is ignored by the {codec} encoder")
    if codec == "mpeg4":
        stream.bit_rate = max(1_000_000, w * h * 8)
    if rotation:
        stream.set_display_rotation(rotation)
    return stream


def _pix_fmts(av: Any, codec: str) -> list[str]:
    formats = av.Codec(codec, "w").video_formats or ()
    names = [f.name for f in formats]
    return names or ["yuv420p"]


COPYABLE_AUDIO: dict[str, set[str] | None] = {
    "mp4": {"aac", "mp3", "alac", "opus", "flac", "ac3", "eac3"},
    "mov": {"aac", "mp3", "alac", "ac3", "eac3", "pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_f32le"},
    "matroska": None,  # takes any
    "webm": {"opus", "vorbis"},
    "avi": {"mp3", "aac", "ac3", "pcm_s16le"},
    "gif": set(),
}
"""Audio codecs each container can hold as they are (None: any)."""


class _AudioCopy:
    """The source's audio for ``[info.start, info.end)`` in the output: its packets copied unchanged
    (shifted by the piece's start so audio and video stay aligned; packets before the first video
    frame, an encoder's priming, are kept when the piece starts at the beginning), or re-encoded
    with a note when the container cannot hold the codec. The stream is added on construction
    (before any packet is written); :meth:`write` writes the packets."""

    def __init__(self, av: Any, out: Any, info: VideoInfo, fmt: str, suffix: str, notes: list[str]) -> None:
        assert info.audio is not None
        self.av, self.out, self.info, self.notes = av, out, info, notes
        self.source = av.open(info.source)
        self.a_in = self.source.streams.audio[0]
        video = self.source.streams.video[0]
        v_start = float((video.start_time or 0) * video.time_base)
        self.origin = v_start + info.start
        self.end = v_start + info.end
        allowed = COPYABLE_AUDIO.get(fmt, set())
        self.copy = allowed is None or info.audio.codec in allowed
        self.stream = None
        self.resampler = None
        if self.copy:
            self.stream = out.add_stream_from_template(self.a_in)
            self.stream.time_base = self.a_in.time_base
            return
        candidates = available_encoders(AUDIO_FALLBACK.get(suffix, ()))
        if not candidates:
            notes.append(f"{suffix} cannot hold audio ({info.audio.codec}); the video has no audio")
            self.source.close()
            return
        name = candidates[0]
        rate = 48000 if "opus" in name else self.a_in.sample_rate
        self.stream = out.add_stream(name, rate=rate)
        layout = self.a_in.codec_context.layout.name if self.a_in.codec_context.layout else "stereo"
        self.resampler = av.AudioResampler(format=av.Codec(name, "w").audio_formats[0].name, layout=layout,
                                           rate=rate)
        notes.append(f"the {info.audio.codec} audio cannot go into {suffix} as it is; re-encoded with {name}")

    def write(self) -> None:
        if self.stream is None:
            return
        try:
            if self.copy:
                self._copy()
            else:
                self._transcode()
        except self.av.FFmpegError as exc:
            codec = self.info.audio.codec if self.info.audio is not None else "source's"
            raise VideoError(f"the {codec} audio could not be written ({_one_line(exc)}); write "
                             f".mkv (takes most audio) or pass copy_audio=False") from None
        finally:
            self.source.close()

    def _copy(self) -> None:
        tb = self.a_in.time_base
        shift = round(self.origin / tb) if self.info.start > 0 else 0
        for packet in self.source.demux(self.a_in):
            if packet.pts is None or packet.size == 0:
                continue
            t = float(packet.pts * tb)
            if t >= self.end - 1e-6 or (self.info.start > 0 and t < self.origin - 1e-6):
                continue
            packet.pts -= shift
            if packet.dts is not None:
                packet.dts -= shift
            packet.stream = self.stream
            self.out.mux(packet)

    def _transcode(self) -> None:
        assert self.resampler is not None and self.stream is not None
        for frame in self.source.decode(self.a_in):
            if frame.time is None or frame.time < self.origin - 1e-6 or frame.time >= self.end:
                continue
            frame.pts = None
            for resampled in self.resampler.resample(frame):
                for packet in self.stream.encode(resampled):
                    self.out.mux(packet)
        for resampled in self.resampler.resample(None):
            for packet in self.stream.encode(resampled):
                self.out.mux(packet)
        for packet in self.stream.encode():
            self.out.mux(packet)


def sequence_path(target: str, index: int) -> Path:
    """The file of frame ``index`` (0-based) in an image-sequence target: ``pattern % (index + 1)``,
    or ``folder/frame_00001.png``."""
    if "%" in target:
        return Path(target.replace(_PATTERN.search(target).group(0), _PATTERN.search(target).group(0) % (index + 1)))  # type: ignore[union-attr]
    return Path(target) / f"frame_{index + 1:05d}.png"


def _write_sequence(frames: Iterable[Tensor], target: str) -> Path:
    """One image per frame (atomic each); the folder must exist (a pattern's) or is created (a folder)."""
    if "%" in target:
        path = Path(target)
        if _PATTERN.search(path.name) is None or path.name.count("%") != 1:
            raise VideoError(f"{target}: a pattern needs exactly one %d or %0Nd in the file name, like out/%05d.png")
        if not path.parent.is_dir():
            raise VideoError(f"{target}: the folder {str(path.parent)!r} does not exist; create it first")
        if path.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff"):
            raise VideoError(f"{target}: unknown image extension {path.suffix or '(none)'!r}; use .png, .jpg, "
                             f".webp or .tiff")
    else:
        folder = Path(target)
        if folder.exists() and not folder.is_dir():
            raise VideoError(f"{target}: exists and is not a folder")
        if not folder.parent.is_dir():
            raise VideoError(f"{target}: the folder {str(folder.parent)!r} does not exist; create it first")
    count = 0
    for index, image in enumerate(frames):
        if index == 0 and "%" not in target:
            Path(target).mkdir(exist_ok=True)
        save_image(image if image.dim() == 4 else image[None], sequence_path(target, index))
        count += 1
    if count == 0:
        raise VideoError(f"{target}: no frames to write; nothing was written")
    return Path(target)


def with_selection(info: VideoInfo, first: int, stop: int) -> VideoInfo:
    """``info`` narrowed to selected frames ``first <= i < stop`` (timing from frame ``first``)."""
    pts = info.pts[first:stop]
    base = pts[0]
    start = info.start + float(base * info.time_base)
    end = start + float((pts[-1] - base) * info.time_base + 1 / info.fps)
    return replace(info, pts=tuple(p - base for p in pts), start=start, end=end, paths=info.paths[first:stop])

