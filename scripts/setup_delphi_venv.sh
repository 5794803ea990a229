#!/usr/bin/env bash
# Create .venv-delphi/, the Python environment that runs EleutherAI's delphi (eai-delphi, the
# reference for autointerp's detection and fuzzing scores) for scripts/make_autointerp_goldens.py.
#
# Usage:   bash scripts/setup_delphi_venv.sh
# Then:    .venv-delphi/bin/python scripts/make_autointerp_goldens.py
#
# eai-delphi is installed without its dependencies: they include vLLM, sentence-transformers,
# faiss and sparsify (GPU inference and embedding search that the scorers under test never call).
# The golden script stubs those modules; everything delphi's classifier scorers and its result
# analysis do run (plotly: its result_analysis module imports it) is installed at exact versions. The Rust crate and its tests never need
# this venv: the goldens it writes are committed under tests/fixtures/autointerp/.
#
# Idempotent: when .venv-delphi/ already holds exactly these pins (recorded in a stamp file) the
# script does nothing. Everything comes from the Python package registry through pip.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv-delphi
PY=${PYTHON:-python3}

# torch, numpy, pandas, transformers and the small libraries match .venv-golden/.
PINS=(
  "torch==2.15.0"
  "numpy==2.4.6"
  "pandas==3.1.1"
  "transformers==5.23.0"
  "safetensors==0.8.0"
  "orjson==3.13.0"
  "jaxtyping==0.3.11"
  "beartype==0.23.1"
  "blobfile==3.3.0"
  "simple-parsing==0.1.9"
  "asyncer==0.0.18"
  "httpx==0.29.0"
  "tqdm==4.70.1"
  "scikit-learn==1.9.1"
  "plotly==7.1.0"
)
DELPHI="eai-delphi==0.1.3"
STAMP="$VENV/.delphi-pins"
want="$(printf '%s\n' "${PINS[@]}" "$DELPHI")"

if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  echo "setup_delphi_venv: $VENV already has the pinned versions"
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup_delphi_venv: creating $VENV with $("$PY" --version)"
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
echo "setup_delphi_venv: installing ${PINS[*]}"
"$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar off "${PINS[@]}"
echo "setup_delphi_venv: installing $DELPHI without its GPU/embedding dependencies"
"$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar off --no-deps "$DELPHI"

# Smoke test: the golden script's imports (with its stubs).
"$VENV/bin/python" scripts/make_autointerp_goldens.py --check-imports
echo "$want" > "$STAMP"
echo "setup_delphi_venv: ok"
