"""The benchmarks' shared judge computes the same objective as the engine and as pastiche."""

from __future__ import annotations

import sys
from pathlib import Path
import warnings

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import pastiche_to_rgb, pastiche_weights, prepare_pair  # noqa: E402
from benchmarks.evaluator import Evaluator  # noqa: E402

import nst_core  # noqa: E402


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return prepare_pair(64, tmp_path_factory.mktemp("pair"))


def test_evaluator_equals_the_engines_objective(pair, builtin_registries):
    judge = Evaluator(pair.content, pair.style, quantize=False)
    first = []
    nst_core.stylize(pair.content_path, pair.style_path, registries=builtin_registries, size=64, steps=1,
                     scales=1, seed=0, device="cpu", precision="float32", on_progress=lambda p: first.append(p.loss))
    score = judge(pair.content)  # the engine starts from the content image
    assert score.content == 0.0
    assert first[0] == pytest.approx(score.total, rel=1e-4)


def test_pastiche_with_mapped_weights_optimises_the_same_objective(pair):
    from pastiche.pastiche import PasticheArtist

    judge = Evaluator(pair.content, pair.style, quantize=False)
    h, w = pair.content.shape[-2:]
    hs, ws = pair.style.shape[-2:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        artist = PasticheArtist(str(pair.content_path), [str(pair.style_path)], device="cpu", size=(h, w),
                                style_size=(hs, ws), **pastiche_weights())
    assert (pastiche_to_rgb(artist.pastiche) - pair.content).abs().max() < 1e-4
    assert artist.loss == pytest.approx(judge(pair.content).total, rel=1e-4)
    # and the judge follows pastiche's own loss as its image moves (still inside [0, 1] here)
    for _ in range(3):
        artist.draw()
    assert artist._calc_loss().item() == pytest.approx(judge(pastiche_to_rgb(artist.pastiche)).total, rel=1e-4)
