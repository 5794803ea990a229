#!/usr/bin/env bash
# Execute notebooks headlessly with the evcxr Rust kernel and check the results.
#
# Usage:   bash scripts/run_notebooks.sh [--publish] [NOTEBOOK.ipynb ...]  (default: notebooks/*.ipynb)
# Needs:   bash scripts/setup_notebooks.sh (once)
#
# Each notebook runs with nbconvert from the notebooks/ directory as the working directory
# (so `:dep saescope = { path = ".." }` resolves), with --allow-errors so that every cell runs.
# The executed copies go to notebooks/out/ (gitignored). scripts/check_notebooks.py then fails
# the run if any cell has an error output, panicked or wrote to stderr (where evcxr reports
# errors returned by `?`), or lacks an output that its metadata declares (see that script).
# Course notebooks are committed executed, with outputs: the check also fails when a committed
# notebook in notebooks/ has no outputs or no inline SVG. `--publish` writes each executed
# notebook that passes back over the committed one (run it after changing a notebook).
# The last line is a summary: `notebooks: N passed, M failed`; the exit status is non-zero when
# any notebook failed.
#
# Environment: NB_CELL_TIMEOUT (seconds per cell, default 1800; the first `:dep` cell compiles
# saescope and its dependencies, several minutes on a cold build folder).
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="$ROOT/.venv-jupyter"
OUT="$ROOT/notebooks/out"
TIMEOUT="${NB_CELL_TIMEOUT:-1800}"

# Jupyter finds the rust kernel spec (written by setup_notebooks.sh) here. JUPYTER_PATH is left
# unset on purpose: evcxr re-installs its spec, without our "env", wherever JUPYTER_PATH points
# when it finds an older version.txt there.
export JUPYTER_DATA_DIR="$ROOT/.jupyter"

if [ ! -x "$VENV/bin/jupyter" ] || [ ! -f "$JUPYTER_DATA_DIR/kernels/rust/kernel.json" ]; then
  echo "run_notebooks: not set up; run scripts/setup_notebooks.sh first" >&2
  exit 2
fi

publish=()
if [ "${1:-}" = "--publish" ]; then
  publish=(--publish)
  shift
fi
notebooks=()
if [ $# -gt 0 ]; then
  for nb in "$@"; do
    [ -f "$nb" ] || { echo "run_notebooks: no such notebook: $nb" >&2; exit 2; }
    notebooks+=("$(cd "$(dirname "$nb")" && pwd)/$(basename "$nb")")
  done
else
  shopt -s nullglob
  for nb in "$ROOT"/notebooks/*.ipynb; do notebooks+=("$nb"); done
  shopt -u nullglob
fi
if [ ${#notebooks[@]} -eq 0 ]; then
  echo "run_notebooks: no notebooks found in notebooks/" >&2
  echo "notebooks: 0 passed, 0 failed"
  exit 1
fi

mkdir -p "$OUT" "$ROOT/.evcxr/tmp"
# evcxr builds notebook code in its own cargo project (.evcxr/tmp, see kernel.json), which would
# resolve dependency versions afresh; seed its lock file from the project's so that notebooks
# compile against the same versions as `cargo build`.
if [ -f "$ROOT/Cargo.lock" ] && [ "$ROOT/Cargo.lock" -nt "$ROOT/.evcxr/tmp/Cargo.lock" ]; then
  cp "$ROOT/Cargo.lock" "$ROOT/.evcxr/tmp/Cargo.lock"
fi
executed=()
for nb in "${notebooks[@]}"; do
  name="$(basename "$nb")"
  out="$OUT/$name"
  rm -f "$out"
  echo "run_notebooks: executing $name (cell timeout ${TIMEOUT}s)"
  start=$(date +%s)
  (
    cd "$ROOT/notebooks" &&
      "$VENV/bin/jupyter" nbconvert --to notebook --execute --allow-errors \
        --ExecutePreprocessor.timeout="$TIMEOUT" \
        --ExecutePreprocessor.startup_timeout=120 \
        --output-dir "$OUT" --output "$name" "$nb"
  )
  rc=$?
  echo "run_notebooks: $name took $(( $(date +%s) - start )) s (nbconvert exit $rc)"
  executed+=("$nb" "$out")
done

"$VENV/bin/python" "$ROOT/scripts/check_notebooks.py" "${publish[@]}" "${executed[@]}"
