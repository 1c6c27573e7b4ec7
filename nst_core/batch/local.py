"""The local executor: a worker thread per device of this machine, fed from the caller's thread.

The caller's thread pulls items from the iterable (so reading files happens there, one item
ahead of the free workers, never the whole batch), hands each to a free worker and yields
results as they finish; events and results come back through one queue, so ``on_event`` and
the consumer of the iterator both run in the caller's thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
import os
import queue
import threading

import torch

from nst_core.batch.items import BatchItem, ItemEvent, ItemResult, failed
from nst_core.batch.worker import Task, Worker
from nst_core.device import resolve_device
from nst_core.errors import ConfigError
from nst_core.registry import Registries, collect_registries

Job = BatchItem | Task | ItemResult
"""What an executor takes: an item (or a :class:`~nst_core.batch.worker.Task`, a video chunk) to
run, or the result of one the caller could not prepare (an unreadable file), which is passed
through in order."""

POLL_SECONDS = 0.2
"""How often the driver looks at ``should_stop`` while it waits."""


def resolve_devices(devices: str | Sequence[str] = "auto") -> list[str]:
    """``"auto"`` -> every CUDA GPU (``cuda:0`` ...), else ``["cpu"]``; ``"cuda:0,cuda:1"`` or a
    list -> those, each checked (:class:`~nst_core.errors.DeviceError` names a missing one)."""
    if isinstance(devices, str):
        names = [d.strip() for d in devices.split(",") if d.strip()]
    else:
        names = [str(d).strip() for d in devices]
    if not names:
        raise ConfigError("--devices: give auto, cpu, cuda, cuda:N or mps (comma-separated for several)")
    if names == ["auto"]:
        if torch.cuda.is_available():
            return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        return ["cpu"]
    resolved = [str(resolve_device(name)) for name in names]
    duplicates = sorted({d for d in resolved if resolved.count(d) > 1})
    if duplicates:
        raise ConfigError(f"--devices names {', '.join(duplicates)} twice; use --workers for several workers on "
                          f"one device")
    return resolved


def cpu_threads(cpu_workers: int, cores: int | None = None) -> int:
    """Torch threads per CPU worker when ``cpu_workers`` share ``cores`` (default: this machine's)."""
    cores = cores or os.cpu_count() or 1
    return max(1, cores // max(1, cpu_workers))


class LocalExecutor:
    """Runs items on this machine: one :class:`Worker` thread per device (``devices``, see
    :func:`resolve_devices`), or ``workers`` threads spread over them. Workers on the CPU split
    its cores (``torch.set_num_threads``, for the run). The backbone is loaded once per worker.
    """

    shares_filesystem = True
    """The workers see the caller's files (a task may write its results in place)."""

    def __init__(self, devices: str | Sequence[str] = "auto", *, workers: int | None = None,
                 registries: Registries | None = None) -> None:
        self.devices = resolve_devices(devices)
        if workers is not None and workers < 1:
            raise ConfigError(f"--workers must be a whole number >= 1, got {workers}")
        count = workers or len(self.devices)
        self.worker_devices = [self.devices[i % len(self.devices)] for i in range(count)]
        self.registries = registries
        self.loads = 0
        """Backbones built by the last :meth:`run` (one per worker and backbone)."""

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release (threads end with each :meth:`run`)."""

    def describe(self) -> str:
        return f"{len(self.worker_devices)} local worker(s) on {', '.join(self.devices)}"

    def run(self, items: Iterable[Job], *, should_stop: Callable[[], bool] | None = None,
            on_event: Callable[[ItemEvent], None] | None = None) -> Iterator[ItemResult]:
        """Yield an :class:`ItemResult` per item, in the order they finish.

        Once ``should_stop()`` is True (checked every 0.2 s), no item is started and the running
        ones stop at their next step with their best image (status ``stopped``); items never
        started are not yielded. Leaving the loop early stops the running items the same way.
        """
        registries = self.registries if self.registries is not None else collect_registries()
        cpu_workers = sum(1 for d in self.worker_devices if d == "cpu")
        previous_threads = torch.get_num_threads()
        if cpu_workers > 1:
            torch.set_num_threads(cpu_threads(cpu_workers))
        names = self.worker_devices if len(self.worker_devices) == 1 else \
            [f"{device}#{i}" for i, device in enumerate(self.worker_devices)]
        pool = _Threads([Worker(device, registries=registries, name=name)
                         for device, name in zip(self.worker_devices, names)])
        source = iter(items)
        more, running = True, 0
        try:
            while True:
                if not pool.stop.is_set() and should_stop is not None and should_stop():
                    pool.stop.set()
                while pool.idle and more and not pool.stop.is_set():
                    job = next(source, None)
                    if job is None:
                        more = False
                    elif isinstance(job, ItemResult):
                        yield job
                    else:
                        pool.start(job)
                        running += 1
                if running == 0 and (not more or pool.stop.is_set()):
                    return
                message = pool.next_message()
                if isinstance(message, ItemEvent):
                    if on_event is not None:
                        on_event(message)
                elif message is not None:
                    running -= 1
                    yield message
        finally:
            pool.close()
            self.loads = sum(w.loads for w in pool.workers)
            if cpu_workers > 1:
                torch.set_num_threads(previous_threads)


class _Threads:
    """A thread per :class:`Worker`, each with its inbox; events and results come back on one queue."""

    def __init__(self, workers: list[Worker]) -> None:
        self.workers = workers
        self.stop = threading.Event()
        self.messages: queue.Queue = queue.Queue()
        self.inboxes: list[queue.Queue] = [queue.Queue() for _ in workers]
        self.idle = list(range(len(workers)))
        self.threads = [threading.Thread(target=self._serve, args=(i,), name=f"nst-batch-{w.name}", daemon=True)
                        for i, w in enumerate(workers)]
        for thread in self.threads:
            thread.start()

    def _serve(self, index: int) -> None:
        worker, inbox = self.workers[index], self.inboxes[index]
        while (item := inbox.get()) is not None:
            try:
                result = worker.run(item, on_event=self.messages.put, should_stop=self.stop.is_set)
            except BaseException as exc:  # noqa: BLE001 - Worker.run returns failures; this is the last guard
                result = failed(item.id, f"internal error: {type(exc).__name__}: {exc}", extension=item.extension,
                                worker=worker.name)
            self.messages.put((index, result))

    def start(self, item: BatchItem | Task) -> None:
        self.inboxes[self.idle.pop(0)].put(item)

    def next_message(self) -> ItemEvent | ItemResult | None:
        """An event, a result (its worker is idle again), or None after POLL_SECONDS without either."""
        try:
            message = self.messages.get(timeout=POLL_SECONDS)
        except queue.Empty:
            return None
        if isinstance(message, ItemEvent):
            return message
        index, result = message
        self.idle.append(index)
        return result

    def close(self) -> None:
        """Stop the running items (at their next step) and end the threads."""
        self.stop.set()
        for inbox in self.inboxes:
            inbox.put(None)
        for thread in self.threads:
            thread.join()
