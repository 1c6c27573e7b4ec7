"""Each setting is declared in three places (StyleConfig's field, SETTINGS, the typer options of
`nst run`); these tests fail as soon as the three disagree, and pin the allowed values of the
choice settings to the engine's Literal types."""

from __future__ import annotations

import dataclasses
import typing

import typer.main

from nst_core import StyleConfig
from nst_core import config as config_module

from nst_cli.app import app
from nst_cli.settings import RUN_FIELDS, SETTINGS

NOT_ON_THE_COMMAND_LINE = {"losses", "checkpoint"}
"""StyleConfig fields only the Python API and config records set (--loss covers extra_losses)."""
COMMAND_LINE_ONLY = {"output", "content", "styles", "resume", "from_record", "config", "progress"}
"""Options of `nst run` that are about the command, not settings of the run."""


def run_command_params() -> dict[str, object]:
    group = typer.main.get_command(app)
    return {param.name: param for param in group.commands["run"].params}


def test_every_config_field_is_a_setting():
    fields = {f.name for f in dataclasses.fields(StyleConfig)}
    declared = {setting.field for setting in SETTINGS}
    assert fields - declared - NOT_ON_THE_COMMAND_LINE == set()
    assert declared - fields == set(RUN_FIELDS)


def test_every_setting_is_an_option_of_nst_run_and_back():
    params = run_command_params()
    assert {setting.param for setting in SETTINGS} == set(params) - COMMAND_LINE_ONLY
    for setting in SETTINGS:
        assert f"--{setting.key}" in params[setting.param].opts


def test_choice_settings_are_the_engine_literals():
    hints = typing.get_type_hints(StyleConfig)
    for name, literal in [("pooling", config_module.Pooling), ("optimizer", config_module.Optimizer),
                          ("init", config_module.Init), ("preserve_color", config_module.ColorMode),
                          ("precision", config_module.Precision), ("on_oom", config_module.OnOOM)]:
        assert hints[name] == literal
        for value in typing.get_args(literal):
            assert getattr(StyleConfig(**{name: value}), name) == value
