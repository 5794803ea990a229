#!/usr/bin/env bash
# Side-by-side forward benchmark: saescope (candle, f32) vs HF transformers (PyTorch, f32) on
# SmolLM2-135M-Instruct, same machine, same thread count, same batch, interleaved runs so that
# machine noise hits both alike. Also TransformerLens's forward and run_with_cache (for the
# cache-overhead comparison). Within each process, forward and run_with_cache (all hooks)
# alternate pass by pass: saescope's JSON line has "cache_overhead_pct", TL's run_with_cache
# line "overhead_pct" (median run_with_cache time over median forward time, minus 1).
#
# Usage: scripts/bench.sh [--threads 2] [--batch 8] [--seq 128] [--iters 3] [--rounds 2] [--no-tl]
# Needs: scripts/fetch_model.sh, scripts/setup_golden_venv.sh (for PyTorch). Prints each
# process's JSON line, then a summary per round. Figures go to BENCHMARKS.md by hand, with this
# command line.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=2 BATCH=8 SEQ=128 ITERS=3 ROUNDS=2 TL=1
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) THREADS=$2; shift 2 ;;
    --batch) BATCH=$2; shift 2 ;;
    --seq) SEQ=$2; shift 2 ;;
    --iters) ITERS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --no-tl) TL=0; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
scripts/fetch_model.sh >/dev/null
cargo build --release --bench forward 2>/dev/null || cargo build --release --bench forward
PY=.venv-golden/bin/python
export TQDM_DISABLE=1  # no progress bars from the Python loaders
[ -x "$PY" ] || { echo "run scripts/setup_golden_venv.sh first (PyTorch reference)" >&2; exit 1; }
echo "# $(date -u +%FT%TZ) $(uname -m) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); threads=$THREADS batch=$BATCH seq=$SEQ iters=$ITERS"
COMMON=(--batch "$BATCH" --seq "$SEQ" --iters "$ITERS" --warmup 1)
LINES=$(mktemp)
trap 'rm -f "$LINES"' EXIT
for r in $(seq 1 "$ROUNDS"); do
  echo "## round $r"
  {
    RAYON_NUM_THREADS=$THREADS cargo bench -q --bench forward -- "${COMMON[@]}" 2>/dev/null | grep '^{'
    OMP_NUM_THREADS=$THREADS "$PY" scripts/bench_torch.py --threads "$THREADS" "${COMMON[@]}" | grep '^{'
    if [ "$TL" = 1 ]; then
      OMP_NUM_THREADS=$THREADS "$PY" scripts/bench_torch.py --threads "$THREADS" --tl-both "${COMMON[@]}" | grep '^{'
    fi
  } | sed "s/^{/{\"round\":$r,/" | tee -a "$LINES"
done
echo "## summary: tokens/s (run_with_cache time over forward time: wall, CPU)"
"$PY" - "$LINES" <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for r in rows:
    name, tps = r["impl"], r["tokens_per_s"]
    if name == "saescope":
        print(f"round {r['round']}  saescope forward {tps:7.1f}   saescope run_with_cache "
              f"{r['cache_tokens_per_s']:7.1f}  ({r['cache_overhead_pct']:+.1f} %, CPU {r['cache_cpu_overhead_pct']:+.1f} %)")
    elif "overhead_pct" in r:
        print(f"round {r['round']}  {name:32s} {tps:7.1f}  ({r['overhead_pct']:+.1f} %, CPU {r['cpu_overhead_pct']:+.1f} %)")
    else:
        print(f"round {r['round']}  {name:32s} {tps:7.1f}")
PYEOF
