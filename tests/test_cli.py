"""The `nst` command line in-process (typer's CliRunner), on the real engine and real VGG19 weights.

Runs are tiny (64 px, 1-3 steps). The console script itself, jsonl and signals are in
test_cli_subprocess.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import re
import signal
import textwrap
import warnings

import pytest
import torch

import nst_core
from nst_core.errors import ConfigError, ImageError, PluginWarning, UnknownNameError
from nst_core.image import read_image
from nst_core.precision import resolve_precision

from nst_cli import exit_codes, options
from nst_cli.settings import resolve
from nst_cli.signals import Aborted, StopOnSignal

from helpers import CONTENT, EXAMPLES, STYLE, events, install_broken_plugin, install_plugin, mean_difference, nst

# --- a real run -------------------------------------------------------------------------------


def test_run_writes_a_stylised_image_and_intermediate_saves(tmp_path):
    out = tmp_path / "out.png"
    result = nst("run", CONTENT, STYLE, "-o", out, "--size", 64, "--steps", 3, "--seed", 3, "--save-every", 2)
    assert result.exit_code == 0, result.stderr
    assert read_image(out).size == (64, 48)
    assert mean_difference(out, CONTENT) > 0.005  # stylised, not a copy of the content
    assert read_image(tmp_path / "out.step2.png").size == (64, 48)
    assert not (tmp_path / "out.step1.png").exists() and not (tmp_path / "out.step3.png").exists()
    assert result.stdout == ""  # people's messages go to stderr
    precision = resolve_precision("auto", torch.device("cpu"))
    assert f"device cpu ({precision}), seed 3, 1 scale (64x48), 3 steps" in result.stderr
    assert f"saved {tmp_path / 'out.step2.png'}" in result.stderr
    assert f"wrote {out} (3/3 steps" in result.stderr
    assert "nst: step 3/3, scale 1/1 64x48" in result.stderr


def test_preset_then_config_file_then_command_line(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('preset = "fast"\nsize = 64\nsteps = 3\nseed = 5\n')
    out = tmp_path / "out.jpg"
    result = nst("run", CONTENT, STYLE, "-o", out, "--config", config, "--steps", 1, "--progress", "jsonl")
    assert result.exit_code == 0, result.stderr
    start, *_, done = events(result.stdout)
    # fast says 256 px / 100 steps; the file says 64 px / 3 steps; the command line says 1 step
    assert (start["sizes"], start["total"], start["seed"]) == ([[64, 48]], 1, 5)
    assert (done["status"], done["steps"], done["seed"]) == ("finished", 1, 5)
    assert read_image(out).size == (64, 48)


def test_non_finite_loss_keeps_the_last_finite_image_and_exits_3(tmp_path):
    out = tmp_path / "out.png"
    result = nst("run", CONTENT, STYLE, "-o", out, "--size", 64, "--steps", 2, "--style-weight", "1e38",
                 "--progress", "jsonl")
    assert result.exit_code == exit_codes.NON_FINITE == 3
    done = events(result.stdout)[-1]
    assert done["event"] == "done" and done["status"] == "non-finite" and "non-finite" in done["message"]
    assert read_image(out).size == (64, 48)


def test_jsonl_stdout_stays_clean_when_a_plugin_prints(site, tmp_path):
    install_plugin(site, "chatty", """\
        from nst_core import LossTerm, hookimpl

        class Chatty(LossTerm):
            role = "image"

            def bind(self, targets):
                print("chatty: bound")
                return lambda image, features, layer_weights: image.sum() * 0

        @hookimpl
        def nst_register_loss_terms(register):
            print("chatty: registering")
            register("chatty", Chatty)
        """)
    result = nst("run", CONTENT, STYLE, "-o", tmp_path / "out.png", "--size", 64, "--steps", 1, "--loss", "chatty",
                 "--progress", "jsonl")
    assert result.exit_code == 0, result.stderr
    assert [e["event"] for e in events(result.stdout)] == ["start", "step", "done"]
    assert "chatty: registering" in result.stderr and "chatty: bound" in result.stderr


# --- user errors: one line, exit 1, nothing written ----------------------------------------------


def _text_png(t):
    (t / "notes.png").write_text("not an image")
    return ["run", CONTENT, t / "notes.png", "-o", t / "out.png"]


def _empty(t):
    (t / "empty.jpg").write_bytes(b"")
    return ["run", t / "empty.jpg", STYLE, "-o", t / "out.png"]


def _config(text):
    def make(t):
        (t / "run.toml").write_text(text)
        return ["run", CONTENT, STYLE, "-o", t / "out.png", "--config", t / "run.toml"]
    return make


def _run(*extra):
    return lambda t: ["run", CONTENT, STYLE, "-o", t / "out.png", *extra]


USER_ERRORS = {
    "missing content": (lambda t: ["run", t / "missing.jpg", STYLE, "-o", t / "out.png"], "missing.jpg: no such file"),
    "style is a directory": (lambda t: ["run", CONTENT, t, "-o", t / "out.png"], re.compile("folder|directory")),
    "text file named .png": (_text_png, re.compile("notes.png: .*image")),
    "empty file": (_empty, re.compile("empty.jpg: .*empty")),
    "missing init image": (_run("--init", "nowhere.png"), "nowhere.png: no such file"),
    "unknown backbone": (_run("--backbone", "vgg91"), "unknown backbone 'vgg91'; did you mean 'vgg19'?"),
    "unknown extra loss": (_run("--loss", "gramm:2"), "unknown loss term 'gramm'; did you mean 'gram'"),
    "unknown style loss": (_run("--style-loss", "gramm"), "unknown loss term 'gramm'; did you mean 'gram'"),
    "unknown layer": (_run("--content-layers", "relu4_9"), "unknown layer of backbone 'vgg19' 'relu4_9'"),
    "unknown schedule": (_run("--layer-schedule", "unifrom"), "did you mean 'uniform'?"),
    "unknown preset": (_run("--preset", "fsat"), "unknown preset 'fsat'; did you mean 'fast'"),
    "bad loss parameter": (_run("--loss", "tv:1,colour=2"), "unknown parameter of loss term 'tv' 'colour'"),
    "zero size": (_run("--size", "0"), "StyleConfig.size must be >= 16, got 0"),
    "negative steps": (_run("--steps", "-3"), "StyleConfig.steps must be >= 1"),
    "NaN weight": (_run("--content-weight", "nan"), "StyleConfig.content_weight must be finite"),
    "negative weight": (_run("--style-weight", "-1"), "StyleConfig.style_weight must be >= 0"),
    "zero learning rate": (_run("--lr", "0"), "StyleConfig.learning_rate must be > 0"),
    "zero save-every": (_run("--save-every", "0"), "--save-every must be a whole number >= 1"),
    "blend count": (_run("--style-blend", "0.5,0.5"), "--style-blend has 2 weight(s) for 1 style image(s)"),
    "layer weights syntax": (_run("--layer-weights", "relu1_1"), "--layer-weights: expected LAYER=WEIGHT"),
    "device missing": (_run("--device", "cuda:99"), "'cuda:99'"),
    "output directory missing": (lambda t: ["run", CONTENT, STYLE, "-o", t / "no" / "out.png"], "does not exist"),
    "output is the content": (lambda t: ["run", CONTENT, STYLE, "-o", EXAMPLES / ".." / "examples" / CONTENT.name],
                              "would overwrite the input"),
    "unknown extension": (lambda t: ["run", CONTENT, STYLE, "-o", t / "out.gif"], "unknown output extension '.gif'"),
    "missing config file": (_run("--config", "nowhere.toml"), "nowhere.toml: no such config file"),
    "bad TOML": (_config("size = = 3\n"), "not a valid TOML file"),
    "unknown config key": (_config("sise = 64\n"), "unknown key in"),
    "wrong type in config": (_config('size = "big"\n'), "StyleConfig.size must be a number"),
}


@pytest.mark.parametrize("make_args, message", USER_ERRORS.values(), ids=USER_ERRORS.keys())
def test_user_error_prints_one_line_exits_1_and_writes_nothing(tmp_path, make_args, message):
    args = make_args(tmp_path)
    before = set(os.listdir(tmp_path)) | set(os.listdir(EXAMPLES))
    result = nst(*args)
    assert result.exit_code == exit_codes.USER_ERROR == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("nst: error: "), result.stderr
    assert re.search(message, lines[0]) if isinstance(message, re.Pattern) else message in lines[0], lines[0]
    assert result.stdout == ""
    assert set(os.listdir(tmp_path)) | set(os.listdir(EXAMPLES)) == before


def test_unknown_config_key_suggests_the_option(tmp_path):
    result = nst(*_config("style_wieght = 2\n")(tmp_path))
    assert "'style-wieght'; did you mean 'style-weight'" in result.stderr


@pytest.mark.parametrize("extra", [["--size", "abc"], ["--sise", "64"], ["--progress", "xml"]])
def test_usage_errors_exit_2(tmp_path, extra):
    result = nst("run", CONTENT, STYLE, "-o", tmp_path / "out.png", *extra)
    assert result.exit_code == exit_codes.USAGE_ERROR == 2
    assert "Usage: nst run" in result.stderr
    assert not (tmp_path / "out.png").exists()


def test_missing_output_option_is_a_usage_error(tmp_path):
    assert nst("run", CONTENT, STYLE).exit_code == 2


def test_jsonl_error_is_the_only_stdout_line(tmp_path):
    result = nst("run", CONTENT, STYLE, "-o", tmp_path / "out.png", "--backbone", "vgg91", "--progress", "jsonl")
    assert result.exit_code == 1
    assert events(result.stdout) == [{"event": "error", "exit_code": 1, "message": result.stderr.strip()[12:]}]
    assert result.stderr.startswith("nst: error: unknown backbone 'vgg91'")


def test_debug_shows_the_exception_instead_of_one_line(tmp_path):
    result = nst("--debug", "run", tmp_path / "missing.jpg", STYLE, "-o", tmp_path / "out.png")
    assert isinstance(result.exception, ImageError)
    assert "nst: error" not in result.stderr
    assert isinstance(nst("run", tmp_path / "missing.jpg", STYLE, "-o", tmp_path / "o.png",
                          env={"NST_DEBUG": "1"}).exception, ImageError)


# --- plug-in problems reach the user as one line each ----------------------------------------------


def test_broken_plugin_is_one_warning_line_not_python_warning_spam(site):
    install_broken_plugin(site)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = nst("list", "losses")
    assert result.exit_code == 0
    assert not [w for w in caught if issubclass(w.category, PluginWarning)]
    assert result.stderr.splitlines() == [
        "nst: warning: plug-in 'broken' (nst-cli-test-broken 1.2.3) failed to load: ModuleNotFoundError: "
        "No module named 'no_such_module_for_nst_cli'"]
    assert "gram\tstyle\t" in result.stdout


def test_broken_plugin_is_a_jsonl_warning_event(site, tmp_path):
    install_broken_plugin(site)
    result = nst("run", CONTENT, STYLE, "-o", tmp_path / "out.png", "--size", "0", "--progress", "jsonl")
    warning, error = events(result.stdout)
    assert warning["event"] == "warning" and "'broken' (nst-cli-test-broken 1.2.3) failed" in warning["message"]
    assert error["event"] == "error" and "StyleConfig.size" in error["message"]


def test_plugins_lists_distributions_versions_and_failures(site):
    install_broken_plugin(site)
    result = nst("plugins")
    assert result.exit_code == 1  # something failed
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert ["mean-color", "nst-plugin-example", "0.1.0", "nst_plugin_example.plugin",
            "backbone example-tiny, loss term mean-color, loss term channel-mean, layer schedule example-deep-first, "
            "preset example-colorful"] in rows
    assert ["broken", "nst-cli-test-broken", "1.2.3", "nst_cli_test_broken", "failed to load"] in rows


# --- listing, version, help, completion -----------------------------------------------------------


@pytest.mark.parametrize("kind, builtin, description", [
    ("backbones", "vgg19", "original Caffe weights"),
    ("losses", "gram", "Gatys"),
    ("schedules", "inverse-channels", "1/C²"),
    ("presets", "fast", "--size 256 --steps 100"),
])
def test_list_shows_builtins_with_description_and_source(kind, builtin, description):
    result = nst("list", kind)
    assert result.exit_code == 0
    rows = {line.split("\t")[0]: line for line in result.stdout.splitlines()}
    assert description in rows[builtin] and rows[builtin].endswith("\tbuilt-in")


def test_list_losses_shows_third_party_terms_with_their_distribution():
    rows = {line.split("\t")[0]: line.split("\t") for line in nst("list", "losses").stdout.splitlines()}
    assert rows["mean-color"][1] == "image"
    assert rows["mean-color"][-1] == "plug-in 'mean-color' (nst-plugin-example 0.1.0)"


def test_list_layers_marks_the_defaults():
    result = nst("list", "layers")
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert rows[0] == ["conv1_1", "64", ""]
    assert ["relu4_2", "512", "default content"] in rows and ["relu5_1", "512", "default style"] in rows
    bad = nst("list", "layers", "--backbone", "vgg91")
    assert bad.exit_code == 1 and "did you mean 'vgg19'?" in bad.stderr


def test_version():
    result = nst("--version")
    assert result.exit_code == 0 and result.stdout.startswith(f"nst {nst_core.__version__} (torch ")


@pytest.mark.parametrize("command", [[], ["run"], ["list"], ["list", "layers"], ["list", "losses"], ["plugins"]])
def test_every_command_has_help_with_examples(command):
    result = nst(*command, "--help")
    assert result.exit_code == 0
    assert "Example" in result.stdout, result.stdout


def test_shell_completion_script():
    result = nst("--show-completion", "bash")
    assert result.exit_code == 0 and "_NST_COMPLETE" in result.stdout


# --- the pieces -------------------------------------------------------------------------------------


def test_loss_option_syntax():
    spec = options.loss_spec("mean-color:0.5,power=1,mode=fast,flag=true,eps=1e-3", "--loss")
    assert (spec.name, spec.weight) == ("mean-color", 0.5)
    assert dict(spec.params) == {"power": 1, "mode": "fast", "flag": True, "eps": 0.001}
    assert options.loss_spec("tv", "--loss").weight == 1.0
    for bad in ("tv:heavy", "tv,exponent", ":2", "tv,,x=1", "mrf,layers=relu3_1+", "mrf,layers=a,layers=b"):
        with pytest.raises(ConfigError, match="--loss"):
            options.loss_spec(bad, "--loss")


def test_loss_option_sets_the_terms_own_layers_and_schedule():
    spec = options.loss_spec("mrf:0.5,layers=relu3_1+relu4_1,schedule=uniform,patch_size=5", "--loss")
    assert (spec.layers, spec.schedule, dict(spec.params)) == (("relu3_1", "relu4_1"), "uniform", {"patch_size": 5})


def test_loss_option_layers_reach_the_run(tmp_path):
    out = tmp_path / "out.png"
    result = nst("run", CONTENT, STYLE, "-o", out, "--size", 32, "--steps", 1,
                 "--loss", "mean-std:0.5,layers=relu1_1+relu2_1,schedule=uniform")
    assert result.exit_code == 0, result.output
    record = json.loads(Path(f"{out}.json").read_text())
    extra = record["config"]["extra_losses"]
    assert extra == [{"name": "mean-std", "weight": 0.5, "layers": ["relu1_1", "relu2_1"], "schedule": "uniform",
                      "layer_weights": None, "params": {}}]
    wrong = nst("run", CONTENT, STYLE, "-o", tmp_path / "b.png", "--size", 32, "--steps", 1,
                "--loss", "mean-std:0.5,layers=relu1_1+relu9_9")
    assert wrong.exit_code != 0 and "relu9_9" in wrong.output and "Traceback" not in wrong.output


def test_layer_weights_from_text_and_from_a_toml_table():
    assert options.layer_weights("relu1_1=0.5, relu2_1=2", "w") == {"relu1_1": 0.5, "relu2_1": 2.0}
    assert options.layer_weights({"relu1_1": 1}, "w") == {"relu1_1": 1.0}
    with pytest.raises(ConfigError, match="w relu1_1: 'x' is not a number"):
        options.layer_weights("relu1_1=x", "w")


def test_settings_precedence_and_value_forms(tmp_path, builtin_registries):
    config = tmp_path / "run.toml"
    config.write_text(textwrap.dedent("""\
        preset = "balanced"
        steps = 7
        style_weight = 3.0
        style-layers = ["relu1_1", "relu2_1"]
        layer-weights = { relu1_1 = 1, relu2_1 = 3 }
        loss = ["tv:0.01,exponent=1"]
        init = "start.png"
        save-every = 10
    """))
    cli = {"preset": None, "steps": 5, "style-layers": None, "content-layers": "relu3_1,relu4_2", "init": None}
    settings = resolve(cli, config, builtin_registries)
    c = settings.config
    assert settings.preset == "balanced" and c.size == 512  # from the preset
    assert c.steps == 5  # the command line beats the file (7) and the preset (250)
    assert c.style_weight == 3.0 and c.style_layers == ("relu1_1", "relu2_1")
    assert dict(c.layer_weights) == {"relu1_1": 1.0, "relu2_1": 3.0}
    assert c.content_layers == ("relu3_1", "relu4_2")
    assert [(s.name, s.weight, dict(s.params)) for s in c.extra_losses] == [("tv", 0.01, {"exponent": 1})]
    assert (c.init, str(settings.init_image), settings.save_every) == ("image", "start.png", 10)
    assert resolve({"init": "noise"}, None, builtin_registries).config.init == "noise"
    with pytest.raises(UnknownNameError, match="did you mean 'best'"):
        resolve({"preset": "bset"}, None, builtin_registries)


def test_first_signal_asks_to_stop_second_aborts():
    previous = signal.getsignal(signal.SIGINT)
    with StopOnSignal() as stop:
        assert not stop()
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop() and stop.name == "SIGTERM" and stop.exit_code == 143
        with pytest.raises(Aborted) as aborted:
            os.kill(os.getpid(), signal.SIGINT)
        assert aborted.value.exit_code == 130 and "second SIGINT" in str(aborted.value)
    assert signal.getsignal(signal.SIGINT) is previous
