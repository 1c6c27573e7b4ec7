"""How ``nst run`` reports a run: a rich progress bar, plain lines, nothing, or jsonl events.

Every reporter gets the same calls, in this order: ``start``, then ``step`` (and ``saved``,
``checkpoint``, ``warning``) any number of times, then ``done`` or ``error``; ``close`` ends any live display.
Human-readable output goes to stderr; only :class:`JsonlReporter` writes to stdout, and only
JSON lines (the contract in PROGRESS_JSONL.md).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
import enum
import json
import math
from pathlib import Path
import sys
from typing import Any, TypeVar

from nst_core import Progress

from nst_cli import messages


class ProgressMode(str, enum.Enum):
    """``--progress``: ``auto`` is ``rich`` when stderr is a terminal, else ``plain``."""

    auto = "auto"
    rich = "rich"
    plain = "plain"
    jsonl = "jsonl"
    none = "none"


@dataclass(frozen=True)
class RunInfo:
    """What a run is about to do (the ``start`` event)."""

    content: Path
    styles: tuple[Path, ...]
    output: Path
    version: str
    device: str
    precision: str
    """What the backbone computes in (``"auto"`` resolved): float32, bf16 or fp16."""
    seed: int
    sizes: tuple[tuple[int, int], ...]
    """Working ``(width, height)`` of each scale, coarse to fine."""
    total: int
    resumed: int = 0
    """Steps done before this run started (``--resume``); the first step is ``resumed + 1``."""
    resume_file: Path | None = None
    """The resume file it continues (with ``--resume``)."""


@dataclass(frozen=True)
class Outcome:
    """How a run ended (the ``done`` event)."""

    output: Path
    status: str
    message: str
    steps: int
    total: int
    elapsed: float
    loss: float
    seed: int
    record: Path | None = None
    """The run record's sidecar ``OUT.json`` (None with ``--no-record``)."""


def duration(seconds: float) -> str:
    """``0:07``, ``12:34``, ``1:02:03``; ``?`` when unknown."""
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _sizes(sizes: tuple[tuple[int, int], ...]) -> str:
    shown = " -> ".join(f"{w}x{h}" for w, h in sizes)
    return f"{len(sizes)} scale{'s' if len(sizes) > 1 else ''} ({shown})"


def header(run: RunInfo) -> list[str]:
    """The lines a person sees before the first step, with what it takes to reproduce the run."""
    styles = " + ".join(str(s) for s in run.styles)
    lines = [f"{run.content} + {styles} -> {run.output}",
             f"device {run.device} ({run.precision}), seed {run.seed}, {_sizes(run.sizes)}, {run.total} steps "
             f"(reproduce with --seed {run.seed})"]
    if run.resume_file is not None:
        lines.append(f"resuming after step {run.resumed}/{run.total} from {run.resume_file}")
    return lines


def summary(outcome: Outcome) -> str:
    """The line a person sees at the end."""
    stats = (f"{outcome.steps}/{outcome.total} steps, loss {outcome.loss:.4g}, seed {outcome.seed}, "
             f"{duration(outcome.elapsed)}")
    record = f"; run record in {outcome.record}" if outcome.record else ""
    if outcome.status == "finished":
        return f"wrote {outcome.output} ({stats}){record}"
    return f"{outcome.message}; wrote {outcome.output} ({stats}){record}"


def step_line(p: Progress) -> str:
    """One plain progress line."""
    w, h = p.size
    return (f"step {p.step}/{p.total}, scale {p.scale}/{p.scales} {w}x{h}, loss {p.loss:.4g}, "
            f"{duration(p.elapsed)} elapsed, {duration(p.eta)} left")


class Reporter:
    """Reports nothing; the base of the others (``--progress none`` still says start and end)."""

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self, run: RunInfo) -> None:
        for line in header(run):
            messages.say(line)

    def step(self, progress: Progress) -> None:
        pass

    def saved(self, path: Path, step: int) -> None:
        pass

    def checkpoint(self, path: Path, step: int) -> None:
        """The resume file was written after ``step`` (``--checkpoint-every``, or on a stop)."""

    def warning(self, message: str) -> None:
        messages.warn(message)

    def done(self, outcome: Outcome) -> None:
        (messages.warn if outcome.status == "non-finite" else messages.say)(summary(outcome))

    def error(self, message: str, exit_code: int) -> None:
        """The run failed; the caller prints the ``nst: error:`` line after :meth:`close`."""
        self.close()

    def close(self) -> None:
        pass


class PlainReporter(Reporter):
    """One line per ~5% of the steps (and the first and last), for logs and pipes."""

    def __init__(self) -> None:
        self._every = 1

    def start(self, run: RunInfo) -> None:
        super().start(run)
        self._every = max(1, run.total // 20)

    def step(self, progress: Progress) -> None:
        if progress.step == 1 or progress.step % self._every == 0 or progress.step == progress.total:
            messages.say(step_line(progress))

    def saved(self, path: Path, step: int) -> None:
        messages.say(f"saved {path}")

    def checkpoint(self, path: Path, step: int) -> None:
        messages.say(f"saved the state after step {step} in {path}")


class RichReporter(Reporter):
    """A live progress bar on stderr: step, scale, loss, elapsed and ETA."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn

        self._console = Console(stderr=True, highlight=False)
        self._bar = Bar(TextColumn("[bold]nst"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[detail]}"), console=self._console)
        self._task = None

    def _print(self, text: str, style: str = "") -> None:
        from rich.markup import escape

        self._console.print(f"[{style}]{escape(text)}[/]" if style else escape(text))

    def start(self, run: RunInfo) -> None:
        for line in header(run):
            self._print(line)
        self._task = self._bar.add_task("run", total=run.total, completed=run.resumed, detail="loading")
        self._bar.start()

    def step(self, progress: Progress) -> None:
        w, h = progress.size
        detail = (f"scale {progress.scale}/{progress.scales} {w}x{h}  loss {progress.loss:.4g}  "
                  f"{duration(progress.elapsed)} elapsed, {duration(progress.eta)} left")
        self._bar.update(self._task, completed=progress.step, detail=detail)

    def saved(self, path: Path, step: int) -> None:
        self._print(f"saved {path}", "dim")

    def checkpoint(self, path: Path, step: int) -> None:
        self._print(f"saved the state after step {step} in {path}", "dim")

    def warning(self, message: str) -> None:
        self._print(f"warning: {message}", "yellow")

    def done(self, outcome: Outcome) -> None:
        self.close()
        self._print(summary(outcome), "yellow" if outcome.status == "non-finite" else "green")

    def close(self) -> None:
        self._bar.stop()


def _path(path: Path) -> str:
    """Paths in events are absolute, whatever the reader's working directory."""
    return str(Path(path).absolute())


def _finite(value: Any) -> Any:
    """JSON has no NaN/inf: they become ``null``, inside dicts and lists too."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


_Stream = TypeVar("_Stream", bound="JsonlStream")


class JsonlStream:
    """One JSON object per line on stdout, flushed at once (see PROGRESS_JSONL.md).

    Inside ``with``, anything else printed to ``sys.stdout`` (a chatty plug-in) goes to stderr,
    so stdout carries only the events. Non-finite numbers are written as null.
    """

    def __init__(self) -> None:
        self._out = sys.stdout
        self._redirect = contextlib.redirect_stdout(sys.stderr)

    def __enter__(self: _Stream) -> _Stream:
        self._redirect.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._redirect.__exit__(None, None, None)

    def _emit(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, **_finite(fields)}, allow_nan=False)
        self._out.write(line + "\n")
        self._out.flush()



class JsonlReporter(JsonlStream, Reporter):
    """``nst run``'s events as a :class:`JsonlStream`."""

    def start(self, run: RunInfo) -> None:
        self._emit("start", version=run.version, device=run.device, precision=run.precision, seed=run.seed,
                   sizes=[list(size) for size in run.sizes], total=run.total, output=_path(run.output),
                   resumed=run.resumed)

    def step(self, p: Progress) -> None:
        self._emit("step", step=p.step, total=p.total, scale=p.scale, scales=p.scales, size=list(p.size),
                   loss=p.loss, terms=dict(p.terms), elapsed=p.elapsed, eta=p.eta)

    def saved(self, path: Path, step: int) -> None:
        self._emit("saved", path=_path(path), step=step)

    def checkpoint(self, path: Path, step: int) -> None:
        self._emit("checkpoint", path=_path(path), step=step)

    def warning(self, message: str) -> None:
        self._emit("warning", message=message)

    def done(self, outcome: Outcome) -> None:
        self._emit("done", output=_path(outcome.output), status=outcome.status,
                   message=outcome.message, steps=outcome.steps, elapsed=outcome.elapsed, loss=outcome.loss,
                   seed=outcome.seed, record=_path(outcome.record) if outcome.record else None)

    def error(self, message: str, exit_code: int) -> None:
        self._emit("error", message=messages.one_line(message), exit_code=exit_code)


def make_reporter(mode: ProgressMode) -> Reporter:
    """The reporter for ``--progress``; ``auto`` looks at whether stderr is a terminal."""
    if mode is ProgressMode.auto:
        mode = ProgressMode.rich if sys.stderr.isatty() else ProgressMode.plain
    return {ProgressMode.rich: RichReporter, ProgressMode.plain: PlainReporter, ProgressMode.jsonl: JsonlReporter,
            ProgressMode.none: Reporter}[mode]()
