#!/usr/bin/env python3
"""Extract saescope's default corpus from unpacked Debian packages (called by scripts/setup_corpus.sh).

Usage: build_corpus.py WORK OUT REFERENCE_MANIFEST UPDATE NAME=VERSION...

WORK/NAME_*.deb are the downloaded packages, WORK/x/NAME their unpacked trees. Writes the shards
OUT/corpus-NNNNN.jsonl ({"text", "source"} per line, ordered by sha256 of the source id) and
OUT/manifest.json, which records what this build used: each package's version, .deb sha256,
documents and bytes, and every shard's hash.

The committed reference manifest (data/corpus.manifest.json) describes the build the shipped SAE
was trained on. Debian replaces package versions with security updates, so the check is by
tolerance, not by hash: each package must be the same upstream release (the version pattern in
the reference) and give about the same documents and bytes (TOLERANCE below). UPDATE=1 rewrites
the reference from this build instead of checking against it. Standard library only.
"""
import fnmatch, glob, hashlib, html.parser, json, os, re, sys

# Per package: documents may differ by max(2, 1 %), text bytes by 2 %, from the reference.
DOC_TOLERANCE, BYTE_TOLERANCE = 0.01, 0.02

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


def build(work, out, pins):
    packages, docs = [], []
    for pin in pins:
        name, version = pin.split("=", 1)
        deb = sorted(glob.glob(os.path.join(work, f"{name}_*.deb")))[0]
        root = os.path.join(work, "x", name)
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
            "sha256": sha256_file(deb),
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
    docs.sort()
    return packages, write_shards(out, docs)


def write_shards(out, docs, shard_bytes=4 << 20):
    shards, cur, cur_bytes, cur_docs = [], [], 0, 0

    def flush():
        nonlocal cur, cur_bytes, cur_docs
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
        if cur_bytes >= shard_bytes:
            flush()
    flush()
    return shards


def check(packages, reference):
    """Differences from the reference manifest beyond the tolerances (empty: accepted)."""
    errors = []
    ref = {p["name"]: p for p in reference.get("packages", [])}
    for p in packages:
        r = ref.get(p["name"])
        if r is None:
            errors.append(f"{p['name']}: not in the reference manifest")
            continue
        pattern = r.get("accept_versions", r["version"])
        if not fnmatch.fnmatchcase(p["version"], pattern):
            errors.append(f"{p['name']}: version {p['version']} is not the reference's upstream release ({pattern})")
        if abs(p["documents"] - r["documents"]) > max(2, DOC_TOLERANCE * r["documents"]):
            errors.append(f"{p['name']}: {p['documents']} documents, reference {r['documents']} (tolerance 1 %)")
        if abs(p["text_bytes"] - r["text_bytes"]) > BYTE_TOLERANCE * r["text_bytes"]:
            errors.append(f"{p['name']}: {p['text_bytes']} text bytes, reference {r['text_bytes']} (tolerance 2 %)")
    missing = set(ref) - {p["name"] for p in packages}
    errors += [f"{m}: in the reference manifest but not fetched" for m in sorted(missing)]
    return errors


def totals(packages, shards):
    return {
        "documents": sum(s["documents"] for s in shards),
        "text_bytes": sum(p["text_bytes"] for p in packages),
        "prose_bytes": sum(p["text_bytes"] for p in packages if p["kind"] == "prose"),
        "code_bytes": sum(p["text_bytes"] for p in packages if p["kind"] == "code"),
    }


def main():
    work, out, reference_path, update = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
    pins = sys.argv[5:]
    reference = json.load(open(reference_path)) if os.path.exists(reference_path) else None
    packages, shards = build(work, out, pins)
    built = {
        "description": "what scripts/setup_corpus.sh used on this machine (written by scripts/corpus/build_corpus.py)",
        "packages": packages,
        "shards": shards,
        "totals": totals(packages, shards),
    }
    if not update and reference is not None:
        errors = check(packages, reference)
        if errors:
            for f in glob.glob(os.path.join(out, "corpus-*.jsonl")):
                os.remove(f)
            sys.stderr.write(f"setup_corpus.sh: the corpus built here differs from {reference_path} beyond the tolerances:\n")
            for e in errors:
                sys.stderr.write(f"  {e}\n")
            sys.stderr.write("If the change is intended (a new upstream release in PACKAGES of scripts/setup_corpus.sh), "
                             "rerun with --update-manifest; the shipped SAE was trained on the reference build.\n")
            sys.exit(1)
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(built, f, indent=2, ensure_ascii=False)
        f.write("\n")
    if update or reference is None:
        accept = dict(p.split("=", 1) for p in os.environ.get("SAESCOPE_CORPUS_ACCEPT", "").split() if "=" in p)
        ref = dict(reference or {})
        ref.update({
            "description": "saescope's default offline corpus: English prose and Python source from Debian packages "
                           "(apt-get download + dpkg-deb -x), built by scripts/setup_corpus.sh into data/corpus/. "
                           "This is the reference build (the shipped SAE's corpus); other builds must be the same "
                           "upstream releases (accept_versions) and match documents and bytes within tolerances.",
            "format": "jsonl; one document per line: {\"text\": str, \"source\": \"package:path\"}; documents ordered by sha256(source)",
            "packages": [dict(p, accept_versions=accept.get(p["name"], p["version"])) for p in packages],
            "reference_shards": shards,
            "totals": totals(packages, shards),
        })
        ref.pop("shards", None)
        with open(reference_path, "w") as f:
            json.dump(ref, f, indent=2, ensure_ascii=False)
            f.write("\n")
        print(f"corpus: wrote {reference_path}")
    t = built["totals"]
    print(f"corpus: {t['documents']} documents, {t['text_bytes']} bytes (prose {t['prose_bytes']}, "
          f"code {t['code_bytes']}) in {len(shards)} shards under {out}")
    for p in packages:
        print(f"corpus:   {p['name']}={p['version']} sha256 {p['sha256'][:16]}… {p['documents']} documents, {p['text_bytes']} bytes")


if __name__ == "__main__":
    main()
