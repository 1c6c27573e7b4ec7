"""Awkward images all the way through stylize(): tiny, extremely thin, RGBA, rotated, animated,
16-bit, CMYK, palette, wide-gamut, as content and as style.

Runs are tiny (size 64, one step; ``style_scale`` small where the engine would otherwise enlarge
the style to the width of a thin content's working size) and check the pixels that come out.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
import pytest
import torch

from nst_core import stylize
from nst_core.errors import ImageError, NSTError
from nst_core.image import fit_longest_side
from image_writers import iccp_chunk, rgb_profile, write_png

RUN = {"size": 64, "steps": 1, "seed": 0}


@pytest.fixture(scope="module")
def style_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("style") / "style.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(path)
    return path


def check_result(result, height: int, width: int, size: int = 64) -> torch.Tensor:
    image = result.image
    assert image.shape == (1, 3, *fit_longest_side(height, width, size)) and max(image.shape[-2:]) == size
    assert image.dtype == torch.float32 and torch.isfinite(image).all() and image.min() >= 0 and image.max() <= 1
    assert result.status == "finished"
    return image


@pytest.mark.parametrize("width,height", [(8, 8), (400, 12), (12, 400), (10_000, 10)])
def test_tiny_and_thin_content(tmp_path, style_file, width, height):
    """Black left half, white right half: processed at the engine's minimum working size and
    returned at the requested size, with the halves still where they were."""
    data = np.zeros((height, width, 3), np.uint8)
    data[:, width // 2:] = 255
    Image.fromarray(data).save(tmp_path / "thin.png")
    result = stylize(tmp_path / "thin.png", style_file, style_scale=0.05, **RUN)
    image = check_result(result, height, width)
    half = image.shape[-1] // 2
    assert image[..., :half].mean() < 0.25 and image[..., half:].mean() > 0.75
    assert min(result.sizes[-1]) >= 32  # the network saw at least its minimum working side


def test_one_pixel_content(tmp_path, style_file):
    Image.new("RGB", (1, 1), (200, 40, 40)).save(tmp_path / "dot.png")
    image = check_result(stylize(tmp_path / "dot.png", style_file, style_scale=0.05, **RUN), 1, 1)
    mean = image.mean(dim=(0, 2, 3))
    assert mean[0] > mean[1] + 0.2 and mean[0] > mean[2] + 0.2  # still red


def test_rotated_rgba_content_keeps_its_alpha_and_orientation(tmp_path, style_file):
    """A landscape RGBA photo tagged orientation 6 is displayed (and stylised) as portrait; its
    alpha comes back at the output size and is written by save()."""
    rgba = np.zeros((32, 48, 4), np.uint8)
    rgba[..., :3] = 120
    rgba[..., 3] = 255
    rgba[:, :24, 3] = 0  # stored left half transparent -> displayed top half
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgba, "RGBA").save(tmp_path / "photo.png", exif=exif)
    result = stylize(tmp_path / "photo.png", style_file, **RUN)
    check_result(result, 48, 32)
    alpha = result.alpha
    assert alpha.shape == (1, 1, 64, 43)
    assert alpha[..., :28, :].max() < 0.05 and alpha[..., 36:, :].min() > 0.95
    result.save(tmp_path / "out.png")
    with Image.open(tmp_path / "out.png") as out:
        assert out.mode == "RGBA" and out.size == (43, 64)
        stored = np.asarray(out.getchannel("A"))
    assert stored[:28].max() < 13 and stored[36:].min() > 242


def test_awkward_style_images(tmp_path):
    """Every awkward kind of file as a style image, blended in one run: each is read (their notes
    reach the result) and the run gives a valid image."""
    rng = np.random.default_rng(2)
    cmyk = Image.fromarray(rng.integers(0, 256, (24, 30, 4), dtype=np.uint8), "CMYK")
    cmyk.save(tmp_path / "cmyk.jpg")
    palette = Image.fromarray(rng.integers(0, 4, (20, 20), dtype=np.uint8), "P")
    palette.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9])
    palette.save(tmp_path / "palette.png", transparency=3)
    write_png(tmp_path / "deep.png", rng.integers(0, 65536, (16, 24, 3), dtype=np.uint16), 2, 16)
    frames = [Image.new("RGB", (20, 16), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    Image.fromarray(rng.integers(0, 256, (12, 400, 3), dtype=np.uint8)).save(tmp_path / "thin.png")
    Image.new("L", (8, 8), 90).save(tmp_path / "tiny.png")
    Image.fromarray(rng.integers(0, 256, (16, 16, 2), dtype=np.uint8), "LA").save(tmp_path / "la.png")
    write_png(tmp_path / "wide.png", rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), 2, 8,
              chunks=iccp_chunk(rgb_profile("Display P3", None)))
    styles = [tmp_path / n for n in ("cmyk.jpg", "palette.png", "deep.png", "anim.gif", "thin.png", "tiny.png",
                                     "la.png", "wide.png")]
    content = torch.zeros(1, 3, 48, 64)
    content[..., 32:] = 1
    result = stylize(content, styles, **RUN)
    image = check_result(result, 48, 64)
    assert image[..., :32].mean() < image[..., 32:].mean()
    assert any("anim.gif" in n and "first" in n for n in result.notes)
    assert any("wide.png" in n and "Display P3" in n for n in result.notes)


def test_animated_content_note_reaches_the_result(tmp_path, style_file):
    frames = [Image.new("RGB", (30, 20), c) for c in ((250, 250, 250), (0, 0, 0))]
    frames[0].save(tmp_path / "anim.webp", save_all=True, append_images=frames[1:], lossless=True)
    result = stylize(tmp_path / "anim.webp", style_file, **RUN)
    assert check_result(result, 20, 30).mean() > 0.75  # the white first frame, not the black second
    assert result.notes == (f"{tmp_path / 'anim.webp'}: has 2 frames; used the first",)


def test_a_bad_style_image_is_an_error_naming_it(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(40))
    with pytest.raises(ImageError, match=str(tmp_path / "broken.jpg")) as info:
        stylize(torch.zeros(1, 3, 32, 32), [torch.ones(1, 3, 32, 32), tmp_path / "broken.jpg"], **RUN)
    assert isinstance(info.value, NSTError) and "\n" not in str(info.value)

