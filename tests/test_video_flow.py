"""Video building blocks without the engine: flow, consistency mask, warping, the flow hook,
the temporal guides and the chunking functions."""

from __future__ import annotations

import sys

import pytest
import torch

import nst_core
from nst_core.errors import ConfigError, PluginError, UnknownNameError
from nst_core.video.chain import Chunk, assemble_chunks, blend_overlap, plan_chunks
from nst_core.video.consistency import dilate, reliability, unreliable
from nst_core.video.synthetic import texture_clip
from nst_core.video.temporal import closest_first, temporal_guides
from nst_core.video.warp import warp, warped_init

pytest.importorskip("cv2")

from nst_core.video.flow import estimate_flow, get_flow_estimator  # noqa: E402


@pytest.fixture(scope="module")
def clip():
    return texture_clip(3, 96, 128, background=(2, 0), occluder=(6, 2), square=32)


@pytest.fixture(scope="module")
def dis(builtin_registries):
    return get_flow_estimator("dis", builtin_registries)


def test_dis_recovers_the_known_motion(clip, dis):
    flow = estimate_flow(dis, clip.frames[1], clip.frames[0])
    error = (flow - clip.flows[1]).norm(dim=-1)
    assert float(error.median()) < 0.1
    assert float((error < 0.5).float().mean()) > 0.8


def test_mask_marks_the_disoccluded_strip(clip, dis):
    for t in (1, 2):
        backward = estimate_flow(dis, clip.frames[t], clip.frames[t - 1])
        forward = estimate_flow(dis, clip.frames[t - 1], clip.frames[t])
        mask = reliability(backward, forward)
        assert mask.shape == (1, 1, 96, 128) and set(mask.unique().tolist()) <= {0.0, 1.0}
        holes = clip.disoccluded[t]
        assert int(holes.sum()) > 200  # the strip behind the square and the border strip
        recall = float((mask[0, 0][holes] == 0).float().mean())
        assert recall >= 0.9
        # far from every motion edge the flow is trusted
        edges = dilate(holes | (clip.flows[t][..., 0] != clip.flows[t][..., 0][0, -1]), 8)
        assert float(mask[0, 0][~edges].mean()) > 0.95
        # undilated, the check misses part of the strip (why the 3 px dilation is the default)
        assert float(unreliable(backward, forward)[holes].float().mean()) < recall


def test_exact_flows_pass_the_check_and_an_inconsistent_pair_fails():
    h, w = 32, 40
    backward = torch.zeros(h, w, 2)
    backward[..., 0] = -2.0
    forward = -backward
    assert float(reliability(backward, forward, dilation=0)[0, 0, :, 2:].min()) == 1.0
    # x + ŵ leaves the frame for the two left columns: not trusted
    assert float(reliability(backward, forward, dilation=0)[0, 0, :, :2].max()) == 0.0
    assert float(reliability(backward, torch.zeros(h, w, 2), dilation=0).mean()) == 0.0


def test_warped_init_matches_the_shifted_frame_where_visible(clip, dis):
    previous, current = clip.frames[1], clip.frames[2]
    backward = estimate_flow(dis, current, previous)
    mask = reliability(backward, estimate_flow(dis, previous, current))
    warped = warp(previous, backward)
    visible = mask[0, 0] > 0
    assert float((warped - current).abs().mean(dim=1)[0][visible].mean()) < 0.01
    assert float((previous - current).abs().mean(dim=1)[0][visible].mean()) > 0.03  # it did move
    stylized_prev = 1 - previous  # any image of frame t-1 follows the same motion
    init = warped_init(stylized_prev, current, backward, mask)
    assert torch.equal(init[..., ~visible], current[..., ~visible])
    assert float((init - (1 - current)).abs().mean(dim=1)[0][visible].mean()) < 0.01


def test_warp_with_the_true_flow_is_exact(clip):
    t = 1
    warped = warp(clip.frames[t - 1], clip.flows[t])
    visible = ~clip.disoccluded[t]
    assert float((warped - clip.frames[t]).abs().amax(dim=1)[0][visible].max()) < 1e-5


class ShiftPlugin:
    """A plug-in-style flow estimator: a constant flow (what a RAFT plug-in would register)."""

    @staticmethod
    @nst_core.hookimpl
    def nst_register_flow_estimators(register):
        def constant():
            def estimate(a, b):
                flow = torch.zeros(a.shape[-2], a.shape[-1], 2)
                flow[..., 0] = -2.0
                return flow

            return estimate

        register("constant-shift", constant, description="test")
        register("broken", lambda: (_ for _ in ()).throw(RuntimeError("no weights")), description="test")
        register("wrong-shape", lambda: (lambda a, b: torch.zeros(3, 3, 2)), description="test")


def test_flow_estimators_come_through_the_hook():
    regs = nst_core.collect_registries(nst_core.get_plugin_manager(autoload=False, extra=[ShiftPlugin]))
    assert {"dis", "constant-shift"} <= set(regs.flow_estimators.names())
    assert regs.flow_estimators.entry("dis").distribution == "built-in"
    frame = torch.rand(1, 3, 16, 20)
    flow = estimate_flow(get_flow_estimator("constant-shift", regs), frame, frame)
    assert flow.shape == (16, 20, 2) and float(flow[..., 0].mean()) == -2.0
    with pytest.raises(UnknownNameError, match="did you mean 'constant-shift'"):
        get_flow_estimator("constant-shif", regs)
    with pytest.raises(PluginError, match="'broken'.*failed to start: RuntimeError: no weights"):
        get_flow_estimator("broken", regs)
    with pytest.raises(PluginError, match=r"shape \(3, 3, 2\); expected \(16, 20, 2\)"):
        estimate_flow(get_flow_estimator("wrong-shape", regs), frame, frame)


def test_missing_packages_say_how_to_install(monkeypatch):
    from nst_core.video._deps import VideoError, require_av, require_cv2

    monkeypatch.setitem(sys.modules, "av", None)
    monkeypatch.setitem(sys.modules, "cv2", None)
    for require in (require_av, require_cv2):
        with pytest.raises(VideoError) as info:
            require()
        assert "pip install 'nst-core[video]'" in str(info.value) and "\n" not in str(info.value)


def test_closest_first_masks_and_guides():
    c1 = torch.tensor([1.0, 0.0, 0.0, 1.0]).view(1, 1, 1, 4)
    c2 = torch.tensor([1.0, 1.0, 0.0, 0.0]).view(1, 1, 1, 4)
    c4 = torch.tensor([1.0, 1.0, 1.0, 0.0]).view(1, 1, 1, 4)
    m1, m2, m4 = closest_first([c1, c2, c4])
    assert m1.flatten().tolist() == [1, 0, 0, 1]
    assert m2.flatten().tolist() == [0, 1, 0, 0]
    assert m4.flatten().tolist() == [0, 0, 1, 0]  # c4 − (c1 + c2), clipped at 0
    image = torch.rand(1, 3, 1, 4)
    guides = temporal_guides([image, image, image], [m1, m2, m4])
    assert set(guides) == {"temporal_target", "temporal_mask", "temporal_target_1", "temporal_mask_1",
                           "temporal_target_2", "temporal_mask_2"}
    with pytest.raises(ConfigError):
        temporal_guides([image], [])


def test_plan_chunks_cuts_at_scenes_and_overlaps_long_shots():
    chunks = plan_chunks(20, 8, 2)
    assert [(c.start, c.stop, c.overlap) for c in chunks] == [(0, 8, 0), (6, 14, 2), (12, 20, 2)]
    chunks = plan_chunks(20, 8, 2, cuts=[5])
    assert [(c.start, c.stop, c.overlap) for c in chunks] == [(0, 5, 0), (5, 13, 0), (11, 19, 2), (17, 20, 2)]
    for frames, length, overlap, cuts in ((1, 4, 0, ()), (17, 5, 3, (4, 9)), (30, 30, 4, ())):
        chunks = plan_chunks(frames, length, overlap, cuts)
        covered = sorted({i for c in chunks for i in range(c.start, c.stop)})
        assert covered == list(range(frames))
        assert all(c.frames <= length for c in chunks)
        assert all(c.overlap == 0 for c in chunks if c.start in cuts)
    with pytest.raises(ConfigError):
        plan_chunks(10, 4, 4)


def test_blend_and_assemble_crossfade_the_overlap():
    ones = [torch.ones(1, 3, 2, 2) for _ in range(3)]
    zeros = [torch.zeros(1, 3, 2, 2) for _ in range(3)]
    blended = blend_overlap(ones, zeros)
    assert [round(float(b.mean()), 4) for b in blended] == [0.75, 0.5, 0.25]
    chunks = [Chunk(0, 0, 5, 0), Chunk(1, 2, 7, 3)]
    frames = assemble_chunks(chunks, [[torch.ones(1, 3, 2, 2)] * 5, [torch.zeros(1, 3, 2, 2)] * 5])
    assert [round(float(f.mean()), 4) for f in frames] == [1, 1, 0.75, 0.5, 0.25, 0, 0]
    with pytest.raises(ConfigError):
        assemble_chunks(chunks, [[torch.ones(1, 3, 2, 2)] * 4, [torch.zeros(1, 3, 2, 2)] * 5])


def test_warping_error_is_zero_for_motion_and_grows_with_flicker(clip, dis):
    from nst_core.video.metrics import InputMotion, clip_warping_errors, input_motion, mean_warping_error

    truth = InputMotion(clip.flows, [None, *((~d).float()[None, None] for d in clip.disoccluded[1:])])
    assert max(clip_warping_errors(clip.frames, truth)) < 1e-10  # the input follows its own motion exactly
    generator = torch.Generator().manual_seed(0)
    flicker = [(f + 0.05 * torch.randn(f.shape, generator=generator)).clamp(0, 1) for f in clip.frames]
    assert mean_warping_error(flicker, truth) > 0.01
    estimated = input_motion(clip.frames, dis)
    assert mean_warping_error(clip.frames, estimated) < 0.1 * mean_warping_error(flicker, estimated)
