"""`nst batch`: mixed good and bad inputs, resuming, --force, names, manifests, --status, Ctrl-C in a real process.

64 px images and a few steps; the signal test runs the installed console script like
test_cli_subprocess.py does.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import shutil
import signal
import subprocess
import sys
import threading

from PIL import Image
import pytest
from typer.testing import CliRunner
import typer.main

from nst_core.errors import ConfigError, UnknownNameError
from nst_core.image import read_image

from nst_cli import exit_codes
from nst_cli.app import app
from nst_cli.batch_plan import expand_inputs, read_manifest
from nst_cli.run_options import NAMES
from nst_cli.settings import SETTINGS

from helpers import ENV, EXAMPLES, NST, documented_events, same_shape

STYLE = EXAMPLES / "starry_night.jpg"
FAST = ["--size", "64", "--steps", "2", "--precision", "float32"]


def nst(*args):
    return CliRunner().invoke(app, [str(a) for a in args], prog_name="nst")


def events(stdout: str) -> list[dict]:
    """The jsonl events, without warnings (an installed third-party plug-in may warn first)."""
    return [e for e in map(json.loads, stdout.splitlines()) if e["event"] != "warning"]


def summary(outdir: Path) -> list[dict]:
    return [json.loads(line) for line in (outdir / "batch.jsonl").read_text().splitlines()]


def check_documented(event: dict) -> None:
    """The event has the documented keys, and the documented type where both are not null."""
    documented = documented_events()[event["event"]]
    assert set(event) == set(documented), (event, documented)
    for key, value in event.items():
        if value is not None and documented[key] is not None:
            assert same_shape(documented[key], value), (key, value, documented[key])


@pytest.fixture
def photos(tmp_path) -> Path:
    """Two good photos, an RGBA PNG, a text file named .jpg, an empty .png and a non-image file."""
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(EXAMPLES / "tubingen.jpg", folder / "tubingen.jpg")
    shutil.copy(EXAMPLES / "shipwreck.jpg", folder / "ship wreck.jpg")  # a space in the name
    Image.new("RGBA", (50, 40), (10, 200, 30, 128)).save(folder / "clear.png")
    (folder / "notes.jpg").write_text("not an image")
    (folder / "empty.png").write_bytes(b"")
    (folder / "readme.txt").write_text("skipped: not an image name")
    return folder


def test_every_shared_option_is_an_option_of_batch_too():
    commands = typer.main.get_command(app).commands
    run, batch = ({p.name for p in commands[name].params} for name in ("run", "batch"))
    assert NAMES <= run and NAMES <= batch
    assert {s.param for s in SETTINGS} - {"save_every", "checkpoint_every"} <= batch
    result = nst("batch", "--help")
    assert result.exit_code == 0 and "Example" in result.stdout and "--style-weight" in result.stdout


def test_good_inputs_are_written_bad_ones_reported_and_the_exit_code_says_so(photos, tmp_path):
    out = tmp_path / "out"
    result = nst("batch", photos, tmp_path / "missing.jpg", "--style", STYLE, "-o", out, *FAST, "--progress", "jsonl")
    assert result.exit_code == exit_codes.SOME_FAILED == 4
    assert "3 of 6 items failed" in result.stderr
    log = events(result.stdout)
    for event in log:
        check_documented(event)
    assert log[0]["event"] == "batch-start" and (log[0]["total"], log[0]["todo"]) == (6, 6)
    assert log[-1] == {**log[-1], "event": "batch-done", "done": 3, "failed": 3, "skipped": 0}
    done = {e["item"]: e for e in log if e["event"] == "item-done"}
    assert {k: v["status"] for k, v in done.items()} == {
        "tubingen_starry_night.png": "done", "ship wreck_starry_night.png": "done", "clear_starry_night.png": "done",
        "notes_starry_night.png": "failed", "empty_starry_night.png": "failed", "missing_starry_night.png": "failed"}
    assert done["notes_starry_night.png"]["error"].startswith(f"{photos / 'notes.jpg'}: ")
    assert "cannot read the file" in done["missing_starry_night.png"]["error"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["batch.jsonl", "tubingen_starry_night.png", "tubingen_starry_night.png.json", "ship wreck_starry_night.png",
         "ship wreck_starry_night.png.json", "clear_starry_night.png", "clear_starry_night.png.json"])
    assert read_image(out / "tubingen_starry_night.png").size == (64, 48)
    assert read_image(out / "clear_starry_night.png").alpha is not None  # the content's alpha is kept
    record = json.loads((out / "tubingen_starry_night.png.json").read_text())
    assert record["inputs"]["content"] == str(photos / "tubingen.jpg") and record["steps"] == 2
    lines = summary(out)
    assert sorted(line["item"] for line in lines) == sorted(done)
    assert all("\n" not in (line["error"] or "") for line in lines)
    starts = [e for e in log if e["event"] == "item-start"]
    assert all(e["output"] == str(out / e["item"]) for e in starts)

    status = nst("batch", "--status", out)
    assert status.exit_code == exit_codes.SOME_FAILED
    rows = [line.split("\t") for line in status.stdout.splitlines()]
    assert {row[0]: row[1] for row in rows} == {k: v["status"] for k, v in done.items()}
    assert "6 items: 3 done, 3 failed, 0 stopped" in status.stderr


def test_rerun_skips_what_is_done_other_settings_and_force_redo_it(tmp_path):
    out = tmp_path / "out"
    args = ["batch", EXAMPLES / "tubingen.jpg", EXAMPLES / "shipwreck.jpg", "--style", STYLE, "-o", out, *FAST,
            "--progress", "jsonl"]
    assert nst(*args).exit_code == 0
    stamp = (out / "tubingen_starry_night.png").stat().st_mtime_ns
    again = events(nst(*args).stdout)
    assert (again[0]["todo"], again[0]["skipped"]) == (0, 2) and len(again) == 2  # no item ran
    assert (out / "tubingen_starry_night.png").stat().st_mtime_ns == stamp
    assert nst("batch", "--status", out).exit_code == 0
    (out / "tubingen_starry_night.png.json").unlink()  # the record inside the PNG is enough
    assert events(nst(*args).stdout)[0]["skipped"] == 2

    (out / "shipwreck_starry_night.png").unlink()  # a missing output is made again, the other skipped
    log = events(nst(*args).stdout)
    assert [e["item"] for e in log if e["event"] == "item-done"] == ["shipwreck_starry_night.png"]

    other = events(nst(*args[:-2], "--steps", "3", "--progress", "jsonl").stdout)  # other settings: redone
    assert other[0]["todo"] == 2
    forced = events(nst(*args, "--force").stdout)
    assert forced[0]["todo"] == 2 and forced[-1]["done"] == 2
    assert (out / "tubingen_starry_night.png").stat().st_mtime_ns != stamp


def test_without_a_record_the_summary_remembers_what_is_done(tmp_path):
    out = tmp_path / "out"
    args = ["batch", EXAMPLES / "tubingen.jpg", "--style", STYLE, "-o", out, *FAST, "--no-record",
            "--progress", "jsonl"]
    assert nst(*args).exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == ["batch.jsonl", "tubingen_starry_night.png"]
    assert events(nst(*args).stdout)[0]["skipped"] == 1


def test_grid_names_collisions_and_outputs_over_inputs_are_refused_before_any_work(tmp_path):
    out = tmp_path / "out"
    styles = ["--style", STYLE, "--style", EXAMPLES / "the_scream.jpg"]
    clash = nst("batch", EXAMPLES / "tubingen.jpg", *styles, "--grid", "-o", out, "--name", "{stem}.png", *FAST)
    assert clash.exit_code == 1 and "two jobs would write" in clash.stderr and "{stem}.png" in clash.stderr
    assert not out.exists()
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(EXAMPLES / "tubingen.jpg", photos / "a.png")
    over = nst("batch", photos / "a.png", "--style", STYLE, "-o", photos, "--name", "{name}", *FAST)
    assert over.exit_code == 1 and "would overwrite the input" in over.stderr
    inside = nst("batch", photos, "--style", STYLE, "-o", photos, *FAST)  # outputs never become inputs
    assert inside.exit_code == 1 and "is inside OUTDIR" in inside.stderr
    unknown = nst("batch", photos, "--style", STYLE, "-o", out, "--name", "{stme}.png", *FAST)
    assert unknown.exit_code == 1 and "did you mean 'stem'" in unknown.stderr
    outside = nst("batch", photos, "--style", STYLE, "-o", out, "--name", "../{stem}.png", *FAST)
    assert outside.exit_code == 1 and "inside OUTDIR" in outside.stderr
    bad_style = nst("batch", photos, "--style", photos / "missing.jpg", "-o", out, *FAST)
    assert bad_style.exit_code == 1 and "missing.jpg" in bad_style.stderr
    assert not out.exists()

    grid = nst("batch", photos, *styles, "--grid", "-o", out, *FAST, "--format", "jpg")
    assert grid.exit_code == 0, grid.stderr
    assert sorted(p.name for p in out.glob("*.jpg")) == ["a_starry_night.jpg", "a_the_scream.jpg"]


def test_manifest_rows_bring_their_styles_names_and_settings(tmp_path):
    shutil.copy(EXAMPLES / "tubingen.jpg", tmp_path / "t.jpg")
    shutil.copy(STYLE, tmp_path / "s.jpg")
    shutil.copy(EXAMPLES / "the_scream.jpg", tmp_path / "scream.jpg")
    jsonl = tmp_path / "jobs.jsonl"
    jsonl.write_text('{"content": "t.jpg", "styles": ["s.jpg", "scream.jpg"], "style_blend": "0.7,0.3", '
                     '"name": "mix.png", "steps": 3}\n# a comment\n\n'
                     '{"content": "t.jpg", "style": "scream.jpg", "name": "{stem}_{style}.webp"}\n')
    out = tmp_path / "out"
    result = nst("batch", "--manifest", jsonl, "-o", out, *FAST, "--progress", "jsonl")
    assert result.exit_code == 0, result.stderr
    mix = json.loads((out / "mix.png.json").read_text())
    assert mix["steps"] == 3 and mix["config"]["style_blend"] == [0.7, 0.3]  # the row's settings win
    assert mix["inputs"]["styles"] == [str(tmp_path / "s.jpg"), str(tmp_path / "scream.jpg")]
    assert json.loads((out / "t_scream.webp.json").read_text())["steps"] == 2

    csv = tmp_path / "jobs.csv"
    csv.write_text("content,styles,steps,name\nt.jpg,s.jpg;scream.jpg,4,a.png\nt.jpg,,,b.png\n")
    [first, second] = read_manifest(csv)
    assert first.styles == (tmp_path / "s.jpg", tmp_path / "scream.jpg") and first.settings == {"steps": 4}
    assert (second.styles, second.settings, second.name) == (None, {}, "b.png")
    (tmp_path / "typo.csv").write_text("content,stepz\nt.jpg,3\n")
    with pytest.raises(UnknownNameError, match="did you mean 'steps'"):
        read_manifest(tmp_path / "typo.csv")
    (tmp_path / "bad.jsonl").write_text('{"content": "t.jpg"}\n[1, 2]\n')
    with pytest.raises(ConfigError, match=r"bad.jsonl:2: expected a JSON object"):
        read_manifest(tmp_path / "bad.jsonl")
    bad_value = tmp_path / "value.jsonl"
    bad_value.write_text('{"content": "t.jpg", "style": "s.jpg", "optimizer": "sgd"}\n')
    refused = nst("batch", "--manifest", bad_value, "-o", out, *FAST)
    assert refused.exit_code == 1 and "value.jsonl:1:" in refused.stderr


def test_inputs_from_folders_globs_and_lists(tmp_path):
    (tmp_path / "a" / "deep").mkdir(parents=True)
    for name in ("a/1.jpg", "a/2.PNG", "a/deep/3.jpg", "a/.hidden.jpg", "a/notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "list.txt").write_text("# photos\na/1.jpg\n\na/deep\n")
    warnings = []
    flat = expand_inputs([str(tmp_path / "a")], warn=warnings.append)
    assert [c.path.name for c in flat] == ["1.jpg", "2.PNG"]
    deep = expand_inputs([str(tmp_path / "a")], recursive=True)
    assert [c.rel for c in deep] == ["1", "2", "deep/3"]
    assert [c.path.name for c in expand_inputs([str(tmp_path / "a" / "*.jpg")])] == ["1.jpg"]
    listed = expand_inputs([f"@{tmp_path / 'list.txt'}", str(tmp_path / "a" / "1.jpg")])
    assert [c.path.name for c in listed] == ["1.jpg", "3.jpg"]  # each once
    outdir_inside = expand_inputs([str(tmp_path / "a")], recursive=True, outdir=tmp_path / "a" / "deep")
    assert [c.rel for c in outdir_inside] == ["1", "2"]  # outputs never become inputs
    expand_inputs([str(tmp_path / "nothing*.jpg")], warn=warnings.append)
    assert warnings == [f"{tmp_path / 'nothing*.jpg'}: matched no file"]


def test_ctrl_c_keeps_what_finished_and_the_same_command_goes_on(tmp_path):
    """A real SIGINT after the first item finished: exit 130, the finished output kept, the running
    one saved as stopped; the same command then finishes the rest, every output exactly once."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("tubingen.jpg", "shipwreck.jpg", "hoovertowernight.jpg"):
        shutil.copy(EXAMPLES / name, photos / name)
    out = tmp_path / "out"
    args = [NST, "batch", photos, "--style", STYLE, "-o", out, "--size", "64", "--steps", "60",
            "--precision", "float32", "--progress", "jsonl"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    watchdog = threading.Timer(150, proc.kill)
    watchdog.start()
    try:
        first = []
        for line in proc.stdout:
            first.append(json.loads(line))
            if first[-1]["event"] == "warning":
                first.pop()
            elif first[-1]["event"] == "item-step" and any(e["event"] == "item-done" for e in first):
                proc.send_signal(signal.SIGINT)
                break
        rest, stderr = proc.communicate(timeout=120)
    finally:
        watchdog.cancel()
    first += events(rest)
    assert proc.returncode == 130, stderr
    for event in first:
        check_documented(event)
    finished = [e["item"] for e in first if e["event"] == "item-done" and e["status"] == "done"]
    stopped = [e for e in first if e["event"] == "item-done" and e["status"] == "stopped"]
    assert len(finished) == 1 and len(stopped) == 1 and 1 <= stopped[0]["steps"] < 60
    assert json.loads(Path(f"{stopped[0]['output']}.json").read_text())["status"] == "stopped"
    assert first[-1]["event"] == "batch-done" and first[-1]["done"] == 1 and first[-1]["stopped"] == 1

    again = subprocess.run(args, capture_output=True, text=True, timeout=150, env=ENV)
    assert again.returncode == 0, again.stderr
    second = events(again.stdout)
    assert (second[0]["skipped"], second[0]["todo"]) == (1, 2)
    assert sorted(e["item"] for e in second if e["event"] == "item-done") == sorted(
        {"tubingen_starry_night.png", "shipwreck_starry_night.png", "hoovertowernight_starry_night.png"}
        - set(finished))
    names = sorted(os.listdir(out))
    assert names == sorted(["batch.jsonl"] + [f"{stem}_starry_night.png{ext}" for stem in
                                               ("tubingen", "shipwreck", "hoovertowernight") for ext in ("", ".json")])
    for name in names:
        if name.endswith(".png"):
            assert json.loads((out / f"{name}.json").read_text())["status"] == "finished"
            assert read_image(out / name).size[0] == 64
    last = {}
    for line in summary(out):
        last[line["item"]] = line["status"]
    assert set(last.values()) == {"done"} and len(last) == 3


def test_without_ray_installed_ray_says_how_to_install_it_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as if it were not installed
    monkeypatch.delitem(sys.modules, "nst_core.batch.ray_executor", raising=False)
    result = nst("batch", EXAMPLES / "tubingen.jpg", "--style", STYLE, "-o", tmp_path / "out", *FAST, "--ray")
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()[-1:]
    assert line.startswith("nst: error: ") and "pip install 'nst-core[ray]'" in line
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()
    local_only = nst("batch", EXAMPLES / "tubingen.jpg", "--style", STYLE, "-o", tmp_path / "out", *FAST,
                     "--cpus-per-worker", "2")
    assert local_only.exit_code == 1 and "--cpus-per-worker is for Ray" in local_only.stderr


def test_devices_and_workers_are_checked_before_any_work(tmp_path):
    out = tmp_path / "out"
    missing = nst("batch", EXAMPLES / "tubingen.jpg", "--style", STYLE, "-o", out, *FAST, "--devices", "cuda:99")
    assert missing.exit_code == 1 and "cuda:99" in missing.stderr and "Traceback" not in missing.stderr
    twice = nst("batch", EXAMPLES / "tubingen.jpg", "--style", STYLE, "-o", out, *FAST, "--devices", "cpu,cpu")
    assert twice.exit_code == 1 and "--workers" in twice.stderr
    zero = nst("batch", EXAMPLES / "tubingen.jpg", "--style", STYLE, "-o", out, *FAST, "--workers", "0")
    assert zero.exit_code == 1 and "--workers must be" in zero.stderr
    assert not out.exists()
