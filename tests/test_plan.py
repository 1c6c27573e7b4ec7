"""The engine's plan as a value: plan() decides, run() executes, load_model() is reused, guides reach terms."""

from __future__ import annotations

import io

import pytest
import torch

import nst_core
from nst_core import LossSpec, StyleConfig
from nst_core.errors import ConfigError, ImageError
from nst_core.planning import scale_shapes
from nst_core.types import LossTerm


def config(**fields) -> StyleConfig:
    return StyleConfig(**{"size": 64, "steps": 4, "seed": 3, "device": "cpu", "precision": "float32", **fields})


def test_plan_holds_every_decision_before_any_step(content_64, style_64, builtin_registries):
    steps_seen: list = []
    plan = nst_core.plan(content_64, style_64, config(seed=None, scales=2, min_scale_size=32, precision="auto"),
                         registries=builtin_registries)
    assert plan.device == torch.device("cpu")
    assert plan.config.precision in ("float32", "bf16") and plan.requested.precision == plan.config.precision
    assert plan.config.seed == plan.seed and plan.requested.seed is None and not plan.seed_given
    assert plan.shapes == tuple(scale_shapes(plan.config, 48, 64)) == ((32, 32), (48, 64))
    assert plan.sizes == ((32, 32), (64, 48)) and plan.output_size == (64, 48)
    assert plan.total_steps == 8 and [t.name for t in plan.terms] == ["content", "gram"]
    assert plan.memory is not None and plan.memory.checkpoint is False
    result = nst_core.run(plan, on_progress=steps_seen.append)
    assert result.seed == plan.seed and result.sizes == plan.sizes and len(steps_seen) == 8


def test_run_of_a_plan_is_stylize(content_64, style_64, builtin_registries):
    direct = nst_core.stylize(content_64, style_64, config(), registries=builtin_registries)
    planned = nst_core.run(nst_core.plan(content_64, style_64, config(), registries=builtin_registries))
    assert torch.equal(direct.image, planned.image) and direct.loss == planned.loss


def test_a_loaded_model_is_reused_and_gives_the_same_image(content_64, style_64, builtin_registries):
    model = nst_core.load_model(config(), registries=builtin_registries)
    plan = nst_core.plan(content_64, style_64, config(), registries=builtin_registries, model=model)
    assert plan.model is model
    again = nst_core.plan(content_64, style_64, config(style_weight=3.0, seed=5), registries=builtin_registries,
                          model=model)
    assert again.model is model  # other weights, same backbone and layers
    fresh = nst_core.stylize(content_64, style_64, config(), registries=builtin_registries)
    reused = nst_core.stylize(content_64, style_64, config(), registries=builtin_registries, model=model)
    assert torch.equal(fresh.image, reused.image)


def test_a_model_that_cannot_serve_the_config_is_replaced(content_64, style_64, builtin_registries):
    shallow = nst_core.load_model(config(style_layers=("relu1_1",), content_layers=("relu2_1",)),
                                  registries=builtin_registries)
    assert shallow.layers == ("relu2_1", "relu1_1")
    deeper = nst_core.plan(content_64, style_64, config(), registries=builtin_registries, model=shallow)
    assert deeper.model is not shallow and "relu5_1" in deeper.model.layers
    other_pooling = nst_core.plan(content_64, style_64, config(pooling="avg"), registries=builtin_registries,
                                  model=deeper.model)
    assert other_pooling.model is not deeper.model and other_pooling.model.pooling == "avg"


class GuideProbe(LossTerm):
    """An image term that pulls G toward the guide "target" where the guide "mask" is 1."""

    role = "image"
    seen: list = []

    def bind(self, targets):
        target, mask = targets.guides["target"], targets.guides["mask"]
        GuideProbe.seen.append((tuple(target.shape), tuple(mask.shape), target.device))

        def loss(image, features, layer_weights):
            return (mask * (image - target) ** 2).mean() * 1e12

        return loss


def test_guides_reach_every_scale_at_its_working_size(content_64, style_64):
    registries = nst_core.collect_registries(nst_core.get_plugin_manager(autoload=False))
    registries.loss_terms.add("guide-probe", GuideProbe, plugin="tests", distribution="tests")
    GuideProbe.seen = []
    target = torch.zeros(1, 3, 96, 128)
    mask = torch.ones(1, 1, 48, 64)
    cfg = config(scales=2, min_scale_size=32, steps=6, extra_losses=(LossSpec(name="guide-probe"),))
    pulled = nst_core.stylize(content_64, style_64, cfg, registries=registries,
                              guides={"target": target, "mask": mask})
    assert GuideProbe.seen == [((1, 3, 32, 32), (1, 1, 32, 32), torch.device("cpu")),
                               ((1, 3, 48, 64), (1, 1, 48, 64), torch.device("cpu"))]
    free = nst_core.stylize(content_64, style_64, config(scales=2, min_scale_size=32, steps=6),
                            registries=registries)
    assert pulled.image.mean() < 0.7 * free.image.mean()  # the term pulled G toward black
    with pytest.raises(ConfigError, match="guide 'mask' must be a"):
        nst_core.plan(content_64, style_64, cfg, registries=registries,
                      guides={"target": target, "mask": torch.ones(48, 64)})
    with pytest.raises(ConfigError, match="NaN"):
        nst_core.plan(content_64, style_64, cfg, registries=registries,
                      guides={"target": target, "mask": torch.full((1, 1, 4, 4), float("nan"))})


def test_read_image_takes_encoded_bytes(examples):
    data = (examples / "tubingen.jpg").read_bytes()
    from_bytes = nst_core.read_image(data, label="tubingen.jpg")
    from_file = nst_core.read_image(examples / "tubingen.jpg")
    assert torch.equal(from_bytes.rgb, from_file.rgb)
    with pytest.raises(ImageError, match=r"^broken\.png: "):
        nst_core.read_image(b"\x89PNG\r\n\x1a\n" + b"\0" * 40, label="broken.png")
    buffer = io.BytesIO()
    nst_core.image.to_pil(from_file.rgb).save(buffer, format="PNG")
    assert nst_core.read_image(buffer.getvalue()).size == from_file.size
