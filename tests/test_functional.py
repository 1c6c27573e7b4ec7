"""The pure math of nst_core.functional against values computed by hand, and gradients."""

import pytest
import torch

from nst_core import functional as Fn


def features_1x2x1x2():
    # channel 0 = [1, 2], channel 1 = [3, 4] at two positions (nH = 1, nW = 2, nC = 2)
    return torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])


def test_gram_matrix_by_hand():
    gram = Fn.gram_matrix(features_1x2x1x2())
    assert gram.shape == (1, 2, 2)
    assert torch.equal(gram[0], torch.tensor([[5.0, 11.0], [11.0, 25.0]]))


def test_gram_matrix_normalized_divides_by_positions():
    assert torch.equal(Fn.gram_matrix(features_1x2x1x2(), normalize=True)[0],
                       torch.tensor([[2.5, 5.5], [5.5, 12.5]]))


def test_content_loss_is_half_squared_error():
    generated = torch.tensor([1.0, 2.0, 3.0]).view(1, 1, 1, 3)
    target = torch.zeros(1, 1, 1, 3)
    assert Fn.content_loss(generated, target).item() == pytest.approx(7.0)  # ½ (1 + 4 + 9)
    assert Fn.content_loss(generated, target, normalize=True).item() == pytest.approx(7.0 / 3)  # / nH nW


def test_gram_style_loss_seed_normalisation():
    gram_g = torch.tensor([[5.0, 11.0], [11.0, 25.0]])
    # ‖G(S) − G(G)‖² = 25 + 121 + 121 + 625 = 892; (2 nH nW nC)² = (2·1·2·2)² = 64
    assert Fn.gram_style_loss(gram_g, torch.zeros(2, 2), 1, 2, 2).item() == pytest.approx(892 / 64)


def test_normalised_grams_give_the_seed_value():
    a = torch.randn(1, 3, 4, 5, dtype=torch.float64)
    b = torch.randn(1, 3, 4, 5, dtype=torch.float64)
    seed = Fn.gram_style_loss(Fn.gram_matrix(a), Fn.gram_matrix(b), 4, 5, 3)
    normalised = Fn.gram_style_loss(Fn.gram_matrix(a, normalize=True), Fn.gram_matrix(b, normalize=True), 1, 1, 3)
    assert normalised.item() == pytest.approx(seed.item(), rel=1e-12)


def test_total_variation_by_hand():
    image = torch.tensor([[[[0.0, 1.0], [2.0, 4.0]]]])
    # vertical: (2-0)² + (4-1)² = 13; horizontal: (1-0)² + (4-2)² = 5
    assert Fn.total_variation(image).item() == pytest.approx(18.0)
    assert Fn.total_variation(image, exponent=1).item() == pytest.approx(8.0)
    assert Fn.total_variation(image, normalize=True).item() == pytest.approx(18.0 / 4)


def test_total_variation_of_constant_image_is_zero():
    assert Fn.total_variation(torch.full((1, 3, 5, 7), 0.3)).item() == 0.0


def test_gradcheck_float64():
    g = torch.randn(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    target = torch.randn(1, 2, 3, 3, dtype=torch.float64)
    gram_s = Fn.gram_matrix(torch.randn(1, 2, 3, 3, dtype=torch.float64))
    assert torch.autograd.gradcheck(lambda x: Fn.content_loss(x, target, normalize=True), (g,))
    assert torch.autograd.gradcheck(lambda x: Fn.gram_style_loss(Fn.gram_matrix(x), gram_s, 3, 3, 2), (g,))
    assert torch.autograd.gradcheck(lambda x: Fn.total_variation(x), (g,))


def test_range_penalty_is_zero_inside_and_the_mean_squared_excess_outside():
    assert Fn.range_penalty(torch.rand(1, 3, 8, 8)) == 0
    x = torch.tensor([[-0.5, 0.5], [1.0, 1.25]])
    assert Fn.range_penalty(x).item() == pytest.approx((0.25 + 0.0625) / 4)
