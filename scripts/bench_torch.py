#!/usr/bin/env python3
"""PyTorch reference benchmark: a full forward pass of SmolLM2-135M-Instruct on CPU in float32.

Usage (from the repository root, after scripts/fetch_model.sh and scripts/setup_golden_venv.sh):

    .venv-golden/bin/python scripts/bench_torch.py --batch 8 --seq 128 --threads 2 --iters 3
    .venv-golden/bin/python scripts/bench_torch.py ... --tl        # TL HookedTransformer forward
    .venv-golden/bin/python scripts/bench_torch.py ... --tl-cache  # TL run_with_cache, all hooks
    .venv-golden/bin/python scripts/bench_torch.py ... --tl-both   # both, alternated pass by pass

The model is loaded from data/models/SmolLM2-135M-Instruct.Q4_1.gguf by transformers, which
dequantizes it to float32. The input is a seeded random [batch, seq] token tensor; each timed
iteration computes the logits of every position (`model(input_ids).logits`) under
torch.inference_mode(). With --tl / --tl-cache the same weights go through TransformerLens
(processed, i.e. HookedTransformer.from_pretrained defaults, built offline as in
scripts/make_goldens.py). --tl-both loads TL once and alternates its forward and
run_with_cache pass by pass (so machine noise hits both alike), like `cargo bench --bench
forward` does for saescope.

Prints one JSON line (two with --tl-both; the second has "overhead_pct", the run_with_cache
time over the forward's, from the medians, and "cpu_overhead_pct", the same for the process's
CPU time, which other load on a shared machine disturbs less):
  {"impl", "torch", "threads", "batch", "seq", "tokens_per_s", "sec_per_iter",
   "cpu_sec_per_iter", "load_s", "peak_rss_mb", ...}
tokens_per_s = batch*seq / median(sec_per_iter); load_s covers loading (and, for TL, converting
and processing) the model; peak_rss_mb is the process's peak resident set size.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
GGUF_DIR = ROOT / "data" / "models"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=3, help="timed iterations")
    ap.add_argument("--warmup", type=int, default=1, help="untimed iterations first")
    ap.add_argument("--seed", type=int, default=0)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--tl", action="store_true", help="TL HookedTransformer forward (processed)")
    mode.add_argument("--tl-cache", action="store_true", help="TL run_with_cache, all hooks")
    mode.add_argument(
        "--tl-both", action="store_true", help="TL forward and run_with_cache, alternated"
    )
    args = ap.parse_args()

    if not (GGUF_DIR / GGUF_FILE).exists():
        sys.exit(f"{GGUF_DIR / GGUF_FILE} is missing: run scripts/fetch_model.sh first")
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")

    use_tl = args.tl or args.tl_cache or args.tl_both
    if use_tl:
        # Reuse the exact model loading and TL construction of the goldens (processed =
        # from_pretrained defaults). Imported before the clock starts, like transformers below.
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import make_goldens as mg
    from transformers import AutoModelForCausalLM

    t0 = time.perf_counter()
    if use_tl:
        hf_model = mg.load_smollm2_hf()
    else:
        hf_model = AutoModelForCausalLM.from_pretrained(
            str(GGUF_DIR), gguf_file=GGUF_FILE, dtype=torch.float32
        ).eval()
    vocab = hf_model.config.vocab_size

    if use_tl:
        cfg_dict = mg.tl_cfg_dict_llama(hf_model.config)
        model = mg.build_tl_model(hf_model, cfg_dict, "smollm2", "processed")
        del hf_model

        def tl_forward(ids):
            return model(ids)

        def tl_cache(ids):
            logits, cache = model.run_with_cache(ids)
            return logits

        runs = {
            "transformer-lens": tl_forward,
            "transformer-lens-run_with_cache": tl_cache,
        }
        if args.tl:
            runs.pop("transformer-lens-run_with_cache")
        elif args.tl_cache:
            runs.pop("transformer-lens")

    else:
        model = hf_model

        def hf_forward(ids):
            return model(ids).logits

        runs = {"pytorch-hf": hf_forward}

    load_s = time.perf_counter() - t0

    g = torch.Generator().manual_seed(args.seed)
    ids = torch.randint(0, vocab, (args.batch, args.seq), generator=g, dtype=torch.int64)

    # With several runs (--tl-both) they alternate within each iteration.
    times = {impl: [] for impl in runs}
    cpu_times = {impl: [] for impl in runs}
    with torch.inference_mode():
        for i in range(args.warmup + args.iters):
            for impl, forward in runs.items():
                t, c = time.perf_counter(), time.process_time()
                logits = forward(ids)
                dt, dc = time.perf_counter() - t, time.process_time() - c
                assert logits.shape == (args.batch, args.seq, vocab), logits.shape
                if i >= args.warmup:
                    times[impl].append(dt)
                    cpu_times[impl].append(dc)
                del logits

    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB
    import importlib.metadata as md

    base = statistics.median(next(iter(times.values())))
    base_cpu = statistics.median(next(iter(cpu_times.values())))
    for impl, ts in times.items():
        result = {
            "impl": impl,
            "torch": torch.__version__,
            "transformers": md.version("transformers"),
            "threads": args.threads,
            "batch": args.batch,
            "seq": args.seq,
            "tokens_per_s": round(args.batch * args.seq / statistics.median(ts), 1),
            "sec_per_iter": [round(t, 4) for t in ts],
            "cpu_sec_per_iter": [round(t, 3) for t in cpu_times[impl]],
            "load_s": round(load_s, 2),
            "peak_rss_mb": round(peak_rss_mb, 1),
        }
        if impl != "pytorch-hf":
            result["transformer_lens"] = md.version("transformer-lens")
        if len(times) > 1 and impl == "transformer-lens-run_with_cache":
            result["overhead_pct"] = round((statistics.median(ts) / base - 1) * 100, 1)
            cpu = statistics.median(cpu_times[impl])
            result["cpu_overhead_pct"] = round((cpu / base_cpu - 1) * 100, 1)
        print(json.dumps(result))


if __name__ == "__main__":
    main()
