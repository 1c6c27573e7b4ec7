"""Source of a throw-away plug-in distribution whose names each break the plug-in contract in one
way (tests/test_plugin_contract_*.py install it with helpers.install_plugin). Not a test module.

Every loss term named ``bad-*`` is an "image" term unless it says otherwise, so runs need no
particular layers; ``tiny`` is a valid backbone (two random convolutions) and ``bad-*``
backbones are it with one thing wrong.
"""

SOURCE = '''
import math

import torch
from torch import nn

from nst_core import Backbone, LayerSchedule, LossTerm, hookimpl
from nst_core.types import MemoryProfile


class Tiny(Backbone):
    layer_names = ("conv1", "relu1", "conv2", "relu2")
    channels = {"conv1": 8, "relu1": 8, "conv2": 16, "relu2": 16}
    default_content_layers = ("relu2",)
    default_style_layers = ("relu1", "relu2")

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 16, 3, padding=1, stride=2)
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=g) * 0.3
        self.train()  # the engine must put it in eval mode

    def forward(self, image, layers):
        out = {}
        x = self.c1(image * 2 - 1)
        out["conv1"] = x
        x = torch.relu(x)
        out["relu1"] = x
        x = self.c2(x)
        out["conv2"] = x
        out["relu2"] = torch.relu(x)
        return {k: v for k, v in out.items() if k in layers}


class ForwardRaises(Tiny):
    def forward(self, image, layers):
        raise RuntimeError("forward exploded")


class MissingLayer(Tiny):
    def forward(self, image, layers):
        out = super().forward(image, layers)
        out.pop("relu2", None)
        return out


class WrongChannels(Tiny):
    channels = {"conv1": 8, "relu1": 8, "conv2": 32, "relu2": 32}


class BadTruncated(Tiny):
    def truncated(self, layers):
        self.layer_names = ("conv1", "relu1")
        return self


class Hungry(Tiny):
    memory_profile = MemoryProfile(10_000_000.0)


class Image(LossTerm):
    role = "image"

    def __init__(self, **params):
        self.params = params

    def value(self, image):
        return (image - 0.5).pow(2).mean()

    def bind(self, targets):
        def loss(image, features, layer_weights):
            return self.value(image)
        return loss


class Shape(Image):
    def value(self, image):
        return (image - 0.5).pow(2).mean(dim=(0, 2, 3))


class PlainFloat(Image):
    def value(self, image):
        return 0.25


class Detached(Image):
    def value(self, image):
        return super().value(image).detach()


class IntTensor(Image):
    def value(self, image):
        return torch.tensor(3, device=image.device)


class NaNAlways(Image):
    def value(self, image):
        return super().value(image) * math.nan


class NaNFromStep3(Image):
    def bind(self, targets):
        calls = [0]

        def loss(image, features, layer_weights):
            calls[0] += 1
            scale = math.nan if calls[0] >= 3 and torch.is_grad_enabled() else 1.0
            return self.value(image) * scale
        return loss


class NaNOnce(Image):
    def bind(self, targets):
        calls = [0]

        def loss(image, features, layer_weights):
            calls[0] += 1
            return self.value(image) * (math.nan if calls[0] == 3 else 1.0)
        return loss


class LossRaises(Image):
    def value(self, image):
        raise KeyError("relu9_9")


class BindRaises(Image):
    def bind(self, targets):
        raise ValueError("cannot bind")


class BindNotCallable(Image):
    def bind(self, targets):
        return 42


class BadRole(Image):
    role = "texture"


class StyleTerm(LossTerm):
    role = "style"

    def bind(self, targets):
        grams = {l: targets.styles[0][l].flatten(2).mean() for l in targets.layers}

        def loss(image, features, layer_weights):
            return sum(layer_weights[l] * (features[l].flatten(2).mean() - g) ** 2 for l, g in grams.items())
        return loss


def factory_raises(**params):
    raise ImportError("no module named 'fancy_weights'")


def not_a_term(**params):
    return object()


def negative(layers, channels, progress):
    return {layer: -1.0 for layer in layers}


def not_finite(layers, channels, progress):
    return {layer: math.inf for layer in layers}


def missing(layers, channels, progress):
    return {layer: 1.0 for layer in layers[1:]}


def schedule_raises(layers, channels, progress):
    raise ZeroDivisionError("division by zero")


def negative_later(layers, channels, progress):
    return {layer: (1.0 if progress < 0.5 else -1.0) for layer in layers}


@hookimpl
def nst_register_backbones(register):
    register("tiny", Tiny, description="two random convolutions")
    register("bad-forward", ForwardRaises)
    register("bad-missing-layer", MissingLayer)
    register("bad-channels", WrongChannels)
    register("bad-not-a-module", lambda: object())
    register("bad-hungry", Hungry)
    register("bad-truncated", BadTruncated)


@hookimpl
def nst_register_loss_terms(register):
    register("ok-image", Image)
    register("ok-style", StyleTerm)
    register("bad-shape", Shape)
    register("bad-float", PlainFloat)
    register("bad-detached", Detached)
    register("bad-int", IntTensor)
    register("bad-nan", NaNAlways)
    register("bad-nan-later", NaNFromStep3)
    register("bad-nan-once", NaNOnce)
    register("bad-raises", LossRaises)
    register("bad-bind", BindRaises)
    register("bad-bind-result", BindNotCallable)
    register("bad-role", BadRole)
    register("bad-factory", factory_raises)
    register("bad-not-a-term", not_a_term)


@hookimpl
def nst_register_layer_schedules(register):
    register("bad-negative", LayerSchedule(negative))
    register("bad-infinite", LayerSchedule(not_finite))
    register("bad-missing", LayerSchedule(missing))
    register("bad-raises", LayerSchedule(schedule_raises))
    register("bad-negative-later", LayerSchedule(negative_later, varies=True))
'''
