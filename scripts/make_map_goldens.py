#!/usr/bin/env python3
"""Reference latent maps (umap-learn + hdbscan + scikit-learn) that tests/latent_map.rs compares
saescope's UMAP, HDBSCAN, trustworthiness and adjusted Rand index against.

Usage (from the repository root):

    bash scripts/setup_map_venv.sh
    .venv-map/bin/python scripts/make_map_goldens.py

Input: the decoder rows of the shipped SAE (data/saes/smollm2-l15-resid-post-topk48, W_dec,
4608 x 576), scaled to unit norm (as saescope's unit_decoder_directions).

What it writes (tests/fixtures/map/):

  umap_learn.safetensors   umap2d [4608, 2] and umap10d [4608, 10]: umap-learn's embeddings
                           (metric cosine, n_neighbors 15, min_dist 0.1, random_state 42);
                           hdbscan_umap10d [4608] i32: hdbscan (min_cluster_size 5, its default
                           Boruvka MST) labels of umap10d; hdbscan_umap10d_mcs15: the same with
                           min_cluster_size 15; hdbscan_umap10d_prims: min_cluster_size 5 with
                           algorithm prims_kdtree (hdbscan's two MSTs break the many ties of
                           mutual reachability differently: ari_boruvka_vs_prims in the JSON);
                           hdbscan_umap10d_prims_stable: that pipeline with the MST edges sorted
                           stably (ties keep Prim's order, as saescope's);
                           hdbscan_umap10d_ms1 / _mcs15_ms1: min_samples 1 (no ties: every exact
                           implementation must agree); small_low [300, 2]: the umap2d rows of the
                           first 300 unit rows (for the exact trustworthiness check; the test
                           recomputes those rows from the SAE).
  umap_learn.json          umap-learn's trustworthiness (sklearn, metric cosine) of umap2d /
                           umap10d at k = 5 and 10; sklearn's trustworthiness of small_low vs
                           small_high (cosine and euclidean, k = 5 and 10); sklearn's
                           adjusted_rand_score between the two label sets above; the versions.
"""
import json
import time
from pathlib import Path

import numpy as np
import umap
import hdbscan
import sklearn
from sklearn.manifold import trustworthiness
from sklearn.metrics import adjusted_rand_score
from safetensors.numpy import load_file, save_file

ROOT = Path(__file__).resolve().parent.parent
SAE = ROOT / "data/saes/smollm2-l15-resid-post-topk48/sae_weights.safetensors"
OUT = ROOT / "tests/fixtures/map"
SEED = 42


def unit_rows(w):
    w = w.astype(np.float32)
    n = np.linalg.norm(w, axis=1, keepdims=True)
    return (w / np.maximum(n, 1e-12)).astype(np.float32)


def prims_stable(x, min_cluster_size):
    """hdbscan's prims_kdtree pipeline (its own core distances, Prim MST, `label` and
    `_tree_to_labels`, min_samples = min_cluster_size), except that the MST edges are sorted
    with a stable sort, so that tied weights keep Prim's order. Returns (number of tied MST
    weights, labels)."""
    from sklearn.neighbors import KDTree
    from hdbscan._hdbscan_linkage import mst_linkage_core_vector, label
    from hdbscan.dist_metrics import DistanceMetric
    from hdbscan.hdbscan_ import _tree_to_labels
    tree = KDTree(x, leaf_size=40)
    core = tree.query(x, k=min_cluster_size + 1, dualtree=True,
                      breadth_first=True)[0][:, -1].copy(order="C")
    mst = mst_linkage_core_vector(x, core, DistanceMetric.get_metric("euclidean"), 1.0)
    w = mst.T[2]
    labels = _tree_to_labels(x, label(mst[np.argsort(w, kind="stable")]), min_cluster_size)[0]
    return int(len(w) - len(np.unique(w))), labels


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    x = unit_rows(load_file(str(SAE))["W_dec"])
    res = {"versions": {"umap-learn": umap.__version__ if hasattr(umap, "__version__") else "",
                        "hdbscan": "0.8.44", "scikit-learn": sklearn.__version__,
                        "numpy": np.__version__},
           "n": int(x.shape[0]), "seed": SEED}
    emb = {}
    for dim in (2, 10):
        t = time.time()
        e = umap.UMAP(n_neighbors=15, n_components=dim, min_dist=0.1, metric="cosine",
                      random_state=SEED).fit_transform(x).astype(np.float32)
        res[f"umap{dim}d_seconds"] = time.time() - t
        emb[dim] = e
        for k in (5, 10):
            res[f"trust_umap{dim}d_k{k}"] = float(trustworthiness(x, e, n_neighbors=k,
                                                                  metric="cosine"))
    e10 = emb[10].astype(np.float64)
    labels = hdbscan.HDBSCAN(min_cluster_size=5).fit_predict(e10).astype(np.int32)
    labels15 = hdbscan.HDBSCAN(min_cluster_size=15).fit_predict(e10).astype(np.int32)
    prims = hdbscan.HDBSCAN(min_cluster_size=5, algorithm="prims_kdtree").fit_predict(e10)
    res["ari_boruvka_vs_prims"] = float(adjusted_rand_score(labels, prims))
    res["hdbscan_mst_tied_weights"], stable = prims_stable(e10, 5)
    # min_samples = 1: mutual reachability is the plain distance, so the MST has no ties and
    # every exact implementation must give the same labels.
    ms1 = {mcs: hdbscan.HDBSCAN(min_cluster_size=mcs, min_samples=1).fit_predict(e10)
           for mcs in (5, 15)}
    res["hdbscan_n_clusters"] = int(labels.max() + 1)
    res["hdbscan_noise"] = int((labels < 0).sum())
    res["ari_mcs5_vs_mcs15"] = float(adjusted_rand_score(labels, labels15))
    small_high, small_low = x[:300].copy(), emb[2][:300].copy()
    for metric in ("cosine", "euclidean"):
        for k in (5, 10):
            res[f"small_trust_{metric}_k{k}"] = float(
                trustworthiness(small_high, small_low, n_neighbors=k, metric=metric))
    save_file({"umap2d": emb[2], "umap10d": emb[10], "hdbscan_umap10d": labels,
               "hdbscan_umap10d_mcs15": labels15,
               "hdbscan_umap10d_prims": prims.astype(np.int32),
               "hdbscan_umap10d_prims_stable": stable.astype(np.int32),
               "hdbscan_umap10d_ms1": ms1[5].astype(np.int32),
               "hdbscan_umap10d_mcs15_ms1": ms1[15].astype(np.int32),
               "small_low": small_low}, str(OUT / "umap_learn.safetensors"))
    (OUT / "umap_learn.json").write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")
    print(json.dumps(res, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
