"""Many pictures in one go: a local worker per device, or Ray actors on a cluster.

::

    from nst_core import StyleConfig
    from nst_core.batch import BatchItem, EncodedImage, LocalExecutor, run_batch

    style = EncodedImage.from_file("starry_night.jpg")
    items = [BatchItem(p.stem, EncodedImage.from_file(p), (style,), StyleConfig(size=512, steps=300))
             for p in photos]
    for result in run_batch(items):                  # results as they finish
        if result.ok:
            result.save(f"out/{result.id}.png")     # atomic; the run record in the PNG and out/ID.png.json
        else:
            print(result.id, result.error)

``run_batch(items, RayExecutor(address="auto"))`` runs the same items on a Ray cluster
(``pip install 'nst-core[ray]'``). Items carry their images as bytes, so the workers need no shared
filesystem; the caller reads the inputs and writes the outputs. An item's failure (an
unreadable image, out of memory, a NaN) is its result's ``error``; the others go on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from nst_core.batch.items import (BatchItem, EncodedImage, ItemEvent, ItemResult, check_unique, item_key,
                                  item_seed)
from nst_core.batch.local import Job, LocalExecutor, resolve_devices
from nst_core.batch.worker import Worker

if TYPE_CHECKING:
    from nst_core.batch.ray_executor import RayExecutor


def __getattr__(name: str) -> Any:
    if name == "RayExecutor":  # imported on first use: Ray is an optional extra
        from nst_core.batch.ray_executor import RayExecutor

        return RayExecutor
    raise AttributeError(name)


def run_batch(items: Iterable[Job], executor: LocalExecutor | RayExecutor | None = None, *,
              should_stop: Callable[[], bool] | None = None,
              on_event: Callable[[ItemEvent], None] | None = None) -> Iterator[ItemResult]:
    """Run ``items`` (an iterable, read lazily) on ``executor`` (default: a :class:`LocalExecutor`
    on every GPU, else the CPU) and yield an :class:`ItemResult` per item as each finishes.

    :param should_stop: checked a few times a second; once True no new item starts and the running
        ones end with their best image so far (status ``stopped``).
    :param on_event: called in the caller's thread with each :class:`ItemEvent` (start, steps, retries).
    """
    executor = executor if executor is not None else LocalExecutor()
    yield from executor.run(items, should_stop=should_stop, on_event=on_event)


__all__ = ["BatchItem", "EncodedImage", "ItemEvent", "ItemResult", "Job", "LocalExecutor", "RayExecutor", "Worker",
           "check_unique", "item_key", "item_seed", "resolve_devices", "run_batch"]
