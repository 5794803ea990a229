#!/usr/bin/env python3
"""PyTorch reference benchmark: SAELens StandardSAE throughput on CPU in float32.

Usage (from the repository root, after scripts/setup_golden_venv.sh):

    .venv-golden/bin/python scripts/bench_sae_torch.py --d-in 576 --d-sae 9216 --batch 4096 \
        --threads 2 --iters 5
    .venv-golden/bin/python scripts/bench_sae_torch.py --d-in 768 --d-sae 24576 ...
    .venv-golden/bin/python scripts/bench_sae_torch.py ... --op forward   # encode + decode

The SAE is a sae_lens StandardSAE (apply_b_dec_to_input True, no normalisation) with seeded random
weights; the input is a seeded random [batch, d_in] float32 tensor. Each timed iteration runs
`sae.encode(x)` (or `sae(x)` with --op forward: encode, decode and the output hooks) under
torch.inference_mode().

Prints one JSON line:
  {"impl", "op", "sae_lens", "torch", "threads", "d_in", "d_sae", "batch", "tokens_per_s",
   "sec_per_iter", "gflops", "setup_s", "peak_rss_mb"}
tokens_per_s = batch / median(sec_per_iter); gflops counts the matmuls only (2*batch*d_in*d_sae
for encode, twice that for forward).
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import resource
import statistics
import time
import warnings

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--d-in", type=int, default=576)
    ap.add_argument("--d-sae", type=int, default=9216)
    ap.add_argument("--batch", type=int, default=4096, help="tokens per call")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5, help="timed iterations")
    ap.add_argument("--warmup", type=int, default=1, help="untimed iterations first")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--op", choices=["encode", "forward"], default="encode")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    from sae_lens import StandardSAE, StandardSAEConfig

    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(args.seed)
    sae = StandardSAE(StandardSAEConfig(d_in=args.d_in, d_sae=args.d_sae)).eval()
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(args.d_in, args.d_sae, generator=g) / args.d_in**0.5)
        sae.W_dec.copy_(torch.randn(args.d_sae, args.d_in, generator=g) / args.d_sae**0.5)
        sae.b_enc.copy_(0.1 * torch.randn(args.d_sae, generator=g) - 0.2)
        sae.b_dec.copy_(0.1 * torch.randn(args.d_in, generator=g))
    x = torch.randn(args.batch, args.d_in, generator=g)
    setup_s = time.perf_counter() - t0

    fn = sae.encode if args.op == "encode" else sae
    times = []
    with torch.inference_mode():
        for i in range(args.warmup + args.iters):
            t = time.perf_counter()
            y = fn(x)
            dt = time.perf_counter() - t
            expect = (args.batch, args.d_sae if args.op == "encode" else args.d_in)
            assert tuple(y.shape) == expect, y.shape
            if i >= args.warmup:
                times.append(dt)
            del y

    med = statistics.median(times)
    flops = 2 * args.batch * args.d_in * args.d_sae * (1 if args.op == "encode" else 2)
    result = {
        "impl": "sae_lens-StandardSAE",
        "op": args.op,
        "sae_lens": md.version("sae-lens"),
        "torch": torch.__version__,
        "threads": args.threads,
        "d_in": args.d_in,
        "d_sae": args.d_sae,
        "batch": args.batch,
        "tokens_per_s": round(args.batch / med, 1),
        "sec_per_iter": [round(t, 4) for t in times],
        "gflops": round(flops / med / 1e9, 1),
        "setup_s": round(setup_s, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
