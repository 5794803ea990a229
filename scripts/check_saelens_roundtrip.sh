#!/usr/bin/env bash
# Show that SAELens loads a saescope-written SAE folder unchanged and computes the same outputs:
# copies DIR to a temporary folder, has saescope write check_outputs.safetensors there (x from
# a safetensors activations file, or seeded random rows), then runs scripts/check_saelens_load.py
# (SAELens's SAE.load_from_disk, encode, decode; compared with torch.allclose).
# Usage: scripts/check_saelens_roundtrip.sh [DIR] [ACTS.safetensors KEY]
#   default DIR: data/saes/smollm2-l15-resid-post-topk48, default activations: the first
#   shard of data/cache/acts/smollm2-l15-2m (key `activations`) when present.
# Needs the reference virtualenv (scripts/setup_golden_venv.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-data/saes/smollm2-l15-resid-post-topk48}
ACTS=${2:-data/cache/acts/smollm2-l15-2m/shard_00000.safetensors}
KEY=${3:-activations}
PY=.venv-golden/bin/python
[ -x "$PY" ] || { echo "run scripts/setup_golden_venv.sh first (SAELens reference)" >&2; exit 1; }
cargo build --release --bin saescope 2>/dev/null || cargo build --release --bin saescope
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
cp "$DIR"/cfg.json "$DIR"/sae_weights.safetensors "$TMP"/
if [ ! -f "$ACTS" ]; then
  # 64 seeded rows at the SAE's width, with the scale of real residual activations
  D_IN=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['d_in'])" "$DIR/cfg.json")
  "$PY" -c "import torch,sys; from safetensors.torch import save_file; g=torch.Generator().manual_seed(0); save_file({'activations': 10*torch.randn(64,int(sys.argv[1]),generator=g)}, sys.argv[2])" "$D_IN" "$TMP/acts.safetensors"
  ACTS=$TMP/acts.safetensors KEY=activations
fi
target/release/saescope sae apply --sae "$TMP" --input "$ACTS" --key "$KEY" --rows 64 \
  --out "$TMP/check_outputs.safetensors"
"$PY" scripts/check_saelens_load.py "$TMP"
