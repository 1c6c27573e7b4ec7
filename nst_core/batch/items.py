"""What a batch is made of: :class:`BatchItem` in, :class:`ItemEvent` while it runs, :class:`ItemResult` out.

Everything here is plain data and picklable: an item carries its images as encoded bytes (the
files' contents), so it can travel to a worker on another machine (Ray's object store) without a
shared filesystem, and the result carries the encoded output, which the driver writes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
import functools
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Literal

from nst_core.config import StyleConfig, config_to_dict
from nst_core.errors import ConfigError
from nst_core.image import FORMATS, save_bytes, save_text

KEY_FORMAT = "nst-batch-key/1"


@dataclass(frozen=True)
class EncodedImage:
    """An image file's contents (PNG, JPEG, ...) and the name messages use for it (its path)."""

    name: str
    data: bytes = field(repr=False)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> EncodedImage:
        """Read ``path``'s bytes (decoding happens on the worker)."""
        return cls(str(path), Path(path).read_bytes())

    @functools.cached_property
    def digest(self) -> str:
        """sha256 of the bytes, hex."""
        return hashlib.sha256(self.data).hexdigest()


def item_key(digests: Mapping[str, str | None], config: StyleConfig, extension: str) -> str:
    """The identity of a batch item's output: sha256 over the inputs' sha256 (by role:
    ``content``, ``style0``, ``mask0``, ``init``), every setting (the seed too; not the device,
    which the worker chooses) and the output format. Two runs with equal keys compute the same
    picture; the run record keeps the key, so a later batch can skip an output that is already
    there (see :attr:`BatchItem.key`)."""
    settings = {k: v for k, v in config_to_dict(config).items() if k != "device"}
    text = json.dumps({"format": KEY_FORMAT, "inputs": dict(sorted(digests.items())), "config": settings,
                       "extension": extension.lower()}, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def input_digests(content: str | None, styles: Sequence[str | None], masks: Sequence[str | None] | None,
                  init: str | None) -> dict[str, str | None]:
    """The inputs' sha256 by role, as :func:`item_key` and :func:`item_seed` take them: ``content``,
    ``style0``..., ``mask0``... (only with masks; None where a style has no mask), ``init`` (only
    with a starting image). None for a digest that is not known (an unreadable file)."""
    digests: dict[str, str | None] = {"content": content}
    for i, style in enumerate(styles):
        digests[f"style{i}"] = style
    for i, mask in enumerate(masks or ()):
        digests[f"mask{i}"] = mask
    if init is not None:
        digests["init"] = init
    return digests


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, hex, read in chunks (raises OSError)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def item_seed(digests: Mapping[str, str | None]) -> int:
    """A seed in [0, 2**31) from the inputs' sha256: an item without a seed gets the same one in
    every batch, so a rerun repeats (and can skip) it."""
    text = json.dumps(dict(sorted(digests.items())), sort_keys=True)
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16) % 2**31


@dataclass(frozen=True)
class BatchItem:
    """One picture to make: ``content`` with ``styles`` (blended by ``config.style_blend``).

    ``masks`` has one entry per style (None: that style applies everywhere) or is None;
    ``init`` is the starting image when ``config.init == "image"``. ``config.device`` is ignored:
    the worker runs the item on its own device. A config without a seed gets
    :func:`item_seed` of the inputs. ``extension`` is the output format (``.png``, ``.jpg``,
    ...). ``record`` stores the run record (PNG text and the result's ``record``), with
    ``record_extra`` added to it (the CLI adds the input paths) and the item's ``key``.
    """

    id: str
    content: EncodedImage
    styles: tuple[EncodedImage, ...]
    config: StyleConfig
    masks: tuple[EncodedImage | None, ...] | None = None
    init: EncodedImage | None = None
    extension: str = ".png"
    record: bool = True
    record_extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.styles:
            raise ConfigError(f"batch item {self.id!r}: give at least one style image")
        if self.masks is not None and len(self.masks) != len(self.styles):
            raise ConfigError(f"batch item {self.id!r}: {len(self.masks)} mask(s) for {len(self.styles)} style "
                              f"image(s); give one per style (None for the whole image)")
        if self.extension.lower() not in FORMATS:
            raise ConfigError(f"batch item {self.id!r}: unknown output extension {self.extension!r}; use one of "
                              f"{', '.join(sorted(FORMATS))}")
        object.__setattr__(self, "styles", tuple(self.styles))
        if self.masks is not None:
            object.__setattr__(self, "masks", tuple(self.masks))
        if self.config.seed is None:
            object.__setattr__(self, "config", self.config.replace(seed=item_seed(self.digests)))

    @property
    def digests(self) -> dict[str, str | None]:
        """sha256 of every input image, by role (see :func:`item_key`)."""
        return input_digests(self.content.digest, [s.digest for s in self.styles],
                             None if self.masks is None else [None if m is None else m.digest for m in self.masks],
                             None if self.init is None else self.init.digest)

    @functools.cached_property
    def key(self) -> str:
        """:func:`item_key` of this item (inputs, settings with the seed, format)."""
        return item_key(self.digests, self.config, self.extension)


ItemStatus = Literal["done", "failed", "stopped"]


@dataclass(frozen=True)
class ItemResult:
    """How one item ended.

    ``status``: ``done`` (``data`` holds the encoded output), ``stopped`` (the batch was asked to
    stop; ``data`` holds the best image so far, or None when the item had not started a step) or
    ``failed`` (``error`` says why in one line; ``data`` is None). ``record`` is the run record
    stored in the output (None without one), ``seconds`` the wall time on the worker, ``loss`` J
    of the output (NaN when unknown), ``attempts`` how many workers ran it (more than one when a
    worker died), ``worker`` where it ran last, ``notes`` warnings about its inputs or run.
    A :class:`~nst_core.batch.worker.Task` (a video chunk) returns its images in ``frames``
    (encoded, in order) and its own bookkeeping in ``record``; ``data`` stays None.
    """

    id: str
    status: ItemStatus
    data: bytes | None = field(default=None, repr=False)
    extension: str = ".png"
    record: Mapping[str, Any] | None = field(default=None, repr=False)
    seconds: float = 0.0
    loss: float = math.nan
    steps: int = 0
    error: str | None = None
    attempts: int = 1
    worker: str = ""
    notes: tuple[str, ...] = ()
    frames: tuple[bytes, ...] = field(default=(), repr=False)

    @property
    def ok(self) -> bool:
        return self.status == "done"

    def save(self, path: str | os.PathLike) -> Path:
        """Write the output atomically (its extension should be :attr:`extension`) and, with a
        record, the sidecar ``<path>.json``; returns ``path``. Nothing to write is a ConfigError."""
        if self.data is None:
            raise ConfigError(f"batch item {self.id!r} has no image to save ({self.status}: {self.error})")
        path = Path(path)
        if path.suffix.lower() != self.extension.lower():
            raise ConfigError(f"{path}: the item was encoded as {self.extension}; give a path ending in it")
        written = save_bytes(path, self.data)
        if self.record is not None:
            save_text(Path(f"{written}.json"), json.dumps(self.record, indent=2, sort_keys=True) + "\n")
        return written


EventKind = Literal["start", "step", "retry", "frame"]


@dataclass(frozen=True)
class ItemEvent:
    """Progress of one item, for a front-end: ``start`` (on a worker: ``worker``, ``seed``,
    ``sizes``, ``total``), ``step`` (``step`` of ``total``, ``loss`` J before it, ``elapsed``
    seconds; a Ray worker sends at most about two a second per item), ``retry`` (the
    worker died; ``message`` says why and the item goes to another worker) and, from a task that
    makes several images (a video chunk), ``frame`` (``step`` of its ``total`` images are done)."""

    item: str
    kind: EventKind
    worker: str = ""
    step: int = 0
    total: int = 0
    loss: float = math.nan
    elapsed: float = 0.0
    seed: int | None = None
    sizes: tuple[tuple[int, int], ...] = ()
    message: str = ""


def one_line(text: object) -> str:
    """Every run of whitespace made one space."""
    return " ".join(str(text).split())


def failed(item_id: str, error: str, *, extension: str = ".png", attempts: int = 1, worker: str = "",
           seconds: float = 0.0) -> ItemResult:
    """A failed :class:`ItemResult` with a one-line ``error``."""
    return ItemResult(item_id, "failed", extension=extension, error=one_line(error), attempts=attempts,
                      worker=worker, seconds=seconds)


def check_unique(items: Sequence[BatchItem]) -> None:
    """Refuse two items with one id (their results could not be told apart)."""
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise ConfigError(f"two batch items have the id {item.id!r}; give each its own")
        seen.add(item.id)
