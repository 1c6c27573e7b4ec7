"""The artist's and engine options that ``nst run`` and ``nst batch`` share: one definition.

:func:`with_run_options` appends these typer parameters to a command's signature (through
``__signature__``, which typer reads), so both commands offer the same ``--size``, ``--style-weight``,
``--preset``, ``--config``, ``--record``, ``--progress`` ... with the same help, and a new setting is
added once. The decorated function does not receive them as arguments: it reads them from
``ctx.params`` with :func:`command_line` (the ``{key: raw or None}`` that
:func:`nst_cli.settings.resolve` merges), :func:`config_file` and :func:`progress_mode`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
import functools
import inspect
from pathlib import Path
from typing import Annotated, Any

import typer

from nst_core import StyleConfig

from nst_cli.render import ProgressMode
from nst_cli.settings import SETTINGS

DEFAULTS = StyleConfig()

OUTPUT = "Output"
LOOK = "Strength, colour and masks"
SIZE = "Size, steps and optimiser"
WEIGHTS = "Weights"
LAYERS = "Layers and loss terms"
START = "Start, seed, device and precision"
FILES = "Presets, config files and run records"


def option(help: str, panel: str, *names: str, default: Any = None) -> Any:
    """A ``typer.Option`` defaulting to None ("not given"); ``default`` is StyleConfig's, shown in the help."""
    if default is not None:
        help = f"{help} Default: {default:g}." if isinstance(default, float) else f"{help} Default: {default}."
    return typer.Option(*names, help=help, show_default=False, rich_help_panel=panel)


def _shared(
    record: Annotated[bool | None, typer.Option(
        "--record/--no-record", show_default=False, rich_help_panel=FILES,
        help="Store the run record (settings, seed, versions, input paths) in the PNG's text and in OUT.json. "
             "Default: on.")] = None,
    preset: Annotated[str | None, option("Start from a preset (`nst list presets`); your options override it.",
                                         FILES)] = None,
    config: Annotated[Path | None, option("A TOML file with the long options as keys (size = 512, style-layers "
                                          "= [...]); command-line options override it.", FILES, "--config")] = None,
    strength: Annotated[float | None, option(
        "One slider from content (0) to style (1); 0.5 changes nothing. It multiplies the style weight "
        "(--style-weight, else the preset's or 1): weight = style-weight × 10^(4 × (strength − 0.5)), so "
        "0 → ÷100, 0.25 → ÷10, 0.75 → ×10, 1 → ×100. The GIMP dialog's strength slider is this × 100.",
        LOOK)] = None,
    preserve_color: Annotated[str | None, option(
        "Keep the content's colours: none; luminance (style only the brightness, Gatys et al. 2016); "
        "histogram (recolour the style images to the content's colours first).", LOOK,
        default=DEFAULTS.preserve_color)] = None,
    mask: Annotated[list[str] | None, option(
        "Where a style applies: a grey or alpha image, white/opaque = style, black/transparent = content, soft "
        "edges blend. Give one --mask per style image, in the same order; 'none' = the whole image. Outside "
        "every mask the content is kept.", LOOK, "--mask")] = None,
    size: Annotated[int | None, option("Longest side of the output in pixels.", SIZE, default=DEFAULTS.size)] = None,
    steps: Annotated[int | None, option("Optimiser steps per scale.", SIZE, default=DEFAULTS.steps)] = None,
    scales: Annotated[int | None, option("Coarse-to-fine scales. Default: as many as fit from --min-scale-size "
                                         "to --size.", SIZE)] = None,
    step_decay: Annotated[float | None, option("Steps of each finer scale relative to the one before, in (0, 1]: "
                                               "0.5 halves them at every scale (the large scales cost the most).",
                                               SIZE, default=DEFAULTS.step_decay)] = None,
    fit_memory: Annotated[bool | None, typer.Option(
        "--fit-memory/--no-fit-memory", show_default=False, rich_help_panel=SIZE,
        help="When --size does not fit the device's free memory, work at the largest size that does (a warning "
             "says how much smaller) instead of refusing. Default: off.")] = None,
    scale_factor: Annotated[float | None, option("Size ratio between scales.", SIZE,
                                                 default=DEFAULTS.scale_factor)] = None,
    min_scale_size: Annotated[int | None, option("Longest side of the coarsest scale.", SIZE,
                                                 default=DEFAULTS.min_scale_size)] = None,
    optimizer: Annotated[str | None, option("lbfgs or adam.", SIZE, default=DEFAULTS.optimizer)] = None,
    lr: Annotated[float | None, option("Learning rate. Default: 1 for lbfgs, 0.02 for adam.", SIZE)] = None,
    content_weight: Annotated[float | None, option("α, the weight of the content loss.", WEIGHTS,
                                                   default=DEFAULTS.content_weight)] = None,
    style_weight: Annotated[float | None, option("β, the weight of the style loss.", WEIGHTS,
                                                 default=DEFAULTS.style_weight)] = None,
    style_blend: Annotated[str | None, option("One weight per style image, comma separated (0.7,0.3). "
                                              "Default: equal.", WEIGHTS)] = None,
    tv_weight: Annotated[float | None, option("Total-variation weight (smoothness).", WEIGHTS,
                                              default=DEFAULTS.tv_weight)] = None,
    style_scale: Annotated[float | None, option("Style image size relative to the working size (bigger: larger "
                                                "brush strokes).", WEIGHTS, default=DEFAULTS.style_scale)] = None,
    backbone: Annotated[str | None, option("Feature network (`nst list backbones`).", LAYERS,
                                           default=DEFAULTS.backbone)] = None,
    pooling: Annotated[str | None, option("max or avg.", LAYERS, default=DEFAULTS.pooling)] = None,
    content_layers: Annotated[str | None, option("Comma-separated content layers (`nst list layers`). "
                                                 "Default: the backbone's (relu4_2).", LAYERS)] = None,
    style_layers: Annotated[str | None, option("Comma-separated style layers. Default: the backbone's "
                                               "(relu1_1 ... relu5_1).", LAYERS)] = None,
    layer_schedule: Annotated[str | None, option("How the style layers are weighted (`nst list schedules`).",
                                                 LAYERS, default=DEFAULTS.layer_schedule)] = None,
    layer_weights: Annotated[str | None, option("Explicit style layer weights instead of a schedule: "
                                                "relu1_1=0.5,relu2_1=0.5.", LAYERS)] = None,
    style_loss: Annotated[str | None, option("The style loss term (`nst list losses`).", LAYERS,
                                             default=DEFAULTS.style_loss)] = None,
    loss: Annotated[list[str] | None, option("Add a loss term, plug-in terms too: NAME[:WEIGHT][,key=value...], "
                                             "e.g. mean-color:0.5,power=1; layers=relu3_1+relu4_1 and "
                                             "schedule=NAME give the term its own layers. Repeatable.", LAYERS)] = None,
    init: Annotated[str | None, option("Starting image: content, noise, gray or an image path.", START,
                                       default=DEFAULTS.init)] = None,
    seed: Annotated[int | None, option("Random seed. Default: a new one, printed so the run can be repeated.",
                                       START)] = None,
    device: Annotated[str | None, option("auto, cpu, cuda, cuda:N or mps.", START, default=DEFAULTS.device)] = None,
    precision: Annotated[str | None, option("float32; or bf16 / fp16: the network runs in half precision "
                                            "(~3x faster where the chip computes it natively, less memory), the "
                                            "losses stay float32; auto: bf16 on such chips (CUDA Ampere or newer, "
                                            "CPUs with AMX or AVX512-BF16), else float32. The start line says "
                                            "which.", START, default=DEFAULTS.precision)] = None,
    on_oom: Annotated[str | None, option(
        "When the device runs out of memory mid-run: fail (a one-line error), or retry: switch on gradient "
        "checkpointing, then bf16, and go on from the best image so far (a warning says what changed).", START,
        default=DEFAULTS.on_oom)] = None,
    progress: Annotated[ProgressMode, typer.Option(help="rich (a bar), plain (lines), jsonl (JSON events on stdout) "
                                                   "or none. auto: rich on a terminal, else plain.",
                                                   rich_help_panel=OUTPUT)] = ProgressMode.auto,
) -> None:
    """The shared options, as typer reads them (never called)."""


PARAMETERS = tuple(inspect.signature(_shared, eval_str=True).parameters.values())
"""The shared options as :class:`inspect.Parameter` objects (keyword-only, each with a default)."""
NAMES = frozenset(parameter.name for parameter in PARAMETERS)


def with_run_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give ``command`` (whose first parameter is a ``typer.Context``) every shared option.

    The options are appended to the signature typer sees; the command itself is called with its
    own parameters only and reads the shared ones from ``ctx.params``.
    """
    own = inspect.signature(command, eval_str=True)
    clash = NAMES & set(own.parameters)
    assert not clash, f"{command.__name__} already declares {sorted(clash)}"

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return command(*args, **{name: value for name, value in kwargs.items() if name not in NAMES})

    shared = [parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY) for parameter in PARAMETERS]
    wrapper.__signature__ = own.replace(parameters=[*own.parameters.values(), *shared])  # type: ignore[attr-defined]
    return wrapper


def command_line(params: Mapping[str, Any]) -> dict[str, Any]:
    """``{key: raw value or None}`` of every setting the command declares (``ctx.params``)."""
    return {setting.key: params[setting.param] for setting in SETTINGS if setting.param in params}


def config_file(params: Mapping[str, Any]) -> Path | None:
    """``--config FILE`` (or None)."""
    return params["config"]


def progress_mode(params: Mapping[str, Any]) -> ProgressMode:
    """``--progress``."""
    return params["progress"]
