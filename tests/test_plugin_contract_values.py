"""The plug-in contract checked where plug-in code meets the engine (nst_core.contract).

A real distribution (``nst-cli-test-faulty 1.2.3``, tests/plugin_contract_faulty.py) provides a
loss term, backbone or schedule broken in each way the contract forbids; each must end in one
``PluginError`` line naming the name, the plug-in and the distribution (never a raw exception,
never a "finished" run), while the valid names of the same plug-in keep working.
"""

from __future__ import annotations

import re
import warnings

import pytest
import torch

import nst_core
from nst_core import LossSpec, StyleConfig, collect_registries
from nst_core.errors import PluginError, ResourceError
from nst_core.memory import VGG19_SAVED_BYTES_PER_PIXEL

from helpers import install_plugin
from plugin_contract_faulty import SOURCE

DIST = "plug-in 'faulty' (nst-cli-test-faulty 1.2.3)"
DIST_RE = re.escape(DIST)


@pytest.fixture
def regs(site):
    install_plugin(site, "faulty", SOURCE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the faulty plug-in registers cleanly: its faults show at run time
        return collect_registries()


def image_term(name: str, steps: int = 3, **config) -> StyleConfig:
    """Only the plug-in's term, on the default VGG19 (the term reads no layers)."""
    return StyleConfig(size=32, steps=steps, seed=0, device="cpu", precision="float32",
                       losses=(LossSpec(name="content", weight=1.0), LossSpec(name=name, weight=1.0)), **config)


@pytest.mark.parametrize("name, problem", [
    ("bad-shape", r"returned a tensor of shape \(3,\); a loss must return a 0-d tensor"),
    ("bad-float", r"returned float 0.25; a loss must return a 0-d torch tensor"),
    ("bad-detached", r"returned a tensor that does not depend on the image"),
    ("bad-int", r"returned a torch.int64 tensor; a loss must be floating point"),
    ("bad-raises", r"raised KeyError: 'relu9_9'"),
    ("bad-bind", r"binding its targets, raised ValueError: cannot bind"),
    ("bad-bind-result", r"bind\(\) returned int; it must return the loss function"),
    ("bad-role", r"has role 'texture'; expected 'content', 'style' or 'image'"),
    ("bad-factory", r"starting, raised ImportError: no module named 'fancy_weights'"),
    ("bad-not-a-term", r"its factory returned object; it must return an instance of nst_core.LossTerm"),
])
def test_a_broken_loss_term_is_one_plugin_error_naming_it(regs, content_64, style_64, name, problem):
    with pytest.raises(PluginError, match=rf"loss term '{name}' from {DIST_RE}.*{problem}") as info:
        nst_core.stylize(content_64, style_64, image_term(name), registries=regs)
    assert "\n" not in str(info.value)


def test_a_plugin_exception_keeps_its_own_traceback_as_the_cause(regs, content_64, style_64):
    with pytest.raises(PluginError) as info:
        nst_core.stylize(content_64, style_64, image_term("bad-raises"), registries=regs)
    assert isinstance(info.value.__cause__, KeyError)  # what `nst --debug` shows
    assert info.value.__cause__.__traceback__.tb_frame is not None


def test_the_valid_terms_of_the_same_plugin_keep_working(regs, content_64, style_64):
    result = nst_core.stylize(content_64, style_64, image_term("ok-image"), registries=regs)
    assert result.status == "finished" and result.steps == result.total_steps == 3


def test_a_loss_that_is_always_nan_names_the_term_and_does_not_finish(regs, content_64, style_64):
    result = nst_core.stylize(content_64, style_64, image_term("bad-nan"), registries=regs)
    assert result.status == "non-finite"
    assert f"in loss term 'bad-nan' from {DIST} (nan)" in result.message
    assert torch.isfinite(result.image).all()


def test_a_loss_that_turns_nan_later_is_not_reported_as_finished(regs, content_64, style_64):
    result = nst_core.stylize(content_64, style_64, image_term("bad-nan-later", steps=8), registries=regs)
    assert result.status == "non-finite" and result.steps < result.total_steps
    assert "loss term 'bad-nan-later'" in result.message


def test_a_recovered_nan_still_runs_every_step_and_names_the_term(regs, content_64, style_64):
    result = nst_core.stylize(content_64, style_64, image_term("bad-nan-once", steps=5), registries=regs)
    assert result.status == "finished" and result.steps == result.total_steps == 5
    assert result.recoveries == 1 and "in loss term 'bad-nan-once'" in result.message


def style_run(schedule: str, **config) -> StyleConfig:
    settings = dict(size=32, steps=4, seed=0, device="cpu", precision="float32", backbone="tiny",
                    style_loss="ok-style", layer_schedule=schedule)
    return StyleConfig(**{**settings, **config})


@pytest.mark.parametrize("schedule, problem", [
    ("bad-negative", r"returned -1.0 for layer 'relu1'; a layer weight must be a finite number >= 0"),
    ("bad-infinite", r"returned inf for layer 'relu1'"),
    ("bad-missing", r"returned no weight for 'relu1'; it must return one weight per requested layer"),
    ("bad-raises", r"raised ZeroDivisionError: division by zero"),
    ("bad-negative-later", r"returned -1.0 for layer 'relu1'"),
])
def test_a_broken_schedule_is_one_plugin_error_naming_it_and_the_term(regs, content_64, style_64, schedule,
                                                                        problem):
    with pytest.raises(PluginError, match=rf"layer schedule '{schedule}' from {DIST_RE} \(weighting loss term "
                                          rf"'ok-style'\).*{problem}"):
        nst_core.stylize(content_64, style_64, style_run(schedule), registries=regs)


@pytest.mark.parametrize("backbone, problem", [
    ("bad-forward", r"raised RuntimeError: forward exploded"),
    ("bad-missing-layer", r"returned no feature map for the requested layer 'relu2'"),
    ("bad-channels", r"returned shape \(1, 16, \d+, \d+\) for layer 'relu2' but declares 32 channels"),
    ("bad-not-a-module", r"factory returned object; it must return an instance of nst_core.Backbone"),
    ("bad-truncated", r"truncated\(\) dropped the requested layer 'relu2'"),
])
def test_a_broken_backbone_is_one_plugin_error_before_step_1(regs, content_64, style_64, backbone, problem):
    seen = []
    with pytest.raises(PluginError, match=rf"backbone '{backbone}' from {DIST_RE}.*{problem}"):
        nst_core.stylize(content_64, style_64, style_run("uniform", backbone=backbone), registries=regs,
                         on_progress=seen.append)
    assert seen == []


def test_a_plugin_backbone_runs_in_eval_mode_without_weight_grads(regs, content_64, style_64):
    planned = nst_core.plan(content_64, style_64, style_run("uniform"), registries=regs)
    backbone = planned.model.backbone
    assert not backbone.training
    assert not any(p.requires_grad for p in backbone.parameters())
    assert planned.memory is not None and planned.memory.estimate.total > 0
    result = nst_core.run(planned)
    assert result.status == "finished" and result.steps == 4


def test_an_undeclared_memory_profile_is_measured_and_a_huge_run_is_refused_before_step_1(regs, content_64,
                                                                                          style_64):
    model = nst_core.load_model(style_run("uniform"), registries=regs)
    # Tiny keeps conv1+relu1 (8 ch, full size) and conv2 (16 ch, half size) in float32: 8·4 + 8·4 + 16·4/4 bytes
    assert 48 <= model.memory_profile.saved_bytes_per_pixel <= 120
    with pytest.raises(ResourceError, match=r"needs about .* but only .* is free; use size="):
        nst_core.plan(content_64, style_64, style_run("uniform", size=65536), registries=regs)


def test_a_declared_memory_profile_is_what_the_check_uses(regs, content_64, style_64):
    model = nst_core.load_model(style_run("uniform", backbone="bad-hungry"), registries=regs)
    assert model.memory_profile.saved_bytes_per_pixel == 10_000_000.0
    # 10 MB per pixel: 6500x relu of VGG19 -> 2048 px needs tens of TB
    assert 10_000_000.0 / VGG19_SAVED_BYTES_PER_PIXEL > 6000
    with pytest.raises(ResourceError):
        nst_core.plan(content_64, style_64, style_run("uniform", backbone="bad-hungry", size=2048), registries=regs)
    nst_core.plan(content_64, style_64, style_run("uniform", size=2048), registries=regs)  # the same, measured
