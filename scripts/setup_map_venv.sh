#!/usr/bin/env bash
# Create .venv-map/, the Python environment with the reference implementations of latent maps
# (umap-learn, hdbscan, scikit-learn's trustworthiness / adjusted_rand_score) for
# scripts/make_map_goldens.py and scripts/bench_map.sh.
#
# Usage:   bash scripts/setup_map_venv.sh
# Then:    .venv-map/bin/python scripts/make_map_goldens.py
#
# The Rust crate and its tests never need this venv: the goldens it writes are committed under
# tests/fixtures/map/.
#
# Idempotent: when .venv-map/ already holds exactly these pins (recorded in a stamp file) the
# script does nothing. Everything comes from the Python package registry through pip.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv-map
PY=${PYTHON:-python3}

# Exact versions verified to work together on Python 3.11 (what pip resolved for umap-learn
# 0.5.12 + hdbscan 0.8.44, pinned).
PINS=(
  "umap-learn==0.5.12"
  "hdbscan==0.8.44"
  "pynndescent==0.7.0"
  "numba==0.68.1"
  "llvmlite==0.50.0"
  "scikit-learn==1.9.1"
  "scipy==1.17.1"
  "numpy==2.4.6"
  "joblib==1.6.0"
  "threadpoolctl==3.8.0"
  "safetensors==0.8.0"
  "tqdm==4.70.1"
  "narwhals==2.29.0"
  "cloudpickle==3.1.3"
)
STAMP="$VENV/.map-pins"
want="$(printf '%s\n' "${PINS[@]}")"

if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  echo "setup_map_venv: $VENV already has the pinned versions"
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup_map_venv: creating $VENV with $("$PY" --version)"
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
echo "setup_map_venv: installing ${PINS[*]}"
"$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar off "${PINS[@]}"

# Smoke test: every import make_map_goldens.py and bench_map.sh need.
"$VENV/bin/python" - <<'PYEOF'
import umap, hdbscan, sklearn, numpy, safetensors  # noqa: F401
from sklearn.manifold import trustworthiness  # noqa: F401
from sklearn.metrics import adjusted_rand_score  # noqa: F401
from safetensors.numpy import load_file, save_file  # noqa: F401
import importlib.metadata as md
print("setup_map_venv: ok:", ", ".join(
    f"{p}=={md.version(p)}" for p in
    ["umap-learn", "hdbscan", "pynndescent", "numba", "scikit-learn", "numpy"]))
PYEOF
printf '%s\n' "$want" > "$STAMP"
