"""One prepared GPU check, bounded in time (default 270 s of work after start-up).

1. agreement: the same run (128 px, 20 steps, seed 0, float32) on the CPU and on the device:
   J at the first step, J of the final images by the shared evaluator, pixel differences;
2. speed and memory at 512, 1024 and 2048 px: the floor (bare forward + backward), ours in
   float32, bf16 and fp16 (autocast backbone, float32 Gram/loss), pastiche at 512/1024: steps/s,
   peak memory (``torch.cuda.max_memory_allocated``), J by the shared evaluator and the mean
   pixel difference to our float32 image after the same number of steps;
3. if time is left: layout and cuDNN variants at 1024 px, coarse-to-fine vs single scale at
   1024 px, and 4096 px in bf16.

Every part runs against a deadline (``should_stop`` for ours, step loops for the rest) and is
skipped when too little time is left; every finished row is printed and appended at once to
``$OUT/gpu_check.md`` (and ``.json``), so a run cut short still leaves its table.

    .venv/bin/python benchmarks/gpu_check.py                        # the real thing (CUDA / MPS)
    .venv/bin/python benchmarks/gpu_check.py --device cpu --quick   # try the code path anywhere
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
from pathlib import Path
import platform
import sys
import tempfile
import time
import traceback

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.common import Turn, prepare_pair, run_floor, run_ours, run_pastiche, sync  # noqa: E402
from benchmarks.evaluator import Evaluator  # noqa: E402


class Report:
    """Collects rows; prints each and rewrites the markdown/JSON files after each."""

    def __init__(self, out_dir: str | None) -> None:
        self.out_dir = Path(out_dir) if out_dir else None
        self.sections: list[tuple[str, list[str], list[list[str]]]] = []
        self.notes: list[str] = []
        self.records: list[dict] = []
        if self.out_dir:
            self.out_dir.mkdir(parents=True, exist_ok=True)

    def note(self, text: str) -> None:
        print(text, flush=True)
        self.notes.append(text)
        self.flush()

    def section(self, title: str, header: list[str]) -> None:
        print(f"\n### {title}\n\n| " + " | ".join(header) + " |\n|" + " --- |" * len(header), flush=True)
        self.sections.append((title, header, []))

    def row(self, cells: list, record: dict | None = None) -> None:
        cells = [str(c) for c in cells]
        print("| " + " | ".join(cells) + " |", flush=True)
        self.sections[-1][2].append(cells)
        if record is not None:
            self.records.append({"section": self.sections[-1][0], **record})
        self.flush()

    def markdown(self) -> str:
        parts = ["## GPU check", ""] + [f"- {n}" for n in self.notes]
        for title, header, rows in self.sections:
            parts += ["", f"### {title}", "", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
            parts += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(parts) + "\n"

    def flush(self) -> None:
        if not self.out_dir:
            return
        (self.out_dir / "gpu_check.md").write_text(self.markdown())
        (self.out_dir / "gpu_check.json").write_text(json.dumps({"notes": self.notes, "rows": self.records},
                                                                indent=1, default=str))


def pick_device(requested: str | None) -> torch.device:
    if requested:
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def f3(x: float) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.3g}" if abs(x) < 1e4 else f"{x:.4g}"


def free(device: torch.device) -> None:
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", help="cuda, cuda:1, mps or cpu (default: the best there is)")
    parser.add_argument("--budget", type=float, default=270.0, help="seconds of work after start-up")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few steps (to try the script)")
    parser.add_argument("--out", default=os.environ.get("OUT"), help="folder for gpu_check.md/.json (default $OUT)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    deadline = started + args.budget
    device = pick_device(args.device)
    report = Report(args.out)

    def left() -> float:
        return deadline - time.perf_counter()

    # ------------------------------------------------------------------ environment
    name = str(device)
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        name = f"{props.name}, {props.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}"
        bf16_ok = torch.cuda.is_bf16_supported()
    else:
        bf16_ok = True
    report.note(f"{datetime.datetime.now():%Y-%m-%d %H:%M}, device {device}: {name}; torch {torch.__version__}; "
                f"host {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    if device.type == "cuda":
        report.note(f"cudnn.allow_tf32={torch.backends.cudnn.allow_tf32} (float32 convolutions use TF32 tensor cores "
                    f"by default), matmul.allow_tf32={torch.backends.cuda.matmul.allow_tf32}, "
                    f"cudnn.benchmark={torch.backends.cudnn.benchmark}")
    report.note("`python benchmarks/gpu_check.py " + " ".join(sys.argv[1:] if argv is None else argv) + "`; "
                "content examples/tubingen.jpg, style examples/starry_night.jpg (512 px originals, upsampled "
                "for larger sizes); one scale unless said; J = shared evaluator (benchmarks/evaluator.py), "
                "lower is better")
    quick = args.quick
    sizes = [64, 128, 192] if quick else [512, 1024, 2048]
    steps_at = dict(zip(sizes, [20, 10, 6] if quick else [60, 30, 15]))
    workdir = tempfile.mkdtemp(prefix="nst-gpu-check-")
    precisions = ["float32"] + (["bf16"] if bf16_ok else []) + (["fp16"] if device.type != "cpu" or quick else [])

    # ------------------------------------------------------------------ 1. agreement
    agree_size, agree_steps = (64, 8) if quick else (128, 20)
    report.section(f"CPU vs {device.type}: same run ({agree_size} px, {agree_steps} steps, seed 0, float32)",
                   ["device", "J step 1 (engine)", "J final (evaluator)", "s"])
    try:
        pair = prepare_pair(agree_size, workdir)
        judge = Evaluator(pair.content, pair.style)
        import nst_core

        outs = []
        for dev in ["cpu", str(device)]:
            first: list[float] = []
            t = time.perf_counter()
            res = nst_core.stylize(pair.content, pair.style, size=agree_size, steps=agree_steps, scales=1, seed=0,
                                   device=dev, precision="float32", on_progress=lambda p: first.append(p.loss),
                                   should_stop=lambda: left() < 0)
            dt = time.perf_counter() - t
            score = judge(res.image)
            outs.append((first[0], score.total, res.image))
            report.row([dev, f3(first[0]), f3(score.total), f3(dt)],
                       {"device": dev, "J1": first[0], "J": score.total, "seconds": dt})
        (a1, aj, ai), (b1, bj, bi) = outs
        diff = (ai - bi).abs()
        report.note(f"agreement: J at step 1 differs by {abs(a1 - b1) / abs(a1):.2e} (relative), final J by "
                    f"{abs(aj - bj) / abs(aj):.2e}; final images differ by {float(diff.mean()):.4f} mean, "
                    f"{float(diff.max()):.3f} max (of 1). L-BFGS amplifies float rounding (TF32 on CUDA), so "
                    f"final images differ more than step-1 values; "
                    f"{'AGREE' if abs(a1 - b1) / abs(a1) < 1e-2 and abs(aj - bj) / abs(aj) < 0.05 else 'DISAGREE'} "
                    f"(thresholds: 1e-2 at step 1, 5% final)")
    except Exception as exc:  # keep going: the timings are still worth having
        report.note(f"agreement check failed: {type(exc).__name__}: {exc}")
        traceback.print_exc()

    # ------------------------------------------------------------------ warm-up
    try:
        tiny = prepare_pair(64, workdir)
        for p in precisions:
            run_ours(tiny, 3, str(device), precision=p)
        run_floor(tiny, 2, str(device))
    except Exception as exc:
        report.note(f"warm-up failed: {type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------ 2. speed and memory
    mem_label = "peak alloc MB" if device.type == "cuda" else ("peak RSS MB" if device.type == "cpu" else "driver MB")
    report.section(f"Speed and memory on {device.type}",
                   ["size", "what", "steps", "steps/s", "ms/step", "× floor", mem_label, "J", "mean |Δ| vs float32"])
    per_step_guess = None
    for size in sizes:
        steps = steps_at[size]
        try:
            pair = prepare_pair(size, workdir)
            judge = Evaluator(pair.content, pair.style, device=device)
        except Exception as exc:
            report.note(f"{size} px: could not prepare ({type(exc).__name__}: {exc})")
            continue
        floor_ms = math.nan
        ref_image = None
        jobs = [("floor float32", lambda t: run_floor(pair, steps, str(device), turn=t)),
                ("floor float32 (channels_last)",
                 lambda t: run_floor(pair, steps, str(device), turn=t, channels_last=True))]
        if "bf16" in precisions:
            jobs.append(("floor bf16 (channels_last)",
                         lambda t: run_floor(pair, steps, str(device), turn=t, precision="bf16", channels_last=True)))
        for p in precisions:
            jobs.append((f"ours {p}", lambda t, p=p: run_ours(pair, steps, str(device), turn=t, precision=p)))
        if size <= sizes[1] and device.type != "mps":
            jobs.append(("pastiche", lambda t: run_pastiche(pair, max(5, steps // 2), str(device), turn=t)))
        for label, job in jobs:
            # a job may use a share of what is left, so later sizes and extras still get their turn
            cap = max(5.0, left() / (2 + len(sizes) - sizes.index(size)))
            if left() < 5:
                report.row([size, label, "–", "–", "–", "–", "–", "–", "skipped: out of time"])
                continue
            if per_step_guess and per_step_guess * 3 > left():
                report.row([size, label, "–", "–", "–", "–", "–", "–", "skipped: would not fit"])
                continue
            try:
                free(device)
                run = job(Turn(budget_s=cap))
                sync(device)
                ms = run.seconds_per_step * 1000
                if label == "floor float32":
                    floor_ms = ms
                score = judge(run.image) if run.image is not None else None
                delta = "–"
                if label == "ours float32":
                    ref_image = run.image
                elif run.image is not None and ref_image is not None and label.startswith("ours") \
                        and run.steps == steps:
                    delta = f"{float((run.image - ref_image).abs().mean()):.4f}"
                w, h = run.size
                report.row([f"{w}×{h}", label, run.steps, f3(1000 / ms), f3(ms), f3(ms / floor_ms), f3(run.peak_mb),
                            f3(score.total) if score else "–", delta],
                           {"size": size, "what": label, "steps": run.steps, "ms_per_step": ms,
                            "peak_mb": run.peak_mb, "J": score.total if score else None, "delta": delta})
                per_step_guess = run.seconds_per_step
            except torch.cuda.OutOfMemoryError as exc:
                report.row([size, label, "–", "–", "–", "–", "–", "–", f"out of memory: {str(exc)[:80]}"])
            except Exception as exc:
                report.row([size, label, "–", "–", "–", "–", "–", "–", f"{type(exc).__name__}: {str(exc)[:100]}"])
                traceback.print_exc()
            finally:
                free(device)
        if per_step_guess is not None:
            per_step_guess *= 4  # the next size has 4× the pixels

    # ------------------------------------------------------------------ 3. extras, while time lasts
    if (device.type == "cuda" or quick) and left() > 30:  # quick: try the code path anywhere
        size = sizes[1]
        pair = prepare_pair(size, workdir)
        report.section(f"Variants at {size} px ({steps_at[size]} steps)", ["variant", "ms/step", "peak alloc MB"])
        variants = [
            ("float32, contiguous forced", dict(precision="float32"), {"channels_last": False}, {}),
            ("bf16, contiguous forced", dict(precision="bf16"), {"channels_last": False}, {}),
            ("float32, cudnn.benchmark", dict(precision="float32"), {}, {"benchmark": True}),
            ("bf16, cudnn.benchmark", dict(precision="bf16"), {}, {"benchmark": True}),
            ("float32, TF32 off", dict(precision="float32"), {}, {"tf32": False}),
        ]
        for label, cfg, backbone_attrs, flags in variants:
            if left() < 20:
                report.row([label, "skipped: out of time", "–"])
                continue
            old_bench, old_tf32 = torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32
            try:
                torch.backends.cudnn.benchmark = flags.get("benchmark", old_bench)
                torch.backends.cudnn.allow_tf32 = flags.get("tf32", old_tf32)
                if backbone_attrs:
                    from nst_core.builtins import vgg

                    original = vgg.VGGFeatures.__init__.__kwdefaults__["channels_last"]
                    vgg.VGGFeatures.__init__.__kwdefaults__["channels_last"] = backbone_attrs["channels_last"]
                try:
                    run_ours(pair, 3, str(device), **cfg)  # cudnn autotune / warm-up
                    run = run_ours(pair, steps_at[size], str(device), turn=Turn(budget_s=min(30, left() / 3)), **cfg)
                finally:
                    if backbone_attrs:
                        vgg.VGGFeatures.__init__.__kwdefaults__["channels_last"] = original
                report.row([label, f3(run.seconds_per_step * 1000), f3(run.peak_mb)],
                           {"variant": label, "ms_per_step": run.seconds_per_step * 1000, "peak_mb": run.peak_mb})
            except Exception as exc:
                report.row([label, f"{type(exc).__name__}: {str(exc)[:100]}", "–"])
            finally:
                torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32 = old_bench, old_tf32
                free(device)

    c2f_size = 256 if quick else 1024
    if left() > (20 if quick else 60):
        pair = prepare_pair(c2f_size, workdir)
        judge = Evaluator(pair.content, pair.style, device=device)
        single_steps, per_scale = (30, 10) if quick else (300, 100)
        min_scale = 64 if quick else 256
        report.section(f"Coarse-to-fine vs single scale at {c2f_size} px (float32)",
                       ["run", "scales", "steps", "s", "J"])
        for label, cfg in ((f"single scale, {single_steps} steps", dict(scales=1, steps=single_steps)),
                           (f"coarse-to-fine ×2 from {min_scale}, {per_scale} steps per scale",
                            dict(scales=None, steps=per_scale, min_scale_size=min_scale))):
            if left() < 15:
                report.row([label, "–", "–", "–", "skipped: out of time"])
                continue
            try:
                run = run_ours(pair, cfg["steps"], str(device), turn=Turn(budget_s=left() / 2 - 5),
                               precision="float32", **{k: v for k, v in cfg.items() if k != "steps"})
                report.row([label, len(run.extra["sizes"]), run.steps, f3(run.total), f3(judge(run.image).total)],
                           {"run": label, "seconds": run.total, "J": judge(run.image).total})
            except Exception as exc:
                report.row([label, "–", "–", "–", f"{type(exc).__name__}: {str(exc)[:100]}"])
            finally:
                free(device)

    big = 384 if quick else 4096
    if "bf16" in precisions and left() > (10 if quick else 40):
        report.section(f"{big} px, bf16 (memory)", ["size", "steps", "s/step", mem_label, "status"])
        try:
            pair = prepare_pair(big, workdir)
            run = run_ours(pair, 5, str(device), turn=Turn(budget_s=left() - 10), precision="bf16")
            w, h = run.size
            report.row([f"{w}×{h}", run.steps, f3(run.seconds_per_step), f3(run.peak_mb), run.extra["status"]],
                       {"size": big, "s_per_step": run.seconds_per_step, "peak_mb": run.peak_mb})
        except torch.cuda.OutOfMemoryError as exc:
            report.row([big, "–", "–", "–", f"out of memory: {str(exc)[:80]}"])
        except Exception as exc:
            report.row([big, "–", "–", "–", f"{type(exc).__name__}: {str(exc)[:100]}"])
        free(device)

    report.note(f"gpu_check finished in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
