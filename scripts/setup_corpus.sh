#!/usr/bin/env bash
# Assemble saescope's default offline training corpus into data/corpus/ (gitignored).
#
# Sources: Debian packages fetched with `apt-get download` (never installed) and unpacked with
# `dpkg-deb -x` into a temporary directory:
#   python3.11-doc          reST sources of the Python documentation (html/_sources/**.rst.txt)  prose
#   debian-reference-en     the Debian Reference (HTML chapters, converted to text)                prose
#   fortunes                fortune cookies (one document per fortune)                             prose
#   libpython3.11-stdlib    Python standard-library source (*.py)                                  code
#   libpython3.11-minimal   Python core standard-library source (*.py)                             code
#
# Reproducibility: the versions are pinned below (PINS). The committed manifest
# data/corpus.manifest.json records each .deb's sha256, its licence, and file counts / bytes of
# what went into the corpus, plus the sha256 of every shard written. A run re-downloads the
# pinned versions, checks each .deb against the manifest's sha256 and each shard against the
# manifest's shard hash, and fails with a clear message if anything differs (a version that
# vanished from the archive or a changed file). `--update-manifest` rewrites the manifest (use
# it deliberately after changing PINS).
#
# Output: data/corpus/corpus-NNNNN.jsonl, one document per line: {"text": ..., "source": "pkg:path"}.
# Documents are ordered by sha256 of their source id, so every prefix of the corpus mixes prose
# and code. Idempotent: when data/corpus/.complete matches the manifest it exits at once.
#
# Usage: scripts/setup_corpus.sh [--update-manifest] [--force]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/data/corpus"
MANIFEST="$ROOT/data/corpus.manifest.json"
PINS=(
  "python3.11-doc=3.11.2-6+deb12u7"
  "debian-reference-en=2.100"
  "fortunes=1:1.99.1-7.3"
  "libpython3.11-stdlib=3.11.2-6+deb12u7"
  "libpython3.11-minimal=3.11.2-6+deb12u7"
)

UPDATE=0
FORCE=0
for a in "$@"; do
  case "$a" in
    --update-manifest) UPDATE=1 ;;
    --force) FORCE=1 ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "setup_corpus.sh: unknown argument $a (use --update-manifest, --force)" >&2; exit 2 ;;
  esac
done

PY="$(command -v python3 || true)"
[ -n "$PY" ] || { echo "setup_corpus.sh: python3 is required (for text extraction)" >&2; exit 1; }

# Fast path: already built from this manifest.
if [ "$UPDATE" = 0 ] && [ "$FORCE" = 0 ] && [ -f "$MANIFEST" ] && [ -f "$OUT/.complete" ]; then
  want="$(sha256sum "$MANIFEST" | cut -d' ' -f1)"
  if [ "$(cat "$OUT/.complete")" = "$want" ]; then
    echo "corpus: up to date ($OUT)"
    exit 0
  fi
fi

for tool in apt-get dpkg-deb sha256sum; do
  command -v "$tool" >/dev/null || { echo "setup_corpus.sh: $tool is required" >&2; exit 1; }
done

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
chmod 755 "$WORK"  # apt's sandbox user must be able to write the .debs here

cd "$WORK"
dl() {
  apt-get download "${PINS[@]}" >"$WORK/apt.log" 2>&1
}
if ! dl; then
  echo "apt-get download failed; running apt-get update and retrying" >&2
  apt-get update >/dev/null 2>&1 || true
  if ! dl; then
    cat "$WORK/apt.log" >&2
    echo >&2
    echo "setup_corpus.sh: cannot download the pinned package versions:" >&2
    for p in "${PINS[@]}"; do
      name="${p%%=*}"
      echo "  pinned $p; the archive offers: $(apt-cache policy "$name" 2>/dev/null | awk '/Candidate:/ {print $2}')" >&2
    done
    echo "If a pinned version has left the archive, change PINS in scripts/setup_corpus.sh and run it with --update-manifest (the token count will change)." >&2
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
rm -f "$OUT"/corpus-*.jsonl "$OUT/.complete"

"$PY" - "$WORK" "$OUT" "$MANIFEST" "$UPDATE" "${PINS[@]}" <<'PYEOF'
import glob, hashlib, html.parser, json, os, re, sys

work, out, manifest_path, update = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
pins = sys.argv[5:]

LICENSES = {
    "python3.11-doc": "PSF-2.0 (Python documentation; see copyright)",
    "debian-reference-en": "GPL-2+",
    "fortunes": "BSD-4-Clause-UC and public domain (see copyright)",
    "libpython3.11-stdlib": "PSF-2.0",
    "libpython3.11-minimal": "PSF-2.0",
}
KIND = {
    "python3.11-doc": "prose",
    "debian-reference-en": "prose",
    "fortunes": "prose",
    "libpython3.11-stdlib": "code",
    "libpython3.11-minimal": "code",
}
MAX_FILE_BYTES = 400_000  # skips generated dumps such as pydoc_data/topics.py


def sha256_file(p):
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_text(p):
    b = open(p, "rb").read()
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return b.decode("latin-1")


class HtmlText(html.parser.HTMLParser):
    BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "table",
             "dt", "dd", "title", "section", "blockquote"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts, self.skip, self.pre = [], 0, 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self.skip += 1
        if tag == "pre":
            self.pre += 1
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self.skip = max(0, self.skip - 1)
        if tag == "pre":
            self.pre = max(0, self.pre - 1)
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data):
        if self.skip:
            return
        if not self.pre:
            data = " ".join(data.split()) + (" " if data[-1:].isspace() else "")
            if data.strip() == "":
                return
        self.parts.append(data)

    def text(self):
        lines = [l.rstrip() for l in "".join(self.parts).split("\n")]
        outl, blank = [], False
        for l in lines:
            if l.strip() == "":
                if not blank and outl:
                    outl.append("")
                blank = True
            else:
                outl.append(l)
                blank = False
        return "\n".join(outl).strip() + "\n"


def docs_for(name, root):
    """(source id, text) for one unpacked package, in sorted path order."""
    if name == "python3.11-doc":
        files = sorted(glob.glob(os.path.join(root, "usr/share/doc/python3.11/html/_sources/**/*.rst.txt"), recursive=True))
        for f in files:
            yield os.path.relpath(f, root), read_text(f)
    elif name == "debian-reference-en":
        files = sorted(glob.glob(os.path.join(root, "usr/share/debian-reference/*.en.html")))
        for f in files:
            p = HtmlText()
            p.feed(read_text(f))
            yield os.path.relpath(f, root), p.text()
    elif name == "fortunes":
        d = os.path.join(root, "usr/share/games/fortunes")
        for f in sorted(os.listdir(d)):
            full = os.path.join(d, f)
            if f.endswith(".dat") or f.endswith(".u8") or os.path.islink(full) or not os.path.isfile(full):
                continue
            for i, fortune in enumerate(read_text(full).split("\n%\n")):
                fortune = fortune.strip("%\n")
                if fortune.strip():
                    yield f"{os.path.relpath(full, root)}#{i}", fortune.rstrip() + "\n"
    else:  # python source
        files = sorted(glob.glob(os.path.join(root, "usr/lib/python3.11/**/*.py"), recursive=True))
        for f in files:
            if os.path.islink(f) or os.path.getsize(f) > MAX_FILE_BYTES:
                continue
            yield os.path.relpath(f, root), read_text(f)


old = None
if os.path.exists(manifest_path):
    old = json.load(open(manifest_path))
old_pkgs = {p["name"]: p for p in (old or {}).get("packages", [])}

packages, docs = [], []
errors = []
for pin in pins:
    name, version = pin.split("=", 1)
    deb = sorted(glob.glob(os.path.join(work, f"{name}_*.deb")))[0]
    root = os.path.join(work, "x", name)
    sha = sha256_file(deb)
    copyright_file = os.path.join(root, "usr/share/doc", name, "copyright")
    copyright_text = read_text(copyright_file) if os.path.exists(copyright_file) else ""
    n_docs = n_bytes = 0
    files = set()
    for sid, text in docs_for(name, root):
        if not text.strip():
            continue
        docs.append((hashlib.sha256(f"{name}:{sid}".encode()).hexdigest(), f"{name}:{sid}", text))
        files.add(sid.split("#")[0])
        n_docs += 1
        n_bytes += len(text.encode("utf-8"))
    packages.append({
        "name": name,
        "version": version,
        "deb": os.path.basename(deb),
        "sha256": sha,
        "kind": KIND[name],
        "license": LICENSES[name],
        "copyright_file": f"/usr/share/doc/{name}/copyright",
        "copyright_sha256": hashlib.sha256(copyright_text.encode()).hexdigest(),
        # DEP-5 `License:` short names found in the copyright file (non-DEP-5 files give none).
        "license_fields": sorted({v for v in (l.split(":", 1)[1].strip() for l in copyright_text.splitlines()
                                              if l.startswith("License:"))
                                  if re.fullmatch(r"[A-Za-z0-9.+-]+(?: (?:or|and) [A-Za-z0-9.+-]+)*", v)}),
        "files": len(files),
        "documents": n_docs,
        "text_bytes": n_bytes,
    })
    if not update and name in old_pkgs:
        o = old_pkgs[name]
        if o.get("version") != version or o.get("sha256") != sha:
            errors.append(f"{name}: manifest has {o.get('version')} sha256 {o.get('sha256')}, downloaded {version} sha256 {sha}")

docs.sort()
SHARD_BYTES = 4 << 20
shards, cur, cur_bytes, cur_docs = [], [], 0, 0


def flush():
    global cur, cur_bytes, cur_docs
    if not cur:
        return
    path = os.path.join(out, f"corpus-{len(shards):05d}.jsonl")
    data = "".join(cur).encode("utf-8")
    with open(path, "wb") as f:
        f.write(data)
    shards.append({"file": os.path.basename(path), "documents": cur_docs, "bytes": len(data),
                   "sha256": hashlib.sha256(data).hexdigest()})
    cur, cur_bytes, cur_docs = [], 0, 0


for _, sid, text in docs:
    line = json.dumps({"text": text, "source": sid}, ensure_ascii=False) + "\n"
    cur.append(line)
    cur_bytes += len(line)
    cur_docs += 1
    if cur_bytes >= SHARD_BYTES:
        flush()
flush()

if not update and old is not None:
    old_shards = {s["file"]: s.get("sha256") for s in old.get("shards", [])}
    new_shards = {s["file"]: s["sha256"] for s in shards}
    if old_shards and old_shards != new_shards:
        errors.append("the extracted corpus differs from the manifest's shard hashes (text extraction changed?)")

if errors:
    for f in glob.glob(os.path.join(out, "corpus-*.jsonl")):
        os.remove(f)
    sys.stderr.write("setup_corpus.sh: the downloaded packages do not match data/corpus.manifest.json:\n")
    for e in errors:
        sys.stderr.write(f"  {e}\n")
    sys.stderr.write("Pinned versions are in PINS in scripts/setup_corpus.sh; if the change is intended, rerun with --update-manifest.\n")
    sys.exit(1)

manifest = {
    "description": "saescope's default offline corpus: English prose and Python source from Debian packages "
                   "(apt-get download + dpkg-deb -x). Built by scripts/setup_corpus.sh into data/corpus/.",
    "format": "jsonl; one document per line: {\"text\": str, \"source\": \"package:path\"}; documents ordered by sha256(source)",
    "packages": packages,
    "shards": shards,
    "totals": {
        "documents": sum(s["documents"] for s in shards),
        "text_bytes": sum(p["text_bytes"] for p in packages),
        "prose_bytes": sum(p["text_bytes"] for p in packages if p["kind"] == "prose"),
        "code_bytes": sum(p["text_bytes"] for p in packages if p["kind"] == "code"),
    },
}
# The measured token count stays valid while the shards are byte-identical.
if old is not None and "tokens" in old and \
        {s["file"]: s.get("sha256") for s in old.get("shards", [])} == {s["file"]: s["sha256"] for s in shards}:
    manifest["tokens"] = old["tokens"]
if update or old is None:
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=2, ensure_ascii=False)
        f.write("\n")
    print(f"corpus: wrote {manifest_path}")
print(f"corpus: {manifest['totals']['documents']} documents, {manifest['totals']['text_bytes']} bytes "
      f"(prose {manifest['totals']['prose_bytes']}, code {manifest['totals']['code_bytes']}) in {len(shards)} shards under {out}")
PYEOF

sha256sum "$MANIFEST" | cut -d' ' -f1 >"$OUT/.complete"
