"""The GIMP-free half of the Neural Style Transfer plug-in: everything that can be tested without GIMP.

GIMP's own Python has no torch, so the plug-in runs the engine out of process::

    <python with nst_core> -u -m nst_cli run CONTENT.png STYLE.png -o OUT.png ... --progress jsonl

and reads one JSON object per line from its stdout (the event schema of ``nst run --progress jsonl``:
start, step, saved, warning, done, error). This module builds that argument list, finds the
interpreter, asks the engine for its presets and style losses (``nst list json``, plug-ins'
included) for the dialog, parses the events into progress text, turns failures into one readable line, writes
PNGs from raw pixel bytes, keeps private temp folders tidy and starts/stops the engine so that
GIMP's Cancel also ends it. It imports only the standard library (no ``gi``), so ordinary pytest
on any machine covers it (tests/test_gimp_bridge.py); nst-style-transfer.py is the thin GIMP side.

Engine discovery, first match wins:

1. the environment variable ``NST_GIMP_PYTHON`` (an absolute path to a Python that has nst_core);
2. ``nst-engine.json`` next to this file, written by ``nst gimp install`` (``{"python": PATH}``).
"""

from __future__ import annotations

import array
import json
import math
import os
import re
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

PROC_NAME = "python-fu-nst-style-transfer"
ENV_PYTHON = "NST_GIMP_PYTHON"
CONFIG_NAME = "nst-engine.json"
TEMP_PREFIX = "gimp-nst-"
DEFAULT_QUALITY = "full"
DEVICES = ("auto", "cpu", "cuda", "mps")
PRESERVE_COLORS = ("none", "luminance", "histogram")
PRESET_NONE = "none"
"""The ``preset`` argument's "no preset": the engine's defaults (and the quality's size and steps)."""
DEFAULT_STYLE_LOSS = "gram"
"""The ``style-loss`` argument's default: the engine's own (Gatys et al. 2015), not passed on."""
STALE_AFTER_S = 24 * 3600
"""A temp folder whose owner process still exists is only removed after this long."""

# ---------------------------------------------------------------------------------------------
# Dialog values passed on as they are
# ---------------------------------------------------------------------------------------------

STRENGTH_DEFAULT = 50.0
"""The dialog's style strength is 0–100; the engine's ``--strength`` is that / 100 and does the
logarithmic mapping itself (nst_core.config.style_weight_for_strength: 50 keeps the style weight,
every 25 points is a factor of 10)."""
STYLE_SCALE_DEFAULT = 1.0
STYLE_SCALE_RANGE = (0.25, 4.0)
"""The dialog's style scale (``--style-scale``: the style image's size relative to the working
size; bigger means larger brush strokes)."""


def strength_fraction(strength: float) -> float:
    """The dialog's 0–100 strength as the engine's ``--strength`` (0–1), clamped."""
    return min(100.0, max(0.0, float(strength))) / 100.0


# ---------------------------------------------------------------------------------------------
# Quality presets: defined by what they produce at the layer's real size
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Quality:
    """A dialog preset. ``size`` is the longest working side (None: the layer's or selection's own
    size, as far as memory allows); ``steps`` run at the coarsest scale and each finer scale runs
    ``step_decay`` times the one before (the large scales cost the most and start from the
    upsampled result of the scale below, so they need fewer)."""

    label: str
    help: str
    size: int | None
    steps: int
    step_decay: float


QUALITIES: dict[str, Quality] = {
    "preview": Quality("Preview: a quick look at 512 px", "Works at 512 px (or the layer's size if smaller); "
                       "the result is scaled up to the layer", 512, 100, 0.5),
    "full": Quality("Full size: strokes at the layer's own resolution",
                    "Coarse to fine up to the layer's (or selection's) real size, as far as memory allows; "
                    "100 steps at the coarsest scale, half as many at each larger one", None, 100, 0.5),
    "full-detail": Quality("Full size, more detail (slower)",
                           "Like Full size with more steps at the large scales: 150 at the coarsest, "
                           "0.7\u00d7 as many at each larger one", None, 150, 0.7),
}
LONG_RUN_S = 600.0
"""Runs estimated longer than this (10 minutes) are confirmed in the dialog before they start."""


def working_size(quality: str, region_size: tuple[int, int], size_limit: int = 0) -> int:
    """The longest side the engine is asked for: the preset's (or the layer's own) size, capped by the
    dialog's size limit (0: none) and never above the region's own longest side (no upsampling)."""
    longest = max(region_size)
    preset = QUALITIES[quality].size or longest
    side = min(preset, longest)
    if size_limit > 0:
        side = min(side, size_limit)
    return max(16, side)


# ---------------------------------------------------------------------------------------------
# Finding the engine and building its argument list
# ---------------------------------------------------------------------------------------------


class BridgeError(Exception):
    """A problem the user can act on; ``str()`` is one line shown in GIMP's error message."""


@dataclass(frozen=True)
class EngineLocation:
    """The interpreter that runs the engine and where that choice came from (for messages)."""

    python: str
    source: str  # "NST_GIMP_PYTHON" or the config file's path


def read_engine_config(plugin_dir: str) -> dict:
    """The JSON object in ``plugin_dir/nst-engine.json`` ({} when the file does not exist)."""
    path = os.path.join(plugin_dir, CONFIG_NAME)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise BridgeError(f"cannot read {path}: {exc}; run 'nst gimp install' again") from None
    if not isinstance(data, dict):
        raise BridgeError(f"{path} does not hold a JSON object; run 'nst gimp install' again")
    return data


def find_engine(plugin_dir: str, environ: Mapping[str, str] | None = None) -> EngineLocation:
    """Which Python runs the engine: ``$NST_GIMP_PYTHON``, else the one ``nst gimp install`` recorded."""
    environ = os.environ if environ is None else environ
    override = environ.get(ENV_PYTHON, "").strip()
    if override:
        return EngineLocation(override, ENV_PYTHON)
    python = read_engine_config(plugin_dir).get("python")
    if not python:
        raise BridgeError(
            "the plug-in does not know which Python runs the engine: run 'nst gimp install' in the "
            f"environment where nst-core is installed, or set {ENV_PYTHON} to that Python")
    return EngineLocation(str(python), os.path.join(plugin_dir, CONFIG_NAME))


@dataclass(frozen=True, kw_only=True)
class EngineRequest:
    """One ``nst run``: file paths plus the dialog's settings (0 means "the preset's value").

    ``region_size`` is the ``(width, height)`` of the pixels sent (the layer, or the selection's
    box plus margin): the full-size presets work at it. ``mask``: a grey PNG, white where the
    style goes and fading to black at the region's edge (see :func:`fade_mask`), or None.
    """

    content: str
    style: str
    output: str
    region_size: tuple[int, int] = (512, 512)
    quality: str = DEFAULT_QUALITY
    strength: float = STRENGTH_DEFAULT
    size: int = 0
    steps: int = 0
    seed: int = 0
    device: str = "auto"
    preserve_color: str = "none"
    style_scale: float = STYLE_SCALE_DEFAULT
    mask: str | None = None
    preset: str = PRESET_NONE
    style_loss: str = DEFAULT_STYLE_LOSS

    def __post_init__(self) -> None:
        check_name("preset", self.preset)
        check_name("style loss", self.style_loss)
        if self.quality not in QUALITIES:
            raise BridgeError(f"unknown quality preset {self.quality!r}; use one of {', '.join(QUALITIES)}")
        if len(self.region_size) != 2 or min(self.region_size) < 1:
            raise BridgeError(f"region size must be two positive numbers, got {self.region_size!r}")
        if self.device not in DEVICES:
            raise BridgeError(f"unknown device {self.device!r}; use one of {', '.join(DEVICES)}")
        if self.preserve_color not in PRESERVE_COLORS:
            raise BridgeError(f"unknown colour mode {self.preserve_color!r}; use one of {', '.join(PRESERVE_COLORS)}")
        for name in ("size", "steps", "seed"):
            if getattr(self, name) < 0:
                raise BridgeError(f"{name} must be >= 0, got {getattr(self, name)}")
        low, high = STYLE_SCALE_RANGE
        if not low <= self.style_scale <= high:
            raise BridgeError(f"style scale must be from {low:g} to {high:g}, got {self.style_scale:g}")


_NAME = re.compile(r"[^\s\x00-\x1f\x7f-][^\s\x00-\x1f\x7f]*")
"""A name the engine could have registered: no whitespace or control characters, and not starting
with ``-`` (it is passed as the value of ``--preset`` / ``--style-loss`` and must not read as an option)."""


def check_name(kind: str, name: object) -> None:
    """Raise :class:`BridgeError` unless ``name`` can be passed on; whether the engine knows it is
    the engine's to say (its one-line ``unknown preset ...`` error reaches the user)."""
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        raise BridgeError(f"{kind} {name!r} is not a name; give one that 'nst list presets' or 'nst list losses' "
                          "shows")


def size_options(request: EngineRequest) -> list[str]:
    """``--size --steps --step-decay --fit-memory``: the working size and steps of ``request``'s
    quality preset (the dialog's size and steps override it; 0 = the preset's), and always
    ``--fit-memory``, so that the engine stops at the largest size that fits and says so."""
    quality = QUALITIES[request.quality]
    return ["--size", str(working_size(request.quality, request.region_size, request.size)),
            "--steps", str(request.steps or quality.steps),
            "--step-decay", f"{quality.step_decay:g}",
            "--fit-memory"]


def build_argv(python: str, request: EngineRequest) -> list[str]:
    """The engine's argument list (no shell is involved, so no quoting issues with odd paths).

    Strength (as 0–1: the engine maps it to a style weight), style scale and the size options
    are always passed; options left at their default ("auto", "none", "gram") are not passed at
    all, so a ``--preset`` that sets its own colour mode or style loss keeps it. The preset's own
    size and steps are replaced by the quality's (``nst run``: your options override the preset).
    """
    argv = [python, "-u", "-m", "nst_cli", "run", request.content, request.style,
            "-o", request.output,
            "--strength", f"{strength_fraction(request.strength):.6g}",
            "--style-scale", f"{request.style_scale:.6g}",
            "--seed", str(request.seed),
            "--progress", "jsonl",
            *size_options(request)]
    if request.device != "auto":
        argv += ["--device", request.device]
    if request.preserve_color != "none":
        argv += ["--preserve-color", request.preserve_color]
    if request.mask:
        argv += ["--mask", request.mask]
    if request.preset != PRESET_NONE:
        argv += ["--preset", request.preset]
    if request.style_loss != DEFAULT_STYLE_LOSS:
        argv += ["--style-loss", request.style_loss]
    return argv


def build_estimate_argv(python: str, request: EngineRequest) -> list[str]:
    """``nst gimp estimate W H ...``: the same sizes, steps and preset as :func:`build_argv`, nothing run."""
    width, height = request.region_size
    preset = ["--preset", request.preset] if request.preset != PRESET_NONE else []
    return [python, "-u", "-m", "nst_cli", "gimp", "estimate", str(width), str(height),
            *size_options(request), "--device", request.device, *preset]


@dataclass(frozen=True)
class Estimate:
    """What ``nst gimp estimate`` answered (see plugins/cli/nst_cli/estimate.py)."""

    device: str
    precision: str
    sizes: tuple[tuple[int, int], ...]
    steps: tuple[int, ...]
    output: tuple[int, int]
    content: tuple[int, int]
    upscale: float
    seconds: float | None
    notes: tuple[str, ...] = ()

    @property
    def long(self) -> bool:
        return self.seconds is not None and self.seconds > LONG_RUN_S


def parse_estimate(stdout: str) -> Estimate:
    """The last JSON line of ``nst gimp estimate``'s output; raises BridgeError on an error answer."""
    for line in reversed(stdout.strip().splitlines()):
        if line.strip().startswith("{"):
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if not isinstance(data, dict):
                continue
            if data.get("error"):
                raise BridgeError(one_line(str(data["error"])))
            try:
                return Estimate(str(data["device"]), str(data["precision"]), _sizes(data["sizes"]),
                                tuple(int(n) for n in data["steps"]), tuple(data["output"]),
                                tuple(data["content"]), float(data["upscale"]),
                                None if data.get("seconds") is None else float(data["seconds"]),
                                tuple(str(n) for n in data.get("notes", ())))
            except (KeyError, TypeError, ValueError):
                break
    raise BridgeError("the engine gave no estimate (plug-in and nst-core versions differ? run 'nst gimp install' "
                      "again)")


def describe_estimate(estimate: Estimate) -> str:
    """Two or three lines for the dialog: the working sizes, the result against the layer, the time."""
    sizes = " \u2192 ".join(f"{w}\u00d7{h}" for w, h in estimate.sizes)
    steps = "/".join(str(n) for n in estimate.steps)
    lines = [f"Works at {sizes} px ({steps} steps)"]
    cw, ch = estimate.content
    if estimate.upscale > 1.001:
        why = " (memory)" if any("memory" in n for n in estimate.notes) else ""
        lines.append(f"Result {estimate.output[0]}\u00d7{estimate.output[1]}, scaled up "
                     f"\u00d7{estimate.upscale:.2g} to {cw}\u00d7{ch}{why}")
    else:
        lines.append(f"Result at full size, {cw}\u00d7{ch}")
    where = f"{estimate.device} ({estimate.precision})"
    if estimate.seconds is None:
        lines.append(f"On {where}")
    else:
        lines.append(f"About {format_duration(estimate.seconds) or '?'} on {where}"
                     + (": a long run, you will be asked to confirm" if estimate.long else ""))
    return "\n".join(lines)


def estimate_run(engine: EngineLocation, request: EngineRequest, *, timeout: float = 300.0,
                 environ: Mapping[str, str] | None = None) -> Estimate:
    """Ask the engine for the plan and time of ``request`` (synchronously; the first call on a
    machine measures the device, later ones take as long as starting Python with torch)."""
    argv = sandbox_argv(build_estimate_argv(engine.python, request), environ=environ)
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, encoding="utf-8",
                              errors="replace", timeout=timeout, env=engine_environment(environ),
                              **windows_popen_options())
    except OSError as exc:
        raise BridgeError(start_failure_message(exc, engine)) from None
    except subprocess.TimeoutExpired:
        raise BridgeError(f"the engine did not estimate the run within {timeout:.0f} s") from None
    try:
        return parse_estimate(proc.stdout)
    except BridgeError:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip(_BOX_CHARS)]
        tail = [ln for ln in lines if not _TRACEBACK_NOISE.match(ln)] or lines
        if proc.returncode != 0 and tail and not proc.stdout.strip():
            reason = one_line(tail[-1].strip(_BOX_CHARS))
            raise BridgeError(f"the engine could not estimate the run: {reason}") from None
        raise


def engine_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The engine's environment: GIMP's, minus variables that point Python at GIMP's own Python.

    GIMP's bundles for Windows and macOS set PYTHONHOME/PYTHONPATH for their embedded Python; a
    virtualenv's interpreter would then load the wrong standard library.
    """
    env = dict(os.environ if environ is None else environ)
    for name in ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONEXECUTABLE"):
        env.pop(name, None)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("PYTHONIOENCODING", "utf-8")
    return env


# ---------------------------------------------------------------------------------------------
# The engine's presets and style losses (built-in and from plug-ins), for the dialog
# ---------------------------------------------------------------------------------------------

LIST_FORMAT = "nst-list/1"
LIST_TIMEOUT_S = 60.0
"""``nst list json`` imports torch and loads the plug-ins (2–5 s); a minute covers a cold disk."""
QUALITY_FIELDS = frozenset({"size", "steps", "step_decay", "fit_memory"})
"""Preset fields that the dialog's Quality (and its Advanced size and steps) always set: a preset
that sets nothing else (``fast``, ``balanced``, ``best``) would change nothing in the filter, so
the dialog does not offer it; a script can still pass it."""
FALLBACK_PRESETS = ("gatys-2015", "soft", "bold", "keep-colors", "painterly")
FALLBACK_STYLE_LOSSES = ("gram", "mean-std", "wasserstein", "histogram", "mrf")
"""The engine's built-in presets the dialog offers (not the size-only ones) and its built-in style
losses, shown until the engine answers or when it cannot be asked (tests/test_gimp_bridge.py
checks them against what the engine itself lists)."""
PLUGIN_PROBLEM = re.compile(r"""plug-in (?:'[^']*'|"[^"]*") \(""")
"""How every plug-in problem line of nst_core names its plug-in: ``plug-in 'NAME' (DIST VERSION)``."""


@dataclass(frozen=True)
class EngineName:
    """A preset or loss term the engine knows. ``distribution`` is what run records say:
    ``"built-in"`` or the plug-in's ``"DISTRIBUTION VERSION"``; ``sets`` is a preset's
    ``(field, value)`` pairs (None: not known, as for the built-in names shown before the engine
    answers)."""

    name: str
    description: str = ""
    distribution: str = "built-in"
    sets: tuple[tuple[str, str], ...] | None = None

    @property
    def builtin(self) -> bool:
        return self.distribution == "built-in"

    @property
    def label(self) -> str:
        """What the dialog's list shows: the name, and the distribution of a plug-in's."""
        return self.name if self.builtin else f"{self.name} (plug-in {self.distribution})"

    @property
    def help(self) -> str:
        """The description, and what a preset sets, as command-line options."""
        options = " ".join(f"--{key.replace('_', '-')} {value}" for key, value in self.sets or ())
        return "; ".join(part for part in (self.description, f"sets {options}" if options else "") if part)


NO_PRESET = EngineName(PRESET_NONE, "the engine's own settings; the quality sets the size and steps")


@dataclass(frozen=True)
class EngineChoices:
    """What the dialog offers for ``preset`` and ``style-loss``, from ``nst list json``.

    ``problems``: the engine's plug-in problem lines (each names its plug-in); ``note``: why only
    the built-in names are offered (the engine could not be asked), else None.
    """

    presets: tuple[EngineName, ...]
    style_losses: tuple[EngineName, ...]
    problems: tuple[str, ...] = ()
    note: str | None = None

    def dialog_presets(self) -> tuple[EngineName, ...]:
        """"none" first, then every preset that sets more than the quality already does (or whose
        settings are not known)."""
        return (NO_PRESET, *(p for p in self.presets if p.name != PRESET_NONE
                             and (p.sets is None or {key for key, _ in p.sets} - QUALITY_FIELDS)))

    def status(self) -> str:
        """One or two lines for the dialog: the fallback's reason, and each plug-in problem."""
        lines = [self.note] if self.note else []
        lines += [f"Plug-in problem (its names are missing; 'nst plugins' tells more): {p}" for p in self.problems]
        return "\n".join(lines)


def fallback_choices(reason: str) -> EngineChoices:
    """The built-in names, with the one line saying why the engine's own list is not shown."""
    return EngineChoices(tuple(EngineName(n) for n in FALLBACK_PRESETS),
                         tuple(EngineName(n) for n in FALLBACK_STYLE_LOSSES),
                         note=f"Showing the built-in presets and style losses only: {one_line(reason, 300)}")


def build_list_argv(python: str) -> list[str]:
    """``nst list json``: every registered name, with the distribution providing it."""
    return [python, "-u", "-m", "nst_cli", "list", "json"]


def _engine_names(items: object, keep: Callable[[Mapping], bool] = lambda item: True) -> tuple[EngineName, ...]:
    if not isinstance(items, list):
        raise ValueError("not a list")
    names = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not keep(item):
            continue
        sets = item.get("sets")
        pairs = tuple((str(k), str(v)) for k, v in sets.items()) if isinstance(sets, dict) else None
        names.append(EngineName(item["name"], one_line(str(item.get("description") or "")),
                                str(item.get("distribution") or "built-in"), pairs))
    return tuple(names)


def parse_choices(stdout: str) -> EngineChoices:
    """The presets, style losses (role "style") and plug-in problems of ``nst list json``'s
    output (its last JSON line); raises :class:`BridgeError` when there is none."""
    for line in reversed(stdout.strip().splitlines()):
        if not line.strip().startswith("{"):
            continue
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if not isinstance(data, dict) or data.get("format") != LIST_FORMAT:
            continue
        try:
            presets = _engine_names(data["presets"])
            losses = _engine_names(data["loss_terms"], lambda item: item.get("role") == "style")
        except (KeyError, ValueError):
            break
        problems = data.get("problems") if isinstance(data.get("problems"), list) else []
        return EngineChoices(presets, losses, tuple(one_line(str(p)) for p in problems))
    raise BridgeError("the engine did not list its presets and style losses (plug-in and nst-core versions "
                      "differ? run 'nst gimp install' again)")


def choices_from_output(returncode: int | None, stdout: str, stderr: str) -> EngineChoices:
    """The engine's list from a finished ``nst list json``, or the built-in names with the reason
    (the last telling line of its stderr when it failed). Never raises."""
    try:
        return parse_choices(stdout)
    except BridgeError as exc:
        lines = [ln for ln in (stderr or "").splitlines() if ln.strip(_BOX_CHARS)]
        tail = [ln for ln in lines if not _TRACEBACK_NOISE.match(ln)] or lines
        if returncode not in (0, None) and tail:
            return fallback_choices(f"the engine could not list them: {tail[-1].strip(_BOX_CHARS)}")
        return fallback_choices(str(exc))


def list_choices(engine: EngineLocation | None, *, timeout: float = LIST_TIMEOUT_S,
                 environ: Mapping[str, str] | None = None) -> EngineChoices:
    """Ask the engine (synchronously) for its presets and style losses; on any failure the
    built-in names with one line saying why. The dialog asks the same command in the background
    (nst-style-transfer.py, ChoicesView), so a plug-in installed after ``nst gimp install`` shows
    up at the next dialog without installing the filter again."""
    if engine is None:
        return fallback_choices("the plug-in does not know which Python runs the engine (run 'nst gimp install')")
    argv = sandbox_argv(build_list_argv(engine.python), environ=environ)
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, encoding="utf-8",
                              errors="replace", timeout=timeout, env=engine_environment(environ),
                              **windows_popen_options())
    except OSError as exc:
        return fallback_choices(f"cannot start the engine's Python {engine.python!r} ({exc.strerror or exc})")
    except subprocess.TimeoutExpired:
        return fallback_choices(f"the engine did not answer within {timeout:.0f} s")
    return choices_from_output(proc.returncode, proc.stdout, proc.stderr)


def is_plugin_problem(message: str, known: Sequence[str] = ()) -> bool:
    """True for a warning that reports a broken plug-in (``nst run`` repeats them at every run):
    one of the ``known`` problem lines of the listing, or any line naming ``plug-in 'NAME' (``."""
    return one_line(message) in {one_line(line) for line in known} or PLUGIN_PROBLEM.search(message) is not None


def run_warnings(warnings: Sequence[str], known_problems: Sequence[str] = ()) -> list[str]:
    """The warnings worth showing after a run: the run's own (memory, masks, recoveries), without
    the plug-in problems, which the dialog already states once, next to the names they concern."""
    return [w for w in warnings if not is_plugin_problem(w, known_problems)]


# ---------------------------------------------------------------------------------------------
# Flatpak: the engine runs on the host, through flatpak-spawn --host
# ---------------------------------------------------------------------------------------------

FLATPAK_APP = "org.gimp.GIMP"
FLATPAK_INFO = "/.flatpak-info"
FORWARDED_ENV = ("PYTHONUNBUFFERED", "PYTHONIOENCODING", "CUDA_VISIBLE_DEVICES")
"""Variables passed on to the host engine (besides every ``NST_*``): the host's session
environment is used there, not the sandbox's."""


def in_flatpak(environ: Mapping[str, str] | None = None, info_path: str = FLATPAK_INFO) -> bool:
    """True inside a Flatpak sandbox: ``$FLATPAK_ID`` is set or ``/.flatpak-info`` exists."""
    environ = os.environ if environ is None else environ
    return bool(environ.get("FLATPAK_ID")) or os.path.exists(info_path)


def sandbox_argv(argv: Sequence[str], *, workdir: str | None = None, environ: Mapping[str, str] | None = None,
                 info_path: str = FLATPAK_INFO) -> list[str]:
    """``argv`` as it must be started from here: unchanged outside a sandbox; inside Flatpak GIMP,
    on the host through ``flatpak-spawn --host`` (the sandbox has its own /usr and cannot run a
    host virtualenv). ``--watch-bus`` makes the host process end when the plug-in does (GIMP's
    Cancel); ``--directory`` and ``--env`` carry the working folder and the engine's variables,
    which the host command would not inherit. Needs the permission
    ``flatpak override --user --talk-name=org.freedesktop.Flatpak org.gimp.GIMP``.
    """
    environ = os.environ if environ is None else environ
    if not in_flatpak(environ, info_path):
        return list(argv)
    engine_env = engine_environment(environ)
    names = sorted({*FORWARDED_ENV, *(n for n in engine_env if n.startswith("NST_") and n != ENV_PYTHON)})
    wrapped = ["flatpak-spawn", "--host", "--watch-bus"]
    if workdir:
        wrapped.append(f"--directory={workdir}")
    wrapped += [f"--env={name}={engine_env[name]}" for name in names if name in engine_env]
    return wrapped + list(argv)


def sandbox_tempdir_base(environ: Mapping[str, str] | None = None, info_path: str = FLATPAK_INFO) -> str | None:
    """Where the private temp folders go: the system temp folder (None), or inside Flatpak the
    app's cache folder, ``~/.var/app/org.gimp.GIMP/cache``, which the host sees at the same path
    (the sandbox's /tmp is its own, invisible to the host engine)."""
    environ = os.environ if environ is None else environ
    if not in_flatpak(environ, info_path):
        return None
    cache = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".var", "app",
                                                           environ.get("FLATPAK_ID") or FLATPAK_APP, "cache")
    base = os.path.join(cache, "nst-gimp")
    os.makedirs(base, mode=0o700, exist_ok=True)
    return base


# ---------------------------------------------------------------------------------------------
# Windows: the engine in a Job object that kills it when the plug-in's handle closes
# ---------------------------------------------------------------------------------------------

CREATE_NO_WINDOW = 0x08000000
JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE = 0x00002000
JOB_OBJECT_EXTENDED_LIMIT_INFORMATION_CLASS = 9


def windows_popen_options(platform: str | None = None) -> dict:
    """Extra ``subprocess.Popen`` arguments on Windows: no console window for the engine."""
    platform = sys.platform if platform is None else platform
    return {"creationflags": CREATE_NO_WINDOW} if platform == "win32" else {}


def _job_structures():
    """The ctypes layout of JOBOBJECT_EXTENDED_LIMIT_INFORMATION (winnt.h), built on any OS
    (DWORD is spelt c_uint32: wintypes.DWORD is c_ulong, 8 bytes outside Windows)."""
    import ctypes

    dword = ctypes.c_uint32

    class IO_COUNTERS(ctypes.Structure):  # noqa: N801 - the Windows name
        _fields_ = [(name, ctypes.c_ulonglong) for name in (
            "ReadOperationCount", "WriteOperationCount", "OtherOperationCount",
            "ReadTransferCount", "WriteTransferCount", "OtherTransferCount")]

    class JOBOBJECT_BASIC_LIMIT_INFORMATION(ctypes.Structure):  # noqa: N801
        _fields_ = [("PerProcessUserTimeLimit", ctypes.c_longlong), ("PerJobUserTimeLimit", ctypes.c_longlong),
                    ("LimitFlags", dword), ("MinimumWorkingSetSize", ctypes.c_size_t),
                    ("MaximumWorkingSetSize", ctypes.c_size_t), ("ActiveProcessLimit", dword),
                    ("Affinity", ctypes.c_size_t), ("PriorityClass", dword),
                    ("SchedulingClass", dword)]

    class JOBOBJECT_EXTENDED_LIMIT_INFORMATION(ctypes.Structure):  # noqa: N801
        _fields_ = [("BasicLimitInformation", JOBOBJECT_BASIC_LIMIT_INFORMATION), ("IoInfo", IO_COUNTERS),
                    ("ProcessMemoryLimit", ctypes.c_size_t), ("JobMemoryLimit", ctypes.c_size_t),
                    ("PeakProcessMemoryUsed", ctypes.c_size_t), ("PeakJobMemoryUsed", ctypes.c_size_t)]

    return JOBOBJECT_EXTENDED_LIMIT_INFORMATION


class KillOnCloseJob:
    """A Windows Job object with JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE: every process assigned to it
    is killed when the last handle to the job closes, i.e. when the plug-in exits or GIMP's
    Cancel kills it (Windows has no process groups or parent-death signal for that).

    ``kernel32`` is ``ctypes.WinDLL("kernel32", use_last_error=True)`` on Windows; tests pass a
    stand-in that records the calls. The handle is deliberately never closed while the plug-in
    runs: its closing (by the OS, when the plug-in dies) is what kills the engine.
    """

    def __init__(self, kernel32=None) -> None:
        import ctypes

        if kernel32 is None:  # pragma: no cover - Windows only
            kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
        self.kernel32 = kernel32
        self.handle = kernel32.CreateJobObjectW(None, None)
        if not self.handle:
            raise OSError(f"CreateJobObjectW failed (error {_last_error()})")
        info = _job_structures()()
        info.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
        if not kernel32.SetInformationJobObject(self.handle, JOB_OBJECT_EXTENDED_LIMIT_INFORMATION_CLASS,
                                                ctypes.byref(info), ctypes.sizeof(info)):
            raise OSError(f"SetInformationJobObject failed (error {_last_error()})")

    def assign(self, process_handle: int) -> None:
        """Put the process (``Popen._handle``) into the job."""
        if not self.kernel32.AssignProcessToJobObject(self.handle, process_handle):
            raise OSError(f"AssignProcessToJobObject failed (error {_last_error()})")


def _last_error() -> int:
    import ctypes

    return getattr(ctypes, "get_last_error", lambda: 0)()


_JOB: KillOnCloseJob | None = None


def engine_job(platform: str | None = None, kernel32=None) -> KillOnCloseJob | None:
    """The plug-in's one kill-on-close job on Windows (made at first use), None elsewhere or when
    Windows refuses it (the engine then runs without it: Cancel leaves it running)."""
    global _JOB
    platform = sys.platform if platform is None else platform
    if platform != "win32":
        return None
    if _JOB is None:
        try:
            _JOB = KillOnCloseJob(kernel32)
        except OSError:
            return None
    return _JOB


# ---------------------------------------------------------------------------------------------
# Progress events
# ---------------------------------------------------------------------------------------------


def parse_event(line: str) -> dict | None:
    """One stdout line -> an event dict, or None for anything that is not a JSON event.

    Libraries sometimes print to stdout; such lines are ignored rather than fatal.
    """
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    if not isinstance(event, dict) or not isinstance(event.get("event"), str):
        return None
    return event


def format_duration(seconds: float | None) -> str:
    """``75`` -> ``"1 min 15 s"``; ``None``/NaN/negative -> ``""``."""
    if seconds is None:
        return ""
    try:
        seconds = float(seconds)
    except (TypeError, ValueError):
        return ""
    if not math.isfinite(seconds) or seconds < 0:
        return ""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@dataclass
class EngineEvents:
    """What the events of one run said so far; :meth:`feed` returns text for GIMP's progress bar."""

    total: int = 0
    step: int = 0
    device: str = ""
    precision: str = ""
    sizes: tuple[tuple[int, int], ...] = ()
    """The engine's plan: the working (width, height) of each scale, coarse to fine."""
    seed: int | None = None
    output: str | None = None
    record: str | None = None       # the run record's sidecar (.json), from the "done" event
    status: str | None = None       # the "done" event's status
    done_message: str = ""
    error: str | None = None        # the "error" event's message
    error_exit_code: int | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / self.total) if self.total else 0.0

    def feed(self, event: Mapping) -> str | None:
        """Record ``event``; return a new progress text, or None when the text need not change."""
        kind = event.get("event")
        if kind == "start":
            self.total = _int(event.get("total"), self.total)
            self.device = str(event.get("device") or "")
            self.precision = str(event.get("precision") or "")
            self.sizes = _sizes(event.get("sizes"))
            self.seed = _int(event.get("seed"), None)
            self.output = event.get("output") or self.output
            return self.start_text()
        if kind == "step":
            self.step = _int(event.get("step"), self.step)
            self.total = _int(event.get("total"), self.total)
            return self.step_text(event)
        if kind == "saved":
            self.output = event.get("path") or self.output
            return None
        if kind == "warning":
            message = one_line(str(event.get("message", "")))
            if message:
                self.warnings.append(message)
            return None
        if kind == "done":
            self.status = str(event.get("status") or "finished")
            self.done_message = one_line(str(event.get("message") or ""))
            self.output = event.get("output") or self.output
            self.record = event.get("record") if isinstance(event.get("record"), str) else self.record
            self.step = _int(event.get("steps"), self.step)
            return "Style transfer: done"
        if kind == "error":
            self.error = one_line(str(event.get("message") or "")) or "the engine reported an error"
            self.error_exit_code = _int(event.get("exit_code"), None)
            return None
        return None

    def start_text(self) -> str:
        """``Style transfer: 300 steps on cpu (bf16), 128×96 → 256×192``: the engine's plan."""
        text = f"Style transfer: starting {self.total} steps"
        if self.device:
            text += f" on {self.device}" + (f" ({self.precision})" if self.precision else "")
        if self.sizes:
            text += ", " + " \u2192 ".join(f"{w}\u00d7{h}" for w, h in self.sizes)
        return text

    def step_text(self, event: Mapping) -> str:
        text = f"Style transfer: step {self.step}/{self.total}"
        scales = _int(event.get("scales"), 1)
        if scales > 1:
            text += f", scale {_int(event.get('scale'), 1)}/{scales}"
        size = event.get("size")
        if isinstance(size, (list, tuple)) and len(size) == 2:
            text += f" ({size[0]}\u00d7{size[1]})"
        eta = format_duration(event.get("eta"))
        if eta and self.step < self.total:
            text += f", about {eta} left"
        return text


def _int(value, default):
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _sizes(value: object) -> tuple[tuple[int, int], ...]:
    """The start event's ``sizes`` ([[w, h], ...]) as pairs of ints; anything malformed: ()."""
    if not isinstance(value, (list, tuple)):
        return ()
    pairs = []
    for size in value:
        if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(v, int) for v in size)):
            return ()
        pairs.append((size[0], size[1]))
    return tuple(pairs)


def one_line(text: str, limit: int = 400) -> str:
    """Collapse whitespace to one line and cut it to ``limit`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------

_TRACEBACK_NOISE = re.compile(r"^(Traceback \(most recent call last\):|File \"|\s)")
_BOX_CHARS = " \t\u2500\u2502\u2501\u2503\u256d\u256e\u256f\u2570\u250c\u2510\u2514\u2518"
"""Rules and corners of the panels rich/typer draw around usage errors."""


def stderr_tail(path: str, max_bytes: int = 8192) -> str:
    """The most telling line at the end of the engine's stderr file ("" if none).

    For a Python traceback that is its last line (``ModuleNotFoundError: No module named ...``);
    for a usage error drawn in a box, the text inside the box.
    """
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [ln for ln in text.splitlines() if ln.strip(_BOX_CHARS)]
    meaningful = [ln for ln in lines if not _TRACEBACK_NOISE.match(ln)]
    return one_line((meaningful or lines or [""])[-1].strip(_BOX_CHARS))


EXIT_MEANINGS = {
    1: "the engine rejected the input",
    2: "the engine did not understand its arguments: plug-in and nst-core versions differ? "
       "Run 'nst gimp install' again",
    130: "the engine was interrupted",
    143: "the engine was stopped",
}


def failure_message(returncode: int | None, state: EngineEvents, stderr_line: str,
                    engine: EngineLocation | None) -> str:
    """One line for GIMP's error message: the engine's own words first, then what we know."""
    if state.error:
        return f"Neural style transfer failed: {state.error}"
    if stderr_line:
        message = f"Neural style transfer failed: {stderr_line}"
        if returncode == 2:
            message += f" ({EXIT_MEANINGS[2]})"
    elif returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        message = f"Neural style transfer failed: the engine was killed by {name}"
    else:
        meaning = EXIT_MEANINGS.get(returncode or 0, "the engine exited unexpectedly")
        message = f"Neural style transfer failed: {meaning} (exit code {returncode})"
    if engine is not None:
        message += f" [engine: {engine.python}, from {engine.source}]"
    return message


def start_failure_message(exc: OSError, engine: EngineLocation) -> str:
    """The engine's interpreter could not be started at all."""
    reason = exc.strerror or str(exc)
    return (f"Neural style transfer failed: cannot start the engine's Python {engine.python!r} "
            f"(from {engine.source}): {reason}. Run 'nst gimp install' again from the environment "
            f"that has nst-core, or set {ENV_PYTHON}")


# ---------------------------------------------------------------------------------------------
# Private temp folders
# ---------------------------------------------------------------------------------------------


TEMP_MARKER = ".nst-gimp-bridge"
"""A file the bridge writes into each temp folder it makes; only folders carrying it are cleaned."""
TEMP_MARKER_TEXT = "made by the nst GIMP filter; removed when its run ends\n"
TEMP_NAME = re.compile(re.escape(TEMP_PREFIX) + r"([1-9][0-9]{0,9})-[a-z0-9_]{8}")
"""Exactly the names :func:`make_private_tempdir` gives: ``gimp-nst-<pid>-<8 characters of mkdtemp>``."""


def make_private_tempdir(base: str | None = None) -> str:
    """A new folder ``gimp-nst-<pid>-XXXXXXXX`` (mode 0700) in ``base`` (default: the system temp
    dir), with the marker file that :func:`clean_stale_tempdirs` looks for."""
    path = tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", dir=base)
    with open(os.path.join(path, TEMP_MARKER), "w", encoding="utf-8") as handle:
        handle.write(TEMP_MARKER_TEXT)
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):  # no process can have this number: not a folder of ours
        return True
    except OSError:
        return False
    return True


def _has_marker(path: str) -> bool:
    """True when ``path`` holds the bridge's marker (a regular file with its text, not a link)."""
    marker = os.path.join(path, TEMP_MARKER)
    try:
        if not stat.S_ISREG(os.lstat(marker).st_mode):
            return False
        with open(marker, encoding="utf-8") as handle:
            return handle.read(len(TEMP_MARKER_TEXT) + 1) == TEMP_MARKER_TEXT
    except (OSError, UnicodeDecodeError):
        return False


def clean_stale_tempdirs(base: str | None = None, *, now: float | None = None,
                         max_age: float = STALE_AFTER_S, pid_alive: Callable[[int], bool] = _pid_alive) -> list[str]:
    """Remove temp folders left behind by runs that were killed (GIMP's Cancel SIGKILLs the
    plug-in, so its cleanup never runs). Only folders the bridge made are touched: the exact name
    :func:`make_private_tempdir` gives (``gimp-nst-<pid>-XXXXXXXX``), owned by this user, a real
    folder (not a link) and holding the bridge's marker file; such a folder is stale when the
    process that made it is gone, or when it is older than ``max_age``. A folder of the user's
    own that merely starts with ``gimp-nst-`` is never removed. Returns the removed paths."""
    base = base or tempfile.gettempdir()
    now = time.time() if now is None else now
    removed = []
    try:
        names = os.listdir(base)
    except OSError:
        return removed
    for name in names:
        match = TEMP_NAME.fullmatch(name)
        if match is None:
            continue
        path = os.path.join(base, name)
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            continue
        if hasattr(os, "getuid") and st.st_uid != os.getuid():
            continue
        if not _has_marker(path):
            continue
        owner_gone = not pid_alive(int(match.group(1)))
        if owner_gone or now - st.st_mtime > max_age:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


# ---------------------------------------------------------------------------------------------
# Running the engine
# ---------------------------------------------------------------------------------------------

PR_SET_PDEATHSIG = 1


def _child_setup() -> None:  # pragma: no cover - runs in the child between fork and exec
    """In the engine's process: die (SIGTERM) when the plug-in dies, even by SIGKILL (Linux only).

    GIMP's Cancel SIGKILLs the plug-in (or its process group, see :func:`become_group_leader`).
    SIGTERM lets the engine exit cleanly (it saves its best image and exits 143).
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except Exception:
        pass


def become_group_leader() -> None:
    """Put the plug-in into its own process group, which its engine child inherits.

    When GIMP cancels a plug-in that leads its own group, it kills the whole group
    (app/plug-in/gimpplugin.c, gimp_plug_in_close), so the engine dies with the plug-in.
    """
    if hasattr(os, "setpgid"):
        try:
            os.setpgid(0, 0)
        except OSError:
            pass


@dataclass
class EngineOutcome:
    returncode: int
    state: EngineEvents
    stderr_line: str


def run_engine(argv: Sequence[str], workdir: str, on_progress: Callable[[float, str | None], None],
               *, env: Mapping[str, str] | None = None, engine: EngineLocation | None = None) -> EngineOutcome:
    """Run the engine, calling ``on_progress(fraction, text_or_None)`` for every event.

    stdout is read line by line (the engine flushes each event); stderr goes to a file in
    ``workdir`` so that a chatty engine can never block on a full pipe. Raises
    :class:`BridgeError` if the interpreter cannot be started; otherwise returns its outcome
    (use :func:`outcome_error` to decide whether it failed).
    """
    stderr_path = os.path.join(workdir, "engine-stderr.txt")
    popen_kw: dict = windows_popen_options()
    if sys.platform.startswith("linux"):
        popen_kw["preexec_fn"] = _child_setup
    state = EngineEvents()
    job = engine_job()
    command = sandbox_argv(argv, workdir=workdir, environ=env)
    with open(stderr_path, "wb") as err:
        try:
            proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                                    cwd=workdir, env=engine_environment(env),
                                    text=True, encoding="utf-8", errors="replace", bufsize=1, **popen_kw)
        except OSError as exc:
            if command[0] != argv[0]:
                raise BridgeError(f"Neural style transfer failed: cannot start {command[0]!r} to run the engine "
                                  f"outside the Flatpak sandbox ({exc.strerror or exc}); run 'nst gimp doctor "
                                  f"--flatpak' on the host") from None
            raise BridgeError(start_failure_message(exc, engine or EngineLocation(argv[0], "argv"))) from None
        if job is not None:
            try:
                job.assign(int(proc._handle))  # type: ignore[attr-defined]  # Popen's process handle
            except OSError:
                pass  # it still runs; only Cancel cannot stop it
        try:
            for line in proc.stdout:
                event = parse_event(line)
                if event is None:
                    continue
                text = state.feed(event)
                on_progress(state.fraction, text)
        finally:
            proc.stdout.close()
            returncode = proc.wait()
    return EngineOutcome(returncode, state, stderr_tail(stderr_path))


def outcome_error(outcome: EngineOutcome, engine: EngineLocation | None = None) -> str | None:
    """None when the run produced an image to use, else the one-line error message.

    Exit 0 is success; exit 3 (the loss became non-finite) still saved the last finite image,
    which is used, with a warning recorded in ``state.warnings``.
    """
    state = outcome.state
    if outcome.returncode == 0 and state.error is None:
        return None
    if outcome.returncode == 3 and state.error is None and state.output:
        state.warnings.append(state.done_message or "the loss became non-finite; kept the last finite image")
        return None
    return failure_message(outcome.returncode, state, outcome.stderr_line, engine)


# ---------------------------------------------------------------------------------------------
# Pixels
# ---------------------------------------------------------------------------------------------


def write_png(path: str, width: int, height: int, data: bytes, *, channels: int = 4, bit_depth: int = 8,
              compress_level: int = 1) -> None:
    """Write raw interleaved pixels as a PNG (colour type RGBA/RGB/GA/G, 8 or 16 bit).

    ``data`` holds ``height`` rows of ``width * channels`` samples; 16-bit samples are in the
    machine's byte order (what GEGL returns for ``"R'G'B'A u16"``) and are written big-endian.
    """
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    if bit_depth not in (8, 16):
        raise ValueError("bit_depth must be 8 or 16")
    row_bytes = width * channels * bit_depth // 8
    if len(data) != row_bytes * height:
        raise ValueError(f"expected {row_bytes * height} bytes for {width}x{height}x{channels}@{bit_depth}, "
                         f"got {len(data)}")
    if bit_depth == 16 and sys.byteorder == "little":
        samples = array.array("H")
        samples.frombytes(data)
        samples.byteswap()
        data = samples.tobytes()
    raw = bytearray()
    view = memoryview(data)
    for y in range(height):
        raw.append(0)  # filter type None
        raw += view[y * row_bytes:(y + 1) * row_bytes]

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", header))
        f.write(chunk(b"IDAT", zlib.compress(bytes(raw), compress_level)))
        f.write(chunk(b"IEND", b""))


def replace_color_keep_alpha(original: bytes, stylised: bytes, bytes_per_sample: int) -> bytes:
    """RGBA pixels with the colour of ``stylised`` and the alpha of ``original`` (same format).

    Both are interleaved R, G, B, A samples of ``bytes_per_sample`` bytes each; the copy runs as
    strided slice assignments, in C, so a 12-megapixel layer takes well under a second.
    """
    if len(original) != len(stylised):
        raise ValueError(f"pixel buffers differ in size ({len(original)} != {len(stylised)})")
    stride = 4 * bytes_per_sample
    out = bytearray(original)
    for offset in range(3 * bytes_per_sample):
        out[offset::stride] = stylised[offset::stride]
    return bytes(out)


def work_region(layer_width: int, layer_height: int, selection: tuple[int, int, int, int] | None,
                margin: float = 0.1, min_margin: int = 16) -> tuple[int, int, int, int]:
    """The part of the layer the engine sees: ``(x, y, width, height)`` in layer coordinates.

    Without a selection (or one covering the layer) it is the whole layer. With one, it is the
    selection's bounding box (``(x, y, w, h)`` from ``Drawable.mask_intersect``) grown by a margin
    (``margin`` of its larger side, at least ``min_margin`` px) so the style has context at the edges,
    clipped to the layer: a small selection then gets the whole working size, not a sliver of it.
    """
    if selection is None:
        return 0, 0, layer_width, layer_height
    x, y, w, h = selection
    pad = max(min_margin, int(round(margin * max(w, h))))
    x0, y0 = max(0, x - pad), max(0, y - pad)
    x1, y1 = min(layer_width, x + w + pad), min(layer_height, y + h + pad)
    if x1 <= x0 or y1 <= y0:
        return 0, 0, layer_width, layer_height
    return x0, y0, x1 - x0, y1 - y0


def layer_name(style_label: str) -> str:
    """The new layer's name: the style's file stem or layer name, e.g. ``"starry_night (style transfer)"``."""
    stem = os.path.splitext(os.path.basename(style_label.rstrip("/\\")))[0] if style_label else ""
    return f"{stem or 'Style'} (style transfer)"



MASK_MAX_SIDE = 1024
"""The fade mask is written at most this large; the engine resizes it smoothly to its working sizes."""


def fade_weights(length: int, inner_start: int, inner_end: int, samples: int) -> list[float]:
    """``samples`` weights along one side of the region (``length`` px): 1 over the selection's
    extent ``[inner_start, inner_end)``, falling linearly to 0 at the region's edge across the
    margin; a side without margin (the region touches the layer's edge there) stays at 1."""
    weights = []
    for i in range(samples):
        p = (i + 0.5) * length / samples  # the sample's centre, in region pixels
        left = 1.0 if inner_start <= 0 else min(1.0, p / inner_start)
        right = 1.0 if inner_end >= length else min(1.0, (length - p) / (length - inner_end))
        weights.append(max(0.0, min(left, right)))
    return weights


def fade_mask(region: tuple[int, int, int, int], selection: tuple[int, int, int, int],
              layer_size: tuple[int, int] | None = None,
              max_side: int = MASK_MAX_SIDE) -> tuple[int, int, bytes] | None:
    """The engine's ``--mask`` for a selection: ``(width, height, 8-bit grey pixels)``, or None
    when there is nothing to fade.

    White over the selection's bounding box, fading linearly to black at the region's edge, so
    the stylised pixels blend into the untouched copy across the margin: however wide the layer
    mask is painted later, there is no step where the stylised area ends (the engine keeps the
    content where the mask is black: ``out = content + mask · (stylised − content)``). A side
    where the region reaches the layer's edge (``layer_size`` ``(w, h)``) does not fade: nothing
    lies beyond it. Written at most ``max_side`` px, with the region's aspect ratio.
    """
    x0, y0, width, height = region
    sx, sy, sw, sh = selection
    inner = [sx - x0, sx - x0 + sw, sy - y0, sy - y0 + sh]
    if layer_size is not None:  # no fade toward the layer's own edges
        layer_w, layer_h = layer_size
        if x0 <= 0:
            inner[0] = 0
        if x0 + width >= layer_w:
            inner[1] = width
        if y0 <= 0:
            inner[2] = 0
        if y0 + height >= layer_h:
            inner[3] = height
    if inner[0] <= 0 and inner[1] >= width and inner[2] <= 0 and inner[3] >= height:
        return None
    scale = min(1.0, max_side / max(width, height))
    mw, mh = max(1, round(width * scale)), max(1, round(height * scale))
    wx = bytes(round(255 * w) for w in fade_weights(width, inner[0], inner[1], mw))
    wy = fade_weights(height, inner[2], inner[3], mh)
    rows = bytearray()
    full = wx
    for w in wy:
        level = round(255 * w)
        rows += full if level == 255 else bytes(map(min, full, [level] * mw))
    return mw, mh, bytes(rows)
