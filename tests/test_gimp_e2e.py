"""The GIMP plug-in in a real GIMP 3, with the real engine (real VGG19, tiny images, few steps).

plugins/gimp/tests/run_gimp_e2e.sh builds or reuses a Debian 13 chroot with GIMP 3.0 (about
1.5 minutes the first time, cached in /var/tmp/nst-gimp3-root), installs the plug-in with
``nst gimp install --dir``, and calls it through GIMP's PDB from a batch script
(plugins/gimp/tests/gimp_batch.py); these tests check, from outside GIMP, what it recorded.

Needs root (chroot, mounts), ``unshare`` and a Debian mirror in the apt sources; otherwise the
module is skipped with the reason. ``NST_SKIP_GIMP_E2E=1`` skips it on purpose. Run it alone with
``pytest -m gimp``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

pytestmark = pytest.mark.gimp

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "plugins" / "gimp" / "tests" / "run_gimp_e2e.sh"
SKIP_EXIT = 77


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    """Run GIMP once for the module; returns (out_dir, results, cancel_report)."""
    if os.environ.get("NST_SKIP_GIMP_E2E") == "1":
        pytest.skip("NST_SKIP_GIMP_E2E=1: GIMP end-to-end test skipped on request")
    if not sys.platform.startswith("linux"):
        pytest.skip("the GIMP end-to-end test runs GIMP 3 in a Debian chroot: Linux only")
    if os.environ.get("NST_GIMP_E2E_REUSE"):  # check the output of an earlier run_gimp_e2e.sh OUT_DIR
        out = Path(os.environ["NST_GIMP_E2E_REUSE"])
        return (out, json.loads((out / "results.json").read_text()),
                json.loads((out / "cancel.json").read_text()))
    out = tmp_path_factory.mktemp("gimp-e2e")
    env = dict(os.environ)
    env.setdefault("NST_E2E_PYTHON", sys.executable)  # another Python (a wrapper) may be given
    proc = subprocess.run(["bash", str(SCRIPT), str(out)], capture_output=True, text=True, timeout=1200, env=env)
    if proc.returncode == SKIP_EXIT:
        pytest.skip(f"GIMP end-to-end test: {proc.stdout.strip() or proc.stderr.strip()}")
    print(proc.stdout[-2000:], proc.stderr[-2000:], sep="\n")
    assert proc.returncode == 0, (f"run_gimp_e2e.sh failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n"
                                  f"{proc.stderr[-3000:]}")
    results = json.loads((out / "results.json").read_text())
    assert results.get("done"), f"the batch script stopped early; see {out / 'gimp.log'}"
    cancel = json.loads((out / "cancel.json").read_text())
    return out, results, cancel


def raw(dump: dict) -> np.ndarray:
    """A pixel dump written by gimp_batch.py as an (H, W, C) array."""
    fmt = dump["format"]
    dtype = np.uint16 if fmt.endswith("u16") else np.uint8
    channels = {"R'G'B'A": 4, "Y'A": 2, "Y": 1}[fmt.split()[0]]
    return np.fromfile(dump["path"], dtype=dtype).reshape(dump["height"], dump["width"], channels)


def case(e2e, name: str) -> dict:
    return e2e[1]["cases"][name]


def test_procedure_is_registered_under_filters_artistic(e2e):
    results = e2e[1]
    assert results["registered"]
    assert results["gimp_version"].startswith("3.")
    assert results["menu_paths"] == ["<Image>/Filters/Artistic"]
    assert results["image_types"] == "RGB*, GRAY*"


def test_rgba_new_layer_above_source_named_after_style(e2e):
    rec = case(e2e, "rgba")
    assert rec["status"] == "success", rec
    new, source = rec["layers"]
    assert len(rec["layers"]) == 2
    assert source["id"] == rec["source_id"] and new["id"] == rec["returned_layer"]
    assert new["name"] == "style (style transfer)"  # the style file is style.png
    assert (new["width"], new["height"], new["offsets"]) == (source["width"], source["height"], source["offsets"])
    assert new["has_alpha"] and new["visible"] and not new["has_mask"] and not new["is_gray"]


def test_rgba_source_untouched_and_alpha_kept_exactly(e2e):
    rec = case(e2e, "rgba")
    before, after, result = raw(rec["source_before"]), raw(rec["source_after"]), raw(rec["result"])
    assert np.array_equal(before, after), "the source layer was modified"
    assert np.array_equal(result[..., 3], before[..., 3]), "the alpha channel was not kept"
    assert (before[..., 3] == 0).any() and len(np.unique(before[..., 3])) > 50  # the test image has real alpha


def _colour_stats(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return pixels.mean(0), np.cov(pixels.T)


def test_rgba_pixels_are_stylised_not_inverted_or_noise(e2e):
    out, _, _ = e2e
    rec = case(e2e, "rgba")
    before, result = raw(rec["source_before"]), raw(rec["result"])
    visible = before[..., 3] > 0
    src = before[..., :3][visible].astype(float) / 255
    res = result[..., :3][visible].astype(float) / 255
    style = np.asarray(Image.open(out / "style.png").convert("RGB"), dtype=float).reshape(-1, 3) / 255
    (m_src, c_src), (m_res, c_res), (m_sty, c_sty) = map(_colour_stats, (src, res, style))
    # colour statistics moved toward the painting's
    assert np.linalg.norm(m_res - m_sty) < 0.9 * np.linalg.norm(m_src - m_sty)
    assert np.linalg.norm(c_res - c_sty) < 0.9 * np.linalg.norm(c_src - c_sty)
    # changed clearly, but the photo's structure is still there (not noise, not inverted)
    assert np.abs(res - src).mean() > 0.02
    luma_src, luma_res = src.mean(1), res.mean(1)
    assert np.corrcoef(luma_src, luma_res)[0, 1] > 0.7
    assert np.corrcoef(1 - luma_src, luma_res)[0, 1] < 0

    # brush-stroke texture: more fine detail than the photo, toward the painting's, not beyond noise
    def detail(rgb):
        return np.abs(np.diff(rgb.mean(2), axis=1)).mean()

    d_src = detail(before[..., :3] / 255.0)
    d_res = detail(result[..., :3] / 255.0)
    d_sty = detail(np.asarray(Image.open(out / "style.png").convert("RGB"), dtype=float) / 255)
    assert d_src < d_res < 2 * d_sty


def test_gray16_offset_layer_feathered_selection_and_style_layer(e2e):
    rec = case(e2e, "gray16")
    assert rec["status"] == "success", rec
    assert rec["style_scale"] == 2.0  # a non-default style scale (--style-scale 2) still gives the layer
    assert case(e2e, "rgba")["style_scale"] == 1.0 and case(e2e, "rgba")["strength"] == 50.0  # the defaults
    assert rec["precision"] == "u16-non-linear"
    new, source = rec["layers"]
    assert new["id"] == rec["returned_layer"] and source["id"] == rec["source_id"]
    assert new["name"] == "Starry Night (style transfer)"  # named after the style layer
    assert new["is_gray"] and new["has_alpha"] and new["has_mask"]
    assert (new["width"], new["height"], new["offsets"]) == (source["width"], source["height"], source["offsets"])
    assert source["offsets"] == [10, 6]  # the layer does not start at the canvas origin
    before, after, result = raw(rec["source_before"]), raw(rec["source_after"]), raw(rec["result"])
    x, y = source["offsets"]
    mask = raw(rec["mask"])[..., 0]
    selection = raw(rec["selection"])[y:y + source["height"], x:x + source["width"], 0]  # canvas -> layer
    assert np.array_equal(before, after), "the source layer was modified"
    assert np.array_equal(result[..., 1], before[..., 1]), "the alpha channel was not kept"
    assert np.array_equal(mask, selection), "the layer mask is not the selection"
    assert len(np.unique(mask)) > 20, "the feathered edge of the selection was lost"
    inside = mask == 255
    grey_src, grey_res = before[..., 0][inside] / 65535.0, result[..., 0][inside] / 65535.0
    assert np.abs(grey_res - grey_src).mean() > 0.01
    assert np.corrcoef(grey_src, grey_res)[0, 1] > 0.6
    # the selection really limits the result: much of the new layer is masked out
    assert (mask == 0).sum() > 0.3 * mask.size


@pytest.mark.parametrize(("name", "expected"), [
    ("not-an-image", "not-an-image.jpg"),          # the engine's own message for a non-image file
    ("no-style", "choose a style image"),
    ("engine-without-nst", "No module named nst_cli"),
    ("engine-missing", "cannot start the engine's Python '/nonexistent/bin/python3'"),
])
def test_errors_are_execution_errors_with_one_readable_line(e2e, name, expected):
    rec = case(e2e, name)
    assert rec["status"] == "execution-error", rec
    assert expected in rec["message"]
    assert "\n" not in rec["message"] and "Traceback" not in rec["message"]
    assert rec["layers_after"] == 1, "a failed run must not add a layer"


def test_engine_error_text_comes_from_the_engine(e2e):
    message = case(e2e, "not-an-image")["message"]
    assert message.startswith("Neural style transfer failed: ")
    assert "not image data" in message  # nst_core's wording, passed through


def test_missing_style_file_gets_the_filters_own_message(e2e):
    # style-path is a plain string GIMP does not check, so a script naming a missing file gets the
    # filter's message naming it; the dialog's style-file (a file chooser, FileChooserAction.OPEN)
    # is checked by GIMP itself before the filter runs, with GIMP's own calling error.
    out, _, _ = e2e
    rec = case(e2e, "missing-style")
    assert rec["status"] == "execution-error", rec
    assert rec["message"] == f"style image not found: {out / 'does-not-exist.png'}"
    assert rec["layers_after"] == 1
    gimp_checked = case(e2e, "missing-style-file")
    assert gimp_checked["status"] == "calling-error" and "style-file" in gimp_checked["message"]
    assert gimp_checked["layers_after"] == 1


def engine_runs(out: Path) -> list[list[str]]:
    """Every command line the engine wrapper was started with (run_gimp_e2e.sh logs them)."""
    text = (out / "engine-argv.log").read_text()
    return [block.split("\n") for block in text.split("\n\n") if block.strip()]


def test_default_quality_works_at_the_layers_full_size(e2e):
    out, _, _ = e2e
    runs = [argv for argv in engine_runs(out) if "run" in argv and str(out / "style.png") in argv]
    rgba = next(argv for argv in runs if argv[argv.index("--seed") + 1] == "1")
    assert rgba[rgba.index("--size") + 1] == "96"  # the layer is 96x72: no working size below it
    assert "--fit-memory" in rgba and rgba[rgba.index("--step-decay") + 1] == "0.5"
    assert case(e2e, "rgba")["status"] == "success"


def test_dialog_estimate_states_sizes_upscale_and_time(e2e):
    rec = case(e2e, "estimate")  # an 800x600 layer
    full, preview = rec["full"], rec["preview"]
    assert full["sizes"] == [[400, 300], [800, 600]] and full["steps"] == [100, 50]
    assert full["output"] == [800, 600] and full["upscale"] == 1.0 and full["seconds"] > 3.0
    assert "400\u00d7300 \u2192 800\u00d7600" in full["text"] and "Result at full size, 800\u00d7600" in full["text"]
    assert "About" in full["text"]
    assert preview["sizes"] == [[256, 192], [512, 384]] and preview["upscale"] == 1.562
    assert "scaled up \u00d71.6 to 800\u00d7600" in preview["text"]
    assert preview["seconds"] < full["seconds"]


def test_no_seam_when_the_mask_is_painted_wider(e2e):
    """The selection's layer mask, painted white everywhere: the stylised area fades into the
    untouched copy across the margin instead of ending in a hard rectangle."""
    rec = case(e2e, "gray16")
    source = raw(rec["source_before"])[..., 0] / 65535.0
    widened = raw(rec["widened"])[..., 0] / 65535.0
    diff = np.abs(widened - source)
    bx, by, bw, bh = rec["selection_box"]
    layer_h, layer_w = source.shape
    x0, y0, w, h = bridge_work_region(layer_w, layer_h, (bx, by, bw, bh))
    outside = np.ones_like(diff, dtype=bool)
    outside[y0:y0 + h, x0:x0 + w] = False
    if outside.any():
        assert diff[outside].max() == 0  # beyond the region: the copy itself
    core = diff[by + bh // 4:by + 3 * bh // 4, bx + bw // 4:bx + 3 * bw // 4].mean()
    assert core > 0.02, "the selection was not stylised"
    edges = []  # the region's outermost pixels on every side that has a margin
    if bx > x0:
        edges.append(diff[y0:y0 + h, x0])
    if bx + bw < x0 + w:
        edges.append(diff[y0:y0 + h, x0 + w - 1])
    if by > y0:
        edges.append(diff[y0, x0:x0 + w])
    if by + bh < y0 + h:
        edges.append(diff[y0 + h - 1, x0:x0 + w])
    assert edges, "the selection left no margin inside the layer; the test image must leave one"
    # a hard edge would differ there as much as the core does; the fade leaves 8-bit rounding
    assert np.concatenate(edges).mean() < 0.25 * core, "a step where the stylised area ends"
    # and nowhere a jump between neighbours much larger than the stylisation itself makes
    assert np.abs(np.diff(diff, axis=1)).max() < 0.5 and np.abs(np.diff(diff, axis=0)).max() < 0.5


def bridge_work_region(width, height, box):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "nst_gimp_bridge", REPO / "plugins" / "gimp" / "nst-style-transfer" / "nst_gimp_bridge.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.work_region(width, height, tuple(box))


def test_flatpak_gimp_runs_the_engine_through_flatpak_spawn_host(e2e):
    out, _, _ = e2e
    results = json.loads((out / "results-flatpak.json").read_text())
    rec = results["cases"]["flatpak"]
    assert rec["status"] == "success", rec
    assert len(rec["layers"]) == 2
    calls = [block.split("\n") for block in (out / "flatpak-spawn.log").read_text().split("\n\n") if block.strip()]
    assert len(calls) == 1
    argv = calls[0]
    assert argv[:2] == ["--host", "--watch-bus"]
    directory = next(a for a in argv if a.startswith("--directory="))[len("--directory="):]
    assert directory.startswith(str(out / "flatpak-cache" / "nst-gimp" / "gimp-nst-"))  # seen by the host too
    assert "--env=PYTHONUNBUFFERED=1" in argv
    engine = argv[argv.index(str(out / "engine-python")):]
    assert engine[1:6] == ["-u", "-m", "nst_cli", "run", f"{directory}/content.png"]
    assert list((out / "flatpak-cache" / "nst-gimp").iterdir()) == []  # cleaned after the run


def test_cancel_kills_the_engine_and_temp_files_are_cleaned_next_run(e2e):
    _, results, cancel = e2e
    assert "error" not in cancel, cancel
    assert cancel["plugin_leads_group"], "the plug-in did not call os.setpgid(0, 0)"
    assert cancel["engine_in_plugin_group"]
    assert cancel["engine_alive_before"] and not cancel["engine_alive_after"]
    assert cancel["engine_survived_s"] < 2.0
    rec = case(e2e, "cancel")
    assert rec["status"] == "calling-error" and rec["layers_after"] == 1
    assert len(rec["tempdirs_after"]) == 1, "a killed plug-in leaves its temp folder behind"
    assert results["tempdirs_at_end"] == [], "stale temp folders were not cleaned by the next run"


def test_dialog_lists_the_engines_presets_and_style_losses_with_plugins(e2e):
    """What the dialog's lists are made of (the installed bridge, in GIMP's own Python, asking the
    engine), with the example plug-in package (tests/plugin_example, installed with the venv)."""
    rec = case(e2e, "names")
    assert rec["note"] is None and rec["problems"] == [], rec  # the engine answered, no broken plug-in
    presets = {name: (label, help_text) for name, label, help_text in rec["presets"]}
    losses = {name: (label, help_text) for name, label, help_text in rec["style_losses"]}
    assert rec["presets"][0][0] == "none" and {"soft", "painterly", "gatys-2015"} <= set(presets)
    assert not {"fast", "balanced", "best"} & set(presets)  # only size and steps: the quality sets those
    label, help_text = presets["example-colorful"]
    assert label.startswith("example-colorful (plug-in nst-plugin-example ") and "mean-color:0.5" in help_text
    assert rec["style_losses"][0][0] == "gram" and {"mean-std", "wasserstein", "histogram", "mrf"} <= set(losses)
    assert losses["channel-mean"][0].startswith("channel-mean (plug-in nst-plugin-example ")
    assert "mean-color" not in losses and "content" not in losses  # not style terms


def test_plugin_preset_and_style_loss_run_and_the_layer_carries_the_record(e2e):
    out, _, _ = e2e
    run = case(e2e, "names")["run"]
    assert run["status"] == "success", run
    assert run["layers_after"] == 2 and run["record_flags"] == 1  # GIMP_PARASITE_PERSISTENT: kept in XCF
    record = run["record"]
    assert record["config"]["style_loss"] == "channel-mean"
    assert [spec["name"] for spec in record["config"]["extra_losses"]] == ["mean-color"]  # from the preset
    used = {(p["kind"], p["name"]): p["distribution"] for p in record["plugins"]}
    assert used[("loss term", "channel-mean")].startswith("nst-plugin-example ")
    assert used[("loss term", "mean-color")].startswith("nst-plugin-example ")
    assert used[("loss term", "content")] == "built-in"
    assert used[("preset", "example-colorful")].startswith("nst-plugin-example ")
    argv = next(a for a in engine_runs(out) if "--preset" in a and "--seed" in a and a[a.index("--seed") + 1] == "5")
    assert argv[argv.index("--preset") + 1] == "example-colorful"
    assert argv[argv.index("--style-loss") + 1] == "channel-mean"


@pytest.mark.parametrize(("name", "expected"), [("unknown-preset", "no-such-preset"),
                                                ("unknown-style-loss", "no-such-loss")])
def test_unknown_preset_or_style_loss_gets_the_engines_one_line_error(e2e, name, expected):
    rec = case(e2e, "names")[name]
    assert rec["status"] == "execution-error", rec
    assert rec["message"].startswith("Neural style transfer failed: ") and expected in rec["message"]
    assert "\n" not in rec["message"] and "Traceback" not in rec["message"]
    assert rec["layers_after"] == 2  # the earlier successful run's layer, nothing more


def test_the_dialogs_lists_fill_from_the_engine_in_gtk(e2e):
    """The dialog's own Preset and Style loss widgets (ChoicesView) on GIMP's procedure config, in a
    GIMP with an X server: built-in names at once, the engine's (plug-ins' included) once it answers."""
    out, _, _ = e2e
    results = json.loads((out / "results-dialog.json").read_text())
    if "skipped" in results:
        pytest.skip(results["skipped"])
    rec = results["cases"]["dialog"]
    before, after = rec["before"], rec["after"]
    assert before["preset"]["active"] == "example-colorful"  # the saved value, kept while the engine is asked
    assert [name for name, _ in before["style-loss"]["items"]] == ["gram", "mean-std", "wasserstein", "histogram",
                                                                    "mrf"]
    presets = dict(after["preset"]["items"])
    losses = dict(after["style-loss"]["items"])
    assert presets["example-colorful"].startswith("example-colorful (plug-in nst-plugin-example ")
    assert losses["channel-mean"].startswith("channel-mean (plug-in nst-plugin-example ")
    assert after["preset"]["active"] == "example-colorful" and after["style-loss"]["active"] == "gram"
    assert "fast" not in presets and after["preset"]["items"][0][0] == "none"
    assert rec["status"] == "" and "mean-color:0.5" in rec["tooltip"]  # no plug-in problem; what it sets
    assert rec["config_after_pick"] == "channel-mean"  # a pick in the list is the procedure's argument
    assert rec["preset_after_reset"] == "none"  # and the list follows the config (Reset, saved settings)
    assert rec["after_gone"]["active"] == "gone-loss"
    assert rec["after_gone"]["items"][-1] == ["gone-loss", "gone-loss (not known to the engine)"]
