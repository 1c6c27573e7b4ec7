"""stylize() on real images with the real VGG19: the objective falls, runs are reproducible,
progress/stop/non-finite behave, and bad settings fail before any work."""

from __future__ import annotations

import math

import pytest
import torch

from nst_core import LossSpec, StyleConfig, stylize
from nst_core.device import resolve_device
from nst_core import engine
from nst_core.planning import scale_sizes, working_shape
from nst_core.errors import ConfigError, DeviceError, UnknownNameError


def run(content, style, registries, **fields):
    fields.setdefault("device", "cpu")
    fields.setdefault("seed", 0)
    return stylize(content, style, StyleConfig(**fields), registries=registries)


def test_style_loss_falls_by_a_large_factor(content_64, style_64, builtin_registries):
    seen = []
    result = stylize(content_64, style_64, StyleConfig(size=64, steps=40, seed=0, device="cpu"),
                     registries=builtin_registries, on_progress=seen.append)
    assert result.status == "finished"
    assert result.terms["gram"] < seen[0].terms["gram"] / 20
    assert result.loss < seen[0].loss / 5
    assert result.image.shape == (1, 3, 48, 64)
    assert torch.isfinite(result.image).all() and 0 <= result.image.min() and result.image.max() <= 1
    assert (result.image - content_64).abs().mean() > 0.03  # it changed the picture


def test_progress_reports_every_step(content_64, style_64, builtin_registries):
    seen = []
    stylize(content_64, style_64, StyleConfig(size=64, steps=5, seed=0, device="cpu"),
            registries=builtin_registries, on_progress=seen.append)
    assert [p.step for p in seen] == [1, 2, 3, 4, 5]
    assert all(p.total == 5 and p.scale == 1 and p.scales == 1 and p.size == (64, 48) for p in seen)
    assert set(seen[0].terms) == {"content", "gram"}
    assert seen[0].loss == pytest.approx(sum(seen[0].terms.values()), rel=1e-5)
    assert all(b.elapsed >= a.elapsed for a, b in zip(seen, seen[1:]))
    assert seen[-1].fraction == 1.0 and seen[-1].image.shape == (1, 3, 48, 64)


def test_same_seed_same_image_other_seed_other_image(content_64, style_64, builtin_registries):
    a = run(content_64, style_64, builtin_registries, size=64, steps=5, init="noise", seed=7)
    b = run(content_64, style_64, builtin_registries, size=64, steps=5, init="noise", seed=7)
    c = run(content_64, style_64, builtin_registries, size=64, steps=5, init="noise", seed=8)
    assert torch.equal(a.image, b.image)
    assert not torch.equal(a.image, c.image)
    assert a.seed == 7


def test_seed_is_chosen_and_reported_when_not_given(content_64, style_64, builtin_registries):
    result = stylize(content_64, style_64, StyleConfig(size=64, steps=1, device="cpu"), registries=builtin_registries)
    assert isinstance(result.seed, int) and result.seed >= 0


def test_should_stop_returns_the_best_image_so_far(content_64, style_64, builtin_registries):
    seen = []
    result = stylize(content_64, style_64, StyleConfig(size=64, steps=50, seed=0, device="cpu"),
                     registries=builtin_registries, on_progress=seen.append, should_stop=lambda: len(seen) >= 4)
    assert result.status == "stopped" and result.steps == 4
    assert result.loss <= min(p.loss for p in seen)
    assert torch.isfinite(result.image).all()


def test_non_finite_loss_keeps_the_last_finite_image(content_64, style_64, builtin_registries):
    result = run(content_64, style_64, builtin_registries, size=64, steps=5, style_weight=1e38)
    assert result.status == "non-finite"
    assert "non-finite" in result.message
    assert torch.isfinite(result.image).all()
    assert result.image.std() > 0.05  # the content, not a black or flat image


def test_style_blend_of_one_equals_a_single_style(content_64, style_64, builtin_registries):
    other = torch.rand(1, 3, 40, 64, generator=torch.Generator().manual_seed(1))
    single = run(content_64, style_64, builtin_registries, size=64, steps=3)
    blended = run(content_64, [style_64, other], builtin_registries, size=64, steps=3, style_blend=(1.0, 0.0))
    mixed = run(content_64, [style_64, other], builtin_registries, size=64, steps=3, style_blend=(1.0, 1.0))
    assert torch.allclose(single.image, blended.image, atol=1e-5)
    assert not torch.allclose(single.image, mixed.image, atol=1e-3)


def test_coarse_to_fine_runs_every_scale(content_64, style_64, builtin_registries):
    seen = []
    result = stylize(content_64, style_64, StyleConfig(size=96, steps=2, min_scale_size=48, seed=0, device="cpu"),
                     registries=builtin_registries, on_progress=seen.append)
    assert result.sizes == ((48, 36), (96, 72))
    assert [p.scale for p in seen] == [1, 1, 2, 2] and seen[-1].size == (96, 72)
    assert result.image.shape == (1, 3, 72, 96)


def test_scale_sizes_and_minimum_working_side():
    assert scale_sizes(512, None, 2.0, 256) == [256, 512]
    assert scale_sizes(1024, None, 2.0, 256) == [256, 512, 1024]
    assert scale_sizes(300, None, 2.0, 256) == [300]
    assert scale_sizes(512, 3, 2 ** 0.5, 256) == [256, 362, 512]
    assert working_shape(384, 512, 256) == (192, 256)
    assert working_shape(12, 400, 64) == (32, 64)  # 2 x 64 at size 64: the short side stretched to 32


def test_adam_and_other_inits_run(content_64, style_64, builtin_registries):
    for init in ("noise", "gray"):
        first = []
        result = stylize(content_64, style_64,
                         StyleConfig(size=64, steps=15, optimizer="adam", learning_rate=0.05, init=init, seed=0,
                                     device="cpu"),
                         registries=builtin_registries, on_progress=first.append)
        assert result.loss < first[0].loss
    start = torch.full_like(content_64, 0.25)
    result = stylize(content_64, style_64, StyleConfig(size=64, steps=1, init="image", device="cpu"),
                     registries=builtin_registries, init_image=start)
    assert result.image.shape == content_64.shape


def test_custom_layers_weights_and_schedules(content_64, style_64, builtin_registries):
    seen = []
    stylize(content_64, style_64,
            StyleConfig(size=64, steps=2, style_layers=("relu1_1", "relu2_1"), layer_weights={"relu1_1": 3, "relu2_1": 1},
                        content_layers=("relu3_1",), tv_weight=0.1, seed=0, device="cpu"),
            registries=builtin_registries, on_progress=seen.append)
    assert set(seen[0].terms) == {"content", "gram", "tv"}
    for schedule in ("uniform", "geometric", "coarse-to-fine", "inverse-channels"):
        run(content_64, style_64, builtin_registries, size=64, steps=1, layer_schedule=schedule)


def test_extra_loss_spec_with_params(content_64, style_64, builtin_registries):
    seen = []
    stylize(content_64, style_64,
            StyleConfig(size=64, steps=1, extra_losses=(LossSpec(name="tv", weight=2.0, params={"exponent": 1}),),
                        device="cpu"),
            registries=builtin_registries, on_progress=seen.append)
    assert seen[0].terms["tv"] > 0
    with pytest.raises(ConfigError, match="unknown parameter of loss term 'tv' 'bogus'"):
        run(content_64, style_64, builtin_registries, size=64, steps=1,
            extra_losses=(LossSpec(name="tv", params={"bogus": 1}),))


def test_unknown_layer_is_refused_with_suggestions(content_64, style_64, builtin_registries):
    with pytest.raises(UnknownNameError, match="layer of backbone 'vgg19' 'relu4_9'.*did you mean"):
        run(content_64, style_64, builtin_registries, size=64, steps=1, content_layers=("relu4_9",))


@pytest.mark.parametrize("field, value, match", [
    ("size", -5, "StyleConfig.size must be >= 16"),
    ("steps", 0, "StyleConfig.steps must be >= 1"),
    ("style_weight", math.nan, "StyleConfig.style_weight must be finite"),
    ("content_weight", -1.0, "StyleConfig.content_weight must be >= 0"),
    ("optimizer", "sgd", "StyleConfig.optimizer must be"),
    ("steps", 2.5, "StyleConfig.steps must be a whole number"),
])
def test_bad_values_fail_with_the_field_named(field, value, match):
    with pytest.raises(ConfigError, match=match):
        StyleConfig(**{field: value})


def test_style_blend_count_must_match(content_64, style_64, builtin_registries):
    with pytest.raises(ConfigError, match="style_blend has 3 weight"):
        run(content_64, [style_64, style_64], builtin_registries, size=64, steps=1, style_blend=(1, 1, 1))


def test_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cuda", "mps", "cpu")
    with pytest.raises(DeviceError, match="unknown device 'gpu9'"):
        resolve_device("gpu9")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="'cuda' is not available on this machine; available: cpu"):
            resolve_device("cuda")


def test_alpha_is_kept_and_output_written(tmp_path, examples, builtin_registries):
    from PIL import Image

    src = Image.open(examples / "tubingen.jpg").convert("RGBA").resize((64, 48))
    src.putalpha(Image.linear_gradient("L").resize((64, 48)))
    src.save(tmp_path / "in.png")
    result = stylize(tmp_path / "in.png", examples / "starry_night.jpg",
                     StyleConfig(size=64, steps=2, device="cpu"), registries=builtin_registries)
    out = result.save(tmp_path / "out.png")
    back = Image.open(out)
    assert back.mode == "RGBA" and back.size == (64, 48)
    assert abs(int(back.getchannel("A").getpixel((10, 5))) - int(src.getchannel("A").getpixel((10, 5)))) <= 1
    assert not list(tmp_path.glob("*.part"))


def _iterates(content, style, registries, **config):
    seen = []
    result = stylize(content, style, registries=registries, size=64, scales=1, seed=0, device="cpu",
                     precision="float32", on_progress=lambda p: seen.append(p.image.detach().clone()), **config)
    return result, torch.stack(seen[-20:])  # the last 20 iterates (early ones may overshoot briefly)


def test_lbfgs_iterates_stay_in_the_pixel_range(content_64, style_64, builtin_registries, monkeypatch):
    """The range penalty keeps the unclamped L-BFGS iterate in [0, 1], so the clamped image written
    out has the J the optimiser reached; without it (RANGE_PENALTY = 0) the iterate leaves the range."""
    config = dict(steps=60, style_weight=100.0)
    result, iterates = _iterates(content_64, style_64, builtin_registries, **config)
    assert result.status == "finished"
    assert iterates.min() > -0.05 and iterates.max() < 1.05
    monkeypatch.setattr(engine, "RANGE_PENALTY", 0.0)
    _, free = _iterates(content_64, style_64, builtin_registries, **config)
    assert free.min() < -0.1 or free.max() > 1.1
