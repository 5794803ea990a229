#!/usr/bin/env bash
# Assemble saescope's default offline training corpus into data/corpus/ (gitignored).
#
# Sources: Debian 12 ("bookworm") packages fetched with `apt-get download` (never installed) and
# unpacked with `dpkg-deb -x` into a temporary directory:
#   python3.11-doc          reST sources of the Python documentation (html/_sources/**.rst.txt)  prose
#   debian-reference-en     the Debian Reference (HTML chapters, converted to text)                prose
#   fortunes                fortune cookies (one document per fortune)                             prose
#   libpython3.11-stdlib    Python standard-library source (*.py)                                  code
#   libpython3.11-minimal   Python core standard-library source (*.py)                             code
#
# Versions: Debian replaces a package version when a security update lands, so no exact version
# is pinned. Each package accepts any Debian revision of one upstream release (PACKAGES below,
# e.g. `3.11.2-6+deb12u*`); the newest such version the archive offers is taken (after an
# `apt-get update` if the package lists know none). The committed reference manifest
# data/corpus.manifest.json describes the build the shipped SAE was trained on; a build is
# accepted when every package is the same upstream release and gives the same documents and
# bytes within tolerances (documents 1 %, bytes 2 %; scripts/corpus/build_corpus.py). What a
# build used (versions, .deb sha256s, shard hashes) is written to data/corpus/manifest.json.
# `--update-manifest` rewrites the reference (use it deliberately, after changing PACKAGES).
#
# Output: data/corpus/corpus-NNNNN.jsonl, one document per line: {"text": ..., "source": "pkg:path"}.
# Documents are ordered by sha256 of their source id, so every prefix of the corpus mixes prose
# and code. Idempotent: when data/corpus/.complete matches the reference it exits at once.
#
# Usage: scripts/setup_corpus.sh [--update-manifest] [--force]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/data/corpus"
MANIFEST="$ROOT/data/corpus.manifest.json"
BUILD_PY="$ROOT/scripts/corpus/build_corpus.py"
# package=accepted versions (a shell glob over Debian versions of one upstream release)
PACKAGES=(
  "python3.11-doc=3.11.2-6+deb12u*"
  "debian-reference-en=2.100*"
  "fortunes=1:1.99.1-7.3*"
  "libpython3.11-stdlib=3.11.2-6+deb12u*"
  "libpython3.11-minimal=3.11.2-6+deb12u*"
)

UPDATE=0
FORCE=0
for a in "$@"; do
  case "$a" in
    --update-manifest) UPDATE=1 ;;
    --force) FORCE=1 ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "setup_corpus.sh: unknown argument $a (use --update-manifest, --force)" >&2; exit 2 ;;
  esac
done
say() { echo "corpus: $*"; }

PY="$(command -v python3 || true)"
[ -n "$PY" ] || { echo "setup_corpus.sh: python3 is required (for text extraction)" >&2; exit 1; }

# The build is complete and matches this reference manifest and this extraction code.
stamp() { cat "$MANIFEST" "$BUILD_PY" | sha256sum | cut -d' ' -f1; }
if [ "$UPDATE" = 0 ] && [ "$FORCE" = 0 ] && [ -f "$MANIFEST" ] && [ -f "$OUT/.complete" ] \
    && [ "$(cat "$OUT/.complete")" = "$(stamp)" ]; then
  say "up to date ($OUT; $(grep -c '' "$OUT"/corpus-*.jsonl | awk -F: '{s+=$2} END {print s}') documents)"
  exit 0
fi

for tool in apt-get apt-cache dpkg dpkg-deb sha256sum; do
  command -v "$tool" >/dev/null || { echo "setup_corpus.sh: $tool is required (a Debian system)" >&2; exit 1; }
done
SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi

# The newest version of package $1 the package lists offer that matches the glob $2 (empty if none).
newest() {
  local best="" v
  while read -r v; do
    # shellcheck disable=SC2254
    case "$v" in $2) ;; *) continue ;; esac
    if [ -z "$best" ] || dpkg --compare-versions "$v" gt "$best"; then best="$v"; fi
  done < <(apt-cache madison "$1" 2>/dev/null | awk -F'|' '{gsub(/ /, "", $2); print $2}')
  echo "$best"
}

resolve() {
  PINS=()
  local p name glob v
  for p in "${PACKAGES[@]}"; do
    name="${p%%=*}"; glob="${p#*=}"
    v="$(newest "$name" "$glob")"
    [ -n "$v" ] || return 1
    PINS+=("$name=$v")
  done
}

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
chmod 755 "$WORK"  # apt's sandbox user must be able to write the .debs here
cd "$WORK"
download() { apt-get download "${PINS[@]}" >"$WORK/apt.log" 2>&1; }

if ! { resolve && say "fetching ${PINS[*]} with apt-get download" && download; }; then
  say "the package lists offer no matching version (or the download failed): running apt-get update"
  $SUDO apt-get update >"$WORK/update.log" 2>&1 || { cat "$WORK/update.log" >&2; }
  if ! { resolve && say "fetching ${PINS[*]} with apt-get download" && download; }; then
    [ -f "$WORK/apt.log" ] && cat "$WORK/apt.log" >&2
    echo >&2
    echo "setup_corpus.sh: cannot download the corpus packages. Wanted, and what the archive offers:" >&2
    for p in "${PACKAGES[@]}"; do
      name="${p%%=*}"
      offers="$(apt-cache madison "$name" 2>/dev/null | awk -F'|' '{gsub(/ /, "", $2); printf "%s ", $2}')"
      [ -n "$offers" ] || offers="nothing (not in the package sources of this machine)"
      echo "  $name ${p#*=}: $offers" >&2
    done
    echo "These are Debian 12 (bookworm) packages: the machine's apt sources must include bookworm and" >&2
    echo "bookworm-security. If an upstream release has left the archive, change PACKAGES in" >&2
    echo "scripts/setup_corpus.sh and run it with --update-manifest (the corpus, and the shipped SAE's" >&2
    echo "training data, will change)." >&2
    exit 1
  fi
fi

mkdir -p "$WORK/x"
for p in "${PINS[@]}"; do
  name="${p%%=*}"
  deb="$(ls "$WORK"/"${name}"_*.deb | head -n1)"
  mkdir -p "$WORK/x/$name"
  dpkg-deb -x "$deb" "$WORK/x/$name"
done

mkdir -p "$OUT"
rm -f "$OUT"/corpus-*.jsonl "$OUT/.complete" "$OUT/manifest.json"
ACCEPT="$(printf '%s ' "${PACKAGES[@]}")"
SAESCOPE_CORPUS_ACCEPT="$ACCEPT" "$PY" "$BUILD_PY" "$WORK" "$OUT" "$MANIFEST" "$UPDATE" "${PINS[@]}"
stamp >"$OUT/.complete"
