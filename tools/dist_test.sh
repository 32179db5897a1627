#!/usr/bin/env bash
# Distributed evaluation with torchrun (one process per GPU), single or multi node:
#   bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py options]
# NNODES, NODE_RANK, MASTER_ADDR, PORT, PYTHON: see tools/launchers.sh.
set -euo pipefail
HAT_MM_USAGE="usage: $0 CONFIG CHECKPOINT GPUS [tools/test.py options]"
if [[ $# -lt 3 ]]; then
  echo "$HAT_MM_USAGE" >&2; exit 2
fi
source "$(dirname "$0")/launchers.sh"
torchrun_launch "$3" tools/test.py "$1" "$2" "${@:4}"
