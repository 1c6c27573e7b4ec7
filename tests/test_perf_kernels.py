"""Performance changes that must not change the math: the Gram kernel, channels-last, L-BFGS."""

from __future__ import annotations

from collections import deque

import pytest
import torch

from nst_core import functional as Fn
from nst_core.builtins import vgg
from nst_core.optim import PixelLBFGS


def naive_gram(x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    flat = x.reshape(n, c, h * w)
    return flat @ flat.transpose(1, 2)


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("channels_last", [False, True])
def test_gram_values_and_gradients_match_autograd_of_the_formula(batch, channels_last):
    torch.manual_seed(0)
    x = torch.randn(batch, 5, 4, 3, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    weight = torch.randn(batch, 5, 5, dtype=torch.float64)  # not symmetric: tests dG + dGᵀ
    (Fn.gram_matrix(x, normalize=True) * weight).sum().backward()
    ours = x.grad.clone()
    x.grad = None
    (naive_gram(x) / 12 * weight).sum().backward()
    assert torch.allclose(Fn.gram_matrix(x, normalize=True), naive_gram(x) / 12)
    assert torch.allclose(ours, x.grad)
    assert torch.autograd.gradcheck(lambda t: Fn.gram_matrix(t), (x,))
    assert torch.autograd.gradgradcheck(lambda t: Fn.gram_matrix(t), (x,))


def test_gram_gradient_keeps_the_channels_last_layout():
    x = torch.randn(1, 8, 6, 5).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    Fn.gram_matrix(x).sum().backward()
    assert x.grad.is_contiguous(memory_format=torch.channels_last)


def test_channels_last_features_equal_contiguous_features(content_64):
    layers = ["relu1_1", "relu3_1", "relu4_2", "relu5_1"]
    plain = vgg.caffe_vgg19()
    plain.channels_last = False
    fast = vgg.caffe_vgg19()
    fast.channels_last = True
    x = content_64.clone().requires_grad_(True)
    a, b = plain(x, layers), fast(x, layers)
    assert b["relu1_1"].is_contiguous(memory_format=torch.channels_last)
    assert a["relu1_1"].is_contiguous()
    for layer in layers:
        scale = a[layer].abs().max()
        assert (a[layer] - b[layer]).abs().max() <= 1e-5 * scale, layer
    ga, = torch.autograd.grad(sum(f.square().sum() for f in a.values()), x)
    gb, = torch.autograd.grad(sum(f.square().sum() for f in b.values()), x)
    # summation order differs, and a ReLU can flip where a value sits at 0: compare norms
    assert (ga - gb).norm() <= 5e-3 * ga.norm()


def test_auto_layout_is_channels_last_only_for_the_optimised_image_on_cpu(content_64):
    net = vgg.caffe_vgg19()
    assert net.channels_last is None
    assert net.memory_format(content_64) == torch.contiguous_format  # targets, plain use
    assert net.memory_format(content_64.clone().requires_grad_(True)) == torch.channels_last
    with torch.no_grad():
        assert net.memory_format(content_64.clone().requires_grad_(True)) == torch.contiguous_format
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert net.memory_format(content_64) == torch.channels_last


def reference_lbfgs_direction(pairs, g):
    """Nocedal & Wright Algorithm 7.4 with Python floats: the textbook two-loop recursion."""
    q = g.clone()
    alphas = []
    for s, y in reversed(pairs):
        rho = 1.0 / float(y @ s)
        a = rho * float(s @ q)
        q -= a * y
        alphas.append((a, rho))
    s, y = pairs[-1]
    q *= float(s @ y) / float(y @ y)
    for (s, y), (a, rho) in zip(pairs, reversed(alphas)):
        b = rho * float(y @ q)
        q += (a - b) * s
    return -q


def test_lbfgs_matches_the_textbook_two_loop_recursion_step_by_step():
    torch.manual_seed(0)
    n = 50
    a = torch.rand(n, dtype=torch.float64) * 10 + 0.1
    b = torch.randn(n, dtype=torch.float64)
    x = torch.zeros(n, dtype=torch.float64)
    opt = PixelLBFGS(x, history=5)
    pairs: deque = deque(maxlen=5)
    prev_x = prev_g = None
    for _ in range(12):
        g = a * x - b
        if prev_g is not None:
            pairs.append((x - prev_x, g - prev_g))
            expected = x + reference_lbfgs_direction(list(pairs), g)
        else:
            expected = x - g * (opt.first_step / g.abs().max())
        prev_x, prev_g = x.clone(), g.clone()
        opt.step(g)
        assert torch.allclose(x, expected, rtol=1e-7, atol=1e-9)
    assert float(0.5 * (a * x * x).sum() - (b * x).sum()) < -0.5 * float((b * b / a).sum()) * 0.99


def test_lbfgs_continued_from_the_last_move_steps_like_the_original_with_one_pair():
    """A fresh optimiser given ``last_move()`` of one that kept a single pair takes the same steps
    (what a resumed run does), and a fresh one without it starts again with a small gradient step."""
    torch.manual_seed(0)
    n = 30
    a = torch.rand(n, dtype=torch.float64) * 10 + 0.1
    b = torch.randn(n, dtype=torch.float64)
    x = torch.zeros(n, dtype=torch.float64)
    original = PixelLBFGS(x, history=1)
    for _ in range(5):
        original.step(a * x - b)
    y = x.clone()
    continued = PixelLBFGS(y, history=1)
    continued.continue_from(*original.last_move())
    restarted_x = x.clone()
    restarted = PixelLBFGS(restarted_x, history=1)
    for _ in range(4):
        original.step(a * x - b)
        continued.step(a * y - b)
        assert torch.allclose(x, y, rtol=1e-9, atol=1e-12)
    restarted.step(a * restarted_x - b)
    assert not torch.allclose(restarted_x, x)
    with pytest.raises(ValueError, match="30 elements"):
        continued.continue_from(torch.zeros(3), torch.zeros(3))


def test_lbfgs_pair_without_curvature_is_ignored():
    x = torch.zeros(4, dtype=torch.float64)
    opt = PixelLBFGS(x, history=3)
    opt.step(torch.tensor([1.0, 0, 0, 0], dtype=torch.float64))  # gradient step
    before = x.clone()
    opt.step(torch.tensor([2.0, 0, 0, 0], dtype=torch.float64))  # yᵀs < 0: rejected
    assert float(opt._gamma) == 0.0 and opt.pairs_stored == 1
    # with no accepted pair the step is again a scaled gradient step
    assert torch.allclose(x, before - torch.tensor([opt.first_step, 0, 0, 0], dtype=torch.float64))


@pytest.mark.parametrize("history", [3, 20])
def test_lbfgs_masks_pairs_without_curvature_and_keeps_the_rest(history):
    """Arbitrary gradients (some pairs with yᵀs <= 0): each step must equal the textbook direction
    built from the accepted pairs among the last ``history`` slots."""
    torch.manual_seed(1)
    n = 30
    x = torch.zeros(n, dtype=torch.float64)
    opt = PixelLBFGS(x, history=history)
    slots: deque = deque(maxlen=history)  # (s, y, accepted)
    prev_x = prev_g = None
    rejected = 0
    for step in range(16):
        g = torch.randn(n, dtype=torch.float64) + 0.5 * x
        if step % 4 == 3:  # negative curvature along the last step: yᵀs < 0
            g = prev_g - 3.0 * (x - prev_x)
        if prev_g is None:
            expected = x - g * (opt.first_step / g.abs().max())
        else:
            s, y = x - prev_x, g - prev_g
            accepted = float(y @ s) > 1e-10 * float(y.norm() * s.norm())
            rejected += not accepted
            slots.append((s, y, accepted))
            good = [(s, y) for s, y, ok in slots if ok]
            if good:
                expected = x + reference_lbfgs_direction(good, g)
            else:
                expected = x - g * (opt.first_step / g.abs().max())
        # (γ comes from the newest accepted pair even after it left the window; this sequence
        # always keeps one in the window, so the textbook reference applies throughout)
        assert prev_g is None or any(ok for *_, ok in slots)
        prev_x, prev_g = x.clone(), g.clone()
        opt.step(g)
        assert torch.allclose(x, expected, rtol=1e-7, atol=1e-9)
    assert rejected > 0


@pytest.mark.parametrize("channels_last", [False, True])
def test_bf16_gram_accumulates_in_float32_in_chunks(monkeypatch, channels_last):
    monkeypatch.setattr(Fn, "_GRAM_CHUNK", 7)  # several chunks, the last one short
    torch.manual_seed(0)
    x = torch.randn(1, 6, 5, 4).to(torch.bfloat16)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    ref = x.detach().float().requires_grad_(True)
    weight = torch.randn(1, 6, 6)
    gram = Fn.gram_matrix(x, normalize=True)
    assert gram.dtype == torch.float32
    assert torch.allclose(gram, Fn.gram_matrix(ref, normalize=True), atol=1e-5)  # same inputs, float32 sums
    (gram * weight).sum().backward()
    (Fn.gram_matrix(ref, normalize=True) * weight).sum().backward()
    assert x.grad.dtype == torch.bfloat16
    assert x.grad.stride() == x.stride()
    assert (x.grad.float() - ref.grad).norm() <= 1e-2 * ref.grad.norm()  # bf16 rounding of the result only


def test_lbfgs_buffer_slots_not_yet_used_are_zero():
    """Every step multiplies the whole buffer; an unused slot holding garbage (NaN) would poison it."""
    x = torch.zeros(10, dtype=torch.float64)
    opt = PixelLBFGS(x, history=50)
    for k in range(6):
        opt.step(torch.linspace(-1, 1, 10, dtype=torch.float64) * (k + 1) + x)
    assert opt.pairs_stored == 5 and opt._buffer.shape[1] > 5
    assert torch.count_nonzero(opt._buffer[:, 5:]) == 0
    assert torch.isfinite(x).all()
