"""Video: flicker, stylization and time of temporally consistent chains against frame-by-frame.

The clip: ``nst_core.video.synthetic.photo_clip`` over examples/tubingen.jpg (a camera pan and
zoom with a disc moving across), its motion spread over ``--clip-frames`` frames (2 s at 24 fps by
default), of which the first ``--frames`` are stylized, written losslessly as PNGs and read back
as an image sequence. Style: examples/starry_night.jpg. Every contestant runs the same config
(``--size``, one scale, seed 0, the same ``--steps`` on frame 0):

- ``frame-by-frame``: ``stylize_video(..., temporal=False)``: every frame from its content, ``--steps``;
- ``temporal``: the chain (warped start, temporal term, DIS flow, 3 px mask dilation) with each
  ``--weights`` value (λ_t relative to J of frame 0) and each ``--next-steps`` value.

Measures, per contestant: the warping error of Lai et al. 2018 (``nst_core.video.metrics``, the
input's own flow and consistency mask, mean over consecutive pairs; the flow is OpenCV's
Farnebäck, ``--metric-flow``, not the DIS flow the chain uses, so the chain is not judged by the
very flow it followed), the style loss and J of
every frame by the shared evaluator (``benchmarks/evaluator.py``, the frame's own content), the
total optimizer steps, and seconds per frame (flow included) against a still image (one frame
stylized alone with ``--steps``).

    .venv/bin/python benchmarks/bench_video.py --size 128 --frames 6 --steps 24 --pairs 12:50 12:500 24:500
"""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import nst_core  # noqa: E402
from benchmarks.common import CONTENT, STYLE, append_markdown  # noqa: E402
from benchmarks.evaluator import CONTENT_LAYERS, Evaluator  # noqa: E402
from nst_core.image import read_image, resize, save_image  # noqa: E402
from nst_core.planning import working_shape  # noqa: E402
from nst_core.batch import LocalExecutor  # noqa: E402
from nst_core.video.chain import frame_path, stylize_video  # noqa: E402
from nst_core.video.chunked import stylize_video_chunked  # noqa: E402
from nst_core.video.flow import get_flow_estimator  # noqa: E402
from nst_core.video.io import write_video  # noqa: E402
from nst_core.video.metrics import clip_warping_errors, input_motion  # noqa: E402
from nst_core.video.synthetic import photo_clip  # noqa: E402


def judge(evaluator: Evaluator, content: torch.Tensor, image: torch.Tensor):
    """The shared evaluator's score of ``image`` against its own frame ``content`` (the style
    target stays the one the evaluator was built with)."""
    with torch.no_grad():
        feats = evaluator.net(content.to(evaluator.device, torch.float32))
    evaluator.content_target = {layer: feats[layer] for layer in CONTENT_LAYERS}
    return evaluator(image)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--clip-frames", type=int, default=48, help="frames the clip's motion is spread over")
    parser.add_argument("--steps", type=int, default=40, help="steps of frame 0 and of every frame-by-frame frame")
    parser.add_argument("--next-steps", type=int, nargs="+", default=[20], help="steps of the chain's later frames")
    parser.add_argument("--weights", type=float, nargs="+", default=[200.0], help="temporal weights (x J)")
    parser.add_argument("--pairs", nargs="*", default=[], metavar="STEPS:WEIGHT",
                        help="temporal runs as next-steps:weight pairs (instead of every --next-steps x --weights)")
    parser.add_argument("--chunks", default=None, metavar="LENGTH:OVERLAP",
                        help="also the default temporal run cut into chunks (stylize_video_chunked on --workers "
                             "local workers, overlaps crossfaded)")
    parser.add_argument("--workers", type=int, default=1, help="local workers of the --chunks run")
    parser.add_argument("--long-term", type=int, nargs="*", default=[], help="also a run with these (e.g. 2 4)")
    parser.add_argument("--metric-flow", default="farneback",
                        help="flow of the warping error (not the chain's DIS: the chain is not judged by its own flow)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--out", default=None, help="append the markdown table to this file")
    parser.add_argument("--sheet", default=None,
                        help="write the frames side by side (rows: the input, then one per run) to this image")
    args = parser.parse_args(argv)

    work = Path(args.workdir or tempfile.mkdtemp(prefix="nst-bench-video-"))
    work.mkdir(parents=True, exist_ok=True)
    photo = read_image(CONTENT).rgb
    h, w = working_shape(3, 4, args.size)
    frames = photo_clip(photo, args.clip_frames, h, w)[: args.frames]
    frames = [(f * 255).round() / 255 for f in frames]  # exactly what the PNGs hold
    clip_dir = work / "clip"
    if not clip_dir.exists():
        write_video(frames, clip_dir)
    style = read_image(STYLE).rgb
    sh, sw = working_shape(*style.shape[-2:], args.size)
    evaluator = Evaluator(frames[0], resize(style, sh, sw), device=args.device)
    registries = nst_core.collect_registries()
    motion = input_motion(frames, get_flow_estimator(args.metric_flow, registries))
    config = nst_core.StyleConfig(size=args.size, steps=args.steps, scales=1, seed=0, device=args.device,
                                  precision=args.precision)

    model = nst_core.load_model(config, registries=registries)
    t0 = time.perf_counter()
    nst_core.stylize(frames[-1], style, config, registries=registries, model=model)
    still_s = time.perf_counter() - t0

    runs: list[tuple[str, int | None, float | None, tuple[int, ...], dict]] = [("frame-by-frame", None, None, (), {})]
    pairs = [(int(a), float(b)) for a, b in (p.split(":") for p in args.pairs)] if args.pairs else \
        [(n, w) for n in args.next_steps for w in args.weights]
    for next_steps, weight in pairs:
        runs.append(("temporal", next_steps, weight, (), {}))
    if args.long_term:
        runs.append(("temporal", args.next_steps[0], args.weights[0], tuple(args.long_term), {}))
    rows = []
    sheet_rows = [torch.cat(frames, dim=-1)]  # the input first
    for name, next_steps, weight, long_term, _ in runs:
        label = f"{name}-{next_steps}-{weight:g}-{'-'.join(map(str, long_term))}" if weight is not None else name
        out_dir = work / label
        t0 = time.perf_counter()
        result = stylize_video(clip_dir, style, None, config, frames_dir=out_dir, registries=registries,
                               temporal=weight is not None, temporal_weight=weight or 0.0,
                               first_steps=args.steps, next_steps=next_steps, long_term=long_term, fps=24)
        seconds = time.perf_counter() - t0
        outputs = [read_image(frame_path(out_dir, i)).rgb for i in range(args.frames)]
        sheet_rows.append(torch.cat(outputs, dim=-1))
        errors = clip_warping_errors(outputs, motion)
        scores = [judge(evaluator, c, o) for c, o in zip(frames, outputs)]
        made = [r for r in result.records if r.mode != "resumed"]
        rows.append({
            "label": label, "name": name, "next": next_steps, "weight": weight, "long": long_term,
            "warp": statistics.fmean(errors), "warp_max": max(errors),
            "style": statistics.fmean(s.style for s in scores), "J": statistics.fmean(s.total for s in scores),
            "steps": sum(r.steps for r in result.records),
            "s_frame": statistics.fmean(r.seconds for r in result.records), "wall": seconds,
            "resumed": len(result.records) - len(made),
        })
    if args.chunks:
        length, overlap = (int(v) for v in args.chunks.split(":"))
        next_steps, weight = pairs[0]
        t0 = time.perf_counter()
        chunked = stylize_video_chunked(
            clip_dir, style, work / f"chunked-{length}-{overlap}", config, chunk_length=length, overlap=overlap,
            executor=LocalExecutor(args.device, workers=args.workers, registries=registries),
            frames_dir=work / f"chunks-{length}-{overlap}", registries=registries, temporal_weight=weight,
            first_steps=args.steps, next_steps=next_steps, fps=24)
        seconds = time.perf_counter() - t0
        if chunked.status != "finished":
            raise SystemExit(f"the chunked run ended {chunked.status}: {chunked.failures}")
        chunks = list(chunked.chunks)
        outputs = [read_image(p).rgb for p in sorted((work / f"chunked-{length}-{overlap}").glob("*.png"))]
        errors = clip_warping_errors(outputs, motion)
        # the transitions into and across each overlap (pair t-1 -> t for t in start .. start + overlap)
        seams = sorted({t for c in chunks[1:] for t in range(c.start, c.start + c.overlap + 1) if t >= 1})
        seam_error = max(errors[t - 1] for t in seams) if seams else float("nan")
        scores = [judge(evaluator, c, o) for c, o in zip(frames, outputs)]
        steps = sum(args.steps + (c.frames - 1) * next_steps for c in chunks)
        rows.append({
            "label": f"chunked {length}:{overlap}", "name": f"temporal, {len(chunks)} chunks of {length} "
            f"overlapping by {overlap} (seams: max {seam_error:.5f} = {seam_error / statistics.fmean(errors):.2f}x "
            f"the clip's mean)", "next": next_steps, "weight": weight, "long": (),
            "warp": statistics.fmean(errors), "warp_max": max(errors),
            "style": statistics.fmean(s.style for s in scores), "J": statistics.fmean(s.total for s in scores),
            "steps": steps, "s_frame": seconds / args.frames, "wall": seconds, "resumed": 0,
        })
        sheet_rows.append(torch.cat(outputs, dim=-1))
    base = rows[0]
    command = "python benchmarks/bench_video.py " + " ".join(sys.argv[1:] if argv is None else argv)
    lines = [
        f"Video, {w}x{h} px, {args.frames} frames of a pan + zoom over tubingen.jpg with a moving disc "
        f"(motion of a {args.clip_frames}-frame clip), The Starry Night, {args.device}, warping error with "
        f"{args.metric_flow} flow, "
        f"{datetime.date.today().isoformat()}. `{command}`",
        "",
        "| method | later frames: steps | temporal weight (× J) | warping error | × frame-by-frame | style loss "
        "| × frame-by-frame | J | total steps | s / frame | × still image |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        weight = "-" if r["weight"] is None else f"{r['weight']:g}"
        method = r["name"] + (f", long-term {','.join(map(str, r['long']))}" if r["long"] else "")
        lines.append(
            f"| {method} | {r['next'] if r['next'] is not None else args.steps} | "
            f"{weight} | {r['warp']:.5f} | {r['warp'] / base['warp']:.2f} | "
            f"{r['style']:.4g} | {r['style'] / base['style']:.2f} | {r['J']:.4g} | {r['steps']} | "
            f"{r['s_frame']:.1f} | {r['s_frame'] / still_s:.2f} |")
    lines += ["", f"Still image: {still_s:.1f} s for {args.steps} steps. s / frame: mean over the frames (flow, mask "
              f"and warp included; a frame made by an earlier call of the same command keeps its time, from the "
              f"frames folder's chain.json); frames resumed that way: {', '.join(str(r['resumed']) for r in rows)}."]
    print("\n".join(lines))
    append_markdown(args.out, lines)
    if args.sheet:
        gap = torch.ones(1, 3, 4, sheet_rows[0].shape[-1])
        save_image(torch.cat([r for row in sheet_rows for r in (row, gap)][:-1], dim=-2), args.sheet, quality=90)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
