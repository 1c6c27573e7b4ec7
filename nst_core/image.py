"""Image files <-> tensors ``(1, 3, H, W)`` float32 RGB in [0, 1].

Reading (:func:`read_image`):

- refuses, with one line that names the file and says what to do (:class:`ImageError`): a missing
  path, a directory, a pipe or device, an unreadable or empty file, data Pillow cannot identify
  (text, SVG, PDF, HEIC ...), EPS (Pillow would hand it to Ghostscript), truncated or damaged data,
  and any file that declares more than ``NST_MAX_IMAGE_PIXELS`` pixels (a decompression bomb):
  that check runs on the header, before a single pixel is decoded;
- takes the first frame of an animation or the first page of a multi-page file, and says so in
  ``notes``;
- converts every Pillow mode to RGB: palette (with its transparency), 1-bit, gray (8 and 16 bit),
  gray + alpha, CMYK, YCbCr, LAB, 16-bit RGB(A) PNG and TIFF at full 16-bit precision;
- converts an embedded ICC profile to sRGB (the engine works in sRGB);
- keeps alpha aside (``LoadedImage.alpha``) and turns the pixels the way the EXIF (or XMP)
  orientation says the photo is displayed.

Writing (:func:`save_image`) picks the format from the extension and is atomic: the data goes to a
temporary file in the target's folder, which replaces the target only once complete, so a full
disk, a permission error or an interruption never leaves a partial file and never damages an
existing one. The output is sRGB (untagged) unless an ICC profile is asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
import errno
import io
import math
import os
from pathlib import Path
import re
import secrets
import stat
import sys
import threading
from typing import BinaryIO, Union
import warnings

import numpy as np
from PIL import Image, ImageCms, ImageFile, PngImagePlugin
import torch
from torch import Tensor
import torch.nn.functional as F

from nst_core import memory
from nst_core.errors import ConfigError, ImageError, NSTError

ImageSource = Union[str, os.PathLike, bytes, Image.Image, Tensor, np.ndarray]

FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}
"""Output formats by file extension."""

MAX_SIDE = {"JPEG": 65500, "WEBP": 16383}
"""The longest side each output format can store (PNG and TIFF: no practical limit)."""

MAX_PIXELS_ENV = "NST_MAX_IMAGE_PIXELS"
"""Environment variable: the most pixels (width × height) an image file may declare; 0 = no limit."""

DEFAULT_MAX_IMAGE_PIXELS = 178_956_970
"""Default for ``NST_MAX_IMAGE_PIXELS``: the size at which Pillow itself refuses a file (twice its
``Image.MAX_IMAGE_PIXELS``), about 13 400 × 13 400 or a 179-megapixel photo."""

REFUSED_FORMATS = {
    "EPS": "EPS/PostScript is not read (Pillow would run Ghostscript on it); export the picture as PNG or JPEG",
}
"""Formats Pillow could open that nst_core refuses, with the reason and what to do."""

_SIXTEEN_BIT_RAWMODES = {"RGB;16B", "RGB;16L", "RGB;16N", "RGBA;16B", "RGBA;16L", "RGBA;16N",
                         "RGBX;16B", "RGBX;16L", "RGBX;16N"}
"""Pillow raw modes of 16-bit RGB(A) data that it unpacks to 8 bits by keeping the high byte."""

_DECODE_LOCK = threading.Lock()


@dataclass(frozen=True)
class LoadedImage:
    """An image as the engine sees it.

    ``rgb`` is ``(1, 3, H, W)`` float32 in [0, 1], sRGB, oriented as displayed. ``alpha`` is
    ``(1, 1, H, W)`` float32 in [0, 1] (1 = opaque) or ``None``. ``icc_profile`` is the RGB ICC
    profile the file carried when its colours were converted from it to sRGB (pass it to
    :func:`save_image` to write a result back in that colour space), else ``None``. ``notes`` are
    one-line things the user should know (first frame of an animation, profile converted ...).
    """

    rgb: Tensor
    alpha: Tensor | None = None
    icc_profile: bytes | None = None
    notes: tuple[str, ...] = ()

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)``."""
        return self.rgb.shape[-1], self.rgb.shape[-2]


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def max_image_pixels() -> int | None:
    """The most pixels an image file may declare: ``$NST_MAX_IMAGE_PIXELS`` if set, else
    :data:`DEFAULT_MAX_IMAGE_PIXELS`; ``None`` means no limit (the variable set to 0)."""
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_IMAGE_PIXELS
    text = raw.replace("_", "").replace(",", "")
    try:
        value = float(text) if any(c in text for c in ".eE") else int(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or value != int(value):
        raise ConfigError(f"{MAX_PIXELS_ENV}={raw!r} is not a whole number of pixels; set it to a number "
                          f"such as 300000000, or 0 for no limit")
    return int(value) or None


@contextmanager
def _pillow_guard() -> Iterator[list[warnings.WarningMessage]]:
    """Hold Pillow's process-wide decoding settings for one read, and collect its warnings.

    Pillow checks ``Image.MAX_IMAGE_PIXELS`` itself in ``open``, ``seek`` and ``load`` (it warns
    above that number and raises above twice it) and reads ``ImageFile.LOAD_TRUNCATED_IMAGES``.
    nst_core checks the declared size against its own limit (``NST_MAX_IMAGE_PIXELS``), so the
    reader sets Pillow's limit per phase (see :func:`_load`), forces truncated files to be refused
    even where other code in the process allowed them, and turns Pillow's warnings into notes.
    These are process-wide settings: the block holds a lock and puts them all back on the way out,
    so nothing leaks; image reads in several threads take turns.
    """
    with _DECODE_LOCK:
        saved_limit, saved_truncated = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
        try:
            ImageFile.LOAD_TRUNCATED_IMAGES = False
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                yield caught
        finally:
            Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = saved_limit, saved_truncated


def _decode_limit(pillow_limit: int | None, limit: int | None) -> int | None:
    """Pillow's ``MAX_IMAGE_PIXELS`` while decoding: never stricter than nst_core's ``limit`` (Pillow
    raises above twice its value), so our limit is the one that speaks."""
    if pillow_limit is None or limit is None:
        return None
    return max(pillow_limit, -(-limit // 2))


def _warning_notes(label: str, caught: list[warnings.WarningMessage]) -> list[str]:
    """Pillow's data warnings ("Corrupt EXIF data" ...) as notes; other warnings are re-emitted."""
    notes = []
    for w in caught:
        if issubclass(w.category, Image.DecompressionBombWarning):
            continue  # nst_core enforces its own limit
        if issubclass(w.category, UserWarning):
            note = f"{label}: {_one_line(w.message)}"
            if note not in notes:
                notes.append(note)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return notes


def _bomb_error(label: str, size: tuple[int, int] | None, limit: int | None, detail: str = "") -> ImageError:
    if size is not None:
        pixels = size[0] * size[1]
        what = f"it declares {size[0]} x {size[1]} = {pixels:,} pixels"
        suggest = f"{MAX_PIXELS_ENV}={10 ** len(str(pixels)):d}"
    else:
        what = f"a frame is too large ({_one_line(detail)})"
        suggest = f"{MAX_PIXELS_ENV}=<pixels>"
    limit_text = f"the limit of {limit:,}" if limit else "Pillow's limit"
    return ImageError(f"{label}: refused: {what}, over {limit_text} that guards against decompression "
                      f"bombs; if you trust the file, raise the limit with the environment variable "
                      f"{suggest} (0 = no limit)")


def _sniff(head: bytes) -> str:
    """What an unidentified file seems to be, and what to do about it."""
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis",
                                                 b"mif1", b"msf1"):
        return ("a HEIC/HEIF image, which this Pillow cannot read: convert it to JPEG or PNG "
                "(or install pillow-heif)")
    if head.startswith(b"%PDF"):
        return "a PDF document, not an image: export the page as PNG or JPEG"
    lowered = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if lowered.startswith(b"<svg") or (lowered.startswith(b"<?xml") and b"<svg" in lowered):
        return "an SVG (vector) drawing: export it as PNG"
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head.rstrip(b"\0")):
        return "text, not image data (an image saved under the wrong name?); use PNG, JPEG, WebP or TIFF"
    return "not an image format Pillow can read; convert it to PNG, JPEG, WebP or TIFF"


def open_regular_file(path: str | os.PathLike, label: str | None = None, *, error: type[NSTError] = ImageError,
                      kind: str = "an image file", missing: str | None = None, allow_empty: bool = False,
                      max_bytes: int | None = None) -> io.BufferedReader:
    """Open ``path`` for reading, refusing what is not a regular file we may read: image files,
    and also resume files, run records and config files (a named pipe there would hang the run).

    Opened non-blocking and checked with ``fstat`` so that a named pipe or a device can never hang
    or flood the read.

    :param error: the :class:`NSTError` subclass raised (one line naming ``label``, default the path).
    :param kind: what the file should be, for messages ("a resume file").
    :param missing: the message when the file does not exist (default: "no such file ...").
    :param allow_empty: accept a 0-byte file (a config file may be empty; an image may not).
    :param max_bytes: refuse a larger file, before reading it.
    """
    path = Path(path)
    label = str(path) if label is None else label
    image = kind == "an image file"
    give = "give the path of an image" if image else f"give the path of {kind}"
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise error(missing or f"{label}: no such file; check the path and the name") from None
    except IsADirectoryError:
        raise error(f"{label}: is a folder, not {kind}; {give}") from None
    except PermissionError:
        if path.is_dir():
            raise error(f"{label}: is a folder, not {kind}; {give}") from None
        raise error(f"{label}: permission denied; make the file readable (e.g. chmod u+r) or copy it "
                    f"somewhere you can read") from None
    except OSError as exc:
        raise error(f"{label}: cannot open it ({_one_line(exc.strerror or exc)})") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise error(f"{label}: is a folder, not {kind}; {give}")
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{label}: not a regular file (a pipe, socket or device); give {kind}")
        if info.st_size == 0 and not allow_empty:
            raise error(f"{label}: the file is empty (0 bytes); " + ("export or download it again" if image
                                                                     else f"give {kind}"))
        if max_bytes is not None and info.st_size > max_bytes:
            raise error(f"{label}: {info.st_size:,} bytes is too large for {kind} (at most {max_bytes:,}); "
                        f"check the path")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _open_file(path: Path, label: str) -> io.BufferedReader:
    """Open an image file for reading (:func:`open_regular_file`)."""
    return open_regular_file(path, label)


def _orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """``array`` ``(H, W, ...)`` as displayed for EXIF orientation 1..8 (what
    ``PIL.ImageOps.exif_transpose`` does to an image). A turned array is a fresh C-ordered copy:
    torch refuses negative strides, and numpy keeps them even on a 1-pixel side."""
    turned = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
        8: lambda a: np.rot90(a, 1),
    }.get(orientation)
    return array if turned is None else turned(array).copy(order="C")


def _orientation(im: Image.Image, label: str, notes: list[str]) -> int:
    try:
        value = im.getexif().get(0x0112, 1)
    except Exception as exc:  # noqa: BLE001 - broken metadata must not lose the picture
        notes.append(f"{label}: ignored unreadable EXIF data ({_one_line(exc)})")
        return 1
    if isinstance(value, int) and 1 <= value <= 8:
        return value
    notes.append(f"{label}: ignored an invalid EXIF orientation ({value!r})")
    return 1


def _srgb() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _profile_description(profile: ImageCms.ImageCmsProfile) -> str:
    try:
        return _one_line(ImageCms.getProfileDescription(profile)) or "unnamed"
    except Exception:  # noqa: BLE001
        return "unnamed"


def _is_srgb(description: str) -> bool:
    return "srgb" in description.lower()


def _source_profile(im: Image.Image, label: str,
                    notes: list[str]) -> tuple[ImageCms.ImageCmsProfile | None, str]:
    """The embedded ICC profile to convert from, or ``None`` (no profile, an sRGB one, or damaged)."""
    icc = im.info.get("icc_profile")
    if not icc:
        return None, ""
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    except Exception as exc:  # noqa: BLE001 - a damaged profile must not lose the picture
        notes.append(f"{label}: ignored its damaged ICC colour profile ({_one_line(exc)}); colours used as sRGB")
        return None, ""
    description = _profile_description(profile)
    if _is_srgb(description):
        return None, description
    return profile, description


def _tile_rawmodes(im: Image.Image) -> list[str]:
    modes = []
    for tile in getattr(im, "tile", None) or ():
        args = tile[3]
        modes.append(args if isinstance(args, str) else str(args[0]) if args else "")
    return modes


def _swapped(rawmode: str) -> str:
    """The raw mode that unpacks the LOW byte of each 16-bit sample where ``rawmode`` takes the high one."""
    base, order = rawmode[:-1], rawmode[-1]
    if order == "N":
        order = "L" if sys.byteorder == "little" else "B"
    return base + ("B" if order == "L" else "L")


def _low_bytes(reopen, rawmodes: list[str]) -> np.ndarray | None:
    """Decode the file again keeping the low byte of each 16-bit sample (Pillow keeps only the high
    one). ``None`` if this Pillow cannot: the caller then stays at 8 bits."""
    try:
        im = reopen()
        if _tile_rawmodes(im) != rawmodes:
            return None
        tiles = []
        for tile in im.tile:
            args = tile[3]
            args = _swapped(args) if isinstance(args, str) else (_swapped(args[0]), *args[1:])
            tiles.append(tile._replace(args=args) if hasattr(tile, "_replace") else (*tile[:3], args))
        im.tile = tiles
        im.load()
        return np.asarray(im)
    except Exception:  # noqa: BLE001 - only precision is at stake; the 8-bit decode already worked
        return None


def _gray_scale(im: Image.Image, rawmodes: list[str], values: np.ndarray) -> float:
    if im.mode.startswith("I;16") or any("16" in m for m in rawmodes):
        return 65535.0
    if im.mode == "F":
        return 1.0
    top = float(values.max(initial=0))
    return 255.0 if top <= 255 else 65535.0 if top <= 65535 else 4294967295.0


def _decode(im: Image.Image, label: str, limit: int | None, reopen=None) -> tuple[np.ndarray, np.ndarray | None,
                                                                                    bytes | None, list[str]]:
    """Pixels of ``im`` as ``(H, W, 3)`` float32 sRGB and ``(H, W)`` alpha (or ``None``), both in
    [0, 1] and oriented as displayed, plus the profile converted from and notes. ``reopen`` (files
    only) opens the file again: then frame 0 is used, and 16-bit RGB keeps its low bytes.

    Pillow errors propagate; :func:`_load` turns them into :class:`ImageError`.
    """
    notes: list[str] = []
    width, height = im.size
    if width <= 0 or height <= 0:
        raise ImageError(f"{label}: declares an empty size ({width} x {height}); the file is damaged")
    if limit is not None and width * height > limit:
        raise _bomb_error(label, (width, height), limit)
    memory.check_decode(label, width, height)  # the declared size, before a pixel is decoded
    if im.format in REFUSED_FORMATS:
        raise ImageError(f"{label}: {REFUSED_FORMATS[im.format]}")
    if reopen is not None:  # a file: its first frame (a PIL image from a caller: the frame it is at)
        frames = getattr(im, "n_frames", 1)
        if isinstance(frames, int) and frames > 1 and im.format != "MPO":  # MPO: a camera's preview image
            kind = "pages" if im.format == "TIFF" else "frames"
            notes.append(f"{label}: has {frames} {kind}; used the first")
        if im.tell() != 0:
            im.seek(0)
    profile, description = _source_profile(im, label, notes)
    icc_bytes = im.info.get("icc_profile")
    rawmodes = _tile_rawmodes(im)
    im.load()
    orientation = _orientation(im, label, notes)
    transparency = im.info.get("transparency")

    alpha: np.ndarray | None = None
    kept_profile: bytes | None = None
    mode = im.mode
    if mode in ("RGB", "RGBA") and rawmodes and all(m in _SIXTEEN_BIT_RAWMODES for m in rawmodes):
        high = np.asarray(im)
        low = _low_bytes(reopen, rawmodes) if reopen is not None and profile is None else None
        if low is not None and low.shape == high.shape:
            samples = (high.astype(np.uint16) << 8) | low
            rgb = samples[..., :3].astype(np.float32) / 65535.0
            if mode == "RGBA":
                alpha = samples[..., 3].astype(np.float32) / 65535.0
            elif isinstance(transparency, tuple) and len(transparency) == 3:
                alpha = np.where((samples[..., :3] == np.array(transparency)).all(-1), 0.0, 1.0).astype(np.float32)
            return (np.ascontiguousarray(_orient(rgb, orientation)),
                    None if alpha is None else np.ascontiguousarray(_orient(alpha, orientation)), None, notes)
    if mode in ("I", "F") or mode.startswith("I;16"):
        values = np.asarray(im).astype(np.float64)
        if profile is not None:
            notes.append(f"{label}: kept the {mode} gray values as they are; its colour profile "
                         f"'{description}' was not applied")
        if mode != "F" and isinstance(transparency, int):
            alpha = np.where(values == transparency, 0.0, 1.0).astype(np.float32)
        scale = _gray_scale(im, rawmodes, values)
        if not np.isfinite(values).all():
            notes.append(f"{label}: replaced NaN or infinite pixel values with 0")
            values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
        gray = np.clip(values / scale, 0.0, 1.0).astype(np.float32)
        rgb = np.repeat(gray[..., None], 3, axis=2)
        return (np.ascontiguousarray(_orient(rgb, orientation)),
                None if alpha is None else np.ascontiguousarray(_orient(alpha, orientation)), None, notes)

    if mode in ("P", "PA"):
        im = im.convert("RGBA" if mode == "PA" or transparency is not None else "RGB")
    elif mode in ("RGB", "L") and transparency is not None:
        im = im.convert("RGBA" if mode == "RGB" else "LA")
    elif mode == "1":
        im = im.convert("L")
    elif mode in ("RGBa", "La"):
        im = im.convert("RGBA" if mode == "RGBa" else "LA")
    if im.mode in ("RGBA", "LA"):
        alpha = np.asarray(im.getchannel("A"), dtype=np.float32) / 255.0
        im = im.convert("RGB" if im.mode == "RGBA" else "L")
    if profile is not None:
        try:
            im = ImageCms.profileToProfile(im, profile, _srgb(), outputMode="RGB")
            notes.append(f"{label}: converted from its colour profile '{description}' to sRGB")
            if profile.profile.xcolor_space.strip() == "RGB":
                kept_profile = bytes(icc_bytes)
        except (ImageCms.PyCMSError, ValueError, OSError) as exc:
            notes.append(f"{label}: ignored its colour profile '{description}', which does not fit a "
                         f"{im.mode} image ({_one_line(exc)}); colours used as sRGB")
    if im.mode == "LAB":
        im = ImageCms.applyTransform(im, ImageCms.buildTransform(
            ImageCms.createProfile("LAB"), _srgb(), "LAB", "RGB"))
    if im.mode != "RGB":
        im = im.convert("RGB")
    rgb = np.asarray(im, dtype=np.float32) / 255.0
    return (np.ascontiguousarray(_orient(rgb, orientation)),
            None if alpha is None else np.ascontiguousarray(_orient(alpha, orientation)), kept_profile, notes)


def _load(label: str, limit: int | None, get_image, head: bytes = b"", reopen=None) -> LoadedImage:
    """Open (``get_image()``) and decode under :func:`_pillow_guard`, turning every failure inside
    Pillow into an :class:`ImageError` that names ``label``."""
    pending: list[warnings.WarningMessage] = []
    size: tuple[int, int] | None = None
    try:
        with _pillow_guard() as caught:
            try:
                pillow_limit = Image.MAX_IMAGE_PIXELS
                Image.MAX_IMAGE_PIXELS = None  # the header only: _decode checks the declared size first
                im = get_image()
                size = im.size
                Image.MAX_IMAGE_PIXELS = _decode_limit(pillow_limit, limit)
                rgb, alpha, icc, notes = _decode(im, label, limit, reopen)
            finally:
                pending = list(caught)
    except NSTError:  # ours: refusals (ImageError), not enough memory to decode (ResourceError)
        raise
    except Image.DecompressionBombError as exc:
        raise _bomb_error(label, None, limit, str(exc)) from None
    except Image.UnidentifiedImageError:
        raise ImageError(f"{label}: {_sniff(head)}") from None
    except MemoryError:
        what = f"{size[0]} x {size[1]} pixels" if size else "it"
        raise ImageError(f"{label}: not enough memory to decode {what}; use a smaller image") from None
    except Exception as exc:  # noqa: BLE001 - any failure inside Pillow means a file it cannot decode
        raise ImageError(f"{label}: the image data is truncated or damaged ({type(exc).__name__}: "
                         f"{_one_line(exc)}); export or download it again") from None
    notes += _warning_notes(label, pending)
    tensor = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0).contiguous()
    alpha_t = None if alpha is None else torch.from_numpy(alpha)[None, None].contiguous()
    return LoadedImage(tensor, alpha_t, icc, tuple(dict.fromkeys(notes)))


def _read_file(path: Path) -> LoadedImage:
    label = str(path)
    limit = max_image_pixels()
    with _open_file(path, label) as handle:
        head = handle.read(1024)

        def open_image() -> Image.Image:
            handle.seek(0)
            return Image.open(handle)

        return _load(label, limit, open_image, head, reopen=open_image)


def _read_bytes(data: bytes, label: str) -> LoadedImage:
    handle = io.BytesIO(data)

    def open_image() -> Image.Image:
        handle.seek(0)
        return Image.open(handle)

    return _load(label, max_image_pixels(), open_image, data[:1024], reopen=open_image)


def read_image(source: ImageSource, label: str | None = None) -> LoadedImage:
    """Read a file, encoded bytes, PIL image, tensor or array into a :class:`LoadedImage` (on the CPU).

    Files, encoded bytes (a file's contents: PNG, JPEG, ...; ``label`` names them in messages,
    default "image bytes") and PIL images: see the module docstring. Tensors may be ``(3, H, W)`` or
    ``(1, 3, H, W)`` (1 or 4 channels: gray or RGBA), float in [0, 1] or uint8; arrays
    ``(H, W)`` or ``(H, W, 1|3|4)``, uint8, uint16 or float in [0, 1]. Float values outside
    [0, 1] are clipped; NaN or infinite values are refused.

    :raises ImageError: the source cannot be read; the message names it and says what to do.
    :raises ConfigError: ``NST_MAX_IMAGE_PIXELS`` is not a number.
    """
    if isinstance(source, Tensor):
        return _from_tensor(source)
    if isinstance(source, np.ndarray):
        return _from_array(source)
    if isinstance(source, Image.Image):
        return _load(label or "image", max_image_pixels(), lambda: source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _read_bytes(bytes(source), label or "image bytes")
    if not isinstance(source, (str, os.PathLike)):
        raise ImageError(f"cannot read an image from a {type(source).__name__}; give a path, encoded bytes, "
                         f"a PIL image, a tensor or an array")
    return _read_file(Path(source))


def _from_array(array: np.ndarray) -> LoadedImage:
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4) or 0 in array.shape:
        raise ImageError(f"an image array must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {array.shape}")
    if array.dtype == np.uint8:
        arr = array.astype(np.float32) / 255.0
    elif array.dtype == np.uint16:
        arr = array.astype(np.float32) / 65535.0
    elif array.dtype == np.bool_ or np.issubdtype(array.dtype, np.floating):
        arr = array.astype(np.float32)
    else:
        raise ImageError(f"an image array must be uint8, uint16 or float in [0, 1], got {array.dtype}")
    return _from_tensor(torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1))


def _from_tensor(t: Tensor) -> LoadedImage:
    if t.dim() == 3:
        t = t.unsqueeze(0)
    if t.dim() != 4 or t.shape[0] != 1 or t.shape[1] not in (1, 3, 4) or t.shape[2] == 0 or t.shape[3] == 0:
        raise ImageError(f"an image tensor must be (1, 3, H, W) or (3, H, W), got {tuple(t.shape)}")
    t = t.detach().to("cpu")
    t = t.float() / 255.0 if t.dtype == torch.uint8 else t.to(torch.float32)
    if not torch.isfinite(t).all():
        raise ImageError("the image tensor contains NaN or infinite values")
    alpha = None
    if t.shape[1] == 4:
        t, alpha = t[:, :3], t[:, 3:].clamp(0, 1).contiguous()
    elif t.shape[1] == 1:
        t = t.expand(1, 3, *t.shape[2:])
    return LoadedImage(t.clamp(0, 1).contiguous(), alpha)


def load_image(source: ImageSource) -> Tensor:
    """The RGB of an image as ``(1, 3, H, W)`` float32 in [0, 1] on the CPU (alpha dropped)."""
    return read_image(source).rgb


def fit_longest_side(height: int, width: int, size: int) -> tuple[int, int]:
    """``(h, w)`` with the longest side ``size`` and the aspect ratio kept (each side >= 1)."""
    scale = size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize(image: Tensor, height: int, width: int) -> Tensor:
    """Resize ``(N, C, H, W)`` to ``(N, C, height, width)``: antialiased when shrinking."""
    if tuple(image.shape[-2:]) == (height, width):
        return image
    shrinking = height < image.shape[-2] or width < image.shape[-1]
    return F.interpolate(image, size=(height, width), mode="bicubic" if not shrinking else "bilinear",
                         align_corners=False, antialias=shrinking).clamp(0, 1)


def to_pil(image: Tensor, alpha: Tensor | None = None) -> Image.Image:
    """``(1, 3, H, W)`` or ``(3, H, W)`` in [0, 1] (and optional alpha ``(1, 1, H, W)``, ``(H, W)``
    ...) -> 8-bit PIL RGB(A). Values are clipped to [0, 1]; NaN or infinite values are refused."""
    if image.dim() == 4 and image.shape[0] == 1:
        image = image[0]
    if image.dim() != 3 or image.shape[0] != 3 or 0 in image.shape:
        raise ImageError(f"an image tensor must be (1, 3, H, W) or (3, H, W), got {tuple(image.shape)}")
    image = image.detach().to("cpu", torch.float32)
    if not torch.isfinite(image).all():
        raise ImageError("the image holds NaN or infinite values, so it would come out broken")
    arr = (image.clamp(0, 1) * 255).round().to(torch.uint8)
    im = Image.fromarray(arr.permute(1, 2, 0).contiguous().numpy(), "RGB")
    if alpha is not None:
        a = alpha.detach().to("cpu", torch.float32)
        a = a.reshape(a.shape[-2:]) if a.dim() > 2 else a
        if a.dim() != 2 or a.numel() == 0:
            raise ImageError(f"alpha must be (H, W) or (1, 1, H, W), got {tuple(alpha.shape)}")
        if not torch.isfinite(a).all():
            raise ImageError("the alpha channel holds NaN or infinite values")
        if tuple(a.shape) != im.size[::-1]:
            a = resize(a[None, None].clamp(0, 1), im.size[1], im.size[0])[0, 0]
        a8 = (a.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        im.putalpha(Image.fromarray(a8, "L"))
    return im


def _write_error(path: Path, directory: Path, exc: OSError) -> ImageError:
    code = exc.errno
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        what = "no space left on the device; free some space or choose another folder"
    elif code in (errno.EACCES, errno.EPERM):
        what = f"permission denied in {str(directory)!r}; choose a folder you can write to"
    elif code == errno.EROFS:
        what = f"{str(directory)!r} is on a read-only file system; choose another folder"
    else:
        what = f"could not write it ({_one_line(exc.strerror or exc)})"
    return ImageError(f"{path}: {what}; nothing was written")


PART_SUFFIX_LENGTH = len(".") + len(".") + 8 + len(".part")
"""How much longer a temporary file's name is than its target's: ``.NAME.xxxxxxxx.part``."""

_PART_NAME = re.compile(r"\.(.+)\.[0-9a-f]{8}\.part")


def is_temporary_of(name: str) -> str | None:
    """The target's name when ``name`` is a temporary file of :func:`save_image` and friends
    (``.NAME.<8 hex>.part``), else None."""
    match = _PART_NAME.fullmatch(name)
    return match.group(1) if match else None


def _open_temporary(directory: Path, name: str) -> tuple[int, Path]:
    """A new, empty ``.<name>.<random>.part`` file in ``directory`` (mode 0666 minus the umask)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        temporary = directory / f".{name}.{secrets.token_hex(4)}.part"
        try:
            return os.open(temporary, flags, 0o666), temporary
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "could not find a free temporary file name", str(directory))


def _fsync(fd: int) -> None:
    """Flush a file to the disk; file systems that cannot (EINVAL, ENOTSUP) are not an error."""
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, getattr(errno, "ENOTSUP", errno.EINVAL)):
            raise


def _sync_directory(directory: Path) -> None:
    """Make a rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _retarget(im: Image.Image, icc_profile: bytes, path: Path) -> Image.Image:
    """Convert sRGB pixels to ``icc_profile`` (an RGB profile) so that the file can embed it."""
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
    except Exception as exc:  # noqa: BLE001
        raise ImageError(f"{path}: icc_profile is not a valid ICC profile ({_one_line(exc)}); "
                         f"leave it out to write sRGB") from None
    if profile.profile.xcolor_space.strip() != "RGB":
        raise ImageError(f"{path}: icc_profile describes {profile.profile.xcolor_space.strip()} colours, "
                         f"not RGB; leave it out to write sRGB")
    if _is_srgb(_profile_description(profile)):
        return im
    alpha = im.getchannel("A") if im.mode == "RGBA" else None
    try:
        out = ImageCms.profileToProfile(im.convert("RGB"), _srgb(), profile, outputMode="RGB")
    except ImageCms.PyCMSError as exc:
        raise ImageError(f"{path}: cannot convert to the ICC profile ({_one_line(exc)}); "
                         f"leave it out to write sRGB") from None
    if alpha is not None:
        out.putalpha(alpha)
    return out


FileData = bytes | Callable[[BinaryIO], None]
"""What :func:`save_together` writes to one path: the bytes, or a function writing them to a handle."""


def image_encoder(image: Tensor | Image.Image, path: str | os.PathLike, *, alpha: Tensor | None = None,
                  quality: int = 95, icc_profile: bytes | None = None,
                  text: Mapping[str, str] | None = None) -> Callable[[BinaryIO], None]:
    """Check that ``image`` can be written to ``path`` (see :func:`save_image` for the arguments)
    and return the function that encodes it to an open binary handle; nothing is written yet.

    :raises ImageError: as :func:`save_image`, for everything found before writing.
    """
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        shown = repr(path.suffix) if path.suffix else "(none)"
        raise ImageError(f"{path}: unknown image extension {shown}; use one of {', '.join(sorted(FORMATS))}")
    if not isinstance(quality, int) or isinstance(quality, bool) or not 0 <= quality <= 100:
        raise ImageError(f"{path}: quality must be a whole number from 0 to 100, got {quality!r}")
    if isinstance(image, Image.Image):
        im = image
    else:
        try:
            im = to_pil(image, alpha)
        except ImageError as exc:
            raise ImageError(f"{path}: {exc}; nothing was written") from None
    longest = MAX_SIDE.get(fmt)
    if longest is not None and max(im.size) > longest:
        raise ImageError(f"{path}: {fmt} cannot store an image {im.size[0]} x {im.size[1]} (at most {longest} "
                         f"pixels a side); use .png or .tiff, or a smaller size")
    if icc_profile:
        im = _retarget(im, icc_profile, path)
    if fmt == "JPEG" and im.mode not in ("RGB", "L", "CMYK"):
        im = im.convert("RGB")
    options: dict = {}
    if fmt == "JPEG":
        options = {"quality": quality, "subsampling": 0}
    elif fmt == "WEBP":
        options = {"quality": quality}
    elif fmt == "TIFF":
        options = {"compression": "tiff_deflate"}
    if icc_profile:
        options["icc_profile"] = icc_profile
    if text and fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        for key, value in text.items():
            info.add_itxt(key, value)
        options["pnginfo"] = info

    def encode(handle: BinaryIO) -> None:
        try:
            im.save(handle, format=fmt, **options)
        except (ValueError, KeyError, TypeError) as exc:  # Pillow's encoders refusing this image
            raise ImageError(f"{path}: {fmt} cannot store this image ({_one_line(exc)}); try .png or .tiff; "
                             f"nothing was written") from None

    return encode


def save_image(image: Tensor | Image.Image, path: str | os.PathLike, *, alpha: Tensor | None = None,
               quality: int = 95, icc_profile: bytes | None = None,
               text: Mapping[str, str] | None = None) -> Path:
    """Write ``image`` to ``path`` in the format its extension names, atomically.

    :param image: ``(1, 3, H, W)`` or ``(3, H, W)`` float in [0, 1] (sRGB), or a PIL image.
    :param alpha: optional ``(1, 1, H, W)`` or ``(H, W)`` in [0, 1], resized to the image if needed;
        written by PNG, WebP and TIFF, dropped by JPEG.
    :param quality: JPEG and WebP quality, 0..100 (JPEG is written with 4:4:4 chroma).
    :param icc_profile: an RGB ICC profile (e.g. ``LoadedImage.icc_profile``): the sRGB pixels are
        converted to it and it is embedded. Without it the file is sRGB, untagged.
    :param text: key/value text stored in the file (PNG text chunks; other formats ignore it).
    :returns: ``path``.
    :raises ImageError: unknown extension, missing folder, a folder as target, a format that
        cannot store the image, NaN values, a permission error, a full disk ... In every case the
        target is untouched (an existing file keeps its old content) and no temporary file is left.

    The data goes to ``.<name>.<random>.part`` in the target's folder, is flushed to disk and then
    renamed over ``path``; a replaced file keeps its permission bits (a symbolic link at ``path`` is
    replaced by the file, not written through). A PIL image is written in its own mode where the
    format can store it (JPEG: converted to RGB).
    """
    path = Path(path)
    encode = image_encoder(image, path, alpha=alpha, quality=quality, icc_profile=icc_profile, text=text)
    return save_together([(path, encode)])[0]


def _check_target(path: Path) -> None:
    directory = path.parent
    if not directory.exists():
        raise ImageError(f"{path}: the folder {str(directory)!r} does not exist; create it or choose another path")
    if not directory.is_dir():
        raise ImageError(f"{path}: {str(directory)!r} is not a folder; choose another path")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder; give a file name such as {path / ('out' + path.suffix)}")


def save_together(files: Sequence[tuple[str | os.PathLike, FileData]]) -> list[Path]:
    """Write several files all or nothing (an image and its run record): every file first goes to
    its temporary ``.<name>.<random>.part`` next to it and is flushed to the disk; only when all
    are complete are they renamed over their targets, in order.

    :param files: ``(path, data)`` pairs; ``data`` is the bytes, or a function that writes them to
        a binary handle (:func:`image_encoder`).
    :returns: the paths.
    :raises ImageError: one line. When a temporary file cannot be written (a full disk, a name too
        long, no permission, a format that cannot store the image) no target is touched and no
        temporary is left ("nothing was written"). A rename that fails after others succeeded (the
        file system changed under the run) says which files were written.
    """
    paths = [Path(path) for path, _ in files]
    for path in paths:
        _check_target(path)
    temporaries: list[Path] = []
    try:
        for path, (_, data) in zip(paths, files):
            _write_temporary(path, data, temporaries)
        done: list[Path] = []
        for path, temporary in zip(paths, list(temporaries)):
            try:
                os.replace(temporary, path)
            except OSError as exc:
                error = _write_error(path, path.parent, exc)
                if done:
                    written = ", ".join(str(p) for p in done)
                    error = ImageError(str(error).replace("nothing was written", f"{written} was written, "
                                                          f"{path} was not"))
                raise error from None
            temporaries.remove(temporary)
            done.append(path)
    finally:
        for temporary in temporaries:
            try:
                os.unlink(temporary)
            except OSError:
                pass
    for directory in dict.fromkeys(path.parent for path in paths):
        _sync_directory(directory)
    return paths


def _write_temporary(path: Path, data: FileData, temporaries: list[Path]) -> None:
    """Write ``data`` to a new temporary next to ``path`` (appended to ``temporaries`` as soon as it
    exists), flushed to the disk, with the permission bits of an existing ``path``."""
    try:
        existing_mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        existing_mode = None
    try:
        fd, temporary = _open_temporary(path.parent, path.name)
        temporaries.append(temporary)
        with os.fdopen(fd, "wb") as handle:
            if callable(data):
                data(handle)
            else:
                handle.write(data)
            handle.flush()
            _fsync(handle.fileno())
        if existing_mode is not None:
            os.chmod(temporary, existing_mode)
    except OSError as exc:
        raise _write_error(path, path.parent, exc) from None


def probe_writable(directory: str | os.PathLike, name: str = "probe") -> None:
    """Refuse, before a long run, a folder where its files cannot be written: create and delete a
    temporary ``.<name>.<random>.part`` there.

    :raises ImageError: one line (permission denied, a read-only file system, a full disk ...).
    """
    directory = Path(directory)
    try:
        fd, temporary = _open_temporary(directory, name)
    except OSError as exc:
        raise ImageError(str(_write_error(directory / name, directory, exc)).replace(
            "; nothing was written", "; checked before the run, nothing was written")) from None
    os.close(fd)
    try:
        os.unlink(temporary)
    except OSError:
        pass


def save_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically, like :func:`save_image` (e.g. a run record)."""
    return save_bytes(path, text.encode("utf-8"))


def save_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: a temporary file in the same folder, flushed to the
    disk, then renamed over ``path`` (``os.replace``). ``path`` is whole or untouched, never partial;
    an OSError becomes a one-line :class:`ImageError`."""
    return save_together([(path, data)])[0]
