# Sourced by tools/slurm_train.sh and tools/slurm_test.sh: one srun task per GPU, each running
# a tools/ entry point with --launcher slurm (mmengine reads the SLURM_* variables).
#   slurm_launch PARTITION JOB_NAME tools/<entry>.py [entry options]
# GPUS (total, default 8), GPUS_PER_NODE (8), CPUS_PER_TASK (8: the paper configs' 8
# data-loading workers per GPU; with fewer, set train_dataloader.num_workers to match) and
# SRUN_ARGS (extra srun options) come from the environment; PYTHON: the interpreter
# (default: the repository's .venv, else python).
slurm_launch() {
  local partition=$1 job_name=$2 entry=$3
  shift 3
  local root py
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  py="${PYTHON:-$( [[ -x "$root/.venv/bin/python" ]] && echo "$root/.venv/bin/python" || echo python)}"
  PYTHONPATH="$root:${PYTHONPATH:-}" \
  srun -p "$partition" --job-name="$job_name" --gres=gpu:"${GPUS_PER_NODE:-8}" \
      --ntasks="${GPUS:-8}" --ntasks-per-node="${GPUS_PER_NODE:-8}" \
      --cpus-per-task="${CPUS_PER_TASK:-8}" --kill-on-bad-exit=1 ${SRUN_ARGS:-} \
      "$py" -u "$root/$entry" --launcher slurm "$@"
}
