#!/usr/bin/env bash
# Latent maps side by side: saescope vs umap-learn + hdbscan, UMAP 2-D + UMAP 10-D + HDBSCAN
# over the same 18 432 decoder rows (the shipped SAE's 4608 and three perturbed copies, written
# once to target/bench-map/rows.safetensors and read by both), same machine, same threads.
# Usage: scripts/bench_map.sh [--threads 2] [--warm]   (--warm: compile numba before timing)
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=2 WARM=
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) THREADS=$2; shift 2 ;;
    --warm) WARM=--warm; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
bash scripts/setup_map_venv.sh >/dev/null
PY=.venv-map/bin/python
ROWS=target/bench-map/rows.safetensors
mkdir -p target/bench-map
[ -f "$ROWS" ] || "$PY" scripts/bench_map.py --make-rows "$ROWS"
cargo build --release --bench latent_map 2>/dev/null || cargo build --release --bench latent_map
echo "# $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); threads=$THREADS"
RAYON_NUM_THREADS=$THREADS cargo bench -q --bench latent_map -- --rows "$ROWS" 2>/dev/null | grep '^{'
NUMBA_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS "$PY" scripts/bench_map.py --rows "$ROWS" $WARM 2>/dev/null | grep '^{'
