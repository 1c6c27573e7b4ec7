"""Proof that the hand-made image files of image_writers.py are what they claim: each writer
against Pillow's own decoder where Pillow decodes exactly (8-bit data), so the other tests can trust
the files."""

from __future__ import annotations

from __future__ import annotations
import io
import numpy as np
from PIL import Image, ImageCms
import pytest

from image_writers import expected_srgb, gray_profile, rgb_profile, srgb_encode, write_png, write_tiff


@pytest.mark.parametrize("filter_kind", range(5))
@pytest.mark.parametrize("color_type,channels", [(0, 1), (2, 3), (4, 2), (6, 4)])
def test_png_writer_matches_pillow_at_8_bits(tmp_path, filter_kind, color_type, channels):
    samples = np.random.default_rng(filter_kind).integers(0, 256, (7, 11, channels), dtype=np.uint8)
    path = write_png(tmp_path / "x.png", samples, color_type, 8, filter_kind=filter_kind)
    got = np.asarray(Image.open(path))
    assert np.array_equal(got.reshape(samples.shape), samples)


@pytest.mark.parametrize("bit_depth", [1, 2, 4])
def test_png_writer_low_bit_gray(tmp_path, bit_depth):
    samples = np.random.default_rng(bit_depth).integers(0, 2 ** bit_depth, (5, 13), dtype=np.uint8)
    with Image.open(write_png(tmp_path / "x.png", samples, 0, bit_depth)) as im:
        got = np.asarray(im.convert("L"), dtype=np.int64)
    assert np.array_equal(got, samples * (255 // (2 ** bit_depth - 1)))


def test_png_writer_16_bit_gray_matches_pillow(tmp_path):
    """Pillow reads 16-bit gray exactly (mode I;16), so this checks the 16-bit packing and filters."""
    samples = np.random.default_rng(3).integers(0, 65536, (9, 6), dtype=np.uint16)
    with Image.open(write_png(tmp_path / "g.png", samples, 0, 16)) as im:
        assert im.mode == "I;16"
        assert np.array_equal(np.asarray(im), samples)


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("deflate", [False, True])
def test_tiff_writer_matches_pillow(tmp_path, big_endian, deflate):
    rgb = np.random.default_rng(4).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    gray = np.random.default_rng(5).integers(0, 65536, (6, 9), dtype=np.uint16)
    with Image.open(write_tiff(tmp_path / "c.tif", rgb, big_endian=big_endian, deflate=deflate)) as im:
        assert np.array_equal(np.asarray(im), rgb)
    with Image.open(write_tiff(tmp_path / "g.tif", gray, big_endian=big_endian, deflate=deflate)) as im:
        assert np.array_equal(np.asarray(im).astype(np.uint16), gray)


@pytest.mark.parametrize("name,gamma", [("Adobe RGB (1998)", 563 / 256), ("Display P3", None), ("sRGB", None)])
def test_icc_profiles_are_what_littlecms_and_the_math_agree_on(name, gamma):
    profile = ImageCms.ImageCmsProfile(io.BytesIO(rgb_profile(name, gamma)))
    assert ImageCms.getProfileDescription(profile).strip() == f"{name} (test)"
    values = np.array([[[200, 80, 40], [30, 120, 200], [128, 128, 128], [250, 240, 10]]], np.uint8)
    im = Image.fromarray(values, "RGB")
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    out = np.asarray(ImageCms.profileToProfile(im, profile, srgb, outputMode="RGB"), dtype=np.float64)
    assert np.abs(out - 255 * expected_srgb(values / 255.0, name, gamma)).max() <= 2.0


def test_gray_profile_is_understood_by_littlecms():
    profile = ImageCms.ImageCmsProfile(io.BytesIO(gray_profile(1.0)))
    im = Image.new("L", (2, 1), 128)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    out = np.asarray(ImageCms.profileToProfile(im, profile, srgb, outputMode="RGB"), dtype=np.float64)
    assert np.abs(out - 255 * srgb_encode(np.full(3, 128 / 255))).max() <= 2.0
