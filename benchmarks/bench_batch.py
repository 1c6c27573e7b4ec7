"""Many small images: `nst batch` against N separate `nst run` processes, a shell loop over
pastiche, and the Ray executor on this machine (one and two workers) against the local one.

Every contestant makes the same N outputs (N distinct contents at --size px, one style, --steps
L-BFGS steps, one scale, seed 1) in its own fresh process(es), one contestant at a time; the wall
time covers everything a user waits for (Python and torch start-up, weight loading, Ray's start).
`nst batch` also reports each item's time on its worker (the median: the first item of each
worker also loads the backbone), compared with one in-process `nst_core.stylize()` of the same
settings after a warm-up (the engine's own cost per image).

    .venv/bin/python benchmarks/bench_batch.py                       # 20 images, 128 px, 60 steps
    .venv/bin/python benchmarks/bench_batch.py --images 4 --steps 10 # a quick check

Prints a markdown table with the command; ``--out FILE`` appends it to FILE.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
from pathlib import Path
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.common import ROOT, append_markdown  # noqa: E402
from nst_core.image import read_image, resize, save_image  # noqa: E402
from nst_core.planning import working_shape  # noqa: E402

BIN = Path(sys.executable).parent
PHOTOS = ("tubingen.jpg", "shipwreck.jpg", "hoovertowernight.jpg", "the_scream.jpg")
CONTESTANTS = ("batch", "runs", "pastiche", "batch-w2", "ray-w1", "ray-w2")


def make_inputs(folder: Path, count: int, size: int) -> tuple[list[Path], Path]:
    """``count`` distinct content PNGs (the example photos, mirrored and cropped in turn) and the style."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        image = read_image(ROOT / "examples" / PHOTOS[i % len(PHOTOS)]).rgb
        variant = i // len(PHOTOS)
        if variant % 2:
            image = image.flip(-1)
        crop = 1 - 0.05 * (variant // 2)
        h, w = image.shape[-2:]
        image = image[..., : max(8, int(h * crop)), : max(8, int(w * crop))]
        h, w = working_shape(*image.shape[-2:], size)
        path = folder / f"photo{i:02d}.png"
        save_image(resize(image, h, w), path)
        paths.append(path)
    style = read_image(ROOT / "examples" / "starry_night.jpg").rgb
    style_path = folder.parent / "style.png"
    save_image(resize(style, *working_shape(*style.shape[-2:], size)), style_path)
    return paths, style_path


def timed(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, args))} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return elapsed, proc.stdout


def run_batch(contents: Path, style: Path, out: Path, settings: list[str], env: dict[str, str],
              extra: list[str]) -> tuple[float, list[float]]:
    wall, stdout = timed([str(BIN / "nst"), "batch", str(contents), "--style", str(style), "-o", str(out),
                          *settings, "--progress", "jsonl", *extra], env)
    events = [json.loads(line) for line in stdout.splitlines()]
    done = [e for e in events if e["event"] == "item-done"]
    assert len(done) == len(list(contents.iterdir())) and all(e["status"] == "done" for e in done), done
    return wall, [e["seconds"] for e in done]


def single_stylize(content: Path, style: Path, size: int, steps: int) -> float:
    """Seconds of one in-process stylize() after a warm-up run (weights loaded, caches warm)."""
    import nst_core

    config = nst_core.StyleConfig(size=size, steps=steps, scales=1, seed=1)
    model = nst_core.load_model(config)
    nst_core.run(nst_core.plan(content, style, config, model=model))
    times = []
    for _ in range(2):
        started = time.perf_counter()
        nst_core.run(nst_core.plan(content, style, config, model=model))
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--contestants", nargs="+", default=list(CONTESTANTS), choices=CONTESTANTS)
    parser.add_argument("--out", help="append the table to this markdown file")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="nst-bench-batch-"))
    env = {k: v for k, v in os.environ.items() if k not in ("NST_DEBUG", "RAY_ADDRESS")}
    try:
        contents_dir = work / "contents"
        contents, style = make_inputs(contents_dir, args.images, args.size)
        settings = ["--size", str(args.size), "--steps", str(args.steps), "--scales", "1", "--seed", "1"]
        single = single_stylize(contents[0], style, args.size, args.steps)  # the engine alone, before any contestant
        load = os.getloadavg()[0]
        rows: dict[str, tuple[str, float, str]] = {}
        per_item: dict[str, float] = {}
        for name in args.contestants:
            out = work / f"out-{name}"
            out.mkdir()
            if name == "runs":
                wall = 0.0
                for path in contents:
                    seconds, _ = timed([str(BIN / "nst"), "run", str(path), str(style), "-o",
                                        str(out / f"{path.stem}.png"), *settings, "--progress", "none"], env)
                    wall += seconds
                rows[name] = (f"{args.images} × `nst run`", wall, "1 process each")
            elif name == "pastiche":
                wall = 0.0
                for path in contents:
                    seconds, _ = timed([str(BIN / "pastiche"), "--content", str(path), "--styles", str(style),
                                        "--output", str(out / f"{path.stem}.png"), "--num-steps", str(args.steps),
                                        "--size", str(args.size), "--style-size", str(args.size),
                                        "--no-verbose", "--seed", "1"], env)
                    wall += seconds
                rows[name] = (f"shell loop: {args.images} × `pastiche`", wall, "1 process each")
            else:
                extra, label, workers = {
                    "batch": ([], "`nst batch`", "1 local"),
                    "batch-w2": (["--workers", "2"], "`nst batch --workers 2`", "2 local (cores split)"),
                    "ray-w1": (["--ray", "--workers", "1"], "`nst batch --ray --workers 1`", "1 Ray actor"),
                    "ray-w2": (["--ray", "--workers", "2"], "`nst batch --ray --workers 2`", "2 Ray actors"),
                }[name]
                wall, seconds = run_batch(contents_dir, style, out, settings, env, extra)
                per_item[name] = statistics.median(seconds)
                rows[name] = (label, wall, workers)
            print(f"{name}: {rows[name][1]:.1f} s", file=sys.stderr, flush=True)
        load = max(load, os.getloadavg()[0])
    finally:
        shutil.rmtree(work, ignore_errors=True)

    reference = rows.get("runs", (None, None))[1]
    local = rows.get("batch", (None, None))[1]
    command = "python benchmarks/bench_batch.py " + " ".join(sys.argv[1:])
    lines = [f"`{command.strip()}` on {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
             f"torch {torch.__version__}, {datetime.date.today()}: {args.images} images of {args.size} px, "
             f"{args.steps} steps, one scale, CPU, load average up to {load:.1f}. One in-process `stylize()` of one "
             f"image after a warm-up: {single:.2f} s.",
             "",
             "| contestant | workers | wall s | images/min | speed-up over separate `nst run` | "
             "wall ÷ local `nst batch` | median s per item on its worker |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, (label, wall, workers) in rows.items():
        rate = args.images / wall * 60
        vs_runs = f"{reference / wall:.2f}" if reference else ""
        vs_local = f"{wall / local:.2f}" if local else ""
        item = f"{per_item[name]:.2f}" if name in per_item else ""
        if name == "batch":  # the same threads as the stylize() above
            item += f" ({per_item[name] / single:.2f}× stylize)"
        lines.append(f"| {label} | {workers} | {wall:.1f} | {rate:.1f} | {vs_runs} | {vs_local} | {item} |")
    print("\n".join(lines))
    append_markdown(args.out, lines)


if __name__ == "__main__":
    main()
