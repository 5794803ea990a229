#!/usr/bin/env python3
"""Generate the golden reference tensors that saescope's Rust tests compare against.

Usage (from the repository root):

    bash scripts/fetch_model.sh             # the SmolLM2 GGUF, into data/models/
    bash scripts/setup_golden_venv.sh       # pinned torch / transformer-lens / transformers
    .venv-golden/bin/python scripts/make_goldens.py [--only tokenizer|smollm2|tiny|gemma2]

Everything runs offline and on CPU. The script is deterministic: the tiny models are built from
fixed seeds, and SmolLM2 is the dequantized GGUF.

What it writes (all under tests/fixtures/):

  tokenizer/smollm2_cases.json     HF tokenizer (loaded from the GGUF) on ~20 strings:
                                   {"text", "ids", "str_tokens", "decoded"} per case.
  tokenizer/smollm2_special.json   bos/eos/pad/unk ids and strings, as the HF tokenizer reports.
  tiny-gpt2/, tiny-llama/, tiny-gemma2/
                                   seeded random HF checkpoints (config.json + model.safetensors).
  tl/<model>_{processed,unprocessed}.safetensors
                                   TransformerLens HookedTransformer run_with_cache output: every
                                   cached hook under its exact TL name (float32, batch dim kept),
                                   plus `tokens` (int64), `logits` and `log_probs`. The metadata
                                   records the prompt and the library versions.
                                   "processed"   = HookedTransformer.from_pretrained defaults
                                                   (fold_ln, center_writing_weights, center_unembed,
                                                   fold_value_biases all True);
                                   "unprocessed" = from_pretrained_no_processing (all False).
                                   SmolLM2 runs TL's to_tokens("The capital of France is") (BOS
                                   prepended); its unprocessed file keeps only the hooks of layers
                                   0, 1, 15, 29, every hook_resid_post and the non-block hooks.
                                   The tiny models run seeded random tokens of shape [2, 7].
                                   tiny_gemma2 "processed" has center_unembed off: from_pretrained
                                   turns it off for models with a logit softcap (see
                                   effective_processing_flags).
  tl/hook_names.json               the ordered list of hook names in TL's cache, per model.

How the TL models are built without the hub: HookedTransformer.from_pretrained only accepts model
names it knows, so this script reproduces its steps by hand, as TransformerLens 3.9.0 does them:
  1. the config dict of loading_from_pretrained.convert_hf_model_config for the architecture
     (LlamaForCausalLM / GPT2LMHeadModel), followed by the post-processing of
     get_pretrained_model_config (model_name, init_weights=False, RMS->RMSPre / LN->LNPre when
     folding, default_prepend_bos=True, ...). The hand-built dict is cross-checked against TL's own
     convert_hf_model_config run on a saved copy of the HF config (no network involved); for
     Gemma2ForCausalLM TL only has hard-coded dicts for the google/gemma-2-* names, which the
     hand-built dict is compared with instead (tl_cfg_dict_gemma2);
  2. the state dict from TL's own weight converter (convert_llama_weights / convert_gpt2_weights);
  3. HookedTransformer(cfg, tokenizer) + load_and_process_state_dict(...) with the from_pretrained
     (or from_pretrained_no_processing) flags, leaving TL itself to skip what does not apply
     (from_pretrained's own flag adjustment, center_unembed off under a logit softcap, is
     reproduced by effective_processing_flags).
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import logging
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    Gemma2Config,
    Gemma2ForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
)

import transformer_lens.loading_from_pretrained as tl_loading
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens.pretrained.weight_conversions import (
    convert_gemma_weights,
    convert_gpt2_weights,
    convert_llama_weights,
)

# TL 3.x marks HookedTransformer as deprecated in favour of TransformerBridge; the goldens are
# about HookedTransformer semantics, so silence that noise.
warnings.filterwarnings("ignore", category=DeprecationWarning)
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
TL_DIR = FIXTURES / "tl"
TOK_DIR = FIXTURES / "tokenizer"
GGUF_DIR = ROOT / "data" / "models"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

SMOLLM2_PROMPT = "The capital of France is"
# Layers of the unprocessed SmolLM2 golden that keep all their hooks (the rest keep only
# hook_resid_post) - keeps the file small while covering first, second, middle and last layers.
SMOLLM2_UNPROCESSED_FULL_LAYERS = (0, 1, 15, 29)

# Flags of HookedTransformer.from_pretrained (defaults) and from_pretrained_no_processing.
PROCESSING = {
    "processed": dict(
        fold_ln=True,
        center_writing_weights=True,
        center_unembed=True,
        fold_value_biases=True,
        refactor_factored_attn_matrices=False,
    ),
    "unprocessed": dict(
        fold_ln=False,
        center_writing_weights=False,
        center_unembed=False,
        fold_value_biases=False,
        refactor_factored_attn_matrices=False,
    ),
}

TOKENIZER_CASES = [
    "The Golden Gate Bridge is in San Francisco. 12345",
    "The capital of France is",
    " leading space",
    "  two leading spaces and    four inside",
    "trailing spaces   ",
    "line one\nline two\n\nline four after a blank\r\nCRLF",
    "def f(x):\n    if x:\n\treturn x  # tab-indented\n    return None\n",
    "pi = 3.14159, year 2026, big 1234567890, -0.5e-3",
    "Visit https://example.com/path?q=hello%20world&x=1#frag now",
    "<|im_start|>user\nhi<|im_end|>",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>assistant\n",
    "unicode: café naïve façade — “quotes” … €100",
    "中文测试，日本語のテキスト、한국어",
    "emoji 🙂🚀👍🏽 and symbols ©®™",
    "Ελληνικά και русский текст",
    "",
    " ",
    "\n",
    "a",
    "don't can't won't it's I'm",
]


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    return {
        "transformer_lens": md.version("transformer-lens"),
        "torch": torch.__version__,
        "transformers": md.version("transformers"),
        "tokenizers": md.version("tokenizers"),
        "gguf": md.version("gguf"),
        "safetensors": md.version("safetensors"),
    }


def human(nbytes: int) -> str:
    return f"{nbytes / 1e6:.2f} MB" if nbytes >= 1e5 else f"{nbytes / 1e3:.1f} kB"


def write_json(path: Path, obj: Any) -> None:
    """Pretty JSON, except that a top-level list (or each value of a top-level dict that is a
    list of scalars) keeps one item per line, which keeps the fixtures short and diffable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(obj, list):
        text = "[\n" + ",\n".join(json.dumps(x, ensure_ascii=False) for x in obj) + "\n]"
    else:
        text = json.dumps(obj, indent=1, ensure_ascii=False)
    path.write_text(text + "\n", encoding="utf-8")
    print(f"wrote {path.relative_to(ROOT)} ({human(path.stat().st_size)})")


def gguf_path() -> Path:
    p = GGUF_DIR / GGUF_FILE
    if not p.exists():
        raise SystemExit(f"{p} is missing: run scripts/fetch_model.sh first")
    return p


def load_smollm2_tokenizer():
    gguf_path()
    return AutoTokenizer.from_pretrained(str(GGUF_DIR), gguf_file=GGUF_FILE)


# --------------------------------------------------------------------------------------------
# a. tokenizer fixtures
# --------------------------------------------------------------------------------------------


def make_tokenizer_fixtures() -> None:
    tok = load_smollm2_tokenizer()
    cases = []
    for text in TOKENIZER_CASES:
        ids = tok.encode(text, add_special_tokens=False)
        cases.append(
            {
                "text": text,
                "ids": ids,
                "str_tokens": [
                    tok.decode([i], clean_up_tokenization_spaces=False) for i in ids
                ],
                "decoded": tok.decode(ids),
            }
        )
    golden = cases[0]["ids"]
    expected = [504, 13578, 18447, 13480, 314, 281, 4653, 10463, 30, 216, 33, 34, 35, 36, 37]
    assert golden == expected, f"tokenizer regression on the Golden Gate string: {golden}"
    write_json(TOK_DIR / "smollm2_cases.json", cases)

    special = {
        "tokenizer_class": type(tok).__name__,
        "vocab_size": len(tok),
        "add_bos_token": getattr(tok, "add_bos_token", None),
        "add_eos_token": getattr(tok, "add_eos_token", None),
        # what encode("") gives with special tokens on (TL uses this to decide whether the
        # tokenizer prepends BOS by itself)
        "encode_empty_with_special_tokens": tok.encode(""),
    }
    for name in ("bos", "eos", "pad", "unk"):
        special[f"{name}_token"] = getattr(tok, f"{name}_token")
        special[f"{name}_token_id"] = getattr(tok, f"{name}_token_id")
    special["all_special_tokens"] = list(tok.all_special_tokens)
    special["all_special_ids"] = list(tok.all_special_ids)
    write_json(TOK_DIR / "smollm2_special.json", special)


# --------------------------------------------------------------------------------------------
# TL config, built by hand as TransformerLens 3.9.0 would
# --------------------------------------------------------------------------------------------


def rope_theta(hf_config) -> float:
    """Same lookup as TL's loading_from_pretrained._get_rope_theta (transformers 5 keeps it in
    rope_parameters)."""
    theta = getattr(hf_config, "rope_theta", None)
    if theta is not None:
        return theta
    params = getattr(hf_config, "rope_parameters", None)
    if isinstance(params, dict):
        return params.get("rope_theta", 10000.0)
    return 10000.0


def tl_cfg_dict_llama(hf) -> dict[str, Any]:
    """convert_hf_model_config's `architecture == "LlamaForCausalLM"` branch."""
    assert hf.architectures[0] == "LlamaForCausalLM", hf.architectures
    # TL's _apply_llama3_rope_scaling only acts on rope_type "llama3" (transformers 5 reports
    # {"rope_type": "default", "rope_theta": ...} here for plain RoPE)
    scaling = getattr(hf, "rope_scaling", None) or {}
    rope_type = scaling.get("type") or scaling.get("rope_type") or ""
    assert rope_type.lower() != "llama3", "llama3 rope scaling is not handled here"
    return {
        "d_model": hf.hidden_size,
        "d_head": hf.hidden_size // hf.num_attention_heads,
        "n_heads": hf.num_attention_heads,
        "d_mlp": hf.intermediate_size,
        "n_layers": hf.num_hidden_layers,
        "n_ctx": hf.max_position_embeddings,
        "eps": hf.rms_norm_eps,
        "d_vocab": hf.vocab_size,
        "act_fn": hf.hidden_act,
        # TL only uses GQA when the KV head count differs from the query head count
        "n_key_value_heads": (
            hf.num_key_value_heads
            if hf.num_key_value_heads != hf.num_attention_heads
            else None
        ),
        "normalization_type": "RMS",
        "positional_embedding_type": "rotary",
        "rotary_adjacent_pairs": False,
        "rotary_dim": hf.hidden_size // hf.num_attention_heads,
        "rotary_base": rope_theta(hf),
        "final_rms": True,
        "gated_mlp": True,
        "original_architecture": "LlamaForCausalLM",
        "quantization_method": None,
    }


def tl_cfg_dict_gpt2(hf) -> dict[str, Any]:
    """convert_hf_model_config's `architecture == "GPT2LMHeadModel"` branch. Note that TL takes
    d_mlp = 4 * n_embd (it ignores n_inner)."""
    assert hf.architectures[0] == "GPT2LMHeadModel", hf.architectures
    return {
        "d_model": hf.n_embd,
        "d_head": hf.n_embd // hf.n_head,
        "n_heads": hf.n_head,
        "d_mlp": hf.n_embd * 4,
        "n_layers": hf.n_layer,
        "n_ctx": hf.n_ctx,
        "eps": hf.layer_norm_epsilon,
        "d_vocab": hf.vocab_size,
        "act_fn": hf.activation_function,
        "use_attn_scale": getattr(hf, "scale_attn_weights", True),
        "use_local_attn": False,
        "scale_attn_by_inverse_layer_idx": hf.scale_attn_by_inverse_layer_idx,
        "normalization_type": "LN",
        "original_architecture": "GPT2LMHeadModel",
        "quantization_method": None,
    }


def cross_check_with_tl(hf_config, hand: dict[str, Any], name: str) -> None:
    """Run TL's own convert_hf_model_config on a local copy of the HF config (a directory whose
    name contains neither "llama" nor "gemma", so TL reads its config.json instead of guessing the
    architecture from the name) and require it to agree with the hand-built dict."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / f"{name}-config"
        hf_config.save_pretrained(d)
        theirs = tl_loading.convert_hf_model_config(str(d))
    theirs.pop("tokenizer_name", None)
    if theirs != hand:
        diff = {
            k: (hand.get(k, "<absent>"), theirs.get(k, "<absent>"))
            for k in set(hand) | set(theirs)
            if hand.get(k, "<absent>") != theirs.get(k, "<absent>")
        }
        raise AssertionError(f"{name}: hand-built TL config differs from TL's (hand, TL): {diff}")


def finish_cfg(
    cfg_dict: dict[str, Any], model_name: str, vocab_size: int, fold_ln: bool
) -> HookedTransformerConfig:
    """The post-processing of loading_from_pretrained.get_pretrained_model_config."""
    d = dict(cfg_dict)
    d["tokenizer_name"] = None  # from_pretrained would set the hub name; the tokenizer is passed in
    d["model_name"] = model_name
    d["init_weights"] = False
    d["dtype"] = torch.float32
    if fold_ln:
        d["normalization_type"] = {"LN": "LNPre", "RMS": "RMSPre"}[d["normalization_type"]]
    d["from_checkpoint"] = False
    d["device"] = "cpu"  # from_pretrained's None resolves to the best device; pin CPU here
    d["n_devices"] = 1
    d["default_prepend_bos"] = True
    d["load_in_4bit"] = False
    d["d_vocab"] = vocab_size  # hf_cfg["vocab_size"]
    return HookedTransformerConfig.from_dict(d)


def effective_processing_flags(cfg_dict: dict[str, Any], processing: str) -> dict[str, bool]:
    """PROCESSING[processing] after HookedTransformer.from_pretrained's own adjustments: it turns
    center_unembed off for models with an output logit softcap (Gemma-2). No other adjustment
    applies to the architectures here."""
    flags = dict(PROCESSING[processing])
    if flags["center_unembed"] and (cfg_dict.get("output_logits_soft_cap") or -1.0) > 0:
        flags["center_unembed"] = False
    return flags


def build_tl_model(
    hf_model, cfg_dict: dict[str, Any], model_name: str, processing: str, tokenizer=None
) -> HookedTransformer:
    flags = effective_processing_flags(cfg_dict, processing)
    cfg = finish_cfg(cfg_dict, model_name, hf_model.config.vocab_size, flags["fold_ln"])
    arch = cfg.original_architecture
    converter = {"LlamaForCausalLM": convert_llama_weights, "GPT2LMHeadModel": convert_gpt2_weights,
                 "Gemma2ForCausalLM": convert_gemma_weights}
    state_dict = converter[arch](hf_model, cfg)
    # from_pretrained creates the model with move_to_device=False and moves it afterwards
    model = HookedTransformer(cfg, tokenizer, move_to_device=False)
    model.load_and_process_state_dict(state_dict, **flags)
    model.move_model_modules_to_device()
    model.eval()
    return model


# --------------------------------------------------------------------------------------------
# running TL and saving the goldens
# --------------------------------------------------------------------------------------------


def run_tl(model: HookedTransformer, tokens: torch.Tensor):
    with torch.inference_mode():
        logits, cache = model.run_with_cache(tokens)
    return logits, cache


def save_golden(
    path: Path,
    tokens: torch.Tensor,
    logits: torch.Tensor,
    cache,
    metadata: dict[str, str],
    keep: Callable[[str], bool] = lambda name: True,
) -> dict[str, Any]:
    tensors: dict[str, torch.Tensor] = {}
    for name, act in cache.items():
        if keep(name):
            tensors[name] = act.detach().to(torch.float32).contiguous().clone()
    tensors["tokens"] = tokens.to(torch.int64).contiguous().clone()
    tensors["logits"] = logits.detach().to(torch.float32).contiguous().clone()
    tensors["log_probs"] = torch.log_softmax(tensors["logits"], dim=-1)
    meta = {**metadata, **versions()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=meta)
    canonicalize_safetensors_header(path)
    path.chmod(0o644)  # safetensors creates the file 0600
    size = path.stat().st_size
    print(f"wrote {path.relative_to(ROOT)}: {len(tensors)} tensors, {human(size)}")
    return {"file": str(path.relative_to(ROOT)), "tensors": len(tensors), "bytes": size}


def canonicalize_safetensors_header(path: Path) -> None:
    """safetensors writes its JSON header from a hash map, so the order of the keys (metadata and
    tensor entries) changes from run to run although the tensor data do not. Rewrite the header
    with sorted keys, padded to its original length, so that regenerating the goldens gives
    byte-identical files."""
    with open(path, "r+b") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        raw = text.encode("utf-8")
        assert len(raw) <= n, (len(raw), n)
        f.seek(8)
        f.write(raw + b" " * (n - len(raw)))


EXTRAS_TOKEN, EXTRAS_INCORRECT, ABLATE_LAYER, ABLATE_HEAD = 7, 3, 0, 1


def save_extras(label: str, model: HookedTransformer, tokens: torch.Tensor, cache) -> dict[str, Any]:
    """TL's ActivationCache helpers, loss and a head ablation on the processed model, for
    tests/golden_tl.rs: accumulated_resid / decompose_resid (with apply_ln), logit_attrs of a
    logit difference, per-token loss, and run_with_hooks zero-ablating one head's hook_z."""
    n = model.cfg.n_layers
    mid = n // 2
    t: dict[str, torch.Tensor] = {}
    with torch.inference_mode():
        t["accumulated_resid.incl_mid.apply_ln"] = cache.accumulated_resid(
            layer=None, incl_mid=True, apply_ln=True)
        t[f"accumulated_resid.layer{mid}.apply_ln"] = cache.accumulated_resid(
            layer=mid, incl_mid=False, apply_ln=True)
        t["decompose_resid.apply_ln"] = cache.decompose_resid(layer=None, apply_ln=True)
        t[f"decompose_resid.layer{mid}.mlp_input.apply_ln"] = cache.decompose_resid(
            layer=mid, mlp_input=True, apply_ln=True)
        stack = cache.decompose_resid(layer=None, apply_ln=False)
        t["logit_attrs.decompose_resid"] = cache.logit_attrs(
            stack, tokens=EXTRAS_TOKEN, incorrect_tokens=EXTRAS_INCORRECT)
        t["per_token_loss"] = model(tokens, return_type="loss", loss_per_token=True)

        def zero_head(z, hook):
            z[:, :, ABLATE_HEAD, :] = 0.0
            return z

        t["ablated.logits"] = model.run_with_hooks(
            tokens, fwd_hooks=[(f"blocks.{ABLATE_LAYER}.attn.hook_z", zero_head)])
    tensors = {k: v.detach().to(torch.float32).contiguous().clone() for k, v in t.items()}
    tensors["tokens"] = tokens.to(torch.int64).contiguous().clone()
    meta = {"model": label, "processing": "processed", "mid_layer": str(mid),
            "token": str(EXTRAS_TOKEN), "incorrect_token": str(EXTRAS_INCORRECT),
            "ablate_layer": str(ABLATE_LAYER), "ablate_head": str(ABLATE_HEAD), **versions()}
    path = TL_DIR / f"{label}_extras.safetensors"
    save_file(tensors, str(path), metadata=meta)
    canonicalize_safetensors_header(path)
    path.chmod(0o644)
    size = path.stat().st_size
    print(f"wrote {path.relative_to(ROOT)}: {len(tensors)} tensors, {human(size)}")
    return {"file": str(path.relative_to(ROOT)), "tensors": len(tensors), "bytes": size}


def compare_with_hf(name: str, hf_model, tokens: torch.Tensor, tl_logits: torch.Tensor) -> None:
    """Both processed and unprocessed TL models must give the HF model's log-probs."""
    with torch.inference_mode():
        hf_logits = hf_model(tokens).logits.float()
    d = (torch.log_softmax(hf_logits, -1) - torch.log_softmax(tl_logits.float(), -1)).abs().max()
    print(f"  {name}: max |log_probs(TL) - log_probs(HF)| = {d.item():.3e}")
    assert d.item() < 1e-3, f"{name}: TL and HF disagree ({d.item()})"


def make_tl_goldens(
    label: str,
    hf_model,
    cfg_dict: dict[str, Any],
    tokens: torch.Tensor,
    extra_meta: dict[str, str],
    tokenizer=None,
    keep_unprocessed: Callable[[str], bool] = lambda name: True,
) -> tuple[list[dict[str, Any]], list[str], dict[str, Any]]:
    summaries = []
    hook_names: list[str] = []
    info: dict[str, Any] = {}
    for processing in ("processed", "unprocessed"):
        model = build_tl_model(hf_model, cfg_dict, label, processing, tokenizer)
        if tokens is None:  # SmolLM2: tokens come from TL's own to_tokens
            tokens = model.to_tokens(SMOLLM2_PROMPT)
            info["tokens"] = tokens[0].tolist()
            info["tokenizer_prepends_bos"] = model.cfg.tokenizer_prepends_bos
        logits, cache = run_tl(model, tokens)
        compare_with_hf(f"{label} {processing}", hf_model, tokens, logits)
        if processing == "processed":
            summaries.append(save_extras(label, model, tokens, cache))
            hook_names = list(cache.keys())
            info["cfg"] = model.cfg
            info["shapes"] = {k: list(v.shape) for k, v in cache.items()}
            info["top_next"] = logits[0, -1].topk(5)
        keep = keep_unprocessed if processing == "unprocessed" else (lambda name: True)
        meta = {
            **extra_meta,
            "model": label,
            "processing": processing,
            "processing_flags": json.dumps(effective_processing_flags(cfg_dict, processing)),
        }
        path = TL_DIR / f"{label}_{processing}.safetensors"
        summaries.append(save_golden(path, tokens, logits, cache, meta, keep))
        del model, cache, logits
    return summaries, hook_names, info


# --------------------------------------------------------------------------------------------
# b. SmolLM2
# --------------------------------------------------------------------------------------------


def load_smollm2_hf():
    """SmolLM2-135M-Instruct as a float32 transformers LlamaForCausalLM, loaded from the GGUF
    (transformers dequantizes every tensor and un-permutes llama.cpp's Q/K row order)."""
    gguf_path()
    hf_model = AutoModelForCausalLM.from_pretrained(
        str(GGUF_DIR), gguf_file=GGUF_FILE, dtype=torch.float32
    )
    hf_model.eval()
    for p in hf_model.parameters():
        p.requires_grad_(False)
    # A config built from GGUF metadata has no `architectures`; the hub's config.json says
    # LlamaForCausalLM, which is the class transformers instantiated.
    assert type(hf_model).__name__ == "LlamaForCausalLM", type(hf_model)
    c = hf_model.config
    if not c.architectures:
        c.architectures = ["LlamaForCausalLM"]
    # The weights are dequantized to float32, so this is an unquantized checkpoint as far as TL is
    # concerned (like the hub's safetensors one); the leftover `quantization_config: gguf` would
    # make TL refuse it.
    if getattr(c, "quantization_config", None) is not None:
        del c.quantization_config
    # GGUF stores eps as float32 (9.99999974738e-06); the hub's config.json says 1e-05. Both are
    # the same float32, which is what the computation uses; keep the config value readable.
    c.rms_norm_eps = float(str(np.float32(c.rms_norm_eps)))
    return hf_model


def make_smollm2_goldens():
    tok = load_smollm2_tokenizer()
    print(f"loading {GGUF_FILE} with transformers (dequantizes to float32; slow) ...")
    hf_model = load_smollm2_hf()
    c = hf_model.config
    print(f"  HF config from GGUF: layers={c.num_hidden_layers} d={c.hidden_size} "
          f"heads={c.num_attention_heads}/{c.num_key_value_heads} mlp={c.intermediate_size} "
          f"ctx={c.max_position_embeddings} rope_theta={rope_theta(c)} eps={c.rms_norm_eps} "
          f"vocab={c.vocab_size} tied={c.tie_word_embeddings}")
    cfg_dict = tl_cfg_dict_llama(hf_model.config)
    cross_check_with_tl(hf_model.config, cfg_dict, "smollm2")

    def keep_unprocessed(name: str) -> bool:
        if not name.startswith("blocks."):
            return True  # hook_embed, ln_final.*, unembed.*
        layer = int(name.split(".")[1])
        return layer in SMOLLM2_UNPROCESSED_FULL_LAYERS or name.endswith(".hook_resid_post")

    summaries, hooks, info = make_tl_goldens(
        "smollm2",
        hf_model,
        cfg_dict,
        None,
        {"prompt": SMOLLM2_PROMPT, "source": f"data/models/{GGUF_FILE}"},
        tokenizer=tok,
        keep_unprocessed=keep_unprocessed,
    )
    vals, ids = info["top_next"]
    top = [(tok.decode([i]), round(v, 3)) for i, v in zip(ids.tolist(), vals.tolist())]
    print(f"  smollm2 tokens (TL to_tokens): {info['tokens']} "
          f"(tokenizer_prepends_bos={info['tokenizer_prepends_bos']})")
    print(f"  smollm2 top next tokens after {SMOLLM2_PROMPT!r}: {top}")
    assert top[0][0] == " Paris", f"sanity check failed: top next token is {top[0][0]!r}"
    return summaries, hooks, info


# --------------------------------------------------------------------------------------------
# c./d. tiny random models
# --------------------------------------------------------------------------------------------


def perturb_norms_and_biases(model: torch.nn.Module, seed: int) -> None:
    """Make the parameters that weight processing folds away non-trivial: every norm weight
    becomes 1 + 0.2*randn and every bias 0.1*randn (HF initialises them to 1 and 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            is_norm = any(s in name for s in ("ln_", "norm", "layernorm"))
            if is_norm and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))


def tiny_tokens(seed: int, vocab: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (2, 7), generator=g, dtype=torch.int64)


def save_hf_dir(model, path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)
    model.save_pretrained(path, safe_serialization=True)
    (path / "model.safetensors").chmod(0o644)
    (path / "generation_config.json").unlink(missing_ok=True)  # not needed: config + weights only
    files = ", ".join(f"{f.name} ({human(f.stat().st_size)})" for f in sorted(path.iterdir()))
    print(f"wrote {path.relative_to(ROOT)}/: {files}")


def make_tiny_gpt2_goldens():
    torch.manual_seed(1234)
    config = GPT2Config(
        vocab_size=300,
        n_positions=32,
        # GPT-2's own config.json carries n_ctx (= n_positions) and TL reads hf_config.n_ctx;
        # transformers 5 no longer defines the attribute, so store it explicitly.
        n_ctx=32,
        n_embd=64,
        n_layer=2,
        n_head=4,
        activation_function="gelu_new",
        layer_norm_epsilon=1e-5,
        # larger than GPT-2's 0.02 so that attention patterns are far from uniform
        initializer_range=0.1,
        tie_word_embeddings=True,
        bos_token_id=0,  # GPT2Config's default 50256 is outside this vocabulary
        eos_token_id=0,
        architectures=["GPT2LMHeadModel"],
    )
    model = GPT2LMHeadModel(config)
    perturb_norms_and_biases(model, seed=1235)
    model.eval()
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()
    out_dir = FIXTURES / "tiny-gpt2"
    save_hf_dir(model, out_dir)
    # Reload from disk, so the goldens are exactly what a reader of the directory gets.
    model = GPT2LMHeadModel.from_pretrained(out_dir, dtype=torch.float32).eval()
    cfg_dict = tl_cfg_dict_gpt2(model.config)
    cross_check_with_tl(model.config, cfg_dict, "tiny-gpt2")
    tokens = tiny_tokens(seed=1236, vocab=config.vocab_size)
    return make_tl_goldens(
        "tiny_gpt2", model, cfg_dict, tokens, {"source": "tests/fixtures/tiny-gpt2"}
    )


def make_tiny_llama_goldens():
    torch.manual_seed(4321)
    config = LlamaConfig(
        vocab_size=300,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32,
        rope_theta=10000.0,
        rms_norm_eps=1e-5,
        hidden_act="silu",
        tie_word_embeddings=False,
        initializer_range=0.1,
        bos_token_id=0,  # LlamaConfig's defaults (1, 2) are fine too; keep both tiny models alike
        eos_token_id=0,
        architectures=["LlamaForCausalLM"],
    )
    model = LlamaForCausalLM(config)
    perturb_norms_and_biases(model, seed=4322)  # Llama has no biases: only the RMSNorm weights
    model.eval()
    out_dir = FIXTURES / "tiny-llama"
    save_hf_dir(model, out_dir)
    model = LlamaForCausalLM.from_pretrained(out_dir, dtype=torch.float32).eval()
    cfg_dict = tl_cfg_dict_llama(model.config)
    cross_check_with_tl(model.config, cfg_dict, "tiny-lm")
    tokens = tiny_tokens(seed=4323, vocab=config.vocab_size)
    return make_tl_goldens(
        "tiny_llama", model, cfg_dict, tokens, {"source": "tests/fixtures/tiny-llama"}
    )


# --------------------------------------------------------------------------------------------
# e. tiny Gemma-2
# --------------------------------------------------------------------------------------------

# TL's own google/gemma-2-* config dicts and the keys whose values are architecture flags (the
# rest are sizes, which come from the HF config)
GEMMA2_FLAG_KEYS = (
    "act_fn", "normalization_type", "positional_embedding_type", "use_attn_scale",
    "use_local_attn", "attn_scores_soft_cap", "output_logits_soft_cap", "gated_mlp",
    "final_rms", "use_normalization_before_and_after", "original_architecture",
    "quantization_method",
)


def tl_cfg_dict_gemma2(hf) -> dict[str, Any]:
    """TL 3.9's convert_hf_model_config has no config-driven Gemma2ForCausalLM branch: it only
    knows the names google/gemma-2-{2b,9b,27b}(-it) and returns hard-coded dicts. This is the same
    dict with the sizes read from the HF config (cross_check_gemma2_with_tl compares it with TL's
    dicts). attn_scale = sqrt(query_pre_attn_scalar), set only when that differs from head_dim
    (TL's 27b dict has attn_scale 12.0 = sqrt(144); 2b/9b, where it equals head_dim, use the
    default sqrt(d_head)). HF marks layer i as sliding when i is even: attn_types "local" there."""
    assert hf.architectures[0] == "Gemma2ForCausalLM", hf.architectures
    attn_types = [{"sliding_attention": "local", "full_attention": "global"}[t]
                  for t in hf.layer_types]
    d = {
        "d_model": hf.hidden_size,
        "d_head": hf.head_dim,
        "n_heads": hf.num_attention_heads,
        "d_mlp": hf.intermediate_size,
        "n_layers": hf.num_hidden_layers,
        "n_ctx": hf.max_position_embeddings,
        "eps": hf.rms_norm_eps,
        "d_vocab": hf.vocab_size,
        "act_fn": hf.hidden_activation,
        "initializer_range": 0.02,  # as in TL's dicts; unused (init_weights=False)
        "normalization_type": "RMS",
        "rotary_base": rope_theta(hf),
        "positional_embedding_type": "rotary",
        "use_attn_scale": True,
        "n_key_value_heads": hf.num_key_value_heads,
        "window_size": hf.sliding_window,
        "use_local_attn": True,
        "attn_types": attn_types,
        "attn_scores_soft_cap": hf.attn_logit_softcapping,
        "output_logits_soft_cap": hf.final_logit_softcapping,
        "gated_mlp": True,
        "final_rms": True,
        "use_normalization_before_and_after": True,
        "original_architecture": "Gemma2ForCausalLM",
        "quantization_method": None,
    }
    if hf.query_pre_attn_scalar != hf.head_dim:
        d["attn_scale"] = float(hf.query_pre_attn_scalar) ** 0.5
    return d


def cross_check_gemma2_with_tl(hand: dict[str, Any]) -> None:
    """TL's own dicts (name-based branches, nothing is fetched) must have the same keys and the
    same architecture flags; the 27b one is the reference when attn_scale is set."""
    for name in ("google/gemma-2-2b", "google/gemma-2-27b"):
        theirs = tl_loading.convert_hf_model_config(name)
        theirs.pop("tokenizer_name", None)
        if ("attn_scale" in theirs) != ("attn_scale" in hand):
            continue
        assert set(theirs) == set(hand), (name, set(theirs) ^ set(hand))
        diff = {k: (hand[k], theirs[k]) for k in GEMMA2_FLAG_KEYS if hand[k] != theirs[k]}
        assert not diff, f"tiny-gemma2 vs TL's {name} dict (hand, TL): {diff}"
        n = hand["n_layers"]
        assert hand["attn_types"] == (["local", "global"] * n)[:n], hand["attn_types"]
        return
    raise AssertionError("no TL gemma-2 dict to compare with")


def make_tiny_gemma2_goldens():
    torch.manual_seed(2468)
    config = Gemma2Config(
        vocab_size=300,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=3,  # layer_types: sliding, full, sliding
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        hidden_activation="gelu_pytorch_tanh",
        max_position_embeddings=32,
        rms_norm_eps=1e-6,
        rope_theta=10000.0,
        sliding_window=4,  # shorter than the 7-token sequences, so the window matters
        query_pre_attn_scalar=24,  # != head_dim: the attention scale is 1/sqrt(24), not 1/4
        attn_logit_softcapping=50.0,
        final_logit_softcapping=30.0,
        tie_word_embeddings=True,  # as the real Gemma-2 checkpoints
        initializer_range=0.1,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
        architectures=["Gemma2ForCausalLM"],
    )
    model = Gemma2ForCausalLM(config)
    g = torch.Generator().manual_seed(2469)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(0.2 * torch.randn(p.shape, generator=g))  # Gemma's RMSNorm uses (1 + w)
        # large enough queries/keys and (tied) embeddings that both softcaps really bend the
        # scores/logits (pre-cap |scores| and |logits| reach the caps' scale, see the printout)
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(3.0)
            layer.self_attn.k_proj.weight.mul_(3.0)
        model.model.embed_tokens.weight.mul_(10.0)
    model.eval()
    out_dir = FIXTURES / "tiny-gemma2"
    save_hf_dir(model, out_dir)
    # eager attention: the transformers implementation that applies the attention logit softcap
    model = Gemma2ForCausalLM.from_pretrained(
        out_dir, dtype=torch.float32, attn_implementation="eager").eval()
    assert model.config._attn_implementation == "eager"
    cfg_dict = tl_cfg_dict_gemma2(model.config)
    cross_check_gemma2_with_tl(cfg_dict)
    tokens = tiny_tokens(seed=2470, vocab=config.vocab_size)
    result = make_tl_goldens(
        "tiny_gemma2", model, cfg_dict, tokens, {"source": "tests/fixtures/tiny-gemma2"}
    )
    # how hard the caps bite on these tokens (TL processed model)
    tl_model = build_tl_model(model, cfg_dict, "tiny_gemma2", "processed")
    with torch.inference_mode():
        _, cache = tl_model.run_with_cache(tokens)
    pre_logits = cache["unembed.hook_out"]
    q, k = cache["blocks.1.attn.hook_rot_q"], cache["blocks.1.attn.hook_rot_k"]
    k = k.repeat_interleave(q.shape[2] // k.shape[2], dim=2)
    raw_scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / cfg_dict.get("attn_scale", 4.0)
    print(f"  tiny_gemma2: max |logits before the softcap| = {pre_logits.abs().max().item():.1f} "
          f"(cap 30), layer-1 max |attn scores before the softcap| = "
          f"{raw_scores.abs().max().item():.1f} (cap 50)")
    return result


# --------------------------------------------------------------------------------------------


def cfg_non_defaults(cfg: HookedTransformerConfig) -> dict[str, Any]:
    """The required fields of a HookedTransformerConfig plus every field that differs from a
    default config of the same size (derived fields such as n_params included)."""
    required = ("n_layers", "d_model", "n_ctx", "d_head")
    ref = HookedTransformerConfig(**{k: getattr(cfg, k) for k in required}).to_dict()
    out: dict[str, Any] = {k: getattr(cfg, k) for k in required}
    for k, v in cfg.to_dict().items():
        if k in ref and (ref[k] == v or (isinstance(v, float) and v != v and ref[k] != ref[k])):
            continue
        out[k] = str(v) if isinstance(v, torch.dtype) else v
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=["tokenizer", "smollm2", "tiny", "gemma2"],
                    help="run one part (tiny = tiny_gpt2, tiny_llama and tiny_gemma2)")
    args = ap.parse_args()
    torch.manual_seed(0)

    if args.only in (None, "tokenizer"):
        make_tokenizer_fixtures()

    hooks_path = TL_DIR / "hook_names.json"
    hook_names = json.loads(hooks_path.read_text()) if hooks_path.exists() else {}
    results = {}
    jobs = []
    if args.only in (None, "tiny"):
        jobs += [("tiny_gpt2", make_tiny_gpt2_goldens), ("tiny_llama", make_tiny_llama_goldens)]
    if args.only in (None, "tiny", "gemma2"):
        jobs += [("tiny_gemma2", make_tiny_gemma2_goldens)]
    if args.only in (None, "smollm2"):
        jobs += [("smollm2", make_smollm2_goldens)]
    for label, fn in jobs:
        print(f"== {label}")
        results[label] = fn()
        hook_names[label] = results[label][1]
    if not jobs:
        return
    write_json(hooks_path, {k: hook_names[k] for k in sorted(hook_names)})

    print("\n== summary")
    for label, (summaries, hooks, info) in results.items():
        for s in summaries:
            print(f"{s['file']}: {s['tensors']} tensors, {human(s['bytes'])}")
        cfg = info["cfg"]
        print(f"{label}: {len(hooks)} hooks in TL's cache; config (non-default fields):")
        print("  " + json.dumps(cfg_non_defaults(cfg), default=str))
        print(f"{label} hooks of layer 0 (and non-block hooks), processed model:")
        for name in hooks:
            if not name.startswith("blocks.") or name.startswith("blocks.0."):
                print(f"  {name} {info['shapes'][name]}")


if __name__ == "__main__":
    main()
