"""Mixed precision: bf16/fp16 backbone, float32 losses; the result must stay that of float32."""

from __future__ import annotations

import pytest
import torch

from nst_core import StyleConfig, stylize
from nst_core.builtins import vgg
from nst_core.errors import ConfigError
from nst_core.precision import backbone_features, backward, native_bf16, resolve_precision

LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1")


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_features_are_float32_and_close_to_float32_ones(content_64, precision):
    net = vgg.caffe_vgg19()
    ref = backbone_features(net, content_64, LAYERS, "float32", grad=False)
    low = backbone_features(net, content_64, LAYERS, precision, grad=False)
    for layer in LAYERS:
        assert low[layer].dtype == torch.float32 and not low[layer].requires_grad
        rel = (low[layer] - ref[layer]).norm() / ref[layer].norm()
        assert rel < (0.05 if precision == "bf16" else 0.01), (layer, float(rel))


def test_fp16_loss_scaling_gives_the_float32_gradient_without_overflow(content_64):
    net = vgg.caffe_vgg19()
    x = content_64.clone().requires_grad_(True)
    feats = backbone_features(net, x, LAYERS, "float32")
    total = sum(1e3 * f.square().sum() for f in feats.values())  # gradients far beyond fp16's range
    backward(total, x, "float32")
    ref = x.grad.clone()
    x.grad = None
    feats = backbone_features(net, x, LAYERS, "fp16")
    total = sum(1e3 * f.square().sum() for f in feats.values())
    backward(total, x, "fp16")
    assert torch.isfinite(x.grad).all()
    assert (x.grad - ref).norm() / ref.norm() < 0.05


def _run(content, style, registries, precision):
    return stylize(content, style, registries=registries, size=64, steps=15, scales=1, seed=0,
                   precision=precision, device="cpu")


@pytest.fixture(scope="module")
def float32_run(content_64, style_64, builtin_registries):
    return _run(content_64, style_64, builtin_registries, "float32")


@pytest.mark.parametrize("precision", ["bf16", pytest.param("fp16", marks=pytest.mark.slow)])  # fp16 on a CPU: ~10 s
def test_mixed_precision_run_reaches_the_float32_objective(content_64, style_64, builtin_registries, precision,
                                                           float32_run):
    ref, low = float32_run, _run(content_64, style_64, builtin_registries, precision)
    assert low.status == "finished" and low.recoveries == 0
    assert low.loss < 1.15 * ref.loss  # J measured in the run's own precision path
    assert (low.image - ref.image).abs().mean() < 0.05



@pytest.mark.parametrize("precision", ["float32", "bf16", "fp16"])
def test_an_explicit_precision_is_kept(precision):
    assert resolve_precision(precision, torch.device("cpu")) == precision


def test_auto_is_bf16_exactly_where_the_cpu_computes_it_natively():
    assert resolve_precision("auto", torch.device("cpu")) == ("bf16" if native_bf16(torch.device("cpu")) else "float32")


def test_native_bf16_follows_the_cpu_flags():
    """The probe agrees with what the kernel reports for this CPU (Linux only)."""
    try:
        flags = open("/proc/cpuinfo").read().split()
    except OSError:
        pytest.skip("no /proc/cpuinfo")
    assert native_bf16(torch.device("cpu")) == ("amx_bf16" in flags or "avx512_bf16" in flags)


def test_auto_is_the_default_and_the_result_says_what_ran(content_64, style_64, builtin_registries):
    assert StyleConfig().precision == "auto"
    result = stylize(content_64, style_64, registries=builtin_registries, size=48, steps=2, scales=1, seed=0,
                     device="cpu")
    assert result.config.precision == resolve_precision("auto", torch.device("cpu"))
    assert result.record()["config"]["precision"] == result.config.precision


@pytest.mark.parametrize("value", ["fp8", "int8", "", None])
def test_an_unknown_precision_is_refused(value):
    with pytest.raises(ConfigError, match="precision must be auto, float32, bf16 or fp16"):
        StyleConfig(precision=value)
