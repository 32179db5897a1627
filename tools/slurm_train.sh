#!/usr/bin/env bash
# Training on a Slurm cluster (one task per GPU; mmengine reads the SLURM_* variables):
#   GPUS=16 bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py options]
# GPUS, GPUS_PER_NODE, CPUS_PER_TASK, SRUN_ARGS, PYTHON: see tools/launchers.sh.
set -euo pipefail
if [[ $# -lt 4 ]]; then
  echo "usage: [GPUS=8] $0 PARTITION JOB_NAME CONFIG WORK_DIR [tools/train.py options]" >&2
  exit 2
fi
source "$(dirname "$0")/launchers.sh"
slurm_launch "$1" "$2" tools/train.py "$3" --work-dir="$4" "${@:5}"
