#!/usr/bin/env bash
# Side-by-side SAE training-step throughput: saescope vs SAELens's SAETrainer (PyTorch CPU),
# same machine, same thread count, interleaved: 576→4608, batch 4096, standard and TopK (k=32).
# Usage: scripts/bench_train.sh [--threads 2] [--iters 5] [--rounds 2] [--dead-frac 0.0]
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=2 ITERS=5 ROUNDS=2 DEAD=0.0
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) THREADS=$2; shift 2 ;;
    --iters) ITERS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --dead-frac) DEAD=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
cargo build --release --bench train_step 2>/dev/null || cargo build --release --bench train_step
PY=.venv-golden/bin/python
[ -x "$PY" ] || { echo "run scripts/setup_golden_venv.sh first (SAELens reference)" >&2; exit 1; }
echo "# $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); threads=$THREADS iters=$ITERS dead_frac=$DEAD"
for r in $(seq 1 "$ROUNDS"); do
  echo "## round $r"
  for arch in standard topk; do
    A=(--arch "$arch" --k 32 --d-in 576 --d-sae 4608 --batch 4096 --iters "$ITERS" --dead-frac "$DEAD")
    RAYON_NUM_THREADS=$THREADS cargo bench -q --bench train_step -- "${A[@]}" 2>/dev/null | grep '^{'
    OMP_NUM_THREADS=$THREADS "$PY" scripts/bench_train_torch.py --threads "$THREADS" "${A[@]}" | grep '^{'
  done
done
