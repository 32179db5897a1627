#!/usr/bin/env bash
# Set up (once) the project's virtual environment in ./.venv and install hat_mm into it.
#
#   bash tools/setup_env.sh          # idempotent: returns at once when everything is in place
#
# mmcv 2.1.0 has no wheel for current torch, so it is built from source with ops (about 9 min
# on 2 cores) and the wheel is kept in $HAT_MM_CACHE/wheels/torch-<version>/ so later set-ups,
# on this or on a fresh clone, install it at once. Environment variables:
#   HAT_MM_VENV   where the environment lives (default: <repo>/.venv)
#   HAT_MM_CACHE  where built wheels are kept   (default: ~/.cache/hat-mm)
#   PYTHON        interpreter to create the environment with (default: python3)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${HAT_MM_VENV:-$ROOT/.venv}"
CACHE="${HAT_MM_CACHE:-$HOME/.cache/hat-mm}"
PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.hat_mm_setup_done"
REQ_HASH="$(cat "$ROOT/requirements.txt" "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)"

log() { echo "[setup_env] $*" >&2; }

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$REQ_HASH" ]]; then
  exit 0
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating virtual environment in $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --disable-pip-version-check --progress-bar off)

"${PIP[@]}" -q --upgrade pip "setuptools<81" wheel packaging ninja

# 1. torch + torchvision exactly as pinned.
TORCH_PIN="$(grep -E '^torch==' "$ROOT/requirements.txt")"
TV_PIN="$(grep -E '^torchvision==' "$ROOT/requirements.txt")"
NUMPY_PIN="$(grep -E '^numpy==' "$ROOT/requirements.txt")"
log "installing $TORCH_PIN $TV_PIN $NUMPY_PIN"
"${PIP[@]}" -q "$TORCH_PIN" "$TV_PIN" "$NUMPY_PIN"
TORCH_VER="$("$PY" -c 'import torch; print(torch.__version__)')"

# 2. mmcv 2.1.0 with ops, built against this torch, wheel cached by torch version.
MMCV_PIN="$(grep -E '^mmcv==' "$ROOT/requirements.txt")"
WHEELS="$CACHE/wheels/torch-$TORCH_VER"
mkdir -p "$WHEELS"
if ! "$PY" -c 'import mmcv, mmcv.ops' >/dev/null 2>&1; then
  if ! ls "$WHEELS"/mmcv-*.whl >/dev/null 2>&1; then
    log "building $MMCV_PIN with ops against torch $TORCH_VER (about 9 minutes on 2 cores) ..."
    "${PIP[@]}" -q addict yapf mmengine==0.10.7
    TMPW="$(mktemp -d)"
    MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" FORCE_CUDA=0 \
      "$PY" -m pip wheel --disable-pip-version-check --no-cache-dir --no-build-isolation --no-deps \
      "$MMCV_PIN" -w "$TMPW"
    mv "$TMPW"/mmcv-*.whl "$WHEELS"/
    rm -rf "$TMPW"
  else
    log "reusing cached mmcv wheel from $WHEELS"
  fi
  "${PIP[@]}" -q --no-deps "$WHEELS"/mmcv-*.whl
fi

# 3. Everything else, then the project itself (editable).
log "installing the rest of requirements.txt and hat_mm (editable)"
"${PIP[@]}" -q -r "$ROOT/requirements.txt" --find-links "$WHEELS"
"${PIP[@]}" -q --no-deps -e "$ROOT"
"$PY" -c 'import hat_mm, mmcv.ops, mmpretrain, mmdet, mmseg; print("[setup_env] ok: hat_mm", hat_mm.__version__)' >&2
echo "$REQ_HASH" > "$STAMP"
