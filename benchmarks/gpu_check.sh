#!/usr/bin/env bash
# The diffusion methods on a GPU, in one go: full-size RANDOM weights in the publishers'
# formats (benchmarks/make_full.py), then the default and realtime presets on 720p frames
# of Megamind.avi with 2 tracked faces, fp16, quality mode (every frame rendered: fps is
# throughput). Prints one table: fps, ms per stage, U-Net branches and evaluations per face
# and frame (and per-frame Base's), peak GPU memory, regions that got the fallback, and
# out-of-memory retries/offload. The first frame (the birth keyframes: Base) is a warm-up
# counted in the peak memory but not in the fps; with FRAMES up to 48 the timed frames are
# Light's (a keyframe every 48 frames: FRAMES=49 times one, at the cost of twice the run).
#
#   bash benchmarks/gpu_check.sh [MODELS_DIR] [FRAMES]
#
# MODELS_DIR (default /tmp/camstream-full) is built once (~15 GB on disk, a few minutes)
# and reused. Needs the repository's Python environment (PYTHON, default python) with the
# diffusion extra, a CUDA GPU, and shared/data/Megamind.avi next to the repository.
# The weights are random: the faces are noise; only time and memory mean something.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
MODELS=${1:-/tmp/camstream-full}
FRAMES=${2:-25}
export HF_HUB_OFFLINE=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

"$PYTHON" - <<'PY'
import sys, torch
if not torch.cuda.is_available():
    sys.exit("gpu_check: no CUDA device (this script times the GPU path; the CPU tests cover the rest)")
print(f"gpu_check: {torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)
PY
[ -f "$MODELS/README.txt" ] && grep -q make_full "$MODELS/README.txt" || "$PYTHON" benchmarks/make_full.py "$MODELS"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
# frames: 1 warm-up (the birth keyframes) + FRAMES-1 timed; 2 faces, each its own track
"$PYTHON" benchmarks/bench_camouflage.py --models-dir "$MODELS" --presets default,realtime --faces 2 \
    --frames "$FRAMES" --device cuda --dtype float16 --threads 4
