#!/usr/bin/env bash
# Reproduce the shipped SAE, data/saes/smollm2-l15-resid-post-topk48/, from scratch:
#   1. fetch the model and build the offline corpus (scripts/fetch_model.sh, setup_corpus.sh);
#   2. cache 2 M tokens of blocks.15.hook_resid_post (corpus shuffled with seed 42, BOS/EOS
#      excluded) in data/cache/acts/smollm2-l15-2m/ (skipped when already there);
#   3. train the TopK SAE of configs/smollm2-l15-topk.json into data/runs/smollm2-l15-topk/
#      (resumed if a previous run was interrupted);
#   4. copy the SAELens-format folder to data/saes/ and write its evals on held-out tokens (eval.json).
# Takes about an hour on 2 cores (the model pass of step 2 dominates).
# Usage: scripts/train_default_sae.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=data/saes/smollm2-l15-resid-post-topk48
RUN=data/runs/smollm2-l15-topk
CACHE=data/cache/acts/smollm2-l15-2m
scripts/fetch_model.sh
scripts/setup_corpus.sh
cargo build --release --bin saescope
S=target/release/saescope
$S cache-activations --model smollm2 --hook blocks.15.hook_resid_post --tokens 2000000 \
  --out "$CACHE" --dataset default --dataset-shuffle-seed 42 --exclude-special-tokens
if [ -f "$RUN/cfg.json" ] && [ -f "$RUN/sae_weights.safetensors" ]; then
  echo "train_default_sae: $RUN already finished"
elif [ -d "$RUN" ]; then
  $S resume "$RUN"
else
  $S train --config configs/smollm2-l15-topk.json
fi
mkdir -p "$OUT"
cp "$RUN/cfg.json" "$RUN/sae_weights.safetensors" "$RUN/sparsity.safetensors" "$OUT/"
# Evals on the default: 32 Ki tokens of the corpus's held-out slice (data/corpus.heldout.txt),
# which the 2 M cached tokens above never reach (tests/data.rs checks it).
$S eval --model smollm2 --sae "$OUT" > "$OUT/eval.json"
cat "$OUT/eval.json"
