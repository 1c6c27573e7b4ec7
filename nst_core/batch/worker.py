"""A :class:`Worker` runs batch items on one device, loading the backbone once for all of them.

Both executors use it: the local one in a thread per device, the Ray one inside each actor.
"""

from __future__ import annotations

from collections.abc import Callable
import math
from pathlib import Path
import tempfile
import time
from typing import Protocol

import torch
from torch import Tensor

import nst_core
from nst_core.batch.items import BatchItem, EncodedImage, ItemEvent, ItemResult, ItemStatus, failed, one_line
from nst_core.config import StyleConfig
from nst_core.errors import NSTError
from nst_core.image import LoadedImage
from nst_core.planning import Model
from nst_core.progress import Progress
from nst_core.registry import Registries, collect_registries

EventSink = Callable[[ItemEvent], None]


class Task(Protocol):
    """A job of another kind than one picture (a video chunk, :class:`nst_core.video.ChunkJob`),
    scheduled by the executors like a :class:`BatchItem`: they read its ``id`` and ``extension``
    (for the failed results they make), move it to a worker (pickled, for Ray) and the worker calls
    :meth:`run` with itself, so the task runs on the worker's device with the worker's loaded
    backbone (:meth:`Worker.model`). ``run`` returns the task's :class:`ItemResult` (its
    ``frames`` and ``record`` carry what it made) and may raise: the worker turns an exception into
    a failed result."""

    @property
    def id(self) -> str: ...

    @property
    def extension(self) -> str: ...

    def run(self, worker: Worker, emit: EventSink, should_stop: Callable[[], bool] | None,
            attempts: int) -> ItemResult: ...


def decode(image: EncodedImage) -> tuple[Tensor, tuple[str, ...]]:
    """Decode an image's bytes (the same safe decoder as files; errors name ``image.name``) into
    a ``(1, 3, H, W)`` sRGB tensor in [0, 1], or ``(1, 4, H, W)`` with its alpha, and its notes."""
    loaded: LoadedImage = nst_core.read_image(image.data, label=image.name)
    rgb = loaded.rgb if loaded.alpha is None else torch.cat([loaded.rgb, loaded.alpha], dim=1)
    return rgb, loaded.notes


class Worker:
    """Runs :class:`BatchItem` (and :class:`Task`) objects one after another on ``device``
    (``"cpu"``, ``"cuda:0"``, ``"auto"`` ...), reusing one :class:`nst_core.Model` per backbone (weights loaded once).

    ``threads`` sets torch's CPU threads for this process (``torch.set_num_threads``; None leaves
    them). ``event_interval`` thins ``step`` events to at most one per that many seconds (the last
    step of an item always comes). Not thread-safe: one worker per thread.
    """

    def __init__(self, device: str = "auto", *, registries: Registries | None = None, threads: int | None = None,
                 event_interval: float = 0.0, name: str | None = None) -> None:
        if threads is not None:
            torch.set_num_threads(max(1, int(threads)))
        self.device = str(nst_core.resolve_device(device))
        self.name = name or self.device
        self.registries = registries if registries is not None else collect_registries()
        self.event_interval = event_interval
        self._models: dict[tuple[str, str], Model] = {}
        self.loads = 0
        """How many times a backbone was built (1 for a batch with one backbone)."""

    def model(self, config: StyleConfig) -> Model:
        """The backbone and loss terms for ``config`` on this worker's device, built on first use
        and kept for every later item with the same backbone and pooling."""
        config = config.replace(device=self.device)
        key = (config.backbone, config.pooling)
        model = self._models.get(key)
        if model is None:
            model = self._models[key] = nst_core.load_model(config, registries=self.registries)
            self.loads += 1
        return model

    def run(self, item: BatchItem | Task, *, on_event: EventSink | None = None,
            should_stop: Callable[[], bool] | None = None, attempts: int = 1) -> ItemResult:
        """Run ``item`` (a task: its own :meth:`Task.run`); every failure (a bad image, an unknown
        name, out of memory, a bug) comes back as a ``failed`` result with one line, never as an
        exception."""
        started = time.perf_counter()
        emit = on_event or (lambda event: None)
        try:
            if should_stop is not None and should_stop():
                return ItemResult(item.id, "stopped", extension=item.extension, attempts=attempts, worker=self.name,
                                  error="stopped before it started")
            if not isinstance(item, BatchItem):
                return item.run(self, emit, should_stop, attempts)
            return self._run(item, emit, should_stop, attempts, started)
        except NSTError as exc:
            return failed(item.id, str(exc), extension=item.extension, attempts=attempts, worker=self.name,
                          seconds=time.perf_counter() - started)
        except Exception as exc:  # noqa: BLE001 - a bug in one item must not end the batch
            return failed(item.id, f"internal error (a bug: please report it): {type(exc).__name__}: {exc}",
                          extension=item.extension, attempts=attempts, worker=self.name,
                          seconds=time.perf_counter() - started)

    def _run(self, item: BatchItem, emit: EventSink, should_stop: Callable[[], bool] | None, attempts: int,
             started: float) -> ItemResult:
        content, notes = decode(item.content)
        styles = []
        for style in item.styles:
            tensor, more = decode(style)
            styles.append(tensor)
            notes += more
        masks = None
        if item.masks is not None:
            masks = [None if mask is None else decode(mask)[0] for mask in item.masks]
        init = decode(item.init)[0][:, :3] if item.init is not None else None
        config = item.config.replace(device=self.device)
        model = self.model(config)
        plan = nst_core.plan(content, styles, config, registries=self.registries, model=model, init_image=init,
                             style_masks=masks)
        if plan.model is not model:  # the config needed deeper layers: keep the bigger model
            self._models[(config.backbone, config.pooling)] = plan.model
            self.loads += 1
        emit(ItemEvent(item.id, "start", worker=self.name, total=plan.total_steps, seed=plan.seed, sizes=plan.sizes))
        last = [-math.inf]

        def on_progress(progress: Progress) -> None:
            now = time.perf_counter()
            if progress.step == progress.total or now - last[0] >= self.event_interval:
                last[0] = now
                emit(ItemEvent(item.id, "step", worker=self.name, step=progress.step, total=progress.total,
                               loss=progress.loss, elapsed=progress.elapsed))

        result = nst_core.run(plan, on_progress=on_progress, should_stop=should_stop)
        notes += tuple(n for n in result.notes if n not in notes)
        seconds = time.perf_counter() - started
        if result.status == "non-finite":
            return failed(item.id, result.message, extension=item.extension, attempts=attempts, worker=self.name,
                          seconds=seconds)
        record = result.record(**item.record_extra, batch={"item": item.id, "key": item.key}) if item.record \
            else None
        with tempfile.TemporaryDirectory(prefix="nst-batch-") as directory:
            path = Path(directory) / f"out{item.extension}"
            result.save(path, record=record or False)
            data = path.read_bytes()
        status: ItemStatus = "done" if result.status == "finished" else "stopped"
        return ItemResult(item.id, status, data=data, extension=item.extension, record=record, seconds=seconds,
                          loss=result.loss, steps=result.steps, attempts=attempts, worker=self.name,
                          notes=tuple(dict.fromkeys(one_line(n) for n in notes)),
                          error=None if status == "done" else one_line(result.message))
