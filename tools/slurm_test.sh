#!/usr/bin/env bash
# Evaluation on a Slurm cluster (one task per GPU; mmengine reads the SLURM_* variables):
#   GPUS=8 bash tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py options]
# GPUS, GPUS_PER_NODE, CPUS_PER_TASK, SRUN_ARGS, PYTHON: see tools/launchers.sh.
set -euo pipefail
if [[ $# -lt 4 ]]; then
  echo "usage: [GPUS=8] $0 PARTITION JOB_NAME CONFIG CHECKPOINT [tools/test.py options]" >&2
  exit 2
fi
source "$(dirname "$0")/launchers.sh"
slurm_launch "$1" "$2" tools/test.py "$3" "$4" "${@:5}"
