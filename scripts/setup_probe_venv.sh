#!/usr/bin/env bash
# Create .venv-probe/, the Python environment with SAEBench (sae-bench 0.6.0) that
# scripts/make_probe_goldens.py uses to write the absorption / sparse-probing goldens.
#
# Usage:   bash scripts/setup_probe_venv.sh
# Then:    cargo run --release --example probe_inputs -- /tmp/probe_golden 500 30 1
#          .venv-probe/bin/python scripts/make_probe_goldens.py /tmp/probe_golden
#
# Separate from .venv-golden/ because sae-bench 0.6.0 requires numpy<2.0. The Rust crate and its
# tests never need this venv: the goldens are committed under tests/fixtures/probe/.
#
# Idempotent: when .venv-probe/ already holds exactly these pins (recorded in a stamp file) the
# script does nothing. Everything comes from the Python package registry through pip; torch is
# the registry's default Linux wheel (it drags in the CUDA runtime wheels but runs on CPU).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv-probe
PY=${PYTHON:-python3}

# Verified together on Python 3.11: sae-bench 0.6.0 with what pip resolved for it (sae-lens
# 6.54.12, transformer-lens 3.9.0, scikit-learn 1.9.1, pandas 2.3.3, pyarrow for its parquet
# round trip), numpy pinned below 2 as sae-bench requires, torch as .venv-golden/. beartype and
# jaxtyping are the versions sae-bench's pyproject lists as tested: with beartype 0.23 the
# shape memo of train_probe_on_activations leaks into train_sklearn_probe, whose inputs are
# twice as long, and every top-k sparse probe fails its type check.
PINS=(
  "sae-bench==0.6.0"
  "sae-lens==6.54.12"
  "transformer-lens==3.9.0"
  "torch==2.15.0"
  "numpy==1.26.4"
  "scikit-learn==1.9.1"
  "pandas==2.3.3"
  "pyarrow==25.0.1"
  "safetensors==0.8.0"
  "beartype==0.14.1"
  "jaxtyping==0.3.3"
)
STAMP="$VENV/.probe-pins"
want="$(printf '%s\n' "${PINS[@]}")"

if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  echo "setup_probe_venv: $VENV already has the pinned versions"
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup_probe_venv: creating $VENV with $("$PY" --version)"
  "$PY" -m venv "$VENV"
fi
echo "setup_probe_venv: installing ${PINS[*]}"
"$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar off "${PINS[@]}"

# Smoke test: every import make_probe_goldens.py needs.
"$VENV/bin/python" - <<'PYEOF'
import torch, numpy, pandas, pyarrow, safetensors, sklearn  # noqa: F401
from sae_lens import SAE  # noqa: F401
from sae_bench.evals.absorption import feature_absorption, k_sparse_probing  # noqa: F401
from sae_bench.evals.absorption.feature_absorption_calculator import FeatureAbsorptionCalculator  # noqa: F401
from sae_bench.evals.absorption.main import _aggregate_results_df  # noqa: F401
from sae_bench.evals.absorption.probing import train_linear_probe_for_task  # noqa: F401
from sae_bench.evals.sparse_probing import probe_training  # noqa: F401
from sae_bench.sae_bench_utils import activation_collection  # noqa: F401
import importlib.metadata as md
print("setup_probe_venv: ok:", ", ".join(
    f"{p}=={md.version(p)}" for p in
    ["sae-bench", "sae-lens", "transformer-lens", "torch", "numpy", "scikit-learn", "pandas"]))
PYEOF
printf '%s\n' "$want" > "$STAMP"
