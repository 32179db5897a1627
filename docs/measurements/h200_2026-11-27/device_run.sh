#!/usr/bin/env bash
# Device run: offline set-up, compile caches warmed in parallel, then gpu_measurements.py.
#   bash .device/run.sh LIMIT_SECONDS [WARM:0|1] ITEM...
set -u
T0=$SECONDS
LIMIT=$1; WARM=$2; shift 2
export PYTHONUNBUFFERED=1
M=work_dirs/m
mkdir -p $M/warm "$OUT"
snap() {
  tar czf "$OUT/m.tgz.part" --exclude='*trace*' --exclude='*.pth' -C work_dirs m 2>/dev/null \
    && mv "$OUT/m.tgz.part" "$OUT/m.tgz"
}
(while sleep 20; do snap; done) &
SNAP=$!
el() { echo $((SECONDS - T0)); }

if [[ ! -x .venv/bin/python ]]; then
  nvidia-smi > $M/nvidia_smi.txt 2>&1; head -15 $M/nvidia_smi.txt
  which nvcc gcc python3
  python3 -m pip list --format=freeze > $M/device_freeze.txt 2>/dev/null
  python3 -c 'import torch; print(torch.__version__, torch.cuda.get_device_name())'
  HAT_MM_WHEELHOUSE=$PWD/.device/wheels HAT_MM_CACHE=$PWD/.device/cache HAT_MM_SYSTEM_TORCH=1 \
    PYTHON=python3 bash tools/setup_env.sh > $M/setup.log 2>&1
  rc=$?
  tail -n 8 $M/setup.log
  if [[ $rc != 0 ]]; then echo "SETUP FAILED rc=$rc"; tail -n 40 $M/setup.log; snap; kill $SNAP; exit 1; fi
fi
echo "[run] set-up done at $(el) s"
PY=.venv/bin/python

if [[ $WARM == 1 ]]; then
  # the compiled steps of the first items, compiled at once; the timed runs then find their
  # graphs in the inductor caches (FX graph and AOTAutograd) of this machine
  B=tools/analysis/benchmark_hat.py
  W=(--amp bf16 --steps hat-mm --iters 1 --warmup 2)
  timeout 300 $PY $B configs/hat_swin_t.py "${W[@]}" --out $M/warm/swin.json > $M/warm/swin.log 2>&1 &
  P1=$!
  timeout 300 $PY $B configs/hat_vit_b.py "${W[@]}" --out $M/warm/vit.json > $M/warm/vit.log 2>&1 &
  P2=$!
  timeout 300 $PY $B configs/hat_swin_t.py "${W[@]}" --eager --compile \
    --cfg-options model.fused_window_attention=True --out $M/warm/swin_fused.json > $M/warm/swin_fused.log 2>&1 &
  P3=$!
  wait $P1 $P2 $P3
  echo "[run] warm-up done at $(el) s"
  for f in $M/warm/*.log; do echo "== $f"; grep -E "img/s|Error|error" $f | tail -n 4; done
fi

n=0
for it in "$@"; do
  LEFT=$((LIMIT - $(el) - 25))
  [[ $LEFT -gt 40 ]] || { echo "[run] $(el) s: no time for $it"; continue; }
  n=$((n + 1))
  echo "[run] $(el) s: $it, at most $LEFT s"
  timeout --signal=TERM $LEFT $PY tools/analysis/gpu_measurements.py --budget 99999 \
    --out-dir $M --only "$it"
  echo "[run] $it: exit $? at $(el) s"
  pkill -9 -f 'tools/analysis/(benchmark_hat|benchmark_tables|train_throughput)' 2>/dev/null
  cp $M/measurements.md $M/index_$n.md 2>/dev/null
  grep -h "img/s" $M/logs/$(echo "$it" | tr / _).log 2>/dev/null | tail -n 6
done
cat $M/bench_bf16/tables.md 2>/dev/null
kill $SNAP 2>/dev/null
snap
ls -la "$OUT"
