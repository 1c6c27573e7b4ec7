"""Artist's controls on real images: colour preservation and spatial masks."""

from __future__ import annotations

import torch

from nst_core import StyleConfig, stylize
from nst_core.color import match_color, rgb_to_yiq, yiq_to_rgb


def chroma(image):
    """Mean I and Q of an RGB image: (2,)."""
    return rgb_to_yiq(image)[0, 1:].flatten(1).mean(dim=1)


def run(content, style, registries, **fields):
    return stylize(content, style, StyleConfig(size=64, steps=25, seed=0, device="cpu", **fields),
                   registries=registries)


def test_yiq_round_trip_and_match_color_statistics(content_64, style_64):
    assert torch.allclose(yiq_to_rgb(rgb_to_yiq(content_64)), content_64, atol=1e-5)
    matched = match_color(style_64, content_64)
    assert torch.allclose(matched.flatten(2).mean(2), content_64.flatten(2).mean(2), atol=0.02)


def test_luminance_transfer_keeps_the_contents_colours(content_64, style_64, builtin_registries):
    plain = run(content_64, style_64, builtin_registries)
    kept = run(content_64, style_64, builtin_registries, preserve_color="luminance")
    target, style = chroma(content_64), chroma(style_64)
    assert (chroma(kept.image) - target).abs().max() < 0.02
    assert (chroma(kept.image) - target).norm() < 0.25 * (style - target).norm()
    assert (chroma(plain.image) - target).norm() > 2 * (chroma(kept.image) - target).norm()
    # the luminance was stylised: not the content's
    assert (rgb_to_yiq(kept.image)[:, 0] - rgb_to_yiq(content_64)[:, 0]).abs().mean() > 0.03


def test_histogram_matching_moves_colours_toward_the_content(content_64, style_64, builtin_registries):
    plain = run(content_64, style_64, builtin_registries)
    matched = run(content_64, style_64, builtin_registries, preserve_color="histogram")
    content_mean = content_64.flatten(2).mean(2)
    assert (matched.image.flatten(2).mean(2) - content_mean).norm() < \
        0.5 * (plain.image.flatten(2).mean(2) - content_mean).norm()


def test_mask_limits_the_style_to_its_region(content_64, style_64, builtin_registries):
    mask = torch.zeros(1, 1, 48, 64)
    mask[..., :, :32] = 1.0  # left half
    seen = []
    result = stylize(content_64, style_64, StyleConfig(size=64, steps=25, seed=0, device="cpu"),
                     registries=builtin_registries, style_masks=[mask], on_progress=seen.append)
    left, right = result.image[..., :, :28], result.image[..., :, 36:]
    assert (right - content_64[..., :, 36:]).abs().max() < 1e-4
    assert (left - content_64[..., :, :28]).abs().mean() > 0.03
    assert result.terms["gram"] < 0.2 * seen[0].terms["gram"]
