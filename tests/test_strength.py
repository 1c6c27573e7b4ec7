"""One meaning of strength: the declared weight scales of loss terms and backbones are applied,
and at the default strength every built-in style loss moves the photo about as far as gram does
(content ratio by the benchmarks' shared evaluator, benchmarks/bench_strength.py)."""

from __future__ import annotations

from collections.abc import Collection

import pytest
import torch
from torch import nn

import nst_core
from nst_core import Backbone, LossSpec, StyleConfig
from nst_core.builtins.style_losses import HistogramLoss, MeanStdLoss, MRFLoss, WassersteinLoss
from nst_core.errors import PluginError
from nst_core.image import resize

from benchmarks.bench_strength import BAND, content_ratio
from benchmarks.evaluator import Evaluator

BUILTIN_STYLE_LOSSES = {"mean-std": MeanStdLoss, "wasserstein": WassersteinLoss, "histogram": HistogramLoss,
                        "mrf": MRFLoss}


def config(**changes) -> StyleConfig:
    return StyleConfig(**{"size": 64, "steps": 1, "scales": 1, "seed": 0, "device": "cpu", "precision": "float32",
                          **changes})


def first_terms(content, style, cfg, registries) -> dict[str, float]:
    """The weighted parts of J at the first step (the content image: init "content")."""
    seen = []
    nst_core.stylize(content, style, cfg, registries=registries, on_progress=seen.append)
    return seen[0].terms


@pytest.mark.parametrize("name", sorted(BUILTIN_STYLE_LOSSES))
def test_the_declared_scale_multiplies_the_weight(name, content_64, style_64):
    cls = BUILTIN_STYLE_LOSSES[name]
    assert cls.weight_scale > 0 and cls.weight_scale != 1.0  # each built-in is calibrated (not gram's 1)

    class Raw(cls):  # the same term with no declared scale
        weight_scale = 1.0

    registries = nst_core.collect_registries(nst_core.get_plugin_manager(autoload=False))
    registries.loss_terms.add("raw", Raw, plugin="tests", distribution="tests")
    weight = 0.3
    declared = first_terms(content_64, style_64, config(style_loss=name, style_weight=weight), registries)[name]
    raw = first_terms(content_64, style_64, config(style_loss="raw", style_weight=1.0), registries)["raw"]
    assert declared == pytest.approx(weight * cls.weight_scale * raw, rel=1e-4)
    planned = nst_core.plan(content_64, style_64, config(style_loss=name, style_weight=weight), registries=registries)
    style_term = next(t for t in planned.terms if t.name == name)
    assert (style_term.weight, style_term.scale) == (weight, cls.weight_scale)
    assert style_term.effective_weight == pytest.approx(weight * cls.weight_scale)


class TinyScaled(Backbone):
    """One fixed random convolution (3→8) and its ReLU; declares a style weight scale."""

    layer_names = ("conv1", "relu1")
    channels = {"conv1": 8, "relu1": 8}
    default_content_layers = ("relu1",)
    default_style_layers = ("relu1",)
    weight_scales = {"style": 50.0}

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        generator = torch.Generator().manual_seed(0)
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=generator) * 0.3

    def forward(self, image, layers: Collection[str]):
        x = self.conv(image)
        out = {"conv1": x, "relu1": torch.relu(x)}
        return {name: out[name] for name in layers}


class TinyUnscaled(TinyScaled):
    weight_scales: dict[str, float] = {}


def test_a_backbone_declared_scale_multiplies_its_roles_weights(content_64, style_64):
    registries = nst_core.collect_registries(nst_core.get_plugin_manager(autoload=False))
    registries.backbones.add("tiny-scaled", TinyScaled, plugin="tests", distribution="tests")
    registries.backbones.add("tiny-unscaled", TinyUnscaled, plugin="tests", distribution="tests")
    cfg = config(backbone="tiny-scaled", style_weight=2.0)
    planned = nst_core.plan(content_64, style_64, cfg, registries=registries)
    assert {t.name: t.effective_weight for t in planned.terms} == {"content": 1.0, "gram": 100.0}
    # at step 1 G is the photo: content 0, so compare the style parts of the two backbones
    scaled = first_terms(content_64, style_64, cfg, registries)
    unscaled = first_terms(content_64, style_64, cfg.replace(backbone="tiny-unscaled"), registries)
    assert scaled["gram"] == pytest.approx(50.0 * unscaled["gram"], rel=1e-5)
    # and the declared scale changes the result as a bigger style weight does
    a = nst_core.stylize(content_64, style_64, cfg.replace(steps=8), registries=registries).image
    b = nst_core.stylize(content_64, style_64, cfg.replace(steps=8, backbone="tiny-unscaled", style_weight=100.0),
                         registries=registries).image
    assert torch.allclose(a, b, atol=1e-4)


@pytest.mark.parametrize("scales", [{"style": 0.0}, {"style": float("nan")}, {"paint": 2.0}, {"style": "2"}])
def test_a_wrong_backbone_scale_is_a_plugin_error(scales, content_64, style_64):
    bad = type("Bad", (TinyScaled,), {"weight_scales": scales})
    registries = nst_core.collect_registries(nst_core.get_plugin_manager(autoload=False))
    registries.backbones.add("bad", bad, plugin="tests", distribution="tests")
    with pytest.raises(PluginError, match="weight_scales"):
        nst_core.plan(content_64, style_64, config(backbone="bad"), registries=registries)


def test_a_wrong_term_scale_is_a_plugin_error(content_64, style_64):
    bad = type("Bad", (MeanStdLoss,), {"weight_scale": -1.0})
    registries = nst_core.collect_registries(nst_core.get_plugin_manager(autoload=False))
    registries.loss_terms.add("bad", bad, plugin="tests", distribution="tests")
    with pytest.raises(PluginError, match=r"loss term 'bad' from plug-in 'tests' .*weight scale of -1\.0"):
        nst_core.plan(content_64, style_64, config(style_loss="bad"), registries=registries)


def test_the_record_keeps_the_effective_weights(content_64, style_64, builtin_registries):
    result = nst_core.stylize(content_64, style_64, config(style_loss="mrf", style_weight=2.0,
                                                           extra_losses=(LossSpec(name="tv", weight=0.5),)),
                              registries=builtin_registries)
    assert result.weights == {"content": 1.0, "mrf": pytest.approx(2.0 * MRFLoss.weight_scale), "tv": 0.5}
    assert result.record()["weights"] == result.weights


STEPS = 12
TOLERANCE = (0.5, 1.5)
"""r of every style loss relative to gram's at 64 px, 12 steps (measured: mean-std 0.71, wasserstein
0.79, histogram 0.69 of gram's 0.56; without their declared scales mean-std, wasserstein
and histogram stay at r 0.00: the photo unchanged)."""
MRF_TOLERANCE = (0.1, 0.5)
"""mrf's r relative to gram's: its scale was lowered by eye below the r-matched 0.43 (which measured
0.63 of gram's here but painted over the houses at 256 px), to 0.17: 0.19 of gram's here."""


@pytest.mark.slow  # about 25 s on a busy 2-core CPU: five short runs at 64 px
def test_every_style_loss_stylizes_about_as_much_as_gram_at_the_default_strength(content_64, style_64,
                                                                                   builtin_registries):
    """The content ratio r (benchmarks/bench_strength.py) of each built-in style loss at style
    weight 1 is within TOLERANCE of gram's, and above the band's lower end (mrf: MRF_TOLERANCE)."""
    evaluator = Evaluator(content_64, style_64)
    reference = evaluator(resize(style_64, *content_64.shape[-2:])).content
    model = nst_core.load_model(registries=builtin_registries, device="cpu", precision="float32")
    ratios = {}
    for name in ("gram", *sorted(BUILTIN_STYLE_LOSSES)):
        result = nst_core.stylize(content_64, style_64, config(steps=STEPS, style_loss=name), model=model,
                                  registries=builtin_registries)
        ratios[name] = content_ratio(evaluator, result.image, reference)
    mrf = ratios.pop("mrf")
    assert MRF_TOLERANCE[0] * ratios["gram"] <= mrf <= MRF_TOLERANCE[1] * ratios["gram"], (mrf, ratios)
    for r in ratios.values():
        assert TOLERANCE[0] * ratios["gram"] <= r <= TOLERANCE[1] * ratios["gram"], ratios
        assert r >= BAND[0], ratios
