#!/usr/bin/env python3
"""circuit-tracer 0.5.0's side of scripts/bench_attribution.sh: an attribution graph of the
same 16-token SmolLM2 prompt through the same transcoders (SAELens folders DIR/layer_L), timed
from the call to `attribute` to its return (model loading excluded, as in the Rust benchmark).
Prints one JSON line with wall_s and peak_rss_mb (the process's peak, loading included).

Usage: .venv-circuit/bin/python scripts/bench_attribution_ct.py DIR [--max-features 7500]
       [--batch 64] [--threads 2] [--prompt TEXT]
"""
import os
import sys

if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable, *sys.argv])

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_graph_goldens as mgg  # noqa: E402

mg = mgg.mg
PROMPT = "The Eiffel Tower is in the city of Paris, and the Colosseum is in the city of"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir", type=Path)
    ap.add_argument("--max-features", type=int, default=7500)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", default=PROMPT)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    tok = mg.load_smollm2_tokenizer()
    tok.padding_side = "right"
    hf = mg.load_smollm2_hf()
    cfg_dict = mgg.tl_cfg_dict(hf.config, "smollm2")
    n_layers = hf.config.num_hidden_layers
    saes = [mgg.load_transcoder_folder(mgg.layer_folder(a.dir, l)) for l in range(n_layers)]
    ids = tok.encode(a.prompt, add_special_tokens=False)
    tokens = torch.tensor([tok.bos_token_id, *ids][:16], dtype=torch.int64)
    with tempfile.TemporaryDirectory() as tmp:
        tcs = mgg.ct_transcoder_set(saes, mgg.INPUT_HOOK, "bench", Path(tmp))
        model = mgg.build_replacement_model(hf, cfg_dict, "SmolLM2-135M-Instruct", tcs, tok)
    del hf
    t0 = time.time()
    graph = mgg.attribute(tokens, model, max_n_logits=10, desired_logit_prob=0.95,
                          batch_size=a.batch, max_feature_nodes=a.max_features)
    wall = time.time() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"impl": "circuit-tracer", "n_pos": len(tokens),
                      "active_features": len(graph.active_features),
                      "feature_nodes": len(graph.selected_features),
                      "nodes": graph.adjacency_matrix.shape[0], "batch": a.batch,
                      "threads": a.threads, "wall_s": round(wall, 2),
                      "peak_rss_mb": round(peak)}))


if __name__ == "__main__":
    main()
