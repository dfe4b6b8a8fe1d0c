#!/usr/bin/env bash
# One process vs two (torchrun, gloo on the CPU) at the same global batch (64 = 1 x 64 = 2 x 32):
#   bash bench/ddp_compare.sh [epochs] [seeds...]
# Prints one line per run: processes, seed, final val/top1, thinned val/top1, sparsity, wall time.
set -u
EPOCHS=${1:-10}; shift || true
SEEDS=${*:-0 1 2}
PY=${PYTHON:-.venv/bin/python}
export OMP_NUM_THREADS=1
OUT=$(mktemp -d)
COMMON=(pruner=agp_filter fold_batchnorm=true epochs=$EPOCHS tracking=none progress=false)
last() { $PY -c "import json,sys; r=[json.loads(l) for l in open(sys.argv[1])][-1]; print(f\"{r['val/top1']:.4f} {r.get('thin/val_top1', float('nan')):.4f} {r['sparsity/total']:.4f}\")" "$1"; }
echo "date: $(date -u +%F' '%H:%M) UTC; uptime: $(uptime)"
for seed in $SEEDS; do
  start=$SECONDS
  $PY run.py "${COMMON[@]}" seed=$seed loader.batch_size=64 hydra.run.dir=$OUT/p1_$seed > $OUT/p1_$seed.log 2>&1
  echo "1 process  x 64, seed $seed: val/top1 thin/val_top1 sparsity = $(last $OUT/p1_$seed/metrics.jsonl)  ($((SECONDS-start)) s)"
  start=$SECONDS
  $PY -m torch.distributed.run --standalone --nproc_per_node=2 run.py "${COMMON[@]}" seed=$seed loader.batch_size=32 \
    hydra.run.dir=$OUT/p2_$seed > $OUT/p2_$seed.log 2>&1
  echo "2 processes x 32, seed $seed: val/top1 thin/val_top1 sparsity = $(last $OUT/p2_$seed/metrics.jsonl)  ($((SECONDS-start)) s)"
done
