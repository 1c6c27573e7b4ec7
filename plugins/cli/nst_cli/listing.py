"""``nst list ...`` and ``nst plugins``: what is installed, and where each name comes from.

Third-party entries are listed next to the built-ins with the plug-in and distribution that
registered them; plug-in problems are ``nst: warning:`` lines on stderr.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
import json
import os
from typing import Annotated, Any

import typer

from nst_core import LossSpec, NSTError, StyleConfig
from nst_core.hookspecs import HOOK_API_VERSION
from nst_core.planning import build_backbone, term_params
from nst_core.plugins import AUTOLOAD_ENV, DISABLE_ENV, get_plugin_manager
from nst_core.registry import Entry, Registry

from nst_cli import exit_codes, messages
from nst_cli.registries import load_registries
from nst_cli.tables import print_table

list_app = typer.Typer(
    name="list", no_args_is_help=True, pretty_exceptions_show_locals=False,
    help="List backbones, loss terms, layer schedules, presets or a backbone's layers.",
    epilog="[bold]Examples[/bold]\n\n  nst list losses\n\n  nst list layers --backbone vgg19\n\n"
           "  nst list presets | cut -f1   [dim](names only, when piped)[/dim]\n\n"
           "  nst list json   [dim](everything, for programs)[/dim]",
)


def _example(*lines: str) -> str:
    return "[bold]Examples[/bold]\n\n" + "\n\n".join(f"  {line}" for line in lines)


def source(entry: Entry) -> str:
    """``built-in``, or ``plug-in 'name' (distribution version)``."""
    if entry.distribution == "built-in":
        return "built-in"
    return f"plug-in {entry.plugin!r} ({entry.distribution})"


def _rows(registry: Registry, extra: Any = None) -> list[list[str]]:
    return [[entry.name, *([extra(entry)] if extra else []), entry.description, source(entry)]
            for entry in registry]


def _settings(settings: Mapping[str, Any]) -> str:
    return " ".join(f"--{key.replace('_', '-')} {value}" for key, value in settings.items())


@list_app.command("backbones", epilog=_example("nst list backbones"))
def list_backbones() -> None:
    """Feature networks for --backbone (the default is vgg19, shipped offline)."""
    registry = load_registries(messages.warn).backbones
    print_table(["name", "description", "from"], _rows(registry), title="backbones (--backbone)")


@list_app.command("losses", epilog=_example("nst list losses"))
def list_losses() -> None:
    """Loss terms for --style-loss and --loss, with their role (content, style or image) and parameters.

    A "style" term can be the --style-loss; any term can be added with --loss NAME:WEIGHT, and its
    parameters set with --loss NAME:WEIGHT,key=value,... (checked against the types shown).
    """
    registries = load_registries(messages.warn)
    rows = []
    for entry in registries.loss_terms:
        try:
            params = term_params(entry.name, registries).describe()
        except NSTError as exc:
            messages.warn(str(exc))
            params = "(declared wrongly)"
        rows.append([entry.name, _role(entry), params, entry.description, source(entry)])
    print_table(["name", "role", "parameters", "description", "from"], rows, title="loss terms (--style-loss, --loss)")


@list_app.command("schedules", epilog=_example("nst list schedules"))
def list_schedules() -> None:
    """Layer-weight schedules for --layer-schedule."""
    registry = load_registries(messages.warn).schedules
    print_table(["name", "description", "from"], _rows(registry), title="layer schedules (--layer-schedule)")


@list_app.command("presets", epilog=_example("nst list presets"))
def list_presets() -> None:
    """Presets for --preset, with the options each one sets (your own options override them)."""
    registry = load_registries(messages.warn).presets
    rows = _rows(registry, lambda entry: _settings(entry.obj))
    print_table(["name", "sets", "description", "from"], rows, title="presets (--preset)")


@list_app.command("layers", epilog=_example("nst list layers", "nst list layers --backbone vgg16-torchvision"))
def list_layers(
    backbone: Annotated[str, typer.Option(help="The backbone whose layers to list.")] = StyleConfig().backbone,
) -> None:
    """The layer names of a backbone, with channels, for --content-layers, --style-layers and
    --layer-weights; the defaults are marked."""
    registries = load_registries(messages.warn)
    net = build_backbone(StyleConfig(backbone=backbone), registries)
    rows = []
    for name in net.layer_names:
        marks = [role for role, layers in (("content", net.default_content_layers),
                                           ("style", net.default_style_layers)) if name in layers]
        rows.append([name, str(net.channels[name]), " ".join(f"default {m}" for m in marks)])
    print_table(["layer", "channels", "default"], rows, title=f"layers of {backbone}")


LIST_FORMAT = "nst-list/1"


def _value_text(value: Any) -> str:
    """A preset's value as the command line spells it: ``LossSpec`` -> ``name:weight[,key=value]``."""
    if isinstance(value, LossSpec):
        params = "".join(f",{key}={param}" for key, param in value.params.items())
        return f"{value.name}:{value.weight:g}{params}"
    if isinstance(value, (tuple, list)):
        return " ".join(_value_text(item) for item in value)
    return str(value)


def _entry_json(entry: Entry, **extra: Any) -> dict[str, Any]:
    """One registered name: ``distribution`` is what run records say (``"built-in"`` or
    ``"NAME VERSION"`` of the plug-in's distribution)."""
    return {"name": entry.name, "description": entry.description, "plugin": entry.plugin,
            "distribution": entry.distribution, **extra}


def _role(entry: Entry) -> str:
    role = getattr(entry.obj, "role", "")  # the class attribute; a factory function has none until called
    return role if isinstance(role, str) else ""


@list_app.command("json", epilog=_example("nst list json", "nst list json | python -m json.tool"))
def list_json() -> None:
    """Every backbone, loss term, layer schedule and preset, with the plug-in and distribution that
    provides each, and every plug-in problem: one JSON object on stdout, for programs (the GIMP
    filter's dialog lists its presets and style losses from it).

    ``{"format": "nst-list/1", "presets": [{"name", "description", "plugin", "distribution",
    "sets": {field: value}}], "loss_terms": [{..., "role"}], "backbones": [...], "schedules": [...],
    "plugins": [{"name", "distribution", "version", "error"}], "problems": [line, ...]}``.
    Exits 0 even when a plug-in failed (the problems are in the object, and warnings on stderr).
    """
    pm = get_plugin_manager()
    registries = load_registries(messages.warn, pm)
    out = {
        "format": LIST_FORMAT,
        "hook_api": list(HOOK_API_VERSION),
        "presets": [_entry_json(e, sets={key: _value_text(value) for key, value in e.obj.items()})
                    for e in registries.presets],
        "loss_terms": [_entry_json(e, role=_role(e)) for e in registries.loss_terms],
        "backbones": [_entry_json(e) for e in registries.backbones],
        "schedules": [_entry_json(e) for e in registries.schedules],
        "plugins": [{"name": info.name, "distribution": info.distribution, "version": info.version,
                     "error": info.error} for info in pm.third_party],
        "problems": list(registries.problems),
    }
    typer.echo(json.dumps(out))


def _provided(registries: Any, plugin: str) -> str:
    registries_by_kind: Iterable[Registry] = (registries.backbones, registries.loss_terms, registries.schedules,
                                              registries.presets)
    names = [f"{registry.kind} {entry.name}" for registry in registries_by_kind for entry in registry
             if entry.plugin == plugin and entry.distribution != "built-in"]
    return ", ".join(names) or "-"


def plugins(
    json_output: Annotated[bool, typer.Option("--json", help="One JSON object on stdout: every plug-in, what it "
                                                             "adds, and every problem.")] = False,
) -> None:
    """Installed third-party plug-in distributions, their versions, what they add and load failures.

    Plug-ins are packages with an entry point in the "nst_core" group. Set NST_DISABLE_PLUGINS=name
    to skip one, or NST_DISABLE_PLUGIN_AUTOLOAD=1 to load none. Exits with 1 when a plug-in
    failed (each failure is a warning line on stderr), 0 otherwise.
    """
    pm = get_plugin_manager()
    registries = load_registries(messages.warn, pm)
    if json_output:
        _plugins_json(pm, registries)
    else:
        _plugins_table(pm, registries)
    if registries.problems:
        raise typer.Exit(exit_codes.USER_ERROR)


def _plugins_table(pm: Any, registries: Any) -> None:
    rows = [[info.name, info.distribution, info.version, info.module,
             "failed to load" if info.error else _provided(registries, info.name)]
            for info in pm.third_party]
    if os.environ.get(AUTOLOAD_ENV, "") not in ("", "0"):
        messages.say(f"{AUTOLOAD_ENV} is set: third-party plug-ins are not loaded")
    elif os.environ.get(DISABLE_ENV):
        messages.say(f"{DISABLE_ENV}={os.environ[DISABLE_ENV]}: these plug-ins are skipped")
    if not rows:
        messages.say("no third-party plug-ins are installed (packages with an 'nst_core' entry point)")
        return
    print_table(["plug-in", "distribution", "version", "module", "adds"], rows, title="third-party plug-ins")


def _plugins_json(pm: Any, registries: Any) -> None:
    """``{"hook_api": [1, 0], "plugins": [...], "problems": [...]}`` on stdout (one line)."""
    kinds = (("backbone", registries.backbones), ("loss term", registries.loss_terms),
             ("layer schedule", registries.schedules), ("preset", registries.presets))
    out = {
        "hook_api": list(HOOK_API_VERSION),
        "autoload": os.environ.get(AUTOLOAD_ENV, "") in ("", "0"),
        "plugins": [{"name": info.name, "distribution": info.distribution, "version": info.version,
                     "module": info.module, "error": info.error,
                     "provides": [{"kind": kind, "name": entry.name} for kind, registry in kinds
                                  for entry in registry if entry.plugin == info.name
                                  and entry.distribution != "built-in"]}
                    for info in pm.third_party],
        "problems": list(registries.problems),
    }
    typer.echo(json.dumps(out))
