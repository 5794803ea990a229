#!/usr/bin/env python3
"""The reference side of scripts/bench_map.sh: umap-learn 2-D + umap-learn 10-D (cosine,
n_neighbors 15, min_dist 0.1, random_state 42) + hdbscan (min_cluster_size 5) on the 10-D
embedding, over the rows of a safetensors file (tensor `rows`). `--make-rows OUT` instead
writes the benchmark's 18 432 rows: the shipped SAE's 4608 unit decoder rows and three copies
perturbed by seeded gaussian noise (std 0.3 / sqrt(576) per coordinate), renormalised.

Prints one JSON line: wall time (numba's compilation included, as a user sees it; a first
call on 300 rows beforehand would hide it: `--warm`), clusters, peak RSS.
"""
import argparse
import json
import resource
import time

import numpy as np
from safetensors.numpy import load_file, save_file

SAE = "data/saes/smollm2-l15-resid-post-topk48/sae_weights.safetensors"


def make_rows(out):
    w = load_file(SAE)["W_dec"].astype(np.float64)
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    rng = np.random.default_rng(0)
    parts = [w] + [w + rng.normal(scale=0.3 / np.sqrt(w.shape[1]), size=w.shape)
                   for _ in range(3)]
    x = np.concatenate(parts)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    save_file({"rows": x.astype(np.float32)}, out)
    print(f"wrote {x.shape[0]} x {x.shape[1]} rows to {out}")


def run(path, warm):
    import umap
    import hdbscan
    x = load_file(path)["rows"]
    if warm:
        umap.UMAP(metric="cosine", random_state=42, n_epochs=5).fit_transform(x[:300])
    t = time.time()
    e2 = umap.UMAP(n_components=2, metric="cosine", random_state=42).fit_transform(x)
    t2 = time.time()
    e10 = umap.UMAP(n_components=10, metric="cosine", random_state=42).fit_transform(x)
    t10 = time.time()
    labels = hdbscan.HDBSCAN(min_cluster_size=5).fit_predict(e10)
    end = time.time()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"impl": "umap-learn+hdbscan", "n": int(x.shape[0]),
                      "wall_s": round(end - t, 2), "umap2d_s": round(t2 - t, 2),
                      "umap10d_s": round(t10 - t2, 2), "hdbscan_s": round(end - t10, 2),
                      "clusters": int(labels.max() + 1), "noise": int((labels < 0).sum()),
                      "peak_rss_mb": round(peak), "warm": warm}))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--make-rows")
    ap.add_argument("--rows")
    ap.add_argument("--warm", action="store_true")
    a = ap.parse_args()
    if a.make_rows:
        make_rows(a.make_rows)
    else:
        run(a.rows, a.warm)
