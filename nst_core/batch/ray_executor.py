"""The Ray executor: :class:`~nst_core.batch.Worker` inside Ray actors, fed by a queue in the caller.

Ray Core actors with a driver-side queue (not Ray Data: it brings pandas and pyarrow, about
430 MiB of helper actors and was 2.5x slower on small jobs here; an actor keeps the backbone
loaded across items, which Ray's GPU tasks would not). One actor per GPU (``num_gpus=1``), else
one per ``cpus_per_worker`` CPU cores. The caller's process reads the inputs and writes the
outputs; items and results travel through Ray's object store as bytes, so no node needs a
shared filesystem.

Faults: actors restart forever (``max_restarts=-1``) but a call is never retried by Ray
(``max_task_retries=0``): when a worker or its node dies, the driver puts the item back at the
front of its queue for the next free actor (``retry`` event) until it ran ``max_attempts``
times, then it fails with the reason. A lost actor is pinged with backoff (0.5 s doubling to
8 s) until it is back; one that is dead for good (``ActorDiedError`` on a ping) is replaced by a
new actor, at most as many times as there are workers. An actor gets items only once it
answered a ping (it is placed and has loaded nst_core). When no actor has been available for
``stall_timeout`` seconds (default 5 minutes: a cluster without the resources asked for, or one
that lost its nodes), the remaining items fail with the reason instead of waiting forever.

Progress and stop: workers push their events (at most two a second per item) to a small
``_Progress`` actor on the driver's node, whose answer tells them when to stop.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
import logging
import os
import time
import uuid
from typing import Any

from nst_core.batch.items import BatchItem, ItemEvent, ItemResult, failed, one_line
from nst_core.batch.local import Job
from nst_core.batch.worker import Task, Worker
from nst_core.errors import NSTError

INSTALL = "pip install 'nst-core[ray]'"
EVENT_INTERVAL = 0.5
"""Seconds between a worker's progress pushes (and its checks for a stop)."""
POLL_SECONDS = 0.2
NAMESPACE = "nst-batch"


class RayUnavailableError(NSTError):
    """Ray is not installed, or the cluster cannot be reached."""


def import_ray() -> Any:
    """``ray``, or a one-line :class:`RayUnavailableError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise RayUnavailableError(f"running on Ray needs the ray package, which is not installed; {INSTALL}") \
            from None
    return ray


class _Progress:
    """The events workers push, until the driver takes them; and the stop flag (a Ray actor)."""

    def __init__(self) -> None:
        self.events: list[ItemEvent] = []
        self.stopping = False

    def put(self, events: list[ItemEvent]) -> bool:
        self.events.extend(events)
        return self.stopping

    def take(self) -> list[ItemEvent]:
        events, self.events = self.events, []
        return events

    def stop(self) -> None:
        self.stopping = True

    def reset(self) -> None:
        self.events, self.stopping = [], False


class RayWorker:
    """A :class:`Worker` as a Ray actor (this class is wrapped by ``ray.remote`` at run time, and
    lives in nst_core so every node can import it)."""

    def __init__(self, device: str, threads: int | None, progress: str) -> None:
        import ray

        self._ray = ray
        name = f"ray {ray.util.get_node_ip_address()} pid {os.getpid()}"
        self.worker = Worker(device, threads=threads, event_interval=EVENT_INTERVAL, name=name)
        self.progress_name = progress
        """The progress actor's name (looked up, so that a restarted actor has only plain arguments)."""

    def ready(self) -> str:
        return self.worker.name

    def run(self, item: BatchItem | Task, attempts: int) -> ItemResult:
        buffer: list[ItemEvent] = []
        stop, pushed = [False], [0.0]

        def push() -> None:
            events = list(buffer)
            buffer.clear()
            pushed[0] = time.monotonic()
            try:
                progress = self._ray.get_actor(self.progress_name, namespace=NAMESPACE)
                stop[0] = bool(self._ray.get(progress.put.remote(events), timeout=30))
            except Exception:  # noqa: BLE001 - progress is best effort; the item goes on
                pass

        def on_event(event: ItemEvent) -> None:
            buffer.append(event)
            if event.kind == "start" or time.monotonic() - pushed[0] >= EVENT_INTERVAL:
                push()

        def should_stop() -> bool:
            if time.monotonic() - pushed[0] >= EVENT_INTERVAL:
                push()
            return stop[0]

        result = self.worker.run(item, on_event=on_event, should_stop=should_stop, attempts=attempts)
        if buffer:
            push()
        return result


class RayExecutor:
    """Runs items on Ray actors.

    :param address: None: join ``RAY_ADDRESS`` if set, else start a Ray on this machine
        (``address="local"``, stopped again by :meth:`close`); ``"auto"``, ``HOST:PORT`` or
        ``ray://HOST:10001``: join that cluster. An already connected Ray (``ray.init`` in a
        notebook) is used as it is.
    :param workers: how many actors (default: one per GPU of the cluster, else one per
        ``cpus_per_worker`` CPUs).
    :param devices: ``"cpu"`` keeps the actors on CPUs even where the cluster has GPUs.
    :param max_attempts: times an item is given to a worker before it fails (workers that die).
    :param stall_timeout: seconds without any live worker before the remaining items fail.
    """

    shares_filesystem = False
    """The workers may be on other machines: items and results travel as bytes."""

    def __init__(self, address: str | None = None, *, workers: int | None = None, cpus_per_worker: int = 1,
                 devices: str = "auto", max_attempts: int = 3, stall_timeout: float = 300.0,
                 init_options: dict[str, Any] | None = None) -> None:
        self.ray = import_ray()
        if workers is not None and workers < 1:
            raise RayUnavailableError(f"--workers must be a whole number >= 1, got {workers}")
        if cpus_per_worker < 1:
            raise RayUnavailableError(f"--cpus-per-worker must be a whole number >= 1, got {cpus_per_worker}")
        self.address, self.workers, self.cpus_per_worker = address, workers, cpus_per_worker
        self.devices, self.max_attempts, self.stall_timeout = devices, max_attempts, stall_timeout
        self.init_options = init_options or {}
        self._started = False
        self._actors: list[Any] = []
        self._progress: Any = None
        self._describe = "Ray (not connected yet)"
        self._connect()
        try:
            self._start_actors()
        except Exception:
            self.close()
            raise

    # --- cluster and actors ---------------------------------------------------------------------

    def _connect(self) -> None:
        ray = self.ray
        if ray.is_initialized():
            return
        address = self.address or os.environ.get("RAY_ADDRESS")
        options = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING,
                   **self.init_options}
        try:
            if address is None:
                ray.init(address="local", **options)
                self._started = True
            else:
                ray.init(address=address, **options)
        except Exception as exc:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ValueError ...
            where = f"the Ray cluster at {address}" if address else "a local Ray"
            raise RayUnavailableError(f"could not start or join {where}: {one_line(exc)} (is `ray start --head` "
                                      f"running there, and RAY_AUTH_TOKEN set when it uses tokens?)") from None

    def _plan_actors(self) -> tuple[int, dict[str, Any], str, int | None]:
        resources = self.ray.cluster_resources()
        gpus = int(resources.get("GPU", 0)) if self.devices != "cpu" else 0
        if gpus:
            return self.workers or gpus, {"num_gpus": 1, "num_cpus": 1}, "cuda", None
        cpus = int(resources.get("CPU", 1))
        count = self.workers or max(1, cpus // self.cpus_per_worker)
        return count, {"num_cpus": self.cpus_per_worker}, "cpu", self.cpus_per_worker

    def _start_actors(self) -> None:
        ray = self.ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        if self._progress is None:
            here: Any
            try:
                here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
            except Exception:  # noqa: BLE001 - Ray Client has no local node
                here = "DEFAULT"
            self._progress_name = f"progress-{uuid.uuid4().hex}"
            self._progress = ray.remote(num_cpus=0, max_restarts=-1)(_Progress).options(
                scheduling_strategy=here, name=self._progress_name, namespace=NAMESPACE).remote()
        count, resources, device, threads = self._plan_actors()
        self._actor_class = ray.remote(max_restarts=-1, max_task_retries=0, **resources)(RayWorker)
        self._actor_args = (device, threads, self._progress_name)
        self._actors = [self._actor_class.remote(*self._actor_args) for _ in range(count)]
        per = "1 GPU" if "num_gpus" in resources else f"{resources['num_cpus']} CPU"
        self._describe = f"{count} Ray actor(s) ({per} each)"

    def _replace_actor(self) -> Any:
        """A new actor in place of one that is dead for good."""
        actor = self._actor_class.remote(*self._actor_args)
        self._actors.append(actor)
        return actor

    def describe(self) -> str:
        return self._describe

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """End the actors (and the Ray this executor started)."""
        ray = self.ray
        for actor in [*self._actors, *([self._progress] if self._progress is not None else [])]:
            try:
                ray.kill(actor)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self._actors, self._progress = [], None
        if self._started and ray.is_initialized():
            ray.shutdown()
            self._started = False

    # --- the queue ------------------------------------------------------------------------------

    def run(self, items: Iterable[Job], *, should_stop: Callable[[], bool] | None = None,
            on_event: Callable[[ItemEvent], None] | None = None) -> Iterator[ItemResult]:
        """Yield an :class:`ItemResult` per item, as each finishes (see :func:`nst_core.batch.run_batch`)."""
        if not self._actors:
            self._start_actors()
        self.ray.get(self._progress.reset.remote())
        queue = _Queue(self, iter(items), on_event or (lambda event: None))
        try:
            while True:
                if not queue.stopping and should_stop is not None and should_stop():
                    queue.stop()
                yield from queue.dispatch()
                queue.ping_due()
                if queue.finished():
                    return
                if queue.stalled():
                    yield from queue.fail_the_rest()
                    return
                yield from queue.wait()
        finally:
            if queue.inflight or queue.pending:
                queue.stop()


class _Queue:
    """The driver's side of one :meth:`RayExecutor.run`: items waiting, in flight and retried,
    actors idle, pinged or waiting for their next ping."""

    def __init__(self, executor: RayExecutor, source: Iterator[Job], emit: Callable[[ItemEvent], None]) -> None:
        from ray.exceptions import ActorDiedError, RayActorError, RayError

        self.ActorDiedError, self.RayActorError, self.RayError = ActorDiedError, RayActorError, RayError
        self.executor, self.ray, self.source, self.emit = executor, executor.ray, source, emit
        self.idle: deque[Any] = deque()
        self.pending: deque[tuple[BatchItem | Task, int]] = deque()
        self.inflight: dict[Any, tuple[Any, BatchItem | Task, int]] = {}
        self.pings: dict[Any, tuple[Any, float]] = {}
        # actor -> (when to ping it, the next delay); an actor gets items once its ping answered, so
        # one that cannot be placed (resources the cluster does not have) holds no item forever
        self.wake: dict[Any, tuple[float, float]] = {actor: (0.0, 0.5) for actor in executor._actors}
        self.done: set[str] = set()
        self.replacements, self.live_since, self.last_error = 0, time.monotonic(), ""
        self.max_replacements = len(executor._actors)
        self.more, self.stopping = True, False

    def stop(self) -> None:
        self.stopping = True
        try:
            self.executor._progress.stop.remote()
        except self.RayError:
            pass

    def _next(self) -> tuple[BatchItem | Task, int] | ItemResult | None:
        """The next item to run (a retried one first), a result to pass on, or None: no more."""
        if self.pending:
            return self.pending.popleft()
        while self.more:
            try:
                job = next(self.source)
            except StopIteration:
                self.more = False
                break
            return job if isinstance(job, ItemResult) else (job, 1)
        return None

    def dispatch(self) -> Iterator[ItemResult]:
        """Give an item to every idle actor."""
        while self.idle and not self.stopping:
            job = self._next()
            if job is None:
                return
            if isinstance(job, ItemResult):
                yield job
                continue
            item, attempts = job
            actor = self.idle.popleft()
            self.inflight[actor.run.remote(item, attempts)] = (actor, item, attempts)

    def ping_due(self) -> None:
        now = time.monotonic()
        for actor, (when, delay) in list(self.wake.items()):
            if now >= when:
                del self.wake[actor]
                self.pings[actor.ready.remote()] = (actor, delay)

    def schedule_ping(self, actor: Any, delay: float) -> None:
        self.wake[actor] = (time.monotonic() + delay, min(delay * 2, 8.0))

    def finished(self) -> bool:
        return not self.inflight and (self.stopping or (not self.pending and not self.more))

    def stalled(self) -> bool:
        """No actor working or free for ``stall_timeout`` s, or none left at all."""
        now = time.monotonic()
        if self.inflight or self.idle:
            self.live_since = now
            return False
        return now - self.live_since > self.executor.stall_timeout or not (self.pings or self.wake)

    def fail_the_rest(self) -> Iterator[ItemResult]:
        if self.pings or self.wake:
            reason = f"no Ray worker was available for {self.executor.stall_timeout:.0f} s"
        else:
            reason = "every Ray worker died and could not be replaced"
        reason += f" (last error: {self.last_error})" if self.last_error else " (the cluster lost its nodes?)"
        for item, attempts in self.pending:
            yield failed(item.id, reason, extension=item.extension, attempts=attempts)
        self.pending.clear()
        for job in self.source:
            yield job if isinstance(job, ItemResult) else failed(job.id, reason, extension=job.extension)

    def wait(self) -> Iterator[ItemResult]:
        """Wait up to POLL_SECONDS for a result or a ping; pass on progress events."""
        ready, _ = self.ray.wait([*self.inflight, *self.pings], num_returns=1, timeout=POLL_SECONDS)
        self._drain()
        for ref in ready:
            if ref in self.pings:
                self._pinged(ref)
            else:
                yield from self._returned(ref)

    def _drain(self) -> None:
        try:
            events = self.ray.get(self.executor._progress.take.remote(), timeout=10)
        except self.RayError:
            return
        for event in events:
            if event.item not in self.done:
                self.emit(event)

    def _pinged(self, ref: Any) -> None:
        actor, delay = self.pings.pop(ref)
        try:
            self.ray.get(ref)
        except self.ActorDiedError as exc:  # dead for good: a new actor takes its place
            self.last_error = one_line(exc)[:300]
            if self.replacements < self.max_replacements:
                self.replacements += 1
                self.schedule_ping(self.executor._replace_actor(), 0.5)
        except self.RayActorError:
            self.schedule_ping(actor, delay)
        else:
            self.idle.append(actor)

    def _returned(self, ref: Any) -> Iterator[ItemResult]:
        actor, item, attempts = self.inflight.pop(ref)
        try:
            result = self.ray.get(ref)
        except self.RayActorError as exc:
            self.last_error = one_line(exc)[:300]
            self.schedule_ping(actor, 0.5)
            yield from self._lost(item, attempts, f"its Ray worker died ({self.last_error})")
            return
        except self.RayError as exc:  # the call itself failed (a bug, an item Ray could not move)
            self.idle.append(actor)
            yield failed(item.id, f"internal error on Ray: {one_line(exc)[:500]}", extension=item.extension,
                         attempts=attempts)
            return
        self.idle.append(actor)
        self.done.add(item.id)
        yield result

    def _lost(self, item: BatchItem | Task, attempts: int, reason: str) -> Iterator[ItemResult]:
        """An item whose worker died: retried at the front of the queue, or failed after max_attempts."""
        if self.stopping:
            yield ItemResult(item.id, "stopped", extension=item.extension, attempts=attempts, error=reason)
        elif attempts >= self.executor.max_attempts:
            yield failed(item.id, f"{reason}; gave up after {attempts} attempts", extension=item.extension,
                         attempts=attempts)
        else:
            self.emit(ItemEvent(item.id, "retry", message=f"{reason}: attempt {attempts + 1} of "
                                                          f"{self.executor.max_attempts}"))
            self.pending.appendleft((item, attempts + 1))
