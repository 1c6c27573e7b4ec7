"""Resumable runs through the Python API, on the real engine and real VGG19 weights (64 px).

A stopped run hands out its state (``result.state``; ``Progress.state()`` after any step); the
state survives a round trip through its file; ``stylize(..., resume=state)`` goes on at the saved
scale and step, does not redo a step, and ends close to the run that was never interrupted; a
state from other settings or images is refused with one line naming what differs. (The crafted
pickle is in test_safety.py, the CLI's resume file in test_cli_resume.py.)
"""

from __future__ import annotations

import json
import os

import pytest
import torch

from nst_core import StyleConfig, stylize
from nst_core.errors import ResumeError
from nst_core.image import LoadedImage
from nst_core.resume import (RESUME_FORMAT, RunState, check_resume, inputs_fingerprint, load_state, resume_path,
                             save_state, settings_text)


def config(**fields) -> StyleConfig:
    return StyleConfig(**{"size": 64, "steps": 16, "seed": 0, "device": "cpu", **fields})


@pytest.fixture(scope="module")
def uninterrupted(content_64, style_64, builtin_registries):
    """16 steps at 64 px, never stopped: (result, [Progress, ...])."""
    seen = []
    result = stylize(content_64, style_64, config(), registries=builtin_registries, on_progress=seen.append)
    return result, seen


def test_a_stopped_run_resumes_where_it_stopped_and_ends_close_to_an_uninterrupted_one(
        content_64, style_64, builtin_registries, uninterrupted, tmp_path):
    full, _ = uninterrupted
    first: list = []
    stopped = stylize(content_64, style_64, config(), registries=builtin_registries, on_progress=first.append,
                      should_stop=lambda: len(first) >= 6)
    assert stopped.status == "stopped" and stopped.steps == 6
    state = stopped.state
    assert (state.scale, state.scale_step, state.step, state.total, state.seed) == (1, 6, 6, 16, 0)
    assert state.x.shape == state.best_x.shape == (1, 3, 48, 64) and state.x.device.type == "cpu"
    assert state.best_loss == min(p.loss for p in first)

    path = save_state(state, resume_path(tmp_path / "out.png"))
    assert path.name == "out.png.resume.pt" and os.listdir(tmp_path) == ["out.png.resume.pt"]  # no temporary left
    second: list = []
    resumed = stylize(content_64, style_64, config(), registries=builtin_registries, on_progress=second.append,
                      resume=load_state(path))
    assert resumed.status == "finished" and resumed.steps == resumed.total_steps == 16
    steps = [p.step for p in first] + [p.step for p in second]
    assert steps == list(range(1, 17))  # every step once: none redone, none skipped
    assert all(p.total == 16 for p in second)
    assert second[0].elapsed >= state.elapsed  # the clock goes on
    assert resumed.loss == pytest.approx(full.loss, rel=0.05)  # L-BFGS restarts, the objective barely notices
    assert resumed.loss < first[0].loss / 3


def test_progress_state_resumes_after_that_step(content_64, style_64, builtin_registries, uninterrupted):
    """The state handed out at step 9 is the iterate the uninterrupted run evaluated at step 10."""
    _, full_steps = uninterrupted
    states = {}

    def keep(progress):
        if progress.step == 9:
            states[9] = progress.state()

    stylize(content_64, style_64, config(steps=10), registries=builtin_registries, on_progress=keep)
    # a 10-step run's state after step 9 of 10 resumes in a 10-step run only; check the fit first
    state = states[9]
    assert (state.step, state.scale_step, state.total) == (9, 9, 10)
    with pytest.raises(ResumeError, match=r"steps 10 -> 16"):
        stylize(content_64, style_64, config(), registries=builtin_registries, resume=state)
    seen: list = []
    resumed = stylize(content_64, style_64, config(steps=10), registries=builtin_registries, on_progress=seen.append,
                      resume=state)
    assert [p.step for p in seen] == [10] and resumed.steps == 10
    # step 10 evaluated the same pixels as step 10 of the 16-step run (same settings up to step 9:
    # the layer schedule is fixed, so only the step count differs)
    assert seen[0].loss == pytest.approx(full_steps[9].loss, rel=1e-4)


def test_resume_across_scales(content_64, style_64, builtin_registries):
    two_scales = dict(steps=12, scales=2, min_scale_size=32, precision="float32")  # bf16 on a 64 px image: ±10 %
    full = stylize(content_64, style_64, config(**two_scales), registries=builtin_registries)
    first: list = []
    stopped = stylize(content_64, style_64, config(**two_scales), registries=builtin_registries,
                      on_progress=first.append, should_stop=lambda: len(first) >= 6)
    assert (stopped.state.scale, stopped.state.scale_step, stopped.state.x.shape) == (1, 6, (1, 3, 32, 32))
    second: list = []
    resumed = stylize(content_64, style_64, config(**two_scales), registries=builtin_registries,
                      on_progress=second.append, resume=stopped.state)
    assert [(p.step, p.scale) for p in second] == [(s, 1) for s in range(7, 13)] + [(s, 2) for s in range(13, 25)]
    assert resumed.sizes == full.sizes and resumed.image.shape == full.image.shape
    assert resumed.loss == pytest.approx(full.loss, rel=0.05)


def test_a_different_run_is_refused_with_what_differs(content_64, style_64, builtin_registries):
    first: list = []
    stopped = stylize(content_64, style_64, config(steps=4), registries=builtin_registries, on_progress=first.append,
                      should_stop=lambda: len(first) >= 2)
    state = stopped.state
    calls: list = []
    with pytest.raises(ResumeError, match=r"^cannot resume: the settings differ from the stopped run's "
                                          r"\(style_weight 1\.0 -> 2\.0; tv_weight 0\.0 -> 0\.1\)"):
        stylize(content_64, style_64, config(steps=4, style_weight=2.0, tv_weight=0.1), registries=builtin_registries,
                on_progress=calls.append, resume=state)
    with pytest.raises(ResumeError, match=r"other input images .*: content \(other pixels\)"):
        stylize(content_64.flip(-1), style_64, config(steps=4), registries=builtin_registries, resume=state)
    with pytest.raises(ResumeError, match=r"style 2 \(new\)"):
        stylize(content_64, [style_64, style_64], config(steps=4), registries=builtin_registries, resume=state)
    with pytest.raises(ResumeError, match=r"stopped run had seed 0, this one has seed 5"):
        stylize(content_64, style_64, config(steps=4, seed=5), registries=builtin_registries, resume=state)
    assert calls == []  # refused before any step
    # the device, checkpointing, the out-of-memory policy and a missing seed do not matter
    shapes = [(48, 64)]
    fingerprint = state.inputs
    for fine in (dict(device="auto"), dict(checkpoint=True), dict(on_oom="retry"), dict(seed=None)):
        check_resume(state, config=config(steps=4, **fine), inputs=fingerprint, total=4, shapes=shapes)
    with pytest.raises(ResumeError, match="does not fit this run"):
        check_resume(state, config=config(steps=4), inputs=fingerprint, total=8, shapes=shapes)
    with pytest.raises(ResumeError, match="works at 32x32 px"):
        check_resume(state, config=config(steps=4), inputs=fingerprint, total=4, shapes=[(32, 32)])
    # without a seed, the resumed run takes the state's
    resumed = stylize(content_64, style_64, config(steps=4, seed=None), registries=builtin_registries, resume=state)
    assert resumed.seed == 0 and resumed.steps == 4


def test_inputs_fingerprint_names_each_image():
    a = LoadedImage(rgb=torch.zeros(1, 3, 4, 4))
    b = LoadedImage(rgb=torch.ones(1, 3, 4, 4))
    prints = inputs_fingerprint(a, [b, a], [None, b], init=b)
    assert list(prints) == ["content", "style 1", "style 2", "mask 2", "init"]
    assert prints["content"] == prints["style 2"] != prints["style 1"]
    assert inputs_fingerprint(LoadedImage(rgb=torch.zeros(1, 3, 4, 4), alpha=torch.ones(1, 1, 4, 4)), [])["content"] \
        != prints["content"]  # the alpha counts


def test_state_file_round_trip(tmp_path):
    state = RunState(scale=2, scale_step=3, step=11, total=16, x=torch.rand(1, 3, 8, 6), best_x=torch.rand(1, 3, 8, 6),
                     best_values=(3.0, 1.0, 2.0, 1.0), seed=7, settings=settings_text(config()),
                     inputs={"content": "ab", "style 1": "cd"}, precision="bf16", checkpoint=True,
                     notes=("a note",), recoveries=1, elapsed=12.5)
    path = save_state(state, tmp_path / "s.resume.pt")
    again = load_state(path)
    for name in ("scale", "scale_step", "step", "total", "best_values", "seed", "settings", "inputs", "precision",
                 "checkpoint", "notes", "recoveries", "elapsed"):
        assert getattr(again, name) == getattr(state, name), name
    assert torch.equal(again.x, state.x) and torch.equal(again.best_x, state.best_x)
    assert json.loads(again.settings)["steps"] == 16
    save_state(state, path)  # replaced in place, atomically
    assert sorted(os.listdir(tmp_path)) == ["s.resume.pt"]


def _write(path, data) -> None:
    torch.save(data, path)


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b"not a zip, not a pickle"), "damaged, or it holds more than tensors"),
    (lambda p: p.write_bytes(b""), "damaged"),
    (lambda p: _write(p, {"format": "nst-resume/99"}), "format 'nst-resume/99', expected 'nst-resume/1'"),
    (lambda p: _write(p, [1, 2, 3]), "format 'list'"),
    (lambda p: _write(p, {"format": RESUME_FORMAT, "scale": 1}), "its 'scale_step' is missing"),
])
def test_a_file_that_is_not_a_resume_file_is_refused(tmp_path, make, message):
    path = tmp_path / "bad.resume.pt"
    make(path)
    with pytest.raises(ResumeError, match=message) as error:
        load_state(path)
    assert "\n" not in str(error.value) and str(error.value).startswith(str(path))


def test_a_missing_resume_file_says_so(tmp_path):
    with pytest.raises(ResumeError, match="no such resume file"):
        load_state(tmp_path / "missing.resume.pt")
