#!/usr/bin/env python3
"""Golden token ids of TransformerLens's HookedTransformer.generate, for tests/generate.rs.

Usage (from the repository root, in the virtualenv of scripts/setup_golden_venv.sh):

    .venv-golden/bin/python scripts/make_generate_goldens.py

Writes tests/fixtures/generate/generate_goldens.json: for SmolLM2-135M-Instruct (processed, as
HookedTransformer.from_pretrained, built exactly as scripts/make_goldens.py builds it) and the
seeded tiny GPT-2 / Llama / Gemma-2 fixtures, the ids TL's `generate` returns
(`return_type="tokens"`, prompt included) for

  * greedy decoding (`do_sample=False`) with and without `use_past_kv_cache`;
  * `do_sample=True, top_k=1, freq_penalty=2.0` (deterministic: top-k 1 leaves one token, so the
    frequency penalty decides which), with the KV cache;

SmolLM2 runs text prompts through TL's to_tokens (BOS prepended) with `stop_at_eos=True` (one
chat-formatted prompt stops at `<|im_end|>`) and also records TL's decoded text
(`return_type="str"`). The tiny models have no tokenizer: they run seeded random token prompts
with `stop_at_eos=False`.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import torch
from transformers import Gemma2ForCausalLM, GPT2LMHeadModel, LlamaForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_goldens as mg  # noqa: E402

warnings.filterwarnings("ignore")

OUT = mg.FIXTURES / "generate" / "generate_goldens.json"

SMOLLM2_PROMPTS = [
    "The capital of France is",
    "Once upon a time, there was a little",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
]
SMOLLM2_NEW = 20
# TL 3.9.0's generate with use_past_kv_cache=True mis-positions learned positional embeddings
# (GPT-2) when the model has no tokenizer: without an attention mask, get_residual slices
# W_pos[offset : offset + len(whole sequence)] and adds it to the whole sequence's embeddings, so
# the new token gets position offset + len - 1 instead of offset (and the run crashes once that
# passes n_ctx). With a tokenizer (SmolLM2) the attention-mask path is right. For the tiny
# GPT-2 the `*_kv` goldens are therefore TL's no-cache runs, which a correct cache must equal.
KV_BUG = ("TL 3.9.0 generate+KV cache mis-positions W_pos without a tokenizer; the *_kv ids of "
          "this model come from use_past_kv_cache=False")
FREQ_PENALTY = 2.0


def run_generate(model, inp, max_new, **kw):
    torch.manual_seed(0)
    with torch.inference_mode():
        return model.generate(inp, max_new_tokens=max_new, verbose=False, **kw)


def cases(model, inp, max_new, stop_at_eos, kv_ok=True):
    """The three decoding settings for one prompt. With `kv_ok=False` the `*_kv` cases run
    without the cache (see KV_BUG)."""
    out = {}
    settings = {
        "greedy_kv": dict(do_sample=False, use_past_kv_cache=True),
        "greedy_no_kv": dict(do_sample=False, use_past_kv_cache=False),
        "freq_penalty_top1_kv": dict(do_sample=True, top_k=1, freq_penalty=FREQ_PENALTY,
                                     use_past_kv_cache=True),
    }
    for name, kw in settings.items():
        if not kv_ok:
            kw = {**kw, "use_past_kv_cache": False}
        toks = run_generate(model, inp, max_new, stop_at_eos=stop_at_eos, return_type="tokens",
                            **kw)
        out[name] = toks[0].tolist()
    return out


def smollm2():
    tok = mg.load_smollm2_tokenizer()
    hf = mg.load_smollm2_hf()
    cfg_dict = mg.tl_cfg_dict_llama(hf.config)
    model = mg.build_tl_model(hf, cfg_dict, "smollm2", "processed", tok)
    del hf
    rows = []
    for prompt in SMOLLM2_PROMPTS:
        tokens = model.to_tokens(prompt)
        row = {"prompt": prompt, "prompt_tokens": tokens[0].tolist(), "max_new_tokens": SMOLLM2_NEW,
               "stop_at_eos": True, "eos_token_id": tok.eos_token_id}
        row.update(cases(model, prompt, SMOLLM2_NEW, True))
        row["greedy_kv_text"] = run_generate(model, prompt, SMOLLM2_NEW, do_sample=False,
                                             return_type="str")
        rows.append(row)
        print(f"smollm2 {prompt!r}: {tok.decode(row['greedy_kv'])!r}")
        print(f"   freq_penalty: {tok.decode(row['freq_penalty_top1_kv'])!r}")
    return rows


def tiny(label, cls, dir_name, cfg_fn, seed, kv_ok=True):
    hf = cls.from_pretrained(mg.FIXTURES / dir_name, dtype=torch.float32).eval()
    cfg_dict = cfg_fn(hf.config)
    model = mg.build_tl_model(hf, cfg_dict, label, "processed")
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, hf.config.vocab_size, (1, 6), generator=g)
    max_new = model.cfg.n_ctx - tokens.shape[1]
    row = {"model": label, "dir": dir_name, "prompt_tokens": tokens[0].tolist(),
           "max_new_tokens": max_new, "stop_at_eos": False}
    row.update(cases(model, tokens, max_new, False, kv_ok))
    if not kv_ok:
        row["note"] = KV_BUG
    print(f"{label}: {row['greedy_kv']}")
    return row


def main():
    out = {
        "versions": mg.versions(),
        "notes": __doc__.strip().splitlines()[0],
        "freq_penalty": FREQ_PENALTY,
        "smollm2": smollm2(),
        "tiny": [
            tiny("tiny_gpt2", GPT2LMHeadModel, "tiny-gpt2", mg.tl_cfg_dict_gpt2, 11, kv_ok=False),
            tiny("tiny_llama", LlamaForCausalLM, "tiny-llama", mg.tl_cfg_dict_llama, 12),
            tiny("tiny_gemma2", Gemma2ForCausalLM, "tiny-gemma2", mg.tl_cfg_dict_gemma2, 13),
        ],
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {OUT.relative_to(mg.ROOT)}")


if __name__ == "__main__":
    main()
