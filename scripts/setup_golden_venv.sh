#!/usr/bin/env bash
# Create .venv-golden/, the Python environment used to produce the golden reference tensors
# (scripts/make_goldens.py) and the PyTorch benchmark (scripts/bench_torch.py).
#
# Usage:   bash scripts/setup_golden_venv.sh
# Then:    .venv-golden/bin/python scripts/make_goldens.py
#
# The Rust crate and its tests never need this venv: the goldens it writes are committed under
# tests/fixtures/. Only regenerate them when the reference versions below change.
#
# Idempotent: when .venv-golden/ already holds exactly these pins (recorded in a stamp file) the
# script does nothing. Everything comes from the Python package registry through pip; torch is
# the registry's default Linux wheel (it drags in the CUDA runtime wheels, a few GB, but runs
# fine on CPU).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv-golden
PY=${PYTHON:-python3}

# Exact versions verified to work together on Python 3.11: TransformerLens 3.9.0 needs
# transformers>=5.9 and torch>=2.6; numpy 2.5 needs Python>=3.12, hence numpy 2.4.6.
# transformers' GGUF loader needs the `gguf` package to read and dequantize the model file.
# (pip also pulls in TL's own dependencies: accelerate, datasets, wandb, einops, jaxtyping, ...)
# SAELens 6.54.12 (scripts/make_sae_goldens.py, scripts/bench_sae_torch.py) co-installs with these
# exact pins: it only adds its own dependencies (nltk, plotly, scipy, statsmodels, ...).
PINS=(
  "torch==2.15.0"
  "transformer-lens==3.9.0"
  "transformers==5.23.0"
  "tokenizers==0.23.3"
  "gguf==0.19.0"
  "safetensors==0.8.0"
  "numpy==2.4.6"
  "sae-lens==6.54.12"
)
STAMP="$VENV/.golden-pins"
want="$(printf '%s\n' "${PINS[@]}")"

if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  echo "setup_golden_venv: $VENV already has the pinned versions"
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup_golden_venv: creating $VENV with $("$PY" --version)"
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
echo "setup_golden_venv: installing ${PINS[*]}"
"$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar off "${PINS[@]}"

# Smoke test: every import the golden/benchmark scripts use.
"$VENV/bin/python" - <<'PYEOF'
import torch, transformers, transformer_lens, gguf, safetensors, numpy
from transformer_lens import HookedTransformer, HookedTransformerConfig  # noqa: F401
from transformer_lens.pretrained.weight_conversions import convert_gpt2_weights, convert_llama_weights  # noqa: F401
from transformer_lens.pretrained.weight_conversions import convert_gemma_weights  # noqa: F401
import sae_lens  # noqa: F401
from sae_lens import SAE, HookedSAETransformer  # noqa: F401
import importlib.metadata as md
print("setup_golden_venv: ok:", ", ".join(
    f"{p}=={md.version(p)}" for p in
    ["torch", "transformer-lens", "transformers", "tokenizers", "gguf", "safetensors", "numpy",
     "sae-lens"]))
PYEOF
printf '%s\n' "$want" > "$STAMP"
