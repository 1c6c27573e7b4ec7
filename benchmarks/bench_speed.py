"""Ours vs pastiche vs the floor: seconds per step, total, peak memory and the objective reached.

Same content/style pixels (examples/tubingen.jpg + examples/starry_night.jpg), same size, same
number of optimiser steps, one scale, same objective (pastiche's weights are set so that its loss
is ours, see :func:`benchmarks.common.pastiche_weights`). Each contestant runs in its own fresh
process; they take turns one step at a time (:func:`benchmarks.common.interleaved`), so only one
computes at any moment and a noisy machine slows all of them alike; each measures its own time
and its own peak memory (RSS of its process on CPU: torch itself included). Every output is
judged by :mod:`benchmarks.evaluator`.

    .venv/bin/python benchmarks/bench_speed.py --sizes 256 512 --steps 50 --repeats 2
    .venv/bin/python benchmarks/bench_speed.py --sizes 1024 --steps 10

Prints a markdown table; ``--out FILE`` appends it to FILE with the command line.
"""

from __future__ import annotations

import argparse
import datetime
import math
from pathlib import Path
import platform
import statistics
import sys
import tempfile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.common import Evaluator, append_markdown, interleaved, prepare_pair  # noqa: E402

CONTESTANTS = {  # label: (runner, options)
    "floor": ("floor", {}),
    "floor-cl": ("floor", {"channels_last": True}),
    "floor-bf16": ("floor", {"channels_last": True, "precision": "bf16"}),
    "ours": ("ours", {}),  # the defaults: precision "auto" (bf16 on chips that compute it natively)
    "ours-fp32": ("ours", {"precision": "float32"}),
    "ours-bf16": ("ours", {"precision": "bf16"}),
    "pastiche": ("pastiche", {}),
}
DEFAULT = ("floor", "floor-cl", "ours-fp32", "ours", "pastiche")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def fmt(value: float, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--steps", type=int, nargs="+", default=[50],
                        help="steps per size (one value for all, or one per size)")
    parser.add_argument("--repeats", type=int, default=1, help="rounds of alternating runs (median reported)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--contestants", nargs="+", default=list(DEFAULT), choices=list(CONTESTANTS),
                        help="floor: plain float32 VGG forward+backward; floor-cl: the same channels-last; "
                             "floor-bf16: channels-last under bf16 autocast; ours: the defaults (precision auto); "
                             "ours-fp32 / ours-bf16: precision float32 / bf16")
    parser.add_argument("--ours", action="append", default=[], metavar="FIELD=VALUE",
                        help="extra StyleConfig field for ours, e.g. --ours precision=bf16 (repeatable)")
    parser.add_argument("--base", metavar="DIR",
                        help="also run 'ours-base': nst_core from this checkout (e.g. `git worktree add /tmp/base "
                             "<commit>`), for before/after")
    parser.add_argument("--out", help="append the table (with this command) to this markdown file")
    parser.add_argument("--workdir", help="where the prepared PNGs go (default: a temp dir)")
    args = parser.parse_args(argv)
    steps = args.steps * len(args.sizes) if len(args.steps) == 1 else args.steps
    if len(steps) != len(args.sizes):
        parser.error("--steps needs one value or one per size")
    ours_config = {}
    for item in args.ours:
        key, _, value = item.partition("=")
        try:
            ours_config[key] = int(value)
        except ValueError:
            try:
                ours_config[key] = float(value)
            except ValueError:
                ours_config[key] = {"true": True, "false": False}.get(value.lower(), value)

    workdir = args.workdir or tempfile.mkdtemp(prefix="nst-bench-")
    command = "python benchmarks/bench_speed.py " + " ".join(sys.argv[1:] if argv is None else argv)
    lines = [f"`{command}`", "",
             f"{machine()}, device {args.device}, {datetime.date.today()}; median of {args.repeats} "
             f"interleaved round(s); s/step: mean wall seconds over steps 2..n; CPU s/step: the same in "
             f"CPU seconds of the contestant's process (all threads), less sensitive to other load; total: own time of the whole call "
             f"(weights, targets, steps); peak: the contestant's process (Δ: above its RSS at the "
             f"start of the call); pastiche ÷ this: how many times faster per step (wall) than pastiche; "
             f"J: benchmarks/evaluator.py (lower is better).", "",
             "| size | contestant | steps | s/step | × floor | CPU s/step | × floor | pastiche ÷ this | total s | peak MB | Δ MB | J total | J content | J style |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    print("\n".join(lines), flush=True)
    rows = []
    for size, n in zip(args.sizes, steps):
        pair = prepare_pair(size, workdir)
        judge = Evaluator(pair.content, pair.style)
        contestants = [(name, CONTESTANTS[name][0],
                        {**CONTESTANTS[name][1], **(ours_config if CONTESTANTS[name][0] == "ours" else {})})
                       for name in args.contestants]
        if args.base:
            contestants.insert(2, ("ours-base", "ours", {"root": args.base}))
        names = [label for label, *_ in contestants]
        results = {name: [] for name in names}
        for r in range(args.repeats):
            order = contestants[r % len(contestants):] + contestants[: r % len(contestants)]
            for label, run in interleaved(order, pair, n, args.device).items():
                results[label].append(run)
        floor = statistics.median(r.seconds_per_step for r in results["floor"]) if "floor" in results else math.nan
        floor_cpu = (statistics.median(r.cpu_seconds_per_step for r in results["floor"]) if "floor" in results
                     else math.nan)
        past = statistics.median(r.seconds_per_step for r in results["pastiche"]) if "pastiche" in results else math.nan
        for name in names:
            runs = results[name]
            sps = statistics.median(r.seconds_per_step for r in runs)
            cps = statistics.median(r.cpu_seconds_per_step for r in runs)
            total = statistics.median(r.total for r in runs)
            peak = max(r.peak_mb for r in runs)
            delta = max(r.peak_mb - r.before_mb for r in runs)
            scores = [judge(r.image) for r in runs if r.image is not None]
            score = min(scores, key=lambda s: s.total) if scores else None
            w, h = runs[0].size
            row = (f"| {w}×{h} | {name}{' ' + str(ours_config) if name.startswith('ours') and ours_config else ''} | "
                   f"{runs[0].steps} | {fmt(sps)} | {fmt(sps / floor)} | {fmt(cps)} | {fmt(cps / floor_cpu)} | {fmt(past / sps)} | {fmt(total)} | "
                   f"{fmt(peak, 4)} | {fmt(delta, 4)} | {fmt(score.total if score else math.nan, 4)} | "
                   f"{fmt(score.content if score else math.nan, 4)} | {fmt(score.style if score else math.nan, 4)} |")
            rows.append(row)
            print(row, flush=True)
    append_markdown(args.out, lines + rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
