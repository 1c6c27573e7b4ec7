"""Image files <-> tensors ``(1, 3, H, W)`` float32 RGB in [0, 1].

Reading honours EXIF orientation, converts any Pillow mode (palette, CMYK, gray, 16-bit) to RGB,
converts embedded ICC profiles to sRGB, keeps alpha aside and takes the first frame of an
animation. Writing picks the format from the extension and is atomic: the file appears whole or
not at all.
"""

from __future__ import annotations

from dataclasses import dataclass
import io
import os
from pathlib import Path
import tempfile
from typing import Union

import numpy as np
from PIL import Image, ImageCms, ImageOps
import torch
from torch import Tensor
import torch.nn.functional as F

from nst_core.errors import ImageError

ImageSource = Union[str, os.PathLike, Image.Image, Tensor, np.ndarray]

FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}
"""Output formats by file extension."""


@dataclass(frozen=True)
class LoadedImage:
    """An image as the engine sees it.

    ``rgb`` is ``(1, 3, H, W)`` float32 in [0, 1] (sRGB); ``alpha`` is ``(1, 1, H, W)`` in [0, 1]
    or ``None``; ``notes`` are things the user should know (first frame of an animation ...).
    """

    rgb: Tensor
    alpha: Tensor | None = None
    icc_profile: bytes | None = None
    notes: tuple[str, ...] = ()

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)``."""
        return self.rgb.shape[-1], self.rgb.shape[-2]


def _srgb_profile() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _to_srgb(im: Image.Image) -> Image.Image:
    icc = im.info.get("icc_profile")
    if not icc or im.mode not in ("RGB", "RGBA", "CMYK", "L"):
        return im
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if "srgb" in ImageCms.getProfileDescription(src).lower():
            return im
        out_mode = "RGBA" if im.mode == "RGBA" else "RGB"
        return ImageCms.profileToProfile(im, src, _srgb_profile(), outputMode=out_mode)
    except (ImageCms.PyCMSError, OSError, ValueError):
        return im  # a broken profile: use the pixel values as they are


def _pil_to_arrays(im: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """``(H, W, 3)`` and optional ``(H, W)`` float32 arrays in [0, 1]."""
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        gray = np.asarray(im, dtype=np.float64)
        scale = 65535.0 if im.mode.startswith("I;16") or gray.max(initial=0) > 255 else 255.0
        gray = np.clip(gray / scale, 0, 1).astype(np.float32)
        return np.repeat(gray[..., None], 3, axis=2), None
    if im.mode == "F":
        gray = np.clip(np.asarray(im, dtype=np.float32), 0, 1)
        return np.repeat(gray[..., None], 3, axis=2), None
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif im.mode in ("1", "CMYK", "YCbCr", "LAB", "HSV"):
        im = im.convert("RGB")
    elif im.mode == "PA":
        im = im.convert("RGBA")
    alpha = None
    if im.mode in ("RGBA", "LA", "RGBa", "La"):
        alpha = np.asarray(im.getchannel("A"), dtype=np.float32) / 255.0
        im = im.convert("RGB")
    if im.mode == "L":
        im = im.convert("RGB")
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im, dtype=np.float32) / 255.0, alpha


def read_image(source: ImageSource) -> LoadedImage:
    """Read a file, PIL image, tensor or array into a :class:`LoadedImage` (on the CPU).

    Tensors may be ``(3, H, W)`` or ``(1, 3, H, W)`` (or with 4 channels: RGBA) in [0, 1];
    arrays ``(H, W, 3|4)`` uint8 or float in [0, 1].
    """
    if isinstance(source, Tensor):
        return _from_tensor(source)
    if isinstance(source, np.ndarray):
        arr = source.astype(np.float32) / 255.0 if source.dtype == np.uint8 else source.astype(np.float32)
        if arr.ndim == 2:
            arr = arr[..., None].repeat(3, axis=2)
        return _from_tensor(torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1))
    notes: list[str] = []
    if isinstance(source, Image.Image):
        im, label = source, "image"
    else:
        path = Path(source)
        label = str(path)
        if not path.exists():
            raise ImageError(f"{label}: no such file")
        if path.is_dir():
            raise ImageError(f"{label}: is a directory, not an image file")
        if path.stat().st_size == 0:
            raise ImageError(f"{label}: the file is empty (0 bytes)")
        try:
            im = Image.open(path)
        except Image.DecompressionBombError as exc:
            raise ImageError(f"{label}: refused, too many pixels for a safe decode ({exc})") from None
        except PermissionError:
            raise ImageError(f"{label}: permission denied") from None
        except (Image.UnidentifiedImageError, OSError) as exc:
            raise ImageError(f"{label}: not an image Pillow can read ({exc})") from None
    try:
        if getattr(im, "is_animated", False):
            im.seek(0)
            notes.append(f"{label}: animated image, used the first frame")
        im.load()
        icc = im.info.get("icc_profile")
        im = ImageOps.exif_transpose(im) or im
        im = _to_srgb(im)
        rgb, alpha = _pil_to_arrays(im)
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{label}: refused, too many pixels for a safe decode ({exc})") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"{label}: the image data is damaged or truncated ({exc})") from None
    tensor = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).unsqueeze(0)
    alpha_t = None if alpha is None else torch.from_numpy(np.ascontiguousarray(alpha))[None, None]
    return LoadedImage(tensor.contiguous(), alpha_t, icc, tuple(notes))


def _from_tensor(t: Tensor) -> LoadedImage:
    if t.dim() == 3:
        t = t.unsqueeze(0)
    if t.dim() != 4 or t.shape[0] != 1 or t.shape[1] not in (1, 3, 4):
        raise ImageError(f"an image tensor must be (1, 3, H, W) or (3, H, W), got {tuple(t.shape)}")
    t = t.detach().to("cpu", torch.float32)
    if not torch.isfinite(t).all():
        raise ImageError("the image tensor contains NaN or infinite values")
    alpha = None
    if t.shape[1] == 4:
        t, alpha = t[:, :3], t[:, 3:].clamp(0, 1)
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
    """``(1, 3, H, W)`` or ``(3, H, W)`` in [0, 1] (and optional alpha) -> 8-bit PIL RGB(A)."""
    if image.dim() == 4:
        image = image[0]
    arr = (image.detach().to("cpu", torch.float32).clamp(0, 1) * 255).round().to(torch.uint8)
    arr = arr.permute(1, 2, 0).contiguous().numpy()
    im = Image.fromarray(arr, "RGB")
    if alpha is not None:
        a = alpha.reshape(alpha.shape[-2:]) if alpha.dim() > 2 else alpha
        if tuple(a.shape) != im.size[::-1]:
            a = resize(a[None, None].float(), im.size[1], im.size[0])[0, 0]
        a8 = (a.detach().cpu().float().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        im.putalpha(Image.fromarray(a8, "L"))
    return im


def save_image(image: Tensor | Image.Image, path: str | os.PathLike, *, alpha: Tensor | None = None,
               quality: int = 95, icc_profile: bytes | None = None) -> Path:
    """Write ``image`` to ``path`` in the format its extension names, atomically.

    The data goes to a temporary file in the same directory, which is renamed over ``path`` only
    once complete: an error or an interruption never leaves a half-written file. PNG, JPEG
    (quality ``quality``, 4:4:4), WebP and TIFF; JPEG drops alpha.
    """
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ImageError(f"{path}: unknown image extension {path.suffix!r}; "
                         f"use one of {', '.join(sorted(FORMATS))}")
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise ImageError(f"{path}: the directory {str(directory)!r} does not exist")
    if path.is_dir():
        raise ImageError(f"{path}: is a directory")
    im = image if isinstance(image, Image.Image) else to_pil(image, alpha)
    if fmt == "JPEG" and im.mode != "RGB":
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
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            im.save(handle, format=fmt, **options)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException as exc:
        try:
            os.unlink(tmp_name)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise ImageError(f"{path}: could not write the image ({exc.strerror or exc})") from None
        raise
    return path
