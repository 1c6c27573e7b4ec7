"""Coarse to fine against one scale at the same final size: time and objective of the final image.

Both are ours (float32 unless ``--precision``), run as interleaved processes (see
:func:`benchmarks.common.interleaved`). ``single``: ``--single-steps`` steps at the final size;
``c2f``: the engine's default schedule (from ``--min-size`` by ×2 up to the final size) with
``--c2f-steps`` steps at every scale. Each final image is judged by the shared evaluator at the
final size. The claim to test: the coarse-to-fine image reaches a lower J in less time.

    .venv/bin/python benchmarks/bench_c2f.py --size 1024 --single-steps 30 --c2f-steps 20
"""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path
import sys
import tempfile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_quality import sheet  # noqa: E402
from benchmarks.bench_speed import machine  # noqa: E402
from benchmarks.common import Evaluator, append_markdown, interleaved, prepare_pair  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--single-steps", type=int, default=30)
    parser.add_argument("--c2f-steps", type=int, default=20, help="steps at every scale")
    parser.add_argument("--min-size", type=int, default=256)
    parser.add_argument("--precision", default="float32", choices=["float32", "bf16", "fp16"])
    parser.add_argument("--init", default="content", choices=["content", "noise", "gray"],
                        help="starting image of both runs (noise: Gatys et al. 2015)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    command = "python benchmarks/bench_c2f.py " + " ".join(sys.argv[1:] if argv is None else argv)
    root = Path(__file__).resolve().parent
    pair = prepare_pair(args.size, tempfile.mkdtemp(prefix="nst-c2f-"))
    judge = Evaluator(pair.content, pair.style)
    common = {"precision": args.precision, "init": args.init}
    contestants = [
        ("single", "ours", {**common, "scales": 1, "steps": args.single_steps}),
        ("c2f", "ours", {**common, "scales": None, "min_scale_size": args.min_size, "steps": args.c2f_steps}),
    ]
    results = interleaved(contestants, pair, 0, args.device)
    sheet_path = root / "out" / f"c2f_vs_single_{args.size}_{args.precision}{'' if args.init == 'content' else '_' + args.init}.png"
    lines = [f"`{command}`", "",
             f"{machine()}, device {args.device}, {datetime.date.today()}, {args.precision}, init {args.init}; time = own time of "
             f"the whole call (weights, targets, every scale); J by benchmarks/evaluator.py at the final size "
             f"(lower is better); sheet: benchmarks/out/{sheet_path.name}", "",
             "| run | scales (longest side) | steps | own time s | J total | J content | J style |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    print("\n".join(lines), flush=True)
    rows, tiles = [], [("content", pair.content), ("style", pair.style)]
    for label in ("single", "c2f"):
        run = results[label]
        score = judge(run.image)
        scales = " → ".join(str(max(s)) for s in run.extra["sizes"])
        row = (f"| {label} | {scales} | {run.steps} | {run.total:.0f} | {score.total:,.0f} | {score.content:,.0f} | "
               f"{score.style:,.0f} |")
        rows.append(row)
        print(row, flush=True)
        tiles.append((f"{label}: {run.total:.0f} s\nJ = {score.total:.4g}", run.image))
    sheet(tiles, sheet_path)
    append_markdown(args.out, lines + rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
