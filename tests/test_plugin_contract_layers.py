"""A loss term with its own layers, schedule and parameters from a config file's ``[[loss]]``
tables, checked like every other source of parameters."""

from __future__ import annotations

import pytest

import nst_core
from nst_core.errors import ConfigError

from nst_cli.settings import resolve


def settings_from(tmp_path, text: str, registries):
    path = tmp_path / "run.toml"
    path.write_text(text)
    return resolve({}, path, registries)


def test_a_loss_table_gives_a_term_its_own_layers_schedule_and_parameters(tmp_path, content_64, style_64):
    registries = nst_core.collect_registries()
    settings = settings_from(tmp_path, """
        size = 32
        steps = 1
        device = "cpu"

        [[loss]]
        name = "mrf"
        weight = 0.5
        layers = ["relu3_1"]
        schedule = "uniform"
        params = {patch_size = 5}

        [[loss]]
        name = "mean-color"
        params = {power = 1}
    """.replace("\n        ", "\n"), registries)
    mrf, mean_color = settings.config.extra_losses
    assert (mrf.name, mrf.weight, mrf.layers, mrf.schedule, dict(mrf.params)) == \
        ("mrf", 0.5, ("relu3_1",), "uniform", {"patch_size": 5})
    planned = nst_core.plan(content_64, style_64, settings.config, registries=registries)
    by_name = {t.name: t for t in planned.terms}
    assert by_name["mrf"].layers == ("relu3_1",) and by_name["mrf"].term.patch_size == 5
    assert by_name["mean-color"].term.power == 1.0


@pytest.mark.parametrize("table, message", [
    ('name = "mrf"\nlayer = ["relu3_1"]', r"unknown key\(s\) 'layer' in a loss table; use name, weight"),
    ('weight = 2', r"a loss table needs a name"),
    ('name = "mrf"\nparams = {patch = 5}', r"unknown parameter of loss term 'mrf' 'patch'; did you mean 'patch_size'"),
])
def test_a_bad_loss_table_is_one_line(tmp_path, content_64, style_64, table, message):
    registries = nst_core.collect_registries()
    with pytest.raises(ConfigError, match=message):
        settings = settings_from(tmp_path, f"size = 32\ndevice = \"cpu\"\n[[loss]]\n{table}\n", registries)
        nst_core.plan(content_64, style_64, settings.config, registries=registries)
