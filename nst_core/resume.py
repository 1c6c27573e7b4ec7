"""Resumable runs: the state a stopped run hands out, and the file that keeps it.

A long run can stop (``should_stop``; Ctrl-C in the CLI) and go on later from where it was, with
``stylize(..., resume=state)``. A :class:`RunState` holds what the optimisation needs to continue
(the scale and step, the current iterate, the best image of the scale so far and its loss, the
seed) and fingerprints of the settings and of the decoded input images, so that a state is never
continued with other settings or other images: :func:`check_resume` refuses with one line naming
what differs.

Of L-BFGS's curvature history only the last move is kept (its last step and the gradient it
came from, :meth:`~nst_core.optim.PixelLBFGS.last_move`): the resumed optimiser's first step is
then a quasi-Newton step scaled by that pair instead of a small gradient step; the older pairs
are rebuilt as it goes, which costs a little progress, not correctness. The settings in
:data:`UNCOMPARED` may change between the two parts: they decide
where the run executes and how much memory it takes, not the objective.

Files (the engine never touches them; front-ends decide when to write): :func:`save_state`
writes one atomically (``torch.save`` of tensors, numbers and strings only; a temporary file in
the same folder, then ``os.replace``); :func:`load_state` reads it with
``torch.load(weights_only=True)`` only, so a crafted file cannot run code; anything that is not a
resume file of this format is a :class:`~nst_core.errors.ResumeError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
import hashlib
import io
import json
import math
import os
from pathlib import Path
import re
from typing import Any, BinaryIO
import warnings
import zipfile

import torch
from torch import Tensor

from nst_core.device import resolve_device
from nst_core.config import StyleConfig, config_to_dict
from nst_core.errors import ResumeError, printable
from nst_core.image import LoadedImage, open_regular_file, save_bytes
from nst_core.precision import resolve_precision

RESUME_FORMAT = "nst-resume/1"
RESUME_SUFFIX = ".resume.pt"

UNCOMPARED = ("seed", "device", "checkpoint", "on_oom")
"""Settings that may differ between a stopped run and its resumption: the device, gradient
checkpointing and the out-of-memory policy change where and in how much memory the run executes,
not its objective; the seed is compared on its own (a resumed run without a seed takes the
state's)."""


@dataclass(frozen=True, kw_only=True)
class RunState:
    """Where a run stopped, to continue it with ``stylize(..., resume=state)``.

    :param scale: the scale in progress, 1 … number of scales (coarse to fine).
    :param scale_step: optimiser iterations done at that scale, 0 … ``config.steps`` (its steps,
        plus any that went back to the best image after a non-finite loss).
    :param step: steps done in the whole run, 0 … ``total``; the resumed run's first
        :class:`~nst_core.progress.Progress` has ``step + 1``.
    :param total: steps of the whole run (steps per scale × scales).
    :param x: ``(1, 3, h, w)`` float32 on the CPU at the scale's working size: the iterate the next
        step starts from (L-BFGS iterates are not clamped, so values may stray a little outside
        [0, 1]).
    :param best_x: ``(1, 3, h, w)`` float32 on the CPU: the lowest-loss iterate of this scale so
        far (the scale's starting image when no step of it finished yet).
    :param best_values: ``(J, weighted value of each term …, 1.0)`` of ``best_x``; empty when no
        step of this scale finished yet.
    :param seed: the run's seed.
    :param settings: the requested settings, :func:`~nst_core.config.config_to_dict` as JSON text.
    :param inputs: ``{"content": sha256, "style 1": …, "mask 1": …, "init": …}`` of the decoded
        images (:func:`inputs_fingerprint`).
    :param precision: the backbone precision in effect (``on_oom="retry"`` may have lowered it).
    :param checkpoint: gradient checkpointing in effect (``None``: a backbone without it).
    :param notes: notes made before the stop that the final result should carry (e.g. what an
        out-of-memory retry switched).
    :param recoveries: times the run went back to its best image after a non-finite loss.
    :param elapsed: seconds the run had taken when the state was made.
    :param range_weight: the weight of the pixel-range penalty in what L-BFGS minimises on this
        scale (``engine.RANGE_PENALTY`` · J of the scale's first image), so the resumed part
        minimises the same function; ``None``: not set yet (or Adam).
    :param lbfgs_move: ``(s, g)`` flat float32 on the CPU, ``x``'s number of elements each:
        L-BFGS's last step and the gradient it came from, so the resumed optimiser's first step is
        a quasi-Newton one (:meth:`~nst_core.optim.PixelLBFGS.continue_from`); ``None``: none yet.
    """

    scale: int
    scale_step: int
    step: int
    total: int
    x: Tensor = field(repr=False, compare=False)
    best_x: Tensor = field(repr=False, compare=False)
    best_values: tuple[float, ...] = ()
    seed: int
    settings: str = field(repr=False)
    inputs: Mapping[str, str] = field(repr=False)
    precision: str = "float32"
    checkpoint: bool | None = None
    notes: tuple[str, ...] = ()
    recoveries: int = 0
    elapsed: float = 0.0
    range_weight: float | None = None
    lbfgs_move: tuple[Tensor, Tensor] | None = field(default=None, repr=False, compare=False)

    @property
    def best_loss(self) -> float:
        """J of ``best_x`` (``inf`` when no step of this scale finished yet)."""
        return self.best_values[0] if self.best_values else math.inf


def settings_text(config: StyleConfig) -> str:
    """The settings as they are kept in a state: sorted JSON of :func:`config_to_dict`."""
    return json.dumps(config_to_dict(config), sort_keys=True)


def _image_hash(image: LoadedImage) -> str:
    digest = hashlib.sha256()
    for tensor in (image.rgb, image.alpha):
        if tensor is None:
            digest.update(b"none;")
            continue
        array = tensor.detach().to("cpu", torch.float32).contiguous().numpy()
        digest.update(f"{tuple(array.shape)};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def inputs_fingerprint(content: LoadedImage, styles: Sequence[LoadedImage],
                       masks: Sequence[LoadedImage | None] = (), init: LoadedImage | None = None) -> dict[str, str]:
    """sha256 of each decoded input image (its float32 RGB and alpha, with their shapes), by name:
    ``content``, ``style 1`` …, ``mask 1`` … (only the masks given), ``init``."""
    names = {"content": _image_hash(content)}
    names.update({f"style {i}": _image_hash(s) for i, s in enumerate(styles, start=1)})
    names.update({f"mask {i}": _image_hash(m) for i, m in enumerate(masks, start=1) if m is not None})
    if init is not None:
        names["init"] = _image_hash(init)
    return names


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_resume(state: RunState, *, config: StyleConfig, inputs: Mapping[str, str], total: int,
                 shapes: Sequence[tuple[int, int]]) -> None:
    """Refuse a state that does not belong to this run, with one line naming what differs.

    :param config: the settings of the run about to continue (requested, before any switch;
        precision ``"auto"`` is resolved for its device).
    :param inputs: :func:`inputs_fingerprint` of its images.
    :param total: its total step count.
    :param shapes: ``(h, w)`` working size of each of its scales.
    :raises ResumeError: other settings (by field, old → new), another seed, other images (by
        name), or a state that does not fit the run's scales and steps.
    """
    saved = json.loads(state.settings)
    if config.precision == "auto":  # a state holds the precision "auto" chose
        config = config.replace(precision=resolve_precision("auto", resolve_device(config.device)))
    now = config_to_dict(config)
    differ = [f"{name} {_short(saved.get(name))} -> {_short(now.get(name))}"
              for name in sorted(set(saved) | set(now)) if name not in UNCOMPARED and saved.get(name) != now.get(name)]
    if differ:
        raise ResumeError(f"cannot resume: the settings differ from the stopped run's ({'; '.join(differ)}); "
                          f"use the same settings, or start afresh")
    if config.seed is not None and config.seed != state.seed:
        raise ResumeError(f"cannot resume: the stopped run had seed {state.seed}, this one has seed {config.seed}; "
                          f"give the same seed or none")
    changed = [name for name in sorted(set(state.inputs) | set(inputs)) if state.inputs.get(name) != inputs.get(name)]
    if changed:
        how = {name: "not given now" if name not in inputs else "new" if name not in state.inputs else "other pixels"
               for name in changed}
        what = ", ".join(f"{name} ({how[name]})" for name in changed)
        raise ResumeError(f"cannot resume: other input images than the stopped run's: {what}; use the same files, "
                          f"or start afresh")
    if state.total != total or not 1 <= state.scale <= len(shapes) or not 0 <= state.step <= total:
        raise ResumeError(f"cannot resume: the state (scale {state.scale}, step {state.step} of {state.total}) does "
                          f"not fit this run ({len(shapes)} scale(s), {total} steps)")
    from nst_core.planning import steps_per_scale  # planning imports the engine's modules; late

    per_scale = steps_per_scale(config, len(shapes))
    deficit = sum(per_scale[:state.scale - 1]) + state.scale_step - state.step  # steps lost to recoveries
    if not 0 <= state.scale_step <= per_scale[state.scale - 1] or not 0 <= deficit <= state.recoveries:
        raise ResumeError(f"cannot resume: the state (step {state.scale_step} of scale {state.scale}, step "
                          f"{state.step} of {state.total} in all) does not add up with "
                          f"{'/'.join(map(str, per_scale))} steps per scale; delete it, or start afresh")
    h, w = shapes[state.scale - 1]
    if tuple(state.x.shape) != (1, 3, h, w) or tuple(state.best_x.shape) != (1, 3, h, w):
        raise ResumeError(f"cannot resume: the state's image is {tuple(state.x.shape)} but scale {state.scale} "
                          f"works at {w}x{h} px")


def resume_path(output: str | os.PathLike) -> Path:
    """Where the CLI keeps the state of a run writing ``output``: ``out.png`` -> ``out.png.resume.pt``."""
    output = Path(output)
    return output.with_name(output.name + RESUME_SUFFIX)


def save_state(state: RunState, path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically (whole or not at all; an existing file stays intact
    until the new one is complete). Raises :class:`~nst_core.errors.ImageError` (one line) when the
    folder cannot be written."""
    from nst_core import __version__

    data = {
        "format": RESUME_FORMAT,
        "nst_core": __version__,
        "scale": state.scale, "scale_step": state.scale_step, "step": state.step, "total": state.total,
        "x": state.x.detach().to("cpu", torch.float32).contiguous(),
        "best_x": state.best_x.detach().to("cpu", torch.float32).contiguous(),
        "best_values": [float(v) for v in state.best_values],
        "seed": state.seed,
        "settings": state.settings,
        "inputs": dict(state.inputs),
        "precision": state.precision,
        "checkpoint": state.checkpoint,
        "notes": list(state.notes),
        "recoveries": state.recoveries,
        "elapsed": float(state.elapsed),
        "range_weight": state.range_weight,
        "lbfgs_move": None if state.lbfgs_move is None else [t.detach().to("cpu", torch.float32).contiguous()
                                                             for t in state.lbfgs_move],
    }
    buffer = io.BytesIO()
    torch.save(data, buffer)
    return save_bytes(path, buffer.getvalue())


_TYPES: dict[str, type | tuple[type, ...]] = {
    "scale": int, "scale_step": int, "step": int, "total": int, "x": Tensor, "best_x": Tensor, "best_values": list,
    "seed": int, "settings": str, "inputs": dict, "precision": str, "checkpoint": (bool, type(None)),
    "notes": list, "recoveries": int, "elapsed": float, "range_weight": (float, type(None)),
    "lbfgs_move": (list, type(None)),
}


MAX_NOTES = 50
MAX_NOTE_CHARS = 1000
_INPUT_NAME = re.compile(r"content|init|(style|mask) [1-9][0-9]{0,3}")
_DIGEST = re.compile(r"[0-9a-f]{1,128}")


def _check_archive(handle: BinaryIO, refuse: str) -> None:
    """Refuse, before anything is allocated, a file whose contents are compressed: ``torch.save``
    stores every record as it is, so what loading allocates is bounded by the file's size, and a
    small file cannot unpack into gigabytes."""
    try:
        with zipfile.ZipFile(handle) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        handle.seek(0)
        return  # not a zip archive: torch.load refuses it below
    size = os.fstat(handle.fileno()).st_size
    unpacked = sum(entry.file_size for entry in entries)
    if any(entry.compress_type != zipfile.ZIP_STORED for entry in entries) or unpacked > size:
        raise ResumeError(f"{refuse} (its records are compressed to {size:,} bytes from {unpacked:,}, which "
                          f"nst never writes); refusing to load it. Delete it, or start afresh")
    handle.seek(0)


def _check_values(data: dict[str, Any], refuse: str) -> None:
    """Ranges and finiteness of the numbers of a state (the types are checked already)."""
    for key in ("scale", "total"):
        if data[key] < 1:
            raise ResumeError(f"{refuse}: its {key!r} is {data[key]}, not >= 1")
    for key in ("step", "scale_step", "recoveries"):
        if data[key] < 0:
            raise ResumeError(f"{refuse}: its {key!r} is {data[key]}, not >= 0")
    if data["step"] > data["total"]:
        raise ResumeError(f"{refuse}: it is at step {data['step']} of {data['total']}")
    if not 0 <= data["seed"] < 2**63:
        raise ResumeError(f"{refuse}: its seed {data['seed']} is out of range")
    if not (math.isfinite(data["elapsed"]) and data["elapsed"] >= 0):
        raise ResumeError(f"{refuse}: its elapsed time {data['elapsed']!r} is not a finite number >= 0")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
               for v in data["best_values"]):
        raise ResumeError(f"{refuse}: its best loss values are not finite numbers")
    if not all(isinstance(k, str) and _INPUT_NAME.fullmatch(k) and isinstance(v, str) and _DIGEST.fullmatch(v)
               for k, v in data["inputs"].items()):
        raise ResumeError(f"{refuse}: its input fingerprints are not image names with hex digests")


def load_state(path: str | os.PathLike) -> RunState:  # noqa: C901 - one guard per way a file can lie
    """Read a state written by :func:`save_state`, with ``torch.load(weights_only=True)`` only.

    :raises ResumeError: the file is missing, unreadable, damaged, holds anything but tensors,
        numbers and strings (a crafted pickle is refused, never run), or is not a resume file of
        this format.
    """
    path = Path(path)
    refuse = f"{path}: not a resume file nst can use"
    with open_regular_file(path, error=ResumeError, kind="a resume file", allow_empty=True,
                           missing=f"{path}: no such resume file") as handle:
        _check_archive(handle, refuse)
        try:
            with warnings.catch_warnings():  # torch warns about the pickle protocol of a foreign file
                warnings.simplefilter("ignore")
                data = torch.load(handle, map_location="cpu", weights_only=True)
        except OSError as exc:
            raise ResumeError(f"{path}: cannot read it ({exc.strerror or exc})") from None
        except Exception as exc:  # weights-only refusal (UnpicklingError), damaged zip (RuntimeError), ...
            detail = " ".join(str(exc).split())[:120]
            raise ResumeError(f"{refuse} (damaged, or it holds more than tensors and numbers: "
                              f"{type(exc).__name__}: {detail}); refusing to load it. Delete it, or start "
                              f"afresh") from None
    if not isinstance(data, dict) or data.get("format") != RESUME_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ResumeError(f"{refuse} (format {found!r}, expected {RESUME_FORMAT!r})")
    for key, kind in _TYPES.items():
        value = data.get(key)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = data[key] = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ResumeError(f"{refuse}: its {key!r} is missing or not a {getattr(kind, '__name__', kind)}")
    _check_values(data, refuse)
    for key in ("x", "best_x"):
        tensor = data[key]
        if tensor.dtype != torch.float32 or tensor.dim() != 4 or tensor.shape[:2] != (1, 3) \
                or not torch.isfinite(tensor).all():
            raise ResumeError(f"{refuse}: its {key!r} is not a finite (1, 3, H, W) float32 image")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in data["best_values"]) \
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in data["inputs"].items()) \
            or not all(isinstance(n, str) for n in data["notes"]):
        raise ResumeError(f"{refuse}: its values have the wrong types")
    if data["precision"] not in ("float32", "bf16", "fp16"):
        raise ResumeError(f"{refuse}: unknown precision {data['precision']!r}")
    move = data["lbfgs_move"]
    if move is not None and (len(move) != 2 or not all(
            isinstance(t, Tensor) and t.dtype == torch.float32 and t.numel() == data["x"].numel()
            and bool(torch.isfinite(t).all()) for t in move)):
        raise ResumeError(f"{refuse}: its L-BFGS move is not two finite float32 tensors the size of 'x'")
    if data["range_weight"] is not None and not (math.isfinite(data["range_weight"]) and data["range_weight"] >= 0):
        raise ResumeError(f"{refuse}: its range weight {data['range_weight']!r} is not a finite number >= 0")
    try:
        settings = json.loads(data["settings"])
    except (ValueError, RecursionError):
        raise ResumeError(f"{refuse}: its settings are not JSON") from None
    if not isinstance(settings, dict):
        raise ResumeError(f"{refuse}: its settings are not a JSON object")
    return RunState(scale=data["scale"], scale_step=data["scale_step"], step=data["step"], total=data["total"],
                    x=data["x"], best_x=data["best_x"], best_values=tuple(float(v) for v in data["best_values"]),
                    seed=data["seed"], settings=data["settings"], inputs=dict(data["inputs"]),
                    precision=data["precision"], checkpoint=data["checkpoint"],
                    notes=tuple(printable(n)[:MAX_NOTE_CHARS] for n in data["notes"][:MAX_NOTES]),
                    recoveries=data["recoveries"], elapsed=data["elapsed"], range_weight=data["range_weight"],
                    lbfgs_move=None if move is None else (move[0], move[1]))


__all__ = ["RESUME_FORMAT", "RESUME_SUFFIX", "RunState", "UNCOMPARED", "check_resume", "inputs_fingerprint",
           "load_state", "resume_path", "save_state", "settings_text"]
