"""The memory estimate, the refusal before a run starts, and checkpointing."""

from __future__ import annotations

import pytest
import torch

from nst_core import StyleConfig, stylize
from nst_core import memory
from nst_core.builtins import vgg
from nst_core.errors import ConfigError, ResourceError

GIB = 2**30


def test_estimate_grows_with_size_and_shrinks_with_bf16_and_checkpointing():
    sizes = [256, 512, 1024, 2048, 4096]
    totals = [memory.estimate(s * 3 // 4, s, steps=500).total for s in sizes]
    assert totals == sorted(totals) and len(set(totals)) == len(totals)
    plain = memory.estimate(1536, 2048, steps=500)
    assert memory.estimate(1536, 2048, steps=500, checkpoint=True).total < plain.total
    assert memory.estimate(1536, 2048, steps=500, precision="bf16").total < plain.total
    assert memory.estimate(1536, 2048, steps=500, optimizer="adam").lbfgs == 0
    # L-BFGS history: at most steps − 1 pairs, and capped at 1 GiB by the engine's rule
    assert memory.estimate(1536, 2048, steps=3).lbfgs == 2 * 24 * 1536 * 2048
    assert memory.estimate(1536, 2048, steps=500).lbfgs <= 1.01 * GIB


def test_refusal_names_the_largest_size_that_fits():
    free = 3 * GIB
    with pytest.raises(ResourceError) as info:
        memory.plan_memory([(3072, 4096)], precision="float32", device="cpu", steps=500, optimizer="lbfgs",
                           checkpoint=None, available=free)
    message = str(info.value)
    assert "4096×3072" in message and "3.0 GiB is free" in message and "bf16" in message
    side = int(message.split("use size=")[1].split()[0])
    fits = memory.estimate(side * 3 // 4, side, steps=500, checkpoint=True)
    too_big = memory.estimate((side + 8) * 3 // 4, side + 8, steps=500, checkpoint=True)
    assert memory.SAFETY * fits.total <= free < memory.SAFETY * too_big.total
    # and that size is accepted
    memory.plan_memory([(side * 3 // 4, side)], precision="float32", device="cpu", steps=500,
                       optimizer="lbfgs", checkpoint=None, available=free)


def test_checkpointing_switches_on_only_when_needed():
    shape = [(1536, 2048)]
    plain = memory.estimate(1536, 2048, steps=500).total * memory.SAFETY
    light = memory.estimate(1536, 2048, steps=500, checkpoint=True).total * memory.SAFETY
    common = dict(precision="float32", device="cpu", steps=500, optimizer="lbfgs")
    assert not memory.plan_memory(shape, checkpoint=None, available=int(plain) + 1, **common).checkpoint
    between = memory.plan_memory(shape, checkpoint=None, available=int((plain + light) / 2), **common)
    assert between.checkpoint and "checkpointing is on" in between.note
    with pytest.raises(ResourceError, match="checkpoint=True"):
        memory.plan_memory(shape, checkpoint=False, available=int((plain + light) / 2), **common)


def test_memory_check_can_be_turned_off(monkeypatch):
    monkeypatch.setenv(memory.MEMORY_CHECK_ENV, "0")
    plan = memory.plan_memory([(30000, 40000)], precision="float32", device="cpu", steps=10,
                              optimizer="lbfgs", checkpoint=None, available=GIB)
    assert plan.note.startswith("memory check off")


def test_available_memory_is_read_on_this_machine():
    free = memory.available_bytes("cpu")
    assert free is None or 0 < free < 1 << 50


def test_stylize_refuses_before_the_first_step(monkeypatch, content_64, style_64, builtin_registries):
    monkeypatch.setattr(memory, "available_bytes", lambda device: 10 * 2**20)
    steps = []
    with pytest.raises(ResourceError, match="needs about .* but only 10 MiB is free"):
        stylize(content_64, style_64, registries=builtin_registries, size=64, steps=3, device="cpu",
                on_progress=steps.append)
    assert steps == []


def test_checkpointed_run_equals_the_plain_one(content_64, style_64, builtin_registries):
    runs = [stylize(content_64, style_64, registries=builtin_registries, size=64, steps=6, scales=1, seed=0,
                    device="cpu", checkpoint=flag) for flag in (False, True)]
    assert torch.allclose(runs[0].image, runs[1].image, atol=1e-5)
    assert runs[0].loss == pytest.approx(runs[1].loss, rel=1e-5)


def test_checkpointed_backbone_gives_the_same_features_and_gradient(content_64):
    layers = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1"]
    plain, light = vgg.caffe_vgg19(), vgg.caffe_vgg19()
    light.checkpoint = True
    x = content_64.clone().requires_grad_(True)
    fa, fb = plain(x, layers), light(x, layers)
    assert all(torch.equal(fa[k], fb[k]) for k in layers)
    ga, = torch.autograd.grad(sum(f.square().sum() for f in fa.values()), x)
    gb, = torch.autograd.grad(sum(f.square().sum() for f in fb.values()), x)
    assert torch.equal(ga, gb)


def test_checkpoint_setting_is_validated():
    assert StyleConfig().checkpoint is None
    with pytest.raises(ConfigError, match="checkpoint"):
        StyleConfig(checkpoint="yes")
