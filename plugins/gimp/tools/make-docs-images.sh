#!/usr/bin/env bash
# Make the README's GIMP images (a one-off, not part of the tests):
#   docs/gimp-dialog.png        the plug-in's dialog, in a real GIMP 3 under Xvfb
#   docs/gimp-before-after.png  examples/tubingen.jpg, the style, and the plug-in's new layer
#
#   plugins/gimp/tools/make-docs-images.sh [WORK_DIR]
#
# Uses the test chroot (plugins/gimp/tests/gimp3-chroot.sh) with an overlay holding Xvfb, xdotool,
# xwd, netpbm and a font (installed from the Debian mirror once, into
# /var/tmp/nst-gimp3-docs-overlay), so the cached chroot itself is not changed. Needs root.
# NST_DOCS_SIZE / NST_DOCS_STEPS set the stylisation (default 256 px, 100 steps: the fast preset;
# the README's image used 320 px, 120 steps); NST_DOCS_DIALOG_ONLY=1 remakes only the screenshot;
# NST_DOCS_DIALOG_WAIT (default 30 s) is how long the dialog stays up before it, for its estimate;
# NST_DOCS_PRESET / NST_DOCS_STYLE_LOSS open the dialog with that preset / style loss chosen.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
PY=${NST_E2E_PYTHON:-$REPO/.venv/bin/python}
CHROOT_SH="$REPO/plugins/gimp/tests/gimp3-chroot.sh"
OUT=$(realpath -m "${1:-/tmp/nst-gimp-docs}")
export NST_GIMP_OVERLAY=${NST_GIMP_OVERLAY:-/var/tmp/nst-gimp3-docs-overlay}
mkdir -p "$OUT" "$REPO/docs"

ROOT=$(bash "$CHROOT_SH" ensure)
bash "$CHROOT_SH" exec -- /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive sh -c '
    command -v Xvfb >/dev/null && command -v xdotool >/dev/null && exit 0
    apt-get update -qq && apt-get install -y -qq --no-install-recommends \
        xvfb xauth xdotool x11-apps netpbm fonts-dejavu-core >/dev/null'

"$PY" - "$REPO/examples" "$OUT" <<'PYEOF'
import sys
from pathlib import Path
from PIL import Image
examples, out = Path(sys.argv[1]), Path(sys.argv[2])
photo = Image.open(examples / "tubingen.jpg").convert("RGB")
photo.thumbnail((640, 640), Image.LANCZOS)
photo.save(out / "photo.png")
Image.open(examples / "starry_night.jpg").save(out / "starry_night.jpg")
PYEOF

rm -rf "$OUT/gimp-config" "$OUT/tmp"
cp -a "$ROOT/opt/gimp-config-template" "$OUT/gimp-config"
echo '(show-welcome-dialog no)' >>"$OUT/gimp-config/gimprc"
mkdir -p "$OUT/tmp"
cp "$HERE/docs_batch.py" "$OUT/docs_batch.py"
cat >"$OUT/engine-python" <<WRAP
#!/bin/sh
exec /usr/sbin/chroot /proc/$$/root $PY "\$@"
WRAP
chmod 755 "$OUT/engine-python"
"$PY" -m nst_cli gimp install --dir "$OUT/gimp-config/plug-ins" --python "$OUT/engine-python"

# 1. The dialog: GUI GIMP on a virtual screen; screenshot once the dialog is up, then close it.
cat >"$OUT/dialog.sh" <<'SH'
set -u
Xvfb :99 -screen 0 1280x900x24 -nolisten tcp >/dev/null 2>&1 &
xvfb=$!
export DISPLAY=:99
sleep 1
NST_DOCS_MODE=dialog gimp-3.0 --no-splash --batch-interpreter=python-fu-eval \
    -b "exec(open('$NST_E2E_OUT/docs_batch.py').read())" --quit >"$NST_E2E_OUT/gimp-gui.log" 2>&1 &
gimp=$!
win=
for _ in $(seq 1 240); do
    win=$(xdotool search --name '^Neural Style Transfer$' 2>/dev/null | head -n1)
    [ -n "$win" ] && break
    sleep 0.5
done
if [ -n "$win" ]; then
    sleep "${NST_DOCS_DIALOG_WAIT:-30}"  # the dialog's estimate starts the engine in the background
    xdotool getwindowgeometry --shell "$win" >"$NST_E2E_OUT/dialog-geometry.txt"
    xwd -root -silent | xwdtopnm 2>/dev/null | pnmtopng >"$NST_E2E_OUT/screen.png"
    xdotool key --window "$win" Escape
fi
for _ in $(seq 1 20); do kill -0 $gimp 2>/dev/null || break; sleep 0.5; done
kill $gimp 2>/dev/null
kill $xvfb
[ -n "$win" ] || { echo "the dialog never appeared; see gimp-gui.log" >&2; exit 1; }
SH
bash "$CHROOT_SH" exec --bind "$OUT" -- /usr/bin/env -i HOME=/root PATH=/usr/bin:/bin LANG=C.UTF-8 \
    GIMP3_DIRECTORY="$OUT/gimp-config" TMPDIR="$OUT/tmp" NST_E2E_OUT="$OUT" \
    NST_DOCS_DIALOG_WAIT="${NST_DOCS_DIALOG_WAIT:-30}" NST_DOCS_PRESET="${NST_DOCS_PRESET:-}" \
    NST_DOCS_STYLE_LOSS="${NST_DOCS_STYLE_LOSS:-}" bash "$OUT/dialog.sh"

# 2. A real stylisation through the plug-in (gimp-console, non-interactive); NST_DOCS_DIALOG_ONLY=1
#    keeps the existing docs/gimp-before-after.png (the stylisation takes ~10 minutes on 2 CPU cores).
[ "${NST_DOCS_DIALOG_ONLY:-0}" = 1 ] || bash "$CHROOT_SH" exec --bind "$OUT" -- /usr/bin/env -i HOME=/root PATH=/usr/bin:/bin LANG=C.UTF-8 \
    GIMP3_DIRECTORY="$OUT/gimp-config" TMPDIR="$OUT/tmp" NST_E2E_OUT="$OUT" NST_DOCS_MODE=result \
    NST_DOCS_SIZE="${NST_DOCS_SIZE:-256}" NST_DOCS_STEPS="${NST_DOCS_STEPS:-100}" \
    gimp-console-3.0 -i -d -f --batch-interpreter=python-fu-eval \
    -b "exec(open('$OUT/docs_batch.py').read())" --quit >"$OUT/gimp-console.log" 2>&1

# 3. Compose the README images on the host.
[ "${NST_DOCS_DIALOG_ONLY:-0}" = 1 ] && only=dialog-only || only=
"$PY" - "$OUT" "$REPO/docs" $only <<'PYEOF'
import sys
from pathlib import Path
from PIL import Image, ImageDraw
out, docs = Path(sys.argv[1]), Path(sys.argv[2])
geometry = dict(line.split("=") for line in (out / "dialog-geometry.txt").read_text().split())
x, y, w, h = (int(geometry[k]) for k in ("X", "Y", "WIDTH", "HEIGHT"))
Image.open(out / "screen.png").crop((x, y, x + w, y + h)).save(docs / "gimp-dialog.png", optimize=True)
if not (out / "result.png").exists() or len(sys.argv) > 3:
    sys.exit(print(f"wrote {docs / 'gimp-dialog.png'} ({w}x{h})"))
photo = Image.open(out / "photo.png").convert("RGB")
result = Image.open(out / "result.png").convert("RGB")
style = Image.open(out / "starry_night.jpg").convert("RGB")
style.thumbnail((photo.width // 3, photo.height // 3), Image.LANCZOS)
gap = 8
canvas = Image.new("RGB", (photo.width * 2 + gap, photo.height), "white")
canvas.paste(photo, (0, 0))
canvas.paste(result, (photo.width + gap, 0))
draw = ImageDraw.Draw(canvas)
draw.rectangle((photo.width - style.width - 12, photo.height - style.height - 12, photo.width - 6,
                photo.height - 6), fill="white")
canvas.paste(style, (photo.width - style.width - 9, photo.height - style.height - 9))
# 256 colours with dithering: a third of the bytes, no visible loss at this size
canvas.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG).save(
    docs / "gimp-before-after.png", optimize=True)
print(f"wrote {docs / 'gimp-dialog.png'} ({w}x{h}) and {docs / 'gimp-before-after.png'} {canvas.size}")
PYEOF
