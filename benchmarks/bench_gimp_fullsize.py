"""The GIMP filter's default run against the old one, judged at the layer's full size.

A large photo (examples/tubingen.jpg upscaled to ``--photo-size`` px, Lanczos) with a selection of
``--selection`` px at its centre. The engine is started with exactly the argument lists the
plug-in builds (nst_gimp_bridge.build_argv) on the region the plug-in sends (the selection's box
plus margin), with the plug-in's fade mask:

* ``before``: the filter before full-size output: ``--preset fast`` (256 px, 100 steps), the
  result scaled up to the region with bicubic interpolation (as GIMP's cubic scale does);
* ``full``: the filter's default quality now ("Full size": coarse to fine up to the region's own
  size, 100 steps at the coarsest scale, half as many at each larger one, --fit-memory).

Each result is judged by benchmarks/evaluator.py (the Gatys objective, plain VGG19, float32) over
the selection's box at full resolution, the style image scaled to the region's longest side
(style scale 1, as the engine does), against the untouched photo's score. A 100 % zoom crop of
photo / before / full goes to ``--crop-out``.

    python benchmarks/bench_gimp_fullsize.py --photo-size 3000 --selection 640 \
        --crop-out docs/gallery/gimp-fullsize-crop.jpg --out benchmarks/results/gimp_fullsize.md
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
from pathlib import Path
import subprocess
import sys
import tempfile
import time

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from PIL import Image, ImageDraw  # noqa: E402
import torch  # noqa: E402

from nst_core.image import read_image, resize  # noqa: E402

from benchmarks.evaluator import Evaluator  # noqa: E402


def load_bridge():
    path = ROOT / "plugins" / "gimp" / "nst-style-transfer" / "nst_gimp_bridge.py"
    spec = importlib.util.spec_from_file_location("nst_gimp_bridge", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def run(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"engine failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photo-size", type=int, default=3000)
    parser.add_argument("--selection", type=int, default=640, help="width of the selection (4:3), px")
    parser.add_argument("--style", default=str(ROOT / "examples" / "starry_night.jpg"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--crop", type=int, default=320, help="side of the 100 %% zoom crop, px")
    parser.add_argument("--crop-out", default=None)
    parser.add_argument("--steps", type=int, default=0,
                        help="steps at the coarsest scale for both runs (0: the filter's and the preset's)")
    parser.add_argument("--out", default=None, help="append the markdown table to this file")
    args = parser.parse_args()

    bridge = load_bridge()
    work = Path(tempfile.mkdtemp(prefix="bench-gimp-fullsize-"))
    photo = Image.open(ROOT / "examples" / "tubingen.jpg").convert("RGB")
    width = args.photo_size
    height = round(width * photo.height / photo.width)
    photo = photo.resize((width, height), Image.LANCZOS)
    sel_w, sel_h = args.selection, args.selection * 3 // 4
    box = ((width - sel_w) // 2, (height - sel_h) // 2, sel_w, sel_h)
    region = bridge.work_region(width, height, box)
    x0, y0, rw, rh = region
    photo.crop((x0, y0, x0 + rw, y0 + rh)).save(work / "content.png")
    mask = bridge.fade_mask(region, box, (width, height))
    mask_path = None
    if mask is not None:
        mask_path = str(work / "mask.png")
        bridge.write_png(mask_path, mask[0], mask[1], mask[2], channels=1)
    env = dict(os.environ, PYTHONPATH=f"{ROOT}:{ROOT / 'plugins' / 'cli'}")
    common = dict(content=str(work / "content.png"), style=args.style, region_size=(rw, rh), seed=args.seed,
                  device=args.device, mask=mask_path, steps=args.steps)

    full = bridge.EngineRequest(output=str(work / "full.png"), **common)
    full_argv = bridge.build_argv(sys.executable, full)
    # before this work: the fast preset's 256 px and 100 steps, scaled up afterwards
    before_argv = [a for a in bridge.build_argv(sys.executable, bridge.EngineRequest(
        output=str(work / "before.png"), **common))]
    i = before_argv.index("--size")
    before_argv[i:i + 7] = ["--preset", "fast"] + (["--steps", str(args.steps)] if args.steps else [])
    times = {"before": run(before_argv, env), "full": run(full_argv, env)}
    record = json.loads((work / "full.png.json").read_text()) if (work / "full.png.json").exists() else {}

    content = read_image(str(work / "content.png")).rgb
    images = {"photo": content}
    for name in ("before", "full"):
        image = read_image(str(work / f"{name}.png")).rgb
        if tuple(image.shape[-2:]) != (rh, rw):
            image = torch.nn.functional.interpolate(image, size=(rh, rw), mode="bicubic",
                                                    align_corners=False).clamp(0, 1)
        images[name] = image
    sx, sy = box[0] - x0, box[1] - y0
    style = read_image(args.style).rgb
    scale = max(rw, rh) / max(style.shape[-2:])
    style = resize(style, round(style.shape[-2] * scale), round(style.shape[-1] * scale))
    judge = Evaluator(content[..., sy:sy + sel_h, sx:sx + sel_w], style, device="cpu")
    scores = {name: judge(image[..., sy:sy + sel_h, sx:sx + sel_w]) for name, image in images.items()}

    rows = [f"| {name} | {scores[name].style:.4g} | {scores[name].style / scores['photo'].style:.2f} | "
            f"{scores[name].content:.4g} | {times.get(name, 0):.0f} |" for name in ("photo", "before", "full")]
    sizes = record.get("sizes") or record.get("result", {}).get("sizes")
    text = "\n".join([
        f"### GIMP filter at full size: {width}×{height} photo, {sel_w}×{sel_h} selection "
        f"(region {rw}×{rh}), {time.strftime('%Y-%m-%d')}",
        "",
        f"`python benchmarks/bench_gimp_fullsize.py --photo-size {args.photo_size} --selection {args.selection} "
        f"--device {args.device}" + (f" --steps {args.steps}" if args.steps else "") + "` on {torch.get_num_threads()} CPU threads"
        + (f"; full-size working sizes {sizes}" if sizes else ""),
        "",
        "| result | style loss over the selection, full size | × the photo's | content loss | seconds |",
        "| --- | ---: | ---: | ---: | ---: |",
        *rows, ""])
    print(text)
    if args.out:
        with open(args.out, "a", encoding="utf-8") as f:
            f.write(text + "\n")
    if args.crop_out:
        c = args.crop
        cx, cy = sx + sel_w // 2 - c // 2, sy + sel_h // 2 - c // 2
        tiles = []
        for name in ("photo", "before", "full"):
            array = (images[name][0, :, cy:cy + c, cx:cx + c].permute(1, 2, 0).numpy() * 255).round().astype("uint8")
            tiles.append(Image.fromarray(array))
        gap, label = 6, 22
        sheet = Image.new("RGB", (3 * c + 2 * gap, c + label), "white")
        draw = ImageDraw.Draw(sheet)
        for k, (tile, name) in enumerate(zip(tiles, ("the photo", "before: 256 px, scaled up",
                                                     f"now: full size ({rw}x{rh})"))):
            sheet.paste(tile, (k * (c + gap), label))
            draw.text((k * (c + gap) + 4, 4), name, fill="black")
        sheet.save(args.crop_out, quality=92)
        print(f"wrote {args.crop_out}")


if __name__ == "__main__":
    main()
