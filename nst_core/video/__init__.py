"""Temporally consistent video stylization (Ruder, Dosovitskiy & Brox 2016, "Artistic style transfer
for videos"), built from the engine's own parts.

Modules, one job each:

- :mod:`~nst_core.video.io`: video files and image sequences <-> frames ``(1, 3, H, W)`` in [0, 1],
  keeping timing, rotation and audio (remuxed, not re-encoded);
- :mod:`~nst_core.video.flow`: the optical-flow interface and OpenCV DIS, the default estimator;
- :mod:`~nst_core.video.consistency`: Ruder's forward-backward check -> a reliability mask;
- :mod:`~nst_core.video.warp`: backward warping of an image by a flow;
- :mod:`~nst_core.video.temporal`: the temporal loss term ("temporal", role "image");
- :mod:`~nst_core.video.metrics`: the warping error of Lai et al. 2018 (flicker);
- :mod:`~nst_core.video.synthetic`: test clips with known motion;
- :mod:`~nst_core.video.chain`: :func:`stylize_video`, resumable, plus chunking for executors;
- :mod:`~nst_core.video.chunked`: :func:`stylize_video_chunked`, a long clip in chunks on the
  workers of :mod:`nst_core.batch`'s executors (local devices or a Ray cluster), seams crossfaded.

PyAV and OpenCV are optional (``pip install 'nst-core[video]'``) and imported only when used.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "Chunk", "ChunkJob", "ChunkProgress", "ChunkedVideoResult", "FrameRecord", "VideoInfo", "VideoProgress",
    "VideoReader", "VideoResult", "assemble_chunks", "blend_overlap", "detect_scene_cuts", "iter_assembled",
    "open_video", "plan_chunks", "run_chunk", "stylize_video", "stylize_video_chunked", "write_video",
]

_CHAIN = {"Chunk", "FrameRecord", "VideoProgress", "VideoResult", "assemble_chunks", "blend_overlap",
          "detect_scene_cuts", "iter_assembled", "plan_chunks", "run_chunk", "stylize_video"}
_CHUNKED = {"ChunkJob", "ChunkProgress", "ChunkedVideoResult", "stylize_video_chunked"}
_IO = {"VideoInfo", "VideoReader", "open_video", "write_video"}


def __getattr__(name: str) -> Any:  # lazy: importing nst_core.video costs nothing
    if name in _CHAIN:
        from nst_core.video import chain

        return getattr(chain, name)
    if name in _CHUNKED:
        from nst_core.video import chunked

        return getattr(chunked, name)
    if name in _IO:
        from nst_core.video import io

        return getattr(io, name)
    raise AttributeError(f"module 'nst_core.video' has no attribute {name!r}")
