"""The optimization loop: bind targets once per scale, then step the pixels of G.

:func:`run` executes a :class:`~nst_core.planning.RunPlan`: it minimizes
J(G) = Σ_terms weight · term(G) over the pixels of G (Gatys et al. 2015), coarse to fine, each
scale starting from the previous result, upsampled. :func:`stylize` is ``run(plan(...))``. The
engine never prints, never exits and never reads argv: progress and cancellation are the
``on_progress`` and ``should_stop`` arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
import functools
import math
import time
from typing import Any

import torch
from torch import Tensor

from nst_core import functional
from nst_core.config import StyleConfig
from nst_core.contract import call_plugin, check_loss_value
from nst_core.image import ImageSource, resize
from nst_core.inputs import finish_image, initial_image
from nst_core.oom import is_out_of_memory, lower_memory_mode
from nst_core.optim import PixelOptimizer, make_optimizer
from nst_core.planning import BoundTerm, Model, RunPlan, plan
from nst_core.precision import backward
from nst_core.progress import Progress
from nst_core.registry import Registries
from nst_core.result import RECORD_FORMAT, RECORD_KEY, Status, StyleResult
from nst_core.resume import RunState, check_resume, settings_text
from nst_core.targets import bind_targets
from nst_core.types import Backbone

RANGE_PENALTY = 100.0
"""Weight of :func:`~nst_core.functional.range_penalty` in what L-BFGS minimizes, relative to J of
the scale's starting image: J + RANGE_PENALTY · J(x₀) · P(x). Without it the unclamped iterate
drifts out of [0, 1] and the clamped output's J stops falling while the optimizer's keeps falling
(benchmarks/RESULTS.md, "range penalty")."""

MAX_RECOVERIES = 3
"""Times per scale a non-finite loss sends the run back to its best image before it gives up."""

__all__ = ["MAX_RECOVERIES", "RANGE_PENALTY", "RECORD_FORMAT", "RECORD_KEY", "StyleResult", "run", "stylize"]


@dataclass
class _ScaleOutcome:
    """One scale's progress: filled in as it runs, so that it survives an exception mid-scale."""

    best_x: Tensor | None
    best_values: list[float]
    last_step: int
    status: Status = "finished"
    message: str = "finished"
    recoveries: int = 0
    x: Tensor | None = None
    """Where the next step starts (resumed or after an out-of-memory retry); None: ``x0``."""
    done: int = 0
    """Steps of this scale done (a recovery from a non-finite loss does not count as one)."""
    state: RunState | None = None
    """Set when the scale stopped (``should_stop``): where to resume."""
    range_weight: Tensor | None = None
    """RANGE_PENALTY · J(x₀) of this scale (L-BFGS only), fixed once its first step ran."""
    optimizer: PixelOptimizer | None = None
    """The scale's optimizer now (a resume state carries L-BFGS's last move)."""
    carried_move: tuple[Tensor, Tensor] | None = None
    """L-BFGS's last move ``(s, g)`` from a resume state, for the first optimizer of the scale."""


@dataclass
class _Running:
    """What a run changes as it goes: the config in effect (``on_oom="retry"`` may lower its
    precision), the backbone's checkpointing, the notes and the steps counted so far."""

    plan: RunPlan
    config: StyleConfig
    backbone: Backbone
    terms: tuple[BoundTerm, ...]
    layers: tuple[str, ...]
    seed: int
    started: float
    notes: list[str]
    step: int = 0
    recoveries: int = 0
    non_finite: dict[str, None] = field(default_factory=dict)
    """What became non-finite so far (``loss term 'x' from plug-in ...`` or ``the gradient``), in order."""

    def capture(self, scale_index: int, scale_step: int, x: Tensor, out: _ScaleOutcome) -> RunState:
        """The run's state after ``scale_step`` steps of scale ``scale_index`` (iterate ``x``)."""
        return RunState(scale=scale_index, scale_step=scale_step, step=out.last_step, total=self.plan.total_steps,
                        x=x.detach().to("cpu", torch.float32, copy=True),
                        best_x=_cpu(out.best_x), best_values=tuple(out.best_values), seed=self.seed,
                        settings=settings_text(self.plan.requested), inputs=self.plan.inputs.fingerprint,
                        precision=self.config.precision,
                        checkpoint=self.backbone.checkpoint if self.backbone.supports_checkpoint else None,
                        notes=tuple(self.notes), recoveries=self.recoveries + out.recoveries,
                        range_weight=None if out.range_weight is None else float(out.range_weight),
                        lbfgs_move=_cpu_move(out.optimizer), elapsed=time.perf_counter() - self.started)


def _cpu(t: Tensor | None) -> Tensor:
    assert t is not None
    return t.detach().to("cpu", torch.float32, copy=True)


def _cpu_move(optimizer: PixelOptimizer | None) -> tuple[Tensor, Tensor] | None:
    move = optimizer.last_move() if optimizer is not None else None
    return None if move is None else (_cpu(move[0]), _cpu(move[1]))


def _start(plan: RunPlan, resume: RunState | None, started: float) -> _Running:
    """Move the model to the plan's memory mode and, with ``resume``, check it fits the plan and
    take over its precision, checkpointing, notes and counters."""
    backbone = plan.model.backbone
    if backbone.supports_checkpoint:
        backbone.checkpoint = plan.memory.checkpoint
    seed = plan.seed if plan.seed_given or resume is None else resume.seed
    running = _Running(plan, plan.config.replace(seed=seed), backbone, plan.terms, plan.layers, seed, started,
                       list(plan.notes))
    if resume is not None:
        check_resume(resume, config=plan.requested, inputs=plan.inputs.fingerprint, total=plan.total_steps,
                     shapes=list(plan.shapes))
        running.config = running.config.replace(precision=resume.precision)
        if resume.checkpoint and backbone.supports_checkpoint:
            backbone.checkpoint = True
        running.notes.extend(n for n in resume.notes if n not in running.notes)
        running.step, running.recoveries = resume.step, resume.recoveries
        running.started = started - resume.elapsed
    return running


def _resumed_outcome(resume: RunState, device: torch.device) -> _ScaleOutcome:
    return _ScaleOutcome(best_x=resume.best_x.to(device), best_values=list(resume.best_values),
                         last_step=resume.step, x=resume.x.to(device), done=resume.scale_step,
                         range_weight=None if resume.range_weight is None
                         else torch.tensor(resume.range_weight, device=device),
                         carried_move=resume.lbfgs_move)


def run(plan: RunPlan, *, on_progress: Callable[[Progress], None] | None = None,
        should_stop: Callable[[], bool] | None = None, resume: RunState | None = None) -> StyleResult:
    """Execute ``plan`` (from :func:`nst_core.plan`); see :func:`stylize` for the arguments."""
    running = _start(plan, resume, time.perf_counter())
    generator = torch.Generator().manual_seed(running.seed)
    inputs, device = plan.inputs, plan.device
    x_prev: Tensor | None = None
    status: Status = "finished"
    message = "finished"
    last_values: list[float] = []
    stopped_at: RunState | None = None
    for scale_index, (h, w) in enumerate(plan.shapes, start=1):
        if resume is not None and scale_index < resume.scale:
            continue  # done before the run was stopped
        content_s = resize(inputs.content, h, w).to(device)
        masks_s = [None if m is None else resize(m, h, w).to(device) for m in inputs.masks]
        out = _ScaleOutcome(best_x=None, best_values=[], last_step=running.step)
        if resume is not None and scale_index == resume.scale:
            out = _resumed_outcome(resume, device)
        while True:  # more than once only after running out of memory with on_oom="retry"
            try:
                bind_targets(running.terms, plan.model, running.layers, content=content_s,
                             styles=inputs.styles, blend=inputs.blend, masks=masks_s, guides=inputs.guides,
                             style_scale=running.config.style_scale, precision=running.config.precision,
                             device=device)
                if x_prev is None:
                    x0 = initial_image(running.config, content_s, inputs.init, generator)
                else:
                    x0 = resize(x_prev.clamp(0, 1), h, w)
                outcome = _optimize_scale(running, x0, scale=(scale_index, len(plan.shapes)),
                                          on_progress=on_progress, should_stop=should_stop, out=out)
                break
            except Exception as exc:  # out of memory (GPU or CPU allocator) is handled below, once the
                if not is_out_of_memory(exc):  # frames of the traceback (and their tensors) are gone
                    raise
            _recover_from_out_of_memory(running, out, (w, h))
        running.step = outcome.last_step
        running.recoveries += outcome.recoveries
        x_prev, last_values = outcome.best_x, outcome.best_values
        for t in running.terms:
            t.loss = None
        if outcome.status != "finished":
            status, message, stopped_at = outcome.status, outcome.message, outcome.state
            break
    if status == "finished" and running.recoveries:
        message = (f"finished; the loss became non-finite {running.recoveries} time(s) (in "
                   f"{', '.join(running.non_finite)}) and the run went back to the last finite image each time")
    assert x_prev is not None
    return _result(running, x_prev, status, message, last_values, stopped_at)


def _recover_from_out_of_memory(running: _Running, out: _ScaleOutcome, size: tuple[int, int]) -> None:
    """After an out-of-memory error at a scale of ``size`` ``(w, h)``: with ``on_oom="retry"``,
    switch to the next lower-memory mode and set ``out`` to go on from the scale's best image so
    far; else raise the one-line ResourceError."""
    for t in running.terms:
        t.loss = None  # the bound targets go; they are bound again in the new mode
    running.config, switched = lower_memory_mode(running.backbone, running.config, running.plan.device, size)
    out.x = out.best_x
    running.notes.append(f"{running.plan.device} ran out of memory at {size[0]}x{size[1]} px after step "
                         f"{out.last_step}: switched to {switched} and went on from the best image so far")


def _result(running: _Running, x: Tensor, status: Status, message: str, last_values: list[float],
            stopped_at: RunState | None) -> StyleResult:
    plan = running.plan
    out_w, out_h = plan.output_size
    image = finish_image(x, plan.inputs, running.config, out_h, out_w)
    alpha = None
    if plan.inputs.original.alpha is not None:
        alpha = resize(plan.inputs.original.alpha, out_h, out_w)
    terms = {t.name: v for t, v in zip(running.terms, last_values[1:-1])} if last_values else {}
    return StyleResult(image=image, alpha=alpha, seed=running.seed, status=status, message=message,
                       steps=running.step, total_steps=plan.total_steps,
                       loss=last_values[0] if last_values else math.nan, terms=terms,
                       elapsed=time.perf_counter() - running.started, device=str(plan.device), sizes=plan.sizes,
                       config=plan.requested, notes=tuple(running.notes), recoveries=running.recoveries,
                       state=stopped_at, plugins=plan.plugins,
                       weights={t.name: t.effective_weight for t in running.terms})


def stylize(content: ImageSource, styles: ImageSource | Sequence[ImageSource], config: StyleConfig | None = None,
            *, registries: Registries | None = None, model: Model | None = None,
            init_image: ImageSource | None = None, style_masks: Sequence[ImageSource | None] | None = None,
            guides: Mapping[str, Tensor] | None = None, on_progress: Callable[[Progress], None] | None = None,
            should_stop: Callable[[], bool] | None = None, resume: RunState | None = None,
            preset: str | None = None, **overrides: Any) -> StyleResult:
    """Stylize ``content`` with one or more ``styles`` by optimizing the pixels of G.

    ``stylize(...)`` is ``run(plan(...), ...)``: call :func:`nst_core.plan` yourself to see the
    decisions (device, precision, seed, sizes, memory) before the run starts.

    :param content: path, encoded bytes, PIL image, ``(1, 3, H, W)`` tensor in [0, 1] or
        ``(H, W, 3)`` array.
    :param styles: one such image or a list of them (blended by ``config.style_blend``).
    :param config: the run's settings; ``overrides`` change fields of it (``size=256, steps=100``).
    :param preset: start from a registered preset's settings instead of ``config``
        (``stylize(photo, painting, preset="fast", steps=50)``); give one or the other.
    :param registries: plug-in registries to use (default: collected from installed plug-ins).
    :param model: a :func:`nst_core.load_model` result to reuse (many runs, one backbone load).
    :param init_image: the starting image when ``config.init == "image"``.
    :param style_masks: one mask per style image (or ``None`` for "everywhere"): where on the
        content that style applies (Gatys et al. 2017 spatial control), grey or alpha in [0, 1],
        soft edges allowed. Outside every mask the output keeps the content.
    :param guides: extra tensors for loss terms, ``{name: (1, C, H, W)}`` float at any size; each
        scale hands them to every term resized to its working size, as ``Targets.guides``.
    :param on_progress: called after every step with a :class:`Progress`.
    :param should_stop: checked before every step; when it returns True the run ends and the
        result holds the best image so far (``status="stopped"``) and, in ``result.state``, where
        it stopped.
    :param resume: a :class:`~nst_core.resume.RunState` (``result.state`` of a stopped run, or
        ``Progress.state()``) to continue from: the same settings and images are required
        (:class:`~nst_core.errors.ResumeError` names what differs), the run goes on at the saved
        scale and step with the same total, and L-BFGS goes on from its last move (older pairs are
        not kept).
    :returns: a :class:`StyleResult`; its ``image`` is ``(1, 3, H, W)`` in [0, 1] on the CPU.
    """
    planned = plan(content, styles, config, registries=registries, model=model, init_image=init_image,
                   style_masks=style_masks, guides=guides, preset=preset, **overrides)
    return run(planned, on_progress=on_progress, should_stop=should_stop, resume=resume)


# over 60 lines: its docstring and one flat loop over the steps, kept whole so the loop reads top to bottom
def _optimize_scale(running: _Running, x0: Tensor, *, scale: tuple[int, int],
                    on_progress: Callable[[Progress], None] | None, should_stop: Callable[[], bool] | None,
                    out: _ScaleOutcome) -> _ScaleOutcome:
    """Run the scale's optimizer steps (``plan.scale_steps``) on one scale, starting from ``x0`` ``(1, 3, h, w)``.

    One function evaluation per step; keeps the best iterate (lowest J). A non-finite loss or
    gradient sends the run back to the best image with a fresh optimizer, at most
    ``MAX_RECOVERIES`` times per scale; then the scale ends with status ``"non-finite"``.
    L-BFGS iterates are not clamped to [0, 1] (clamping would corrupt its curvature pairs; the
    range penalty keeps them near it); Adam's are. Every image handed on is clamped.

    ``out`` is filled in place; when it already holds steps (``done``, ``x``, the best so far)
    the scale goes on from there with a fresh optimizer.
    """
    config, total_steps = running.config, running.plan.total_steps
    h, w = x0.shape[-2:]
    x = (x0 if out.x is None else out.x).detach().clone().requires_grad_(True)
    optimizer = out.optimizer = make_optimizer(config.optimizer, x, config.learning_rate)
    if out.carried_move is not None:
        optimizer.continue_from(*out.carried_move)
    out.carried_move = None
    if out.best_x is None:
        out.best_x = x.detach().clone()
    best_loss = out.best_values[0] if out.best_values else math.inf
    shown = torch.empty_like(x0) if on_progress is not None else None  # the iterate a step evaluated

    steps = running.plan.scale_steps(scale[0])
    i = out.done
    while i < steps:  # a recovery from a non-finite loss repeats step i from the best image
        if should_stop is not None and should_stop():
            out.status, out.message = "stopped", f"stopped at step {out.last_step} of {total_steps}"
            out.state = running.capture(scale[0], i, x, out)
            return out
        values = _evaluate(running, x, out, i / max(steps - 1, 1))
        if not all(math.isfinite(v) for v in values) or values[-1] != 1.0:
            culprit = _non_finite_culprit(running.terms, values)
            running.non_finite[culprit] = None
            if out.recoveries < MAX_RECOVERIES and out.best_values:
                out.recoveries += 1
                with torch.no_grad():
                    x.copy_(out.best_x)
                optimizer = out.optimizer = make_optimizer(config.optimizer, x, config.learning_rate)
                continue
            out.status = "non-finite"
            out.message = (f"the loss became non-finite (NaN or inf) at step {out.last_step + 1} of {total_steps} "
                           f"in {culprit}; kept the last finite image. Lower that term's weight or the learning "
                           f"rate, or leave the term out")
            return out
        if values[0] < best_loss:
            best_loss, out.best_values = values[0], values
            out.best_x = x.detach().clone()
        if shown is not None:
            shown.copy_(x.detach())
        assert x.grad is not None
        optimizer.step(x.grad)
        i += 1
        out.last_step, out.done = out.last_step + 1, i
        if on_progress is not None:  # after the optimizer's step, so that state() resumes after it
            on_progress(Progress(step=out.last_step, total=total_steps, scale=scale[0], scales=scale[1],
                                 size=(w, h), loss=values[0],
                                 terms={t.name: v for t, v in zip(running.terms, values[1:-1])},
                                 elapsed=time.perf_counter() - running.started, image=shown,
                                 state=functools.partial(running.capture, scale[0], i, x, out)))
    with torch.no_grad():
        final_total, final_parts = _objective(running, x, 1.0)
        final = torch.stack([final_total, *final_parts]).tolist()
    if all(math.isfinite(v) for v in final) and final[0] <= best_loss:
        out.best_x, out.best_values = x.detach().clone(), final + [1.0]
    return out


def _non_finite_culprit(terms: Sequence[BoundTerm], values: list[float]) -> str:
    """What made ``values`` (J, the weighted parts, 1.0 if the gradient is finite) non-finite: the
    first term whose part is not finite, named with its plug-in, else the gradient."""
    for t, v in zip(terms, values[1:-1]):
        if not math.isfinite(v):
            return f"loss term {t.name!r} from {t.label} ({v})"
    return "the gradient (every term's value was finite)"


def _evaluate(running: _Running, x: Tensor, out: _ScaleOutcome, progress: float) -> list[float]:
    """J(x), its weighted parts and 1.0 if the gradient is finite (else 0.0), as floats; fills
    ``x.grad`` with the gradient of what the optimizer minimizes (for L-BFGS, J plus the range
    penalty, whose weight is fixed at the scale's first evaluation)."""
    x.grad = None
    total, parts = _objective(running, x, progress)
    minimized = total
    assert out.optimizer is not None
    if out.optimizer.needs_range_penalty:
        if out.range_weight is None:
            out.range_weight = RANGE_PENALTY * total.detach().abs()
        minimized = total + out.range_weight * functional.range_penalty(x)
    backward(minimized, x, running.config.precision)
    assert x.grad is not None
    grad_finite = torch.isfinite(x.grad).all().float()
    return torch.stack([total.detach(), *(p.detach() for p in parts), grad_finite]).tolist()


def _objective(running: _Running, x: Tensor, progress: float) -> tuple[Tensor, list[Tensor]]:
    """J(x) = Σ weight · term(x) and the weighted parts, from one backbone pass."""
    terms = running.terms
    low = [layer for layer in running.layers
           if all(t.low_precision_features for t in terms if layer in t.layers)]
    features = running.plan.model.features(x, running.layers, running.config.precision, keep_low=low)
    parts = []
    for t in terms:
        weights = t.layer_weights(t.layers, running.backbone.channels, progress)
        assert t.loss is not None, "bind_targets binds every term before the scale's first step"
        what = f"loss term {t.name!r} from {t.label}"
        value = check_loss_value(what, call_plugin(what, t.loss, x, features, weights), x)
        parts.append(t.effective_weight * value)
    return torch.stack(parts).sum() if parts else x.sum() * 0, parts
