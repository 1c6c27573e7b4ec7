"""Property-based tests (hypothesis) of image input through to stylize().

Over sizes (1..300 px a side), modes (1-bit, 2/4/8-bit gray, gray+alpha, RGB, RGBA, palette with
and without transparency, 16-bit gray, 16-bit RGB/RGBA/gray+alpha, CMYK), formats (PNG, JPEG, WebP,
TIFF, GIF), EXIF orientations, animation frames, ICC profiles and damaged bytes:

- a valid file is always read: the documented contract holds, the size is the displayed size, and
  the pixels equal Pillow's own decode (converted to RGB and turned upright) where Pillow's
  conversion is exact;
- a damaged file gives a valid image or an :class:`NSTError` with a one-line message naming it,
  never another exception;
- stylize(size in 16..64, 1 step) returns a valid image whose longest side is ``size``.

Nothing may hang: each example runs under an alarm. Derandomized, so CI runs the same examples.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
import signal
import warnings

from hypothesis import HealthCheck, event, given, settings, strategies as st
import numpy as np
from PIL import Image, ImageOps
import pytest
import torch

from nst_core import stylize
from nst_core.errors import NSTError
from nst_core.image import fit_longest_side, read_image
from image_writers import iccp_chunk, png_chunk, rgb_profile, write_png, write_tiff

PILLOW_MODES = ["L", "LA", "RGB", "RGBA", "P", "P+transparency", "I;16", "CMYK", "1"]
RAW_MODES = {"RGB;16": (2, 3), "RGBA;16": (6, 4), "LA;16": (4, 2), "L;2": (0, 1), "L;4": (0, 1)}
"""Modes Pillow cannot write, made by the spec writers: PNG colour type and channels."""
FORMATS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "TIFF": "tif", "GIF": "gif"}
WITH_EXIF = {"PNG", "JPEG", "WEBP", "TIFF"}
ANIMATED = {"PNG", "WEBP", "TIFF", "GIF"}
PROFILES = {"none": None, "adobe": ("Adobe RGB (1998)", 563 / 256), "p3": ("Display P3", None)}

FUZZ = settings(derandomize=True, database=None, deadline=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much])


def _writable(mode: str, fmt: str) -> bool:
    import io

    base = "P" if mode.startswith("P") else mode
    try:
        Image.new(base, (2, 2)).save(io.BytesIO(), fmt)
        return True
    except (OSError, ValueError, KeyError):
        return False


COMBINATIONS = sorted({(m, f) for m in PILLOW_MODES for f in FORMATS if _writable(m, f)}
                      | {(m, "PNG") for m in RAW_MODES} | {("RGB;16", "TIFF"), ("RGBA;16", "TIFF"), ("I;16", "TIFF")})


@contextmanager
def time_limit(seconds: int):
    """Fail (instead of hanging) if the block takes longer than ``seconds`` (POSIX; elsewhere no limit)."""
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def alarm(signum, frame):
        raise TimeoutError(f"no answer after {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@st.composite
def image_files(draw, *, max_side: int = 300):
    mode, fmt = draw(st.sampled_from(COMBINATIONS))
    width = draw(st.integers(1, max_side))
    height = draw(st.integers(1, max_side))
    seed = draw(st.integers(0, 2**32 - 1))
    orientation = draw(st.integers(1, 8)) if fmt in WITH_EXIF else 1
    frames = draw(st.integers(1, 3)) if fmt in ANIMATED and mode in PILLOW_MODES else 1
    profile = draw(st.sampled_from(sorted(PROFILES))) if mode in ("RGB", "RGBA", "P", "RGB;16") else "none"
    return {"mode": mode, "format": fmt, "width": width, "height": height, "seed": seed,
            "orientation": orientation, "frames": frames, "profile": profile}


def make_file(spec: dict, folder) -> Path:  # noqa: C901 - one branch per file kind the fuzzer makes
    """Write the file ``spec`` describes; returns its path."""
    rng = np.random.default_rng(spec["seed"])
    w, h, mode, fmt = spec["width"], spec["height"], spec["mode"], spec["format"]
    path = folder / f"fuzz.{FORMATS[fmt]}"
    icc = rgb_profile(*PROFILES[spec["profile"]]) if PROFILES[spec["profile"]] else None
    exif = Image.Exif()
    if spec["orientation"] != 1:
        exif[0x0112] = spec["orientation"]
    if mode in RAW_MODES:
        top = 3 if mode == "L;2" else 15 if mode == "L;4" else 65535
        color_type, channels = RAW_MODES[mode]
        depth = 2 if mode == "L;2" else 4 if mode == "L;4" else 16
        samples = rng.integers(0, top + 1, (h, w, channels), dtype=np.uint16 if depth == 16 else np.uint8)
        if fmt == "TIFF":
            return write_tiff(path, samples, big_endian=bool(spec["seed"] % 2), deflate=bool(spec["seed"] % 3 == 0),
                              extra_samples=2 if channels == 4 else None,
                              orientation=spec["orientation"] if spec["orientation"] != 1 else None)
        chunks = (iccp_chunk(icc) if icc else b"") + (png_chunk(b"eXIf", exif.tobytes()) if spec["orientation"] != 1
                                                      else b"")
        return write_png(path, samples, color_type, depth, filter_kind=int(spec["seed"] % 5), chunks=chunks)

    palette = rng.integers(0, 256, 48).tolist()  # shared: Pillow's APNG writer needs one palette

    def one_frame() -> Image.Image:
        if mode in ("P", "P+transparency"):
            im = Image.fromarray(rng.integers(0, 16, (h, w), dtype=np.uint8), "P")
            im.putpalette(palette)
            return im
        if mode == "I;16":
            return Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
        if mode == "1":
            return Image.fromarray(rng.integers(0, 2, (h, w), dtype=np.uint8) * 255, "L").convert("1")
        bands = len(Image.new(mode, (1, 1)).getbands())
        data = rng.integers(0, 256, (h, w, bands), dtype=np.uint8)
        return Image.fromarray(data[..., 0] if bands == 1 else data, mode)

    images = [one_frame() for _ in range(spec["frames"])]
    options: dict = {}
    if mode == "P+transparency":
        options["transparency"] = 3
    if icc:
        options["icc_profile"] = icc
    if spec["orientation"] != 1:
        options["exif"] = exif
    if fmt == "WEBP":
        options["lossless"] = bool(spec["seed"] % 2)
    if len(images) > 1:
        options.update(save_all=True, append_images=images[1:])
    images[0].save(path, fmt, **options)
    return path


def pillow_oracle(path) -> np.ndarray:
    """Pillow's own reading of frame 0, upright, as ``(H, W, 3)`` in [0, 1].

    Opened from a file object: Pillow 13 memory-maps an uncompressed gray or CMYK TIFF opened by
    name and then loses its orientation 5-8 (see test_tiff_orientation_is_applied_once)."""
    with open(path, "rb") as handle, Image.open(handle) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"), dtype=np.float64) / 255.0


def check_loaded(loaded) -> np.ndarray:
    rgb = loaded.rgb
    assert rgb.dtype == torch.float32 and rgb.dim() == 4 and rgb.shape[:2] == (1, 3) and min(rgb.shape[-2:]) >= 1
    assert torch.isfinite(rgb).all() and rgb.min() >= 0 and rgb.max() <= 1
    if loaded.alpha is not None:
        assert loaded.alpha.shape == (1, 1, *rgb.shape[-2:])
        assert torch.isfinite(loaded.alpha).all() and loaded.alpha.min() >= 0 and loaded.alpha.max() <= 1
    assert all(isinstance(n, str) and "\n" not in n for n in loaded.notes)
    return rgb[0].permute(1, 2, 0).double().numpy()


@settings(FUZZ, max_examples=150)
@given(spec=image_files())
def test_any_valid_file_is_read_correctly(tmp_path_factory, spec):
    folder = tmp_path_factory.mktemp("fuzz")
    path = make_file(spec, folder)
    with warnings.catch_warnings(), time_limit(60):
        warnings.simplefilter("error")
        loaded = read_image(path)
    ours = check_loaded(loaded)
    with open(path, "rb") as handle, Image.open(handle) as im:
        displayed = ImageOps.exif_transpose(im).size
        frames = getattr(im, "n_frames", 1)  # Pillow merges identical frames of a GIF
        tagged = bool(im.info.get("icc_profile"))  # not every format stores the profile we gave
    assert loaded.size == displayed
    assert any("first" in n for n in loaded.notes) == (frames > 1)
    if tagged:
        assert loaded.icc_profile is not None and any("to sRGB" in n for n in loaded.notes)
    elif spec["mode"] in ("RGB;16", "RGBA;16"):
        assert np.abs(ours - pillow_oracle(path)).max() <= 1 / 255 + 1e-6  # Pillow keeps the high byte
    elif spec["mode"] != "I;16":  # Pillow's I;16 -> RGB clips at 255; checked in test_image_read
        assert np.abs(ours - pillow_oracle(path)).max() <= 1e-6  # where Pillow's conversion is exact


@settings(FUZZ, max_examples=300)
@given(spec=image_files(max_side=64), where=st.floats(0, 1), how=st.sampled_from(["truncate", "flip", "zero"]))
def test_damaged_files_give_an_image_or_one_clear_error(tmp_path_factory, spec, where, how):
    folder = tmp_path_factory.mktemp("damaged")
    path = make_file(spec, folder)
    data = bytearray(path.read_bytes())
    at = min(max(1, int(where * len(data))), len(data) - 1)  # a 0-byte file is test_image_refuse's
    if how == "truncate":
        data = data[:at]
    elif how == "flip":
        data[at] ^= 0xFF
    else:
        data[at: at + 16] = bytes(len(data[at: at + 16]))
    path.write_bytes(bytes(data))
    with warnings.catch_warnings(), time_limit(60):
        warnings.simplefilter("error")
        try:
            loaded = read_image(path)
        except NSTError as exc:
            message = str(exc)
            assert message.startswith(f"{path}: ") and "\n" not in message and len(message) > len(str(path)) + 10
            event(f"refused: {message[len(str(path)) + 2:].split(' (')[0][:40]}")
            return
    check_loaded(loaded)
    event("decoded")


@settings(FUZZ, max_examples=10)
@given(spec=image_files(), size=st.integers(16, 64), as_style=st.booleans())
def test_stylize_any_file_gives_the_requested_size(tmp_path_factory, spec, size, as_style):
    folder = tmp_path_factory.mktemp("stylize")
    path = make_file(spec, folder)
    other = torch.rand(1, 3, 24, 32, generator=torch.Generator().manual_seed(spec["seed"] % 1000))
    content, style = (other, path) if as_style else (path, other)
    with warnings.catch_warnings(), time_limit(300):
        warnings.simplefilter("error")
        result = stylize(content, style, size=size, steps=1, seed=0, style_scale=0.05)
    height, width = (24, 32) if as_style else read_image(path).rgb.shape[-2:]
    image = result.image
    assert image.shape == (1, 3, *fit_longest_side(height, width, size)) and max(image.shape[-2:]) == size
    assert torch.isfinite(image).all() and image.min() >= 0 and image.max() <= 1
    assert result.status == "finished"


def test_the_fuzzer_covers_every_mode_and_format():
    modes = {m for m, _ in COMBINATIONS}
    formats = {f for _, f in COMBINATIONS}
    assert modes == set(PILLOW_MODES) | set(RAW_MODES) and formats == set(FORMATS)
    assert ("CMYK", "JPEG") in COMBINATIONS and ("P+transparency", "PNG") in COMBINATIONS


@pytest.mark.parametrize("mode,fmt", COMBINATIONS)
def test_each_combination_once(tmp_path, mode, fmt):
    """Every (mode, format) pair at least once, whatever hypothesis draws."""
    spec = {"mode": mode, "format": fmt, "width": 7, "height": 5, "seed": 1, "orientation": 1, "frames": 1,
            "profile": "none"}
    loaded = read_image(make_file(spec, tmp_path))
    ours = check_loaded(loaded)
    assert loaded.size == (7, 5)
    if mode not in ("I;16", "RGB;16", "RGBA;16"):
        assert np.abs(ours - pillow_oracle(tmp_path / f"fuzz.{FORMATS[fmt]}")).max() <= 1e-6
