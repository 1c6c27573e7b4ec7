"""The installed `nst` console script in a real process: the jsonl contract, signals, a user error.

The jsonl events are checked against the example lines in plugins/cli/PROGRESS_JSONL.md, so the
document and the program cannot drift apart.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading

from nst_core.image import read_image, resize

from helpers import CONTENT, ENV, NST, STYLE, check_documented

def test_console_script_run_follows_the_jsonl_contract(tmp_path):
    assert NST.is_file(), f"the console script {NST} is not installed"
    out = tmp_path / "out.png"
    proc = subprocess.run([NST, "run", CONTENT, STYLE, "-o", out, "--size", "64", "--steps", "3", "--seed", "11",
                           "--save-every", "2", "--progress", "jsonl"],
                          capture_output=True, text=True, timeout=180, env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    events = [json.loads(line) for line in proc.stdout.splitlines()]  # every line is JSON, nothing else
    assert [e["event"] for e in events] == ["start", "step", "step", "saved", "step", "done"]
    for event in events:
        check_documented(event)
    start, done = events[0], events[-1]
    assert (start["seed"], start["sizes"], start["total"], start["output"]) == (11, [[64, 48]], 3, str(out))
    steps = [e for e in events if e["event"] == "step"]
    assert [e["step"] for e in steps] == [1, 2, 3]
    assert all(e["total"] == 3 and e["size"] in start["sizes"] and e["scales"] == 1 for e in steps)
    assert set(steps[0]["terms"]) == {"content", "gram"}
    assert events[3] == {"event": "saved", "path": str(tmp_path / "out.step2.png"), "step": 2}
    assert (done["status"], done["steps"], done["seed"], done["output"]) == ("finished", 3, 11, str(out))
    image = read_image(out).rgb
    assert image.shape[-2:] == (48, 64)
    assert (image - resize(read_image(CONTENT).rgb, 48, 64)).abs().mean() > 0.005
    assert (tmp_path / "out.step2.png").is_file()
    assert done["record"] == str(tmp_path / "out.png.json")
    record = json.loads((tmp_path / "out.png.json").read_text())
    assert (record["seed"], record["steps"], record["inputs"]["content"]) == (11, 3, str(CONTENT))


def test_sigint_saves_the_best_image_so_far_and_exits_130(tmp_path):
    """SIGTERM takes the same path (test_cli.py checks that it maps to 143)."""
    out = tmp_path / "out.png"
    proc = subprocess.Popen([NST, "run", CONTENT, STYLE, "-o", out, "--size", "64", "--steps", "500",
                             "--progress", "jsonl"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ENV)
    watchdog = threading.Timer(150, proc.kill)
    watchdog.start()
    try:
        for line in proc.stdout:
            if json.loads(line)["event"] == "step":
                break
        proc.send_signal(signal.SIGINT)
        rest, stderr = proc.communicate(timeout=120)
    finally:
        watchdog.cancel()
    assert proc.returncode == 130, stderr
    done = json.loads(rest.splitlines()[-1])
    check_documented(done)
    assert done["status"] == "stopped" and "SIGINT" in done["message"]
    assert 1 <= done["steps"] < 500
    assert read_image(out).size == (64, 48)
    assert sorted(os.listdir(tmp_path)) == ["out.png", "out.png.json"]  # no temporary file left behind
    record = json.loads((tmp_path / "out.png.json").read_text())
    assert done["record"] == str(tmp_path / "out.png.json")
    assert (record["status"], record["steps"]) == ("stopped", done["steps"])  # the record says it was cut short


def test_ctrl_c_keeps_the_state_and_resume_goes_on_in_a_new_process(tmp_path):
    """A real Ctrl-C (SIGINT from outside) with --checkpoint-every: the state is saved where the run
    stopped, and a second process with --resume does only the steps that were left."""
    out = tmp_path / "out.png"
    args = [NST, "run", CONTENT, STYLE, "-o", out, "--size", "64", "--steps", "300", "--seed", "4",
            "--checkpoint-every", "1000", "--progress", "jsonl"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    watchdog = threading.Timer(150, proc.kill)
    watchdog.start()
    try:
        first = []
        for line in proc.stdout:
            first.append(json.loads(line))
            if first[-1]["event"] == "step" and first[-1]["step"] == 2:
                proc.send_signal(signal.SIGINT)
                break
        rest, stderr = proc.communicate(timeout=120)
    finally:
        watchdog.cancel()
    first += [json.loads(line) for line in rest.splitlines()]
    assert proc.returncode == 130, stderr
    for event in first:
        check_documented(event)
    done_first = first[-1]["steps"]
    assert first[-2] == {"event": "checkpoint", "path": str(tmp_path / "out.png.resume.pt"), "step": done_first}
    assert [e["step"] for e in first if e["event"] == "step"] == list(range(1, done_first + 1))

    # a new process goes on after the saved step (the 300 steps are only there to leave time to stop it: stop
    # it again, which keeps the state up to date)
    proc = subprocess.Popen([*args, "--resume"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    watchdog = threading.Timer(150, proc.kill)
    watchdog.start()
    try:
        second = []
        for line in proc.stdout:
            second.append(json.loads(line))
            if second[-1]["event"] == "step":
                proc.send_signal(signal.SIGTERM)
                break
        rest, stderr = proc.communicate(timeout=120)
    finally:
        watchdog.cancel()
    second += [json.loads(line) for line in rest.splitlines()]
    assert proc.returncode == 143, stderr
    assert second[0]["event"] == "start" and second[0]["resumed"] == done_first
    steps = [e["step"] for e in second if e["event"] == "step"]
    assert steps[0] == done_first + 1 and steps == list(range(done_first + 1, second[-1]["steps"] + 1))
    assert second[-1]["status"] == "stopped" and "--resume" in second[-1]["message"]
    assert sorted(os.listdir(tmp_path)) == ["out.png", "out.png.json", "out.png.resume.pt"]  # no temporary file


def test_user_error_in_a_real_process_is_one_line_without_traceback(tmp_path):
    proc = subprocess.run([NST, "run", tmp_path / "missing.jpg", STYLE, "-o", tmp_path / "out.png"],
                          capture_output=True, text=True, timeout=120, env=ENV)
    assert proc.returncode == 1
    [line] = proc.stderr.splitlines()
    assert line.startswith(f"nst: error: {tmp_path / 'missing.jpg'}: ")
    assert proc.stdout == "" and os.listdir(tmp_path) == []
