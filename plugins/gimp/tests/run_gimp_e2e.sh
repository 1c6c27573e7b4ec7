#!/usr/bin/env bash
# End-to-end test of the GIMP plug-in in a real GIMP 3, with the project's real engine.
#
#   plugins/gimp/tests/run_gimp_e2e.sh OUT_DIR
#
# 1. builds or reuses the Debian 13 chroot with GIMP 3.0 (gimp3-chroot.sh; ~1.5 min cold, cached);
# 2. writes test images into OUT_DIR (examples/tubingen.jpg scaled to 96x72 with an alpha channel,
#    examples/starry_night.jpg scaled down, a text file named .jpg);
# 3. installs the plug-in with `nst gimp install --dir OUT_DIR/gimp-config/plug-ins --python ENGINE`
#    into a copy of a pre-warmed GIMP config folder;
# 4. runs gimp-console-3.0 in batch mode in the chroot (gimp_batch.py calls the plug-in through the
#    PDB), while cancel_watcher.py kills the plug-in of the "cancel" case from outside; then again
#    as if in Flatpak, and once more under Xvfb for the dialog's preset and style-loss lists (Xvfb is
#    installed from the Debian mirror into an overlay, $NST_GIMP_UI_OVERLAY, default
#    /var/tmp/nst-gimp3-ui-overlay, the first time; the cached chroot itself is not changed).
#
# The engine is the project's venv on the host: GIMP's Python in the chroot (3.13, no torch) runs
# ENGINE = OUT_DIR/engine-python, a two-line script that chroots back out through /proc/$$/root
# (this script's own root, i.e. the host's) into $NST_E2E_PYTHON (default: .venv/bin/python).
# OUT_DIR is bound at its own path inside the chroot, so every path means the same on both sides.
# Results: OUT_DIR/results.json, OUT_DIR/cancel.json, raw pixel dumps, OUT_DIR/gimp.log; the checks
# are in tests/test_gimp_e2e.py (pytest -m gimp). Needs root; see gimp3-chroot.sh check.
# Exit status: 0 ran (the checks decide), 77 cannot run on this machine (the reason is printed), else failed.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
PY=${NST_E2E_PYTHON:-$REPO/.venv/bin/python}
[ $# -eq 1 ] || { echo "usage: $0 OUT_DIR" >&2; exit 2; }
mkdir -p "$1"
OUT=$(realpath "$1")
CHROOT_SH="$HERE/gimp3-chroot.sh"
t0=$SECONDS

reason=$(bash "$CHROOT_SH" check) || { echo "SKIP: $reason"; exit 77; }
ROOT=$(bash "$CHROOT_SH" ensure) || {
    rc=$?; [ $rc -eq 77 ] && echo "SKIP: the GIMP 3 chroot cannot be built here (see the log above)"; exit $rc; }
t_chroot=$((SECONDS - t0))

# Test inputs, made with the venv's Pillow.
"$PY" - "$REPO/examples" "$OUT" <<'EOF'
import sys
from pathlib import Path
from PIL import Image
examples, out = Path(sys.argv[1]), Path(sys.argv[2])
content = Image.open(examples / "tubingen.jpg").convert("RGB").resize((96, 72), Image.LANCZOS)
# alpha: a left-to-right ramp 255 -> 64, and a fully transparent 12x12 corner
alpha = Image.linear_gradient("L").rotate(90).resize((96, 72)).point(lambda v: 64 + (v * 191) // 255)
alpha.paste(0, (84, 60, 96, 72))
content.putalpha(alpha)
content.save(out / "content.png")
style = Image.open(examples / "starry_night.jpg").convert("RGB")
style.thumbnail((128, 128), Image.LANCZOS)
style.save(out / "style.png")
style.save(out / "cancel-style.png")
(out / "not-an-image.jpg").write_text("this is not a picture\n")
EOF

# The GIMP config folder: a copy of the template warmed when the chroot was built.
rm -rf "$OUT/gimp-config" "$OUT/tmp" "$OUT/results.json" "$OUT/cancel.json" "$OUT/results-flatpak.json" \
    "$OUT/results-dialog.json" \
    "$OUT/engine-argv.log" "$OUT/flatpak-spawn.log" "$OUT/flatpak-bin" "$OUT/flatpak-cache"
cp -a "$ROOT/opt/gimp-config-template" "$OUT/gimp-config"
mkdir -p "$OUT/tmp"
cp "$HERE/gimp_batch.py" "$OUT/gimp_batch.py"

# The engine as the plug-in sees it from inside the chroot.
cat >"$OUT/engine-python" <<EOF
#!/bin/sh
# Written by run_gimp_e2e.sh: leave the GIMP chroot through the test runner's root, run the venv.
# Each command line is logged (one argument per line, then a blank line) for the checks.
printf '%s\n' "\$@" "" >>"$OUT/engine-argv.log"
exec /usr/sbin/chroot /proc/$$/root $PY "\$@"
EOF
chmod 755 "$OUT/engine-python"

# A stand-in for flatpak-spawn (the Flatpak case: GIMP runs with FLATPAK_ID set and this first on
# PATH). Like the real one it wants --host and honours --watch-bus, --directory= and --env=; it
# logs its arguments and runs the command, which here is the engine wrapper above.
mkdir -p "$OUT/flatpak-bin" "$OUT/flatpak-cache"
cat >"$OUT/flatpak-bin/flatpak-spawn" <<EOF
#!/bin/sh
printf '%s\n' "\$@" "" >>"$OUT/flatpak-spawn.log"
[ "\$1" = --host ] || { echo "flatpak-spawn stand-in: only --host is supported" >&2; exit 97; }
shift
while [ \$# -gt 0 ]; do
    case "\$1" in
        --watch-bus) shift ;;
        --directory=*) cd "\${1#--directory=}" || exit 96; shift ;;
        --env=*) export "\${1#--env=}"; shift ;;
        --*) echo "flatpak-spawn stand-in: unknown option \$1" >&2; exit 98 ;;
        *) break ;;
    esac
done
exec "\$@"
EOF
chmod 755 "$OUT/flatpak-bin/flatpak-spawn"

# The dialog's time estimate needs a calibration of the device; the measured one is unit-tested
# (tests/test_gimp_fullsize.py), here a fixed one keeps the run short.
"$PY" - "$OUT/calibration.json" <<'PYEOF'
import json, sys, torch
from nst_cli import estimate
from nst_core.precision import resolve_precision
precision = resolve_precision("auto", torch.device("cpu"))
fixed = {"device": "cpu", "precision": precision, "a": 0.05, "b": 2e-6, "start": 3.0, "sizes": [256, 512],
         "measured": [0.18, 0.57]}
json.dump({estimate.cache_key(torch.device("cpu"), precision): fixed}, open(sys.argv[1], "w"))
PYEOF

# Install exactly as a user would (the recorded interpreter is the wrapper above).
"$PY" -m nst_cli gimp install --dir "$OUT/gimp-config/plug-ins" --python "$OUT/engine-python"

"$PY" "$HERE/cancel_watcher.py" "$OUT" "$OUT/cancel-style.png" 240 &
watcher=$!

t1=$SECONDS
set +e
bash "$CHROOT_SH" exec --bind "$OUT" -- /usr/bin/env -i HOME=/root PATH=/usr/bin:/bin LANG=C.UTF-8 \
    GIMP3_DIRECTORY="$OUT/gimp-config" TMPDIR="$OUT/tmp" NST_E2E_OUT="$OUT" \
    NST_CALIBRATION_FILE="$OUT/calibration.json" \
    timeout 400 gimp-console-3.0 -i -d -f --batch-interpreter=python-fu-eval \
    -b "exec(open('$OUT/gimp_batch.py').read())" --quit >"$OUT/gimp.log" 2>&1
rc=$?
if [ $rc -eq 0 ]; then  # the Flatpak case: a second GIMP that believes it is sandboxed
    bash "$CHROOT_SH" exec --bind "$OUT" -- /usr/bin/env -i HOME=/root PATH="$OUT/flatpak-bin:/usr/bin:/bin" \
        LANG=C.UTF-8 GIMP3_DIRECTORY="$OUT/gimp-config" TMPDIR="$OUT/tmp" NST_E2E_OUT="$OUT" \
        NST_E2E_MODE=flatpak FLATPAK_ID=org.gimp.GIMP XDG_CACHE_HOME="$OUT/flatpak-cache" \
        timeout 300 gimp-console-3.0 -i -d -f --batch-interpreter=python-fu-eval \
        -b "exec(open('$OUT/gimp_batch.py').read())" --quit >"$OUT/gimp-flatpak.log" 2>&1
    rc=$?
    [ $rc -eq 0 ] || { echo "the Flatpak GIMP run failed:"; tail -n 40 "$OUT/gimp-flatpak.log"; }
fi
if [ $rc -eq 0 ]; then  # the dialog's lists: a third GIMP with an X server (Xvfb, see dialog_case)
    UI_OVERLAY=${NST_GIMP_UI_OVERLAY:-/var/tmp/nst-gimp3-ui-overlay}
    if NST_GIMP_OVERLAY=$UI_OVERLAY bash "$CHROOT_SH" exec -- /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        DEBIAN_FRONTEND=noninteractive sh -c 'command -v Xvfb >/dev/null && exit 0
            apt-get update -qq && apt-get install -y -qq --no-install-recommends xvfb || exit 1
            apt-get clean; rm -rf /var/lib/apt/lists/*' >"$OUT/xvfb-install.log" 2>&1
    then
        NST_GIMP_OVERLAY=$UI_OVERLAY bash "$CHROOT_SH" exec --bind "$OUT" -- /usr/bin/env -i HOME=/root \
            PATH=/usr/bin:/bin LANG=C.UTF-8 GIMP3_DIRECTORY="$OUT/gimp-config" TMPDIR="$OUT/tmp" NST_E2E_OUT="$OUT" \
            NST_E2E_MODE=dialog sh -c 'Xvfb :97 -screen 0 800x600x24 -nolisten tcp >/dev/null 2>&1 & x=$!
                sleep 1; DISPLAY=:97 timeout 300 gimp-console-3.0 -i -d -f --batch-interpreter=python-fu-eval \
                    -b "exec(open(\"$NST_E2E_OUT/gimp_batch.py\").read())" --quit; r=$?; kill $x; exit $r' \
            >"$OUT/gimp-dialog.log" 2>&1
        rc=$?
        [ $rc -eq 0 ] || { echo "the dialog GIMP run failed:"; tail -n 40 "$OUT/gimp-dialog.log"; }
    else
        printf '{"skipped": "Xvfb could not be installed into %s; see xvfb-install.log"}\n' "$UI_OVERLAY" \
            >"$OUT/results-dialog.json"
    fi
fi
set -e
t_gimp=$((SECONDS - t1))
if kill -0 "$watcher" 2>/dev/null; then kill "$watcher" 2>/dev/null || true; fi
wait "$watcher" 2>/dev/null || true
echo "gimp-console rc=$rc; chroot ${t_chroot}s, gimp ${t_gimp}s, total $((SECONDS - t0))s"
[ $rc -eq 0 ] || tail -n 40 "$OUT/gimp.log"
exit $rc
