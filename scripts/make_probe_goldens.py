"""Goldens for tests/absorption.rs and tests/probing.rs: SAEBench 0.6.0's own functions on the
words, prompts, splits and hook activations that saescope computed.

SAEBench's pipelines load models through TransformerLens from the hub (unreachable offline), so
this script feeds its functions directly:

  * absorption: `probing.train_linear_probe_for_task` (the dense 26-way probe, as
    `common.train_and_save_probes` calls it), `k_sparse_probing.train_k_sparse_probes`,
    `eval_probe_and_sae_k_sparse_raw_scores`, `sae_k_sparse_metadata`, `build_metrics_df`,
    `add_feature_splits_to_metrics_df`, `feature_absorption.get_stats_and_likely_false_negative_tokens`,
    `calculate_projection_and_cos_sims` with a `FeatureAbsorptionCalculator` whose model returns
    the stored activation of each prompt (and whose prompts are the stored ones), and
    `main._aggregate_results_df` plus main's per-letter filter and means;
  * sparse probing: `activation_collection.create_meaned_model_activations`,
    `get_sae_meaned_activations`, `probe_training.train_probe_on_activations` (the dense torch
    probe and the top-k sklearn probes) exactly as `sparse_probing/main.py` calls them.

The SAE is the shipped one, loaded with `sae_lens.SAE.load_from_disk`.

Usage:
  bash scripts/setup_probe_venv.sh
  cargo run --release --example probe_inputs -- /tmp/probe_golden 500 30 1
  .venv-probe/bin/python scripts/make_probe_goldens.py /tmp/probe_golden
Writes tests/fixtures/probe/goldens.json.
"""

import json
import random
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file
from sae_lens import SAE

from sae_bench.evals.absorption import feature_absorption as fa
from sae_bench.evals.absorption import k_sparse_probing as ksp
from sae_bench.evals.absorption.feature_absorption_calculator import (
    FeatureAbsorptionCalculator,
)
from sae_bench.evals.absorption.main import _aggregate_results_df
from sae_bench.evals.absorption.probing import train_linear_probe_for_task
from sae_bench.evals.absorption.prompting import SpellingPrompt, first_letter
from sae_bench.evals.absorption.vocab import LETTERS
from sae_bench.evals.sparse_probing import probe_training
from sae_bench.sae_bench_utils import activation_collection

ROOT = Path(__file__).resolve().parent.parent
SAE_DIR = ROOT / "data/saes/smollm2-l15-resid-post-topk48"
OUT = ROOT / "tests/fixtures/probe/goldens.json"
LAYER = 15
SAE_NAME = "smollm2_l15_topk48"


class StoredActsModel:
    """Stands in for the HookedTransformer in FeatureAbsorptionCalculator: the activation of
    each (stored) prompt, placed so that `[:, word_token_pos, :]` reads it."""

    tokenizer = "stored"

    def __init__(self, prompt_acts, pos):
        self.prompt_acts = prompt_acts
        self.pos = pos

    def run_with_cache(self, prompts, names_filter):
        acts = torch.stack([self.prompt_acts[p] for p in prompts])
        x = torch.zeros(len(prompts), -self.pos, acts.shape[-1])
        x[:, self.pos] = acts
        return None, {names_filter[0]: x}

    def to_tokens(self, _prompt):
        return torch.zeros(1, 1, dtype=torch.long)


def stat(values):
    return {
        "mean": statistics.mean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "values": values,
    }


def absorption_seed(meta, acts, sae, split, seed, tmp):
    ao = meta["absorption_options"]
    words, labels, prompts = meta["words"], meta["labels"], meta["prompts"]
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    tr, te = split
    train_df = pd.DataFrame({"answer_class": [labels[i] for i in tr]})
    test_df = pd.DataFrame({"answer_class": [labels[i] for i in te]})
    xtr, xte = acts[tr].numpy(), acts[te].numpy()
    probe, _ = train_linear_probe_for_task(
        train_df, test_df, torch.device("cpu"), xtr, xte,
        num_classes=26, batch_size=64, num_epochs=50, lr=1e-2,
    )
    probe = probe.float().cpu()
    train_labels = [(words[i], labels[i]) for i in tr]
    eval_labels = [(words[i], labels[i]) for i in te]
    max_k = ao["max_k_value"]
    k_probes = ksp.train_k_sparse_probes(
        sae, train_labels, acts[tr], ks=list(range(1, max_k + 1)),
        l1_decay=ao["k_sparse_probe_l1_decay"], batch_size=4096,
        num_epochs=ao["k_sparse_probe_num_epochs"],
    )
    raw = ksp.eval_probe_and_sae_k_sparse_raw_scores(sae, probe, k_probes, eval_labels, acts[te])
    metadata = ksp.sae_k_sparse_metadata(sae, probe, k_probes, sae_name=SAE_NAME, layer=LAYER)
    metrics = ksp.build_metrics_df(raw, metadata, max_k_value=max_k)
    ksp.add_feature_splits_to_metrics_df(metrics, max_k_value=max_k, f1_jump_threshold=ao["f1_jump_threshold"])
    # get_stats_and_likely_false_negative_tokens reads the raw scores from parquet.
    out_dir = Path(tmp) / f"seed{seed}"
    out_dir.mkdir(parents=True, exist_ok=True)
    raw.to_parquet(out_dir / ksp.get_sparse_probing_raw_results_filename(SAE_NAME, LAYER), index=False)
    likely = fa.get_stats_and_likely_false_negative_tokens(metrics, SAE_NAME, LAYER, out_dir)
    prompt_of = dict(zip(words, prompts))
    model = StoredActsModel({p: acts[i] for i, p in enumerate(prompts)}, ao["prompt_token_pos"])
    calc = FeatureAbsorptionCalculator(
        model=model, icl_word_list=words, max_icl_examples=ao["max_icl_examples"],
        base_template=ao["prompt_template"], word_token_pos=ao["prompt_token_pos"],
        full_absorption_probe_cos_sim_threshold=fa.FULL_ABSORPTION_PROBE_COS_THRESHOLD,
        absorption_fraction_probe_cos_sim_threshold=fa.ABSORPTION_FRACTION_PROBE_COS_THRESHOLD,
        probe_projection_proportion_threshold=fa.ABSORPTION_PROBE_PROJECTION_PROPORTION_THRESHOLD,
        absorption_fraction_max_absorbing_latents=fa.ABSORPTION_FRACTION_MAX_ABSORBING_LATENTS,
    )
    calc._build_prompts = lambda ws: [
        SpellingPrompt(base=prompt_of[w], answer=first_letter(w), word=w) for w in ws
    ]
    df = fa.calculate_projection_and_cos_sims(calc, sae, probe, LAYER, likely)
    agg = _aggregate_results_df(df)
    f1_by_letter = dict(zip(metrics["letter"], metrics["f1_probe"]))
    good = agg[[f1_by_letter[l] > ao["min_gt_probe_f1"] for l in agg["letter"]]]
    n_good = sum(f1_by_letter[l] > ao["min_gt_probe_f1"] for l in LETTERS)
    res = {
        "probe_f1": float(metrics["f1_probe"].mean()),
        "k_sparse_f1": [float(metrics[f"f1_sparse_sae_{k}"].mean()) for k in range(1, max_k + 1)],
        "letters_evaluated": int(len(good)),
    }
    if n_good >= ao["min_feats_for_eval"] and len(good) > 0:
        res["mean_absorption_fraction"] = float(good["mean_absorption_fraction"].mean())
        res["mean_full_absorption"] = float(good["full_absorption_rate"].mean())
        res["mean_num_split_features"] = float(good["num_split_feats"].mean())
    return res


def probing_seed(meta, token_acts, sae, split, seed):
    po = meta["probing_options"]
    classes = meta["corpus"]["classes"]
    random.seed(seed)
    torch.manual_seed(seed)
    tr, te = split
    train = {c: token_acts[tr[i]] for i, c in enumerate(classes)}
    test = {c: token_acts[te[i]] for i, c in enumerate(classes)}
    tr_bd = activation_collection.create_meaned_model_activations(train)
    te_bd = activation_collection.create_meaned_model_activations(test)
    _, dense = probe_training.train_probe_on_activations(
        tr_bd, te_bd, select_top_k=None, use_sklearn=False, batch_size=250, epochs=100, lr=1e-2
    )
    res = {"llm": statistics.mean(dense.values()), "llm_top_k": [], "sae_top_k": []}
    for k in po["k_values"]:
        _, acc = probe_training.train_probe_on_activations(tr_bd, te_bd, select_top_k=k)
        res["llm_top_k"].append(statistics.mean(acc.values()))
    sae_tr = activation_collection.get_sae_meaned_activations(train, sae, 125)
    sae_te = activation_collection.get_sae_meaned_activations(test, sae, 125)
    for k in po["k_values"]:
        _, acc = probe_training.train_probe_on_activations(sae_tr, sae_te, select_top_k=k)
        res["sae_top_k"].append(statistics.mean(acc.values()))
    return res


def logreg_golden():
    """sklearn LogisticRegression (SAEBench's two configurations) on a tiny fixed data set."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4)).astype(np.float32)
    x[:, 1] *= 3.0
    y = (x @ np.array([1.5, -0.4, 0.0, 0.8]) + 0.3 + rng.normal(scale=1.0, size=60) > 0.5)
    out = {"x": x.tolist(), "y": y.astype(int).tolist(), "fits": []}
    for kw in [dict(max_iter=1000), dict(max_iter=500, class_weight="balanced"), dict(C=0.1, max_iter=1000)]:
        m = LogisticRegression(tol=1e-10, **kw).fit(x, y)
        out["fits"].append({
            "c": kw.get("C", 1.0), "balanced": "class_weight" in kw,
            "coef": m.coef_[0].tolist(), "intercept": float(m.intercept_[0]),
            "accuracy": float(m.score(x, y)),
        })
    (OUT.parent / "logreg.json").write_text(json.dumps(out) + "\n")


def main():
    OUT.parent.mkdir(parents=True, exist_ok=True)
    logreg_golden()
    src = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/probe_golden")
    meta = json.loads((src / "meta.json").read_text())
    tensors = load_file(str(src / "acts.safetensors"))
    sae = SAE.load_from_disk(str(SAE_DIR), device="cpu")
    ao, po = meta["absorption_options"], meta["probing_options"]
    acts = tensors["first_letter.acts"].float()
    with tempfile.TemporaryDirectory() as tmp:
        abs_runs = [
            absorption_seed(meta, acts, sae, split, ao["seed"] + s, tmp)
            for s, split in enumerate(meta["absorption_splits"])
        ]
    token_acts = tensors["corpus.token_acts"].float()
    probe_runs = [
        probing_seed(meta, token_acts, sae, split, po["seed"] + s)
        for s, split in enumerate(meta["corpus"]["splits"])
    ]
    absorption = {
        "probe_f1": stat([r["probe_f1"] for r in abs_runs]),
        "k_sparse_f1": [stat([r["k_sparse_f1"][k] for r in abs_runs]) for k in range(ao["max_k_value"])],
        "letters_evaluated": [r["letters_evaluated"] for r in abs_runs],
    }
    for key in ["mean_absorption_fraction", "mean_full_absorption", "mean_num_split_features"]:
        vals = [r[key] for r in abs_runs if key in r]
        absorption[key] = stat(vals) if vals else None
    probing = {
        "llm": stat([r["llm"] for r in probe_runs]),
        "llm_top_k": [stat([r["llm_top_k"][i] for r in probe_runs]) for i in range(len(po["k_values"]))],
        "sae_top_k": [stat([r["sae_top_k"][i] for r in probe_runs]) for i in range(len(po["k_values"]))],
    }
    import importlib.metadata as md

    golden = {
        "generator": "scripts/make_probe_goldens.py",
        "versions": {p: md.version(p) for p in ["sae-bench", "sae-lens", "torch", "scikit-learn", "numpy"]},
        "absorption_options": ao,
        "probing_options": po,
        "n_words": len(meta["words"]),
        "saebench": {"absorption": absorption, "probing": probing},
        "saescope_at_generation": meta["rust"],
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(golden, indent=1) + "\n")
    print(json.dumps(golden["saebench"], indent=1))


if __name__ == "__main__":
    main()
