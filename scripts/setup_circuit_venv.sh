#!/usr/bin/env bash
# Create .venv-circuit/, the Python environment that runs circuit-tracer (the reference
# implementation of attribution graphs) for scripts/make_graph_goldens.py.
#
# Usage:   bash scripts/setup_circuit_venv.sh
# Then:    .venv-circuit/bin/python scripts/make_graph_goldens.py
#
# It is separate from .venv-golden/ because circuit-tracer 0.5.0 needs transformers>=4.56,<=4.57.3
# and huggingface-hub<1.0, while .venv-golden/ has TransformerLens 3.9.0, which needs
# transformers>=5.9. The Rust crate and its tests never need this venv: the goldens it writes are
# committed under tests/fixtures/circuits/.
#
# Idempotent: when .venv-circuit/ already holds exactly these pins (recorded in a stamp file) the
# script does nothing. Everything comes from the Python package registry through pip; torch is
# the registry's default Linux wheel (it drags in the CUDA runtime wheels, a few GB, but runs
# fine on CPU).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv-circuit
PY=${PYTHON:-python3}

# Exact versions verified to work together on Python 3.11. circuit-tracer 0.5.0 requires
# transformer-lens>=2.16, transformers>=4.56,<=4.57.3, huggingface-hub<1.0, nnsight>=0.6,
# tokenizers>=0.21; transformers 4.57.3 in turn needs tokenizers<=0.23.0. The TransformerLens,
# transformers, huggingface-hub and nnsight versions are those of circuit-tracer's own uv.lock
# (TransformerLens 3.2.1 is also the newest release that accepts transformers 4.57); torch,
# safetensors and numpy match .venv-golden/. SAELens 6.54.12 (the version .venv-golden/ has)
# co-installs with these and writes the transcoder folders; gguf lets transformers dequantize the
# SmolLM2 GGUF for `make_graph_goldens.py --smollm2`.
PINS=(
  "circuit-tracer==0.5.0"
  "torch==2.15.0"
  "transformer-lens==3.2.1"
  "transformers==4.57.3"
  "tokenizers==0.22.2"
  "huggingface-hub==0.36.2"
  "nnsight==0.7.0"
  "sae-lens==6.54.12"
  "gguf==0.19.0"
  "safetensors==0.8.0"
  "numpy==2.4.6"
)
STAMP="$VENV/.circuit-pins"
want="$(printf '%s\n' "${PINS[@]}")"

if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  echo "setup_circuit_venv: $VENV already has the pinned versions"
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup_circuit_venv: creating $VENV with $("$PY" --version)"
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
echo "setup_circuit_venv: installing ${PINS[*]}"
"$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar off "${PINS[@]}"

# Smoke test: every import make_graph_goldens.py (and the make_goldens / make_sae_goldens helpers
# it reuses) needs.
"$VENV/bin/python" - <<'PYEOF'
import torch, transformers, transformer_lens, safetensors, numpy, gguf  # noqa: F401
from transformer_lens import HookedTransformer, HookedTransformerConfig  # noqa: F401
from transformer_lens.pretrained.weight_conversions import convert_llama_weights  # noqa: F401
import circuit_tracer  # noqa: F401
from circuit_tracer import ReplacementModel, attribute  # noqa: F401
from circuit_tracer.graph import compute_graph_scores, prune_graph  # noqa: F401
from circuit_tracer.replacement_model.replacement_model_transformerlens import (  # noqa: F401
    TransformerLensReplacementModel,
)
from circuit_tracer.transcoder import SingleLayerTranscoder, TranscoderSet  # noqa: F401
from circuit_tracer.transcoder.activation_functions import JumpReLU  # noqa: F401
from circuit_tracer.utils.create_graph_files import create_graph_files  # noqa: F401
from sae_lens import SAE  # noqa: F401
from sae_lens.saes import JumpReLUTranscoder, JumpReLUTranscoderConfig  # noqa: F401
import importlib.metadata as md
print("setup_circuit_venv: ok:", ", ".join(
    f"{p}=={md.version(p)}" for p in
    ["circuit-tracer", "torch", "transformer-lens", "transformers", "tokenizers",
     "huggingface-hub", "nnsight", "sae-lens", "gguf", "safetensors", "numpy"]))
PYEOF
printf '%s\n' "$want" > "$STAMP"
