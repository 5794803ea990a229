#!/usr/bin/env bash
# Side-by-side SAE encode throughput: saescope vs SAELens (PyTorch CPU), same machine, same
# thread count, interleaved, for the two sizes of issue 3 (576→9216, 768→24576).
# Usage: scripts/bench_sae.sh [--threads 2] [--batch 4096] [--iters 5] [--rounds 2] [--op encode|forward]
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=2 BATCH=4096 ITERS=5 ROUNDS=2 OP=encode
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) THREADS=$2; shift 2 ;;
    --batch) BATCH=$2; shift 2 ;;
    --iters) ITERS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --op) OP=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
cargo build --release --bench sae_encode 2>/dev/null || cargo build --release --bench sae_encode
PY=.venv-golden/bin/python
[ -x "$PY" ] || { echo "run scripts/setup_golden_venv.sh first (SAELens reference)" >&2; exit 1; }
echo "# $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); threads=$THREADS batch=$BATCH iters=$ITERS op=$OP"
for r in $(seq 1 "$ROUNDS"); do
  echo "## round $r"
  for dims in "576 9216" "768 24576"; do
    set -- $dims
    A=(--d-in "$1" --d-sae "$2" --batch "$BATCH" --iters "$ITERS" --op "$OP")
    RAYON_NUM_THREADS=$THREADS cargo bench -q --bench sae_encode -- "${A[@]}" 2>/dev/null | grep '^{'
    OMP_NUM_THREADS=$THREADS "$PY" scripts/bench_sae_torch.py --threads "$THREADS" "${A[@]}" | grep '^{'
  done
done
