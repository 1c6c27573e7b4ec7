"""Hardening (issue 16, #8): a resume file is value-checked, not only type-checked: ranges,
finiteness, consistency with the run's steps, no compressed records (sizes bounded before
anything is allocated), and its text is shown without control characters."""

from __future__ import annotations

import math
import zipfile

import pytest
import torch

from nst_core import StyleConfig, stylize
from nst_core.errors import ResumeError, printable
from nst_core.image import LoadedImage
from nst_core.resume import RunState, check_resume, inputs_fingerprint, load_state, save_state, settings_text

from nst_cli.messages import one_line


def config(**fields) -> StyleConfig:
    return StyleConfig(**{"size": 64, "steps": 300, "seed": 0, "device": "cpu", "precision": "float32", **fields})


def state(**fields) -> RunState:
    values = dict(scale=1, scale_step=6, step=6, total=300, x=torch.rand(1, 3, 48, 64), best_x=torch.rand(1, 3, 48, 64),
                  best_values=(3.0, 1.0, 2.0, 1.0), seed=0, settings=settings_text(config()),
                  inputs={"content": "ab" * 32, "style 1": "cd" * 32}, precision="float32", checkpoint=False,
                  notes=(), recoveries=0, elapsed=1.5)
    values.update(fields)
    return RunState(**values)


def round_trip(tmp_path, **fields) -> RunState:
    return load_state(save_state(state(**fields), tmp_path / "s.resume.pt"))


def refused(tmp_path, match, **fields) -> None:
    with pytest.raises(ResumeError, match=match) as error:
        round_trip(tmp_path, **fields)
    assert "\n" not in str(error.value)


def check(s: RunState) -> None:
    check_resume(s, config=config(), inputs=dict(s.inputs), total=300, shapes=[(48, 64)])


def test_a_plain_state_passes(tmp_path):
    check(round_trip(tmp_path))
    check(round_trip(tmp_path, scale_step=300, step=298, recoveries=2))  # two steps went back after NaN


@pytest.mark.parametrize("fields, match", [
    ({"scale_step": -1000}, "'scale_step' is -1000"),
    ({"step": -5}, "'step' is -5"),
    ({"scale": 0}, "'scale' is 0"),
    ({"total": 0, "step": 0}, "'total' is 0"),
    ({"recoveries": -1}, "'recoveries' is -1"),
    ({"step": 400}, "step 400 of 300"),
    ({"seed": -3}, "seed -3 is out of range"),
    ({"elapsed": math.inf}, "elapsed time inf"),
    ({"best_values": (math.nan, 1.0)}, "best loss values are not finite"),
    ({"best_values": (1.0, math.inf)}, "best loss values are not finite"),
    ({"inputs": {"content\x1b[2J": "ab"}}, "input fingerprints"),
    ({"inputs": {"content": "not hex!"}}, "input fingerprints"),
    ({"settings": "[1, 2]"}, "settings are not a JSON object"),
    ({"settings": "[" * 100_000 + "]" * 100_000}, "settings are not JSON"),
])
def test_values_out_of_range_are_refused(tmp_path, fields, match):
    refused(tmp_path, match, **fields)


@pytest.mark.parametrize("fields", [
    {"scale_step": 301, "step": 300},  # more steps than the scale has
    {"scale_step": 10, "step": 4},  # six steps lost, no recovery to explain them
    {"scale_step": 4, "step": 10},  # more steps done than the scale's count allows
])
def test_a_state_that_does_not_add_up_with_the_run_is_refused(tmp_path, fields):
    with pytest.raises(ResumeError, match="does not add up"):
        check(round_trip(tmp_path, **fields))


def test_the_resumed_run_never_runs_past_its_total(content_64, style_64, builtin_registries):
    """The issue's "stopped at step 874 of 300": a negative scale step made the loop run past the
    end. A state handed to the API directly is checked against the run as well."""
    content, style = LoadedImage(rgb=content_64), LoadedImage(rgb=style_64)
    bad = state(scale_step=-1000, step=0, total=3, settings=settings_text(config(steps=3)),
                inputs=inputs_fingerprint(content, [style]))
    with pytest.raises(ResumeError, match="does not add up"):
        stylize(content_64, style_64, config(steps=3), registries=builtin_registries, resume=bad)


def test_notes_lose_their_control_characters(tmp_path):
    loaded = round_trip(tmp_path, notes=("\x1b]0;owned\x07\x1b[2Jcleared", "x" * 10_000), )
    assert loaded.notes[0] == "\\x1b]0;owned\\x07\\x1b[2Jcleared"
    assert len(loaded.notes[1]) <= 1000
    assert "\x1b" not in one_line("file \x1b[31mred\x1b[0m.png")
    assert printable("é ü ß 日本") == "é ü ß 日本"


def test_a_compressed_resume_file_is_refused_before_it_is_unpacked(tmp_path):
    """A small file that would unpack into a large tensor: torch.save never compresses, so any
    compressed record is refused from the zip directory alone."""
    path = save_state(state(x=torch.zeros(1, 3, 1000, 1000), best_x=torch.zeros(1, 3, 1000, 1000)),
                      tmp_path / "big.resume.pt")
    squeezed = tmp_path / "squeezed.resume.pt"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(squeezed, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info.filename))
    assert squeezed.stat().st_size < path.stat().st_size / 20
    with pytest.raises(ResumeError, match="compressed"):
        load_state(squeezed)
    assert load_state(path).x.shape == (1, 3, 1000, 1000)  # the same state, stored as torch writes it
