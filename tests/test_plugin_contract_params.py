"""Typed loss-term parameters (nst_core.params): declared by a ``Params`` dataclass or the
factory's annotated signature, shown by ``nst list losses``, and checked the same way from the API,
``--loss``, a TOML config and a preset; ``stylize(preset=...)``; run records name the plug-in and
distribution of every name they use."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
import warnings

import pytest

import nst_core
from nst_core import LossSpec, LossTerm, StyleConfig, collect_registries, get_plugin_manager, hookimpl
from nst_core.errors import ConfigError, PluginWarning
from nst_core.params import check_params, param_spec

from helpers import CONTENT, STYLE, install_plugin, nst


class Shaped(LossTerm):
    """An image term with declared parameters."""

    role = "image"

    @dataclass
    class Params:
        mode: Literal["mean", "max"] = field(default="mean", metadata={"help": "how to reduce"})
        power: float = field(default=2.0, metadata={"help": "exponent", "min": 0.5, "max": 4})
        taps: int = 3

    def __init__(self, mode: str = "mean", power: float = 2.0, taps: int = 3) -> None:
        self.mode, self.power, self.taps = mode, power, taps

    def bind(self, targets):
        def loss(image, features, layer_weights):
            d = (image - 0.5).abs().pow(self.power)
            return d.mean() if self.mode == "mean" else d.amax()
        return loss


class ShapedPlugin:
    @hookimpl
    def nst_register_loss_terms(self, register):
        register("shaped", Shaped, description="declared parameters")


@pytest.fixture(scope="module")
def regs():
    return collect_registries(get_plugin_manager(autoload=True, extra=[ShapedPlugin()]))


def test_a_params_dataclass_is_the_declaration():
    spec = param_spec(Shaped)
    assert spec.describe() == "mode: 'mean' | 'max' = 'mean', power: float >= 0.5 <= 4 = 2.0, taps: int = 3"
    assert [p.help for p in spec.params] == ["how to reduce", "exponent", ""]


def test_an_annotated_signature_is_the_declaration(regs):
    assert param_spec(regs.loss_terms.get("tv")).describe() == "exponent: float = 2.0"
    assert param_spec(regs.loss_terms.get("content")).describe() == "normalize: bool = True"
    assert param_spec(regs.loss_terms.get("gram")).describe() == "-"


@pytest.mark.parametrize("given, message", [
    ({"exponet": 1}, r"unknown parameter of loss term 'tv' 'exponet'; did you mean 'exponent'\?"),
    ({"exponent": "abc"}, r"loss term 'tv' parameter 'exponent' must be a finite number, got 'abc'"),
    ({"exponent": True}, r"must be a finite number, got True"),
])
def test_bad_parameters_are_one_config_error_from_the_api(regs, content_64, style_64, given, message):
    config = StyleConfig(size=32, steps=1, device="cpu", extra_losses=(LossSpec(name="tv", params=given),))
    with pytest.raises(ConfigError, match=message):
        nst_core.plan(content_64, style_64, config, registries=regs)


def test_choices_bounds_and_coercion():
    spec = param_spec(Shaped)
    assert check_params("shaped", spec, {"power": 1, "taps": 2.0}) == {"power": 1.0, "taps": 2}
    assert isinstance(check_params("shaped", spec, {"power": 1})["power"], float)
    with pytest.raises(ConfigError, match=r"'mode' must be one of 'mean', 'max', got 'median'"):
        check_params("shaped", spec, {"mode": "median"})
    with pytest.raises(ConfigError, match=r"'power' must be <= 4, got 9"):
        check_params("shaped", spec, {"power": 9})
    with pytest.raises(ConfigError, match=r"'taps' must be a whole number, got 2.5"):
        check_params("shaped", spec, {"taps": 2.5})


def test_list_losses_shows_each_terms_parameters():
    result = nst("list", "losses")
    assert result.exit_code == 0
    rows = {line.split("\t")[0]: line.split("\t") for line in result.stdout.splitlines()}
    assert rows["tv"][2] == "exponent: float = 2.0"
    assert rows["mean-color"][2] == "power: float >= 0.5 <= 4 = 2.0"  # the example plug-in's Params
    assert rows["mrf"][2].startswith("scale: float = 1.0, patch_size: int = 3")


def test_the_command_line_and_a_config_file_are_checked_the_same_way(tmp_path):
    out = tmp_path / "out.png"
    by_option = nst("run", CONTENT, STYLE, "-o", out, "--size", 32, "--steps", 1, "--loss", "tv:1,exponet=1")
    config = tmp_path / "run.toml"
    config.write_text('size = 32\nsteps = 1\nloss = ["tv:1,exponet=1"]\n')
    by_file = nst("run", CONTENT, STYLE, "-o", out, "--config", config)
    for result in (by_option, by_file):
        assert result.exit_code == 1
        assert "nst: error: unknown parameter of loss term 'tv' 'exponet'; did you mean 'exponent'?" in result.stderr
    ok = nst("run", CONTENT, STYLE, "-o", out, "--size", 32, "--steps", 1, "--loss", "mean-color:0.5,power=1")
    assert ok.exit_code == 0, ok.stderr  # an int for a float parameter


def test_a_preset_with_bad_loss_parameters_is_refused_when_registered(site):
    install_plugin(site, "badparams", """
        from nst_core import LossSpec, hookimpl

        @hookimpl
        def nst_register_presets(register):
            register("rough", {"extra_losses": (LossSpec(name="tv", params={"exponent": "x"}),)})
            register("smooth", {"extra_losses": (LossSpec(name="tv", params={"exponent": 1}),)})
    """)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        regs = collect_registries()
    problems = [str(w.message) for w in caught if issubclass(w.category, PluginWarning)]
    assert problems == ["preset 'rough' from plug-in 'badparams' (nst-cli-test-badparams 1.2.3) is invalid: loss term "
                        "'tv' parameter 'exponent' must be a finite number, got 'x'; it is ignored"]
    assert "smooth" in regs.presets and "rough" not in regs.presets


def test_stylize_and_plan_take_a_preset(regs, content_64, style_64):
    planned = nst_core.plan(content_64, style_64, registries=regs, preset="gatys-2015", size=32, steps=2,
                            device="cpu")
    assert (planned.config.pooling, planned.config.init, planned.config.steps) == ("avg", "noise", 2)
    assert {"kind": "preset", "name": "gatys-2015", "plugin": "nst_core.builtins.presets",
            "distribution": "built-in"} in planned.plugins
    with pytest.raises(ConfigError, match="give either config= or preset="):
        nst_core.plan(content_64, style_64, StyleConfig(), registries=regs, preset="fast")
    result = nst_core.stylize(content_64, style_64, registries=regs, preset="fast", size=32, steps=1, device="cpu")
    assert result.status == "finished" and result.config.size == 32


def test_run_records_name_the_distribution_of_every_name(regs, content_64, style_64):
    config = StyleConfig(size=32, steps=1, device="cpu", extra_losses=(LossSpec(name="mean-color", weight=0.5),))
    record = nst_core.stylize(content_64, style_64, config, registries=regs).record()
    by_name = {(p["kind"], p["name"]): p["distribution"] for p in record["plugins"]}
    assert by_name[("loss term", "mean-color")].startswith("nst-plugin-example ")
    assert by_name[("backbone", "vgg19")] == by_name[("loss term", "gram")] == "built-in"
    assert by_name[("layer schedule", "inverse-channels")] == "built-in"
