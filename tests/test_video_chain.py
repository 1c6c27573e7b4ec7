"""The temporal loss term and the resumable chain, on tiny synthetic clips (few steps)."""

from __future__ import annotations

import json

import pytest
import torch

import nst_core
from nst_core import LossSpec, StyleConfig
from nst_core.errors import ConfigError, ResumeError
from nst_core.types import Targets
from nst_core.video.synthetic import smooth_texture, texture_clip
from nst_core.video.temporal import TemporalLoss

pytest.importorskip("cv2")
pytest.importorskip("av")

FAST = {"size": 48, "device": "cpu", "precision": "float32", "seed": 0, "scales": 1}


def test_bound_term_is_the_masked_mean_square():
    image, target = torch.rand(1, 3, 8, 10), torch.rand(1, 3, 8, 10)
    mask = (torch.rand(1, 1, 8, 10) > 0.5).float()
    targets = Targets(layers=(), content={}, styles=(), style_weights=(), content_image=image, style_images=(),
                      guides={"temporal_target": target, "temporal_mask": mask})
    loss = TemporalLoss().bind(targets)(image, {}, {})
    assert float(loss) == pytest.approx(float((mask * (image - target) ** 2).mean()), rel=1e-6)
    assert float(TemporalLoss().bind(Targets(layers=(), content={}, styles=(), style_weights=(),
                                             content_image=target, style_images=(),
                                             guides={"temporal_target": target, "temporal_mask": mask}))(
        target, {}, {})) == 0.0


def test_term_without_its_guides_is_a_one_line_config_error(content_64, style_64, builtin_registries):
    config = StyleConfig(steps=1, extra_losses=(LossSpec(name="temporal", weight=1.0),), **FAST)
    with pytest.raises(ConfigError, match="needs the guides 'temporal_target' and 'temporal_mask'") as info:
        nst_core.stylize(content_64, style_64, config, registries=builtin_registries)
    assert "\n" not in str(info.value)


def test_temporal_term_pulls_the_output_toward_its_target(content_64, style_64, builtin_registries):
    """Same run with and without the term: where the mask is 1 the output ends nearer the target,
    where it is 0 the term changes nothing it is not asked to."""
    h, w = content_64.shape[-2:]
    target = smooth_texture(h, w, seed=3)
    mask = torch.zeros(1, 1, h, w)
    mask[..., :, : w // 2] = 1
    config = StyleConfig(steps=4, **{**FAST, "size": 64})
    model = nst_core.load_model(config, registries=builtin_registries)
    plain = nst_core.stylize(content_64, style_64, config, registries=builtin_registries, model=model)
    pulled = nst_core.stylize(
        content_64, style_64, config.replace(extra_losses=(LossSpec(name="temporal", weight=2000 * plain.loss),)),
        registries=builtin_registries, model=model, guides={"temporal_target": target, "temporal_mask": mask})
    assert "temporal" in pulled.terms and "temporal" not in plain.terms

    def distance(image, region):
        return float(((image - target) ** 2).mean(dim=1)[0][region].mean())

    left = mask[0, 0] > 0
    assert distance(pulled.image, left) < 0.1 * distance(plain.image, left)
    assert distance(pulled.image, ~left) > 0.5 * distance(plain.image, ~left)


def _clip_folder(tmp_path):
    """Frames 0-1: a texture moving 2 px; frame 2: another texture (a scene cut)."""
    from nst_core.video.io import write_video

    a = texture_clip(2, 48, 64, occluder=(3, 1), square=12, seed=1).frames
    b = texture_clip(1, 48, 64, occluder=(3, 1), square=12, seed=9).frames
    folder = tmp_path / "clip"
    write_video([*a, *b], folder)
    return folder


def test_resume_after_a_stop_makes_every_frame_once_and_matches_an_uninterrupted_run(tmp_path, style_64,
                                                                                     builtin_registries):
    from nst_core.video.chain import frame_path, stylize_video
    from nst_core.video.io import open_video

    folder = _clip_folder(tmp_path)
    made: list[int] = []
    stop_after = [1]

    def on_progress(p):
        if p.kind == "frame":
            made.append(p.frame)

    def should_stop():
        return len(made) >= stop_after[0]

    options = dict(first_steps=3, next_steps=2, registries=builtin_registries, fps=8, **FAST)
    out = tmp_path / "out.mp4"
    first = stylize_video(folder, style_64, out, on_progress=on_progress, should_stop=should_stop, **options)
    assert first.status == "stopped" and [r.mode for r in first.records] == ["first"]
    assert not out.exists() and frame_path(first.frames_dir, 0).exists()
    assert not frame_path(first.frames_dir, 1).exists()
    stop_after[0] = 99
    second = stylize_video(folder, style_64, out, on_progress=on_progress, should_stop=should_stop, **options)
    assert second.status == "finished"
    assert sorted(made) == [0, 1, 2] and len(made) == 3  # every frame once
    assert [r.mode for r in second.records] == ["resumed", "temporal", "cut"]
    assert second.scene_cuts == (2,)
    assert second.records[0].steps == 3 and second.records[0].loss == first.records[0].loss  # kept in chain.json
    assert second.records[1].steps == 2 and second.records[1].unreliable < 0.5
    info = open_video(out).info
    assert info.frames == 3 and info.fps == 8 and (info.width, info.height) == (48, 36)
    chain = json.loads((first.frames_dir / "chain.json").read_text())
    assert set(chain["reference"]) == {"0", "2"}  # J of each chain start: the temporal weight's scale

    whole = stylize_video(folder, style_64, None, frames_dir=tmp_path / "whole", **options)
    for i in range(3):
        a = nst_core.read_image(frame_path(second.frames_dir, i)).rgb
        b = nst_core.read_image(frame_path(whole.frames_dir, i)).rgb
        assert torch.equal(a, b), f"frame {i} differs after resuming"

    with pytest.raises(ResumeError, match="other settings: chain.next_steps"):
        stylize_video(folder, style_64, out, **{**options, "next_steps": 1})


def test_chunk_runner_and_scene_cut_detection(tmp_path, style_64, builtin_registries):
    """An executor's view: the clip's scene cuts, a chunk plan, one chunk run on its own (frames
    1-3 of a shot, with long-term consistency over 2 frames) returning its frames."""
    from nst_core.video.chain import Chunk, detect_scene_cuts, plan_chunks, run_chunk
    from nst_core.video.io import open_video, write_video

    assert detect_scene_cuts(open_video(_clip_folder(tmp_path)), 48, registries=builtin_registries) == [2]
    shot = tmp_path / "shot"
    write_video(texture_clip(4, 48, 64, occluder=(3, 1), square=12, seed=1).frames, shot)
    assert plan_chunks(4, 3, 1) == [Chunk(0, 0, 3, 0), Chunk(1, 2, 4, 1)]
    events = []
    frames = run_chunk(shot, Chunk(1, 1, 4, 0), style_64, frames_dir=tmp_path / "chunk1", first_steps=2,
                       next_steps=1, long_term=(2,), registries=builtin_registries, on_progress=events.append, **FAST)
    assert len(frames) == 3 and all(f.shape == (1, 3, 36, 48) for f in frames)
    done = [e for e in events if e.kind == "frame"]
    assert [(e.frame, e.done, e.frames) for e in done] == [(0, 1, 3), (1, 2, 3), (2, 3, 3)] and done[-1].eta == 0
    steps = [e.step for e in events if e.kind == "step" and e.frame == 2]
    assert steps and "temporal" in steps[0].terms
