"""Test clips with known motion, for the tests and the benchmark (no files, no randomness beyond
``seed``).

:func:`texture_clip`: a textured background moving ``background`` px per frame with an opaque
textured square moving ``occluder`` px per frame over it. Integer velocities, so every frame is an
exact shift of two fixed textures and the true backward flow and the disoccluded pixels are known
exactly.

:func:`photo_clip`: a camera panning and zooming over a photo while an opaque disc moves across
the scene: the kind of shot the benchmark stylizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
import torch.nn.functional as F


@dataclass(frozen=True)
class SyntheticClip:
    """Frames and their ground truth.

    ``frames[t]`` is ``(1, 3, H, W)`` in [0, 1]. ``flows[t]`` (for t >= 1) is the true backward
    flow ``(H, W, 2)`` (dx, dy) in pixels: pixel x of frame t shows what frame t-1 shows at
    ``x + flows[t][x]``. ``disoccluded[t]`` (for t >= 1) is ``(H, W)`` bool: pixels of frame t that
    frame t-1 does not show (uncovered by the occluder, or entering at the border). Index 0 of
    ``flows`` and ``disoccluded`` is None.
    """

    frames: list[Tensor]
    flows: list[Tensor | None]
    disoccluded: list[Tensor | None]


def smooth_texture(height: int, width: int, *, seed: int = 0, octaves: int = 4) -> Tensor:
    """A colored multi-scale noise texture ``(1, 3, height, width)`` in [0, 1] with detail at every
    scale (so optical flow is well defined everywhere)."""
    generator = torch.Generator().manual_seed(seed)
    texture = torch.zeros(1, 3, height, width)
    for octave in range(octaves):
        cell = 2 ** (octave + 2)
        coarse = torch.rand(1, 3, height // cell + 2, width // cell + 2, generator=generator)
        texture += F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False) / (octave + 1)
    texture -= texture.amin(dim=(2, 3), keepdim=True)
    texture /= texture.amax(dim=(2, 3), keepdim=True).clamp_min(1e-6)
    return texture.clamp(0, 1)


def texture_clip(frames: int = 5, height: int = 96, width: int = 128, *, background: tuple[int, int] = (2, 0),
                 occluder: tuple[int, int] = (6, 2), square: int = 32, seed: int = 0) -> SyntheticClip:
    """The clip of the module's docstring. The background content moves by ``background`` (dx, dy)
    px per frame (so new content enters at the border), the ``square`` px occluder by ``occluder``,
    starting at a quarter of the frame. Returns frames with exact flows and disocclusion masks."""
    bx, by = background
    ox, oy = occluder
    margin_x, margin_y = abs(bx) * frames + 1, abs(by) * frames + 1
    canvas = smooth_texture(height + 2 * margin_y, width + 2 * margin_x, seed=seed)
    patch = 1.0 - smooth_texture(square, square, seed=seed + 1, octaves=2)
    ys = torch.arange(height).view(-1, 1)
    xs = torch.arange(width).view(1, -1)
    x0, y0 = width // 4, height // 4
    out_frames: list[Tensor] = []
    flows: list[Tensor | None] = [None]
    holes: list[Tensor | None] = [None]
    covered_prev = torch.zeros(height, width, dtype=torch.bool)
    for t in range(frames):
        # the background at frame t shows canvas(x - t * v): it moves by v per frame
        top, left = margin_y - t * by, margin_x - t * bx
        frame = canvas[..., top:top + height, left:left + width].clone()
        qx, qy = x0 + t * ox, y0 + t * oy
        covered = (xs >= qx) & (xs < qx + square) & (ys >= qy) & (ys < qy + square)
        y_lo, y_hi = max(qy, 0), min(qy + square, height)
        x_lo, x_hi = max(qx, 0), min(qx + square, width)
        if y_lo < y_hi and x_lo < x_hi:
            frame[..., y_lo:y_hi, x_lo:x_hi] = patch[..., y_lo - qy:y_hi - qy, x_lo - qx:x_hi - qx]
        out_frames.append(frame)
        if t > 0:
            flow = torch.empty(height, width, 2)
            flow[..., 0] = torch.where(covered, -float(ox), -float(bx))
            flow[..., 1] = torch.where(covered, -float(oy), -float(by))
            px, py = xs - bx, ys - by  # where a background pixel of frame t was in frame t-1
            outside = (px < 0) | (px >= width) | (py < 0) | (py >= height)
            was_covered = covered_prev[py.clamp(0, height - 1), px.clamp(0, width - 1)]
            holes.append(~covered & (outside | was_covered))
            flows.append(flow)
        covered_prev = covered
    return SyntheticClip(out_frames, flows, holes)


def photo_clip(photo: Tensor, frames: int = 48, height: int = 192, width: int = 256, *, pan: float = 0.35,
               zoom: float = 1.25, disc: float = 0.18, seed: int = 0) -> list[Tensor]:
    """A camera pan and zoom over ``photo`` ``(1, 3, Hp, Wp)`` in [0, 1] with a disc moving across.

    The camera's view is a window of the photo with ``width / height`` aspect, a ``zoom`` x
    smaller at the end than at the start (zooming in), whose center moves ``pan`` of the photo's
    width from left to right; a textured opaque disc of diameter ``disc`` x the frame's height
    crosses the frame from the lower left to the upper right (its own motion, not the camera's).
    Returns ``frames`` frames ``(1, 3, height, width)`` in [0, 1].
    """
    _, _, hp, wp = photo.shape
    aspect = width / height
    base_h = min(hp, wp / aspect) / (1 + 0.02)  # the widest window that fits, a little margin
    out = []
    ys = torch.linspace(-1, 1, height).view(-1, 1).expand(height, width)
    xs = torch.linspace(-1, 1, width).view(1, -1).expand(height, width)
    radius = disc * height / 2
    texture = 1.0 - smooth_texture(int(2 * radius) + 2, int(2 * radius) + 2, seed=seed + 7, octaves=2)
    for t in range(frames):
        s = t / max(frames - 1, 1)
        win_h = base_h / (zoom ** s)
        win_w = win_h * aspect
        cx = wp / 2 + (s - 0.5) * pan * wp
        cx = min(max(cx, win_w / 2), wp - win_w / 2)
        cy = hp / 2
        # photo pixel coordinates of every output pixel -> normalized [-1, 1] for grid_sample
        px = cx + xs * win_w / 2
        py = cy + ys * win_h / 2
        grid = torch.stack([px / (wp - 1) * 2 - 1, py / (hp - 1) * 2 - 1], dim=-1)[None]
        frame = F.grid_sample(photo, grid, mode="bilinear", padding_mode="border", align_corners=True)
        # the disc: screen position from lower left to upper right
        dx = (0.15 + 0.7 * s) * width
        dy = (0.8 - 0.5 * s) * height
        gx = torch.arange(width).view(1, -1).float()
        gy = torch.arange(height).view(-1, 1).float()
        dist = torch.sqrt((gx - dx) ** 2 + (gy - dy) ** 2)
        alpha = (radius + 0.5 - dist).clamp(0, 1)
        tex_grid = torch.stack([((gx - dx) / (radius + 1)).expand(height, width),
                                ((gy - dy) / (radius + 1)).expand(height, width)], dim=-1)[None]
        tex = F.grid_sample(texture, tex_grid, mode="bilinear", padding_mode="border", align_corners=False)
        frame = frame * (1 - alpha) + tex * alpha
        out.append(frame.clamp(0, 1))
    return out



def write_clip(frames: list[Tensor], path: str, *, fps: int = 24, tone: float | None = 440.0,
               rotation: int = 0, codec: str = "libx264") -> str:
    """Encode ``frames`` ``(1, 3, H, W)`` in [0, 1] as a video at ``fps`` with, unless ``tone`` is
    None, a mono AAC sine of ``tone`` Hz as long as the video, and the display ``rotation``
    (degrees counter-clockwise): a small "real" clip with audio for tests and benchmarks."""
    from nst_core.video._deps import require_av

    av = require_av()
    import numpy as np

    with av.open(path, "w") as out:
        video = out.add_stream(codec, rate=fps)
        h, w = frames[0].shape[-2:]
        video.width, video.height = w, h
        video.pix_fmt = "yuv420p"
        if rotation:
            video.set_display_rotation(rotation)
        audio = out.add_stream("aac", rate=48000, layout="mono") if tone is not None else None
        for i, image in enumerate(frames):
            array = (image[0].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts = i
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        if audio is not None and tone is not None:
            total = int(48000 * len(frames) / fps)
            for start in range(0, total, 1024):
                n = min(1024, total - start)
                t = (np.arange(start, start + n) / 48000.0).astype(np.float32)
                samples = (0.3 * np.sin(2 * np.pi * tone * t)).astype(np.float32)[None]
                chunk = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
                chunk.sample_rate = 48000
                chunk.pts = start
                for packet in audio.encode(chunk):
                    out.mux(packet)
            for packet in audio.encode():
                out.mux(packet)
    return path
