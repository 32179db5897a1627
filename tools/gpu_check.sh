#!/usr/bin/env bash
# One command after set-up on a GPU machine: HAT pretraining (fp32, fp16, bf16, resume,
# distributed), the detection ops on CUDA, Cascade Mask R-CNN and UperNet from the pretrained
# checkpoint, each with its time per iteration and peak GPU memory, ending in a pass/fail table
# (work_dirs/gpu_check/gpu_check.md and .json). Without a GPU it runs a reduced CPU mode.
#   bash tools/gpu_check.sh [--work-dir DIR] [--rows PATTERN ...] [--row-timeout SECONDS]
#                           [--keep-checkpoints]
# Details: tools/analysis/gpu_check.py.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${HAT_MM_VENV:-$ROOT/.venv}"
PY="${PYTHON:-$( [[ -x "$VENV/bin/python" ]] && echo "$VENV/bin/python" || echo python)}"
cd "$ROOT"
PYTHONPATH="$ROOT:${PYTHONPATH:-}" exec "$PY" tools/analysis/gpu_check.py "$@"
