# Sourced by the launchers tools/dist_{train,test}.sh (torchrun) and tools/slurm_{train,test}.sh
# (srun): one process per GPU, each running a tools/ entry point with its --launcher.
#
# The interpreter: PYTHON, else the repository's .venv, else python.
# torchrun_launch: NNODES (1), NODE_RANK (0), MASTER_ADDR (127.0.0.1), PORT (29500).
# slurm_launch: GPUS (in all, 8), GPUS_PER_NODE (8), CPUS_PER_TASK (8: the paper configs' 8
# data-loading workers per GPU; with fewer, set train_dataloader.num_workers to match),
# SRUN_ARGS (more srun options).
# Both: MKL_NUM_THREADS (1, the value mmengine gives each process of a distributed run, set
# here so that it does not warn about it in every process).
HAT_MM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HAT_MM_PYTHON="${PYTHON:-$( [[ -x "$HAT_MM_ROOT/.venv/bin/python" ]] \
  && echo "$HAT_MM_ROOT/.venv/bin/python" || echo python)}"

torchrun_launch() {  # torchrun_launch GPUS tools/<entry>.py [entry arguments]
  local gpus=$1 entry=$2
  shift 2
  if [[ ! $gpus =~ ^[1-9][0-9]*$ ]]; then
    echo "GPUS=$gpus is not a number of processes (GPUs) per node, 1 or more." \
      "${HAT_MM_USAGE:-}" >&2
    return 2
  fi
  PYTHONPATH="$HAT_MM_ROOT:${PYTHONPATH:-}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}" \
  "$HAT_MM_PYTHON" -m torch.distributed.run \
      --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" \
      --master_addr="${MASTER_ADDR:-127.0.0.1}" --nproc_per_node="$gpus" \
      --master_port="${PORT:-29500}" \
      "$HAT_MM_ROOT/$entry" --launcher pytorch "$@"
}

slurm_launch() {  # slurm_launch PARTITION JOB_NAME tools/<entry>.py [entry arguments]
  local partition=$1 job_name=$2 entry=$3
  shift 3
  PYTHONPATH="$HAT_MM_ROOT:${PYTHONPATH:-}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}" \
  srun -p "$partition" --job-name="$job_name" --gres=gpu:"${GPUS_PER_NODE:-8}" \
      --ntasks="${GPUS:-8}" --ntasks-per-node="${GPUS_PER_NODE:-8}" \
      --cpus-per-task="${CPUS_PER_TASK:-8}" --kill-on-bad-exit=1 ${SRUN_ARGS:-} \
      "$HAT_MM_PYTHON" -u "$HAT_MM_ROOT/$entry" --launcher slurm "$@"
}
