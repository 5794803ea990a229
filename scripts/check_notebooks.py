#!/usr/bin/env python3
"""Check executed notebooks: no cell may have an error, and cells must have the outputs they declare.

Usage: check_notebooks.py [--publish] SOURCE.ipynb EXECUTED.ipynb [SOURCE.ipynb EXECUTED.ipynb ...]
(scripts/run_notebooks.sh calls it with each notebook and its executed copy in notebooks/out/).

The course notebooks (those in the repository's `notebooks/` folder) are committed executed, with outputs, so a
reader sees the results without running anything. Without `--publish` a course notebook also
fails when its committed copy has no outputs, lacks the outputs its cells declare, or has no
inline SVG. With `--publish`, each notebook that passes is written back over SOURCE (its executed
copy, without nbconvert's per-cell timing metadata).

A notebook fails when
  * its executed copy is missing (nbconvert aborted: kernel died, a cell timed out, ...);
  * a code cell has an `error` output (evcxr reports compile errors this way), or writes to
    stderr (evcxr reports panics and errors returned by `?` only there; a cell whose stderr
    output is expected can say so with `"allow_stderr": true`), or was not executed;
  * a cell's metadata declares expectations that its outputs do not meet:

        "metadata": {"saescope": {"expect": ["image/svg+xml"], "contains": ["Paris"],
                                  "allow_stderr": false}}

    `expect` lists MIME types that some display/result output must carry (`stdout` and `stderr`
    stand for stream outputs); `contains` lists strings that must appear in the cell's text
    (text/plain results and streams).

Prints one line per problem (notebook, cell index, what went wrong), then
`notebooks: N passed, M failed`; exits 1 when any notebook failed. Standard library only.
"""
import json
import os
import re
import sys

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# evcxr reports a panic (and a crash of its child process) on stderr, not as an error output.
CRASH = re.compile(r"panicked at|Child process terminated|Subprocess terminated")


def text_of(value):
    return "".join(value) if isinstance(value, list) else str(value)


def first_line(cell):
    for line in text_of(cell.get("source", "")).splitlines():
        if line.strip():
            return line.strip()[:70]
    return "<empty>"


def check(source, executed):
    """Returns a list of problem descriptions for one notebook."""
    if not os.path.exists(executed):
        return [f"no executed copy at {executed}: execution aborted (kernel died or a cell "
                "timed out; see the nbconvert output above)"]
    with open(executed, encoding="utf-8") as f:
        nb = json.load(f)
    problems = []
    for index, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        where = f"cell {index} (`{first_line(cell)}`)"
        outputs = cell.get("outputs", [])
        if text_of(cell.get("source", "")).strip() and cell.get("execution_count") is None:
            problems.append(f"{where}: was not executed")
        for out in outputs:
            if out.get("output_type") == "error":
                trace = "\n".join(ANSI.sub("", t) for t in out.get("traceback", []))
                detail = trace.strip() or f"{out.get('ename', '')}: {out.get('evalue', '')}"
                detail = "\n      ".join(detail.splitlines()[:30])
                problems.append(f"{where}: error output:\n      {detail}")
        stderr = "".join(text_of(o.get("text", "")) for o in outputs
                         if o.get("output_type") == "stream" and o.get("name") == "stderr")
        stderr = ANSI.sub("", stderr)
        meta = cell.get("metadata", {}).get("saescope", {})
        if stderr.strip() and not meta.get("allow_stderr", False):
            match = CRASH.search(stderr)
            if match:
                start = stderr.rfind("\n", 0, match.start()) + 1
                lines = [l for l in stderr[start:].splitlines() if l.strip()][:4]
                what = "panicked / crashed"
            else:
                lines = [l for l in stderr.splitlines() if l.strip()][:8]
                what = "wrote to stderr (evcxr prints errors returned by `?` there)"
            detail = "\n      ".join(lines)
            problems.append(f"{where}: {what}:\n      {detail}")
        mimes = set()
        texts = []
        for out in outputs:
            kind = out.get("output_type")
            if kind == "stream":
                mimes.add(out.get("name", "stdout"))
                texts.append(text_of(out.get("text", "")))
            elif kind in ("display_data", "execute_result"):
                data = out.get("data", {})
                mimes.update(data)
                if "text/plain" in data:
                    texts.append(text_of(data["text/plain"]))
        for mime in meta.get("expect", []):
            if mime not in mimes:
                have = ", ".join(sorted(mimes)) or "no outputs"
                problems.append(f"{where}: expected a `{mime}` output, found {have}")
        joined = "".join(texts)
        for needle in meta.get("contains", []):
            if needle not in joined:
                problems.append(f"{where}: expected the output text to contain {needle!r}")
    return problems


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def is_course_notebook(source):
    """The notebooks in `<repo>/notebooks/` (not the kernel regression tests in tests/notebooks/)."""
    return os.path.dirname(os.path.abspath(source)) == os.path.join(ROOT, "notebooks")


def check_published(source):
    """Problems of a committed course notebook that does not show its results."""
    with open(source, encoding="utf-8") as f:
        nb = json.load(f)
    fix = f"run `scripts/run_notebooks.sh --publish {os.path.relpath(source)}` and commit it"
    code = [c for c in nb.get("cells", []) if c.get("cell_type") == "code"]
    if not any(c.get("outputs") for c in code):
        return [f"committed without outputs (readers see no results): {fix}"]
    problems = []
    for index, cell in enumerate(nb.get("cells", [])):
        meta = cell.get("metadata", {}).get("saescope", {})
        if cell.get("cell_type") == "code" and (meta.get("expect") or meta.get("contains")) \
                and not cell.get("outputs"):
            problems.append(f"cell {index} (`{first_line(cell)}`) is committed without its "
                            f"output: {fix}")
    svg = any("image/svg+xml" in o.get("data", {}) for c in code for o in c.get("outputs", []))
    if not svg:
        problems.append(f"no inline SVG among the committed outputs: {fix}")
    return problems


def publish(source, executed):
    """Write the executed copy over the committed notebook, without per-run timing metadata."""
    with open(executed, encoding="utf-8") as f:
        nb = json.load(f)
    for cell in nb.get("cells", []):
        cell.get("metadata", {}).pop("execution", None)
    with open(source, "w", encoding="utf-8") as f:
        json.dump(nb, f, indent=1, ensure_ascii=False)
        f.write("\n")


def main(argv):
    do_publish = bool(argv) and argv[0] == "--publish"
    if do_publish:
        argv = argv[1:]
    if not argv or len(argv) % 2:
        print(__doc__, file=sys.stderr)
        return 2
    passed = failed = 0
    for source, executed in zip(argv[0::2], argv[1::2]):
        name = os.path.basename(source)
        problems = check(source, executed)
        if not do_publish and is_course_notebook(source):
            problems += check_published(source)
        elif do_publish and not problems:
            publish(source, executed)
            print(f"published {os.path.relpath(source)}")
        if problems:
            failed += 1
            print(f"FAIL {name}")
            for p in problems:
                print(f"  {name}: {p}")
        else:
            passed += 1
            print(f"ok   {name}")
    print(f"notebooks: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
