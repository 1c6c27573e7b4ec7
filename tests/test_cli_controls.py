"""`nst run`'s artist's controls and run records, in-process (CliRunner) on the real engine.

Each test checks a property of the pixels, the loss or the record, not only that the run ends:
colours kept, content kept outside a mask, the style weight a --strength gives, half precision
in effect, and --from-record giving the same pixels. Tiny runs: 64 px, at most 10 steps.
"""

from __future__ import annotations

import json
import math
import os

from PIL import Image
import pytest
import torch

from nst_core import StyleConfig
from nst_core.builtins.presets import PRESETS
from nst_core.color import rgb_to_yiq
from nst_core.config import style_weight_for_strength
from nst_core.errors import ConfigError
from nst_core.image import read_image, resize

from nst_cli import exit_codes
from nst_cli.record import load_record
from nst_cli.settings import resolve

from helpers import CONTENT, EXAMPLES, STYLE, events, nst

SCREAM = EXAMPLES / "the_scream.jpg"
SKY = EXAMPLES / "tubingen_sky_mask.png"
TINY = ("--size", 64, "--device", "cpu")


def pixels(path) -> torch.Tensor:
    """The image as (1, 3, H, W) in [0, 1]."""
    return read_image(path).rgb


def content_64() -> torch.Tensor:
    return resize(pixels(CONTENT), 48, 64)


def chroma(image: torch.Tensor) -> torch.Tensor:
    """Mean I and Q (YIQ) of an RGB image: (2,)."""
    return rgb_to_yiq(image)[0, 1:].flatten(1).mean(dim=1)


def run_ok(*args, env=None):
    result = nst("run", *args, env=env)
    assert result.exit_code == 0, result.stderr
    return result


def record_of(path) -> dict:
    return json.loads(Image.open(path).text["nst-record"])


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """A plain 10-step run (seed 0) that the colour and precision tests compare against."""
    out = tmp_path_factory.mktemp("plain") / "plain.png"
    run_ok(CONTENT, STYLE, "-o", out, *TINY, "--steps", 10, "--seed", 0, "--no-record")
    return pixels(out)


@pytest.fixture(scope="module")
def plain_float32(tmp_path_factory):
    """The plain run in float32 (the default precision, auto, may already be bf16 on this chip)."""
    out = tmp_path_factory.mktemp("plain32") / "plain.png"
    run_ok(CONTENT, STYLE, "-o", out, *TINY, "--steps", 10, "--seed", 0, "--no-record", "--precision", "float32")
    return pixels(out)


# --- colour ---------------------------------------------------------------------------------------


def test_preserve_color_luminance_keeps_the_contents_chroma(tmp_path, plain):
    out = tmp_path / "kept.png"
    run_ok(CONTENT, STYLE, "-o", out, *TINY, "--steps", 10, "--seed", 0, "--preserve-color", "luminance")
    kept, content = pixels(out), content_64()
    target = chroma(content)
    assert (chroma(kept) - target).abs().max() < 0.01  # the content's colours (8-bit rounding aside)
    assert (chroma(plain) - target).norm() > 3 * (chroma(kept) - target).norm()  # a plain run moves them
    # the luminance is stylised (8-bit rounding alone: < 0.002)
    assert (rgb_to_yiq(kept)[:, 0] - rgb_to_yiq(content)[:, 0]).abs().mean() > 0.01
    assert record_of(out)["config"]["preserve_color"] == "luminance"


def test_preserve_color_histogram_moves_the_colours_toward_the_content(tmp_path, plain):
    out = tmp_path / "matched.png"
    run_ok(CONTENT, STYLE, "-o", out, *TINY, "--steps", 10, "--seed", 0, "--preserve-color", "histogram")
    content_mean = content_64().flatten(2).mean(2)
    matched_gap = (pixels(out).flatten(2).mean(2) - content_mean).norm()
    assert matched_gap < 0.5 * (plain.flatten(2).mean(2) - content_mean).norm()


# --- masks ----------------------------------------------------------------------------------------


def sky_at_64() -> torch.Tensor:
    """The sky mask at the output size, (1, 1, 48, 64) in [0, 1]."""
    return resize(read_image(SKY).rgb.mean(dim=1, keepdim=True), 48, 64)


def test_mask_styles_the_sky_and_keeps_the_content_elsewhere(tmp_path):
    out = tmp_path / "sky.png"
    result = run_ok(CONTENT, STYLE, "-o", out, *TINY, "--steps", 20, "--seed", 0, "--mask", SKY,
                    "--progress", "jsonl")
    diff = (pixels(out) - content_64()).abs().amax(dim=1, keepdim=True)  # (1, 1, 48, 64)
    mask = sky_at_64()
    outside, inside = mask < 0.01, mask > 0.99
    assert outside.sum() > 500 and inside.sum() > 500
    assert diff[outside].max() <= 1.5 / 255  # the content, up to 8-bit rounding
    assert diff[inside].mean() > 0.05  # stylised
    steps = [e for e in events(result.stdout) if e["event"] == "step"]
    assert steps[-1]["terms"]["gram"] < 0.5 * steps[0]["terms"]["gram"]  # the (masked) style loss falls
    assert record_of(out)["inputs"]["masks"] == [str(SKY)]


def test_mask_none_means_the_whole_image_and_masks_pair_with_styles_in_order(tmp_path):
    out = tmp_path / "two.png"
    run_ok(CONTENT, STYLE, SCREAM, "-o", out, *TINY, "--steps", 20, "--seed", 0, "--mask", SKY, "--mask", "none")
    diff = (pixels(out) - content_64()).abs().amax(dim=1, keepdim=True)
    assert diff[sky_at_64() < 0.01].mean() > 0.02  # outside the sky: the second style, unmasked, applies
    record = record_of(out)
    assert record["inputs"]["masks"] == [str(SKY), None]
    assert record["inputs"]["styles"] == [str(STYLE), str(SCREAM)]


def test_mask_of_another_shape_is_stretched_with_a_warning(tmp_path):
    square = tmp_path / "square.png"
    Image.new("L", (40, 40), 255).save(square)
    result = run_ok(CONTENT, STYLE, "-o", tmp_path / "out.png", *TINY, "--steps", 1, "--mask", square)
    assert f"nst: warning: {square}: the mask is 40x40 but the content is 512x384; it is stretched" in result.stderr


# --- strength, presets, precision ------------------------------------------------------------------


def first_style_term(tmp_path, *args) -> float:
    """J_style's weighted value at step 1 (the content image: the same for every weight)."""
    result = run_ok(CONTENT, STYLE, "-o", tmp_path / "s.png", *TINY, "--steps", 1, "--seed", 0,
                    "--progress", "jsonl", "--no-record", *args)
    return events(result.stdout)[1]["terms"]["gram"]


def test_strength_multiplies_the_style_weight_logarithmically(tmp_path):
    base = first_style_term(tmp_path)
    assert first_style_term(tmp_path, "--strength", 0.5) == pytest.approx(base, rel=1e-6)
    assert first_style_term(tmp_path, "--strength", 0.75) == pytest.approx(10 * base, rel=1e-5)
    # with --style-weight: weight = 4 × 10^(4 × (0.25 − 0.5)) = 0.4
    assert first_style_term(tmp_path, "--strength", 0.25, "--style-weight", 4) == pytest.approx(0.4 * base, rel=1e-5)
    # with a preset's style weight (bold: 10) and no --style-weight
    assert first_style_term(tmp_path, "--preset", "bold", "--strength", 0.25) == pytest.approx(base, rel=1e-5)


def test_strength_is_the_gimp_sliders_mapping():
    """The GIMP dialog's 0-100 slider documents weight = 10 ** ((s - 50) / 25); --strength is s / 100."""
    for s in range(101):
        assert math.isclose(style_weight_for_strength(s / 100), 10 ** ((s - 50) / 25), rel_tol=1e-12)
    assert style_weight_for_strength(0.75, base=3.0) == pytest.approx(30.0)
    for bad in (-0.01, 1.01, math.nan, True):
        with pytest.raises(ConfigError, match="strength must be a number from 0 to 1"):
            style_weight_for_strength(bad)


def test_strength_is_in_the_record(tmp_path):
    out = tmp_path / "out.png"
    run_ok(CONTENT, STYLE, "-o", out, *TINY, "--steps", 1, "--strength", 0.75, "--style-weight", 2)
    record = record_of(out)
    assert (record["strength"], record["base_style_weight"]) == (0.75, 2.0)
    assert record["config"]["style_weight"] == pytest.approx(20.0)


@pytest.mark.parametrize("precision", ["bf16", pytest.param("fp16", marks=pytest.mark.slow)])  # fp16 on a CPU: ~10 s
def test_half_precision_runs_the_network_in_half_and_stays_close(tmp_path, plain_float32, precision):
    out = tmp_path / f"{precision}.png"
    run_ok(CONTENT, STYLE, "-o", out, *TINY, "--steps", 10, "--seed", 0, "--precision", precision)
    gap = (pixels(out) - plain_float32).abs().mean().item()
    assert gap > 0  # a different numeric path: the flag reached the engine
    assert gap < 0.03  # and the same picture (bf16 ~0.01, fp16 ~0.007; float32 moved ~0.05 from the content)
    assert (plain_float32 - content_64()).abs().mean().item() > 2 * gap
    assert record_of(out)["config"]["precision"] == precision


LOOKS = {
    "gatys-2015": {"pooling": "avg", "layer_schedule": "uniform", "init": "noise", "scales": 1, "steps": 500},
    "soft": {"style_weight": 0.3},
    "bold": {"style_weight": 10},
    "keep-colors": {"preserve_color": "luminance"},
    "painterly": {"pooling": "avg", "layer_schedule": "uniform"},
}


@pytest.mark.parametrize("name", LOOKS)
def test_look_presets_set_only_styleconfig_fields_and_are_listed(name, builtin_registries):
    settings, description = PRESETS[name]
    assert settings == LOOKS[name] and set(settings) <= set(StyleConfig.__dataclass_fields__)
    config = resolve({"preset": name}, None, builtin_registries).config
    assert all(getattr(config, field) == value for field, value in settings.items())
    assert config.size == StyleConfig().size  # looks leave the size to --size or the default
    rows = {line.split("\t")[0]: line.split("\t") for line in nst("list", "presets").stdout.splitlines()}
    assert rows[name][2] == description and rows[name][3] == "built-in"


def test_gatys_2015_preset_runs_from_noise_at_one_scale(tmp_path):
    out = tmp_path / "paper.png"
    result = run_ok(CONTENT, STYLE, "-o", out, "--preset", "gatys-2015", "--size", 64, "--steps", 2,
                    "--progress", "jsonl")
    start = events(result.stdout)[0]
    assert (start["sizes"], start["total"]) == ([[64, 48]], 2)
    config = record_of(out)["config"]
    assert (config["pooling"], config["layer_schedule"], config["init"]) == ("avg", "uniform", "noise")
    assert (pixels(out) - content_64()).abs().mean() > 0.1  # noise after 2 steps, not the photo


# --- run records ----------------------------------------------------------------------------------


def test_every_output_carries_its_record_unless_no_record(tmp_path):
    out = tmp_path / "out.png"
    result = run_ok(CONTENT, STYLE, "-o", out, *TINY, "--steps", 1, "--seed", 4, "--progress", "jsonl")
    sidecar = tmp_path / "out.png.json"
    assert events(result.stdout)[-1]["record"] == str(sidecar)
    record = json.loads(sidecar.read_text())
    assert record == record_of(out)  # the PNG text and the sidecar agree
    assert record["format"].startswith("nst-record/") and record["seed"] == 4
    assert record["inputs"] == {"content": str(CONTENT), "styles": [str(STYLE)], "masks": None, "init": None}
    assert (record["strength"], record["base_style_weight"]) == (None, None)

    bare = tmp_path / "bare.png"
    result = run_ok(CONTENT, STYLE, "-o", bare, *TINY, "--steps", 1, "--no-record", "--progress", "jsonl")
    assert events(result.stdout)[-1]["record"] is None
    assert "nst-record" not in Image.open(bare).text and not (tmp_path / "bare.png.json").exists()


def test_from_record_reproduces_the_same_pixels(tmp_path, monkeypatch):
    """Noise start, a mask, a strength, colour matching and an init-free seed: all come back from the
    record, from another working directory, with no other argument than the output."""
    out = tmp_path / "first.png"
    run_ok(CONTENT, STYLE, "-o", out, *TINY, "--steps", 3, "--seed", 9, "--init", "noise", "--mask", SKY,
           "--strength", 0.6, "--preserve-color", "histogram")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = run_ok("--from-record", out, "-o", "again.png", "--progress", "jsonl")
    assert events(result.stdout)[0]["seed"] == 9
    assert torch.equal(pixels(elsewhere / "again.png"), pixels(out))
    first, again = record_of(out), record_of(elsewhere / "again.png")
    assert again["config"] == first["config"] and again["inputs"] == first["inputs"]
    # the sidecar is a record too, and a JPEG output keeps its record in the sidecar only
    run_ok("--from-record", tmp_path / "first.png.json", "-o", "again.jpg")
    assert (elsewhere / "again.jpg.json").is_file()
    assert load_record(elsewhere / "again.jpg").config == load_record(out).config


def test_from_record_options_and_arguments_override_the_record(tmp_path):
    out = tmp_path / "first.png"
    run_ok(CONTENT, STYLE, "-o", out, *TINY, "--steps", 3, "--seed", 9, "--strength", 0.75, "--style-weight", 2)
    other = EXAMPLES / "hoovertowernight.jpg"
    result = run_ok("--from-record", out, other, "-o", tmp_path / "b.png", "--steps", 1, "--strength", 0.25,
                    "--progress", "jsonl")
    done = events(result.stdout)[-1]
    assert (done["steps"], done["seed"]) == (1, 9)  # --steps overrides, the seed is the record's
    record = record_of(tmp_path / "b.png")
    assert record["inputs"]["content"] == str(other) and record["inputs"]["styles"] == [str(STYLE)]
    # the new strength applies to the recorded base weight (2), not on top of the old strength
    assert record["config"]["style_weight"] == pytest.approx(0.2)
    run_ok("--from-record", out, other, SCREAM, "-o", tmp_path / "c.png", "--steps", 1)
    assert record_of(tmp_path / "c.png")["inputs"]["styles"] == [str(SCREAM)]


def test_from_record_with_new_styles_drops_the_records_masks(tmp_path):
    out = tmp_path / "first.png"
    run_ok(CONTENT, STYLE, "-o", out, *TINY, "--steps", 1, "--mask", SKY)
    result = run_ok("--from-record", out, CONTENT, SCREAM, "-o", tmp_path / "b.png")
    assert "the record's masks belong to its style images" in result.stderr
    assert record_of(tmp_path / "b.png")["inputs"]["masks"] is None
    run_ok("--from-record", out, CONTENT, "-o", tmp_path / "c.png")  # the record's style: its mask too
    assert record_of(tmp_path / "c.png")["inputs"]["masks"] == [str(SKY)]


def test_settings_from_a_config_file(tmp_path, builtin_registries):
    config = tmp_path / "run.toml"
    config.write_text('preserve-color = "luminance"\nprecision = "bf16"\nstrength = 0.75\nrecord = false\n'
                      'mask = ["sky.png", "none"]\n')
    settings = resolve({"strength": None, "style-weight": 3.0}, config, builtin_registries)
    assert (settings.config.preserve_color, settings.config.precision) == ("luminance", "bf16")
    assert settings.config.style_weight == pytest.approx(30.0) and settings.base_style_weight == 3.0
    assert settings.record is False and [str(m) if m else m for m in settings.masks] == ["sky.png", None]


# --- user errors: one line, exit 1, nothing written --------------------------------------------------


def _not_a_record(t):
    (t / "other.json").write_text('{"hello": 1}')
    return ["--from-record", t / "other.json"]


def _plain_png(t):
    Image.new("RGB", (8, 8)).save(t / "plain.png")
    return ["--from-record", t / "plain.png"]


def _record_without_inputs(t):
    (t / "api.json").write_text(json.dumps({"format": "nst-record/1", "config": {"size": 64}}))
    return ["--from-record", t / "api.json"]


ERRORS = {
    "mask count": (lambda t: [CONTENT, STYLE, "--mask", SKY, "--mask", "none"],
                   "--mask given 2 time(s) for 1 style image(s); give one per style image, in the same order"),
    "missing mask": (lambda t: [CONTENT, STYLE, "--mask", t / "nomask.png"], "nomask.png: no such file"),
    "strength too big": (lambda t: [CONTENT, STYLE, "--strength", "1.5"], "--strength must be a number from 0 to 1"),
    "unknown colour mode": (lambda t: [CONTENT, STYLE, "--preserve-color", "sepia"],
                            "StyleConfig.preserve_color must be none, luminance or histogram"),
    "unknown precision": (lambda t: [CONTENT, STYLE, "--precision", "fp8"],
                          "StyleConfig.precision must be auto, float32, bf16 or fp16"),
    "missing record": (lambda t: ["--from-record", t / "gone.png"], "gone.png: no such run record"),
    "json that is no record": (_not_a_record, "other.json: not an nst run record"),
    "png without a record": (_plain_png, "plain.png: no run record in this file"),
    "record without inputs": (_record_without_inputs, "the record names no input files"),
}


@pytest.mark.parametrize("make_args, message", ERRORS.values(), ids=ERRORS.keys())
def test_control_errors_are_one_line_and_write_nothing(tmp_path, make_args, message):
    args = make_args(tmp_path)
    before = set(os.listdir(tmp_path))
    result = nst("run", *args, "-o", tmp_path / "out.png")
    assert result.exit_code == exit_codes.USER_ERROR, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("nst: error: ") and message in line, line
    assert set(os.listdir(tmp_path)) == before


def test_record_sidecar_may_not_overwrite_the_record_it_reads(tmp_path):
    out = tmp_path / "first.png"
    run_ok(CONTENT, STYLE, "-o", out, *TINY, "--steps", 1)
    result = nst("run", "--from-record", tmp_path / "first.png.json", "-o", tmp_path / "first.png")
    assert result.exit_code == 1 and "would overwrite the input" in result.stderr


def test_content_and_style_are_needed_without_from_record(tmp_path):
    result = nst("run", "-o", tmp_path / "out.png")
    assert result.exit_code == exit_codes.USAGE_ERROR and "--from-record" in result.stderr
    result = nst("run", CONTENT, "-o", tmp_path / "out.png")
    assert result.exit_code == exit_codes.USAGE_ERROR and "STYLE" in result.stderr
