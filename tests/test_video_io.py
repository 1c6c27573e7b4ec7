"""Video files and image sequences: timing, rotation and audio survive a round trip; bad input
gets one line and nothing is written."""

from __future__ import annotations

from fractions import Fraction
import hashlib

import numpy as np
import pytest
import torch

av = pytest.importorskip("av")

from nst_core.video._deps import VideoError  # noqa: E402
from nst_core.video.io import open_video, sequence_path, write_video  # noqa: E402
from nst_core.video.synthetic import texture_clip, write_clip  # noqa: E402


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    """12 frames of 48x64 at 24 fps, displayed rotated by 90°, with a 0.5 s AAC tone."""
    path = tmp_path_factory.mktemp("clip") / "in.mp4"
    frames = texture_clip(12, 48, 64).frames
    write_clip(frames, str(path), fps=24, rotation=90)
    return path, frames


def audio_md5s(path) -> list[str]:
    with av.open(str(path)) as container:
        return [hashlib.md5(bytes(p)).hexdigest() for p in container.demux(container.streams.audio[0]) if p.size]


def test_round_trip_keeps_frames_rate_length_rotation_and_audio(clip_file, tmp_path):
    source, originals = clip_file
    reader = open_video(source)
    info = reader.info
    assert (info.frames, info.fps, info.rotation) == (12, Fraction(24), 90)
    assert (info.width, info.height) == (48, 64)  # upright: the coded 64x48 turned by 90°
    assert info.audio is not None and info.audio.codec == "aac"
    frames = [frame for _, frame in reader.frames()]
    assert frames[0].shape == (1, 3, 64, 48) and 0 <= float(frames[0].min()) and float(frames[0].max()) <= 1
    upright = float((frames[5] - torch.rot90(originals[5], 1, dims=(-2, -1))).abs().mean())
    assert upright < 0.06  # H.264 at 48x64 with 4:2:0 chroma: a few levels off
    assert upright < 0.3 * float((frames[5] - torch.rot90(originals[5], -1, dims=(-2, -1))).abs().mean())
    out = tmp_path / "out.mp4"
    notes: list[str] = []
    assert write_video(frames, out, timing=info, notes=notes) == out
    assert notes == []
    again = open_video(out).info
    assert (again.frames, again.fps, again.rotation, again.duration) == (12, Fraction(24), 90, info.duration)
    assert (again.width, again.height) == (48, 64)
    assert audio_md5s(out) == audio_md5s(source) and len(audio_md5s(out)) > 20  # copied, not re-encoded
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]  # no temporary left


def test_selection_keeps_the_piece_and_its_audio(clip_file, tmp_path):
    source, _ = clip_file
    reader = open_video(source, start=0.125, duration=0.25, every=2)
    info = reader.info
    assert info.frames == 3 and info.fps == 12 and info.start == pytest.approx(0.125)
    assert info.duration == pytest.approx(0.25)
    out = write_video((f for _, f in reader.frames()), tmp_path / "piece.mkv", timing=info)
    again = open_video(out).info
    assert again.frames == 3 and again.duration == pytest.approx(0.25, abs=0.01)
    kept = audio_md5s(out)
    assert 8 <= len(kept) <= 14 and set(kept) <= set(audio_md5s(source))  # about 0.25 s of 21 ms packets


def test_random_access_and_a_chunk_of_the_clip(clip_file):
    reader = open_video(clip_file[0])
    frames = dict(reader.frames())
    assert torch.equal(reader.read(7), frames[7])
    assert [i for i, _ in reader.frames(4, 6)] == [4, 5]
    piece = reader.piece(4, 7)
    assert piece.info.pts == (0, 512, 1024) and piece.info.start == pytest.approx(4 / 24)
    assert all(torch.equal(f, frames[4 + i]) for i, f in piece.frames())


@pytest.mark.parametrize("suffix", [".webm", ".gif"])
def test_other_containers(clip_file, tmp_path, suffix):
    reader = open_video(clip_file[0])
    notes: list[str] = []
    out = write_video((f for _, f in reader.frames()), tmp_path / f"out{suffix}", timing=reader.info, notes=notes)
    again = open_video(out)
    assert again.info.frames == 12 and (again.info.width, again.info.height) == (48, 64)
    assert any("rotation" in n for n in notes)  # neither stores one: written upright
    assert (again.info.audio is not None) == (suffix == ".webm")


def test_image_sequences_folder_and_pattern(tmp_path):
    frames = texture_clip(4, 32, 40).frames
    folder = tmp_path / "seq"
    write_video(frames, folder)
    assert sorted(p.name for p in folder.iterdir()) == [f"frame_{i:05d}.png" for i in range(1, 5)]
    reader = open_video(folder, fps=10, every=2)
    assert reader.info.frames == 2 and reader.info.fps == 5 and reader.info.kind == "images"
    got = [f for _, f in reader.frames()]
    assert float((got[1] - frames[2]).abs().max()) <= 1 / 255 + 1e-6
    pattern = str(tmp_path / "p_%03d.png")
    write_video(frames, pattern)
    assert sequence_path(pattern, 0).name == "p_001.png"
    assert open_video(pattern).info.frames == 4
    out = write_video((f for _, f in open_video(pattern, fps=8).frames()), tmp_path / "seq.mp4",
                      timing=open_video(pattern, fps=8).info)
    assert open_video(out).info.fps == 8 and open_video(out).info.frames == 4


def _empty_video(path):
    """A video stream with no frames (only the audio stream has packets)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        audio = out.add_stream("aac", rate=48000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 48000, 0
        for packet in [*audio.encode(frame), *audio.encode()]:
            out.mux(packet)


def _ten_hours(path):
    """Four frames, the last at 10 h: a declared length of 10 hours at 24 fps."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for pts in (0, 1, 2, 24 * 3600 * 10):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 24)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _unknown_codec(path):
    write_clip(texture_clip(3, 32, 32).frames, str(path), tone=None)
    path.write_bytes(path.read_bytes().replace(b"avc1", b"zzzz"))


def _text(path):
    path.write_text("not a video at all\n")


@pytest.mark.parametrize("make, name, message", [
    (_text, "text.mp4", "not a video FFmpeg can read"),
    (_empty_video, "empty.mkv", "no video frames"),
    (_ten_hours, "long.mkv", r"declares 8640\d\d frames .*10:00:00 at 24 fps"),
    (_unknown_codec, "codec.mp4", "codec cannot be decoded"),
])
def test_bad_input_is_one_line_and_nothing_is_written(tmp_path, make, name, message):
    from nst_core.video.chain import stylize_video

    source = tmp_path / name
    make(source)
    with pytest.raises(VideoError, match=message) as info:
        open_video(source)
    assert "\n" not in str(info.value) and str(source) in str(info.value)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(VideoError, match=message):
        stylize_video(source, torch.rand(1, 3, 32, 32), out / "styled.mp4", size=32, steps=1)
    assert list(out.iterdir()) == []


def test_more_bad_input(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoError, match="no image files"):
        open_video(tmp_path / "empty")
    with pytest.raises(VideoError, match="no such file"):
        open_video(tmp_path / "missing.mp4")
    with pytest.raises(VideoError, match="unknown video extension '.png'"):
        write_video(texture_clip(1, 16, 16).frames, tmp_path / "one.png")
    write_video(texture_clip(1, 16, 16).frames, tmp_path / "single")
    with pytest.raises(VideoError, match="single image"):
        open_video(tmp_path / "single" / "frame_00001.png")
    with pytest.raises(VideoError, match="every must be"):
        open_video(tmp_path / "missing.mp4", every=0)
    with pytest.raises(VideoError, match="no 'nope' encoder"):
        write_video(texture_clip(1, 16, 16).frames, tmp_path / "x.mp4", codec="nope")
    assert not (tmp_path / "x.mp4").exists()
