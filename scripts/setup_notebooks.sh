#!/usr/bin/env bash
# Set up everything needed to run the Rust notebooks in notebooks/ headlessly (and in Jupyter):
#   1. evcxr_jupyter (the Rust kernel), installed with `cargo install` (5-20 min, once);
#   2. .venv-jupyter/, a Python venv with pinned jupyter / nbclient / nbconvert / ipykernel;
#   3. the evcxr kernel spec in the project-local Jupyter data dir .jupyter/kernels/rust, with
#      kernel.json "env" settings that make notebook code fast and let runs reuse builds.
#
# Usage:   bash scripts/setup_notebooks.sh
# Then:    bash scripts/run_notebooks.sh                      # execute + check every notebook
#          JUPYTER_DATA_DIR=$PWD/.jupyter .venv-jupyter/bin/jupyter lab   # interactive use
#
# Idempotent and safe on a fresh machine (CI): each step is skipped when already done. Needs
# cargo (rustup toolchain) and python3 (with the venv module) on PATH, and the package
# registries reachable the first time.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"

EVCXR_VERSION=0.22.0
VENV=.venv-jupyter
PY=${PYTHON:-python3}
# Versions verified together with evcxr_jupyter 0.22.0 on Python 3.11.
PINS=(
  "jupyter==1.1.1"
  "nbclient==0.11.0"
  "nbconvert==7.17.2"
  "ipykernel==7.4.0"
  "nbformat==5.11.1"
  "jupyter_client==8.10.0"
)
JUPYTER_DIR="$ROOT/.jupyter"            # project-local JUPYTER_DATA_DIR (gitignored)
KERNEL_DIR="$JUPYTER_DIR/kernels/rust"
EVCXR_TMP="$ROOT/.evcxr/tmp"            # evcxr's cargo project + target/, kept between runs

say() { echo "setup_notebooks: $*"; }

# ---- 1. evcxr_jupyter ---------------------------------------------------------------------
command -v cargo >/dev/null || { say "cargo not found on PATH (install rustup first)"; exit 1; }
if cargo install --list | grep -q "^evcxr_jupyter v${EVCXR_VERSION}:"; then
  say "evcxr_jupyter ${EVCXR_VERSION} already installed"
else
  say "installing evcxr_jupyter ${EVCXR_VERSION} with cargo (takes 5-20 minutes)"
  start=$(date +%s)
  cargo install --locked evcxr_jupyter --version "${EVCXR_VERSION}"
  say "evcxr_jupyter installed in $(( $(date +%s) - start )) s"
fi
CARGO_BIN="${CARGO_INSTALL_ROOT:-${CARGO_HOME:-$HOME/.cargo}}/bin"
EVCXR_BIN="$CARGO_BIN/evcxr_jupyter"
[ -x "$EVCXR_BIN" ] || EVCXR_BIN="$(command -v evcxr_jupyter || true)"
[ -x "$EVCXR_BIN" ] || { say "cannot find the evcxr_jupyter binary after installing it"; exit 1; }

# ---- 2. Python venv with Jupyter -----------------------------------------------------------
STAMP="$VENV/.jupyter-pins"
want="$(printf '%s\n' "${PINS[@]}")"
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  say "$VENV already has the pinned versions"
else
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV with $("$PY" --version)"
    "$PY" -m venv "$VENV"
  fi
  say "installing ${PINS[*]}"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --progress-bar off "${PINS[@]}"
  "$VENV/bin/python" -c "import nbclient, nbconvert, nbformat, jupyter_client, ipykernel"
  echo "$want" > "$STAMP"
fi

# ---- 3. Kernel spec ------------------------------------------------------------------------
# `evcxr_jupyter --install` ignores JUPYTER_DATA_DIR (it would write ~/.local/share/jupyter/...),
# but it honours JUPYTER_PATH, so point that at the project-local dir. It rewrites kernel.json
# without our "env", which is added back below; this runs every time (cheap) so that the
# absolute paths in kernel.json follow the checkout.
mkdir -p "$JUPYTER_DIR" "$EVCXR_TMP"
JUPYTER_PATH="$JUPYTER_DIR" "$EVCXR_BIN" --install >/dev/null
[ -f "$KERNEL_DIR/kernel.json" ] || { say "evcxr_jupyter --install wrote no $KERNEL_DIR/kernel.json"; exit 1; }

"$VENV/bin/python" - "$KERNEL_DIR/kernel.json" "$EVCXR_BIN" "$EVCXR_TMP" <<'PYEOF'
import json, sys
path, binary, tmpdir = sys.argv[1:4]
spec = json.load(open(path))
spec["argv"][0] = binary
spec["display_name"] = "Rust (saescope)"
spec["env"] = {
    # evcxr compiles notebook code with [profile.dev] opt-level=2 plus debug assertions and
    # overflow checks; without the checks candle runs ~2.3x faster.
    "CARGO_PROFILE_DEV_DEBUG_ASSERTIONS": "false",
    "CARGO_PROFILE_DEV_OVERFLOW_CHECKS": "false",
    # A fixed build folder: later kernel starts reuse the compiled dependencies.
    "EVCXR_TMPDIR": tmpdir,
}
json.dump(spec, open(path, "w"), indent=2)
PYEOF
say "kernel spec: $KERNEL_DIR/kernel.json"

JUPYTER_DATA_DIR="$JUPYTER_DIR" "$VENV/bin/jupyter" kernelspec list | grep -q "^ *rust " \
  || { say "jupyter does not see the rust kernel in $JUPYTER_DIR"; exit 1; }
say "ready: run scripts/run_notebooks.sh"
