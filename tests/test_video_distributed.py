"""A clip in chunks on nst batch's executors (nst_core.video.stylize_video_chunked): two local CPU
workers, every frame once, seams crossfaded, a stopped run going on without redoing chunks or
frames, changed settings refused, a failing chunk, and one short Ray run (marked ``ray``).
Tiny synthetic clips at 48 px with 1-2 steps a frame."""

from __future__ import annotations

import hashlib

import pytest
import torch

from nst_core import LossSpec, collect_registries, get_plugin_manager, hookimpl
from nst_core.batch import LocalExecutor
from nst_core.errors import ConfigError, ResumeError
from nst_core.image import read_image
from nst_core.types import LossTerm
from nst_core.video.chain import Chunk, frame_path, stylize_video
from nst_core.video.chunked import chunk_dir, stylize_video_chunked
from nst_core.video.synthetic import texture_clip, write_clip

from helpers import EXAMPLES

pytest.importorskip("cv2")
av = pytest.importorskip("av")

STYLE = EXAMPLES / "starry_night.jpg"
FAST = {"size": 48, "precision": "float32", "first_steps": 2, "next_steps": 1}


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """6 frames of 48x64 at 12 fps, one shot (no scene cut), with an AAC tone."""
    path = tmp_path_factory.mktemp("clip") / "in.mp4"
    write_clip(texture_clip(6, 48, 64, occluder=(3, 1), square=12, seed=1).frames, str(path), fps=12)
    return path


def probe(path):
    with av.open(str(path)) as container:
        frames = sum(1 for _ in container.decode(container.streams.video[0]))
    with av.open(str(path)) as container:
        audio = [hashlib.md5(bytes(p)).hexdigest() for p in container.demux(container.streams.audio[0]) if p.size]
        return frames, float(container.streams.video[0].average_rate), audio


def chunk_frames(frames_dir, index, count):
    return [read_image(frame_path(chunk_dir(frames_dir, index), i)).rgb for i in range(count)]


def test_two_local_workers_make_every_frame_once_and_crossfade_the_seam(clip, tmp_path, builtin_registries):
    events = []
    out = tmp_path / "out.mp4"
    executor = LocalExecutor("cpu", workers=2, registries=builtin_registries)
    result = stylize_video_chunked(clip, STYLE, out, executor=executor, chunk_length=4, overlap=2,
                                   registries=builtin_registries, on_progress=events.append, **FAST)
    assert result.status == "finished" and result.failures == () and result.frames_done == 6
    assert result.scene_cuts == () and result.chunks == (Chunk(0, 0, 4, 0), Chunk(1, 2, 6, 2))
    assert result.ran == (0, 1) and result.workers == "2 local worker(s) on cpu"
    assert events[0].kind == "plan" and events[0].todo == 2 and events[0].total == 8
    starts = [e for e in events if e.kind == "chunk-start"]
    assert sorted(e.chunk.index for e in starts) == [0, 1] and {e.worker for e in starts} == {"cpu#0", "cpu#1"}
    made = sorted((e.chunk.index, e.chunk_done) for e in events if e.kind == "frame")
    assert made == [(k, i) for k in (0, 1) for i in range(1, 5)]  # every frame of every chunk once
    assert [e.done for e in events if e.kind == "frame"] == list(range(1, 9))
    ends = [e for e in events if e.kind == "chunk-done"]
    assert sorted((e.chunk.index, e.status) for e in ends) == [(0, "done"), (1, "done")] and ends[-1].eta == 0
    frames, rate, audio = probe(out)
    assert (frames, rate) == (6, 12.0)
    assert audio == probe(clip)[2] and audio  # copied

    # the same call into an image sequence runs no chunk again; the seam frames are the crossfade
    seq = tmp_path / "seq"
    again = stylize_video_chunked(clip, STYLE, seq, frames_dir=result.frames_dir, executor=executor, chunk_length=4,
                                  overlap=2, registries=builtin_registries, **FAST)
    assert again.status == "finished" and again.ran == ()
    a, b = chunk_frames(result.frames_dir, 0, 4), chunk_frames(result.frames_dir, 1, 4)
    assert (a[2] - b[0]).abs().mean() > 0.01  # two chains: the frames they share differ
    want = [a[0], a[1], (2 * a[2] + b[0]) / 3, (a[3] + 2 * b[1]) / 3, b[2], b[3]]
    got = [read_image(p).rgb for p in sorted(seq.glob("*.png"))]
    assert len(got) == 6
    for i, (g, w) in enumerate(zip(got, want)):
        assert (g - w).abs().max() <= 0.5 / 255 + 1e-6, f"frame {i}"


def _shots(tmp_path):
    """7 frames as an image sequence: a shot of 4 (a texture moving 2 px), a cut, a shot of 3."""
    from nst_core.video.io import write_video

    folder = tmp_path / "clip"
    write_video([*texture_clip(4, 48, 64, occluder=(3, 1), square=12, seed=1).frames,
                 *texture_clip(3, 48, 64, occluder=(3, 1), square=12, seed=9).frames], folder)
    return folder


def test_a_stopped_run_goes_on_without_redoing_finished_chunks_or_frames(tmp_path, builtin_registries):
    folder, out = _shots(tmp_path), tmp_path / "out.mp4"
    options = dict(executor=LocalExecutor("cpu", registries=builtin_registries), chunk_length=3, overlap=1, fps=8,
                   registries=builtin_registries, **FAST)
    events = []
    stop = lambda: any(e.kind == "frame" and e.chunk.index == 1 for e in events)  # noqa: E731
    first = stylize_video_chunked(folder, STYLE, out, on_progress=events.append, should_stop=stop, **options)
    assert first.status == "stopped" and not out.exists() and first.ran == (0, 1)
    assert first.scene_cuts == (4,)  # the cut is a chunk boundary without overlap
    assert first.chunks == (Chunk(0, 0, 3, 0), Chunk(1, 2, 4, 1), Chunk(2, 4, 7, 0))
    kept = sorted(p.name for p in chunk_dir(first.frames_dir, 1).glob("*.png"))
    assert kept == ["frame_00001.png"] and not chunk_dir(first.frames_dir, 2).exists()  # each frame as it finished

    events.clear()
    second = stylize_video_chunked(folder, STYLE, out, on_progress=events.append, **options)
    assert second.status == "finished" and second.ran == (1, 2)  # chunk 0 is not run again
    assert [(e.chunk.index, e.chunk_done) for e in events if e.kind == "chunk-start"] == [(1, 1), (2, 0)]
    assert [(e.chunk.index, e.chunk_done) for e in events if e.kind == "frame"] == [(1, 2), (2, 1), (2, 2), (2, 3)]
    from nst_core.video.io import open_video

    assert open_video(out).info.frames == 7

    with pytest.raises(ResumeError, match=r"other settings: chunks\.length \(3 there, 2 now\)") as info:
        stylize_video_chunked(folder, STYLE, out, **{**options, "chunk_length": 2})
    assert "\n" not in str(info.value)
    with pytest.raises(ResumeError, match="other settings: chain.next_steps"):
        stylize_video_chunked(folder, STYLE, out, **{**options, "next_steps": 2})
    with pytest.raises(ResumeError, match="made in chunks on several workers"):
        stylize_video(folder, STYLE, out, fps=8, registries=builtin_registries, **FAST)  # not mixed with one chain
    single = tmp_path / "single.frames"
    stylize_video(folder, STYLE, None, frames_dir=single, fps=8, duration=0.1, registries=builtin_registries, **FAST)
    with pytest.raises(ResumeError, match="made as one chain"):
        stylize_video_chunked(folder, STYLE, out, **{**options, "frames_dir": single})
    with pytest.raises(ConfigError, match="chunk overlap must be"):
        stylize_video_chunked(folder, STYLE, out, **{**options, "overlap": 3})


class Fragile:
    """A plug-in: loss term ``fragile`` that refuses bright frames (mean above 0.6)."""

    @staticmethod
    @hookimpl
    def nst_register_loss_terms(register):
        class FragileTerm(LossTerm):
            role = "image"

            def bind(self, targets):
                if float(targets.content_image.mean()) > 0.6:
                    raise ConfigError("fragile: this frame is too bright")
                return lambda image, features, layer_weights: image.sum() * 0

        register("fragile", FragileTerm)


def test_a_failing_chunk_is_one_line_and_the_others_are_kept(tmp_path):
    from nst_core.video.io import write_video

    registries = collect_registries(get_plugin_manager(autoload=False, extra=[Fragile]))
    frames = texture_clip(5, 48, 64, seed=2).frames
    folder = tmp_path / "clip"
    write_video([f * 0.3 for f in frames[:3]] + [0.7 + 0.3 * f for f in frames[3:]], folder)
    out = tmp_path / "out.mp4"
    options = dict(executor=LocalExecutor("cpu", registries=registries), chunk_length=3, overlap=0, temporal=False,
                   fps=8, registries=registries, extra_losses=(LossSpec(name="fragile"),), **FAST)
    events = []
    result = stylize_video_chunked(folder, STYLE, out, on_progress=events.append, **options)
    assert result.status == "failed" and not out.exists()
    assert result.failures == ((1, "fragile: this frame is too bright"),)
    assert [(e.chunk.index, e.status) for e in events if e.kind == "chunk-done"] == [(0, "done"), (1, "failed")]
    assert len(list(chunk_dir(result.frames_dir, 0).glob("*.png"))) == 3 and result.frames_done == 3
    again = stylize_video_chunked(folder, STYLE, out, **options)
    assert again.status == "failed" and again.ran == (1,)  # only the failed chunk is tried again


@pytest.mark.ray
@pytest.mark.timeout(240)
def test_on_ray_the_chunks_travel_as_bytes_and_a_begun_chunk_goes_on(clip, tmp_path):
    pytest.importorskip("ray")
    from nst_core.batch.ray_executor import RayExecutor

    out = tmp_path / "out.mp4"
    events = []
    with RayExecutor(workers=2, init_options={"num_cpus": 2}) as executor:
        result = stylize_video_chunked(clip, STYLE, out, executor=executor, chunk_length=4, overlap=2,
                                       on_progress=events.append, **FAST)
        assert result.status == "finished" and probe(out)[0] == 6
        assert all(e.worker.startswith("ray ") for e in events if e.kind == "chunk-start")
        assert sorted((e.chunk.index, e.chunk_done) for e in events if e.kind == "frame") == \
            [(k, i) for k in (0, 1) for i in range(1, 5)]
        # the driver wrote the frames that came back; take two away: the chunk goes on from its third
        kept = chunk_frames(result.frames_dir, 1, 2)
        for i in (2, 3):
            frame_path(chunk_dir(result.frames_dir, 1), i).unlink()
        events.clear()
        again = stylize_video_chunked(clip, STYLE, out, executor=executor, chunk_length=4, overlap=2,
                                      on_progress=events.append, **FAST)
    assert again.status == "finished" and again.ran == (1,)
    assert [(e.chunk.index, e.chunk_done) for e in events if e.kind == "frame"] == [(1, 3), (1, 4)]
    assert all(torch.equal(a, b) for a, b in zip(kept, chunk_frames(result.frames_dir, 1, 2)))


def test_streamed_assembly_matches_the_whole_clip_crossfade_even_where_three_chunks_meet():
    """iter_assembled reads the chunks one at a time (a generator) and holds only the open
    overlap; chunks of 3 overlapping by 2 put frames in three chunks at once."""
    from nst_core.video.chain import blend_overlap, iter_assembled, plan_chunks

    chunks = plan_chunks(9, 3, 2)
    outputs = [[torch.rand(1, 3, 2, 2) for _ in range(c.frames)] for c in chunks]
    whole: list = []
    for chunk, out in zip(chunks, outputs):
        if chunk.overlap:
            whole[-chunk.overlap:] = blend_overlap(whole[-chunk.overlap:], out[:chunk.overlap])
        whole.extend(out[chunk.overlap:])
    streamed = list(iter_assembled(chunks, (out for out in outputs)))
    assert len(streamed) == len(whole) == 9
    assert all(torch.equal(a, b) for a, b in zip(streamed, whole))
    # frame 2: the last of an overlap of chunks 0 and 1, then the first of one with chunk 2
    assert torch.allclose(streamed[2], (outputs[0][2] / 3 + outputs[1][1] * 2 / 3) * 2 / 3 + outputs[2][0] / 3)
    with pytest.raises(ConfigError, match="3 chunks but 2 outputs"):
        list(iter_assembled(chunks[:3], (out for out in outputs[:2])))
