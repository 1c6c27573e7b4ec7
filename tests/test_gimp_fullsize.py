"""The GIMP filter at the layer's full size: the estimate the dialog shows (sizes, upscale, time
from a cached calibration) and the fade mask that leaves no seam around a selection.

No GIMP here (tests/test_gimp_e2e.py runs the filter in a real GIMP); the estimate goes through
the real ``nst gimp estimate`` and the real engine's planning.
"""

from __future__ import annotations

import json
import sys

import numpy as np
from PIL import Image
import pytest
import torch
from typer.testing import CliRunner

from nst_core import StyleConfig
from nst_core.planning import plan_sizes

from nst_cli import estimate
from nst_cli.app import app

from helpers import ROOT as REPO, load_bridge

bridge = load_bridge()
FAKE = estimate.Calibration(device="cpu", precision="float32", a=0.05, b=2e-6, start=3.0, sizes=(256, 512),
                            measured=(0.18, 0.57))


# ---------------------------------------------------------------------------------------------
# Calibration and the estimate
# ---------------------------------------------------------------------------------------------


def test_fit_line_through_two_sizes():
    a, b = estimate.fit_line((256, 512), (0.05 + 2e-6 * 256**2, 0.05 + 2e-6 * 512**2))
    assert a == pytest.approx(0.05) and b == pytest.approx(2e-6)
    a, b = estimate.fit_line((256, 512), (1.0, 0.9))  # noise: the larger size measured faster
    assert a >= 0 and b == pytest.approx(0.9 / 512**2)  # never a negative time, charged per pixel


def test_calibration_is_measured_once_and_cached(tmp_path):
    calls = []

    def fake_measure(device, precision):
        calls.append((device, precision))
        return FAKE

    path = tmp_path / "calibration.json"
    first, measured = estimate.calibration(torch.device("cpu"), "float32", path=path, measure_fn=fake_measure)
    again, measured_again = estimate.calibration(torch.device("cpu"), "float32", path=path, measure_fn=fake_measure)
    assert (first, measured) == (FAKE, True) and (again, measured_again) == (FAKE, False) and len(calls) == 1
    assert estimate.cache_key(torch.device("cpu"), "float32") in json.loads(path.read_text())
    estimate.calibration(torch.device("cpu"), "float32", path=path, measure_fn=fake_measure, refresh=True)
    assert len(calls) == 2
    path.write_text("not json")
    assert estimate.calibration(torch.device("cpu"), "float32", path=path, measure_fn=fake_measure)[1]


def test_a_real_calibration_measures_positive_step_times():
    found = estimate.measure(torch.device("cpu"), "float32", sizes=(48, 96), steps=3)
    assert found.a >= 0 and found.b > 0 and found.start > 0 and all(t > 0 for t in found.measured)
    assert found.step_seconds(96 * 96) >= found.step_seconds(48 * 48)


def test_estimate_is_the_engines_plan_plus_the_calibrated_time():
    config = StyleConfig(size=3000, steps=100, step_decay=0.5, fit_memory=True, device="cpu", precision="float32")
    answer = estimate.estimate_run(3000, 2000, config, calibrated=FAKE, available=64 * 2**30)
    sized = plan_sizes(config, 2000, 3000, torch.device("cpu"), available=64 * 2**30)
    assert answer["sizes"] == [[w, h] for h, w in sized.shapes] and answer["steps"] == [100, 50, 25, 12]
    assert answer["output"] == [3000, 2000] and answer["upscale"] == 1.0
    expected = 3.0 + sum(n * (0.05 + 2e-6 * h * w) for (h, w), n in zip(sized.shapes, sized.steps))
    assert answer["seconds"] == pytest.approx(expected, abs=0.1)
    tight = estimate.estimate_run(3000, 2000, config, calibrated=FAKE, available=3 * 2**30)
    assert tight["output"][0] < 3000 and tight["upscale"] == pytest.approx(3000 / tight["output"][0], abs=0.01)
    assert tight["seconds"] < answer["seconds"] and any("memory" in n for n in tight["notes"])


def test_nst_gimp_estimate_prints_what_the_bridge_reads(tmp_path):
    request = bridge.EngineRequest(content="", style="", output="", region_size=(900, 600), quality="full",
                                   device="cpu")
    argv = bridge.build_estimate_argv("python", request)
    result = CliRunner().invoke(app, argv[4:] + ["--no-calibrate"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    parsed = bridge.parse_estimate(result.output)
    assert parsed.sizes[-1] == (900, 600) and parsed.output == (900, 600) and parsed.upscale == 1.0
    assert parsed.steps == (100, 50) and parsed.seconds is None and parsed.device == "cpu"
    text = bridge.describe_estimate(parsed)
    assert "450\u00d7300 \u2192 900\u00d7600" in text and "full size" in text


def test_nst_gimp_estimate_with_a_cached_calibration_gives_seconds(tmp_path, monkeypatch):
    cache = tmp_path / "cal.json"
    from nst_core.precision import resolve_precision

    precision = resolve_precision("auto", torch.device("cpu"))
    key = estimate.cache_key(torch.device("cpu"), precision)
    cache.write_text(json.dumps({key: {**FAKE.__dict__, "precision": precision}}))
    result = CliRunner().invoke(app, ["gimp", "estimate", "400", "300", "--size", "400", "--steps", "10",
                                      "--device", "cpu"], env={estimate.CACHE_ENV: str(cache)},
                                catch_exceptions=False)
    answer = json.loads(result.output)
    assert answer["calibrated_now"] is False and answer["seconds"] > 3.0


def test_estimate_errors_are_one_json_line():
    result = CliRunner().invoke(app, ["gimp", "estimate", "400", "300", "--device", "tpu", "--no-calibrate"])
    assert result.exit_code == 1
    with pytest.raises(bridge.BridgeError, match="tpu"):
        bridge.parse_estimate(result.output)


def test_describe_estimate_says_upscale_and_asks_for_long_runs():
    upscaled = bridge.Estimate("cpu", "bf16", ((434, 326), (868, 651), (1736, 1302)), (100, 50, 25), (1736, 1302),
                               (4000, 3000), 2.304, 1500.0, ("memory: 4000×3000 does not fit",))
    text = bridge.describe_estimate(upscaled)
    assert "scaled up \u00d72.3 to 4000\u00d73000 (memory)" in text
    assert "About 25 min 00 s on cpu (bf16)" in text and upscaled.long and "confirm" in text
    quick = bridge.Estimate("cuda:0", "bf16", ((512, 384),), (100,), (512, 384), (512, 384), 1.0, 20.0)
    assert not quick.long and "full size" in bridge.describe_estimate(quick)
    with pytest.raises(bridge.BridgeError, match="no estimate"):
        bridge.parse_estimate("Traceback ...\nboom")


def test_estimate_run_through_the_real_engine(tmp_path, monkeypatch):
    """The synchronous estimate the dialog falls back to, with the project's Python as the engine."""
    monkeypatch.setenv(estimate.CACHE_ENV, str(tmp_path / "cal.json"))
    from nst_core.precision import resolve_precision

    precision = resolve_precision("auto", torch.device("cpu"))
    (tmp_path / "cal.json").write_text(json.dumps({estimate.cache_key(torch.device("cpu"), precision):
                                                   {**FAKE.__dict__, "precision": precision}}))
    wrapper = tmp_path / "engine-python"  # the bridge clears PYTHONPATH: this worktree's code, explicitly
    wrapper.write_text(f"#!/bin/sh\nPYTHONPATH={REPO}:{REPO / 'plugins' / 'cli'} exec {sys.executable} \"$@\"\n")
    wrapper.chmod(0o755)
    engine = bridge.EngineLocation(str(wrapper), "test")
    request = bridge.EngineRequest(content="", style="", output="", region_size=(640, 480), quality="preview",
                                   device="cpu")
    found = bridge.estimate_run(engine, request, timeout=120)
    assert found.sizes[-1] == (512, 384) and found.upscale == 1.25 and found.seconds > 0


# ---------------------------------------------------------------------------------------------
# No seam: the fade mask
# ---------------------------------------------------------------------------------------------


def test_fade_weights_ramp_across_the_margin_only():
    weights = bridge.fade_weights(100, 20, 80, 100)
    assert weights[20:80] == [1.0] * 60
    assert weights[0] < 0.05 and weights[-1] < 0.05
    assert all(b >= a for a, b in zip(weights[:21], weights[1:21]))  # rising into the selection
    assert max(abs(b - a) for a, b in zip(weights, weights[1:])) <= 1 / 20 + 1e-9  # no step anywhere
    assert bridge.fade_weights(100, 0, 80, 100)[0] == 1.0  # no margin on that side: the layer's edge


def test_fade_mask_is_white_over_the_selection_and_black_at_the_edge():
    width, height, pixels = bridge.fade_mask((10, 20, 200, 100), (40, 40, 120, 60))
    mask = np.frombuffer(pixels, np.uint8).reshape(height, width)
    assert (width, height) == (200, 100)
    assert (mask[20:80, 30:150] == 255).all()  # the selection's box (region coordinates)
    assert mask[0].max() <= 13 and mask[-1].max() <= 13 and mask[:, 0].max() <= 9 and mask[:, -1].max() <= 9
    assert np.abs(np.diff(mask.astype(int), axis=1)).max() <= 256 // 30 + 1  # a ramp, no step
    assert bridge.fade_mask((0, 0, 50, 50), (0, 0, 50, 50)) is None  # no margin: nothing to fade


def test_fade_mask_is_written_small_with_the_regions_aspect():
    width, height, pixels = bridge.fade_mask((0, 0, 4000, 2000), (500, 300, 3000, 1400))
    assert (width, height) == (1024, 512) and len(pixels) == width * height


def test_engine_blends_the_stylised_region_into_the_content_with_the_fade_mask(tmp_path, examples):
    """With the plug-in's mask, the engine's output equals the content at the region's edge and
    changes smoothly toward the stylised centre: widening the layer mask reveals no seam."""
    content = tmp_path / "content.png"
    with Image.open(examples / "tubingen.jpg") as im:
        im.convert("RGB").resize((64, 48)).save(content)
    width, height, pixels = bridge.fade_mask((0, 0, 64, 48), (20, 14, 24, 20))
    bridge.write_png(str(tmp_path / "mask.png"), width, height, pixels, channels=1)
    request = bridge.EngineRequest(content=str(content), style=str(examples / "starry_night.jpg"),
                                   output=str(tmp_path / "out.png"), region_size=(64, 48), steps=6, seed=1,
                                   device="cpu", strength=75, mask=str(tmp_path / "mask.png"))
    wrapper = tmp_path / "engine-python"
    wrapper.write_text(f"#!/bin/sh\nPYTHONPATH={REPO}:{REPO / 'plugins' / 'cli'} exec {sys.executable} \"$@\"\n")
    wrapper.chmod(0o755)
    outcome = bridge.run_engine(bridge.build_argv(str(wrapper), request), str(tmp_path), lambda f, t: None)
    assert bridge.outcome_error(outcome) is None, outcome
    src = np.asarray(Image.open(content), dtype=float)
    out = np.asarray(Image.open(tmp_path / "out.png").convert("RGB"), dtype=float)
    diff = np.abs(out - src).mean(2)
    assert diff[20:28, 26:38].mean() > 8  # stylised inside the selection
    border = np.concatenate([diff[0], diff[-1], diff[:, 0], diff[:, -1]])
    assert border.mean() < 0.15 * diff[20:28, 26:38].mean()  # the untouched copy at the edge


def test_no_fade_toward_the_layers_own_edges():
    # the region reaches the layer's left and top edges: nothing lies beyond, so no fade there
    width, height, pixels = bridge.fade_mask((0, 0, 150, 120), (10, 5, 100, 90), layer_size=(300, 120))
    mask = np.frombuffer(pixels, np.uint8).reshape(height, width)
    assert mask[0, 0] == 255 and mask[:, 0].min() == 255 and mask[0, :110].min() == 255
    assert mask[60, -1] < 10  # the right side ends inside the layer: it fades
    assert bridge.fade_mask((0, 0, 150, 120), (10, 5, 100, 90), layer_size=(150, 120)) is None
