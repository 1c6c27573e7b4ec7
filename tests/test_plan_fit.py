"""Fewer steps at the large scales (``step_decay``) and "the largest size that fits" (``fit_memory``):
what the GIMP filter asks of the engine to work at a layer's full size."""

from __future__ import annotations

import pytest
import torch

import nst_core
from nst_core import StyleConfig
from nst_core import memory as memory_module
from nst_core.errors import ConfigError, ResourceError
from nst_core.planning import plan_sizes, steps_per_scale

CPU = torch.device("cpu")
GIB = 2**30


def config(**fields) -> StyleConfig:
    return StyleConfig(**{"size": 64, "steps": 4, "seed": 3, "device": "cpu", "precision": "float32", **fields})


def test_steps_per_scale_decay_from_the_coarsest_scale():
    assert steps_per_scale(StyleConfig(steps=200), 4) == (200, 200, 200, 200)  # the default: unchanged
    assert steps_per_scale(StyleConfig(steps=200, step_decay=0.5), 4) == (200, 100, 50, 25)
    assert steps_per_scale(StyleConfig(steps=3, step_decay=0.1), 3) == (3, 1, 1)  # at least one step


@pytest.mark.parametrize("bad", [0.0, -0.5, 1.5, float("nan")])
def test_step_decay_is_checked(bad):
    with pytest.raises(ConfigError, match="step_decay"):
        StyleConfig(step_decay=bad)


def test_fit_memory_must_be_a_bool():
    with pytest.raises(ConfigError, match="fit_memory"):
        StyleConfig(fit_memory=1)


def test_a_run_with_step_decay_runs_those_steps_at_each_scale(content_64, style_64, builtin_registries):
    seen: list = []
    plan = nst_core.plan(content_64, style_64, config(scales=2, min_scale_size=32, step_decay=0.5, steps=4),
                         registries=builtin_registries)
    assert plan.steps == (4, 2) and plan.total_steps == 6
    result = nst_core.run(plan, on_progress=seen.append)
    assert result.steps == 6 and result.total_steps == 6
    assert [p.scale for p in seen] == [1, 1, 1, 1, 2, 2]
    assert {p.total for p in seen} == {6}


def test_plan_sizes_is_what_plan_decides(content_64, style_64, builtin_registries):
    cfg = config(size=64, scales=2, min_scale_size=32, step_decay=0.5)
    plan = nst_core.plan(content_64, style_64, cfg, registries=builtin_registries)
    sized = plan_sizes(plan.config, 48, 64, CPU)
    assert (sized.shapes, sized.steps, sized.output_size) == (plan.shapes, plan.steps, plan.output_size)


def test_fit_memory_stops_at_the_largest_size_that_fits_and_says_so():
    cfg = StyleConfig(size=4000, steps=200, step_decay=0.5, fit_memory=True, precision="bf16")
    roomy = plan_sizes(cfg, 3000, 4000, CPU, available=64 * GIB)
    assert roomy.output_size == (4000, 3000) and roomy.notes == ()
    assert roomy.shapes[-1] == (3000, 4000) and roomy.steps == (200, 100, 50, 25)
    tight = plan_sizes(cfg, 3000, 4000, CPU, available=4 * GIB)
    w, h = tight.output_size
    assert 1000 < w < 4000 and tight.config.size == w and tight.shapes[-1] == (h, w)
    assert tight.memory is not None and tight.memory.available == 4 * GIB
    assert memory_module.SAFETY * tight.memory.estimate.total <= 4 * GIB  # it really fits
    with pytest.raises(ResourceError):  # 10 % more does not fit (so w is the largest, within 10 %)
        plan_sizes(cfg.replace(fit_memory=False, size=int(w * 1.1)), 3000, 4000, CPU, available=4 * GIB)
    assert any("does not fit" in note and f"stops at {w}×{h}" in note for note in tight.notes)
    assert tight.requested_size == 4000


def test_without_fit_memory_a_size_that_cannot_fit_is_refused():
    cfg = StyleConfig(size=4000, steps=200, precision="bf16")
    with pytest.raises(ResourceError, match="use size="):
        plan_sizes(cfg, 3000, 4000, CPU, available=4 * GIB)


def test_fit_memory_gives_up_when_nothing_fits():
    cfg = StyleConfig(size=4000, steps=200, precision="bf16", fit_memory=True)
    with pytest.raises(ResourceError):
        plan_sizes(cfg, 3000, 4000, CPU, available=64 * 2**20)


def test_plan_with_fit_memory_runs_the_lowered_size(content_64, style_64, builtin_registries, monkeypatch):
    def need(h, w):
        return memory_module.plan_memory([(h, w)], precision="float32", device="cpu", steps=2, optimizer="lbfgs",
                                         checkpoint=False, available=1 << 50,
                                         style_sizes=[tuple(style_64.shape[-2:])]).estimate.total

    budget = int(memory_module.SAFETY * (need(36, 48) + need(48, 64)) / 2)  # 64 px does not fit, 48 px does
    monkeypatch.setattr(memory_module, "available_bytes", lambda device: budget)
    cfg = config(size=64, steps=2, scales=1, fit_memory=True, checkpoint=False)
    with pytest.raises(ResourceError):
        nst_core.plan(content_64, style_64, cfg.replace(fit_memory=False), registries=builtin_registries)
    plan = nst_core.plan(content_64, style_64, cfg, registries=builtin_registries)
    assert 48 <= plan.config.size < 64 and plan.requested.size == plan.config.size
    assert plan.output_size[0] == plan.config.size and any("does not fit" in n for n in plan.notes)
    result = nst_core.run(plan)
    assert tuple(result.image.shape[-2:]) == (plan.output_size[1], plan.output_size[0])


def test_nst_run_passes_step_decay_and_fit_memory(tmp_path):
    from helpers import CONTENT, STYLE, events, nst

    out = tmp_path / "out.png"
    result = nst("run", CONTENT, STYLE, "-o", out, "--size", 48, "--scales", 2, "--min-scale-size", 32, "--steps", 4,
                 "--step-decay", 0.5, "--fit-memory", "--seed", 1, "--device", "cpu", "--precision", "float32",
                 "--progress", "jsonl")
    assert result.exit_code == 0, result.output
    start = next(e for e in events(result.stdout) if e["event"] == "start")
    assert start["total"] == 6  # 4 steps at 32 px, then 2 at 48 px
    record = (tmp_path / "out.png.json").read_text()
    assert '"step_decay": 0.5' in record and '"fit_memory": true' in record
