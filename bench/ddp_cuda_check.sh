#!/usr/bin/env bash
# CUDA check of multi-process training (issue 13) on a machine with one GPU:
#   bash bench/ddp_cuda_check.sh [OUT_DIR]
# NCCL refuses two ranks on one GPU, so the two-rank CUDA runs use distributed.backend=gloo
# (gloo moves CUDA tensors too): they check the CUDA side of our code (device per LOCAL_RANK,
# DDP with device_ids, buffer and mask broadcasts, SyncBatchNorm); the CPU run checks that the
# default backend on a CUDA machine ("cpu:gloo,cuda:nccl") starts. Exits 1 on a failed step.
set -u
OUT_DIR=${1:-/tmp/ddp_cuda_check}
mkdir -p "$OUT_DIR"
PY=${PYTHON:-python3}
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
COMMON=(pruner=agp_filter fold_batchnorm=true epochs=3 loader.batch_size=32 tracking=none progress=false)
status=0
step() {  # step NAME NPROC ARGS...
  local name=$1 nproc=$2; shift 2
  local dir="$OUT_DIR/$name"
  local start=$SECONDS
  timeout 240 $PY -m torch.distributed.run --standalone --nproc_per_node=$nproc run.py "${COMMON[@]}" \
    "hydra.run.dir=$dir" "$@" > "$OUT_DIR/$name.log" 2>&1
  local rc=$?
  local agree=$($PY -c "import json,sys; c=json.load(open('$dir/distributed.json'))['checks']; print(all(x['agree'] for x in c), len(c))" 2>/dev/null || echo "no-record")
  echo "$name: rc=$rc $((SECONDS-start))s agree/checks=$agree $(grep -o 'finished: .*' "$OUT_DIR/$name.log" | tail -1)"
  [ $rc -eq 0 ] || { status=1; tail -25 "$OUT_DIR/$name.log"; }
}
$PY -c "import torch; print('torch', torch.__version__, 'gpus', torch.cuda.device_count(), torch.cuda.get_device_name(0))"
step cuda_1proc 1 device=cuda
step cuda_2proc_gloo 2 device=cuda distributed.backend=gloo
step cuda_2proc_gloo_syncbn 2 device=cuda distributed.backend=gloo distributed.sync_batchnorm=true
step cpu_2proc_on_cuda_machine 2 device=cpu
exit $status
