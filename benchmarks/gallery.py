"""Make the README gallery: runs `nst run` for each entry and composes labelled sheets.

Each image is made by the command line printed next to it (also written to gallery.md), so the
README shows exactly how to get it. On a GPU the whole gallery takes a few minutes; on a CPU an
hour or more.

    python benchmarks/gallery.py --out docs/gallery --device cuda [--steps 300] [--size 512] [--only styles,losses]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
import os
from pathlib import Path
import shlex
import sys
import time

from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
EX = "examples"


@dataclass(frozen=True)
class Entry:
    name: str
    label: str
    args: tuple[str, ...]


SHEETS: dict[str, list[Entry]] = {
    "styles": [
        Entry("starry", "The Starry Night", (f"{EX}/tubingen.jpg", f"{EX}/starry_night.jpg")),
        Entry("scream", "The Scream", (f"{EX}/tubingen.jpg", f"{EX}/the_scream.jpg")),
        Entry("shipwreck", "The Shipwreck", (f"{EX}/tubingen.jpg", f"{EX}/shipwreck.jpg")),
        Entry("hoover", "Hoover Tower x Starry Night", (f"{EX}/hoovertowernight.jpg", f"{EX}/starry_night.jpg")),
    ],
    "controls": [
        Entry("colors-luminance", "--preserve-color luminance",
              (f"{EX}/tubingen.jpg", f"{EX}/starry_night.jpg", "--preserve-color", "luminance")),
        Entry("colors-histogram", "--preserve-color histogram",
              (f"{EX}/tubingen.jpg", f"{EX}/starry_night.jpg", "--preserve-color", "histogram")),
        Entry("mask", "--mask (sky only)",
              (f"{EX}/tubingen.jpg", f"{EX}/starry_night.jpg", "--mask", f"{EX}/tubingen_sky_mask.png")),
        Entry("blend", "two styles, --style-blend 0.5,0.5",
              (f"{EX}/tubingen.jpg", f"{EX}/starry_night.jpg", f"{EX}/the_scream.jpg", "--style-blend", "0.5,0.5")),
        Entry("style-scale-0.5", "--style-scale 0.5", (f"{EX}/tubingen.jpg", f"{EX}/starry_night.jpg", "--style-scale", "0.5")),
        Entry("style-scale-2", "--style-scale 2", (f"{EX}/tubingen.jpg", f"{EX}/starry_night.jpg", "--style-scale", "2")),
        Entry("strength-0.25", "--strength 0.25", (f"{EX}/tubingen.jpg", f"{EX}/starry_night.jpg", "--strength", "0.25")),
        Entry("strength-0.75", "--strength 0.75", (f"{EX}/tubingen.jpg", f"{EX}/starry_night.jpg", "--strength", "0.75")),
    ],
    "losses": [
        Entry("loss-gram", "gram (Gatys 2015)", (f"{EX}/tubingen.jpg", f"{EX}/starry_night.jpg", "--style-loss", "gram")),
        Entry("loss-mean-std", "mean-std (AdaIN stats)", (f"{EX}/tubingen.jpg", f"{EX}/starry_night.jpg", "--style-loss", "mean-std")),
        Entry("loss-wasserstein", "wasserstein", (f"{EX}/tubingen.jpg", f"{EX}/starry_night.jpg", "--style-loss", "wasserstein")),
        Entry("loss-histogram", "histogram (Risser 2017)", (f"{EX}/tubingen.jpg", f"{EX}/starry_night.jpg", "--style-loss", "histogram")),
        Entry("loss-mrf", "mrf (Li & Wand 2016)", (f"{EX}/tubingen.jpg", f"{EX}/starry_night.jpg", "--style-loss", "mrf")),
    ],
    "presets": [
        Entry(f"preset-{name}", f"--preset {name}",
              (f"{EX}/tubingen.jpg", f"{EX}/starry_night.jpg", "--preset", name, "--size", "256"))
        for name in ("gatys-2015", "soft", "bold", "keep-colors", "painterly")
    ],
    "sizes": [
        Entry("size-128", "--size 128", (f"{EX}/tubingen.jpg", f"{EX}/starry_night.jpg", "--size", "128")),
        Entry("size-512", "--size 512", (f"{EX}/tubingen.jpg", f"{EX}/starry_night.jpg", "--size", "512")),
        Entry("size-1024", "--size 1024", (f"{EX}/tubingen.jpg", f"{EX}/starry_night.jpg", "--size", "1024")),
    ],
}

THUMB_HEIGHT = 256


def arguments(entry: Entry, out: Path, device: str, steps: int, size: int = 0) -> list[str]:
    """The `nst` arguments of an entry (run in this process: torch is imported once)."""
    args = ["run", *entry.args, "-o", str(out), "--seed", "1", "--device", device, "--progress", "none"]
    if steps:
        args += ["--steps", str(steps)]
    if size and "--size" not in entry.args:
        args += ["--size", str(size)]
    return args


def shown(entry: Entry, steps: int, size: int = 0) -> str:
    extra = f" --steps {steps}" if steps else ""
    extra += f" --size {size}" if size and "--size" not in entry.args else ""
    return "nst run " + " ".join(shlex.quote(a) for a in entry.args) + f" -o {entry.name}.jpg --seed 1{extra}"


def thumbnail(path: Path, label: str) -> Image.Image:
    im = Image.open(path).convert("RGB")
    im = im.resize((round(im.width * THUMB_HEIGHT / im.height), THUMB_HEIGHT), Image.LANCZOS)
    canvas = Image.new("RGB", (im.width, THUMB_HEIGHT + 22), "white")
    canvas.paste(im, (0, 22))
    ImageDraw.Draw(canvas).text((4, 4), label, fill="black", font=ImageFont.load_default())
    return canvas


def compose(tiles: list[Image.Image], columns: int) -> Image.Image:
    rows = [tiles[i:i + columns] for i in range(0, len(tiles), columns)]
    width = max(sum(t.width for t in row) + 6 * (len(row) - 1) for row in rows)
    height = sum(max(t.height for t in row) for row in rows) + 6 * (len(rows) - 1)
    sheet = Image.new("RGB", (width, height), "white")
    y = 0
    for row in rows:
        x = 0
        for tile in row:
            sheet.paste(tile, (x, y))
            x += tile.width + 6
        y += max(t.height for t in row) + 6
    return sheet


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "gallery")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=0, help="steps per scale (0: the default, 500)")
    parser.add_argument("--size", type=int, default=0, help="output size of the entries that set none (0: 512)")
    parser.add_argument("--only", default="", help="comma-separated sheet names, in the order to make them")
    parser.add_argument("--keep", type=Path, default=None, help="also keep each result here (full size)")
    options = parser.parse_args()
    options.out.mkdir(parents=True, exist_ok=True)
    work = options.keep or options.out / "_work"
    work.mkdir(parents=True, exist_ok=True)
    sys.path[:0] = [str(ROOT), str(ROOT / "plugins" / "cli")]
    os.chdir(ROOT)
    from typer.testing import CliRunner

    from nst_cli.app import app

    runner = CliRunner()
    wanted = [s for s in options.only.split(",") if s] or list(SHEETS)
    lines = ["| sheet | image | command | seconds |", "| --- | --- | --- | --- |"]
    for sheet_name in wanted:
        tiles = []
        if sheet_name in ("styles", "controls", "losses", "presets"):
            tiles.append(thumbnail(ROOT / EX / "tubingen.jpg", "content: tubingen.jpg"))
        for entry in SHEETS[sheet_name]:
            out = work / f"{entry.name}.png"
            started = time.perf_counter()
            done = runner.invoke(app, arguments(entry, out, options.device, options.steps, options.size))
            seconds = time.perf_counter() - started
            if done.exit_code != 0:
                print(f"{entry.name}: failed ({done.exit_code}): {done.output.strip()[-500:]}", flush=True)
                continue
            print(f"{entry.name}: {seconds:.1f} s", flush=True)
            lines.append(f"| {sheet_name} | {entry.label} | `{shown(entry, options.steps, options.size)}` | "
                         f"{seconds:.0f} |")
            tiles.append(thumbnail(out, entry.label))
        if tiles:
            compose(tiles, columns=3).save(options.out / f"{sheet_name}.jpg", quality=88)
        (options.out / "gallery.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
