#!/usr/bin/env bash
# Run every test: fetch the default model, cargo tests (release profile: build once, test many),
# then execute every notebook headlessly in a real Jupyter with the evcxr kernel.
# Usage: scripts/test.sh            (SAESCOPE_SKIP_NOTEBOOKS=1 to run only the cargo tests)
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
scripts/fetch_model.sh
scripts/setup_corpus.sh               # default offline corpus (Debian packages) for data/training tests
scripts/setup_chromium.sh             # headless chromium for the dashboard HTML test (tests/dashboard_output.rs)
cargo build --release --all-targets   # benches and examples must compile too
cargo test --release                  # unit, integration, CLI, golden and doc tests
if [ "${SAESCOPE_SKIP_NOTEBOOKS:-0}" != "1" ]; then
  scripts/setup_notebooks.sh
  scripts/run_notebooks.sh notebooks/*.ipynb tests/notebooks/*.ipynb   # course notebooks + kernel regression tests
fi
echo "scripts/test.sh: all tests passed in $(( $(date +%s) - start ))s"
