#!/usr/bin/env bash
# Run every test: lint gates (rustfmt, clippy, rustdoc), fetch the default model and build the
# default corpus, cargo tests (release profile: build once, test many, including the loader
# fuzzing test), then execute every notebook headlessly in a real Jupyter with the evcxr kernel.
# Each setup step is idempotent and says what it fetches; a second run reuses everything.
# Usage: scripts/test.sh            (SAESCOPE_SKIP_NOTEBOOKS=1 to run only the cargo tests)
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
step() { echo "== scripts/test.sh: $* ($(( $(date +%s) - start ))s)"; }
step "cargo fmt --check"
cargo fmt --all --check
scripts/fetch_model.sh
scripts/setup_corpus.sh               # default offline corpus (Debian packages) for data/training/eval tests
scripts/setup_chromium.sh             # headless chromium for the dashboard HTML test (tests/dashboard_output.rs)
step "cargo build --release --all-targets"
cargo build --release --all-targets   # benches and examples must compile too
step "cargo clippy --release --all-targets -- -D warnings"
cargo clippy --release --all-targets -- -D warnings
step "cargo doc --no-deps (RUSTDOCFLAGS=-D warnings)"
RUSTDOCFLAGS="-D warnings" cargo doc --release --no-deps
step "cargo test --release"
cargo test --release                  # unit, integration, CLI, golden, fuzz and doc tests
if [ "${SAESCOPE_SKIP_NOTEBOOKS:-0}" != "1" ]; then
  step "notebooks"
  scripts/setup_notebooks.sh
  scripts/run_notebooks.sh notebooks/*.ipynb tests/notebooks/*.ipynb   # course notebooks + kernel regression tests
fi
echo "scripts/test.sh: all tests passed in $(( $(date +%s) - start ))s"
