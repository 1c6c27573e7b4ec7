"""The GIMP-free half of the GIMP plug-in (plugins/gimp/nst-style-transfer/nst_gimp_bridge.py).

No GIMP here: argument building (strength and style scale), jsonl progress parsing, error messages,
temp folders, PNG writing and the engine's process handling. The argument list is also run
through the real ``nst run`` (real engine, tiny image), so the plug-in and the CLI cannot drift
apart unnoticed. The GIMP side is tested in a real GIMP by test_gimp_e2e.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import py_compile
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
from PIL import Image
import pytest

from helpers import GIMP_PLUGIN_DIR as PLUGIN_DIR, ROOT as REPO, load_bridge

bridge = load_bridge()


def engine_python(tmp_path: Path, *extra_paths: Path) -> str:
    """This checkout's engine as the plug-in starts it: the bridge clears PYTHONPATH (GIMP's), so a
    wrapper puts this tree's nst_core, nst_cli and example plug-in first (as installed ones would
    be; the example's distribution metadata is the installed one), then ``extra_paths``."""
    wrapper = tmp_path / "engine-python"
    path = ":".join(str(p) for p in (REPO, REPO / "plugins" / "cli", REPO / "tests" / "plugin_example", *extra_paths))
    wrapper.write_text(f"#!/bin/sh\nPYTHONPATH={path} exec {sys.executable} \"$@\"\n")
    wrapper.chmod(0o755)
    return str(wrapper)


# ---------------------------------------------------------------------------------------------
# The plug-in file itself
# ---------------------------------------------------------------------------------------------


def test_plugin_compiles_and_is_laid_out_as_gimp_requires(tmp_path):
    entry = PLUGIN_DIR / "nst-style-transfer.py"
    py_compile.compile(str(entry), cfile=str(tmp_path / "x.pyc"), doraise=True)
    py_compile.compile(str(PLUGIN_DIR / "nst_gimp_bridge.py"), cfile=str(tmp_path / "y.pyc"), doraise=True)
    assert entry.stem == PLUGIN_DIR.name  # GIMP silently ignores a plug-in whose folder name differs
    assert entry.read_text().startswith("#!/usr/bin/env python3\n")
    assert os.access(entry, os.X_OK), "GIMP silently ignores a plug-in file that is not executable"
    mode = subprocess.run(["git", "ls-files", "-s", str(entry)], cwd=REPO, capture_output=True, text=True).stdout
    assert mode.startswith("100755") or not mode, "commit the plug-in with its exec bit (git update-index --chmod=+x)"


def test_bridge_imports_no_gi():
    source = (PLUGIN_DIR / "nst_gimp_bridge.py").read_text()
    assert "import gi" not in source and "from gi" not in source


# ---------------------------------------------------------------------------------------------
# Strength -> --strength (the engine does the logarithmic mapping)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("strength", "fraction"), [(0, 0.0), (25, 0.25), (50, 0.5), (75, 0.75), (100, 1.0),
                                                     (-10, 0.0), (1e9, 1.0)])
def test_strength_fraction(strength, fraction):
    assert bridge.strength_fraction(strength) == pytest.approx(fraction)


def test_no_strength_mapping_of_its_own():
    assert not hasattr(bridge, "strength_to_style_weight") and not hasattr(bridge, "style_weight_to_strength")


@pytest.mark.parametrize(("strength", "weight"), [(0, 0.01), (25, 0.1), (50, 1.0), (75, 10.0), (100, 100.0)])
def test_readme_strength_table_is_the_engines_mapping(strength, weight):
    """plugins/gimp/README.md's table, checked against what the engine makes of --strength."""
    from nst_core.config import style_weight_for_strength

    assert style_weight_for_strength(bridge.strength_fraction(strength)) == pytest.approx(weight)


def test_default_strength_keeps_the_engines_default_style_weight():
    from nst_core import StyleConfig
    from nst_core.config import style_weight_for_strength

    assert style_weight_for_strength(bridge.strength_fraction(bridge.STRENGTH_DEFAULT)) == pytest.approx(
        StyleConfig().style_weight)


def test_style_scale_default_is_the_engines():
    from nst_core import StyleConfig

    assert bridge.STYLE_SCALE_DEFAULT == StyleConfig().style_scale
    low, high = bridge.STYLE_SCALE_RANGE
    assert low < bridge.STYLE_SCALE_DEFAULT < high


# ---------------------------------------------------------------------------------------------
# argv
# ---------------------------------------------------------------------------------------------


def test_build_argv_full():
    request = bridge.EngineRequest(content="/t/c.png", style="/s/my style.jpg", output="/t/o.png",
                                   region_size=(3000, 2000), quality="full-detail", strength=75, size=2400, steps=30,
                                   seed=7, device="cuda", preserve_color="luminance", style_scale=2.5,
                                   mask="/t/fade mask.png")
    assert bridge.build_argv("/venv/bin/python", request) == [
        "/venv/bin/python", "-u", "-m", "nst_cli", "run", "/t/c.png", "/s/my style.jpg", "-o", "/t/o.png",
        "--strength", "0.75", "--style-scale", "2.5", "--seed", "7", "--progress", "jsonl",
        "--size", "2400", "--steps", "30", "--step-decay", "0.7", "--fit-memory",
        "--device", "cuda", "--preserve-color", "luminance", "--mask", "/t/fade mask.png"]


def test_build_argv_defaults_work_at_the_layers_full_size():
    argv = bridge.build_argv("py", bridge.EngineRequest(content="c", style="s", output="o", region_size=(4000, 3000)))
    assert "--device" not in argv and "--preserve-color" not in argv and "--mask" not in argv
    assert "--preset" not in argv
    assert "--style-weight" not in argv  # the engine's weight is the base --strength scales
    assert argv[argv.index("--strength") + 1] == "0.5"
    assert argv[argv.index("--style-scale") + 1] == "1"
    assert argv[argv.index("--size") + 1] == "4000"  # the default quality is the layer's own size
    assert argv[argv.index("--steps") + 1] == "100" and argv[argv.index("--step-decay") + 1] == "0.5"
    assert "--fit-memory" in argv  # the engine stops at what fits, and says so


@pytest.mark.parametrize(("quality", "region", "limit", "expected"), [
    ("preview", (4000, 3000), 0, 512), ("preview", (300, 200), 0, 300),  # never upsampled
    ("full", (4000, 3000), 0, 4000), ("full", (1200, 3600), 0, 3600), ("full", (4000, 3000), 1500, 1500),
    ("full-detail", (5000, 10), 0, 5000), ("preview", (4000, 3000), 256, 256), ("full", (8, 6), 0, 16)])
def test_working_size(quality, region, limit, expected):
    assert bridge.working_size(quality, region, limit) == expected


def test_estimate_argv_matches_the_run_argv():
    request = bridge.EngineRequest(content="c", style="s", output="o", region_size=(3000, 2000), quality="preview",
                                   steps=40, device="cpu")
    run, estimate = bridge.build_argv("py", request), bridge.build_estimate_argv("py", request)
    assert estimate[:8] == ["py", "-u", "-m", "nst_cli", "gimp", "estimate", "3000", "2000"]
    assert bridge.size_options(request) == ["--size", "512", "--steps", "40", "--step-decay", "0.5", "--fit-memory"]
    assert bridge.size_options(request) == run[run.index("--size"):run.index("--fit-memory") + 1]
    assert estimate[8:] == [*bridge.size_options(request), "--device", "cpu"]


@pytest.mark.parametrize(("strength", "style_scale", "expected"), [
    (0, 0.25, ("0", "0.25")), (33.3, 0.5, ("0.333", "0.5")), (100, 4.0, ("1", "4")), (12.5, 1.75, ("0.125", "1.75"))])
def test_build_argv_strength_and_style_scale_values(strength, style_scale, expected):
    argv = bridge.build_argv("py", bridge.EngineRequest(content="c", style="s", output="o", strength=strength,
                                                        style_scale=style_scale))
    assert (argv[argv.index("--strength") + 1], argv[argv.index("--style-scale") + 1]) == expected


@pytest.mark.parametrize("bad", [{"quality": "ultra"}, {"device": "tpu"}, {"size": -1}, {"seed": -5},
                                 {"preserve_color": "sepia"}, {"style_scale": 0.1}, {"style_scale": 5.0},
                                 {"style_scale": float("nan")}, {"region_size": (0, 10)}])
def test_request_rejects_bad_values(bad):
    with pytest.raises(bridge.BridgeError):
        bridge.EngineRequest(content="c", style="s", output="o", **bad)


def test_qualities_are_described_by_what_they_produce():
    assert list(bridge.QUALITIES) == ["preview", "full", "full-detail"] and bridge.DEFAULT_QUALITY == "full"
    assert "512 px" in bridge.QUALITIES["preview"].label
    assert all(q.size is None and "Full size" in q.label for n, q in bridge.QUALITIES.items() if n != "preview")


def test_engine_environment_drops_gimps_python_variables():
    env = bridge.engine_environment({"PYTHONHOME": "/gimp", "PYTHONPATH": "/gimp/lib", "HOME": "/h"})
    assert "PYTHONHOME" not in env and "PYTHONPATH" not in env
    assert env["HOME"] == "/h" and env["PYTHONUNBUFFERED"] == "1"


# ---------------------------------------------------------------------------------------------
# Finding the engine
# ---------------------------------------------------------------------------------------------


def test_find_engine_prefers_the_environment(tmp_path):
    (tmp_path / bridge.CONFIG_NAME).write_text(json.dumps({"python": "/from/config"}))
    found = bridge.find_engine(str(tmp_path), {bridge.ENV_PYTHON: "/from/env"})
    assert (found.python, found.source) == ("/from/env", "NST_GIMP_PYTHON")
    found = bridge.find_engine(str(tmp_path), {})
    assert found.python == "/from/config" and found.source.endswith(bridge.CONFIG_NAME)


def test_find_engine_without_install_says_what_to_do(tmp_path):
    with pytest.raises(bridge.BridgeError, match="nst gimp install"):
        bridge.find_engine(str(tmp_path), {})
    (tmp_path / bridge.CONFIG_NAME).write_text("{not json")
    with pytest.raises(bridge.BridgeError, match="nst gimp install"):
        bridge.find_engine(str(tmp_path), {})


# ---------------------------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------------------------

RUN_EVENTS = [
    {"event": "start", "version": "0.1.0", "device": "cpu", "precision": "bf16", "seed": 1,
     "sizes": [[91, 64], [128, 90]],
     "total": 4, "output": "/t/o.png"},
    {"event": "step", "step": 1, "total": 4, "scale": 1, "scales": 2, "size": [91, 64], "loss": 9.0,
     "terms": {"content": 0.0, "gram": 9.0}, "elapsed": 2.0, "eta": 125.0},
    {"event": "warning", "message": "style image is small;\n upscaled"},
    {"event": "step", "step": 4, "total": 4, "scale": 2, "scales": 2, "size": [128, 90], "loss": 1.0,
     "terms": {}, "elapsed": 8.0, "eta": 0.0},
    {"event": "saved", "path": "/t/o.png", "step": 4},
    {"event": "done", "output": "/t/o.png", "status": "finished", "message": "finished", "steps": 4,
     "elapsed": 8.1, "loss": 1.0, "seed": 1},
]


def test_parse_event_ignores_non_events():
    for line in ["", "hello", "{", "[1, 2]", '{"no": "event"}', '{"event": 3}', "Downloading... 10%"]:
        assert bridge.parse_event(line) is None
    assert bridge.parse_event(' {"event": "step", "step": 1}\n') == {"event": "step", "step": 1}


def test_engine_events_turn_into_progress_text():
    state = bridge.EngineEvents()
    texts = [state.feed(event) for event in RUN_EVENTS]
    assert texts[0] == "Style transfer: starting 4 steps on cpu (bf16), 91\u00d764 \u2192 128\u00d790"  # the plan
    assert state.sizes == ((91, 64), (128, 90)) and state.precision == "bf16"
    assert texts[1] == "Style transfer: step 1/4, scale 1/2 (91\u00d764), about 2 min 05 s left"
    assert texts[2] is None and state.warnings == ["style image is small; upscaled"]
    assert texts[3] == "Style transfer: step 4/4, scale 2/2 (128\u00d790)"  # no "0 s left" at the end
    assert texts[5] == "Style transfer: done"
    assert state.fraction == 1.0 and state.status == "finished" and state.output == "/t/o.png"
    assert state.error is None and state.seed == 1


def test_engine_events_fraction_before_start_and_midway():
    state = bridge.EngineEvents()
    assert state.fraction == 0.0
    assert state.feed({"event": "start", "total": 8, "sizes": [[1, "x"]]}) == "Style transfer: starting 8 steps"
    state.feed({"event": "step", "step": 2, "total": 8})
    assert state.fraction == 0.25


@pytest.mark.parametrize(("seconds", "text"), [
    (None, ""), (float("nan"), ""), (-1, ""), ("x", ""), (0, "0 s"), (59.4, "59 s"), (75, "1 min 15 s"),
    (3600 * 2 + 60 * 5, "2 h 05 min")])
def test_format_duration(seconds, text):
    assert bridge.format_duration(seconds) == text


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


def test_failure_message_prefers_the_engines_own_words():
    state = bridge.EngineEvents()
    state.feed({"event": "error", "message": "style.jpg: no such file;\ncheck the path", "exit_code": 1})
    message = bridge.failure_message(1, state, "nst: error: something else", None)
    assert message == "Neural style transfer failed: style.jpg: no such file; check the path"


def test_failure_message_falls_back_to_stderr_then_exit_code():
    engine = bridge.EngineLocation("/venv/bin/python", "NST_GIMP_PYTHON")
    state = bridge.EngineEvents()
    assert "No module named nst_cli" in bridge.failure_message(1, state, "/usr/bin/python3: No module named nst_cli",
                                                               engine)
    assert "killed by SIGKILL" in bridge.failure_message(-9, state, "", engine)
    message = bridge.failure_message(2, state, "", engine)
    assert "exit code 2" in message and "/venv/bin/python" in message


def test_stderr_tail_finds_the_exception_line(tmp_path):
    path = tmp_path / "err.txt"
    path.write_text(textwrap.dedent("""\
        nst: warning: something harmless
        Traceback (most recent call last):
          File "/x/y.py", line 3, in <module>
            import torch
        ModuleNotFoundError: No module named 'torch'

        """))
    assert bridge.stderr_tail(str(path)) == "ModuleNotFoundError: No module named 'torch'"
    assert bridge.stderr_tail(str(tmp_path / "missing.txt")) == ""
    path.write_text("x" * 100000 + "\nlast words\n")
    assert bridge.stderr_tail(str(path)) == "last words"


def test_stderr_tail_reads_a_usage_error_box(tmp_path):
    path = tmp_path / "err.txt"
    path.write_text("Usage: nst run [OPTIONS] [CONTENT] [STYLE...]...\nTry 'nst run --help' for help.\n"
                    "\u256d\u2500 Error \u2500\u2500\u2500\u256e\n"
                    "\u2502 No such option: --bogus (Possible options: --loss)     \u2502\n"
                    "\u2570\u2500\u2500\u2500\u2500\u2500\u2500\u2500\u2500\u256f\n")
    assert bridge.stderr_tail(str(path)) == "No such option: --bogus (Possible options: --loss)"


def test_usage_error_of_the_real_cli_is_readable(tmp_path, examples):
    """A plug-in newer than the installed nst-core passes an option it does not know."""
    request = bridge.EngineRequest(content=str(examples / "tubingen.jpg"), style=str(examples / "starry_night.jpg"),
                                   output=str(tmp_path / "out.png"))
    argv = bridge.build_argv(engine_python(tmp_path), request) + ["--an-option-from-the-future", "1"]
    outcome = bridge.run_engine(argv, str(tmp_path), lambda f, t: None)
    message = bridge.outcome_error(outcome)
    assert outcome.returncode == 2
    assert "No such option: --an-option-from-the-future" in message and "nst gimp install" in message


def test_outcome_error_accepts_a_non_finite_result_with_a_warning():
    state = bridge.EngineEvents(output="/t/o.png")
    state.feed({"event": "done", "output": "/t/o.png", "status": "non-finite", "message": "loss became NaN"})
    assert bridge.outcome_error(bridge.EngineOutcome(3, state, "")) is None
    assert state.warnings == ["loss became NaN"]
    assert bridge.outcome_error(bridge.EngineOutcome(0, bridge.EngineEvents(), "")) is None
    assert bridge.outcome_error(bridge.EngineOutcome(143, bridge.EngineEvents(), "")).endswith("(exit code 143)")


# ---------------------------------------------------------------------------------------------
# Temp folders
# ---------------------------------------------------------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_private_tempdir_is_named_after_the_process_and_private(tmp_path):
    path = bridge.make_private_tempdir(str(tmp_path))
    assert os.path.basename(path).startswith(f"gimp-nst-{os.getpid()}-")
    assert os.stat(path).st_mode & 0o777 == 0o700


def test_clean_stale_tempdirs(tmp_path):
    """Only the bridge's own folders (exact name and marker file; tests/test_hardening_gimp.py)."""
    dead = tmp_path / f"gimp-nst-{_dead_pid()}-abcdefgh"
    alive = tmp_path / f"gimp-nst-{os.getpid()}-defghijk"
    old_alive = tmp_path / f"gimp-nst-{os.getpid()}-oldoldol"
    unnamed = tmp_path / "gimp-nst-nopid"
    other = tmp_path / "other-dir"
    for d in (dead, alive, old_alive, unnamed, other):
        d.mkdir()
        (d / "content.png").write_bytes(b"x")
        (d / bridge.TEMP_MARKER).write_text(bridge.TEMP_MARKER_TEXT)
    a_file = tmp_path / "gimp-nst-1-filefile"
    a_file.write_text("not a folder")
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(old_alive, (two_days_ago, two_days_ago))
    removed = bridge.clean_stale_tempdirs(str(tmp_path))
    assert sorted(removed) == sorted(str(p) for p in (dead, old_alive))
    assert alive.is_dir() and other.is_dir() and a_file.is_file() and unnamed.is_dir()
    assert bridge.clean_stale_tempdirs(str(tmp_path / "missing")) == []


# ---------------------------------------------------------------------------------------------
# Pixels
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("channels", "bits", "mode"), [(3, 8, "RGB"), (4, 8, "RGBA"), (1, 8, "L"), (2, 8, "LA")])
def test_write_png_8_bit_round_trip(tmp_path, channels, bits, mode):
    rng = np.random.default_rng(channels)
    pixels = rng.integers(0, 256, size=(7, 5, channels), dtype=np.uint8)
    bridge.write_png(str(tmp_path / "x.png"), 5, 7, pixels.tobytes(), channels=channels, bit_depth=bits)
    with Image.open(tmp_path / "x.png") as im:
        assert im.mode == mode and im.size == (5, 7)
        assert np.array_equal(np.asarray(im).reshape(7, 5, channels), pixels)


def test_write_png_16_bit_keeps_full_precision(tmp_path):
    from nst_core.image import read_image

    rng = np.random.default_rng(16)
    pixels = rng.integers(0, 65536, size=(6, 4, 3), dtype=np.uint16)  # native byte order, like GEGL's u16
    bridge.write_png(str(tmp_path / "x.png"), 4, 6, pixels.tobytes(), channels=3, bit_depth=16)
    loaded = read_image(tmp_path / "x.png").rgb[0].permute(1, 2, 0).numpy()
    assert np.allclose(loaded, pixels / 65535.0, atol=1e-6)  # the engine sees all 16 bits


def test_write_png_rejects_wrong_sizes(tmp_path):
    with pytest.raises(ValueError, match="expected 60 bytes"):
        bridge.write_png(str(tmp_path / "x.png"), 5, 4, b"\0" * 59, channels=3)


@pytest.mark.parametrize(("dtype", "size"), [(np.uint8, 1), (np.uint16, 2), (np.float32, 4)])
def test_replace_color_keep_alpha(dtype, size):
    rng = np.random.default_rng(size)
    original = (rng.random((9, 11, 4)) * 200).astype(dtype)
    stylised = (rng.random((9, 11, 4)) * 200).astype(dtype)
    merged = np.frombuffer(bridge.replace_color_keep_alpha(original.tobytes(), stylised.tobytes(), size),
                           dtype=dtype).reshape(9, 11, 4)
    assert np.array_equal(merged[..., :3], stylised[..., :3])
    assert np.array_equal(merged[..., 3], original[..., 3])
    with pytest.raises(ValueError):
        bridge.replace_color_keep_alpha(b"\0" * 8, b"\0" * 4, 1)


def test_work_region():
    assert bridge.work_region(400, 300, None) == (0, 0, 400, 300)
    # a selection in the middle grows by 10 % of its larger side (at least 16 px)
    assert bridge.work_region(400, 300, (100, 100, 200, 50)) == (80, 80, 240, 90)
    assert bridge.work_region(400, 300, (100, 100, 20, 20)) == (84, 84, 52, 52)
    # clipped to the layer
    assert bridge.work_region(400, 300, (0, 290, 400, 10)) == (0, 250, 400, 50)
    assert bridge.work_region(100, 100, (0, 0, 100, 100)) == (0, 0, 100, 100)


def test_layer_name():
    assert bridge.layer_name("/paintings/starry_night.jpg") == "starry_night (style transfer)"
    assert bridge.layer_name("Starry Night") == "Starry Night (style transfer)"
    assert bridge.layer_name("") == "Style (style transfer)"


# ---------------------------------------------------------------------------------------------
# Running the engine
# ---------------------------------------------------------------------------------------------


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def test_run_engine_reads_events_and_survives_a_flood_on_stderr(tmp_path):
    seen = []
    argv = _python("""
        import json, sys
        print("a library printing to stdout")
        print(json.dumps({"event": "start", "total": 2, "device": "cpu", "seed": 3, "output": "o.png"}), flush=True)
        sys.stderr.write("x" * 500000 + "\\n")   # far more than a pipe holds
        for k in (1, 2):
            print(json.dumps({"event": "step", "step": k, "total": 2, "eta": 2 - k}), flush=True)
        print(json.dumps({"event": "done", "status": "finished", "output": "o.png", "steps": 2}))
    """)
    outcome = bridge.run_engine(argv, str(tmp_path), lambda f, t: seen.append((f, t)), env=dict(os.environ))
    assert outcome.returncode == 0 and bridge.outcome_error(outcome) is None
    assert [f for f, _ in seen] == [0.0, 0.5, 1.0, 1.0]
    assert seen[1][1] == "Style transfer: step 1/2, about 1 s left"
    assert outcome.state.output == "o.png"


def test_run_engine_reports_the_error_event(tmp_path):
    argv = _python("""
        import json, sys
        print(json.dumps({"event": "error", "message": "bad.jpg: text, not image data", "exit_code": 1}))
        sys.exit(1)
    """)
    outcome = bridge.run_engine(argv, str(tmp_path), lambda f, t: None, env=dict(os.environ))
    assert bridge.outcome_error(outcome) == "Neural style transfer failed: bad.jpg: text, not image data"


def test_run_engine_that_cannot_start(tmp_path):
    engine = bridge.EngineLocation("/nonexistent/python", "NST_GIMP_PYTHON")
    with pytest.raises(bridge.BridgeError, match="cannot start the engine's Python '/nonexistent/python'"):
        bridge.run_engine(["/nonexistent/python", "-c", "pass"], str(tmp_path), lambda f, t: None, engine=engine)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")
def test_engine_dies_with_a_sigkilled_plugin(tmp_path):
    """GIMP's Cancel SIGKILLs the plug-in; its engine must not live on (PR_SET_PDEATHSIG)."""
    pid_file = tmp_path / "engine.pid"
    plugin = textwrap.dedent(f"""
        import importlib.util, sys, os
        spec = importlib.util.spec_from_file_location("nst_gimp_bridge", {str(PLUGIN_DIR / "nst_gimp_bridge.py")!r})
        bridge = importlib.util.module_from_spec(spec); sys.modules[spec.name] = bridge; spec.loader.exec_module(bridge)
        bridge.become_group_leader()
        engine = [sys.executable, "-c",
                  "import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"]
        bridge.run_engine(engine, {str(tmp_path)!r}, lambda f, t: None)
    """)
    proc = subprocess.Popen([sys.executable, "-c", plugin])
    deadline = time.monotonic() + 30
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    engine_pid = int(pid_file.read_text())
    assert os.getpgid(proc.pid) == proc.pid  # become_group_leader worked
    assert os.getpgid(engine_pid) == proc.pid  # the engine is in the plug-in's group
    os.kill(proc.pid, signal.SIGKILL)  # only the plug-in, not its group
    proc.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(engine_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.02)
    else:
        os.kill(engine_pid, signal.SIGKILL)
        pytest.fail("the engine outlived the SIGKILLed plug-in")


def test_argv_runs_the_real_engine(tmp_path, examples):
    """What the plug-in sends is what `nst run` accepts: a real run, real VGG19, tiny image, 2 steps."""
    content = tmp_path / "content.png"
    with Image.open(examples / "tubingen.jpg") as im:
        im.convert("RGB").resize((48, 36)).save(content)
    request = bridge.EngineRequest(content=str(content), style=str(examples / "starry_night.jpg"),
                                   output=str(tmp_path / "out.png"), region_size=(48, 36), strength=60, size=40,
                                   steps=2, seed=5, device="cpu", style_scale=0.5)
    fractions, texts = [], []

    def on_progress(fraction, text):
        fractions.append(fraction)
        if text:
            texts.append(text)

    outcome = bridge.run_engine(bridge.build_argv(engine_python(tmp_path), request), str(tmp_path), on_progress)
    assert bridge.outcome_error(outcome) is None, outcome
    assert outcome.state.status == "finished" and outcome.state.seed == 5
    assert Path(outcome.state.output) == tmp_path / "out.png" and (tmp_path / "out.png").is_file()
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any(t.startswith("Style transfer: step 2/2") for t in texts)
    with Image.open(tmp_path / "out.png") as out:
        assert max(out.size) == 40


# ---------------------------------------------------------------------------------------------
# The engine's presets and style losses (the dialog's lists), and the names a run passes on
# ---------------------------------------------------------------------------------------------


def test_preset_and_style_loss_are_passed_only_when_chosen():
    chosen = bridge.build_argv("py", bridge.EngineRequest(content="c", style="s", output="o",
                                                          preset="example-colorful", style_loss="channel-mean"))
    assert chosen[chosen.index("--preset") + 1] == "example-colorful"
    assert chosen[chosen.index("--style-loss") + 1] == "channel-mean"
    default = bridge.build_argv("py", bridge.EngineRequest(content="c", style="s", output="o"))
    assert "--preset" not in default and "--style-loss" not in default  # a preset's own style loss is kept
    assert (bridge.PRESET_NONE, bridge.DEFAULT_STYLE_LOSS) == ("none", "gram")


@pytest.mark.parametrize("bad", [{"preset": ""}, {"preset": "--device"}, {"style_loss": "two words"},
                                 {"style_loss": "tab\there"}, {"preset": None}, {"style_loss": "-x"}])
def test_request_rejects_what_cannot_be_a_name(bad):
    with pytest.raises(bridge.BridgeError, match="is not a name"):
        bridge.EngineRequest(content="c", style="s", output="o", **bad)


def test_unknown_names_are_left_to_the_engine():
    request = bridge.EngineRequest(content="c", style="s", output="o", preset="no-such", style_loss="x.y+z")
    assert request.preset == "no-such"  # the engine's "unknown preset ..." is the message the user gets


def _listing(**overrides) -> str:
    data = {"format": "nst-list/1", "presets": [
        {"name": "fast", "description": "quick", "distribution": "built-in", "sets": {"size": "256", "steps": "100"}},
        {"name": "soft", "description": "gentle", "distribution": "built-in", "sets": {"style_weight": "0.3"}},
        {"name": "mine", "description": "my look", "distribution": "my-dist 2.0",
         "sets": {"size": "64", "extra_losses": "mean-color:0.5"}},
        {"name": "empty", "distribution": "my-dist 2.0", "sets": {}},
        {"name": "older", "distribution": "my-dist 2.0"},  # settings not given: offered
        {"description": "no name: skipped"}],
        "loss_terms": [{"name": "gram", "role": "style", "distribution": "built-in"},
                       {"name": "tv", "role": "image", "distribution": "built-in"},
                       {"name": "swirl", "role": "style", "description": "swirls", "distribution": "my-dist 2.0"}],
        "problems": ["plug-in 'bad' (bad-dist 1.0) failed to load: ImportError: x"]}
    data.update(overrides)
    return "some library's chatter\n" + json.dumps(data) + "\n"


def test_parse_choices_keeps_style_losses_and_presets_that_set_more_than_the_quality():
    choices = bridge.parse_choices(_listing())
    assert [p.name for p in choices.presets] == ["fast", "soft", "mine", "empty", "older"]
    assert [p.name for p in choices.dialog_presets()] == ["none", "soft", "mine", "older"]  # fast: size, steps
    assert [loss.name for loss in choices.style_losses] == ["gram", "swirl"]
    mine = choices.presets[2]
    assert mine.label == "mine (plug-in my-dist 2.0)" and choices.style_losses[0].label == "gram"
    assert mine.help == "my look; sets --size 64 --extra-losses mean-color:0.5"
    assert choices.note is None and choices.problems == ("plug-in 'bad' (bad-dist 1.0) failed to load: ImportError: x",)
    assert choices.status() == ("Plug-in problem (its names are missing; 'nst plugins' tells more): "
                                "plug-in 'bad' (bad-dist 1.0) failed to load: ImportError: x")


@pytest.mark.parametrize("stdout", ["", "not json\n", json.dumps({"format": "nst-list/2", "presets": [],
                                                                   "loss_terms": []}),
                                    json.dumps({"format": "nst-list/1", "presets": {}, "loss_terms": []}),
                                    json.dumps({"format": "nst-list/1", "presets": []}), "[1, 2]"])
def test_parse_choices_refuses_other_output(stdout):
    with pytest.raises(bridge.BridgeError, match="did not list its presets"):
        bridge.parse_choices(stdout)
    fallback = bridge.choices_from_output(0, stdout, "")
    assert [p.name for p in fallback.dialog_presets()] == ["none", *bridge.FALLBACK_PRESETS]
    assert fallback.note.startswith("Showing the built-in presets and style losses only: the engine did not list")


def test_choices_from_a_failed_engine_say_why_in_one_line():
    stderr = 'Traceback (most recent call last):\n  File "x", line 1\nModuleNotFoundError: No module named nst_cli\n'
    choices = bridge.choices_from_output(1, "", stderr)
    assert choices.note == ("Showing the built-in presets and style losses only: the engine could not list them: "
                            "ModuleNotFoundError: No module named nst_cli")
    assert "\n" not in choices.note and choices.status() == choices.note


def test_list_choices_falls_back_when_the_engine_cannot_be_asked(tmp_path):
    missing = bridge.list_choices(bridge.EngineLocation("/nonexistent/python3", "test"))
    assert "cannot start the engine's Python '/nonexistent/python3'" in missing.note
    assert [loss.name for loss in missing.style_losses] == list(bridge.FALLBACK_STYLE_LOSSES)
    assert "nst gimp install" in bridge.list_choices(None).note
    slow = tmp_path / "slow-python"
    slow.write_text("#!/bin/sh\nexec sleep 30\n")
    slow.chmod(0o755)
    started = time.monotonic()
    timed_out = bridge.list_choices(bridge.EngineLocation(str(slow), "test"), timeout=1.0)
    assert time.monotonic() - started < 10 and "did not answer within 1 s" in timed_out.note
    bare = tmp_path / "bare-python"  # a Python without site-packages: no nst_cli
    bare.write_text(f"#!/bin/sh\nexec {sys.executable} -I -S \"$@\"\n")
    bare.chmod(0o755)
    no_nst = bridge.list_choices(bridge.EngineLocation(str(bare), "test"))
    assert no_nst.note.startswith("Showing the built-in presets and style losses only: the engine could not list "
                                  "them: ") and no_nst.note.endswith("No module named nst_cli")


def test_list_choices_asks_the_real_engine_plugins_included(tmp_path):
    choices = bridge.list_choices(bridge.EngineLocation(engine_python(tmp_path), "test"))
    assert choices.note is None and choices.problems == (), choices
    presets = {p.name: p for p in choices.dialog_presets()}
    assert presets["example-colorful"].distribution.startswith("nst-plugin-example ")
    assert "--extra-losses mean-color:0.5" in presets["example-colorful"].help
    assert "fast" not in presets and "soft" in presets and "gatys-2015" in presets
    losses = {loss.name: loss for loss in choices.style_losses}
    assert losses["channel-mean"].label.startswith("channel-mean (plug-in nst-plugin-example ")
    assert losses["gram"].builtin and "mean-color" not in losses


def test_fallback_names_are_the_engines_built_ins(tmp_path):
    environ = {**os.environ, "NST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    choices = bridge.list_choices(bridge.EngineLocation(engine_python(tmp_path), "test"), environ=environ)
    assert choices.note is None
    assert tuple(p.name for p in choices.dialog_presets()[1:]) == bridge.FALLBACK_PRESETS
    assert tuple(loss.name for loss in choices.style_losses) == bridge.FALLBACK_STYLE_LOSSES
    fallback = bridge.fallback_choices("the reason")  # what the dialog shows without the engine's answer
    assert [p.name for p in fallback.dialog_presets()] == ["none", *bridge.FALLBACK_PRESETS]


BROKEN_PLUGIN = "import no_such_module_for_the_gimp_bridge\n"


def _broken_site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    (site / "nst_gimp_test_broken.py").write_text(BROKEN_PLUGIN)
    info = site / "nst_gimp_test_broken-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: nst-gimp-test-broken\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text("[nst_core]\nbroken = nst_gimp_test_broken\n")
    return site


def test_a_broken_plugin_is_stated_by_the_listing_and_not_repeated_after_the_run(tmp_path, examples):
    """`nst run` warns about a broken plug-in at every run; the dialog names it once (the listing's
    problems) and the message after the run leaves it out, keeping the run's own warnings."""
    python = engine_python(tmp_path, _broken_site(tmp_path))
    choices = bridge.list_choices(bridge.EngineLocation(python, "test"))
    assert len(choices.problems) == 1 and "'broken' (nst-gimp-test-broken 1.2.3)" in choices.problems[0]
    assert "Plug-in problem" in choices.status() and "\n" not in choices.status()
    assert "channel-mean" in {loss.name for loss in choices.style_losses}  # the others still work
    content = tmp_path / "content.png"
    with Image.open(examples / "tubingen.jpg") as im:
        im.convert("RGB").resize((40, 30)).save(content)
    Image.new("L", (20, 20), 255).save(tmp_path / "mask.png")  # another size: the run's own warning
    request = bridge.EngineRequest(content=str(content), style=str(examples / "starry_night.jpg"),
                                   output=str(tmp_path / "out.png"), region_size=(40, 30), size=32, steps=1,
                                   device="cpu", mask=str(tmp_path / "mask.png"))
    outcome = bridge.run_engine(bridge.build_argv(python, request), str(tmp_path), lambda *a: None)
    assert bridge.outcome_error(outcome) is None, outcome
    warnings = outcome.state.warnings
    assert choices.problems[0] in warnings  # nst run repeats the plug-in problem ...
    shown = bridge.run_warnings(warnings, choices.problems)
    assert shown and not any("nst-gimp-test-broken" in w for w in shown)  # ... which the message leaves out
    assert any("mask" in w for w in shown)
    assert bridge.run_warnings(warnings) == shown  # also when the dialog had no answer yet


def test_plugin_preset_and_style_loss_run_and_the_record_names_the_distribution(tmp_path, examples):
    content = tmp_path / "content.png"
    with Image.open(examples / "tubingen.jpg") as im:
        im.convert("RGB").resize((40, 30)).save(content)
    request = bridge.EngineRequest(content=str(content), style=str(examples / "starry_night.jpg"),
                                   output=str(tmp_path / "out.png"), region_size=(40, 30), size=32, steps=2,
                                   device="cpu", preset="example-colorful", style_loss="channel-mean")
    outcome = bridge.run_engine(bridge.build_argv(engine_python(tmp_path), request), str(tmp_path), lambda *a: None)
    assert bridge.outcome_error(outcome) is None, outcome
    assert outcome.state.record == str(tmp_path / "out.png.json")  # what the filter attaches to the layer
    record = json.loads(Path(outcome.state.record).read_text())
    assert record["config"]["style_loss"] == "channel-mean"
    used = {(p["kind"], p["name"]): p["distribution"] for p in record["plugins"]}
    assert used[("loss term", "channel-mean")].startswith("nst-plugin-example ")
    assert used[("loss term", "mean-color")].startswith("nst-plugin-example ")  # the preset's extra loss
    assert used[("preset", "example-colorful")].startswith("nst-plugin-example ")  # and the preset itself


def test_unknown_preset_gets_the_engines_one_line_error(tmp_path, examples):
    request = bridge.EngineRequest(content=str(examples / "tubingen.jpg"), style=str(examples / "starry_night.jpg"),
                                   output=str(tmp_path / "out.png"), size=32, steps=1, device="cpu",
                                   preset="no-such-preset")
    outcome = bridge.run_engine(bridge.build_argv(engine_python(tmp_path), request), str(tmp_path), lambda *a: None)
    message = bridge.outcome_error(outcome)
    assert message.startswith("Neural style transfer failed: unknown preset 'no-such-preset'") and "\n" not in message


def test_is_plugin_problem():
    assert bridge.is_plugin_problem("preset 'x' from plug-in 'p' (d 1.0) uses the unknown loss term 'y'; it is ignored")
    assert bridge.is_plugin_problem('plug-in "o\'b" (d 1.0) failed to load: ImportError: z')
    assert bridge.is_plugin_problem("anything at all", ["anything  at all"])  # a listed problem, whitespace aside
    assert not bridge.is_plugin_problem("the device ran out of memory; worked at 512 px instead")


def test_the_dialogs_estimate_counts_the_presets_scales():
    """gatys-2015 runs at one scale: the estimate must say so (the quality alone would plan two)."""
    from typer.testing import CliRunner

    from nst_cli.app import app

    request = bridge.EngineRequest(content="", style="", output="", region_size=(900, 600), device="cpu",
                                   preset="gatys-2015")
    argv = bridge.build_estimate_argv("python", request)
    assert argv[-2:] == ["--preset", "gatys-2015"]
    assert "--preset" not in bridge.build_estimate_argv("python", bridge.EngineRequest(content="", style="",
                                                                                        output=""))
    answers = {}
    for name, args in (("preset", argv[4:]), ("none", argv[4:-2])):
        result = CliRunner().invoke(app, [*args, "--no-calibrate"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        answers[name] = bridge.parse_estimate(result.output)
    assert answers["preset"].sizes == ((900, 600),) and answers["none"].sizes == ((450, 300), (900, 600))
    unknown = CliRunner().invoke(app, [*argv[4:-1], "no-such-preset", "--no-calibrate"])
    with pytest.raises(bridge.BridgeError, match="unknown preset 'no-such-preset'"):
        bridge.parse_estimate(unknown.output)
