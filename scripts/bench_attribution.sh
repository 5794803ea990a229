#!/usr/bin/env bash
# Side-by-side attribution-graph benchmark: saescope (`cargo bench --bench attribution`) and
# circuit-tracer 0.5.0 (scripts/bench_attribution_ct.py) on SmolLM2-135M-Instruct, the same
# 16-token prompt, the same transcoders, the same max_feature_nodes and batch size, 2 threads
# each, alternating rounds in one invocation. Each prints one JSON line (wall_s, peak_rss_mb).
#
# Usage: scripts/bench_attribution.sh [--transcoders DIR] [--max-features 7500] [--batch 64]
#        [--rounds 1]
# Without --transcoders, random JumpReLU transcoders (width 1152, ~24 active per token and
# layer) are written to target/bench-transcoders/ first: the timing depends on the node count.
set -euo pipefail
cd "$(dirname "$0")/.."
TC="" MAXF=7500 BATCH=64 ROUNDS=1
while [ $# -gt 0 ]; do
  case "$1" in
    --transcoders) TC=$2; shift 2 ;;
    --max-features) MAXF=$2; shift 2 ;;
    --batch) BATCH=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
scripts/fetch_model.sh >/dev/null
bash scripts/setup_circuit_venv.sh >/dev/null
cargo build --release --bench attribution 2>/dev/null || cargo build --release --bench attribution
if [ -z "$TC" ]; then
  TC=target/bench-transcoders
  if [ ! -d "$TC/layer_29" ]; then
    cargo bench --bench attribution -- --save "$TC" | tail -1
  fi
fi
export RAYON_NUM_THREADS=2 TQDM_DISABLE=1
for r in $(seq 1 "$ROUNDS"); do
  echo "round $r"
  cargo bench --bench attribution -- --transcoders "$TC" --max-features "$MAXF" --batch "$BATCH" | tail -1
  .venv-circuit/bin/python scripts/bench_attribution_ct.py "$TC" --max-features "$MAXF" --batch "$BATCH" --threads 2 | tail -1
done
