#!/usr/bin/env python3
"""Reference values for saescope's finding-latents analyses (tests/attribution.rs), computed
with SAELens 6.54.12's HookedSAETransformer and PyTorch autograd on SmolLM2-135M-Instruct with
the shipped SAE (data/saes/smollm2-l15-resid-post-topk48, TopK k=48 on
blocks.15.hook_resid_post), as ARENA [1.3.3] §1.5 computes them.

Usage (from the repository root):

    bash scripts/setup_golden_venv.sh           # pinned torch / transformer-lens / sae-lens
    bash scripts/fetch_model.sh                 # the SmolLM2 GGUF
    .venv-golden/bin/python scripts/make_attribution_goldens.py

Runs offline on CPU, deterministic. Writes tests/fixtures/attribution/smollm2_paris.safetensors:

  tokens            [1, 6] int64  to_tokens("The capital of France is") (BOS prepended)
  metric            [1]           logits[0, -1, " Paris"] - logits[0, -1, " London"], SAE spliced in
                                  with use_error_term=True (= the clean model's)
  acts_post         [1, 6, 4608]  blocks.15.hook_resid_post.hook_sae_acts_post
  grad_acts_post    [1, 6, 4608]  d metric / d acts_post (backward hook, ARENA's
                                  get_cache_fwd_and_bwd)
  grad_embed        [1, 6, 576]   d metric / d hook_embed (backward through all 30 layers)
  ablation_latents  [n] int64     the latents active at the last position, ascending
  ablation_effects  [n]           metric - metric with that latent zeroed at the last position
                                  (acts_post hook, error term on): ARENA's ablation exercise
  dla               [4608]        each latent's direct logit attribution at the last position:
                                  TL's ActivationCache.logit_attrs of f_i * W_dec[i] / ||W_dec[i]||
                                  (the TopK SAE decodes with rescale_acts_by_decoder_norm), i.e.
                                  divided by the cached ln_final.hook_scale
"""

from __future__ import annotations

import os
import sys

if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable, *sys.argv])

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_goldens as mg  # noqa: E402
import make_sae_goldens as msg  # noqa: E402
from sae_lens import SAE  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "attribution" / "smollm2_paris.safetensors"
SAE_DIR = ROOT / "data" / "saes" / "smollm2-l15-resid-post-topk48"
CORRECT, INCORRECT = " Paris", " London"


def main() -> None:
    torch.manual_seed(0)
    tok = mg.load_smollm2_tokenizer()
    print(f"loading {mg.GGUF_FILE} with transformers (dequantizes to float32; slow) ...")
    hf_model = mg.load_smollm2_hf()
    model = msg.build_hooked_sae_transformer(hf_model, tok)
    del hf_model
    for p in model.parameters():
        p.requires_grad_(False)
    sae = SAE.load_from_disk(str(SAE_DIR)).eval()
    # The folder's cfg.json has no metadata.sae_lens_version, so SAELens 6.54.12 takes it for a
    # pre-6.0 config and drops metadata.hook_name; restore it from the file.
    hook = json.loads((SAE_DIR / "cfg.json").read_text())["metadata"]["hook_name"]
    sae.cfg.metadata.hook_name = hook
    acts_name = f"{hook}.hook_sae_acts_post"
    tokens = model.to_tokens(mg.SMOLLM2_PROMPT)
    correct = model.to_single_token(CORRECT)
    incorrect = model.to_single_token(INCORRECT)

    def metric(logits: torch.Tensor) -> torch.Tensor:
        return (logits[:, -1, correct] - logits[:, -1, incorrect]).mean()

    # Attribution patching: forward and backward caches (ARENA's get_cache_fwd_and_bwd).
    fwd: dict[str, torch.Tensor] = {}
    bwd: dict[str, torch.Tensor] = {}

    def fwd_hook(act, hook):
        fwd[hook.name] = act.detach().clone()

    def bwd_hook(grad, hook):
        bwd[hook.name] = grad.detach().clone()

    model.add_sae(sae, use_error_term=True)
    try:
        names = [acts_name, "hook_embed"]
        model.reset_hooks()
        for n in names:
            model.add_hook(n, fwd_hook, "fwd")
            model.add_hook(n, bwd_hook, "bwd")
        # hook_embed's output must require grad for the backward hook to fire
        model.add_hook("hook_embed", lambda act, hook: act.requires_grad_(True), "fwd")
        value = metric(model(tokens))
        value.backward()
        model.reset_hooks()

        with torch.no_grad():
            clean = metric(model(tokens)).item()
            live = (fwd[acts_name][0, -1] != 0).nonzero().flatten().tolist()
            effects = []
            for latent in live:
                def ablate(acts, hook, latent=latent):
                    acts[:, -1, latent] = 0.0
                    return acts
                logits = model.run_with_hooks(tokens, fwd_hooks=[(acts_name, ablate)])
                effects.append(clean - metric(logits).item())
            # Direct logit attribution with TL's logit_attrs on the cached ln_final scale.
            _, cache = model.run_with_cache(tokens)
            f = fwd[acts_name][0, -1]  # [d_sae]
            w_dec = sae.W_dec / sae.W_dec.norm(dim=-1, keepdim=True)
            stack = (f[:, None] * w_dec)[:, None, None, :]  # [d_sae, 1, 1, d_model]
            dla = cache.logit_attrs(stack, tokens=correct, incorrect_tokens=incorrect,
                                    pos_slice=-1)
    finally:
        model.reset_saes()

    t = {
        "tokens": tokens.to(torch.int64).clone(),
        "metric": torch.tensor([value.item()], dtype=torch.float32),
        "acts_post": msg.f32(fwd[acts_name]),
        "grad_acts_post": msg.f32(bwd[acts_name]),
        "grad_embed": msg.f32(bwd["hook_embed"]),
        "ablation_latents": torch.tensor(live, dtype=torch.int64),
        "ablation_effects": torch.tensor(effects, dtype=torch.float32),
        "dla": msg.f32(dla.reshape(-1)),
    }
    meta = {
        "prompt": mg.SMOLLM2_PROMPT,
        "metric": f"logits[0,-1,{CORRECT!r}] - logits[0,-1,{INCORRECT!r}] "
                  f"(ids {correct}, {incorrect})",
        "sae": f"{SAE_DIR.relative_to(ROOT)} ({hook}), use_error_term=True",
        "clean_metric_without_hooks": json.dumps(clean),
        **msg.versions(),
    }
    msg.write_safetensors(OUT, t, meta)
    print(f"metric {value.item():.5f}; {len(live)} live latents; "
          f"max |ablation effect| {max(abs(e) for e in effects):.4f}")


if __name__ == "__main__":
    main()
