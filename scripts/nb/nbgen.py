"""Shared helpers for the notebook generators (scripts/nb/make_nb*.py): cells with saescope's
check metadata (see scripts/check_notebooks.py) and the evcxr Rust kernel spec.

Notebooks are committed executed, with their outputs. Regenerating one keeps the outputs of every
code cell whose source did not change (and the cells after a changed cell keep theirs too, until
the next run); refresh them all with `scripts/run_notebooks.sh --publish NOTEBOOK`."""
import json


class Notebook:
    def __init__(self):
        self.cells = []

    def md(self, s):
        self.cells.append({"cell_type": "markdown", "metadata": {}, "source": s.strip("\n")})

    def code(self, s, expect=None, contains=None):
        meta = {}
        if expect or contains:
            meta["saescope"] = {}
            if expect:
                meta["saescope"]["expect"] = expect
            if contains:
                meta["saescope"]["contains"] = contains
        self.cells.append({"cell_type": "code", "metadata": meta, "source": s.strip("\n"),
                           "outputs": [], "execution_count": None})

    def write(self, path):
        nb = {"cells": self.cells,
              "metadata": {"kernelspec": {"display_name": "Rust", "language": "rust", "name": "rust"},
                           "language_info": {"codemirror_mode": "rust", "file_extension": ".rs",
                                             "mimetype": "text/rust", "name": "Rust",
                                             "pygment_lexer": "rust", "version": ""}},
              "nbformat": 4, "nbformat_minor": 5}
        for i, c in enumerate(nb["cells"]):
            c["id"] = f"c{i:02d}"
            lines = c["source"].split("\n")
            c["source"] = [l + "\n" for l in lines[:-1]] + [lines[-1]]
        previous = {}
        try:
            with open(path) as f:
                for c in json.load(f)["cells"]:
                    if c["cell_type"] == "code":
                        previous["".join(c["source"])] = c
        except (OSError, ValueError, KeyError):
            pass
        for c in nb["cells"]:
            old = previous.get("".join(c["source"])) if c["cell_type"] == "code" else None
            if old is not None:
                c["outputs"] = old.get("outputs", [])
                c["execution_count"] = old.get("execution_count")
        with open(path, "w") as f:
            json.dump(nb, f, indent=1)
            f.write("\n")
