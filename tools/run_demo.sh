#!/usr/bin/env bash
# The main job on the embedded demo data, on CPU: sets up .venv if needed (first time about
# 12 minutes: mmcv builds from source), writes scikit-learn's digits in ImageNet layout,
# pretrains a small ViT with HAT through tools/train.py, then evaluates it with tools/test.py.
#   bash tools/run_demo.sh [extra tools/train.py options]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash tools/setup_env.sh
PY="${HAT_MM_VENV:-$ROOT/.venv}/bin/python"
CONFIG=configs/demo/hat_vit_digits.py
DATA=data/digits
WORK="${WORK_DIR:-work_dirs/hat_vit_digits}"

if [[ ! -f "$DATA/meta/val.txt" ]]; then
  "$PY" tools/dataset_converters/make_digits_imagenet.py "$DATA"
fi
"$PY" tools/train.py "$CONFIG" --work-dir "$WORK" "$@"
CKPT="$(cat "$WORK/last_checkpoint")"
"$PY" tools/test.py "$CONFIG" "$CKPT" --work-dir "$WORK/test" --out "$WORK/test_metrics.json"
"$PY" - "$WORK/test_metrics.json" <<'PYEOF'
import json, sys
m = json.load(open(sys.argv[1]))
print(f"HAT demo (ViT on digits): top-1 {m['accuracy/top1']:.2f}%  top-5 {m['accuracy/top5']:.2f}%")
PYEOF
