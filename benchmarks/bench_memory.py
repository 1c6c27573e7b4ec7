"""Peak memory of a run by size, precision and checkpointing, each in a fresh process.

Every measurement is a new Python process (``python benchmarks/bench_memory.py --child ...``)
that imports torch, loads the weights, then runs ``nst_core.stylize`` for ``--steps`` steps at
one scale; it reports its peak RSS (VmHWM, CPU) or ``torch.cuda.max_memory_allocated`` (CUDA),
its RSS before the run (torch and weights loaded) and what :mod:`nst_core.memory` predicted.

    .venv/bin/python benchmarks/bench_memory.py --sizes 512 1024 2048 --steps 2
    .venv/bin/python benchmarks/bench_memory.py --sizes 4096 --steps 1 --precision bf16 --checkpoint on

Prints a markdown table; ``--out FILE`` appends it to FILE with the command line.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
from pathlib import Path
import subprocess
import sys
import time

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def child(size: int, steps: int, precision: str, checkpoint: str, device: str) -> dict:
    import torch

    from benchmarks.common import CONTENT, STYLE, peak_rss_mb, release_free_memory, reset_peak_rss, rss_mb
    import nst_core
    from nst_core.builtins.vgg import caffe_vgg19_convs
    from nst_core.image import read_image

    caffe_vgg19_convs()  # weights in memory: part of the baseline
    content, style = read_image(CONTENT).rgb, read_image(STYLE).rgb
    dev = torch.device(device)
    release_free_memory()
    before = rss_mb()
    reset_peak_rss()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    cfg = dict(size=size, steps=steps, scales=1, seed=0, device=device, precision=precision)
    if checkpoint != "auto":
        cfg["checkpoint"] = checkpoint == "on"
    from nst_core import memory

    started = time.perf_counter()
    result = nst_core.stylize(content, style, **cfg)
    elapsed = time.perf_counter() - started
    peak = peak_rss_mb() if dev.type == "cpu" else torch.cuda.max_memory_allocated(dev) / 2**20
    w, h = result.sizes[-1]
    used = checkpoint == "on" or (checkpoint == "auto" and any("checkpointing is on" in n for n in result.notes))
    estimate = memory.estimate(h, w, precision=precision, device=dev, checkpoint=used, steps=steps)
    return {"size": size, "w": w, "h": h, "steps": result.steps, "precision": precision,
            "checkpoint": f"auto ({'on' if used else 'off'})" if checkpoint == "auto" else checkpoint,
            "peak_mb": peak, "before_mb": before, "seconds": elapsed,
            "estimate_mb": estimate.total / 2**20, "status": result.status,
            "notes": [n for n in result.notes if "memory" in n or "checkpoint" in n]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--precision", nargs="+", default=["float32"], choices=["float32", "bf16", "fp16"])
    parser.add_argument("--checkpoint", nargs="+", default=["off"], choices=["off", "on", "auto"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(child(args.sizes[0], args.steps, args.precision[0], args.checkpoint[0],
                                           args.device)))
        return 0
    command = "python benchmarks/bench_memory.py " + " ".join(sys.argv[1:] if argv is None else argv)
    kind = "peak RSS" if args.device == "cpu" else "peak allocated"
    lines = [f"`{command}`", "", f"device {args.device}, {datetime.date.today()}; each row a fresh process; "
             f"{kind} of the whole process (torch and weights included; 'before' = RSS once they are loaded); "
             f"estimate = nst_core.memory's prediction of peak − before.", "",
             f"| size | pixels | precision | checkpointing | steps | {kind} MB | before MB | estimate MB | "
             f"(peak − before) / pixel | s | status |",
             "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    print("\n".join(lines), flush=True)
    rows = []
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    for size in args.sizes:
        for precision in args.precision:
            for checkpoint in args.checkpoint:
                cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--sizes", str(size), "--steps",
                       str(args.steps), "--precision", precision, "--checkpoint", checkpoint, "--device", args.device]
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
                found = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
                if proc.returncode != 0 or not found:
                    tail = (proc.stderr.strip().splitlines() or ["?"])[-1][:160]
                    row = f"| {size} | – | {precision} | {checkpoint} | – | – | – | – | – | – | failed: {tail} |"
                else:
                    r = json.loads(found[0][7:])
                    px = r["w"] * r["h"]
                    per_px = (r["peak_mb"] - r["before_mb"]) * 2**20 / px
                    row = (f"| {r['w']}×{r['h']} | {px / 1e6:.2f} M | {precision} | {r['checkpoint']} | {r['steps']} | "
                           f"{r['peak_mb']:,.0f} | {r['before_mb']:,.0f} | {r['estimate_mb']:,.0f} | "
                           f"{per_px:,.0f} B | {r['seconds']:.0f} | {r['status']} |")
                rows.append(row)
                print(row, flush=True)
    from benchmarks.common import append_markdown  # imported here: it imports torch, which the parent needs nowhere else

    append_markdown(args.out, lines + rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
