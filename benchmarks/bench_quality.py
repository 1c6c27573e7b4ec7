"""Quality at equal time: every contestant gets the same budget of its own compute time.

Contestants run in separate processes taking turns step by step (see
:func:`benchmarks.common.interleaved`); each stops once its own time (setup included) reaches
``--budget`` seconds. The objective of every final image is measured by the shared evaluator,
and the images are saved side by side in a PNG sheet (content, style, then each contestant with
its J and steps).

    .venv/bin/python benchmarks/bench_quality.py --size 512 --budget 120

Contestants: ours (the defaults: precision "auto"; one scale), ours-fp32, ours-bf16, pastiche (its loss set to ours). Coarse to
fine against one scale is benchmarks/bench_c2f.py (it needs fixed steps per scale).
"""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path
import sys
import tempfile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image, ImageDraw  # noqa: E402
import torch  # noqa: E402

from benchmarks.bench_speed import machine  # noqa: E402
from benchmarks.common import Evaluator, append_markdown, interleaved, prepare_pair  # noqa: E402
from nst_core.image import to_pil  # noqa: E402

CONTESTANTS = {
    "ours": ("ours", {}),  # the defaults: precision "auto" (bf16 on chips that compute it natively)
    "ours-fp32": ("ours", {"precision": "float32"}),
    "ours-bf16": ("ours", {"precision": "bf16"}),
    "pastiche": ("pastiche", {}),
}


def sheet(tiles: list[tuple[str, torch.Tensor]], path: Path, width: int = 256) -> None:
    """Images side by side, each ``width`` wide, with a caption line under each."""
    images = []
    for caption, image in tiles:
        im = to_pil(image)
        im = im.resize((width, max(1, round(im.height * width / im.width))), Image.LANCZOS)
        images.append((caption, im))
    height = max(im.height for _, im in images)
    canvas = Image.new("RGB", (width * len(images), height + 30), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (caption, im) in enumerate(images):
        canvas.paste(im, (i * width, 0))
        for j, line in enumerate(caption.split("\n")[:2]):
            draw.text((i * width + 4, height + 2 + 13 * j), line, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    # a 256-colour palette keeps the sheet small enough for the repository (~1/3 the bytes)
    canvas.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--budget", type=float, default=120.0, help="seconds of own time per contestant")
    parser.add_argument("--contestants", nargs="+", default=["ours", "ours-fp32", "pastiche"],
                        choices=list(CONTESTANTS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sheet", default=None, help="PNG path (default benchmarks/out/equal_time_<size>.png)")
    parser.add_argument("--out", help="append the table (with this command) to this markdown file")
    args = parser.parse_args(argv)
    command = "python benchmarks/bench_quality.py " + " ".join(sys.argv[1:] if argv is None else argv)
    root = Path(__file__).resolve().parent
    sheet_path = Path(args.sheet) if args.sheet else root / "out" / f"equal_time_{'_'.join(args.contestants)}_{args.size}.png"

    pair = prepare_pair(args.size, tempfile.mkdtemp(prefix="nst-quality-"))
    judge = Evaluator(pair.content, pair.style)
    contestants = [(name, CONTESTANTS[name][0], dict(CONTESTANTS[name][1])) for name in args.contestants]
    results = interleaved(contestants, pair, 10**6, args.device, budget_s=args.budget)

    lines = [f"`{command}`", "",
             f"{machine()}, device {args.device}, {datetime.date.today()}; each contestant stopped once its own "
             f"time (setup included) reached {args.budget:g} s; J by benchmarks/evaluator.py (lower is better); "
             f"sheet: {sheet_path.relative_to(root.parent) if sheet_path.is_relative_to(root.parent) else sheet_path}",
             "", "| size | contestant | own time s | steps | J total | J content | J style |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    print("\n".join(lines), flush=True)
    rows = []
    tiles = [("content", pair.content), ("style", pair.style)]
    for name in args.contestants:
        run = results[name]
        score = judge(run.image)
        w, h = run.size
        row = (f"| {w}×{h} | {name} | {run.total:.0f} | {run.steps} | {score.total:,.0f} | {score.content:,.0f} | "
               f"{score.style:,.0f} |")
        rows.append(row)
        print(row, flush=True)
        tiles.append((f"{name}: {run.steps} steps\nJ = {score.total:.4g}", run.image))
    sheet(tiles, sheet_path)
    print(f"sheet: {sheet_path}")
    append_markdown(args.out, lines + rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
