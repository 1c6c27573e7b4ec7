"""Awkward but valid image files: each is read into the pixels it really holds.

Every test checks pixel values (or alpha, or orientation), not only that no exception escaped.
Files are made in ``tmp_path`` with Pillow, or with the small spec-following writers in
``test_image_writers`` where Pillow cannot write the file.
"""

from __future__ import annotations

import io
import struct
import threading
import warnings

import numpy as np
from PIL import Image, ImageCms, ImageFile, ImageOps, PngImagePlugin
import pytest
import torch

from nst_core.errors import ImageError
from nst_core.image import LoadedImage, _orient, read_image, save_image
from image_writers import (colorants_d50, expected_srgb, gray_profile, iccp_chunk, png_chunk, rgb_profile, srgb_encode,
                                write_png, write_tiff)

ADOBE = ("Adobe RGB (1998)", 563 / 256)
P3 = ("Display P3", None)


@pytest.fixture(autouse=True)
def _no_warnings_escape():
    """Reading must never let a Pillow warning escape: every test here runs with warnings as errors."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def hwc(loaded: LoadedImage) -> np.ndarray:
    """``(H, W, 3)`` float64 view of ``loaded.rgb``, after checking the documented contract."""
    rgb = loaded.rgb
    assert rgb.dtype == torch.float32 and rgb.dim() == 4 and rgb.shape[:2] == (1, 3)
    assert torch.isfinite(rgb).all() and rgb.min() >= 0 and rgb.max() <= 1
    if loaded.alpha is not None:
        assert loaded.alpha.shape == (1, 1, *rgb.shape[-2:]) and loaded.alpha.dtype == torch.float32
        assert loaded.alpha.min() >= 0 and loaded.alpha.max() <= 1
    return rgb[0].permute(1, 2, 0).double().numpy()


def blocks(colours: list[tuple[int, ...]], side: int = 8) -> np.ndarray:
    """A row of ``side`` x ``side`` blocks of the given colours, ``(side, side * n, C)`` uint8."""
    return np.concatenate([np.broadcast_to(np.array(c, np.uint8), (side, side, len(c))) for c in colours], axis=1)


# ------------------------------------------------------------------------------ colour modes


def test_rgb_png_is_exact(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, (13, 17, 3), dtype=np.uint8)
    Image.fromarray(data).save(tmp_path / "x.png")
    loaded = read_image(tmp_path / "x.png")
    assert np.array_equal(np.round(hwc(loaded) * 255), data)
    assert loaded.alpha is None and loaded.icc_profile is None and loaded.notes == ()
    assert loaded.size == (17, 13)


def test_cmyk_jpeg(tmp_path):
    """Cyan, magenta, yellow, 50 % black and white CMYK blocks come out as their RGB colours."""
    cmyk = blocks([(255, 0, 0, 0), (0, 255, 0, 0), (0, 0, 255, 0), (0, 0, 0, 128), (0, 0, 0, 0)], side=16)
    Image.fromarray(cmyk, "CMYK").save(tmp_path / "c.jpg", quality=95)
    with Image.open(tmp_path / "c.jpg") as im:
        assert im.mode == "CMYK"
    rgb = hwc(read_image(tmp_path / "c.jpg")) * 255
    expected = [(0, 255, 255), (255, 0, 255), (255, 255, 0), (127, 127, 127), (255, 255, 255)]
    for i, colour in enumerate(expected):
        centre = rgb[4:12, 16 * i + 4:16 * i + 12].reshape(-1, 3).mean(axis=0)
        assert np.abs(centre - colour).max() < 6, (i, centre)


def test_cmyk_tiff_is_exact(tmp_path):
    cmyk = blocks([(255, 0, 0, 0), (0, 0, 0, 255), (0, 0, 0, 0), (0, 128, 0, 0)])
    Image.fromarray(cmyk, "CMYK").save(tmp_path / "c.tif")
    rgb = np.round(hwc(read_image(tmp_path / "c.tif")) * 255)
    assert rgb[0, 0].tolist() == [0, 255, 255] and rgb[0, 8].tolist() == [0, 0, 0]
    assert rgb[0, 16].tolist() == [255, 255, 255] and rgb[0, 24].tolist() == [255, 127, 255]


def test_palette_png_with_per_entry_transparency(tmp_path):
    palette = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    indices = np.array([[0, 1, 2, 1]], np.uint8)
    path = write_png(tmp_path / "p.png", indices, 3, 8, palette=palette, chunks=png_chunk(b"tRNS", bytes([0, 128, 255])))
    with Image.open(path) as im:
        assert im.mode == "P"
    loaded = read_image(path)
    assert np.array_equal(np.round(hwc(loaded)[0] * 255), palette[indices[0]])
    assert np.allclose(loaded.alpha[0, 0, 0].numpy(), [0, 128 / 255, 1, 128 / 255])


def test_palette_png_with_one_transparent_index_saved_by_pillow(tmp_path):
    im = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), "P")
    im.putpalette([10, 20, 30, 200, 100, 50])
    im.save(tmp_path / "p.png", transparency=1)
    loaded = read_image(tmp_path / "p.png")
    assert np.round(hwc(loaded)[0, 0] * 255).tolist() == [10, 20, 30]
    assert loaded.alpha[0, 0].tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_palette_png_without_transparency_has_no_alpha(tmp_path):
    Image.new("P", (3, 2), 0).save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").alpha is None


@pytest.mark.parametrize("bit_depth", [1, 2, 4])
def test_low_bit_depth_gray_png(tmp_path, bit_depth):
    top = 2 ** bit_depth - 1
    samples = np.arange(top + 1, dtype=np.uint8)[None].repeat(2, axis=0)
    rgb = hwc(read_image(write_png(tmp_path / "g.png", samples, 0, bit_depth)))
    assert np.allclose(rgb[..., 0], samples / top, atol=1e-6) and np.allclose(rgb[..., 0], rgb[..., 2])


def test_one_bit_image(tmp_path):
    im = Image.new("1", (4, 2), 0)
    im.putpixel((1, 0), 1)
    im.save(tmp_path / "b.png")
    rgb = hwc(read_image(tmp_path / "b.png"))
    assert rgb[0, 1].tolist() == [1, 1, 1] and rgb[0, 0].tolist() == [0, 0, 0] and rgb.sum() == 3


def test_grayscale(tmp_path):
    gray = np.arange(0, 256, 16, dtype=np.uint8).reshape(2, 8)
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    loaded = read_image(tmp_path / "g.png")
    rgb = hwc(loaded)
    assert loaded.alpha is None
    assert np.array_equal(np.round(rgb * 255), np.repeat(gray[..., None], 3, axis=2))


def test_grayscale_with_alpha(tmp_path):
    la = np.stack([np.full((3, 4), 77, np.uint8), np.arange(12, dtype=np.uint8).reshape(3, 4) * 20], axis=2)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    loaded = read_image(tmp_path / "la.png")
    assert np.allclose(hwc(loaded), 77 / 255)
    assert np.allclose(loaded.alpha[0, 0].numpy(), la[..., 1] / 255)


def test_grayscale_with_colour_key_transparency(tmp_path):
    im = Image.new("L", (3, 1), 10)
    im.putpixel((1, 0), 200)
    im.save(tmp_path / "t.png", transparency=10)
    loaded = read_image(tmp_path / "t.png")
    assert loaded.alpha[0, 0, 0].tolist() == [0.0, 1.0, 0.0]
    assert np.allclose(hwc(loaded)[0, :, 0], [10 / 255, 200 / 255, 10 / 255])


def test_rgba_alpha_is_kept_aside_and_written_back(tmp_path):
    rng = np.random.default_rng(1)
    rgba = rng.integers(0, 256, (9, 7, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    loaded = read_image(tmp_path / "a.png")
    assert np.array_equal(np.round(hwc(loaded) * 255), rgba[..., :3])  # colour is not premultiplied
    assert np.array_equal(np.round(loaded.alpha[0, 0].numpy() * 255), rgba[..., 3])
    save_image(loaded.rgb, tmp_path / "out.png", alpha=loaded.alpha)
    with Image.open(tmp_path / "out.png") as out:
        assert out.mode == "RGBA"
        assert np.array_equal(np.asarray(out), rgba)


def test_rgb_colour_key_transparency(tmp_path):
    im = Image.new("RGB", (2, 1), (1, 2, 3))
    im.putpixel((1, 0), (9, 9, 9))
    im.save(tmp_path / "k.png", transparency=(1, 2, 3))
    assert read_image(tmp_path / "k.png").alpha[0, 0, 0].tolist() == [0.0, 1.0]


def test_lab_tiff(tmp_path):
    """CIE L* = 50 (a* = b* = 0) is sRGB 119 gray."""
    Image.new("LAB", (4, 2), (128, 128, 128)).save(tmp_path / "lab.tif")
    rgb = hwc(read_image(tmp_path / "lab.tif")) * 255
    assert np.abs(rgb - 119).max() <= 1.5


# ----------------------------------------------------------------------------------- 16 bit


def test_pillow_keeps_only_the_high_byte_of_16_bit_rgb(tmp_path):
    """What Pillow itself does (documented in the report): 16-bit RGB PNG -> mode RGB, high byte."""
    samples = np.array([[[0xFF00, 0x00FF, 0x1234]]], np.uint16)
    with Image.open(write_png(tmp_path / "c.png", samples, 2, 16)) as im:
        assert im.mode == "RGB"
        assert np.asarray(im)[0, 0].tolist() == [0xFF, 0x00, 0x12]


@pytest.mark.parametrize("filter_kind", range(5))
def test_16_bit_rgb_png_full_precision(tmp_path, filter_kind):
    samples = np.random.default_rng(filter_kind).integers(0, 65536, (11, 13, 3), dtype=np.uint16)
    samples[0, 0] = [0xFF00, 0x00FF, 0x1234]
    loaded = read_image(write_png(tmp_path / "c.png", samples, 2, 16, filter_kind=filter_kind))
    assert np.abs(hwc(loaded) - samples / 65535).max() < 1e-6
    assert loaded.alpha is None


def test_16_bit_rgba_png_full_precision(tmp_path):
    samples = np.random.default_rng(7).integers(0, 65536, (5, 6, 4), dtype=np.uint16)
    loaded = read_image(write_png(tmp_path / "c.png", samples, 6, 16))
    assert np.abs(hwc(loaded) - samples[..., :3] / 65535).max() < 1e-6
    assert np.abs(loaded.alpha[0, 0].double().numpy() - samples[..., 3] / 65535).max() < 1e-6


def test_16_bit_rgb_png_colour_key(tmp_path):
    samples = np.array([[[0x1234, 0x5678, 0x9ABC], [0x1234, 0x5678, 0x9ABD]]], np.uint16)
    key = png_chunk(b"tRNS", np.array([0x1234, 0x5678, 0x9ABC], ">u2").tobytes())
    loaded = read_image(write_png(tmp_path / "k.png", samples, 2, 16, chunks=key))
    assert loaded.alpha[0, 0, 0].tolist() == [0.0, 1.0]


def test_16_bit_gray_png_written_by_pillow(tmp_path):
    gray = np.array([[0, 1, 255, 256, 0x8000, 65535]], np.uint16)
    Image.fromarray(gray).save(tmp_path / "g.png")
    with Image.open(tmp_path / "g.png") as im:
        assert im.mode == "I;16"
    rgb = hwc(read_image(tmp_path / "g.png"))
    assert np.allclose(rgb[..., 1], gray / 65535, atol=1e-7)  # a dark 16-bit image is not read as 8-bit


def test_16_bit_gray_with_colour_key(tmp_path):
    gray = np.array([[300, 301]], np.uint16)
    loaded = read_image(write_png(tmp_path / "g.png", gray, 0, 16, chunks=png_chunk(b"tRNS", b"\x01\x2c")))
    assert loaded.alpha[0, 0, 0].tolist() == [0.0, 1.0]
    assert np.allclose(hwc(loaded)[0, :, 0], gray[0] / 65535, atol=1e-7)


def test_16_bit_gray_alpha_png_is_read_at_8_bits(tmp_path):
    """Pillow has no 16-bit gray+alpha mode: the high bytes come through (not the low ones)."""
    samples = np.array([[[0x12FF, 0xFF00], [0xAB00, 0x0101]]], np.uint16)
    loaded = read_image(write_png(tmp_path / "la.png", samples, 4, 16))
    assert np.allclose(hwc(loaded)[0, :, 0], [0x12 / 255, 0xAB / 255], atol=1e-7)
    assert np.allclose(loaded.alpha[0, 0, 0].numpy(), [0xFF / 255, 0x01 / 255], atol=1e-7)


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("deflate", [False, True])
def test_16_bit_rgb_tiff_full_precision(tmp_path, big_endian, deflate):
    samples = np.random.default_rng(3).integers(0, 65536, (7, 5, 3), dtype=np.uint16)
    path = write_tiff(tmp_path / "c.tif", samples, big_endian=big_endian, deflate=deflate)
    assert np.abs(hwc(read_image(path)) - samples / 65535).max() < 1e-6


def test_16_bit_rgba_tiff(tmp_path):
    samples = np.random.default_rng(4).integers(0, 65536, (4, 6, 4), dtype=np.uint16)
    loaded = read_image(write_tiff(tmp_path / "c.tif", samples, deflate=True, extra_samples=2))
    assert np.abs(hwc(loaded) - samples[..., :3] / 65535).max() < 1e-6
    assert np.abs(loaded.alpha[0, 0].double().numpy() - samples[..., 3] / 65535).max() < 1e-6


@pytest.mark.parametrize("big_endian", [False, True])
def test_16_bit_gray_tiff(tmp_path, big_endian):
    gray = np.array([[0, 200, 40000, 65535]], np.uint16)
    rgb = hwc(read_image(write_tiff(tmp_path / "g.tif", gray, big_endian=big_endian)))
    assert np.allclose(rgb[..., 0], gray / 65535, atol=1e-7)


def test_16_bit_gray_tiff_written_by_pillow(tmp_path):
    gray = np.array([[3, 60000]], np.uint16)
    Image.fromarray(gray).save(tmp_path / "g.tif")
    assert np.allclose(hwc(read_image(tmp_path / "g.tif"))[..., 2], gray / 65535, atol=1e-7)


def test_32_bit_float_gray_tiff(tmp_path):
    values = np.array([[0.0, 0.25, 1.0, 1.5]], np.float32)
    Image.fromarray(values, "F").save(tmp_path / "f.tif")
    assert np.allclose(hwc(read_image(tmp_path / "f.tif"))[0, :, 0], [0, 0.25, 1, 1])


# ---------------------------------------------------------------------------------- frames


def _frames(colours):
    return [Image.new("RGB", (6, 4), c) for c in colours]


@pytest.mark.parametrize("name,options", [("a.gif", {}), ("a.webp", {"lossless": True}), ("a.png", {}),
                                          ("a.tif", {})])
def test_animation_or_pages_first_frame_with_a_note(tmp_path, name, options):
    first, *rest = _frames([(255, 0, 0), (0, 255, 0), (0, 0, 255)])
    first.save(tmp_path / name, save_all=True, append_images=rest, **options)
    loaded = read_image(tmp_path / name)
    assert np.allclose(hwc(loaded), [1, 0, 0])
    assert len(loaded.notes) == 1
    assert str(tmp_path / name) in loaded.notes[0] and "3" in loaded.notes[0] and "first" in loaded.notes[0]


def test_gif_with_transparency(tmp_path):
    im = Image.fromarray(np.array([[0, 1]], np.uint8), "P")
    im.putpalette([0, 0, 0, 250, 10, 20])
    frames = [im, im.copy()]
    frames[0].save(tmp_path / "t.gif", save_all=True, append_images=frames[1:], transparency=0)
    loaded = read_image(tmp_path / "t.gif")
    assert loaded.alpha[0, 0, 0].tolist() == [0.0, 1.0]
    assert np.round(hwc(loaded)[0, 1] * 255).tolist() == [250, 10, 20]


def test_single_frame_gif_has_no_note(tmp_path):
    Image.new("RGB", (4, 4), (0, 0, 255)).save(tmp_path / "s.gif")
    loaded = read_image(tmp_path / "s.gif")
    assert loaded.notes == () and np.allclose(hwc(loaded), [0, 0, 1])


# ----------------------------------------------------------------------------- orientation


def _asymmetric() -> np.ndarray:
    """6 x 10 RGB: every pixel different, so any wrong turn shows."""
    return np.arange(6 * 10 * 3, dtype=np.uint8).reshape(6, 10, 3)


TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
             5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
             8: Image.Transpose.ROTATE_90}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_matches_pillow_transpose(orientation):
    data = _asymmetric()
    im = Image.fromarray(data)
    expected = np.asarray(im.transpose(TRANSPOSE[orientation]) if orientation > 1 else im)
    assert np.array_equal(_orient(data, orientation), expected)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_png(tmp_path, orientation):
    data = _asymmetric()
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(data).save(tmp_path / "o.png", exif=exif)
    with Image.open(tmp_path / "o.png") as im:
        displayed = np.asarray(ImageOps.exif_transpose(im))
    got = np.round(hwc(read_image(tmp_path / "o.png")) * 255)
    assert np.array_equal(got, displayed)
    if orientation >= 5:
        assert got.shape[:2] == (10, 6)


@pytest.mark.parametrize("orientation,corner", [(3, (-1, -1)), (6, (0, -1)), (8, (-1, 0))])
def test_exif_rotated_jpeg_photo(tmp_path, orientation, corner):
    """A camera JPEG (stored landscape) with orientation 3, 6 or 8: the red top-left block of the
    stored pixels ends up in the corner where the photo displays it."""
    data = np.full((32, 48, 3), 255, np.uint8)
    data[:8, :8] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(data).save(tmp_path / "photo.jpg", exif=exif, quality=95)
    rgb = hwc(read_image(tmp_path / "photo.jpg")) * 255
    assert rgb.shape[:2] == ((48, 32) if orientation in (6, 8) else (32, 48))
    rows = slice(-6, None) if corner[0] else slice(0, 6)
    cols = slice(-6, None) if corner[1] else slice(0, 6)
    assert np.abs(rgb[rows, cols].reshape(-1, 3).mean(0) - [255, 0, 0]).max() < 12
    assert np.abs(rgb[16:24, 14:18].reshape(-1, 3).mean(0) - 255).max() < 12


def test_xmp_orientation(tmp_path):
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/'
                  '1999/02/22-rdf-syntax-ns#"><rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" '
                  'tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>')
    data = _asymmetric()
    Image.fromarray(data).save(tmp_path / "x.png", pnginfo=info)
    got = np.round(hwc(read_image(tmp_path / "x.png")) * 255)
    assert np.array_equal(got, np.rot90(data, -1))


def test_tiff_orientation_tag(tmp_path):
    data = _asymmetric()
    got = np.round(hwc(read_image(write_tiff(tmp_path / "o.tif", data, orientation=8))) * 255)
    assert np.array_equal(got, np.rot90(data, 1))


@pytest.mark.parametrize("mode", ["L", "RGB", "CMYK"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_tiff_orientation_is_applied_once(tmp_path, mode, orientation):
    """Pillow turns TIFFs itself while loading (and drops the tag), but when it memory-maps an
    uncompressed gray or CMYK TIFF opened by name it loses orientations 5-8. read_image opens a
    file object and must come out right, turned exactly once, for every mode and orientation."""
    stored = Image.fromarray(_asymmetric()).convert(mode)
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(tmp_path / "o.tif", exif=exif)
    expected = _orient(np.asarray(stored.convert("RGB")), orientation)
    assert np.array_equal(np.round(hwc(read_image(tmp_path / "o.tif")) * 255), expected)


def test_16_bit_png_with_exif_orientation_keeps_precision(tmp_path):
    samples = np.random.default_rng(9).integers(0, 65536, (3, 5, 3), dtype=np.uint16)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = write_png(tmp_path / "o.png", samples, 2, 16, chunks=png_chunk(b"eXIf", exif.tobytes()))
    loaded = read_image(path)
    assert np.abs(hwc(loaded) - np.rot90(samples, -1) / 65535).max() < 1e-6


def test_invalid_orientation_value_is_ignored_with_a_note(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 9
    data = _asymmetric()
    Image.fromarray(data).save(tmp_path / "o.png", exif=exif)
    loaded = read_image(tmp_path / "o.png")
    assert np.array_equal(np.round(hwc(loaded) * 255), data)
    assert any("orientation" in n for n in loaded.notes)


# ------------------------------------------------------------------------------- ICC profiles

COLOURS = np.array([[[200, 80, 40], [30, 120, 200], [128, 128, 128], [240, 230, 20], [90, 160, 70]]], np.uint8)


@pytest.mark.parametrize("profile", [ADOBE, P3], ids=["adobe-rgb", "display-p3"])
@pytest.mark.parametrize("fmt", ["png", "jpg", "webp", "tif"])
def test_embedded_rgb_profile_is_converted_to_srgb(tmp_path, profile, fmt):
    name, gamma = profile
    icc = rgb_profile(name, gamma)
    data = np.repeat(np.repeat(COLOURS, 8, axis=0), 8, axis=1)  # 8x8 blocks survive JPEG
    options = {"quality": 100, "subsampling": 0} if fmt == "jpg" else {"lossless": True} if fmt == "webp" else {}
    Image.fromarray(data).save(tmp_path / f"w.{fmt}", icc_profile=icc, **options)
    loaded = read_image(tmp_path / f"w.{fmt}")
    got = hwc(loaded)[4::8, 4::8] * 255
    expected = expected_srgb(COLOURS / 255.0, name, gamma) * 255
    assert np.abs(got - expected).max() <= 3.0
    assert np.abs(got - COLOURS).max() > 10  # the conversion really changed the colours
    assert loaded.icc_profile == icc
    assert len(loaded.notes) == 1 and name in loaded.notes[0] and "sRGB" in loaded.notes[0]


def test_wide_gamut_colours_are_clipped_to_srgb(tmp_path):
    name, gamma = ADOBE
    Image.new("RGB", (2, 2), (30, 120, 200)).save(tmp_path / "w.png", icc_profile=rgb_profile(name, gamma))
    rgb = hwc(read_image(tmp_path / "w.png"))
    assert rgb[..., 0].max() == 0.0  # this blue-green lies outside sRGB: red would be negative


def test_srgb_profile_leaves_pixels_exact(tmp_path):
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(COLOURS).save(tmp_path / "s.png", icc_profile=srgb)
    loaded = read_image(tmp_path / "s.png")
    assert np.array_equal(np.round(hwc(loaded) * 255), COLOURS)
    assert loaded.icc_profile is None and loaded.notes == ()


def test_gray_profile_on_a_gray_image(tmp_path):
    """A linear-light gray (gamma 1.0) value 128 is sRGB-encoded 188."""
    Image.new("L", (3, 2), 128).save(tmp_path / "g.png", icc_profile=gray_profile(1.0))
    loaded = read_image(tmp_path / "g.png")
    expected = 255 * srgb_encode(np.array(128 / 255))
    assert np.abs(hwc(loaded) * 255 - expected).max() <= 2
    assert loaded.icc_profile is None  # a gray profile cannot describe an RGB result


def test_palette_image_with_a_profile(tmp_path):
    name, gamma = ADOBE
    im = Image.fromarray(np.array([[0, 1]], np.uint8), "P")
    im.putpalette(COLOURS[0, :2].reshape(-1).tolist())
    im.save(tmp_path / "p.png", icc_profile=rgb_profile(name, gamma))
    got = hwc(read_image(tmp_path / "p.png")) * 255
    assert np.abs(got[0] - expected_srgb(COLOURS[0, :2] / 255.0, name, gamma) * 255).max() <= 2


def test_rgba_image_with_a_profile_keeps_alpha(tmp_path):
    name, gamma = P3
    rgba = np.concatenate([COLOURS, np.array([[[0], [50], [100], [200], [255]]], np.uint8)], axis=2)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png", icc_profile=rgb_profile(name, gamma))
    loaded = read_image(tmp_path / "a.png")
    assert np.abs(hwc(loaded) * 255 - expected_srgb(COLOURS / 255.0, name, gamma) * 255).max() <= 2
    assert np.array_equal(np.round(loaded.alpha[0, 0].numpy() * 255), rgba[..., 3])


def test_16_bit_png_with_a_wide_gamut_profile_is_converted(tmp_path):
    name, gamma = ADOBE
    samples = COLOURS.astype(np.uint16) * 257
    path = write_png(tmp_path / "w.png", samples, 2, 16, chunks=iccp_chunk(rgb_profile(name, gamma)))
    got = hwc(read_image(path)) * 255
    assert np.abs(got - expected_srgb(COLOURS / 255.0, name, gamma) * 255).max() <= 2


def test_damaged_profile_is_ignored_with_a_note(tmp_path):
    Image.fromarray(COLOURS).save(tmp_path / "d.png", icc_profile=b"not an icc profile at all" * 8)
    loaded = read_image(tmp_path / "d.png")
    assert np.array_equal(np.round(hwc(loaded) * 255), COLOURS)
    assert len(loaded.notes) == 1 and "profile" in loaded.notes[0] and "sRGB" in loaded.notes[0]


def test_profile_that_does_not_fit_the_image_is_ignored_with_a_note(tmp_path):
    Image.fromarray(COLOURS).save(tmp_path / "m.png", icc_profile=gray_profile(1.0))
    loaded = read_image(tmp_path / "m.png")
    assert np.array_equal(np.round(hwc(loaded) * 255), COLOURS)
    assert len(loaded.notes) == 1 and "does not fit" in loaded.notes[0]


@pytest.mark.parametrize("fmt", ["png", "jpg", "webp", "tif"])
def test_profile_written_back_on_output(tmp_path, fmt):
    """save_image(icc_profile=loaded.icc_profile) converts the sRGB result back and embeds the profile.

    Only colours inside sRGB survive the trip: the engine works in sRGB, so more saturated Adobe RGB
    or P3 colours are clipped on reading (see test_wide_gamut_colours_are_clipped_to_srgb)."""
    name, gamma = ADOBE
    icc = rgb_profile(name, gamma)
    inside = np.array([[[200, 80, 40], [128, 128, 128], [180, 150, 120], [60, 70, 150], [220, 200, 60]]], np.uint8)
    linear = (inside / 255.0) ** gamma @ colorants_d50(name).T @ np.linalg.inv(colorants_d50("sRGB")).T
    assert linear.min() > 0 and linear.max() < 1  # inside sRGB: the round trip can be exact
    data = np.repeat(np.repeat(inside, 8, axis=0), 8, axis=1)
    Image.fromarray(data).save(tmp_path / "in.png", icc_profile=icc)
    loaded = read_image(tmp_path / "in.png")
    save_image(loaded.rgb, tmp_path / f"out.{fmt}", icc_profile=loaded.icc_profile, quality=100)
    with Image.open(tmp_path / f"out.{fmt}") as out:
        assert out.info.get("icc_profile") == icc
        stored = np.asarray(out.convert("RGB"), dtype=np.float64)[4::8, 4::8]
    assert np.abs(stored - inside).max() <= 3  # back in Adobe RGB numbers
    again = hwc(read_image(tmp_path / f"out.{fmt}"))[4::8, 4::8] * 255
    assert np.abs(again - hwc(loaded)[4::8, 4::8] * 255).max() <= 3


# --------------------------------------------------------------------------- other sources


def test_pil_image_input_goes_through_the_same_conversions():
    im = Image.fromarray(np.array([[0, 1]], np.uint8), "P")
    im.putpalette([1, 2, 3, 4, 5, 6])
    im.info["transparency"] = 0
    loaded = read_image(im)
    assert np.round(hwc(loaded)[0] * 255).tolist() == [[1, 2, 3], [4, 5, 6]]
    assert loaded.alpha[0, 0, 0].tolist() == [0.0, 1.0]


def test_pil_image_input_is_read_at_the_frame_it_is_at(tmp_path):
    first, *rest = _frames([(255, 0, 0), (0, 255, 0), (0, 0, 255)])
    first.save(tmp_path / "a.gif", save_all=True, append_images=rest)
    with Image.open(tmp_path / "a.gif") as im:
        im.seek(2)
        loaded = read_image(im)
        assert im.tell() == 2
    assert np.allclose(hwc(loaded), [0, 0, 1]) and loaded.notes == ()


@pytest.mark.parametrize("dtype,top", [(np.uint8, 255), (np.uint16, 65535)])
def test_integer_arrays_are_scaled(dtype, top):
    array = np.array([[[0, top // 2, top]]], dtype)
    assert np.allclose(hwc(read_image(array))[0, 0], [0, (top // 2) / top, 1])


def test_rgba_array_and_tensor():
    array = np.zeros((2, 3, 4), np.float32)
    array[..., 3] = 0.5
    assert read_image(array).alpha.shape == (1, 1, 2, 3)
    uint8 = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    assert torch.equal(read_image(uint8).rgb, torch.ones(1, 3, 2, 2))


# ---------------------------------------------------------------------- Pillow's global state


def test_pillow_globals_are_left_as_they_were(tmp_path, monkeypatch):
    """Reading sets Pillow's pixel limit and truncation flag only while it holds them, and puts
    them back, even when a caller changed them."""
    Image.new("RGB", (50, 50)).save(tmp_path / "x.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow would warn at 1000 and refuse 2000+
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    assert read_image(tmp_path / "x.png").rgb.shape == (1, 3, 50, 50)  # our limit speaks, no warning
    assert Image.MAX_IMAGE_PIXELS == 1000 and ImageFile.LOAD_TRUNCATED_IMAGES is True


def test_concurrent_reads(tmp_path):
    paths = []
    for i in range(4):
        Image.new("RGB", (20 + i, 10), (i * 40, 0, 0)).save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    results: dict[int, LoadedImage] = {}
    before = Image.MAX_IMAGE_PIXELS

    def work(i):
        for _ in range(5):
            results[i] = read_image(paths[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[i].size for i in range(4)] == [(20 + i, 10) for i in range(4)]
    assert [round(float(results[i].rgb[0, 0, 0, 0]) * 255) for i in range(4)] == [0, 40, 80, 120]
    assert Image.MAX_IMAGE_PIXELS == before


def test_read_image_refuses_other_types():
    with pytest.raises(ImageError, match="cannot read an image from a int"):
        read_image(42)
    with pytest.raises(ImageError, match=r"\(H, W\)"):
        read_image(np.zeros((2, 3, 5)))
    with pytest.raises(ImageError, match="NaN"):
        read_image(torch.full((1, 3, 2, 2), float("nan")))


def test_bytes_io_like_paths_are_not_accepted():
    with pytest.raises(ImageError):
        read_image(io.BytesIO(b"\x89PNG"))


# ------------------------------------------------------------------ Pillow's warnings as notes


def test_pillow_warnings_become_notes(tmp_path):
    """An APNG control chunk announcing 0 frames makes Pillow warn and fall back to the plain PNG:
    the picture is read, and the warning reaches the user as a note, not as a Python warning."""
    samples = np.random.default_rng(5).integers(0, 256, (3, 4, 3), dtype=np.uint8)
    path = write_png(tmp_path / "odd.png", samples, 2, 8, chunks=png_chunk(b"acTL", struct.pack(">II", 0, 0)))
    loaded = read_image(path)
    assert np.array_equal(np.round(hwc(loaded) * 255), samples)
    assert loaded.notes == (f"{path}: Invalid APNG, will use default PNG image if possible",)


def test_profile_on_16_bit_gray_is_not_applied_and_says_so(tmp_path):
    gray = np.array([[1000, 50000]], np.uint16)
    loaded = read_image(write_png(tmp_path / "g.png", gray, 0, 16, chunks=iccp_chunk(gray_profile(1.0))))
    assert np.allclose(hwc(loaded)[0, :, 0], gray[0] / 65535, atol=1e-7)
    assert len(loaded.notes) == 1 and "was not applied" in loaded.notes[0]


def test_float_tiff_with_nan_is_read_with_a_note(tmp_path):
    Image.fromarray(np.array([[np.nan, 0.5, np.inf]], np.float32), "F").save(tmp_path / "f.tif")
    loaded = read_image(tmp_path / "f.tif")
    assert hwc(loaded)[0, :, 0].tolist() == [0.0, 0.5, 0.0]
    assert any("NaN" in n for n in loaded.notes)
