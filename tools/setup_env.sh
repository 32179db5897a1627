#!/usr/bin/env bash
# Set up (once) the project's virtual environment in ./.venv and install hat_mm into it.
#
#   bash tools/setup_env.sh          # idempotent: returns at once when everything is in place
#
# mmcv 2.1.0 has no wheel for current torch, so it is built from source with ops (about 9 min
# on 2 cores) and the wheel is kept in $HAT_MM_CACHE/wheels/<variant>/, the variant naming the
# torch it was built against and its ops: torch-<version>-cpuops (the default: mmcv's CPU ops;
# the GPU is hidden from the build) or torch-<version>-cuda<X.Y>-sm<archs> (HAT_MM_MMCV_CUDA=1).
# Later set-ups, on this or on a fresh clone, install the cached wheel at once. At the end the
# detection ops are run on this machine's device (tools/analysis/check_detection_ops.py).
# Environment variables:
#   HAT_MM_VENV          where the environment lives (default: <repo>/.venv)
#   HAT_MM_CACHE         where built wheels are kept (default: ~/.cache/hat-mm)
#   PYTHON               interpreter to create the environment with (default: python3)
#   HAT_MM_MMCV_CUDA=1   build mmcv with CUDA ops (nvcc; for TORCH_CUDA_ARCH_LIST, default: the
#                        visible GPUs) from a CUDA toolkit of torch's CUDA version: the system's
#                        (CUDA_HOME, nvcc on PATH, /usr/local/cuda), else the package index's
#   HAT_MM_CUDA_TOOLKIT  with HAT_MM_MMCV_CUDA=1: auto (default), system, or pip (the index's)
#   HAT_MM_SYSTEM_TORCH=1  use the torch, torchvision and numpy of $PYTHON (a venv that sees
#                        its site-packages), and its OpenCV if it has one; checked, never replaced
#   HAT_MM_WHEELHOUSE=DIR  install with no package index, from DIR (tools/make_wheelhouse.sh)
#   MAX_JOBS             parallel compile jobs for the mmcv build (default: nproc)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${HAT_MM_VENV:-$ROOT/.venv}"
CACHE="${HAT_MM_CACHE:-$HOME/.cache/hat-mm}"
PYTHON="${PYTHON:-python3}"
MMCV_CUDA="${HAT_MM_MMCV_CUDA:-0}"
TOOLKIT="${HAT_MM_CUDA_TOOLKIT:-auto}"
SYSTEM_TORCH="${HAT_MM_SYSTEM_TORCH:-0}"
WHEELHOUSE="${HAT_MM_WHEELHOUSE:-}"
STAMP="$VENV/.hat_mm_setup_done"
MARKER="$VENV/.hat_mm_mmcv_variant"
VARIANT_PY="$ROOT/tools/mmcv_variant.py"

log() { echo "[setup_env] $*" >&2; }
die() { echo "[setup_env] ERROR: $*" >&2; exit 1; }

[[ "$MMCV_CUDA" =~ ^[01]$ ]] || die "HAT_MM_MMCV_CUDA=$MMCV_CUDA: use 1 (CUDA ops) or 0 (CPU ops)"
[[ "$SYSTEM_TORCH" =~ ^[01]$ ]] || die "HAT_MM_SYSTEM_TORCH=$SYSTEM_TORCH: use 1 or 0"
[[ "$TOOLKIT" =~ ^(auto|system|pip)$ ]] || die "HAT_MM_CUDA_TOOLKIT=$TOOLKIT: use auto, system or pip"
if [[ -n "$WHEELHOUSE" ]]; then
  [[ -d "$WHEELHOUSE" ]] || die "HAT_MM_WHEELHOUSE=$WHEELHOUSE is not a folder (make one with tools/make_wheelhouse.sh)"
  WHEELHOUSE="$(cd "$WHEELHOUSE" && pwd)"
fi

# What was asked for; with the torch found, it is the stamp: a change of either re-runs set-up.
REQ_HASH="$(cat "$ROOT/requirements.txt" "$ROOT/pyproject.toml" "$ROOT/tools/setup_env.sh" \
  "$VARIANT_PY" "$ROOT/tools/analysis/check_detection_ops.py" | sha256sum | cut -c1-16)"
ARCH_REQ="-"
[[ "$MMCV_CUDA" == 1 ]] && ARCH_REQ="${TORCH_CUDA_ARCH_LIST:-visible}"
REQUEST="files=$REQ_HASH mmcv_cuda=$MMCV_CUDA arch=${ARCH_REQ// /,} system_torch=$SYSTEM_TORCH"
torch_dist() {  # installed torch version, without importing torch
  "$VENV/bin/python" -c 'from importlib.metadata import version; print(version("torch"))' 2>/dev/null || true
}
if [[ -f "$STAMP" && -x "$VENV/bin/python" && "$(cat "$STAMP")" == "$REQUEST torch=$(torch_dist)" ]]; then
  exit 0
fi

# 0. The environment and the build tools.
command -v "$PYTHON" >/dev/null 2>&1 || die "PYTHON=$PYTHON is not an interpreter found here: set PYTHON to a Python 3 (e.g. PYTHON=python3.11), or leave it out for python3"
if [[ "$SYSTEM_TORCH" == 1 ]] && ! "$PYTHON" -c 'import torch, torchvision' >/dev/null 2>&1; then
  die "HAT_MM_SYSTEM_TORCH=1 but $PYTHON cannot import torch and torchvision: set PYTHON to the interpreter that has them (e.g. PYTHON=\$(which python) inside the container or after 'module load pytorch')"
fi
if [[ -x "$VENV/bin/python" ]]; then
  SEES_SYSTEM="$(grep -Eiq '^include-system-site-packages *= *true' "$VENV/pyvenv.cfg" && echo 1 || echo 0)"
  if [[ "$SEES_SYSTEM" != "$SYSTEM_TORCH" ]]; then
    die "$VENV was made with HAT_MM_SYSTEM_TORCH=$SEES_SYSTEM, now HAT_MM_SYSTEM_TORCH=$SYSTEM_TORCH: remove it (rm -r $VENV) or choose another HAT_MM_VENV"
  fi
else
  log "creating virtual environment in $VENV"
  if [[ "$SYSTEM_TORCH" == 1 ]]; then
    "$PYTHON" -m venv --system-site-packages "$VENV"
  else
    "$PYTHON" -m venv "$VENV"
  fi
fi
PY="$VENV/bin/python"
if [[ "$SYSTEM_TORCH" == 1 ]]; then
  # A --system-site-packages venv sees the site-packages of the *base* interpreter. When
  # $PYTHON is itself a virtual environment (e.g. a container's /opt/torch/.venv), its own
  # site-packages, where torch is, are added by a .pth file, after the environment's own.
  "$PYTHON" - "$VENV" <<'PYEOF' || die "could not link the site-packages of $PYTHON into $VENV"
import os, sys, sysconfig
if sys.prefix != sys.base_prefix:
    paths = dict.fromkeys(sysconfig.get_paths()[k] for k in ('purelib', 'platlib'))
    site = os.path.join(sys.argv[1], 'lib', 'python%d.%d' % sys.version_info[:2], 'site-packages')
    os.makedirs(site, exist_ok=True)
    with open(os.path.join(site, '_hat_mm_system_torch.pth'), 'w') as f:
        f.write(''.join(p + '\n' for p in paths))
PYEOF
fi
INDEX=()
[[ -n "$WHEELHOUSE" ]] && INDEX=(--no-index --find-links "$WHEELHOUSE")
PIP=("$PY" -m pip install --disable-pip-version-check --progress-bar off "${INDEX[@]}")
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

"${PIP[@]}" -q --upgrade pip "setuptools>=64,<81" wheel packaging ninja
if [[ -n "$WHEELHOUSE" && "$SYSTEM_TORCH" != 1 && -z "$("$PY" "$VARIANT_PY" find-wheel "$WHEELHOUSE" --name torch)" ]]; then
  die "$WHEELHOUSE has no torch wheel for $("$PY" -c 'import sys; print("Python %d.%d" % sys.version_info[:2])'): make it with tools/make_wheelhouse.sh DIR --python X.Y for the Python that runs set-up (PYTHON=...)"
fi

# 1. torch + torchvision: as pinned, or as found (HAT_MM_SYSTEM_TORCH=1), then pinned for pip.
CONSTRAINTS="$TMP/constraints.txt"
OPENCV_FOUND=""  # an OpenCV of $PYTHON that mmengine is to use instead of opencv-python
FOUND_NAMES="torch|torchvision"  # requirements.txt pins that this set-up does not install
if [[ "$SYSTEM_TORCH" == 1 ]]; then
  # torch, torchvision and numpy as found (the container's packages were built against that
  # numpy; replacing it in the environment would break them), the rest as pinned.
  "$PY" "$VARIANT_PY" found > "$TMP/found.txt" || die "could not read the packages of $PYTHON (above)"
  FOUND_NAMES="$(grep -Eo '^[A-Za-z0-9_.-]+==' "$TMP/found.txt" | tr -d = | paste -sd'|')"
  grep -E '^[A-Za-z0-9_.-]+==' "$ROOT/requirements.txt" | grep -Ev "^($FOUND_NAMES)==" > "$CONSTRAINTS"
  grep -Ev '^#' "$TMP/found.txt" >> "$CONSTRAINTS"
  OPENCV_FOUND="$(sed -n 's/^# opencv //p' "$TMP/found.txt")"
  log "using what $PYTHON has: $(grep -Ev '^#' "$TMP/found.txt" | tr '\n' ' ')${OPENCV_FOUND:+$OPENCV_FOUND (for mmengine, instead of opencv-python)}"
else
  grep -E '^[A-Za-z0-9_.-]+==' "$ROOT/requirements.txt" > "$CONSTRAINTS"
  log "installing $(grep -E '^(torch|torchvision|numpy)==' "$CONSTRAINTS" | tr '\n' ' ')"
  "${PIP[@]}" -q -c "$CONSTRAINTS" torch torchvision numpy
fi
MMENGINE_DONE=0
install_mmengine() {
  # mmengine asks for opencv-python, which would shadow an OpenCV already there (e.g. a
  # container's opencv-python-headless): then it is installed without it. Once per set-up
  # (the mmcv build needs it first).
  [[ "$MMENGINE_DONE" == 0 ]] || return 0
  MMENGINE_DONE=1
  if [[ -z "$OPENCV_FOUND" ]]; then
    "${PIP[@]}" -q -c "$CONSTRAINTS" mmengine
    return
  fi
  pip_install -q --no-deps -c "$CONSTRAINTS" mmengine
  "$PY" -c 'from importlib.metadata import requires
print("\n".join(r for r in requires("mmengine") if not r.lower().startswith("opencv")))' > "$TMP/mmengine-deps.txt"
  pip_install -q -c "$CONSTRAINTS" -r "$TMP/mmengine-deps.txt"
}
pip_install() {
  # pip then reports on every install that mmengine misses opencv-python: said once, here
  if [[ -z "$OPENCV_FOUND" ]]; then
    "${PIP[@]}" "$@"
    return
  fi
  "${PIP[@]}" "$@" 2> >(grep -v -e "pip's dependency resolver does not currently take" \
    -e 'mmengine .* requires opencv-python' >&2)
}
read -r TORCH_VER TORCH_CUDA TORCH_SITE < <("$PY" "$VARIANT_PY" torch $([[ "$SYSTEM_TORCH" == 1 ]] && echo --system)) \
  || die "torch check failed (above)"

# 2. Which mmcv build, and the CUDA toolkit for a CUDA-ops build.
if [[ "$MMCV_CUDA" == 1 ]]; then
  [[ "$TORCH_CUDA" != none ]] || die "HAT_MM_MMCV_CUDA=1 but torch $TORCH_VER has no CUDA (a CPU-only build): use a CUDA build of torch, or unset HAT_MM_MMCV_CUDA"
  ARCH="$("$PY" "$VARIANT_PY" arch-list)" || exit 1
  CUDA_HOME_FOUND=""
  [[ "$TOOLKIT" != pip ]] && { CUDA_HOME_FOUND="$("$PY" "$VARIANT_PY" system-cuda-home)" || exit 1; }
  if [[ -z "$CUDA_HOME_FOUND" ]]; then
    [[ "$TOOLKIT" == system ]] && die "HAT_MM_CUDA_TOOLKIT=system but no CUDA toolkit found (CUDA_HOME, nvcc on PATH, /usr/local/cuda)"
    TOOLKIT_REQ="$("$PY" "$VARIANT_PY" toolkit-requirement)" || exit 1
    log "no system CUDA toolkit used: installing the package index's $TOOLKIT_REQ into the environment"
    "${PIP[@]}" -q -c "$CONSTRAINTS" "$TOOLKIT_REQ" \
      || die "could not install $TOOLKIT_REQ${WHEELHOUSE:+ (make the wheelhouse with --cuda-toolkit)}, or set CUDA_HOME to a CUDA $TORCH_CUDA toolkit"
    CUDA_HOME_FOUND="$("$PY" "$VARIANT_PY" pip-cuda-home)" || exit 1
  fi
  CUDA_VER="$("$PY" "$VARIANT_PY" check-toolkit "$CUDA_HOME_FOUND")" || exit 1
  log "CUDA ops: CUDA_HOME=$CUDA_HOME_FOUND (CUDA $CUDA_VER), TORCH_CUDA_ARCH_LIST=$ARCH"
  KEY="$("$PY" "$VARIANT_PY" key --cuda-version "$CUDA_VER" --arch-list "$ARCH")" || exit 1
else
  KEY="$("$PY" "$VARIANT_PY" key)" || exit 1
fi
WHEELS="$CACHE/wheels/$KEY"
MMCV_VER="$(grep -E '^mmcv==' "$ROOT/requirements.txt" | cut -d= -f3)"

build_mmcv() {
  log "building mmcv $MMCV_VER ($KEY) against torch $TORCH_VER (CPU ops: about 9 minutes on 2 cores; CUDA ops: about 40 core-minutes per architecture) ..."
  "${PIP[@]}" -q -c "$CONSTRAINTS" addict yapf  # so the wheel's metadata is as before
  install_mmengine
  # without debug information: the extension is 2 MB instead of 83 MB (CPU ops)
  local env=(MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" LDFLAGS="${LDFLAGS:+$LDFLAGS }-Wl,--strip-debug")
  if [[ "$MMCV_CUDA" == 1 ]]; then
    env+=(FORCE_CUDA=1 CUDA_HOME="$CUDA_HOME_FOUND" TORCH_CUDA_ARCH_LIST="$ARCH" PATH="$CUDA_HOME_FOUND/bin:$PATH")
  else
    # mmcv's setup.py takes its CUDA branch whenever torch sees a GPU, whatever FORCE_CUDA says.
    env+=(FORCE_CUDA=0 CUDA_VISIBLE_DEVICES=)
  fi
  env "${env[@]}" "$PY" -m pip wheel --disable-pip-version-check --no-cache-dir --no-build-isolation \
    --no-deps --no-binary mmcv "${INDEX[@]}" "mmcv==$MMCV_VER" -w "$TMP/build"
  local built
  built="$(ls "$TMP"/build/mmcv-*.whl)"
  mkdir -p "$WHEELS"
  cp "$built" "$WHEELS/.$(basename "$built").part"
  mv "$WHEELS/.$(basename "$built").part" "$WHEELS/$(basename "$built")"
}

# 3. mmcv: the wheel of this variant, from the cache or built; reinstalled when the variant changes.
if [[ "$(cat "$MARKER" 2>/dev/null)" != "$KEY" ]] || ! "$PY" -c 'import mmcv.ops' >/dev/null 2>&1; then
  WHEEL="$("$PY" "$VARIANT_PY" find-wheel "$WHEELS" --version "$MMCV_VER")"
  if [[ -z "$WHEEL" && "$MMCV_CUDA" == 0 ]]; then  # cache of older set-ups: torch version only
    WHEEL="$("$PY" "$VARIANT_PY" migrate-legacy "$CACHE/wheels/torch-$TORCH_VER" "$WHEELS" --version "$MMCV_VER")"
  fi
  if [[ -z "$WHEEL" ]]; then
    build_mmcv
    WHEEL="$("$PY" "$VARIANT_PY" find-wheel "$WHEELS" --version "$MMCV_VER")"
  else
    log "reusing cached mmcv wheel $WHEEL"
  fi
  [[ -n "$WHEEL" ]] || die "no mmcv wheel for this Python in $WHEELS after the build"
  "${PIP[@]}" -q --no-deps --force-reinstall "$WHEEL"
  echo "$KEY" > "$MARKER"
fi

# 4. Everything else, then the project itself (editable).
log "installing the rest of requirements.txt and hat_mm (editable)"
install_mmengine
grep -Ev "^(mmcv|mmengine|$FOUND_NAMES)==" "$ROOT/requirements.txt" > "$TMP/requirements.txt"
pip_install -q -r "$TMP/requirements.txt" -c "$CONSTRAINTS"
"${PIP[@]}" -q --no-deps -e "$ROOT"
if [[ "$SYSTEM_TORCH" == 1 ]] && compgen -G "$VENV/lib/python*/site-packages/torch" >/dev/null; then
  die "a torch was installed into $VENV although HAT_MM_SYSTEM_TORCH=1 (a bug: please report it)"
fi

# 5. The detection ops on this machine's device (CUDA when there is one), against CPU.
"$PY" -c 'import hat_mm, mmcv.ops, mmpretrain, mmdet, mmseg; print("[setup_env] ok: hat_mm", hat_mm.__version__)' >&2
"$PY" "$ROOT/tools/analysis/check_detection_ops.py" >&2 || die "the detection ops failed or differ from mmcv's CPU kernels on this machine (above). With CUDA ops (HAT_MM_MMCV_CUDA=1), TORCH_CUDA_ARCH_LIST must include this GPU's compute capability: rebuild with it, or without HAT_MM_MMCV_CUDA for CPU ops, which hat_mm routes to torchvision on CUDA tensors (hat_mm/mmcv_cuda_fallback.py)"
echo "$REQUEST torch=$(torch_dist)" > "$STAMP"
