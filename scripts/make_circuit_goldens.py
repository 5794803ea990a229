#!/usr/bin/env python3
"""Reference Jacobians for saescope's latent gradients (tests/circuits.rs), computed as ARENA
[1.4.2] §1 computes them: `torch.func.jacrev` over the non-zero latent values only (its
`SparseTensor`), through TransformerLens's `forward(start_at_layer=..., stop_at_layer=...)`.

Usage (from the repository root):

    bash scripts/setup_golden_venv.sh           # pinned torch / transformer-lens / sae-lens
    bash scripts/fetch_model.sh                 # the SmolLM2 GGUF
    .venv-golden/bin/python scripts/make_circuit_goldens.py [--only tiny|smollm2]

Runs offline on CPU, deterministic. Writes tests/fixtures/circuits/:

  saes/tiny_{resid0,resid1,z0,z1}/   random SAELens SAEs on tests/fixtures/tiny-llama
      resid0: StandardSAE on blocks.0.hook_resid_post   resid1: TopKSAE (k=6) on
      blocks.1.hook_resid_post   z0/z1: StandardSAE on blocks.{0,1}.attn.hook_z (hook_z reshape)
  tiny.safetensors      tiny-llama (processed as from_pretrained), tokens [2, 7]:
      l2l_*   latent_to_latent_gradients(resid0 -> resid1)
      attn_*  latent_to_latent_gradients_attn(z0 -> z1) on row 0
      t2l_*   token_to_latent_gradients(resid1) on row 0
      l2logit_*  latent_to_logit_gradients(resid0, k=5) on row 0
      tools_*    ARENA's transcoder tools with tests/fixtures/circuits/transcoders_tiny:
                 tools_deemb [300] = W_E @ W_enc[:, 7] (layer-1 transcoder), tools_ext_emb
                 [300, 64] = create_extended_embedding(model), tools_pullback [96] =
                 W_dec(layer 0) @ W_enc(layer 1)[:, 7]
  smollm2.safetensors   SmolLM2-135M-Instruct with tests/fixtures/sae/saes/smollm2_standard_l10
      (blocks.10.hook_resid_pre) and the shipped data/saes/smollm2-l15-resid-post-topk48:
      l2l_*      latent_to_latent_gradients(l10 -> shipped) on "The Eiffel Tower is in Paris"
      l2logit_*  latent_to_logit_gradients(shipped, k=10) on "The Eiffel Tower is in the city of"

For each: `<p>_tokens`, `<p>_in_idx [n_in, r]` / `<p>_in_val`, `<p>_out_idx` / `<p>_out_val` (the
outputs computed from the earlier SAE's reconstruction: ARENA's `latent_acts_next_recon`, or the
logits), `<p>_clean_out_idx` / `<p>_clean_out_val` (the clean model's), `<p>_jac [n_out, n_in]`
(jacrev's layout). Indices are row-major `argwhere` order, as ARENA's `SparseTensor.from_dense`.

Residual-stream hooks map to blocks as TransformerLens's `start_at_layer`/`stop_at_layer` need:
`blocks.L.hook_resid_pre` enters block L, `blocks.L.hook_resid_post` enters block L + 1 (ARENA
uses `sae.cfg.hook_layer`, which SAELens 6 no longer has, with resid_pre SAEs).
"""

from __future__ import annotations

import os
import sys

if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable, *sys.argv])

import argparse  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_goldens as mg  # noqa: E402
import make_sae_goldens as msg  # noqa: E402
from sae_lens import SAE  # noqa: E402
from sae_lens.saes import StandardSAE, StandardSAEConfig, TopKSAE, TopKSAEConfig  # noqa: E402
from transformers import LlamaForCausalLM  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "circuits"
SHIPPED = ROOT / "data" / "saes" / "smollm2-l15-resid-post-topk48"
L10 = ROOT / "tests" / "fixtures" / "sae" / "saes" / "smollm2_standard_l10"


# ------------------------------------------------------------------------------------------
# ARENA's SparseTensor and functions (hook-name based block numbers; see the docstring)
# ------------------------------------------------------------------------------------------


def from_dense(dense: torch.Tensor):
    return dense[dense > 0], torch.argwhere(dense > 0), tuple(dense.shape)


def to_dense(vals, inds, shape):
    d = torch.zeros(shape, dtype=vals.dtype)
    d[inds.unbind(-1)] = vals
    return d


def block_of(hook: str) -> int:
    return int(hook.split(".")[1])


def resid_start(hook: str) -> int:
    layer = block_of(hook)
    return layer + 1 if hook.endswith("hook_resid_post") else layer


def hook_of(sae: SAE) -> str:
    return sae.cfg.metadata.hook_name


def latent_acts_to_later_latent_acts(vals, inds, shape, sae_from, sae_to, model):
    acts = to_dense(vals, inds, shape)
    resid = sae_from.decode(acts)
    nxt = model(resid, start_at_layer=resid_start(hook_of(sae_from)),
                stop_at_layer=resid_start(hook_of(sae_to)))
    recon = sae_to.encode(nxt)
    return recon[recon > 0], (recon,)


def latent_to_latent_gradients(tokens, sae_from, sae_to, model):
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=[hook_of(sae_from), hook_of(sae_to)])
        prev = sae_from.encode(cache[hook_of(sae_from)])
        nxt = sae_to.encode(cache[hook_of(sae_to)])
    p_vals, p_inds, p_shape = from_dense(prev)
    jac, (recon,) = torch.func.jacrev(latent_acts_to_later_latent_acts, has_aux=True)(
        p_vals, p_inds, p_shape, sae_from, sae_to, model)
    return jac, (p_vals, p_inds), from_dense(nxt)[:2], from_dense(recon)[:2]


def latent_acts_to_later_latent_acts_attn(vals, inds, shape, sae_from, sae_to, model, resid_pre):
    acts = to_dense(vals, inds, shape)
    z_recon = sae_from.decode(acts)
    store = {}

    def set_z(z, hook):
        return z_recon.reshape(z.shape)

    def keep_z(z, hook):
        store["z"] = z

    model.run_with_hooks(resid_pre, start_at_layer=block_of(hook_of(sae_from)),
                         stop_at_layer=block_of(hook_of(sae_to)) + 1,
                         fwd_hooks=[(hook_of(sae_from), set_z), (hook_of(sae_to), keep_z)])
    recon = sae_to.encode(store.pop("z"))
    return recon[recon > 0], (recon,)


def latent_to_latent_gradients_attn(tokens, sae_from, sae_to, model):
    layer = block_of(hook_of(sae_from))
    resid_name = f"blocks.{layer}.hook_resid_pre"
    with torch.no_grad():
        _, cache = model.run_with_cache(
            tokens, names_filter=[resid_name, hook_of(sae_from), hook_of(sae_to)])
        prev = sae_from.encode(cache[hook_of(sae_from)])
        nxt = sae_to.encode(cache[hook_of(sae_to)])
    p_vals, p_inds, p_shape = from_dense(prev)
    jac, (recon,) = torch.func.jacrev(latent_acts_to_later_latent_acts_attn, has_aux=True)(
        p_vals, p_inds, p_shape, sae_from, sae_to, model, cache[resid_name])
    return jac, (p_vals, p_inds), from_dense(nxt)[:2], from_dense(recon)[:2]


def tokens_to_latent_acts(token_scales, tokens, sae, model):
    resid = model(tokens, stop_at_layer=0) * token_scales[..., None]
    before = model(resid, start_at_layer=0, stop_at_layer=resid_start(hook_of(sae)))
    latents = sae.encode(before)
    return latents[latents > 0], (latents,)


def token_to_latent_gradients(tokens, sae, model):
    scales = torch.ones(tokens.shape)
    jac, (latents,) = torch.func.jacrev(tokens_to_latent_acts, has_aux=True)(
        scales, tokens, sae, model)
    # jacrev: [n_out, batch, seq] -> [n_out, batch * seq] (saescope's layout: outputs x inputs)
    return jac.reshape(jac.shape[0], -1), from_dense(latents)[:2]


def latent_acts_to_logits(vals, inds, shape, sae, model, token_ids):
    acts = to_dense(vals, inds, shape)
    resid = sae.decode(acts)
    logits = model(resid, start_at_layer=resid_start(hook_of(sae)))[0, -1]
    return logits[token_ids], (logits,)


def latent_to_logit_gradients(tokens, sae, model, k):
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens, names_filter=[hook_of(sae)])
        acts = sae.encode(cache[hook_of(sae)])
        logits = logits[0, -1]
    token_ids = logits.topk(k=k).indices.tolist()
    p_vals, p_inds, p_shape = from_dense(acts)
    jac, (logits_recon,) = torch.func.jacrev(latent_acts_to_logits, has_aux=True)(
        p_vals, p_inds, p_shape, sae, model, token_ids)
    ids = torch.tensor(token_ids)
    return jac, (p_vals, p_inds), (logits[ids], ids[:, None]), (logits_recon[ids], ids[:, None])


# ------------------------------------------------------------------------------------------
# fixtures
# ------------------------------------------------------------------------------------------


def record(t: dict, prefix: str, tokens, jac, inp, clean, out) -> None:
    t[f"{prefix}_tokens"] = tokens.to(torch.int64).clone()
    t[f"{prefix}_jac"] = msg.f32(jac)
    for name, (vals, inds) in (("in", inp), ("clean_out", clean), ("out", out)):
        t[f"{prefix}_{name}_val"] = msg.f32(vals)
        t[f"{prefix}_{name}_idx"] = inds.to(torch.int64).contiguous().clone()
    print(f"  {prefix}: jac {tuple(jac.shape)}, |max| {jac.abs().max().item():.4g}")


def tiny_sae(cls, cfg_cls, hook: str, seed: int, d_sae: int, folder: str, **kw) -> SAE:
    cfg = cfg_cls(d_in=64, d_sae=d_sae, metadata=msg.meta_for(hook), **kw)
    sae = cls(cfg)
    params = msg.rand_params(seed, d_in=64, d_sae=d_sae)
    params["b_enc"] = params["b_enc"] * 0.3  # about half the latents active
    msg.set_params(sae, params)
    path = msg.fresh_dir(OUT / "saes" / folder)
    sae.save_model(path)
    msg.finish_sae_folder(path)
    loaded = SAE.load_from_disk(path).eval()
    loaded.cfg.metadata.hook_name = hook
    for p in loaded.parameters():
        p.requires_grad_(False)
    return loaded


def make_tiny() -> None:
    hf = LlamaForCausalLM.from_pretrained(mg.FIXTURES / "tiny-llama", dtype=torch.float32).eval()
    cfg_dict = mg.tl_cfg_dict_llama(hf.config)
    model = mg.build_tl_model(hf, cfg_dict, "tiny-llama", "processed")
    for p in model.parameters():
        p.requires_grad_(False)
    g = torch.Generator().manual_seed(8801)
    tokens = torch.randint(1, 300, (2, 7), generator=g)
    tokens[:, 0] = 0  # BOS
    resid0 = tiny_sae(StandardSAE, StandardSAEConfig, "blocks.0.hook_resid_post", 301, 96,
                      "tiny_resid0")
    resid1 = tiny_sae(TopKSAE, TopKSAEConfig, "blocks.1.hook_resid_post", 302, 80, "tiny_resid1",
                      k=6)
    z0 = tiny_sae(StandardSAE, StandardSAEConfig, "blocks.0.attn.hook_z", 303, 72, "tiny_z0",
                  reshape_activations="hook_z")
    z1 = tiny_sae(StandardSAE, StandardSAEConfig, "blocks.1.attn.hook_z", 304, 72, "tiny_z1",
                  reshape_activations="hook_z")
    t: dict[str, torch.Tensor] = {}
    jac, inp, clean, out = latent_to_latent_gradients(tokens, resid0, resid1, model)
    record(t, "l2l", tokens, jac, inp, clean, out)
    row = tokens[:1]
    jac, inp, clean, out = latent_to_latent_gradients_attn(row, z0, z1, model)
    record(t, "attn", row, jac, inp, clean, out)
    jac, latents = token_to_latent_gradients(row, resid1, model)
    ones = torch.ones(row.numel())
    pos = torch.argwhere(torch.ones_like(row) > 0)
    record(t, "t2l", row, jac, (ones, pos), latents, latents)
    jac, inp, clean, out = latent_to_logit_gradients(row, resid0, model, 5)
    record(t, "l2logit", row, jac, inp, clean, out)
    tc0 = load_sae(OUT / "transcoders_tiny" / "layer_0")
    tc1 = load_sae(OUT / "transcoders_tiny" / "layer_1")
    with torch.no_grad():
        t["tools_deemb"] = msg.f32(model.W_E @ tc1.W_enc[:, 7])
        w_e = model.W_E.clone()[:, None, :]
        ext = (w_e + model.blocks[0].mlp(model.blocks[0].ln2(w_e))).squeeze()
        t["tools_ext_emb"] = msg.f32((ext - ext.mean(dim=-1, keepdim=True))
                                     / ext.std(dim=-1, keepdim=True))
        t["tools_pullback"] = msg.f32(tc0.W_dec @ tc1.W_enc[:, 7])
    msg.write_safetensors(OUT / "tiny.safetensors", t, {
        "model": "tests/fixtures/tiny-llama (processed)", **msg.versions()})


def load_sae(folder: Path) -> SAE:
    sae = SAE.load_from_disk(str(folder)).eval()
    # Folders written without metadata.sae_lens_version lose metadata.hook_name on load.
    sae.cfg.metadata.hook_name = json.loads((folder / "cfg.json").read_text())["metadata"][
        "hook_name"]
    for p in sae.parameters():
        p.requires_grad_(False)
    return sae


def make_smollm2() -> None:
    tok = mg.load_smollm2_tokenizer()
    print(f"loading {mg.GGUF_FILE} with transformers (dequantizes to float32; slow) ...")
    hf = mg.load_smollm2_hf()
    model = msg.build_hooked_sae_transformer(hf, tok)
    del hf
    for p in model.parameters():
        p.requires_grad_(False)
    l10 = load_sae(L10)
    shipped = load_sae(SHIPPED)
    t: dict[str, torch.Tensor] = {}
    tokens = model.to_tokens("The Eiffel Tower is in Paris")
    jac, inp, clean, out = latent_to_latent_gradients(tokens, l10, shipped, model)
    record(t, "l2l", tokens, jac, inp, clean, out)
    tokens = model.to_tokens("The Eiffel Tower is in the city of")
    jac, inp, clean, out = latent_to_logit_gradients(tokens, shipped, model, 10)
    record(t, "l2logit", tokens, jac, inp, clean, out)
    msg.write_safetensors(OUT / "smollm2.safetensors", t, {
        "model": "SmolLM2-135M-Instruct (processed)",
        "saes": f"{L10.relative_to(ROOT)}, {SHIPPED.relative_to(ROOT)}", **msg.versions()})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=["tiny", "smollm2"])
    args = ap.parse_args()
    torch.manual_seed(0)
    OUT.mkdir(parents=True, exist_ok=True)
    if args.only in (None, "tiny"):
        make_tiny()
    if args.only in (None, "smollm2"):
        make_smollm2()


if __name__ == "__main__":
    main()
