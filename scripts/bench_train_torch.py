#!/usr/bin/env python3
"""PyTorch reference benchmark: SAELens's SAE trainer step throughput on CPU in float32.

Usage (from the repository root, after scripts/setup_golden_venv.sh):

    .venv-golden/bin/python scripts/bench_train_torch.py --arch standard --threads 2 --iters 5
    .venv-golden/bin/python scripts/bench_train_torch.py --arch topk --k 32 --threads 2 --iters 5

The SAE is a sae_lens StandardTrainingSAE (l1_coefficient 5, lp_norm 1) or TopKTrainingSAE (k 32,
rescale_acts_by_decoder_norm True, dense activations as SAELens's default use_sparse_activations
False; --sparse for True, which fails in backward on CPU with torch 2.15, reported as a JSON
line with "error"), d_in 576 -> d_sae 4608 by default, initialised by SAELens
(decoder_init_norm 0.1, W_enc = W_dec^T) and driven by a real sae_lens SAETrainer (lr 3e-4
constant, Adam betas (0.9, 0.999), no wandb). Each timed iteration is one
`SAETrainer.step(batch)`, i.e. exactly what SAETrainer.fit does per step minus logging and
checkpointing:

    activation_scaler (identity) -> sae.training_forward_pass (encode, decode, losses)
    -> dead-latent / firing-frequency bookkeeping -> loss.backward()
    -> clip_grad_norm_(params, 1.0) -> Adam.step() -> zero_grad -> lr / coefficient schedulers

on seeded random activations ([batch, d_in] float32, a few distinct batches cycled). With
--dead-frac F > 0 the trainer's dead-latent counters are preset so that a fraction F of the latents
count as dead, which switches on the TopK AuxK loss (by default, as at the start of a real run,
nothing is dead and AuxK is skipped).

Prints one JSON line:
  {"impl", "op", "arch", "k", "sae_lens", "torch", "threads", "d_in", "d_sae", "batch",
   "dead_frac", "sparse_activations", "tokens_per_s", "sec_per_iter", "gflops", "setup_s",
   "peak_rss_mb"}
tokens_per_s = batch / median(sec_per_iter); gflops counts the dense matmuls only: 6 * 2 * batch *
d_in * d_sae (encode, decode, and two matmuls each in backward for the weights and the input).
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
    ap.add_argument("--arch", choices=["standard", "topk"], default="standard")
    ap.add_argument("--k", type=int, default=32, help="TopK k")
    ap.add_argument("--d-in", type=int, default=576)
    ap.add_argument("--d-sae", type=int, default=4608)
    ap.add_argument("--batch", type=int, default=4096, help="tokens per training step")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5, help="timed steps")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    ap.add_argument("--dead-frac", type=float, default=0.0,
                    help="fraction of latents preset as dead (enables TopK AuxK)")
    ap.add_argument("--sparse", action="store_true",
                    help="TopK with use_sparse_activations=True (COO feature acts, sparse decode)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    from sae_lens import (
        StandardTrainingSAE,
        StandardTrainingSAEConfig,
        TopKTrainingSAE,
        TopKTrainingSAEConfig,
    )
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer

    t0 = time.perf_counter()
    torch.manual_seed(args.seed)
    if args.arch == "standard":
        sae = StandardTrainingSAE(StandardTrainingSAEConfig(
            d_in=args.d_in, d_sae=args.d_sae, l1_coefficient=5.0))
    else:
        sae = TopKTrainingSAE(TopKTrainingSAEConfig(
            d_in=args.d_in, d_sae=args.d_sae, k=args.k, use_sparse_activations=args.sparse))
    g = torch.Generator().manual_seed(args.seed + 1)
    n_batches = 3
    batches = [torch.randn(args.batch, args.d_in, generator=g) for _ in range(n_batches)]
    n_steps = args.warmup + args.iters

    def provider():
        i = 0
        while True:
            yield batches[i % n_batches]
            i += 1

    cfg = SAETrainerConfig(
        total_training_samples=args.batch * n_steps, train_batch_size_samples=args.batch,
        lr=3e-4, lr_end=3e-5, logger=LoggingConfig(log_to_wandb=False))
    trainer = SAETrainer(cfg=cfg, sae=sae, data_provider=provider())
    n_dead = int(round(args.dead_frac * args.d_sae))
    if n_dead:
        trainer.n_forward_passes_since_fired[:n_dead] = 10 * cfg.dead_feature_window
    setup_s = time.perf_counter() - t0

    times = []
    for i in range(n_steps):
        batch = next(trainer.data_provider)
        t = time.perf_counter()
        try:
            out = trainer.step(batch)
        except (NotImplementedError, RuntimeError) as e:
            # SAELens 6.54.12 + torch 2.15 on CPU: with use_sparse_activations the backward
            # fails ("Could not run 'aten::view' with arguments from the 'SparseCPU' backend")
            print(json.dumps({"impl": f"sae_lens-SAETrainer-{type(sae).__name__}",
                              "op": "train_step", "arch": args.arch,
                              "sparse_activations": bool(args.sparse),
                              "error": f"{type(e).__name__}: {str(e).split('. ')[0]}"}))
            raise SystemExit(1) from None
        dt = time.perf_counter() - t
        trainer.n_training_steps += 1
        assert torch.isfinite(out.loss), out.loss
        if n_dead:  # keep the same latents dead whatever fired in this step
            trainer.n_forward_passes_since_fired[:n_dead] = 10 * cfg.dead_feature_window
        if i >= args.warmup:
            times.append(dt)
        del out

    med = statistics.median(times)
    flops = 6 * 2 * args.batch * args.d_in * args.d_sae
    result = {
        "impl": f"sae_lens-SAETrainer-{type(sae).__name__}",
        "op": "train_step",
        "arch": args.arch,
        "k": args.k if args.arch == "topk" else None,
        "sae_lens": md.version("sae-lens"),
        "torch": torch.__version__,
        "threads": args.threads,
        "d_in": args.d_in,
        "d_sae": args.d_sae,
        "batch": args.batch,
        "dead_frac": args.dead_frac,
        "sparse_activations": bool(args.sparse and args.arch == "topk"),
        "tokens_per_s": round(args.batch / med, 1),
        "sec_per_iter": [round(t, 4) for t in times],
        "gflops": round(flops / med / 1e9, 1),
        "setup_s": round(setup_s, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
