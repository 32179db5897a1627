#!/usr/bin/env bash
# Distributed training with torchrun (one process per GPU), single or multi node:
#   bash tools/dist_train.sh CONFIG GPUS [train.py options]
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 bash tools/dist_train.sh CONFIG 8   # node 0
#   NNODES=2 NODE_RANK=1 MASTER_ADDR=10.0.0.1 bash tools/dist_train.sh CONFIG 8   # node 1
# NNODES, NODE_RANK, MASTER_ADDR, PORT, PYTHON: see tools/launchers.sh.
set -euo pipefail
HAT_MM_USAGE="usage: $0 CONFIG GPUS [tools/train.py options]"
if [[ $# -lt 2 ]]; then
  echo "$HAT_MM_USAGE" >&2; exit 2
fi
source "$(dirname "$0")/launchers.sh"
torchrun_launch "$2" tools/train.py "$1" "${@:3}"
