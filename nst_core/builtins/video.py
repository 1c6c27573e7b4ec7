"""Built-in video plug-ins: the temporal loss term and OpenCV DIS optical flow.

Light at import (torch only): OpenCV is imported when a flow estimator is built.
"""

from __future__ import annotations

from nst_core._markers import hookimpl
from nst_core.video.temporal import TemporalLoss


def _dis_medium():
    from nst_core.video.flow import DISFlow

    return DISFlow("medium")


def _farneback():
    from nst_core.video.flow import FarnebackFlow

    return FarnebackFlow()


@hookimpl
def nst_register_loss_terms(register):
    register("temporal", TemporalLoss,
             description="video: mean(c·(G − warped previous frame)²) over reliable pixels (Ruder et al. 2016); "
                         "needs the guides temporal_target and temporal_mask")


@hookimpl
def nst_register_flow_estimators(register):
    register("dis", _dis_medium,
             description="OpenCV DIS optical flow, MEDIUM preset (no weights; needs nst-core[video])")
    register("farneback", _farneback,
             description="OpenCV Farnebäck optical flow (no weights, smoother, slower; needs nst-core[video])")
