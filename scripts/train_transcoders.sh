#!/usr/bin/env bash
# Train per-layer transcoders for SmolLM2-135M-Instruct (all 30 layers,
# blocks.L.ln2.hook_normalized → blocks.L.hook_mlp_out, BatchTopK k = 32, 576 → 1152 → 576),
# every layer from ONE streamed model pass (no activation cache on disk):
#   1. fetch the model and build the offline corpus (scripts/fetch_model.sh, setup_corpus.sh);
#   2. train configs/smollm2-transcoders.json into data/runs/smollm2-transcoders/, or resume it
#      from its latest checkpoint when a previous run was interrupted (killed, rebooted);
#   3. copy each layer's SAELens folder (jumprelu_transcoder, float16 weights: cfg.json,
#      sae_weights.safetensors, sparsity.safetensors) to data/transcoders/smollm2-<name>/layer_L/
#      (<name> = mlp-batchtopk-k32-1152 for the default config), with the run's summary.json;
#   4. evaluate the set on 8 192 held-out tokens (`saescope eval --transcoders`) into its
#      eval.json (FVU, L0, dead latents, CE-loss score per layer and with all MLPs replaced).
# Progress: stderr status lines (tok/s, mse, explained variance, L0, dead latents), and
# data/runs/smollm2-transcoders/progress.jsonl. About 1.5 hours of training and 20 minutes of
# evals on 2 idle cores.
# Usage: scripts/train_transcoders.sh [CONFIG]   (default configs/smollm2-transcoders.json)
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${1:-configs/smollm2-transcoders.json}
# The run folder, and the set's name from the config: mlp-<architecture>-k<k>-<width>.
read -r RUN NAME < <(python3 - "$CONFIG" <<'PYEOF'
import json, sys
c = json.load(open(sys.argv[1]))
s = c.get("sae", {})
width = s.get("d_sae") or int(round(c.get("expansion_factor", 0) * 576))
print(c["output_path"], f"mlp-{s.get('architecture', 'batchtopk')}-k{s.get('k', 0):g}-{width}")
PYEOF
)
OUT=data/transcoders/smollm2-$NAME
scripts/fetch_model.sh
scripts/setup_corpus.sh
cargo build --release --bin saescope
S=target/release/saescope
if [ -f "$RUN/transcoders_cfg.json" ]; then
  echo "train_transcoders: resuming $RUN"
  $S train-transcoders --resume "$RUN" > "$RUN.summary.json.part"
else
  mkdir -p "$(dirname "$RUN")"
  $S train-transcoders --config "$CONFIG" > "$RUN.summary.json.part"
fi
mv "$RUN.summary.json.part" "$RUN.summary.json"
cat "$RUN.summary.json"
mkdir -p "$OUT"
for d in "$RUN"/layer_*; do
  L=$((10#${d##*/layer_}))
  mkdir -p "$OUT/layer_$L"
  cp "$d/cfg.json" "$d/sae_weights.safetensors" "$d/sparsity.safetensors" "$OUT/layer_$L/"
done
cp "$RUN.summary.json" "$OUT/summary.json"
$S eval --transcoders "$OUT" --tokens 8192 > "$OUT/eval.json.part"
mv "$OUT/eval.json.part" "$OUT/eval.json"
echo "train_transcoders: $(ls -d "$OUT"/layer_* | wc -l) transcoders in $OUT ($(du -sh "$OUT" | cut -f1))"
