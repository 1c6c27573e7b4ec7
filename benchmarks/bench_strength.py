"""One meaning of strength: how far each style loss moves the photo at each style weight.

Degree of stylization (loss-agnostic, judged by the shared evaluator, benchmarks/evaluator.py):

    content ratio r = J_content(G) / J_content(P)

where J_content is the evaluator's content distance to the photo (½‖a(C) − a(·)‖² per position
at relu4_2 of the plain Caffe VGG19) and P is the painting stretched to the photo's shape. r = 0:
the photo unchanged; r = 1: as far from the photo as the painting itself. Every style loss is
optimized against the same content term, so r measures how hard the style term pulls, whatever
it compares (Gram matrices, statistics, histograms, patches); it does not favour the Gram loss.
The evaluator's Gram style loss relative to the photo's own (s = J_style(G) / J_style(C)) is
printed too, but not used to calibrate: it is the Gram loss's own objective.

For every pair, loss and style-weight multiplier m (``--multipliers``, log10 steps) the script
runs ``nst_core.stylize`` (one scale at ``--size``, ``--steps`` L-BFGS steps, seed 0,
``style_weight = m``, the loss's declared ``weight_scale`` applied by the engine as in any run)
and reports r. Calibration: for each loss, the multiplier m* at which r equals the reference's r
(``gram`` on ``vgg19`` at weight 1), interpolated in log m, geometric mean over the pairs; the
weight scale to declare is the current one times m*. With ``--backbone NAME`` the candidates run
on that backbone (a plug-in's), and m* of ``gram`` there is the ``Backbone.weight_scales["style"]``
to declare.

    python benchmarks/bench_strength.py --size 128 --steps 200 --out benchmarks/results/strength_cpu.md
"""

from __future__ import annotations

import argparse
import datetime
import math
from pathlib import Path
import sys
import time

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.common import Evaluator, append_markdown, load_average, prepare_pair  # noqa: E402
from nst_core.image import resize, to_pil  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PAIRS = ("tubingen:starry_night", "hoovertowernight:the_scream", "tubingen:shipwreck")
LOSSES = ("gram", "mean-std", "wasserstein", "histogram", "mrf")
BAND = (0.15, 0.5)
"""Content ratio r that is "recognisable and visibly stylized", chosen on the README's gallery
(512 px, measured on its 256 px tiles with ``--judge``, benchmarks/results/strength_cpu.md):
``--preserve-color luminance`` r 0.13 (strokes, the photo's colours), The Shipwreck at the
default r 0.23 (mild but visible), ``--strength 0.25`` r 0.24, The Starry Night at the default
r 0.36, ``--strength 0.75`` r 0.48 (heavy, still recognisable); the uncalibrated
``wasserstein`` (r 0.53: houses dissolving into swirls) and ``mrf`` (r 0.62: the photo gone) of
the losses sheet before are outside."""
NEAR = 0.1
"""At the default strength every style loss's r should be within this of gram's."""


def content_ratio(evaluator: Evaluator, image: torch.Tensor, reference: float) -> float:
    """r = J_content(image) / ``reference`` (the painting's J_content), by the shared evaluator."""
    return evaluator(image).content / reference


def crossing(points: list[tuple[float, float]], target: float) -> float | None:
    """log10 m where r(m) first reaches ``target``, linear in (log10 m, r) between the two
    measured points around it; ``points`` are ``(log10 m, r)`` sorted by m. None: never reached
    or already above at the smallest m."""
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if y0 <= target <= y1 and y1 > y0:
            return x0 + (target - y0) * (x1 - x0) / (y1 - y0)
    return None


def search(measure, target: float, guess: float, runs: int = 3) -> dict[float, float]:
    """Multipliers tried and their r while looking for r = ``target``: start at ``guess``, step
    half a decade toward the target (a decade once past the first step) until it is bracketed,
    then interpolate (log m, r) between the bracketing points; ``runs`` measurements at most
    (more only while unbracketed, up to 5)."""
    seen: dict[float, float] = {}
    x = math.log10(guess)
    for i in range(5):
        seen[x] = measure(10 ** x)
        points = sorted(seen.items())
        found = crossing(points, target)
        if found is not None:
            if len(seen) >= runs or any(abs(found - p) < 0.02 for p in seen):
                break
            x = found
            continue
        step = 0.5 if i == 0 else 1.0
        x = (max(seen) + step) if all(r < target for r in seen.values()) else (min(seen) - step)
    return {10 ** x: r for x, r in seen.items()}


def parse_multipliers(text: str) -> list[float]:
    """``"-2:1:0.5"`` -> [10^-2, 10^-1.5, ..., 10^1]; ``"0.1,1,10"`` -> those numbers."""
    if ":" in text:
        lo, hi, step = (float(v) for v in text.split(":"))
        n = round((hi - lo) / step)
        return [10 ** (lo + k * step) for k in range(n + 1)]
    return [float(v) for v in text.split(",")]


def run_one(pair, loss: str, multiplier: float, backbone: str, options: argparse.Namespace, registries, model):
    import nst_core

    started = time.perf_counter()
    result = nst_core.stylize(pair.content, pair.style, registries=registries, model=model, size=pair.size,
                              steps=options.steps, scales=1, seed=0, device="cpu", precision="float32",
                              style_loss=loss, style_weight=multiplier, backbone=backbone)
    return result, time.perf_counter() - started


def calibration(pairs, losses, declared, reference, ratios) -> list[str]:
    """The m* table: per loss and pair the multiplier at which r equals the reference's."""
    lines = ["", "m* = the multiplier at which r equals the reference's r (interpolated in log m; geometric "
             "mean over the pairs); the weight scale to declare = declared × m*.", "",
             "| loss | " + " | ".join(f"m* {key}" for key in pairs) + " | m* (mean) | declared | to declare |",
             "| --- |" + " --- |" * (len(pairs) + 3)]
    for loss in losses:
        found, cells = [], []
        for key in pairs:
            x = crossing(sorted((math.log10(m), r) for m, r in ratios[(key, loss)].items()), reference[key])
            if x is None and 1.0 in ratios[(key, loss)] and abs(ratios[(key, loss)][1.0] - reference[key]) < 1e-9:
                x = 0.0  # the reference itself
            cells.append("—" if x is None else f"{10 ** x:.3g}")
            found += [] if x is None else [x]
        mean = 10 ** (sum(found) / len(found)) if found else math.nan
        lines.append(f"| {loss} | " + " | ".join(cells) + f" | {mean:.3g} | {declared[loss]:g} | "
                     f"{declared[loss] * mean:.3g} |")
    return lines


def report(options, pairs, losses, declared, reference, ratios, styles, elapsed) -> list[str]:
    """The markdown: r per pair, loss and multiplier; the calibration; the band check at m=1."""
    command = "python benchmarks/bench_strength.py " + " ".join(sys.argv[1:])
    lines = [f"### Strength, {datetime.date.today()}: `{command}`", "",
             f"{options.size} px, one scale, {options.steps} L-BFGS steps, seed 0, float32 on the CPU "
             f"({torch.get_num_threads()} threads, load {load_average()}), {elapsed / 60:.1f} min in all. "
             f"Candidates on backbone `{options.backbone}`; the reference is `gram` on `vgg19` at weight 1. "
             f"r = J_content(G) / J_content(painting) by the shared evaluator; s = its style loss / the photo's. "
             f"m multiplies the declared scale (`style_weight = m`).", "",
             "| pair | loss (declared scale) | r (s) at each m tried |", "| --- | --- | --- |"]
    for key in pairs:
        lines.append(f"| {key} | reference: gram on vgg19, m=1 | {reference[key]:.3f} |")
        for loss in losses:
            cells = ", ".join(f"m={m:.3g}: {r:.2f} ({styles[(key, loss)][m]:.2f})"
                              for m, r in sorted(ratios[(key, loss)].items()))
            lines.append(f"| {key} | {loss} ({declared[loss]:g}) | {cells} |")
    if any(len(ratios[(key, loss)]) > 1 for key in pairs for loss in losses):  # else nothing to interpolate
        lines += calibration(pairs, losses, declared, reference, ratios)
    at_one = {(key, loss): ratios[(key, loss)].get(1.0) for key in pairs for loss in losses}
    if all(v is not None for v in at_one.values()):
        lo, hi = BAND
        inside = all(lo <= v <= hi for v in at_one.values())  # type: ignore[operator]
        near = all(abs(at_one[(key, loss)] - reference[key]) <= NEAR  # type: ignore[operator]
                   for key in pairs for loss in losses)
        lines += ["", f"At the default strength (m=1): r in [{lo}, {hi}] for every loss and pair: "
                  f"{'yes' if inside else 'no'}; within {NEAR} of gram's r: {'yes' if near else 'no'}."]
    return lines


def judge_sheet(path: Path, labels: list[str], style: Path = EXAMPLES / "starry_night.jpg") -> list[str]:
    """r of every tile of a gallery sheet made by benchmarks/gallery.py (tiles of THUMB_HEIGHT px
    under a 22 px label, 6 px apart, 3 columns; the first tile is the content photo), judged at
    the tiles' size with the painting ``style``: how the band was chosen on images one can see."""
    import numpy as np
    from PIL import Image

    from benchmarks.gallery import THUMB_HEIGHT
    from nst_core.image import read_image

    sheet = Image.open(path).convert("RGB")
    tiles = []
    for i in range(len(labels)):
        row, col = divmod(i, 3)
        width = (sheet.width - 12) // 3  # three tiles of the photo's aspect ratio a row
        left, top = col * (width + 6), row * (THUMB_HEIGHT + 22 + 6) + 22
        crop = np.asarray(sheet.crop((left, top, left + width, top + THUMB_HEIGHT))).copy()
        tiles.append(torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255)
    painting = read_image(style).rgb
    evaluator = Evaluator(tiles[0], painting)
    reference = evaluator(resize(painting, *tiles[0].shape[-2:])).content
    lines = [f"`{path.name}` tiles ({tiles[0].shape[-1]}×{tiles[0].shape[-2]} px, JPEG), painting "
             f"`{style.name}`: " + ", ".join(f"{label} r={content_ratio(evaluator, t, reference):.2f}"
                                             for label, t in zip(labels, tiles))]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--pairs", default=",".join(PAIRS), help="content:style names from examples/")
    parser.add_argument("--losses", default=",".join(LOSSES))
    parser.add_argument("--multipliers", default="1", help="lo:hi:step in log10, or a comma list (default 1: "
                        "the default strength only)")
    parser.add_argument("--search", action="store_true", help="find m* per loss (3 runs each) instead of a sweep")
    parser.add_argument("--guess", default="", help="loss=m,... first multiplier of --search (default 1)")
    parser.add_argument("--backbone", default="vgg19", help="run the candidates on this backbone")
    parser.add_argument("--out", type=Path, default=None, help="append the markdown tables here")
    parser.add_argument("--sheet", type=Path, default=None, help="PNG of every output at multiplier 1")
    parser.add_argument("--judge", type=Path, default=None, help="only measure r of a gallery sheet's tiles "
                        "(labels: --labels a,b,...; the first tile is the photo)")
    parser.add_argument("--labels", default="")
    options = parser.parse_args()
    if options.judge is not None:
        lines = judge_sheet(options.judge, options.labels.split(","))
        print("\n".join(lines))
        append_markdown(options.out, ["Command: `python benchmarks/bench_strength.py " + " ".join(sys.argv[1:]) + "`",
                                      "", *lines])
        return 0

    import nst_core
    from nst_core.registry import collect_registries

    registries = collect_registries()
    models = {name: nst_core.load_model(registries=registries, backbone=name, device="cpu", precision="float32")
              for name in dict.fromkeys(("vgg19", options.backbone))}
    losses = options.losses.split(",")
    multipliers = parse_multipliers(options.multipliers)
    guesses = {k: float(v) for k, v in (g.split("=") for g in options.guess.split(",") if g)}
    declared = {name: float(registries.loss_terms.get(name).weight_scale) for name in losses}
    pairs = [f"{c}:{s}" for c, s in (p.split(":") for p in options.pairs.split(","))]
    started = time.perf_counter()
    ratios: dict[tuple[str, str], dict[float, float]] = {}
    styles: dict[tuple[str, str], dict[float, float]] = {}
    reference: dict[str, float] = {}
    tiles = []
    for key in pairs:
        content_name, style_name = key.split(":")
        pair = prepare_pair(options.size, content=EXAMPLES / f"{content_name}.jpg",
                            style=EXAMPLES / f"{style_name}.jpg")
        evaluator = Evaluator(pair.content, pair.style)
        d_ref = evaluator(resize(pair.style, *pair.content.shape[-2:])).content
        s_photo = evaluator(pair.content).style
        tiles.append((content_name, pair.content))

        def measure(loss: str, m: float, backbone: str, key=key, pair=pair, evaluator=evaluator,
                    d_ref=d_ref, s_photo=s_photo) -> float:
            result, seconds = run_one(pair, loss, m, backbone, options, registries, models[backbone])
            r = content_ratio(evaluator, result.image, d_ref)
            if backbone == options.backbone:
                ratios.setdefault((key, loss), {})[m] = r
                styles.setdefault((key, loss), {})[m] = evaluator(result.image).style / s_photo
                if m == 1.0:
                    tiles.append((f"{loss} r={r:.2f}", result.image))
            print(f"{key} {loss} on {backbone} m={m:.3g}: r={r:.3f} ({seconds:.0f} s, {result.status})", flush=True)
            return r

        reference[key] = measure("gram", 1.0, "vgg19")
        for loss in losses:
            if options.search:
                if loss == "gram" and options.backbone == "vgg19":
                    continue  # the reference itself: m* = 1
                search(lambda m, loss=loss: measure(loss, m, options.backbone), reference[key],
                       guesses.get(loss, 1.0))
            else:
                for m in multipliers:
                    if not (loss == "gram" and m == 1.0 and options.backbone == "vgg19"):
                        measure(loss, m, options.backbone)
    lines = report(options, pairs, losses, declared, reference, ratios, styles, time.perf_counter() - started)
    print("\n".join(lines))
    append_markdown(options.out, lines)
    if options.sheet is not None:
        save_sheet(options.sheet, tiles, len(tiles) // len(pairs))
    return 0


def save_sheet(path: Path, tiles: list[tuple[str, torch.Tensor]], columns: int) -> None:
    """The photo and every output at m=1, one row per pair, each labelled with its r."""
    from PIL import Image, ImageDraw

    w, h = 200, 160
    rows = math.ceil(len(tiles) / columns)
    sheet = Image.new("RGB", (columns * w, rows * (h + 16)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (label, image) in enumerate(tiles):
        row, col = divmod(i, columns)
        thumb = to_pil(image).convert("RGB")
        thumb.thumbnail((w - 4, h))
        sheet.paste(thumb, (col * w, row * (h + 16) + 16))
        draw.text((col * w + 2, row * (h + 16) + 2), label, fill="black")
    sheet.save(path)


if __name__ == "__main__":
    raise SystemExit(main())
