"""A faulty plug-in seen from `nst run` (in-process, real engine): one line naming the plug-in and
its distribution, in the plain output and in jsonl, with the right exit code; never "finished"
for a run that did not finish, never "internal error"; `--debug` shows the plug-in's traceback.
"""

from __future__ import annotations

import traceback

import pytest

from nst_cli import exit_codes

from helpers import CONTENT, STYLE, events, install_plugin, nst
from plugin_contract_faulty import SOURCE

DIST = "plug-in 'faulty' (nst-cli-test-faulty 1.2.3)"
SMALL = ("--size", 32, "--steps", 4, "--seed", 0, "--precision", "float32", "--device", "cpu")


@pytest.fixture
def faulty(site):
    install_plugin(site, "faulty", SOURCE)
    return site


@pytest.mark.parametrize("args, culprit", [
    (("--loss", "bad-shape"), f"loss term 'bad-shape' from {DIST} returned a tensor of shape (3,)"),
    (("--loss", "bad-raises"), f"loss term 'bad-raises' from {DIST} raised KeyError: 'relu9_9'"),
    (("--backbone", "bad-channels", "--style-loss", "ok-style"), f"backbone 'bad-channels' from {DIST} returned "
                                                                 f"shape (1, 16, 32, 32) for layer 'relu2'"),
    (("--backbone", "tiny", "--style-loss", "ok-style", "--layer-schedule", "bad-negative"),
     f"layer schedule 'bad-negative' from {DIST} (weighting loss term 'ok-style') returned -1.0"),
])
def test_a_plugin_fault_is_one_jsonl_error_naming_the_plugin(faulty, tmp_path, args, culprit):
    result = nst("run", CONTENT, STYLE, "-o", tmp_path / "out.png", *SMALL, *args, "--progress", "jsonl")
    assert result.exit_code == exit_codes.USER_ERROR
    error = events(result.stdout)[-1]
    assert error["event"] == "error" and culprit in error["message"], error
    assert "internal error" not in error["message"] and "Traceback" not in result.stderr
    assert not (tmp_path / "out.png").exists()


def test_a_plugin_fault_is_one_stderr_line(faulty, tmp_path):
    result = nst("run", CONTENT, STYLE, "-o", tmp_path / "out.png", *SMALL, "--loss", "bad-detached",
                 "--progress", "none")
    assert result.exit_code == exit_codes.USER_ERROR
    errors = [line for line in result.stderr.splitlines() if line.startswith("nst: error:")]
    assert errors == [f"nst: error: loss term 'bad-detached' from {DIST} returned a tensor that does not depend on "
                      f"the image (no autograd graph: detached, computed under torch.no_grad(), or from the targets "
                      f"only), so it cannot steer the result; compute it from the image or features it is given"]
    assert "Traceback" not in result.stderr


def test_debug_shows_the_plugins_own_traceback(faulty, tmp_path):
    result = nst("--debug", "run", CONTENT, STYLE, "-o", tmp_path / "out.png", *SMALL, "--loss", "bad-raises",
                 "--progress", "none")
    assert result.exit_code != 0
    text = "".join(traceback.format_exception(result.exception))
    assert "nst_cli_test_faulty.py" in text and 'raise KeyError("relu9_9")' in text


def test_a_plugin_nan_later_exits_3_naming_the_term_not_finished(faulty, tmp_path):
    result = nst("run", CONTENT, STYLE, "-o", tmp_path / "out.png", *SMALL, "--steps", 8, "--loss",
                 "bad-nan-later", "--progress", "jsonl")
    assert result.exit_code == exit_codes.NON_FINITE
    done = events(result.stdout)[-1]
    assert done["event"] == "done" and done["status"] == "non-finite" and done["steps"] < 8
    assert f"in loss term 'bad-nan-later' from {DIST} (nan)" in done["message"]
