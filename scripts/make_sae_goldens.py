#!/usr/bin/env python3
"""Generate the SAELens reference fixtures (SAE folders, loader inputs and golden outputs) that
saescope's Rust SAE tests compare against.

Usage (from the repository root):

    bash scripts/setup_golden_venv.sh           # pinned torch / transformer-lens / sae-lens
    bash scripts/fetch_model.sh                 # the SmolLM2 GGUF (only for --only smollm2)
    .venv-golden/bin/python scripts/make_sae_goldens.py [--only saes|loaders|registry|smollm2]

Everything runs offline and on CPU and is deterministic (fixed seeds; safetensors headers are
rewritten with sorted keys, see make_goldens.canonicalize_safetensors_header).

What it writes (all under tests/fixtures/sae/):

  saes/<name>/                 SAE folders written by SAELens itself (SAE.save_model, or
                               TrainingSAE.save_inference_model for `batchtopk`): cfg.json +
                               sae_weights.safetensors (+ sparsity.safetensors for `standard`).
                               Weights, biases and thresholds are seeded random and non-zero, the
                               decoder rows have norms in [0.5, 2] so that fold_W_dec_norm and
                               rescale_acts_by_decoder_norm matter. d_in 16, d_sae 48.
  goldens/<name>.safetensors   SAELens outputs on a fixed input `x` ([3, 5, 16]; [3, 5, 4, 4] for
                               hook_z), computed on the SAE re-loaded with SAE.load_from_disk:
                                 feature_acts      sae.encode(x)
                                 hidden_pre        what hook_sae_acts_pre holds
                                 recons            sae.decode(sae.encode(x))
                                 forward           sae(x)
                                 hook_sae_*        every hook of sae.run_with_cache(x) (a hook that
                                                   does not fire is absent; see metadata `hooks`)
                                 error_term.forward / error_term.hook_sae_error
                                                   the same SAE with use_error_term=True (SAEs only;
                                                   transcoders ignore the flag)
                                 forward_folded, feature_acts_folded, recons_folded
                                                   after SAE.load_from_disk(..., fold_W_dec_norm=True)
                                                   (absent when SAELens refuses to fold; metadata
                                                   `fold_W_dec_norm` then holds the error)
                               plus per-SAE extras (see metadata `notes`). Metadata: sae_lens and
                               torch versions, the architecture, the cfg SAELens loaded (JSON), ...
  goldens/<name>.loaded_cfg.json
                               {"loader_cfg_dict": what the loader function returned,
                                "cfg_dict": after handle_config_defaulting (the pre-6 conversion),
                                "sae_cfg": sae.cfg.to_dict() of the loaded SAE, "state_dict": the
                                loader's tensor names and shapes, ...}
  legacy_pre6/, legacy_pre6_topk/
                               pre-6.0 cfg.json files (SAELens 6 cannot write them, so they are
                               written here by hand as SAELens <= 5 did) + sae_weights.safetensors
                               (the first also has an all-ones `scaling_factor`, which the loader
                               drops); goldens/legacy_pre6*.{safetensors,loaded_cfg.json}.
  gemma_scope/layer_3/width_16k/average_l0_10/params.npz
                               Gemma Scope 1 layout (np.savez, keys W_enc W_dec b_enc b_dec
                               threshold); loaded with SAELens's gemma_2 loader.
  gemma_scope_2/resid_post/layer_3_width_16k_l0_small/params.safetensors
  gemma_scope_2/transcoder/layer_3_width_16k_l0_small_affine/params.safetensors
                               Gemma Scope 2 layout (w_enc w_dec b_enc b_dec threshold
                               [+ affine_skip_connection]); loaded with the gemma_3 loader.
  sparsify/layers.3/           EleutherAI sparsify layout (cfg.json + sae.safetensors, as
                               SparseCoder.save_to_disk writes them); loaded with the sparsify loader.
  dictionary_learning/resid_post_layer_3/trainer_{0,1}/
                               dictionary_learning layout (ae.pt = torch.save(state_dict) +
                               config.json) for AutoEncoder (StandardTrainer) and BatchTopKSAE
                               (BatchTopKTrainer); loaded with dictionary_learning_1.
  saes/smollm2_standard_l10/, saes/smollm2_topk_l20/, goldens/spliced_smollm2.safetensors
                               HookedSAETransformer runs on SmolLM2-135M-Instruct (see
                               make_spliced_goldens).

The hub loaders are called through SAE.from_pretrained_with_cfg_and_sparsity(...,
converter=<SAELens's loader>) with SAELens's `hf_hub_download` (and, for Gemma Scope 2, its
`get_safetensors_tensor_shapes`) replaced by functions that resolve to the local fixture files, so
the whole SAELens loading path runs, but nothing is downloaded.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata as md
import json
import logging
import math
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any, Callable

import os

# TrainingSAE.save_inference_model builds cfg.json from a set of field names, so its key order
# follows str hashing: pin the hash seed (re-executing once) so the files are byte-stable.
if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable, *sys.argv])

import numpy as np
import torch
from safetensors.torch import save_file, save_model

warnings.filterwarnings("ignore")  # SAELens/TL deprecation and "model_from_pretrained_kwargs" noise
logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_goldens as mg  # noqa: E402  (build_tl_model helpers, canonical safetensors headers)

import sae_lens  # noqa: E402
import sae_lens.loading.pretrained_sae_loaders as sl_loaders  # noqa: E402
from huggingface_hub.utils import EntryNotFoundError  # noqa: E402
from sae_lens import SAE, HookedSAETransformer  # noqa: E402
from sae_lens.loading.pretrained_sae_loaders import (  # noqa: E402
    handle_config_defaulting,
    sae_lens_disk_loader,
)
from sae_lens.saes import (  # noqa: E402
    BatchTopKTrainingSAE,
    BatchTopKTrainingSAEConfig,
    GatedSAE,
    GatedSAEConfig,
    JumpReLUSAE,
    JumpReLUSAEConfig,
    JumpReLUTranscoder,
    JumpReLUTranscoderConfig,
    SkipTranscoder,
    SkipTranscoderConfig,
    StandardSAE,
    StandardSAEConfig,
    TopKSAE,
    TopKSAEConfig,
    Transcoder,
    TranscoderConfig,
)
from sae_lens.saes.sae import SAEMetadata  # noqa: E402

ROOT = mg.ROOT
SAE_DIR = ROOT / "tests" / "fixtures" / "sae"
SAES = SAE_DIR / "saes"
GOLDENS = SAE_DIR / "goldens"

D_IN, D_SAE, D_OUT = 16, 48, 12
N_HEADS, D_HEAD = 4, 4  # hook_z SAE: d_in = 4 heads x 4 d_head
X_SHAPE = (3, 5, D_IN)

SL_VERSION = md.version("sae-lens")


def versions() -> dict[str, str]:
    return {"sae_lens": SL_VERSION, "torch": torch.__version__,
            "transformer_lens": md.version("transformer-lens")}


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def fixed_x() -> torch.Tensor:
    """The fixed SAE input: N(0.3, 1.5^2), so that b_dec subtraction, the normalisations and the
    thresholds all matter."""
    return (1.5 * torch.randn(X_SHAPE, generator=gen(777)) + 0.3).to(torch.float32)


def rand_params(seed: int, *, d_in: int = D_IN, d_sae: int = D_SAE, d_out: int | None = None,
                threshold_range: tuple[float, float] = (0.3, 1.5)) -> dict[str, torch.Tensor]:
    """Every parameter any architecture needs, seeded; callers pick the ones they use."""
    g = gen(seed)
    d_out = d_in if d_out is None else d_out
    w_dec = torch.randn(d_sae, d_out, generator=g)
    norms = 0.5 + 1.5 * torch.rand(d_sae, generator=g)  # decoder row norms in [0.5, 2]
    w_dec = w_dec / w_dec.norm(dim=-1, keepdim=True) * norms[:, None]
    lo, hi = threshold_range
    return {
        "W_enc": torch.randn(d_in, d_sae, generator=g) / math.sqrt(d_in),
        "W_dec": w_dec,
        "b_enc": 0.3 * torch.randn(d_sae, generator=g) - 0.1,
        "b_dec": 0.3 * torch.randn(d_out, generator=g),
        "threshold": lo + (hi - lo) * torch.rand(d_sae, generator=g),
        "b_gate": 0.3 * torch.randn(d_sae, generator=g),
        "b_mag": 0.3 * torch.randn(d_sae, generator=g),
        "r_mag": 0.3 * torch.randn(d_sae, generator=g),
        "W_skip": 0.5 * torch.randn(d_out, d_in, generator=g) / math.sqrt(d_in),
    }


def set_params(sae: torch.nn.Module, params: dict[str, torch.Tensor]) -> None:
    """Copy the matching entries of `params` into the SAE's parameters (state_dict keys)."""
    with torch.no_grad():
        sd = sae.state_dict()
        for k in sd:
            if k in params:
                assert sd[k].shape == params[k].shape, (k, sd[k].shape, params[k].shape)
                getattr(sae, k).data.copy_(params[k].to(sd[k].dtype))


def f32(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(torch.float32).contiguous().clone()


def human(nbytes: int) -> str:
    return mg.human(nbytes)


def rel(p: Path) -> str:
    return str(p.relative_to(ROOT))


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=meta)
    mg.canonicalize_safetensors_header(path)
    path.chmod(0o644)
    print(f"wrote {rel(path)}: {len(tensors)} tensors, {human(path.stat().st_size)}")


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, default=str) + "\n", encoding="utf-8")
    path.chmod(0o644)
    print(f"wrote {rel(path)} ({human(path.stat().st_size)})")


def finish_sae_folder(folder: Path) -> None:
    """SAELens wrote the folder; make its safetensors headers byte-stable and the files 0644.
    The tensor bytes and cfg.json are untouched."""
    for f in sorted(folder.iterdir()):
        if f.suffix == ".safetensors":
            mg.canonicalize_safetensors_header(f)
        f.chmod(0o644)
    files = ", ".join(f"{f.name} ({human(f.stat().st_size)})" for f in sorted(folder.iterdir()))
    print(f"wrote {rel(folder)}/: {files}")


def fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def shapes(sd: dict[str, torch.Tensor]) -> dict[str, Any]:
    return {k: {"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")}
            for k, v in sorted(sd.items())}


# --------------------------------------------------------------------------------------------
# running an SAE the way the goldens need it
# --------------------------------------------------------------------------------------------


def is_transcoder(sae: SAE) -> bool:
    return isinstance(sae, Transcoder)


def sae_outputs(sae: SAE, x: torch.Tensor, prefix: str = "") -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        feats = sae.encode(x)
        out["feature_acts"] = feats
        out["recons"] = sae.decode(sae.encode(x))
        out["forward"] = sae(x)
        fwd, cache = sae.run_with_cache(x)
        assert torch.equal(fwd, out["forward"])
        for k, v in cache.items():
            out[k] = v
        out["hidden_pre"] = cache["hook_sae_acts_pre"]
        assert torch.equal(cache["hook_sae_acts_post"], feats)
    return {prefix + k: f32(v) for k, v in out.items()}


def error_term_outputs(sae: SAE, x: torch.Tensor) -> dict[str, torch.Tensor]:
    if is_transcoder(sae):
        return {}
    sae.use_error_term = True
    try:
        with torch.no_grad():
            fwd, cache = sae.run_with_cache(x)
    finally:
        sae.use_error_term = False
    assert (fwd - x).abs().max() < 1e-5, "with the error term, sae(x) must give x back"
    return {"error_term.forward": f32(fwd), "error_term.hook_sae_error": f32(cache["hook_sae_error"])}


def folded_outputs(folder: Path, x: torch.Tensor, loader: Callable[..., SAE] | None = None
                   ) -> tuple[dict[str, torch.Tensor], str]:
    try:
        sae = loader() if loader is not None else SAE.load_from_disk(folder, fold_W_dec_norm=True)
    except Exception as e:  # noqa: BLE001  (record what SAELens says)
        return {}, f"{type(e).__name__}: {e}"
    with torch.no_grad():
        feats = sae.encode(x)
        res = {"feature_acts_folded": f32(feats), "recons_folded": f32(sae.decode(feats)),
               "forward_folded": f32(sae(x)),
               "W_dec_norm_folded": f32(sae.W_dec.norm(dim=-1))}
    return res, "ok"


def golden_meta(name: str, sae: SAE, extra: dict[str, Any]) -> dict[str, str]:
    meta = {
        "name": name,
        "architecture": sae.cfg.architecture(),
        "sae_class": type(sae).__name__,
        "sae_cfg": json.dumps(sae.cfg.to_dict(), sort_keys=True, default=str),
        "x": "fixed input, (1.5 * randn(seed 777) + 0.3) in the SAE's input shape",
        **versions(),
    }
    for k, v in extra.items():
        meta[k] = v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)
    return meta


def check_nontrivial(name: str, t: dict[str, torch.Tensor]) -> str:
    f = t["feature_acts"]
    h = t["hidden_pre"]
    l0 = (f != 0).float().sum(-1).mean().item()
    s = f"{name}: L0 {l0:.2f}/{f.shape[-1]}, hidden_pre>0: {(h > 0).float().mean().item():.2f}"
    assert 0 < l0 < f.shape[-1], s
    return s


# --------------------------------------------------------------------------------------------
# a. the SAELens-native SAE folders + goldens
# --------------------------------------------------------------------------------------------


def meta_for(hook: str, **kw: Any) -> SAEMetadata:
    return SAEMetadata(model_name="tiny-test-model", hook_name=hook, **kw)


def build_specs() -> list[dict[str, Any]]:
    """name, SAE class, config, seed, notes."""
    H = "blocks.0.hook_resid_pre"
    specs = [
        dict(name="standard", cls=StandardSAE,
             cfg=StandardSAEConfig(d_in=D_IN, d_sae=D_SAE, metadata=meta_for(H)), seed=101,
             sparsity=True,
             notes="StandardSAE; also writes sparsity.safetensors (key `sparsity` [d_sae] = "
                   "log10(feature firing frequency + 1e-10), random here)."),
        dict(name="standard_no_bdec", cls=StandardSAE,
             cfg=StandardSAEConfig(d_in=D_IN, d_sae=D_SAE, apply_b_dec_to_input=False,
                                   metadata=meta_for(H)), seed=102,
             notes="apply_b_dec_to_input=False: encode does not subtract b_dec."),
        dict(name="gated", cls=GatedSAE,
             cfg=GatedSAEConfig(d_in=D_IN, d_sae=D_SAE, metadata=meta_for(H)), seed=103,
             notes="GatedSAE: no b_enc. hook_sae_acts_pre / hidden_pre holds the MAGNITUDE "
                   "pre-activation x~ (W_enc * exp(r_mag)) + b_mag; the gate x~ W_enc + b_gate is "
                   "not hooked (stored here as `gate_pre`, recomputed). feature_acts = "
                   "1[gate_pre > 0] * relu(hidden_pre). fold_W_dec_norm scales W_enc columns, "
                   "b_gate and b_mag (not r_mag)."),
        dict(name="jumprelu", cls=JumpReLUSAE,
             cfg=JumpReLUSAEConfig(d_in=D_IN, d_sae=D_SAE, metadata=meta_for(H)), seed=104,
             notes="JumpReLUSAE: feature_acts = relu(h) * 1[h > threshold] (strict). "
                   "fold_W_dec_norm also multiplies threshold by the decoder norms."),
        dict(name="topk", cls=TopKSAE,
             cfg=TopKSAEConfig(d_in=D_IN, d_sae=D_SAE, k=5, metadata=meta_for(H)), seed=105,
             notes="TopKSAE k=5, rescale_acts_by_decoder_norm False (inference default): "
                   "feature_acts = scatter(topk(h, 5).values.relu()). fold_W_dec_norm raises "
                   "NotImplementedError for this configuration, so there is no *_folded."),
        dict(name="topk_rescale", cls=TopKSAE,
             cfg=TopKSAEConfig(d_in=D_IN, d_sae=D_SAE, k=5, rescale_acts_by_decoder_norm=True,
                               metadata=meta_for(H)), seed=106,
             notes="TopKSAE k=5, rescale_acts_by_decoder_norm True: hook_sae_acts_pre holds h "
                   "BEFORE the rescale; the top-k runs on h * ||W_dec[i]||; decode divides the "
                   "feature acts by ||W_dec[i]|| before W_dec. After fold_W_dec_norm the norms are "
                   "1 so the flag stays but is a no-op."),
        dict(name="transcoder", cls=Transcoder,
             cfg=TranscoderConfig(d_in=D_IN, d_sae=D_SAE, d_out=D_OUT, apply_b_dec_to_input=False,
                                  metadata=meta_for("blocks.0.ln2.hook_normalized",
                                                    hook_name_out="blocks.0.hook_mlp_out")),
             seed=107, d_out=D_OUT,
             notes="Transcoder d_in 16 -> d_out 12: encode never subtracts b_dec; decode has no "
                   "norm_out; forward = decode(encode(x)) and never fires hook_sae_output "
                   "(absent from the cache) nor hook_sae_error (use_error_term is ignored)."),
        dict(name="skip_transcoder", cls=SkipTranscoder,
             cfg=SkipTranscoderConfig(d_in=D_IN, d_sae=D_SAE, d_out=D_OUT,
                                      apply_b_dec_to_input=False,
                                      metadata=meta_for("blocks.0.ln2.hook_normalized",
                                                        hook_name_out="blocks.0.hook_mlp_out")),
             seed=108, d_out=D_OUT,
             notes="SkipTranscoder: forward = decode(encode(x)) + x @ W_skip.T (W_skip "
                   "[d_out, d_in], applied to the raw x). recons does NOT include the skip term; "
                   "hook_sae_recons neither."),
        dict(name="jumprelu_transcoder", cls=JumpReLUTranscoder,
             cfg=JumpReLUTranscoderConfig(d_in=D_IN, d_sae=D_SAE, d_out=D_OUT,
                                          apply_b_dec_to_input=False,
                                          metadata=meta_for("blocks.0.ln2.hook_normalized",
                                                            hook_name_out="blocks.0.hook_mlp_out")),
             seed=109, d_out=D_OUT,
             notes="JumpReLUTranscoder: relu(h) * 1[h > threshold]; fold scales threshold."),
        dict(name="standard_hook_z", cls=StandardSAE,
             cfg=StandardSAEConfig(d_in=D_IN, d_sae=D_SAE, reshape_activations="hook_z",
                                   metadata=meta_for("blocks.0.attn.hook_z")), seed=110,
             hook_z=True,
             notes="reshape_activations hook_z: x is [3, 5, 4 heads, 4 d_head] (the same values "
                   "as the other goldens' x, reshaped); hook_sae_input holds the flattened "
                   "[3, 5, 16]; hidden_pre/feature_acts/hook_sae_recons are flat; recons, "
                   "forward and hook_sae_output are reshaped back to [3, 5, 4, 4]."),
        dict(name="norm_constant", cls=StandardSAE,
             cfg=StandardSAEConfig(d_in=D_IN, d_sae=D_SAE,
                                   normalize_activations="constant_norm_rescale",
                                   metadata=meta_for(H)), seed=111,
             notes="constant_norm_rescale: c = sqrt(d_in) / ||x|| per token; encode sees x*c "
                   "(hook_sae_input holds the raw x, before the scaling), decode output is "
                   "divided by c AFTER hook_sae_recons (which holds the normalised-space "
                   "reconstruction). NB: SAELens stores c on the module in encode and deletes it "
                   "in decode, so decode needs a preceding encode."),
        dict(name="norm_layer", cls=StandardSAE,
             cfg=StandardSAEConfig(d_in=D_IN, d_sae=D_SAE, normalize_activations="layer_norm",
                                   metadata=meta_for(H)), seed=112,
             notes="layer_norm: mu = mean(x), sigma = std(x - mu) (unbiased, torch default); "
                   "encode sees (x - mu) / (sigma + 1e-5); decode output = recons * sigma + mu "
                   "(no eps on the way back). hook_sae_input holds the raw x."),
        dict(name="expected_average", cls=StandardSAE,
             cfg=StandardSAEConfig(d_in=D_IN, d_sae=D_SAE,
                                   normalize_activations="expected_average_only_in",
                                   metadata=meta_for("blocks.1.hook_mlp_out")), seed=113,
             notes="expected_average_only_in: at inference SAELens applies NO normalisation "
                   "(SAE._setup_activation_normalization falls through to the identity), so the "
                   "outputs equal a plain standard SAE's and SAE.load_from_disk leaves the cfg "
                   "value as it is. Only SAE.from_pretrained folds a scaling factor, and only when "
                   "the release's yaml entry has norm_scaling_factor s: W_enc *= s, W_dec /= s, "
                   "b_dec /= s, cfg -> 'none' (the s is NOT applied at run time). The "
                   "*.from_pretrained tensors show that: this folder loaded through "
                   "from_pretrained as release gpt2-small-mlp-tm / blocks.1.hook_mlp_out "
                   "(norm_scaling_factor in metadata), the loader replaced by one reading this "
                   "folder."),
    ]
    return specs


def make_sae(spec: dict[str, Any]) -> SAE:
    sae = spec["cls"](spec["cfg"])
    set_params(sae, rand_params(spec["seed"], d_out=spec.get("d_out")))
    return sae.eval()


def input_for(spec: dict[str, Any], x: torch.Tensor) -> torch.Tensor:
    return x.reshape(3, 5, N_HEADS, D_HEAD) if spec.get("hook_z") else x


def make_native_saes() -> list[str]:
    x = fixed_x()
    summary = []
    for spec in build_specs():
        name = spec["name"]
        folder = fresh_dir(SAES / name)
        sae = make_sae(spec)
        sae.save_model(folder)
        if spec.get("sparsity"):
            sp = torch.log10(torch.rand(D_SAE, generator=gen(spec["seed"] + 1000)) * 0.1 + 1e-10)
            save_file({"sparsity": sp}, str(folder / "sparsity.safetensors"))
        finish_sae_folder(folder)

        loaded = SAE.load_from_disk(folder).eval()
        xin = input_for(spec, x)
        t = {"x": f32(xin)}
        t.update(sae_outputs(loaded, xin))
        t.update(error_term_outputs(loaded, xin))
        folded, fold_status = folded_outputs(folder, xin)
        t.update(folded)
        extra: dict[str, Any] = {"notes": spec["notes"], "fold_W_dec_norm": fold_status,
                                 "hooks": sorted(k for k in t if k.startswith("hook_sae_"))}
        with torch.no_grad():
            if name == "gated":
                sae_in = xin - loaded.b_dec
                t["gate_pre"] = f32(sae_in @ loaded.W_enc + loaded.b_gate)
            if name == "topk_rescale":
                t["hidden_pre_rescaled"] = f32(t["hidden_pre"] * loaded.W_dec.norm(dim=-1))
            if name == "expected_average":
                t.update(expected_average_from_pretrained(folder, xin, extra))
        # sanity: the folded SAE computes the same reconstruction
        if "forward_folded" in t:
            d = (t["forward_folded"] - t["forward"]).abs().max().item()
            assert d < 1e-4, (name, d)
            extra["max_abs_forward_folded_minus_forward"] = f"{d:.3e}"
        write_safetensors(GOLDENS / f"{name}.safetensors", t, golden_meta(name, loaded, extra))
        write_json(GOLDENS / f"{name}.loaded_cfg.json", {
            "how": "SAE.load_from_disk(folder)",
            "cfg_json_keys": sorted(json.loads((folder / "cfg.json").read_text())),
            "sae_cfg": loaded.cfg.to_dict(),
            "state_dict": shapes(loaded.state_dict()),
        })
        summary.append(check_nontrivial(name, t))

    summary.append(make_batchtopk(x))
    return summary


def expected_average_from_pretrained(folder: Path, x: torch.Tensor, extra: dict[str, Any]
                                     ) -> dict[str, torch.Tensor]:
    release, sae_id = "gpt2-small-mlp-tm", "blocks.1.hook_mlp_out"
    from sae_lens.loading.pretrained_saes_directory import get_norm_scaling_factor
    s = get_norm_scaling_factor(release, sae_id)
    assert s is not None

    def converter(repo_id, folder_name, device="cpu", force_download=False, cfg_overrides=None):
        cfg, sd = sae_lens_disk_loader(folder, device, cfg_overrides)
        return cfg, sd, None

    sae, cfg_dict, _ = SAE.from_pretrained_with_cfg_and_sparsity(release, sae_id,
                                                                 converter=converter)
    assert sae.cfg.normalize_activations == "none", sae.cfg.normalize_activations
    extra["from_pretrained"] = {"release": release, "sae_id": sae_id, "norm_scaling_factor": s,
                                "cfg_dict": cfg_dict, "sae_cfg": sae.cfg.to_dict()}
    with torch.no_grad():
        feats = sae.encode(x)
        return {"feature_acts.from_pretrained": f32(feats),
                "forward.from_pretrained": f32(sae(x)),
                "W_enc.from_pretrained": f32(sae.W_enc), "W_dec.from_pretrained": f32(sae.W_dec),
                "b_dec.from_pretrained": f32(sae.b_dec)}


def make_batchtopk(x: torch.Tensor) -> str:
    """A BatchTopK *training* SAE (rescale_acts_by_decoder_norm True, its training default) with
    a non-trivial topk_threshold, saved with save_inference_model -> a jumprelu folder."""
    name = "batchtopk"
    cfg = BatchTopKTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, k=4.0,
                                     metadata=meta_for("blocks.0.hook_resid_pre"))
    tsae = BatchTopKTrainingSAE(cfg)
    p = rand_params(114)
    set_params(tsae, p)
    with torch.no_grad():
        train_feats, train_hidden = tsae.encode_with_hidden_pre(x)
        # the threshold a long training run would have converged to: here the median of the
        # positive (rescaled) pre-activations on x, so that the jumprelu cut really matters
        theta = float(train_hidden.relu()[train_hidden > 0].median())
        tsae.topk_threshold = torch.tensor(theta, dtype=torch.float64)
    folder = fresh_dir(SAES / name)
    tsae.save_inference_model(folder)
    finish_sae_folder(folder)
    loaded = SAE.load_from_disk(folder).eval()
    assert loaded.cfg.architecture() == "jumprelu"
    t = {"x": f32(x)}
    t.update(sae_outputs(loaded, x))
    t.update(error_term_outputs(loaded, x))
    folded, fold_status = folded_outputs(folder, x)
    t.update(folded)
    d = (t["forward_folded"] - t["forward"]).abs().max().item()
    assert d < 1e-4, d
    t["training.feature_acts"] = f32(train_feats)
    t["training.hidden_pre"] = f32(train_hidden)
    t["training.W_dec_norm"] = f32(p["W_dec"].norm(dim=-1))
    extra = {
        "notes": "BatchTopKTrainingSAE (k=4.0 per token on average, rescale_acts_by_decoder_norm "
                 "True) with topk_threshold set to the median positive rescaled pre-activation, "
                 "written by save_inference_model: cfg.json says architecture jumprelu (metadata "
                 "training_architecture batchtopk + training_architecture_details), the weights "
                 "have the decoder norms folded in (W_dec rows unit norm, W_enc columns and b_enc "
                 "multiplied by the old norms) and threshold = topk_threshold * ones(d_sae) "
                 "(float32). topk_threshold itself is not saved. training.* are the training "
                 "SAE's own outputs on x (batch top-k over all 15 tokens; hidden_pre already "
                 "multiplied by the decoder norms), for reference only.",
        "topk_threshold": repr(theta),
        "fold_W_dec_norm": fold_status,
        "max_abs_forward_folded_minus_forward": f"{d:.3e}",
        "hooks": sorted(k for k in t if k.startswith("hook_sae_")),
    }
    write_safetensors(GOLDENS / f"{name}.safetensors", t, golden_meta(name, loaded, extra))
    write_json(GOLDENS / f"{name}.loaded_cfg.json", {
        "how": "BatchTopKTrainingSAE.save_inference_model(folder); SAE.load_from_disk(folder)",
        "training_cfg": tsae.cfg.to_dict(),
        "cfg_json_keys": sorted(json.loads((folder / "cfg.json").read_text())),
        "sae_cfg": loaded.cfg.to_dict(),
        "state_dict": shapes(loaded.state_dict()),
    })
    return check_nontrivial(name, t)


# --------------------------------------------------------------------------------------------
# b. pre-6.0 configs
# --------------------------------------------------------------------------------------------

LEGACY_CFGS = {
    # SAELens 2.x / 3.x style, as in the gpt2-small-res-jb release: hook_point*, no
    # sae_lens_version, normalize_activations a bool, dtype "torch.float32"
    "legacy_pre6": {
        "model_name": "tiny-test-model",
        "hook_point": "blocks.2.hook_resid_pre",
        "hook_point_layer": 2,
        "hook_point_head_index": None,
        "dataset_path": "Skylion007/openwebtext",
        "is_dataset_tokenized": False,
        "context_size": 128,
        "use_cached_activations": False,
        "cached_activations_path": None,
        "d_in": D_IN,
        "d_sae": D_SAE,
        "b_dec_init_method": "geometric_median",
        "expansion_factor": 3,
        "activation_fn_str": "relu",
        "apply_b_dec_to_input": True,
        "normalize_activations": False,
        "lp_norm": 1,
        "l1_coefficient": 8e-05,
        "lr": 0.0004,
        "train_batch_size": 4096,
        "n_batches_in_buffer": 128,
        "total_training_tokens": 300000000,
        "store_batch_size": 32,
        "feature_sampling_window": 1000,
        "dead_feature_window": 5000,
        "dead_feature_threshold": 1e-08,
        "device": "cuda",
        "seed": 42,
        "dtype": "torch.float32",
        "prepend_bos": True,
        "sae_lens_training_version": "2.1.3",
    },
    # SAELens 4.x / 5.x style (SAEConfig.to_dict of those versions): hook_name/hook_layer,
    # activation_fn_str "topk" + activation_fn_kwargs.k, like the OpenAI TopK conversions
    "legacy_pre6_topk": {
        "architecture": "standard",
        "d_in": D_IN,
        "d_sae": D_SAE,
        "activation_fn_str": "topk",
        "activation_fn_kwargs": {"k": 6},
        "apply_b_dec_to_input": True,
        "finetuning_scaling_factor": False,
        "context_size": 64,
        "model_name": "tiny-test-model",
        "hook_name": "blocks.3.hook_resid_post",
        "hook_layer": 3,
        "hook_head_index": None,
        "prepend_bos": False,
        "dataset_path": "Skylion007/openwebtext",
        "dataset_trust_remote_code": True,
        "normalize_activations": "layer_norm",
        "dtype": "torch.float32",
        "device": "cpu",
        "sae_lens_training_version": None,
        "neuronpedia_id": None,
        "model_from_pretrained_kwargs": {},
        "seqpos_slice": [None],
    },
}


def make_legacy() -> list[str]:
    x = fixed_x()
    summary = []
    for i, (name, cfg) in enumerate(LEGACY_CFGS.items()):
        folder = fresh_dir(SAE_DIR / name)
        (folder / "cfg.json").write_text(json.dumps(cfg, indent=2) + "\n")
        p = rand_params(201 + i)
        weights = {k: p[k] for k in ("W_enc", "W_dec", "b_enc", "b_dec")}
        if name == "legacy_pre6":
            weights["scaling_factor"] = torch.ones(D_SAE)  # dropped by the loader
        save_file(weights, str(folder / "sae_weights.safetensors"))
        finish_sae_folder(folder)

        loader_cfg, sd = sae_lens_disk_loader(folder, "cpu", None)
        loader_cfg = json.loads(json.dumps(loader_cfg))
        cfg_dict = handle_config_defaulting(dict(loader_cfg))
        sae = SAE.load_from_disk(folder).eval()
        t = {"x": f32(x)}
        t.update(sae_outputs(sae, x))
        t.update(error_term_outputs(sae, x))
        folded, fold_status = folded_outputs(folder, x)
        t.update(folded)
        notes = ("pre-6.0 cfg.json (no sae_lens_version) loaded with SAE.load_from_disk: "
                 "sae_lens_disk_loader reads cfg + weights (an all-ones `scaling_factor` is "
                 "dropped), then handle_config_defaulting -> handle_pre_6_0_config converts the "
                 "cfg (see goldens/<name>.loaded_cfg.json).")
        extra = {"notes": notes, "fold_W_dec_norm": fold_status,
                 "hooks": sorted(k for k in t if k.startswith("hook_sae_"))}
        write_safetensors(GOLDENS / f"{name}.safetensors", t, golden_meta(name, sae, extra))
        write_json(GOLDENS / f"{name}.loaded_cfg.json", {
            "how": "SAE.load_from_disk(folder) = sae_lens_disk_loader + handle_config_defaulting",
            "raw_cfg_json": cfg,
            "loader_cfg_dict": loader_cfg,
            "cfg_dict": cfg_dict,
            "sae_cfg": sae.cfg.to_dict(),
            "loader_state_dict": shapes(sd),
            "file_state_dict": sorted(weights),
        })
        summary.append(check_nontrivial(name, t))
    return summary


# --------------------------------------------------------------------------------------------
# c. other libraries' on-disk formats through SAELens's hub loaders
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def local_hub(base: Path):
    """Replace SAELens's hub access by the fixture directory `base` (= the repository root)."""

    def fake_hf_hub_download(repo_id=None, filename=None, subfolder=None, force_download=False,
                             **kwargs):
        rel_path = f"{subfolder}/{filename}" if subfolder else filename
        p = base / rel_path
        if not p.exists():
            raise EntryNotFoundError(f"{rel_path} not found in the local fixture repo")
        return str(p)

    def fake_shapes(repo_id: str, filename: str) -> dict[str, list[int]]:
        with open(base / filename, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n))
        return {k: v["shape"] for k, v in header.items() if k != "__metadata__"}

    saved = (sl_loaders.hf_hub_download, sl_loaders.get_safetensors_tensor_shapes)
    sl_loaders.hf_hub_download = fake_hf_hub_download
    sl_loaders.get_safetensors_tensor_shapes = fake_shapes
    try:
        yield
    finally:
        sl_loaders.hf_hub_download, sl_loaders.get_safetensors_tensor_shapes = saved


def load_via_loader(name: str, base: Path, release: str, sae_id: str, loader_name: str,
                    x: torch.Tensor, extra_overrides: dict[str, Any] | None = None,
                    reference: dict[str, torch.Tensor] | None = None,
                    notes: str = "",
                    fallback_fix: tuple[str, Callable[[dict], None]] | None = None) -> str:
    """Run SAELens's named loader on local files, exactly as SAE.from_pretrained does, and write
    goldens/<name>.{safetensors,loaded_cfg.json}."""
    loader = sl_loaders.NAMED_PRETRAINED_SAE_LOADERS[loader_name]
    record: dict[str, Any] = {}

    fix: list[Callable[[dict], None]] = []

    def converter(repo_id, folder_name, device="cpu", force_download=False, cfg_overrides=None):
        overrides = dict(cfg_overrides or {})
        overrides.update(extra_overrides or {})
        cfg, sd, sp = loader(repo_id=repo_id, folder_name=folder_name, device=device,
                             force_download=force_download, cfg_overrides=overrides)
        if not fix:
            record["call"] = {"loader": loader.__name__, "repo_id": repo_id,
                              "folder_name": folder_name, "cfg_overrides": overrides}
            record["loader_cfg_dict"] = json.loads(json.dumps(cfg, default=str))
            record["loader_state_dict"] = shapes(sd)
        for f in fix:
            f(sd)
        return cfg, sd, sp

    t: dict[str, torch.Tensor] = {"x": f32(x)}
    extra: dict[str, Any] = {"notes": notes, "release": release, "sae_id": sae_id,
                             "loader": loader.__name__}
    with local_hub(base):
        try:
            sae, cfg_dict, _ = SAE.from_pretrained_with_cfg_and_sparsity(
                release, sae_id, converter=converter)
        except Exception as e:  # noqa: BLE001
            sae, cfg_dict = None, None
            record["from_pretrained_error"] = f"{type(e).__name__}: {e}"
            extra["from_pretrained_error"] = record["from_pretrained_error"]
            print(f"  {name}: SAELens could not build the SAE: {record['from_pretrained_error']}")
            if fallback_fix is not None:
                fix.append(fallback_fix[1])
                record["fallback_fix"] = extra["fallback_fix"] = fallback_fix[0]
                print(f"  {name}: retrying with the fix: {fallback_fix[0]}")
                sae, cfg_dict, _ = SAE.from_pretrained_with_cfg_and_sparsity(
                    release, sae_id, converter=converter)
    if sae is not None:
        sae.eval()
        record["cfg_dict"] = json.loads(json.dumps(cfg_dict, default=str))
        record["sae_cfg"] = sae.cfg.to_dict()
        record["sae_state_dict"] = shapes(sae.state_dict())
        t.update(sae_outputs(sae, x))
        t.update(error_term_outputs(sae, x))
        with local_hub(base):
            folded, fold_status = folded_outputs(
                base, x, loader=lambda: SAE.from_pretrained(release, sae_id, converter=converter,
                                                            fold_W_dec_norm=True))
        t.update(folded)
        extra["fold_W_dec_norm"] = fold_status
        extra["hooks"] = sorted(k for k in t if k.startswith("hook_sae_"))
    if reference:
        t.update({k: f32(v) for k, v in reference.items()})
        if sae is not None and "reference.forward" in reference:
            d = (t["reference.forward"] - t["forward"]).abs().max().item()
            extra["max_abs_reference_forward_minus_forward"] = f"{d:.3e}"
            record["max_abs_reference_forward_minus_forward"] = d
    meta = {"name": name, **versions(), "x": "fixed input, (1.5 * randn(seed 777) + 0.3)"}
    if sae is not None:
        meta.update(golden_meta(name, sae, {}))
    for k, v in extra.items():
        meta[k] = v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)
    write_safetensors(GOLDENS / f"{name}.safetensors", t, meta)
    record = {"how": f"SAE.from_pretrained_with_cfg_and_sparsity({release!r}, {sae_id!r}, "
                     f"converter=<{loader.__name__} with the local files>)",
              "fixture_repo": rel(base), **record}
    write_json(GOLDENS / f"{name}.loaded_cfg.json", record)
    return check_nontrivial(name, t) if sae is not None else f"{name}: no SAE ({extra.get('from_pretrained_error')})"


def make_gemma_scope() -> list[str]:
    x = fixed_x()
    out = []
    # --- Gemma Scope 1: params.npz with W_enc, W_dec, b_enc, b_dec, threshold -----------------
    base = fresh_dir(SAE_DIR / "gemma_scope")
    folder = "layer_3/width_16k/average_l0_10"
    p = rand_params(301)
    (base / folder).mkdir(parents=True)
    arrays = {k: p[k].numpy().astype(np.float32)
              for k in ("W_enc", "W_dec", "threshold", "b_enc", "b_dec")}
    np.savez(base / folder / "params.npz", **arrays)
    (base / folder / "params.npz").chmod(0o644)
    print(f"wrote {rel(base / folder / 'params.npz')} "
          f"({human((base / folder / 'params.npz').stat().st_size)})")
    # reference: the JumpReLU of the Gemma Scope tutorial on the raw arrays
    xt = x
    pre = xt @ p["W_enc"] + p["b_enc"]
    acts = (pre > p["threshold"]) * torch.relu(pre)
    ref = {"reference.feature_acts": acts, "reference.forward": acts @ p["W_dec"] + p["b_dec"]}
    out.append(load_via_loader(
        "gemma_scope", base, "google/gemma-scope-2b-pt-res", folder, "gemma_2", x,
        # the real widths/d_model are hard-coded from the folder/repo names (16384 / 2304);
        # these tiny arrays need the overrides (cfg_overrides are applied last by the loader)
        extra_overrides={"d_in": D_IN, "d_sae": D_SAE},
        reference=ref,
        notes="Gemma Scope 1 params.npz (keys W_enc W_dec b_enc b_dec threshold; the loader also "
              "renames any key starting with w_ to W_). Loaded with gemma_2_sae_huggingface_loader "
              "(release given as the repo id google/gemma-scope-2b-pt-res): jumprelu, "
              "apply_b_dec_to_input False, hook blocks.3.hook_resid_post, d_in 2304 and d_sae "
              "16384 from the repo/folder names (overridden to 16/48 here, see "
              "loaded_cfg.json), normalize_activations None -> 'none'. reference.* = the Gemma "
              "Scope tutorial's JumpReLU on the raw arrays."))

    # --- Gemma Scope 2: params.safetensors with w_enc, w_dec, b_enc, b_dec, threshold ----------
    base = fresh_dir(SAE_DIR / "gemma_scope_2")
    folder = "resid_post/layer_3_width_16k_l0_small"
    p = rand_params(302)
    (base / folder).mkdir(parents=True)
    save_file({"w_enc": p["W_enc"], "w_dec": p["W_dec"], "b_enc": p["b_enc"], "b_dec": p["b_dec"],
               "threshold": p["threshold"]}, str(base / folder / "params.safetensors"))
    finish_sae_folder(base / folder)
    pre = x @ p["W_enc"] + p["b_enc"]
    acts = (pre > p["threshold"]) * torch.relu(pre)
    ref = {"reference.feature_acts": acts, "reference.forward": acts @ p["W_dec"] + p["b_dec"]}
    out.append(load_via_loader(
        "gemma_scope_2", base, "google/gemma-scope-2-270m-pt", folder, "gemma_3", x,
        reference=ref,
        notes="Gemma Scope 2 params.safetensors (w_enc [d_in,d_sae], w_dec [d_sae,d_in], b_enc, "
              "b_dec, threshold), no config.json (the loader then infers the raw config from the "
              "folder name). Loaded with gemma_3_sae_huggingface_loader: d_in/d_sae from the "
              "w_enc shape, jumprelu, apply_b_dec_to_input False, hook "
              "blocks.3.hook_resid_post, hf_hook_name model.layers.3.output."))

    folder = "transcoder/layer_3_width_16k_l0_small_affine"
    p = rand_params(303, d_out=D_OUT)
    (base / folder).mkdir(parents=True)
    skip = 0.5 * torch.randn(D_IN, D_OUT, generator=gen(304)) / math.sqrt(D_IN)
    save_file({"w_enc": p["W_enc"], "w_dec": p["W_dec"], "b_enc": p["b_enc"], "b_dec": p["b_dec"],
               "threshold": p["threshold"], "affine_skip_connection": skip},
              str(base / folder / "params.safetensors"))
    finish_sae_folder(base / folder)
    pre = x @ p["W_enc"] + p["b_enc"]
    acts = (pre > p["threshold"]) * torch.relu(pre)
    ref = {"reference.feature_acts": acts,
           "reference.forward": acts @ p["W_dec"] + p["b_dec"] + x @ skip}
    out.append(load_via_loader(
        "gemma_scope_2_transcoder", base, "google/gemma-scope-2-270m-pt", folder, "gemma_3", x,
        reference=ref,
        notes="Gemma Scope 2 affine (skip) transcoder: params.safetensors adds "
              "affine_skip_connection [d_in, d_out]; the loader stores W_skip = its transpose "
              "[d_out, d_in]; architecture jumprelu_skip_transcoder, hook blocks.3.hook_mlp_in "
              "-> blocks.3.hook_mlp_out, d_out from w_dec. forward = decode(encode(x)) + "
              "x @ W_skip.T."))
    return out


class _SparseCoderLayout(torch.nn.Module):
    """The parameter layout of EleutherAI sparsify's SparseCoder (sparsify 1.x):
    encoder = nn.Linear(d_in, num_latents), W_dec [num_latents, d_in], b_dec [d_in]."""

    def __init__(self, d_in: int, num_latents: int):
        super().__init__()
        self.encoder = torch.nn.Linear(d_in, num_latents)
        self.W_dec = torch.nn.Parameter(torch.zeros(num_latents, d_in))
        self.b_dec = torch.nn.Parameter(torch.zeros(d_in))


def make_sparsify() -> str:
    """cfg.json + sae.safetensors exactly as SparseCoder.save_to_disk writes them (safetensors'
    save_model on the module; cfg = SparseCoderConfig.to_dict() + d_in), in bfloat16 like the
    EleutherAI releases."""
    x = fixed_x()
    base = fresh_dir(SAE_DIR / "sparsify")
    hookpoint = "layers.3"
    k = 6
    p = rand_params(401)
    m = _SparseCoderLayout(D_IN, D_SAE)
    w_dec = p["W_dec"] / p["W_dec"].norm(dim=-1, keepdim=True)  # normalize_decoder=True
    with torch.no_grad():
        m.encoder.weight.copy_(p["W_enc"].T)
        m.encoder.bias.copy_(p["b_enc"])
        m.W_dec.copy_(w_dec)
        m.b_dec.copy_(p["b_dec"])
    m = m.to(torch.bfloat16)
    (base / hookpoint).mkdir(parents=True)
    save_model(m, str(base / hookpoint / "sae.safetensors"))
    cfg = {"activation": "topk", "expansion_factor": 3, "normalize_decoder": True,
           "num_latents": D_SAE, "k": k, "multi_topk": False, "skip_connection": False,
           "transcode": False, "d_in": D_IN}
    with open(base / hookpoint / "cfg.json", "w") as f:
        json.dump(cfg, f)
    finish_sae_folder(base / hookpoint)

    # sparsify's own semantics (SparseCoder.encode/decode), on the bf16 weights upcast to f32
    We = m.encoder.weight.float()
    be = m.encoder.bias.float()
    Wd = m.W_dec.float()
    bd = m.b_dec.float()
    pre = torch.relu((x - bd) @ We.T + be)
    vals, idx = pre.topk(k, dim=-1, sorted=False)
    acts = torch.zeros_like(pre).scatter(-1, idx, vals)
    ref = {"reference.feature_acts": acts, "reference.forward": acts @ Wd + bd}
    def transpose_w_dec(sd: dict) -> None:
        sd["W_dec"] = sd["W_dec"].T.contiguous()

    return load_via_loader(
        "sparsify", base, "EleutherAI/sae-tiny-test", hookpoint, "sparsify", x,
        reference=ref,
        fallback_fix=("W_dec = W_dec.T after the loader (i.e. the file's W_dec "
                      "[num_latents, d_in] as is); everything else as SAELens's loader says",
                      transpose_w_dec),
        notes="EleutherAI sparsify SparseCoder folder (bf16 weights: encoder.weight "
              "[num_latents, d_in], encoder.bias, W_dec [num_latents, d_in], b_dec; cfg.json = "
              "SparseCoderConfig fields + d_in). reference.* = sparsify's own computation "
              "(relu(encoder(x - b_dec)) -> top-k -> acts @ W_dec + b_dec). SAELens's "
              "sparsify loader (a) transposes W_dec to [d_in, num_latents] although SAELens "
              "wants [d_sae, d_in], so building the SAE fails with a size mismatch whenever "
              "d_in != num_latents; (b) sets apply_b_dec_to_input = not normalize_decoder, "
              "while sparsify always subtracts b_dec; (c) defaults dtype to bfloat16 (from_pretrained "
              "overrides it with its dtype argument, float32). The non-reference tensors here "
              "are therefore SAELens's outputs after undoing (a) only (metadata fallback_fix): "
              "they differ from reference.* because of (b). See loaded_cfg.json.")


def make_dictionary_learning() -> list[str]:
    x = fixed_x()
    base = fresh_dir(SAE_DIR / "dictionary_learning")
    out = []
    buffer_cfg = {"d_submodule": D_IN, "io": "out", "n_ctxs": 3000, "ctx_len": 128,
                  "refresh_batch_size": 512, "out_batch_size": 8192, "device": "cuda:0"}
    # --- AutoEncoder (StandardTrainer) ------------------------------------------------------
    folder = "resid_post_layer_3/trainer_0"
    p = rand_params(501)
    sd = {"bias": p["b_dec"], "encoder.weight": p["W_enc"].T.contiguous(),
          "encoder.bias": p["b_enc"], "decoder.weight": p["W_dec"].T.contiguous()}
    trainer = {"dict_class": "AutoEncoder", "trainer_class": "StandardTrainer",
               "activation_dim": D_IN, "dict_size": D_SAE, "lr": 0.0001, "l1_penalty": 0.1,
               "warmup_steps": 1000, "resample_steps": None, "sparsity_warmup_steps": 5000,
               "steps": 10000, "decay_start": None, "seed": 0, "device": "cuda:0", "layer": 3,
               "lm_name": "EleutherAI/pythia-70m-deduped", "wandb_name": "StandardTrainer",
               "submodule_name": "resid_post_layer_3"}
    (base / folder).mkdir(parents=True)
    torch.save(sd, base / folder / "ae.pt")
    (base / folder / "config.json").write_text(
        json.dumps({"trainer": trainer, "buffer": buffer_cfg}, indent=4))
    for f in (base / folder).iterdir():
        f.chmod(0o644)
    f_ref = torch.relu((x - p["b_dec"]) @ p["W_enc"] + p["b_enc"])  # AutoEncoder.encode
    ref = {"reference.feature_acts": f_ref, "reference.forward": f_ref @ p["W_dec"] + p["b_dec"]}
    out.append(load_via_loader(
        "dictionary_learning_standard", base, "tiny-test/dictionary-learning", folder,
        "dictionary_learning_1", x, reference=ref,
        notes="dictionary_learning AutoEncoder: ae.pt = torch.save(state_dict) with keys bias "
              "[d_in], encoder.weight [d_sae, d_in], encoder.bias, decoder.weight [d_in, d_sae]; "
              "config.json {trainer: {dict_class AutoEncoder, layer 3, lm_name, ...}, buffer: "
              "{ctx_len, ...}}. SAELens: standard, hook blocks.3.hook_resid_post, "
              "W_enc = encoder.weight.T, W_dec = decoder.weight.T, b_dec = bias. reference.* = "
              "AutoEncoder.encode/decode."))

    # --- BatchTopKSAE (BatchTopKTrainer) ------------------------------------------------------
    folder = "resid_post_layer_3/trainer_1"
    p = rand_params(502)
    w_dec = p["W_dec"] / p["W_dec"].norm(dim=-1, keepdim=True)  # kept unit norm in training
    k = 4
    pre_relu = torch.relu((x - p["b_dec"]) @ p["W_enc"] + p["b_enc"])
    threshold = float(pre_relu[pre_relu > 0].median())
    sd = {"k": torch.tensor(k, dtype=torch.int32), "threshold": torch.tensor(threshold),
          "decoder.weight": w_dec.T.contiguous(), "encoder.weight": p["W_enc"].T.contiguous(),
          "encoder.bias": p["b_enc"], "b_dec": p["b_dec"]}
    trainer = {"trainer_class": "BatchTopKTrainer", "dict_class": "BatchTopKSAE", "lr": 0.0001,
               "steps": 10000, "auxk_alpha": 0.03125, "warmup_steps": 1000, "decay_start": None,
               "threshold_beta": 0.999, "threshold_start_step": 1000, "top_k_aux": D_IN // 2,
               "seed": 0, "activation_dim": D_IN, "dict_size": D_SAE, "k": k,
               "device": "cuda:0", "layer": 3, "lm_name": "EleutherAI/pythia-70m-deduped",
               "wandb_name": "BatchTopKSAE", "submodule_name": "resid_post_layer_3"}
    (base / folder).mkdir(parents=True)
    torch.save(sd, base / folder / "ae.pt")
    (base / folder / "config.json").write_text(
        json.dumps({"trainer": trainer, "buffer": buffer_cfg}, indent=4))
    for f in (base / folder).iterdir():
        f.chmod(0o644)
    f_ref = pre_relu * (pre_relu > threshold)  # BatchTopKSAE.encode(use_threshold=True)
    ref = {"reference.feature_acts": f_ref, "reference.forward": f_ref @ w_dec + p["b_dec"]}
    out.append(load_via_loader(
        "dictionary_learning_batchtopk", base, "tiny-test/dictionary-learning", folder,
        "dictionary_learning_1", x, reference=ref,
        notes="dictionary_learning BatchTopKSAE: ae.pt keys k (int32 scalar), threshold (float32 "
              "scalar), encoder.weight, encoder.bias, decoder.weight, b_dec. SAELens: jumprelu "
              "with threshold = the scalar broadcast to [d_sae], apply_b_dec_to_input True; k is "
              "ignored. reference.* = BatchTopKSAE.encode(use_threshold=True)/decode."))
    return out


def make_loaders() -> list[str]:
    out = make_legacy()
    out += make_gemma_scope()
    out.append(make_sparsify())
    out += make_dictionary_learning()
    return out


# --------------------------------------------------------------------------------------------
# d. HookedSAETransformer on SmolLM2 (spliced goldens)
# --------------------------------------------------------------------------------------------

SPLICE_STD_HOOK = "blocks.10.hook_resid_pre"
SPLICE_TOPK_HOOK = "blocks.20.hook_resid_post"
SPLICE_D_SAE = 256
SPLICE_TOPK_K = 16
ABLATE_LATENT = 5
STOP_AT_LAYER = 15


def build_hooked_sae_transformer(hf_model, tokenizer) -> HookedSAETransformer:
    """make_goldens.build_tl_model, but instantiating HookedSAETransformer (processed =
    HookedTransformer.from_pretrained defaults)."""
    cfg_dict = mg.tl_cfg_dict_llama(hf_model.config)
    mg.cross_check_with_tl(hf_model.config, cfg_dict, "smollm2")
    flags = mg.PROCESSING["processed"]
    cfg = mg.finish_cfg(cfg_dict, "smollm2", hf_model.config.vocab_size, flags["fold_ln"])
    state_dict = mg.convert_llama_weights(hf_model, cfg)
    model = HookedSAETransformer(cfg, tokenizer, move_to_device=False)
    model.load_and_process_state_dict(state_dict, **flags)
    model.move_model_modules_to_device()
    model.eval()
    return model


def smollm2_sae(kind: str, acts: torch.Tensor, seed: int) -> SAE:
    """A random SAE whose pre-activations are O(1) on the real activations `acts` [n, 576]."""
    g = gen(seed)
    d_in = acts.shape[-1]
    # ignore the BOS position (SmolLM2's BOS residual is huge) for the statistics
    body = acts[1:]
    b_dec = body.mean(0)
    scale = (body - b_dec).norm(dim=-1).median()
    w_dec = torch.randn(SPLICE_D_SAE, d_in, generator=g)
    norms = 0.5 + 1.5 * torch.rand(SPLICE_D_SAE, generator=g)
    w_dec = w_dec / w_dec.norm(dim=-1, keepdim=True) * norms[:, None] * (scale / 8)
    w_enc = torch.randn(d_in, SPLICE_D_SAE, generator=g) / scale
    b_enc = 0.2 * torch.randn(SPLICE_D_SAE, generator=g) - 0.3
    if kind == "standard":
        b_enc[ABLATE_LATENT] = 0.8  # make sure the latent ablated in (c) is active
        cfg = StandardSAEConfig(d_in=d_in, d_sae=SPLICE_D_SAE,
                                metadata=SAEMetadata(model_name="SmolLM2-135M-Instruct",
                                                     hook_name=SPLICE_STD_HOOK))
        sae = StandardSAE(cfg)
    else:
        cfg = TopKSAEConfig(d_in=d_in, d_sae=SPLICE_D_SAE, k=SPLICE_TOPK_K,
                            metadata=SAEMetadata(model_name="SmolLM2-135M-Instruct",
                                                 hook_name=SPLICE_TOPK_HOOK))
        sae = TopKSAE(cfg)
    set_params(sae, {"W_enc": w_enc, "W_dec": w_dec, "b_enc": b_enc, "b_dec": b_dec})
    return sae.eval()


def make_spliced_goldens() -> list[str]:
    tok = mg.load_smollm2_tokenizer()
    print(f"loading {mg.GGUF_FILE} with transformers (dequantizes to float32; slow) ...")
    hf_model = mg.load_smollm2_hf()
    model = build_hooked_sae_transformer(hf_model, tok)
    del hf_model
    tokens = model.to_tokens(mg.SMOLLM2_PROMPT)
    summary = []

    with torch.inference_mode():
        clean_logits, clean_cache = model.run_with_cache(
            tokens, names_filter=[SPLICE_STD_HOOK, SPLICE_TOPK_HOOK])
    saes = {}
    for kind, hook, seed, fname in (("standard", SPLICE_STD_HOOK, 601, "smollm2_standard_l10"),
                                    ("topk", SPLICE_TOPK_HOOK, 602, "smollm2_topk_l20")):
        sae = smollm2_sae(kind, clean_cache[hook][0].float(), seed)
        folder = fresh_dir(SAES / fname)
        sae.save_model(folder)
        finish_sae_folder(folder)
        saes[hook] = SAE.load_from_disk(folder).eval()
    sae_std, sae_topk = saes[SPLICE_STD_HOOK], saes[SPLICE_TOPK_HOOK]
    both = [sae_std, sae_topk]
    t: dict[str, torch.Tensor] = {"tokens": tokens.to(torch.int64).clone()}
    info: dict[str, Any] = {}

    with torch.inference_mode():
        # (a) both SAEs spliced in, no error term
        logits_a, cache_a = model.run_with_cache_with_saes(tokens, saes=both)
        t["a.logits"] = f32(logits_a)
        for hook in (SPLICE_STD_HOOK, SPLICE_TOPK_HOOK):
            for h in ("input", "acts_pre", "acts_post", "recons", "output"):
                t[f"a.{hook}.hook_sae_{h}"] = f32(cache_a[f"{hook}.hook_sae_{h}"])
            info[f"a.{hook}.in_cache"] = hook in cache_a
            info[f"a.{hook}.hook_sae_error_in_cache"] = f"{hook}.hook_sae_error" in cache_a
        info["a.cache_keys_with_sae"] = [k for k in cache_a.keys() if "hook_sae" in k]
        info["a.n_cache_keys"] = len(cache_a)
        info["a.extra_hooks_vs_HookedTransformer"] = sorted(
            k for k in cache_a.keys() if k.endswith("mlp.hook_in"))[:3]
        for hook in (SPLICE_STD_HOOK, SPLICE_TOPK_HOOK):
            assert hook not in cache_a, f"{hook} still in the cache"
        # sanity: the spliced input equals the clean activation at the first SAE
        d = (cache_a[f"{SPLICE_STD_HOOK}.hook_sae_input"] - clean_cache[SPLICE_STD_HOOK]).abs().max()
        info["a.max_abs_std_hook_sae_input_minus_clean"] = float(d)
        l0_std = (cache_a[f"{SPLICE_STD_HOOK}.hook_sae_acts_post"] > 0).float().sum(-1)
        l0_topk = (cache_a[f"{SPLICE_TOPK_HOOK}.hook_sae_acts_post"] > 0).float().sum(-1)
        info["a.L0_per_token.standard"] = l0_std[0].tolist()
        info["a.L0_per_token.topk"] = l0_topk[0].tolist()
        info["a.latent5_acts"] = cache_a[f"{SPLICE_STD_HOOK}.hook_sae_acts_post"][0, :, ABLATE_LATENT].tolist()
        assert (cache_a[f"{SPLICE_STD_HOOK}.hook_sae_acts_post"][0, :, ABLATE_LATENT] > 0).sum() >= 2

        # (b) with the error term: logits must equal the clean logits
        logits_b, cache_b = model.run_with_cache_with_saes(tokens, saes=both, use_error_term=True)
        t["b.logits"] = f32(logits_b)
        for hook in (SPLICE_STD_HOOK, SPLICE_TOPK_HOOK):
            t[f"b.{hook}.hook_sae_error"] = f32(cache_b[f"{hook}.hook_sae_error"])
            t[f"b.{hook}.hook_sae_output"] = f32(cache_b[f"{hook}.hook_sae_output"])
        db = (logits_b - clean_logits).abs().max().item()
        info["b.max_abs_logits_minus_clean"] = db
        assert db < 1e-3, db
        # the clean logits are those of tests/fixtures/tl/smollm2_processed.safetensors (same
        # prompt, same processed model, built as HookedTransformer there); not stored twice
        tl_golden = mg.TL_DIR / "smollm2_processed.safetensors"
        if tl_golden.exists():
            from safetensors import safe_open
            with safe_open(str(tl_golden), "pt") as f:
                assert torch.equal(f.get_tensor("tokens"), tokens)
                info["clean_logits_vs_tl_golden_max_abs"] = (
                    f.get_tensor("logits") - clean_logits).abs().max().item()

        # (c) error term + zero-ablate latent 5 of the standard SAE
        def zero_latent(acts, hook):
            acts[..., ABLATE_LATENT] = 0.0
            return acts

        for sae in both:
            model.add_sae(sae, use_error_term=True)
        try:
            logits_c = model.run_with_hooks(
                tokens, fwd_hooks=[(f"{SPLICE_STD_HOOK}.hook_sae_acts_post", zero_latent)])
        finally:
            model.reset_saes()
        t["c.logits"] = f32(logits_c)
        info["c.max_abs_logits_minus_clean"] = (logits_c - clean_logits).abs().max().item()
        assert info["c.max_abs_logits_minus_clean"] > 1e-3

        # (d) run_with_cache_with_saes, stop_at_layer, names_filter
        names = [f"{SPLICE_STD_HOOK}.hook_sae_acts_post"]
        resid_d, cache_d = model.run_with_cache_with_saes(
            tokens, saes=both, stop_at_layer=STOP_AT_LAYER, names_filter=names)
        t["d.output"] = f32(resid_d)
        t[f"d.{names[0]}"] = f32(cache_d[names[0]])
        info["d.cache_keys"] = list(cache_d.keys())
        info["d.output_shape"] = list(resid_d.shape)
        # what is that output? the residual stream entering block STOP_AT_LAYER
        _, cache_chk = model.run_with_cache_with_saes(
            tokens, saes=both, names_filter=[f"blocks.{STOP_AT_LAYER}.hook_resid_pre"])
        info["d.max_abs_output_minus_resid_pre15_of_a"] = (
            resid_d - cache_chk[f"blocks.{STOP_AT_LAYER}.hook_resid_pre"]).abs().max().item()
        # after the context managers the model is clean again
        info["after.acts_to_saes"] = list(model.acts_to_saes)
        info["after.max_abs_logits_minus_clean"] = (model(tokens) - clean_logits).abs().max().item()

    meta = {
        "model": "smollm2 (processed, HookedSAETransformer built offline like make_goldens.py)",
        "prompt": mg.SMOLLM2_PROMPT,
        "saes": json.dumps({SPLICE_STD_HOOK: "saes/smollm2_standard_l10 (standard, d_sae 256)",
                            SPLICE_TOPK_HOOK: "saes/smollm2_topk_l20 (topk k=16, d_sae 256)"}),
        "a": "run_with_cache_with_saes(tokens, saes=[both]) (use_error_term False)",
        "b": "run_with_cache_with_saes(tokens, saes=[both], use_error_term=True); b.logits == "
             "the clean logits (= `logits` of tests/fixtures/tl/smollm2_processed.safetensors) "
             "up to float error",
        "c": f"add_sae(each, use_error_term=True); run_with_hooks(tokens, fwd_hooks=[("
             f"'{SPLICE_STD_HOOK}.hook_sae_acts_post', zero latent {ABLATE_LATENT})]); "
             "reset_saes()",
        "d": f"run_with_cache_with_saes(tokens, saes=[both], stop_at_layer={STOP_AT_LAYER}, "
             f"names_filter=['{SPLICE_STD_HOOK}.hook_sae_acts_post']): d.output is the returned "
             f"residual (= blocks.{STOP_AT_LAYER}.hook_resid_pre of run (a))",
        "findings": json.dumps(info, default=str),
        **versions(),
        "transformers": md.version("transformers"),
    }
    write_safetensors(GOLDENS / "spliced_smollm2.safetensors", t, meta)
    for k, v in info.items():
        summary.append(f"  {k}: {v}")
    return summary


# --------------------------------------------------------------------------------------------
# e. src/sae/pretrained_saes.json: a subset of SAELens's pretrained_saes.yaml
# --------------------------------------------------------------------------------------------

REGISTRY_PATH = ROOT / "src" / "sae" / "pretrained_saes.json"
REGISTRY_RELEASES = [
    "gpt2-small-res-jb",
    "gpt2-small-hook-z-kk",
    "gpt2-small-res-jb-feature-splitting",
    "gpt2-small-mlp-tm",
    # + every gpt2-small-*-v5-32k / -v5-128k (OpenAI TopK), found below
    "gemma-scope-2b-pt-res",
    "gemma-scope-2b-pt-res-canonical",
]
REGISTRY_RELEASE_KEYS = ("repo_id", "model", "conversion_func", "config_overrides")
REGISTRY_SAE_KEYS = ("id", "path", "neuronpedia", "l0", "variance_explained",
                     "norm_scaling_factor")


def make_registry() -> list[str]:
    """The entries of the installed sae_lens package's pretrained_saes.yaml for the releases
    above, keys as in the yaml (a key absent from the yaml stays absent; `links` is left out)."""
    import yaml
    from importlib.resources import files

    text = files("sae_lens").joinpath("pretrained_saes.yaml").read_text()
    data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    v5 = sorted(r for r in data if r.startswith("gpt2-small-")
                and (r.endswith("-v5-32k") or r.endswith("-v5-128k")))
    releases = REGISTRY_RELEASES[:4] + v5 + REGISTRY_RELEASES[4:]
    out: dict[str, Any] = {"_source": {
        "sae_lens": SL_VERSION,
        "file": "sae_lens/pretrained_saes.yaml",
        "generator": "scripts/make_sae_goldens.py --only registry",
        "release_keys": list(REGISTRY_RELEASE_KEYS),
        "sae_keys": list(REGISTRY_SAE_KEYS),
        "note": "keys absent from the yaml are absent here (SAELens defaults: conversion_func "
                "null = sae_lens loader, l0 0.0, variance_explained 1.0, neuronpedia null)",
    }}
    lines = []
    for r in releases:
        entry = data[r]
        e = {k: entry[k] for k in REGISTRY_RELEASE_KEYS if k in entry}
        e["saes"] = [{k: s[k] for k in REGISTRY_SAE_KEYS if k in s} for s in entry["saes"]]
        for s in e["saes"]:
            if isinstance(s.get("path"), int):  # SAELens does str(path) for int paths
                s["path"] = str(s["path"])
        out[r] = e
        lines.append(f"{r}: {len(e['saes'])} saes, conversion_func="
                     f"{e.get('conversion_func')}, overrides={e.get('config_overrides')}")
    text = json.dumps(out, indent=1, ensure_ascii=False) + "\n"
    for marker in ("://", "www."):  # no addresses in the repository (`links` is left out)
        assert marker not in text, f"an address ({marker!r}) in the registry"
    REGISTRY_PATH.parent.mkdir(parents=True, exist_ok=True)
    REGISTRY_PATH.write_text(text, encoding="utf-8")
    print(f"wrote {rel(REGISTRY_PATH)} ({human(REGISTRY_PATH.stat().st_size)}): "
          f"{len(releases)} releases")
    return lines


# --------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=["saes", "loaders", "smollm2", "registry"],
                    help="run one part")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    summary: list[str] = []
    if args.only in (None, "saes"):
        summary += make_native_saes()
    if args.only in (None, "loaders"):
        summary += make_loaders()
    if args.only in (None, "registry"):
        summary += make_registry()
    if args.only in (None, "smollm2"):
        summary += make_spliced_goldens()
    print("\n== summary")
    for s in summary:
        print(s)
    total = sum(f.stat().st_size for f in SAE_DIR.rglob("*") if f.is_file())
    print(f"tests/fixtures/sae/: {human(total)} in total")


if __name__ == "__main__":
    main()
