"""A run's images: read once, colour-handled, and turned back into the output at the end.

Everything here is on the CPU at the images' own resolution; the engine resizes per scale.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
import functools

import torch
from torch import Tensor

from nst_core.color import luminance_image, match_color, match_luminance, with_chroma_of
from nst_core.config import StyleConfig
from nst_core.errors import ConfigError
from nst_core.image import ImageSource, LoadedImage, read_image, resize
from nst_core.resume import inputs_fingerprint


@dataclass
class RunInputs:
    """The images of a run, read once at full resolution on the CPU, after colour handling."""

    content: Tensor
    """What the run sees: ``(1, 3, H, W)`` in [0, 1], grey in luminance mode."""
    original: LoadedImage
    """The content as read (its colours and alpha)."""
    styles: list[Tensor]
    """``(1, 3, Hs, Ws)`` each, recoloured / grey as the colour mode says."""
    masks: list[Tensor | None]
    """``(1, 1, H, W)`` in [0, 1] per style, or None: everywhere."""
    blend: tuple[float, ...]
    """Style blend weights, summing to 1."""
    init: Tensor | None
    """The starting image ``(1, 3, Hi, Wi)`` for ``init="image"``, else None."""
    notes: list[str]
    guides: dict[str, Tensor] = field(default_factory=dict)
    """Extra per-run tensors for loss terms, ``(1, C, Hg, Wg)`` float32 each (see
    :attr:`nst_core.types.Targets.guides`)."""
    read: tuple[Sequence[LoadedImage], Sequence[LoadedImage | None], LoadedImage | None] = ((), (), None)
    """The styles, masks and init image as read (for :attr:`fingerprint`)."""

    @functools.cached_property
    def fingerprint(self) -> dict[str, str]:
        """sha256 of each image as read, by name (:func:`nst_core.resume.inputs_fingerprint`)."""
        return inputs_fingerprint(self.original, *self.read)


def as_sources(styles: ImageSource | Sequence[ImageSource]) -> list[ImageSource]:
    """One style source or a non-empty list of them, as a list."""
    if isinstance(styles, (list, tuple)):
        if not styles:
            raise ConfigError("at least one style image is needed")
        return list(styles)
    return [styles]  # type: ignore[list-item]  # one source: not a list or tuple


def mask_tensor(loaded: LoadedImage, height: int, width: int) -> Tensor:
    """A mask image -> ``(1, 1, height, width)`` in [0, 1]: its alpha if it has one, else its grey."""
    mask = loaded.alpha if loaded.alpha is not None else loaded.rgb.mean(dim=1, keepdim=True)
    return resize(mask, height, width)


def check_guides(guides: Mapping[str, Tensor] | None) -> dict[str, Tensor]:
    """Guides as ``{name: (1, C, H, W) float32 on the CPU}``; anything else is a ConfigError."""
    checked: dict[str, Tensor] = {}
    for name, tensor in (guides or {}).items():
        if not isinstance(name, str) or not name:
            raise ConfigError(f"guide names must be non-empty strings, got {name!r}")
        if not isinstance(tensor, Tensor) or tensor.dim() != 4 or tensor.shape[0] != 1 or 0 in tensor.shape:
            shape = tuple(tensor.shape) if isinstance(tensor, Tensor) else type(tensor).__name__
            raise ConfigError(f"guide {name!r} must be a (1, C, H, W) tensor, got {shape}")
        tensor = tensor.detach().to("cpu", torch.float32)
        if not torch.isfinite(tensor).all():
            raise ConfigError(f"guide {name!r} contains NaN or infinite values")
        checked[name] = tensor
    return checked


def prepare_inputs(content: ImageSource, styles: ImageSource | Sequence[ImageSource],
                   style_masks: Sequence[ImageSource | None] | None, init_image: ImageSource | None,
                   config: StyleConfig, guides: Mapping[str, Tensor] | None = None) -> RunInputs:
    """Read every image of a run and apply the colour mode (``config.preserve_color``)."""
    original = read_image(content)
    style_imgs = [read_image(s) for s in as_sources(styles)]
    blend = config.style_blend or tuple(1.0 for _ in style_imgs)
    if len(blend) != len(style_imgs):
        raise ConfigError(f"style_blend has {len(blend)} weight(s) but there are {len(style_imgs)} style image(s)")
    blend = tuple(w / sum(blend) for w in blend)
    height, width = original.rgb.shape[-2:]
    masks: list[Tensor | None] = [None] * len(style_imgs)
    mask_imgs: list[LoadedImage | None] = [None] * len(style_imgs)
    if style_masks is not None:
        if len(style_masks) != len(style_imgs):
            raise ConfigError(f"{len(style_masks)} style mask(s) given for {len(style_imgs)} style image(s); "
                              f"give one per style (None for the whole image)")
        mask_imgs = [None if m is None else read_image(m) for m in style_masks]
        masks = [None if m is None else mask_tensor(m, height, width) for m in mask_imgs]
    content_rgb = original.rgb
    style_rgbs = [s.rgb for s in style_imgs]
    if config.preserve_color == "histogram":
        style_rgbs = [match_color(s, content_rgb) for s in style_rgbs]
    elif config.preserve_color == "luminance":
        style_rgbs = [match_luminance(s, content_rgb) for s in style_rgbs]
        content_rgb = luminance_image(content_rgb)
    init_img = read_image(init_image) if init_image is not None else None
    init = init_img.rgb if init_img is not None else None
    notes = [*original.notes, *(n for s in style_imgs for n in s.notes)]
    return RunInputs(content_rgb, original, style_rgbs, masks, blend, init, notes, check_guides(guides),
                     (style_imgs, mask_imgs, init_img))


def initial_image(config: StyleConfig, content: Tensor, init_image: Tensor | None,
                  generator: torch.Generator) -> Tensor:
    """The first scale's starting image at the size of ``content`` ``(1, 3, h, w)``."""
    if config.init == "content":
        return content.clone()
    if config.init == "gray":
        return torch.full_like(content, 0.5)
    if config.init == "noise":
        noise = torch.rand(content.shape, generator=generator, dtype=torch.float32)
        return noise.to(content.device)
    if init_image is None:
        raise ConfigError("init='image' needs an init_image")
    return resize(init_image.to(content.device), *content.shape[-2:])


def finish_image(x: Tensor, inputs: RunInputs, config: StyleConfig, out_h: int, out_w: int) -> Tensor:
    """The last iterate at the output size, with the content's colours back in luminance mode and,
    with masks, the content kept outside them (soft edges blend)."""
    image = resize(x.detach().to("cpu", torch.float32).clamp(0, 1), out_h, out_w)
    original = resize(inputs.original.rgb, out_h, out_w)
    if config.preserve_color == "luminance":
        image = with_chroma_of(image, original)
    if any(m is not None for m in inputs.masks):
        region = torch.stack([resize(m, out_h, out_w) if m is not None else torch.ones(1, 1, out_h, out_w)
                              for m in inputs.masks]).sum(dim=0).clamp(0, 1)
        image = original + region * (image - original)
    return image
