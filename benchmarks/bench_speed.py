"""Ours vs the peers vs the floor: seconds per step, total, peak memory and the objective reached.

Same content/style pixels (examples/tubingen.jpg + examples/starry_night.jpg), same size, same
number of optimiser steps, one scale. ``pastiche`` has its weights set so that its loss is ours
(see :func:`benchmarks.common.pastiche_weights`); ``pastiche-own``, ``neural-style-pt`` and
``pystiche`` run their own default recipes on nst-core's weights (:mod:`benchmarks.peers`,
:mod:`benchmarks.convert_weights`). Each contestant runs in its own fresh
process; they take turns one step at a time (:func:`benchmarks.common.interleaved`), so only one
computes at any moment and a noisy machine slows all of them alike; each measures its own time
and its own peak memory (RSS of its process on CPU: torch itself included). Every output is
judged by :mod:`benchmarks.evaluator`.

    .venv/bin/python benchmarks/bench_speed.py --sizes 256 512 --steps 50 --repeats 2
    .venv/bin/python benchmarks/bench_speed.py --sizes 1024 --steps 10
    .venv/bin/python benchmarks/bench_speed.py --sizes 256 512 --steps 20 10 --contestants peers

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

from benchmarks.common import Evaluator, append_markdown, interleaved, load_average, prepare_pair  # noqa: E402

CONTESTANTS = {  # label: (runner, options)
    "floor": ("floor", {}),
    "floor-cl": ("floor", {"channels_last": True}),
    "floor-bf16": ("floor", {"channels_last": True, "precision": "bf16"}),
    "ours": ("ours", {}),  # the defaults: precision "auto" (bf16 on chips that compute it natively)
    "ours-fp32": ("ours", {"precision": "float32"}),
    "ours-bf16": ("ours", {"precision": "bf16"}),
    "pastiche": ("pastiche", {}),  # its loss set to ours (benchmarks.common.pastiche_weights)
    "pastiche-own": ("pastiche", {"own_weights": True}),  # pastiche 1.6 with its own defaults
    "neural-style-pt": ("neural-style-pt", {}),  # 0.5.7, its defaults (benchmarks/peers.py)
    "pystiche": ("pystiche", {}),  # 1.0.1, its example's recipe (benchmarks/peers.py)
}
DEFAULT = ("floor", "floor-cl", "ours-fp32", "ours", "pastiche")
PEERS = ("floor", "floor-cl", "floor-bf16", "ours", "ours-fp32", "pastiche", "neural-style-pt", "pystiche")
"""``--contestants peers``: every peer with its own recipe, nst-core both ways, a floor at each precision."""


def same_precision_floor(run, results: dict) -> str | None:
    """The floor a run is held against: bf16/fp16 runs against ``floor-bf16`` (channels-last under
    autocast), float32 ones against ``floor-cl`` (channels-last float32, the faster float32 floor),
    else the plain ``floor``; None when that floor was not run."""
    precision = run.extra.get("precision", "float32")
    candidates = ("floor-bf16",) if precision in ("bf16", "fp16") else ("floor-cl", "floor")
    return next((name for name in candidates if name in results), None)


def median_of(results: dict, name: str | None, attr: str) -> float:
    """Median of ``attr`` over the runs of ``name``; NaN when it was not run."""
    if name is None or name not in results:
        return math.nan
    return statistics.median(getattr(r, attr) for r in results[name])


def table_row(name: str, results: dict, judge, ours_config: dict) -> str:
    """One markdown row of the speed table for contestant ``name`` (see the header in main)."""
    runs = results[name]
    sps = median_of(results, name, "seconds_per_step")
    cps = median_of(results, name, "cpu_seconds_per_step")
    same = same_precision_floor(runs[0], results)
    scores = [judge(r.image) for r in runs if r.image is not None]
    score = min(scores, key=lambda s: s.total) if scores else None
    w, h = runs[0].size
    config = " " + str(ours_config) if name.startswith("ours") and ours_config else ""
    return (f"| {w}×{h} | {name}{config} | {runs[0].steps} | {fmt(sps)} | "
            f"{fmt(sps / median_of(results, 'floor', 'seconds_per_step'))} | "
            f"{fmt(sps / median_of(results, same, 'seconds_per_step'))}{' (' + same + ')' if same else ''} | "
            f"{fmt(cps)} | {fmt(cps / median_of(results, same, 'cpu_seconds_per_step'))} | "
            f"{fmt(sps / median_of(results, 'ours', 'seconds_per_step'))} | "
            f"{fmt(statistics.median(r.total for r in runs))} | {fmt(max(r.peak_mb for r in runs), 4)} | "
            f"{fmt(max(r.peak_mb - r.before_mb for r in runs), 4)} | "
            f"{fmt(score.total if score else math.nan, 4)} | "
            f"{fmt(score.content if score else math.nan, 4)} | {fmt(score.style if score else math.nan, 4)} |")


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
    parser.add_argument("--contestants", nargs="+", default=list(DEFAULT), choices=list(CONTESTANTS) + ["peers"],
                        help="floor: plain float32 VGG forward+backward; floor-cl: the same channels-last; "
                             "floor-bf16: channels-last under bf16 autocast; ours: the defaults (precision auto); "
                             "ours-fp32 / ours-bf16: precision float32 / bf16; pastiche (its loss set to ours), "
                             "pastiche-own, neural-style-pt, pystiche: the peers with their own recipes; "
                             "peers: " + " ".join(PEERS))
    parser.add_argument("--ours", action="append", default=[], metavar="FIELD=VALUE",
                        help="extra StyleConfig field for ours, e.g. --ours precision=bf16 (repeatable)")
    parser.add_argument("--base", metavar="DIR",
                        help="also run 'ours-base': nst_core from this checkout (e.g. `git worktree add /tmp/base "
                             "<commit>`), for before/after")
    parser.add_argument("--out", help="append the table (with this command) to this markdown file")
    parser.add_argument("--workdir", help="where the prepared PNGs go (default: a temp dir)")
    args = parser.parse_args(argv)
    if "peers" in args.contestants:
        args.contestants = list(dict.fromkeys(
            [c for name in args.contestants for c in (PEERS if name == "peers" else (name,))]))
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
             f"interleaved round(s); s/step: mean wall seconds over steps 2..n; × floor: against the plain "
             f"float32 floor; × same-prec. floor: against the floor at the run's precision (bf16/fp16: "
             f"floor-bf16; float32: floor-cl); CPU s/step: the same in CPU seconds of the contestant's "
             f"process (all threads), less sensitive to other load; × nst-core: s/step over nst-core's "
             f"defaults' (`ours`); total: own time of the whole call (weights, targets, steps); peak: the "
             f"contestant's process (Δ: above its RSS at the start of the call); J: "
             f"benchmarks/evaluator.py (lower is better); load: /proc/loadavg (as `uptime`) before and "
             f"after each size's run.", "",
             "| size | contestant | steps | s/step | × floor | × same-prec. floor | CPU s/step "
             "| × same-prec. floor (CPU) | × nst-core | total s | peak MB | Δ MB | J total | J content | J style |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    print("\n".join(lines), flush=True)
    rows, loads = [], []
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
        load_before = load_average()
        for r in range(args.repeats):
            order = contestants[r % len(contestants):] + contestants[: r % len(contestants)]
            for label, run in interleaved(order, pair, n, args.device).items():
                results[label].append(run)
        loads.append(f"{size} px: load {load_before} before, {load_average()} after")

        for name in names:
            row = table_row(name, results, judge, ours_config)
            rows.append(row)
            print(row, flush=True)
    print("\n" + "; ".join(loads), flush=True)
    rows += ["", "Load: " + "; ".join(loads) + "."]
    append_markdown(args.out, lines + rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
