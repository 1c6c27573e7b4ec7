"""``nst run --checkpoint-every N`` / ``--resume`` and ``--on-oom retry``, in-process on the real
engine (64 px, a few steps).

The interruption is a real SIGTERM to this process, sent by a real plug-in loss term at a chosen
step (so the step is exact); the out-of-memory is a real plug-in term raising
``torch.OutOfMemoryError`` while the backbone runs without checkpointing. The console script with
a real Ctrl-C from outside is in test_cli_subprocess.py.
"""

from __future__ import annotations

import json

import torch

from nst_core.image import read_image
from nst_core.resume import RESUME_FORMAT, load_state

from nst_cli import exit_codes

from helpers import CONTENT, EXAMPLES, STYLE, check_documented, events, install_plugin, nst

SIGTERM_AT = """\
    import os, signal
    from nst_core import LossTerm, hookimpl

    class SigtermAt(LossTerm):
        '''Adds nothing to the objective; sends SIGTERM to this process during step NST_TEST_SIGTERM_AT.'''
        role = "image"

        def bind(self, targets):
            calls = []
            at = int(os.environ.get("NST_TEST_SIGTERM_AT", "0"))

            def loss(image, features, layer_weights):
                calls.append(1)
                if len(calls) == at:
                    os.kill(os.getpid(), signal.SIGTERM)
                return image.sum() * 0

            return loss

    @hookimpl
    def nst_register_loss_terms(register):
        register("sigterm-at", SigtermAt)
"""


def run_args(out, *extra):
    return ("run", CONTENT, STYLE, "-o", out, "--size", 64, "--steps", 6, "--loss", "sigterm-at:0",
            "--checkpoint-every", 100, "--progress", "jsonl", *extra)


def steps_of(stream) -> list[int]:
    return [e["step"] for e in stream if e["event"] == "step"]


def test_checkpoint_every_writes_the_state_and_a_finished_run_deletes_it(tmp_path):
    out = tmp_path / "out.png"
    result = nst("run", CONTENT, STYLE, "-o", out, "--size", 64, "--steps", 5, "--seed", 2, "--checkpoint-every", 2,
                 "--progress", "jsonl")
    assert result.exit_code == 0, result.stderr
    stream = events(result.stdout)
    checkpoints = [e for e in stream if e["event"] == "checkpoint"]
    assert [(e["path"], e["step"]) for e in checkpoints] == [(str(tmp_path / "out.png.resume.pt"), 2),
                                                             (str(tmp_path / "out.png.resume.pt"), 4)]
    for event in stream:
        check_documented(event)
    assert stream[0]["resumed"] == 0 and stream[-1]["status"] == "finished"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png", "out.png.json"]  # deleted, no temporary left


def test_sigterm_saves_the_state_and_resume_finishes_the_run_without_redoing_steps(site, tmp_path):
    install_plugin(site, "sigterm", SIGTERM_AT)
    out = tmp_path / "out.png"
    state_file = tmp_path / "out.png.resume.pt"
    first = nst(*run_args(out), env={"NST_TEST_SIGTERM_AT": "3"})
    assert first.exit_code == 143, first.stderr
    stream = events(first.stdout)
    seed = stream[0]["seed"]
    assert steps_of(stream) == [1, 2, 3]
    assert stream[-2] == {"event": "checkpoint", "path": str(state_file), "step": 3}
    done = stream[-1]
    assert done["status"] == "stopped" and done["steps"] == 3
    assert done["message"].endswith(f"continue with the same command and --resume ({state_file})")
    state = load_state(state_file)
    assert (state.step, state.scale, state.scale_step, state.total, state.seed) == (3, 1, 3, 6, seed)
    assert read_image(out).size == (64, 48)  # the best image so far is written too

    # other settings or another photo: one line before the run starts; the state stays
    for extra, message in ((("--steps", 7), "settings differ from the stopped run's (steps 6 -> 7)"),
                           (("--tv-weight", 0.5), "tv_weight 0.0 -> 0.5")):
        refused = nst(*run_args(out), *extra, "--resume")
        assert refused.exit_code == exit_codes.USER_ERROR
        [error] = events(refused.stdout)
        assert error["event"] == "error" and message in error["message"]
        assert error["message"].startswith(f"{state_file}: cannot resume")
    other = nst("run", EXAMPLES / "hoovertowernight.jpg", STYLE, *run_args(out)[3:], "--resume")
    assert other.exit_code == 1 and "content (other pixels)" in events(other.stdout)[0]["message"]
    assert load_state(state_file).step == 3

    second = nst(*run_args(out, "--resume"))  # no --seed: the state's
    assert second.exit_code == 0, second.stderr
    stream = events(second.stdout)
    start, done = stream[0], stream[-1]
    assert (start["resumed"], start["seed"], start["total"]) == (3, seed, 6)
    assert steps_of(stream) == [4, 5, 6]  # steps 1-3 are not done again
    assert (done["status"], done["steps"], done["seed"]) == ("finished", 6, seed)
    assert not state_file.exists()
    record = json.loads((tmp_path / "out.png.json").read_text())
    assert (record["status"], record["steps"], record["seed"]) == ("finished", 6, seed)


def test_resume_needs_a_resume_file(tmp_path):
    result = nst("run", CONTENT, STYLE, "-o", tmp_path / "out.png", "--size", 64, "--steps", 2, "--resume")
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"nst: error: --resume: there is no resume file {tmp_path / 'out.png.resume.pt'}")
    assert list(tmp_path.iterdir()) == []


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


def test_a_crafted_resume_file_is_refused_in_one_line(tmp_path):
    marker = tmp_path / "MARKER"
    torch.save({"format": RESUME_FORMAT, "x": _Payload(marker)}, tmp_path / "out.png.resume.pt")
    result = nst("run", CONTENT, STYLE, "-o", tmp_path / "out.png", "--size", 64, "--steps", 2, "--resume")
    assert result.exit_code == 1 and not marker.exists()
    [line] = result.stderr.splitlines()
    assert "not a resume file nst can use" in line and "refusing to load it" in line
    assert not (tmp_path / "out.png").exists()


def test_an_old_resume_file_is_replaced_with_a_warning(tmp_path):
    (tmp_path / "out.png.resume.pt").write_bytes(b"old")
    result = nst("run", CONTENT, STYLE, "-o", tmp_path / "out.png", "--size", 64, "--steps", 2,
                 "--checkpoint-every", 1, "--progress", "plain")
    assert result.exit_code == 0, result.stderr
    assert "will be replaced; add --resume to continue that run instead" in result.stderr
    assert not (tmp_path / "out.png.resume.pt").exists()


TIGHT_DEVICE = """\
    import torch
    from nst_core import LossTerm, hookimpl
    from nst_core.builtins.vgg import caffe_vgg19

    BUILT = []

    class Tight(LossTerm):
        '''Runs out of memory from its third evaluation on while the backbone is not checkpointed.'''
        role = "image"

        def bind(self, targets):
            calls = []

            def loss(image, features, layer_weights):
                calls.append(1)
                if len(calls) >= 3 and not BUILT[-1].checkpoint:
                    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
                return image.sum() * 0

            return loss

    def watched(pooling="max"):
        BUILT.append(caffe_vgg19(pooling))
        return BUILT[-1]

    @hookimpl
    def nst_register_backbones(register):
        register("vgg19-watched", watched)

    @hookimpl
    def nst_register_loss_terms(register):
        register("tight", Tight)
"""


def test_on_oom_retry_goes_on_with_a_warning_and_without_it_fails_in_one_line(site, tmp_path):
    install_plugin(site, "tight", TIGHT_DEVICE)
    args = ("run", CONTENT, STYLE, "--size", 64, "--steps", 4, "--backbone", "vgg19-watched", "--loss", "tight",
            "--precision", "float32",
            "--progress", "jsonl")
    failed = nst(*args, "-o", tmp_path / "a.png")
    assert failed.exit_code == 1
    assert events(failed.stdout)[-1]["message"].startswith("cpu ran out of memory at 64x48 px; try precision='bf16'")
    assert not (tmp_path / "a.png").exists()

    retried = nst(*args, "-o", tmp_path / "b.png", "--on-oom", "retry")
    assert retried.exit_code == 0, retried.stderr
    stream = events(retried.stdout)
    assert steps_of(stream) == [1, 2, 3, 4]
    [warning] = [e["message"] for e in stream if e["event"] == "warning"]
    assert warning == ("cpu ran out of memory at 64x48 px after step 2: switched to gradient checkpointing on and "
                       "went on from the best image so far")
    assert stream[-1]["status"] == "finished" and read_image(tmp_path / "b.png").size == (64, 48)
    record = json.loads((tmp_path / "b.png.json").read_text())
    assert record["config"]["on_oom"] == "retry"  # --from-record repeats the policy


def test_on_oom_and_checkpoint_every_are_checked(tmp_path):
    for extra, message in ((("--on-oom", "sometimes"), "on_oom must be 'fail' or 'retry'"),
                           (("--checkpoint-every", 0), "--checkpoint-every must be a whole number >= 1")):
        result = nst("run", CONTENT, STYLE, "-o", tmp_path / "out.png", *extra)
        assert result.exit_code == 1 and message in result.stderr, result.stderr
