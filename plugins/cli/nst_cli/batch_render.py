"""How ``nst batch`` reports: one overall bar and the running items (rich), lines, nothing, or jsonl.

Every reporter gets ``begin``, then ``item_start`` / ``item_step`` / ``item_retry`` / ``item_done``
and ``warning`` for the items as they come, then ``end`` (or ``error``). Human-readable output goes
to stderr; :class:`BatchJsonlReporter` writes only JSON lines on stdout (PROGRESS_JSONL.md,
"nst batch").
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from pathlib import Path
import sys
import time
from typing import Any

from nst_core.batch import ItemEvent, ItemResult

from nst_cli import messages
from nst_cli.render import JsonlStream, ProgressMode, duration


@dataclass(frozen=True)
class BatchInfo:
    """What a batch is about to do."""

    total: int
    """Jobs in the batch."""
    todo: int
    """Jobs to run now (the others are done already)."""
    skipped: int
    outdir: Path
    workers: str
    """The executor in words: ``1 local worker(s) on cpu``, ``4 Ray actor(s) ...``."""


@dataclass
class BatchTally:
    """How a batch ended (the ``batch-done`` event)."""

    done: int = 0
    failed: int = 0
    stopped: int = 0
    skipped: int = 0
    total: int = 0
    elapsed: float = 0.0
    summary: Path | None = None

    @property
    def not_started(self) -> int:
        return self.total - self.skipped - self.done - self.failed - self.stopped


class Rate:
    """Images per minute and the time left, from the items finished in this run."""

    def __init__(self, todo: int) -> None:
        self.todo = todo
        self.finished = 0
        self.started = time.perf_counter()

    def add(self) -> None:
        self.finished += 1

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    @property
    def per_minute(self) -> float:
        return self.finished / self.elapsed * 60 if self.finished and self.elapsed > 0 else math.nan

    @property
    def eta(self) -> float:
        rate = self.per_minute
        return (self.todo - self.finished) / rate * 60 if math.isfinite(rate) and rate > 0 else math.nan

    def text(self) -> str:
        rate = self.per_minute
        shown = f"{rate:.1f}/min" if math.isfinite(rate) else "?/min"
        return f"{shown}, {duration(self.eta)} left"


def item_line(result: ItemResult, output: Path | None) -> str:
    """The line a person sees when an item ends."""
    where = f" -> {output}" if output is not None else ""
    if result.status == "done":
        return f"{result.id}: done in {duration(result.seconds)}, loss {result.loss:.4g}{where}"
    if result.status == "stopped":
        return f"{result.id}: stopped after {result.steps} steps{'; saved the best image so far' if output else ''}"
    retried = f" (after {result.attempts} attempts)" if result.attempts > 1 else ""
    return f"{result.id}: failed{retried}: {result.error}"


def end_line(tally: BatchTally) -> str:
    parts = [f"{tally.done} done"]
    if tally.skipped:
        parts.append(f"{tally.skipped} already done")
    if tally.failed:
        parts.append(f"{tally.failed} failed")
    if tally.stopped:
        parts.append(f"{tally.stopped} stopped")
    if tally.not_started > 0:
        parts.append(f"{tally.not_started} not started")
    return f"{tally.total} items: {', '.join(parts)} in {duration(tally.elapsed)}; summary in {tally.summary}"


class BatchReporter:
    """Says the start and the end (``--progress none``); the base of the others."""

    def __enter__(self) -> BatchReporter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def begin(self, info: BatchInfo) -> None:
        self.rate = Rate(info.todo)
        messages.say(f"{info.total} items, {info.skipped} already done, {info.todo} to do, with {info.workers} "
                     f"-> {info.outdir}")

    def item_start(self, event: ItemEvent, output: Path) -> None:
        pass

    def item_step(self, event: ItemEvent) -> None:
        pass

    def item_retry(self, event: ItemEvent) -> None:
        messages.warn(f"{event.item}: {event.message}; trying it again")

    def item_done(self, result: ItemResult, output: Path | None) -> None:
        self.rate.add()
        if result.status == "failed":
            messages.warn(item_line(result, output))

    def warning(self, message: str) -> None:
        messages.warn(message)

    def end(self, tally: BatchTally) -> None:
        self.close()
        (messages.warn if tally.failed else messages.say)(end_line(tally))

    def error(self, message: str, exit_code: int) -> None:
        self.close()

    def close(self) -> None:
        pass


class BatchPlainReporter(BatchReporter):
    """A line per item that ends, with the count, the rate and the time left (logs and pipes)."""

    def begin(self, info: BatchInfo) -> None:
        super().begin(info)
        self._count, self._todo = 0, info.todo

    def item_done(self, result: ItemResult, output: Path | None) -> None:
        self.rate.add()
        self._count += 1
        line = f"[{self._count}/{self._todo}] {item_line(result, output)} ({self.rate.text()})"
        (messages.warn if result.status == "failed" else messages.say)(line)


class BatchRichReporter(BatchReporter):
    """One overall bar (items done / to do, images per minute, time left) and a line per running item."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn

        self._console = Console(stderr=True, highlight=False)
        self._bar = Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[detail]}"), console=self._console)
        self._overall: Any = None
        self._items: dict[str, Any] = {}

    def _print(self, text: str, style: str = "") -> None:
        from rich.markup import escape

        self._console.print(f"[{style}]{escape(text)}[/]" if style else escape(text))

    def begin(self, info: BatchInfo) -> None:
        self.rate = Rate(info.todo)
        self._print(f"{info.total} items, {info.skipped} already done, {info.todo} to do, with {info.workers} "
                    f"-> {info.outdir}")
        self._overall = self._bar.add_task("[bold]nst batch", total=info.todo, detail="starting")
        self._bar.start()

    def item_start(self, event: ItemEvent, output: Path) -> None:
        from rich.markup import escape

        old = self._items.pop(event.item, None)
        if old is not None:
            self._bar.remove_task(old)
        self._items[event.item] = self._bar.add_task(f"  {escape(event.item)}", total=event.total or None,
                                                     detail=event.worker)

    def item_step(self, event: ItemEvent) -> None:
        task = self._items.get(event.item)
        if task is not None:
            self._bar.update(task, completed=event.step, total=event.total,
                             detail=f"loss {event.loss:.4g}  {event.worker}")

    def item_retry(self, event: ItemEvent) -> None:
        self._print(f"warning: {event.item}: {event.message}; trying it again", "yellow")

    def item_done(self, result: ItemResult, output: Path | None) -> None:
        self.rate.add()
        task = self._items.pop(result.id, None)
        if task is not None:
            self._bar.remove_task(task)
        self._bar.update(self._overall, advance=1, detail=self.rate.text())
        if result.status != "done":
            self._print(item_line(result, output), "yellow")

    def warning(self, message: str) -> None:
        self._print(f"warning: {message}", "yellow")

    def end(self, tally: BatchTally) -> None:
        self.close()
        self._print(end_line(tally), "yellow" if tally.failed else "green")

    def close(self) -> None:
        self._bar.stop()


def _path(path: Path | None) -> str | None:
    return None if path is None else str(Path(path).absolute())


class BatchJsonlReporter(JsonlStream, BatchReporter):
    """``nst batch``'s events as a :class:`~nst_cli.render.JsonlStream`."""

    def begin(self, info: BatchInfo) -> None:
        self.rate = Rate(info.todo)
        self._emit("batch-start", total=info.total, todo=info.todo, skipped=info.skipped,
                   outdir=_path(info.outdir), workers=info.workers)

    def item_start(self, event: ItemEvent, output: Path) -> None:
        self._emit("item-start", item=event.item, output=_path(output), worker=event.worker, seed=event.seed,
                   sizes=[list(s) for s in event.sizes], total=event.total)

    def item_step(self, event: ItemEvent) -> None:
        self._emit("item-step", item=event.item, step=event.step, total=event.total, loss=event.loss,
                   elapsed=event.elapsed)

    def item_retry(self, event: ItemEvent) -> None:
        self._emit("item-retry", item=event.item, message=event.message)

    def item_done(self, result: ItemResult, output: Path | None) -> None:
        self.rate.add()
        self._emit("item-done", item=result.id, status=result.status, output=_path(output), seconds=result.seconds,
                   loss=result.loss, steps=result.steps, attempts=result.attempts, error=result.error)

    def warning(self, message: str) -> None:
        self._emit("warning", message=message)

    def end(self, tally: BatchTally) -> None:
        self._emit("batch-done", total=tally.total, done=tally.done, failed=tally.failed, stopped=tally.stopped,
                   skipped=tally.skipped, elapsed=tally.elapsed, summary=_path(tally.summary))

    def error(self, message: str, exit_code: int) -> None:
        self._emit("error", message=messages.one_line(message), exit_code=exit_code)


def make_batch_reporter(mode: ProgressMode) -> BatchReporter:
    """The reporter for ``--progress``; ``auto`` is rich on a terminal, else plain."""
    if mode is ProgressMode.auto:
        mode = ProgressMode.rich if sys.stderr.isatty() else ProgressMode.plain
    return {ProgressMode.rich: BatchRichReporter, ProgressMode.plain: BatchPlainReporter,
            ProgressMode.jsonl: BatchJsonlReporter, ProgressMode.none: BatchReporter}[mode]()
