"""`nst video` end to end in a real process: a clip with audio in, a stylized clip with the same
frames, rate and audio out; jsonl events; resume after Ctrl-C; bad input in one line."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess

import pytest

from nst_core.video.synthetic import texture_clip, write_clip

from helpers import ENV, NST, STYLE, check_documented, documented_events, install_plugin, nst

av = pytest.importorskip("av")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """6 frames of 48x64 at 12 fps with an AAC tone."""
    path = tmp_path_factory.mktemp("clip") / "in.mp4"
    write_clip(texture_clip(6, 48, 64).frames, str(path), fps=12)
    return path


def probe(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
    with av.open(str(path)) as container:
        audio = [hashlib.md5(bytes(p)).hexdigest() for p in container.demux(container.streams.audio[0]) if p.size]
        return frames, float(container.streams.video[0].average_rate), audio


def nst_video(*args, timeout=600):
    return subprocess.run([NST, "video", *map(str, args)], capture_output=True, text=True, timeout=timeout, env=ENV)


def test_nst_video_keeps_frames_rate_and_audio_and_reports_each_frame(clip, tmp_path):
    out = tmp_path / "out.mp4"
    proc = nst_video(clip, STYLE, "-o", out, "--size", 64, "--steps", 4, "--progress", "jsonl")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    frames = [e for e in events if e["event"] == "frame"]
    assert [e["done"] for e in frames] == [1, 2, 3, 4, 5, 6] and all(e["frames"] == 6 for e in frames)
    assert events[-1]["event"] == "video-done" and events[-1]["status"] == "finished" and events[-1]["done"] == 6
    for event in events:
        check_documented(event)  # the schema in PROGRESS_JSONL.md
    n, rate, audio = probe(out)
    source_n, source_rate, source_audio = probe(clip)
    assert (n, rate) == (source_n, source_rate) == (6, 12.0)
    assert audio == source_audio and audio  # copied, not re-encoded
    assert len(list((tmp_path / "out.mp4.frames").glob("*.png"))) == 6
    again = nst_video(clip, STYLE, "-o", out, "--size", 64, "--steps", 4, "--progress", "plain")  # all frames kept
    assert again.returncode == 0, again.stderr
    assert again.stderr.strip().splitlines()[-1].startswith(f"nst: wrote {out} (6 frames in "), again.stderr


def test_nst_video_resumes_after_ctrl_c_with_every_frame_once(clip, tmp_path):
    out = tmp_path / "out.mp4"
    args = [NST, "video", clip, STYLE, "-o", out, "--size", 64, "--steps", 4, "--progress", "jsonl"]
    proc = subprocess.Popen(list(map(str, args)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    for line in proc.stdout:
        if json.loads(line)["event"] == "frame":  # one frame written: stop
            proc.send_signal(signal.SIGINT)
            break
    proc.communicate(timeout=300)
    assert proc.returncode == 130 and not out.exists()
    kept = sorted(p.name for p in (tmp_path / "out.mp4.frames").glob("*.png"))
    assert 1 <= len(kept) < 6
    again = nst_video(clip, STYLE, "-o", out, "--size", 64, "--steps", 4, "--progress", "jsonl")
    assert again.returncode == 0, again.stderr
    redone = [json.loads(line) for line in again.stdout.splitlines()]
    assert sum(e["event"] == "frame" for e in redone) == 6 - len(kept)  # only the missing ones
    assert probe(out)[0] == 6


@pytest.mark.parametrize(("make_args", "message"), [
    (lambda d: [d / "notes.mp4", STYLE, "-o", d / "o.mp4"], "notes.mp4"),
    (lambda d: [d / "missing.mp4", STYLE, "-o", d / "o.mp4"], "missing.mp4"),
    (lambda d: [d / "notes.mp4", STYLE, "-o", d / "o.mp4", "--mask", "m.png"], "--mask does not apply"),
])
def test_nst_video_bad_input_is_one_line_and_writes_nothing(tmp_path, make_args, message):
    (tmp_path / "notes.mp4").write_text("not a video\n")
    proc = nst_video(*make_args(tmp_path), "--size", 64, "--steps", 2)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nst: error: ") and message in lines[0], proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.mp4"]


def test_nst_video_in_chunks_on_two_local_workers(clip, tmp_path):
    """--devices/--workers/--chunk-length/--overlap as nst batch's: chunks on two CPU workers, the
    documented jsonl chunk events, every frame of every chunk once, the clip's frames, rate and audio."""
    out = tmp_path / "out.mp4"
    where = ["--devices", "cpu", "--workers", 2, "--chunk-length", 4, "--overlap", 2]
    proc = nst_video(clip, STYLE, "-o", out, "--size", 48, "--steps", 2, *where, "--progress", "jsonl")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    for event in events:
        check_documented(event)
    events = [e for e in events if e["event"] != "warning"]
    assert events[0]["event"] == "chunks" and events[0]["workers"] == "2 local worker(s) on cpu"
    chunks = events[0]["chunks"]
    made = sorted((e["chunk"], e["chunk_done"]) for e in events if e["event"] == "chunk-frame")
    assert len(made) == len(set(made)) == events[0]["total"] and {c for c, _ in made} == set(range(chunks))
    assert sorted(e["chunk"] for e in events if e["event"] == "chunk-done" and e["status"] == "done") == \
        list(range(chunks))
    assert events[-1]["event"] == "video-done" and events[-1]["status"] == "finished" and events[-1]["done"] == 6
    n, rate, audio = probe(out)
    assert (n, rate) == (6, 12.0) and audio == probe(clip)[2]
    plain = nst_video(clip, STYLE, "-o", out, "--size", 48, "--steps", 2, *where)  # nothing left to run
    assert plain.returncode == 0, plain.stderr
    assert "(0 to run)" in plain.stderr and plain.stderr.strip().splitlines()[-1].startswith(f"nst: wrote {out}")
    other = nst_video(clip, STYLE, "-o", out, "--size", 48, "--steps", 3, *where)
    assert other.returncode == 1 and other.stderr.count("\n") == 1 and "other settings" in other.stderr
    cpus = nst_video(clip, STYLE, "-o", out, "--size", 48, "--cpus-per-worker", 2)
    assert cpus.returncode == 1 and "--cpus-per-worker is for Ray workers" in cpus.stderr


def test_nst_video_a_failing_chunk_exits_4_and_keeps_the_others(site, tmp_path):
    from nst_core.video.io import write_video

    install_plugin(site, "fragile", """
        from nst_core import hookimpl
        from nst_core.errors import ConfigError
        from nst_core.types import LossTerm

        class Fragile(LossTerm):
            role = "image"

            def bind(self, targets):
                if float(targets.content_image.mean()) > 0.6:
                    raise ConfigError("fragile: this frame is too bright")
                return lambda image, features, layer_weights: image.sum() * 0

        @hookimpl
        def nst_register_loss_terms(register):
            register("fragile", Fragile)
        """)
    frames = texture_clip(4, 48, 64, seed=2).frames
    folder, out = tmp_path / "clip", tmp_path / "out.mp4"
    write_video([f * 0.3 for f in frames[:2]] + [0.7 + 0.3 * f for f in frames[2:]], folder)
    result = nst("video", folder, STYLE, "-o", out, "--size", 48, "--steps", 1, "--loss", "fragile", "--no-temporal",
                 "--devices", "cpu", "--chunk-length", 2, "--overlap", 0, "--progress", "jsonl")
    assert result.exit_code == 4, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    for event in events:  # (the schema's sample has a string, not null, as output and no error)
        if event["event"] in ("chunk-done", "video-done"):
            assert set(event) == set(documented_events()[event["event"]])
        else:
            check_documented(event)
    done = {e["chunk"]: (e["status"], e["error"]) for e in events if e["event"] == "chunk-done"}
    assert done == {0: ("done", None), 1: ("failed", "fragile: this frame is too bright")}
    assert events[-1]["event"] == "video-done" and events[-1]["status"] == "failed" and events[-1]["output"] is None
    assert result.stderr.strip().splitlines()[-1] == (f"nst: error: 1 of 2 chunks failed (the others are kept in "
                                                      f"{out}.frames); run the same command to redo them")
    assert not out.exists() and len(list((tmp_path / "out.mp4.frames" / "chunk_000").glob("*.png"))) == 2
