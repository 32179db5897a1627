#!/usr/bin/env bash
# Gather everything tools/setup_env.sh installs into one folder, for machines with no internet:
#
#   bash tools/make_wheelhouse.sh DIR [--python X.Y] [--platform TAG]... [--cuda-toolkit]
#                                     [--on-top-of FILE]
#   # carry DIR and the repository over, then there:
#   HAT_MM_WHEELHOUSE=DIR bash tools/setup_env.sh
#
# DIR gets wheels of requirements.txt and their dependencies for CPython X.Y (default: this
# python3's) on the platform tags given (default: manylinux x86_64 for glibc 2.28 and older,
# the tags of torch's and its dependencies' wheels), the build tools (pip, setuptools,
# wheel, packaging, ninja; also hat-mm's own build requirements), and mmcv's source
# distribution, which setup_env.sh builds there. --cuda-toolkit adds the package index's
# CUDA toolkit matching torch (nvcc, cccl, crt, nvvm) for HAT_MM_MMCV_CUDA=1 on machines
# without one. --on-top-of FILE: for set-up with HAT_MM_SYSTEM_TORCH=1 on a Python that has
# torch (a container): FILE is `python -m pip list --format=freeze` run there; only what that
# Python lacks is gathered (no torch, no CUDA libraries: megabytes, not gigabytes).
# Runs where the package index is reachable; any Python 3 runs it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
usage() { sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
die() { echo "[make_wheelhouse] ERROR: $*" >&2; exit 1; }
log() { echo "[make_wheelhouse] $*" >&2; }

DIR=""; PYVER=""; PLATFORMS=(); CUDA_TOOLKIT=0; ON_TOP=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --python) PYVER="${2:?--python needs X.Y}"; shift 2 ;;
    --platform) PLATFORMS+=("${2:?--platform needs a tag}"); shift 2 ;;
    --cuda-toolkit) CUDA_TOOLKIT=1; shift ;;
    --on-top-of) ON_TOP="${2:?--on-top-of needs a file}"; shift 2 ;;
    -h|--help) usage ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) [[ -z "$DIR" ]] || die "one DIR only (got $DIR and $1)"; DIR="$1"; shift ;;
  esac
done
[[ -n "$DIR" ]] || usage
if [[ -n "$ON_TOP" ]]; then
  [[ -f "$ON_TOP" ]] || die "--on-top-of $ON_TOP: no such file (make it there with: python -m pip list --format=freeze > FILE)"
  [[ "$CUDA_TOOLKIT" == 0 ]] || die "--cuda-toolkit with --on-top-of: use the CUDA toolkit of that machine or container (HAT_MM_CUDA_TOOLKIT=system)"
fi
HOST_PY="${PYTHON:-python3}"
[[ -n "$PYVER" ]] || PYVER="$("$HOST_PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
[[ "$PYVER" =~ ^3\.[0-9]+$ ]] || die "--python $PYVER: give the version as X.Y, e.g. 3.12"
if [[ ${#PLATFORMS[@]} -eq 0 ]]; then
  # pip does not widen a manylinux tag to the older ones: list them all.
  for minor in $(seq 28 -1 17); do PLATFORMS+=("manylinux_2_${minor}_x86_64"); done
  PLATFORMS+=(manylinux2014_x86_64 manylinux_2_12_x86_64 manylinux2010_x86_64 manylinux_2_5_x86_64 manylinux1_x86_64)
fi
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
START=$SECONDS

TARGET=(--python-version "$PYVER" --implementation cp --only-binary=:all:)
for p in "${PLATFORMS[@]}"; do TARGET+=(--platform "$p"); done
PIPDL=("$HOST_PY" -m pip download --disable-pip-version-check --progress-bar off -d "$DIR")
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# 1. Wheels: requirements.txt (mmcv has none: its sources come next), the build tools, and
#    hat-mm's own build requirements, resolved together for the target Python and platform.
grep -Ev '^mmcv==' "$ROOT/requirements.txt" > "$TMP/requirements.txt"
"$HOST_PY" - "$ROOT/pyproject.toml" >> "$TMP/requirements.txt" <<'PYEOF'
import re, sys
text = open(sys.argv[1]).read()
block = re.search(r'^\[build-system\].*?^requires\s*=\s*\[(.*?)\]', text, re.S | re.M)
for req in re.findall(r'"([^"]+)"', block.group(1) if block else ''):
    print(req)
PYEOF
printf '%s\n' pip "setuptools>=64,<81" wheel packaging ninja addict yapf >> "$TMP/requirements.txt"
if [[ -z "$ON_TOP" ]]; then
  log "downloading wheels for CPython $PYVER (${PLATFORMS[0]} and older) into $DIR ..."
  "${PIPDL[@]}" "${TARGET[@]}" -r "$TMP/requirements.txt"
else
  # Resolve everything for the target (pip reads only metadata), then download what the
  # Python of FILE lacks, without dependencies: no torch and no CUDA libraries.
  # A helper environment: a current pip (older ones check Requires-Python against the
  # running Python in a dry run), and packaging for the rules of wheelhouse_on_top.py.
  "$HOST_PY" -m venv "$TMP/resolve-env"
  "$TMP/resolve-env/bin/python" -m pip install -q --disable-pip-version-check --upgrade "pip>=24" packaging
  ONTOP_PY=("$TMP/resolve-env/bin/python" "$ROOT/tools/wheelhouse_on_top.py")
  "${ONTOP_PY[@]}" requirements "$ON_TOP" "$TMP/requirements.txt"
  log "resolving the requirements for CPython $PYVER on top of $ON_TOP ..."
  "$TMP/resolve-env/bin/python" -m pip install -q --disable-pip-version-check --dry-run --ignore-installed \
    --report "$TMP/report.json" --target "$TMP/never" "${TARGET[@]}" -r "$TMP/requirements.txt"
  "${ONTOP_PY[@]}" select "$ON_TOP" "$TMP/report.json" "$TMP/requirements.txt" > "$TMP/carry.txt"
  log "downloading $(wc -l < "$TMP/carry.txt") wheels into $DIR ..."
  "${PIPDL[@]}" "${TARGET[@]}" --no-deps -r "$TMP/carry.txt"
fi

# 2. mmcv's source distribution. pip reads its metadata by running setup.py, which needs
#    setuptools < 81 (pkg_resources) and must not see a torch: a bare helper environment.
MMCV_PIN="$(grep -E '^mmcv==' "$ROOT/requirements.txt")"
log "downloading the source distribution of $MMCV_PIN ..."
"$HOST_PY" -m venv "$TMP/sdist-env"
"$TMP/sdist-env/bin/python" -m pip install -q --disable-pip-version-check --no-index \
  --find-links "$DIR" "setuptools>=64,<81" wheel
"$TMP/sdist-env/bin/python" -m pip download --disable-pip-version-check --progress-bar off \
  -d "$DIR" --no-deps --no-binary :all: --no-build-isolation "$MMCV_PIN"

# 3. Optionally the CUDA toolkit of torch's CUDA version (from the torch wheel's metadata).
if [[ "$CUDA_TOOLKIT" == 1 ]]; then
  TORCH_WHEEL="$(ls "$DIR"/torch-*.whl | head -1)"
  TOOLKIT_REQ="$("$HOST_PY" "$ROOT/tools/mmcv_variant.py" toolkit-requirement --torch-wheel "$TORCH_WHEEL")"
  log "downloading $TOOLKIT_REQ ..."
  "${PIPDL[@]}" "${TARGET[@]}" "$TOOLKIT_REQ"
fi

log "done in $((SECONDS - START)) s: $(ls "$DIR" | wc -l) files, $(du -sh "$DIR" | cut -f1) in $DIR"
if [[ -n "$ON_TOP" ]]; then
  log "install with: HAT_MM_WHEELHOUSE=$DIR HAT_MM_SYSTEM_TORCH=1 PYTHON=<the python of $ON_TOP> bash tools/setup_env.sh"
else
  log "install with: HAT_MM_WHEELHOUSE=$DIR PYTHON=<python$PYVER> bash tools/setup_env.sh"
fi
