#!/usr/bin/env python3
"""Reference attribution graphs for saescope's circuit-tracer port, computed by circuit-tracer
0.5.0 itself (`attribute`, `prune_graph`, `compute_graph_scores`, `create_graph_files`) on its
TransformerLens backend with per-layer transcoders (PLTs).

Usage (from the repository root):

    bash scripts/setup_circuit_venv.sh          # pinned circuit-tracer / torch / TL / sae-lens
    .venv-circuit/bin/python scripts/make_graph_goldens.py
    .venv-circuit/bin/python scripts/make_graph_goldens.py --smollm2 TRANSCODER_DIR   # see below

Runs offline on CPU, deterministic (seeded; one torch thread for the tiny model; safetensors
headers are rewritten with sorted keys). Writes tests/fixtures/circuits/:

  transcoders_tiny/layer_{0,1}/   random SAELens JumpReLUTranscoder folders (cfg.json +
      sae_weights.safetensors, written by SAELens 6.54.12) for tests/fixtures/tiny-llama: input
      blocks.L.ln2.hook_normalized, output blocks.L.hook_mlp_out, d_in = d_out = 64, d_sae 96.
      W_enc / b_enc / threshold (all thresholds > 0) are seeded and b_enc is shifted so that about
      20 % of the latents fire per position on the model's real ln2 inputs; W_dec / b_dec are a
      ridge regression of the real hook_mlp_out on those latents (pulled towards seeded random
      rows), so that features, not error nodes, carry most of the graph.
  graph_tiny.safetensors    circuit-tracer on tiny-llama with those transcoders, prompt `tokens`
      (8 seeded token ids, id 0 = BOS first). Run "full": attribute(max_feature_nodes=None,
      batch_size=FULL_BATCH, max_n_logits=10, desired_logit_prob=0.95), then
      prune_graph(graph, 0.8, 0.98) and compute_graph_scores(graph):
        tokens [n_pos] i64             the prompt as attributed (graph.input_tokens)
        logit_targets [k] i64          graph.logit_targets' vocab ids (top-k by probability)
        logit_probabilities [k] f32    softmax probabilities of those ids (last position)
        logit_vectors [k, 64] f32      the vectors injected for the logit rows: W_U columns minus
                                       the mean W_U column (AttributionTargets' "demeaned" vectors)
        logits [d_vocab] f32           the model's logits at the last position
        active_features [n, 3] i64     (layer, pos, feature) of every non-zero transcoder latent,
                                       sorted (layer, pos, feature); position 0 is never active
        activation_values [n] f32      their activations
        error_vectors [2, n_pos, 64] f32  hook_mlp_out - transcoder reconstruction (position 0
                                       zeroed)
        selected_features [n] i64      indices into active_features (all of them here)
        adjacency_matrix [N, N] f32    direct effects; row = target, column = source (layout below)
        node_mask [N] u8, edge_mask [N, N] u8, cumulative_scores [N] f32   prune_graph's result
        replacement_score [1] f32, completeness_score [1] f32             compute_graph_scores
      Run "partial": the same prompt with max_feature_nodes = n // 2, batch_size=PARTIAL_BATCH,
      update_interval=PARTIAL_UPDATE_INTERVAL (feature rows are computed in the order of
      compute_partial_influences' ranking, refreshed every update_interval batches):
        partial_selected_features [m] i64, partial_adjacency_matrix [M, M] f32,
        partial_node_mask [M] u8, partial_edge_mask [M, M] u8, partial_cumulative_scores [M] f32,
        partial_replacement_score [1] f32, partial_completeness_score [1] f32
      The metadata records the sizes, batch sizes, thresholds and library versions.
  graph_tiny.json           the "full" graph as circuit-tracer's create_graph_files writes it (the
      attribution-graph frontend / Neuronpedia format; slug GRAPH_SLUG, scan TINY_SCAN).

Node order of adjacency_matrix (circuit-tracer's Graph): with F selected features, L layers,
P positions and K logits, N = F + L*P + P + K and
  [0, F)                   feature nodes, in active_features order (selected ones only)
  [F, F + L*P)             error nodes, layer-major: F + layer * P + pos
  [F + L*P, F + L*P + P)   token (embedding) nodes, one per position
  [N - K, N)               logit nodes, in logit_targets order
adjacency_matrix[target, source] is the direct effect of source on target. Only the rows of
feature and logit nodes are non-zero (error and token nodes have no inputs). A feature row holds
contributions to the target's *pre-activation* minus b_enc (the rows of layer-0 features sum to
exactly that), a logit row contributions to the demeaned logit (logit minus the mean logit); the
transcoders' b_dec and everything at position 0 (circuit-tracer zeroes the features and the error
vectors there) are not nodes, so later rows do not sum to their targets. On the processed model,
logit_vectors * w_ln_final are the (centred, folded) W_U columns of the targets.

Transcoder semantics. SAELens transcoders here read TransformerLens's *processed* model
(from_pretrained defaults), where blocks.L.ln2.hook_normalized = x / rms(x). circuit-tracer runs
TL *unprocessed* (fold_ln=False, center_writing_weights=False, center_unembed=False), but TL's
RMSNorm applies its hook_normalized before multiplying by the weight w, so the unprocessed
ln2.hook_normalized is the same x / rms(x) (and TL never centres the writing weights of an RMS
model): the transcoders transfer to circuit-tracer unchanged, apart from its [d_sae, d_in] W_enc
layout. The script asserts this (the two models' ln2.hook_normalized agree; circuit-tracer's
get_activations equal SAELens's encode on the processed model). The MLP input (mlp.hook_in =
x / rms * w) is the other hook circuit-tracer's configs use; reading it needs
W_enc[f, :] = W_enc_saelens[:, f] / w_ln2, and the script builds that variant too and asserts that
it gives the same graph.

Workarounds (tiny-llama has neither a hub name nor a tokenizer):
  * the replacement model is built like HookedTransformer.from_pretrained does, by hand
    (make_goldens' config + TL's convert_llama_weights + load_and_process_state_dict with the
    flags TransformerLensReplacementModel.from_pretrained_and_transcoders passes), then
    configured with the *private* _configure_replacement_model (the public from_config
    configures an empty model, after which the TL state-dict keys no longer match, and
    from_pretrained_and_transcoders needs a hub name);
  * `model.tokenizer` is a small stub (StubTokenizer) with what circuit-tracer uses:
    all_special_ids / bos / pad / eos ids (ensure_tokenized), vocab_size and decode (logit
    targets, Graph.input_string, the JSON's prompt_tokens). decode(id) is "<bos>" for id 0 and
    " t<id>" otherwise; decode(ids) concatenates. The prompt is passed as a tensor that already
    starts with the special id 0, so ensure_tokenized uses it as given;
  * create_graph_files calls AutoTokenizer.from_pretrained(cfg.tokenizer_name); the script
    replaces that module's AutoTokenizer by a shim returning the model's tokenizer.

--smollm2 TRANSCODER_DIR (not part of the committed fixtures; run by hand once the SmolLM2
transcoders exist) does the same for SmolLM2-135M-Instruct (bash scripts/fetch_model.sh; loaded
from the GGUF as make_goldens.load_smollm2_hf does, with its real tokenizer) on a 16-token prompt
(BOS + 15 tokens), with one SAELens transcoder folder per layer in TRANSCODER_DIR/layer_LL or
TRANSCODER_DIR/layer_L (L = 0..29; e.g. the output_path of a `saescope` transcoder run such as
configs/smollm2-transcoders.json; architecture jumprelu_transcoder or transcoder (ReLU), hook_name
blocks.L.ln2.hook_normalized, hook_name_out blocks.L.hook_mlp_out, normalize_activations none;
loaded as float32).
It writes tests/fixtures/circuits/graph_smollm2.safetensors (committed; tests/graph.rs compares
with it, made from the shipped set data/transcoders/smollm2-mlp-batchtopk-k32-1152) and
graph_smollm2.json (for inspection; gitignored) with the same tensors from one run (no "partial" run) with --max-feature-nodes (default 256; 0 = all active
features, far too many for a fixture: the adjacency is N x N float32; the file is about 4.3 MB
at 256 nodes, the adjacency alone 85 MB at 4096) and batch_size SMOLLM2_BATCH. With 256 nodes it
takes about 4 minutes on 2 CPU cores, most of it loading the GGUF and building the two models.
"""

from __future__ import annotations

import os
import sys

if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable, *sys.argv])

import argparse  # noqa: E402
import contextlib  # noqa: E402
import importlib  # noqa: E402
import importlib.metadata as md  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_goldens as mg  # noqa: E402
import make_sae_goldens as msg  # noqa: E402

from circuit_tracer import attribute  # noqa: E402
from circuit_tracer.graph import Graph, compute_graph_scores, prune_graph  # noqa: E402
from circuit_tracer.replacement_model.replacement_model_transformerlens import (  # noqa: E402
    TransformerLensReplacementModel,
)
from circuit_tracer.transcoder.single_layer_transcoder import (  # noqa: E402
    TranscoderSet,
    load_transcoder_set,
)
from sae_lens import SAE  # noqa: E402
from sae_lens.saes import JumpReLUTranscoder, JumpReLUTranscoderConfig  # noqa: E402
from transformers import LlamaForCausalLM  # noqa: E402

# the module, not the function of the same name that circuit_tracer.utils re-exports
ct_graph_files = importlib.import_module("circuit_tracer.utils.create_graph_files")

warnings.filterwarnings("ignore")
logging.getLogger("circuit_tracer").setLevel(logging.ERROR)

ROOT = mg.ROOT
OUT = ROOT / "tests" / "fixtures" / "circuits"
TINY_TC_DIR = OUT / "transcoders_tiny"

INPUT_HOOK = "ln2.hook_normalized"
OUTPUT_HOOK = "hook_mlp_out"
MLP_IN_HOOK = "mlp.hook_in"  # the equivalent-graph variant (W_enc / w_ln2)

# tiny-llama
D_TC = 96
TC_SEEDS = (9101, 9102)
FIRE_TARGET = 0.20  # fraction of latents active per (non-BOS) position, calibration batch
CALIB_SEED, CALIB_SHAPE = 9110, (32, 16)
PROMPT_SEED, PROMPT_LEN = 9120, 8
FULL_BATCH = 32
PARTIAL_BATCH, PARTIAL_UPDATE_INTERVAL = 16, 2
MAX_N_LOGITS, DESIRED_LOGIT_PROB = 10, 0.95
NODE_THRESHOLD, EDGE_THRESHOLD = 0.8, 0.98
TINY_SCAN = "saescope-tiny-llama-plt-96"
GRAPH_SLUG = "tiny-llama-graph"

# SmolLM2 (--smollm2)
SMOLLM2_PROMPT = "Fact: the capital of the state containing Dallas is Austin, and Texas is"
SMOLLM2_PROMPT_LEN = 16
SMOLLM2_BATCH = 64


def versions() -> dict[str, str]:
    return {"circuit_tracer": md.version("circuit-tracer"), "torch": torch.__version__,
            "transformer_lens": md.version("transformer-lens"),
            "transformers": md.version("transformers"), "sae_lens": md.version("sae-lens")}


# ------------------------------------------------------------------------------------------
# tokenizer stand-ins
# ------------------------------------------------------------------------------------------


class StubTokenizer:
    """What circuit-tracer needs of `model.tokenizer` for a model without a tokenizer: special
    ids (ensure_tokenized), vocab_size (AttributionTargets), decode (logit target strings,
    Graph.input_string, create_graph_files' prompt_tokens). padding_side keeps TL's forward from
    building an attention mask."""

    padding_side = "right"

    def __init__(self, vocab_size: int, bos_id: int = 0):
        self.vocab_size = vocab_size
        self.bos_token_id = self.eos_token_id = bos_id
        self.pad_token_id = None
        self.all_special_ids = [bos_id]

    def piece(self, i: int) -> str:
        return "<bos>" if i == self.bos_token_id else f" t{i}"

    def decode(self, ids, **_kw) -> str:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        if isinstance(ids, int):
            ids = [ids]
        return "".join(self.piece(int(i)) for i in ids)


@contextlib.contextmanager
def graph_files_tokenizer(tokenizer):
    """create_graph_files loads AutoTokenizer.from_pretrained(graph.cfg.tokenizer_name); hand it
    the model's tokenizer instead (no hub, and tiny-llama has none)."""

    class Shim:
        @staticmethod
        def from_pretrained(*_a, **_kw):
            return tokenizer

    saved = ct_graph_files.AutoTokenizer
    ct_graph_files.AutoTokenizer = Shim
    try:
        yield
    finally:
        ct_graph_files.AutoTokenizer = saved


# ------------------------------------------------------------------------------------------
# models and transcoders
# ------------------------------------------------------------------------------------------


def tl_cfg_dict(hf_config, name: str) -> dict:
    """make_goldens.tl_cfg_dict_llama for TransformerLens 3.2.1, checked against TL's own
    convert_hf_model_config (as make_goldens.cross_check_with_tl). TL 3.2.1's config has no
    quantization_method field (dropped here), and its LlamaForCausalLM branch leaves out
    rotary_base, so that HookedTransformerConfig's default 10000 would apply whatever the model's
    rope_theta: the dict keeps the HF config's rope_theta, as TL 3.9.0 does. Every other key must
    agree."""
    hand = mg.tl_cfg_dict_llama(hf_config)
    assert hand.pop("quantization_method") is None
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / f"{name}-config"
        hf_config.save_pretrained(d)
        theirs = mg.tl_loading.convert_hf_model_config(str(d))
    theirs.pop("tokenizer_name", None)
    mine = {k: v for k, v in hand.items() if k != "rotary_base"}
    assert theirs == mine, {k: (mine.get(k), theirs.get(k)) for k in set(mine) | set(theirs)
                            if mine.get(k) != theirs.get(k)}
    return hand


def build_replacement_model(hf, cfg_dict: dict, name: str, transcoders: TranscoderSet,
                            tokenizer) -> TransformerLensReplacementModel:
    """TransformerLensReplacementModel.from_pretrained_and_transcoders without the hub: TL's
    from_pretrained steps by hand (as make_goldens.build_tl_model) with the flags
    from_pretrained_and_transcoders passes (fold_ln, center_writing_weights and center_unembed
    False; fold_value_biases left at its default True, a no-op for Llama, which has no value
    biases), then the same configuration call. _configure_replacement_model is private, but it is
    what both public constructors call after building the model, and from_config cannot be used:
    it configures an empty model, whose wrapped MLP / unembed no longer match TL's state-dict keys.
    """
    cfg = mg.finish_cfg(cfg_dict, name, hf.config.vocab_size, fold_ln=False)
    state_dict = mg.convert_llama_weights(hf, cfg)
    model = TransformerLensReplacementModel(cfg, move_to_device=False)
    model.load_and_process_state_dict(state_dict, fold_ln=False, center_writing_weights=False,
                                      center_unembed=False)
    model.move_model_modules_to_device()
    model.eval()
    model.tokenizer = tokenizer
    model._configure_replacement_model(transcoders)
    return model


def ct_state(sae: SAE, enc_scale: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """A SAELens (jumprelu_)transcoder as circuit-tracer's per-layer safetensors (the keys
    load_relu_transcoder reads): W_enc [d_sae, d_in] (SAELens stores [d_in, d_sae]), W_dec
    [d_sae, d_out], b_enc, b_dec, activation_function.threshold (JumpReLU; absent = ReLU).
    enc_scale divides the encoder's input dimensions (the mlp.hook_in variant: 1 / w_ln2).
    SAELens's apply_b_dec_to_input (x - b_dec before encoding) is folded into b_enc."""
    cfg = sae.cfg
    assert cfg.normalize_activations == "none", cfg.normalize_activations
    w_enc = sae.W_enc.detach().float()
    b_enc = sae.b_enc.detach().float()
    if cfg.apply_b_dec_to_input:
        b_enc = b_enc - sae.b_dec.detach().float() @ w_enc
    if enc_scale is not None:
        w_enc = w_enc / enc_scale[:, None]
    out = {"W_enc": w_enc.T.contiguous(), "W_dec": sae.W_dec.detach().float().contiguous(),
           "b_enc": b_enc.contiguous(), "b_dec": sae.b_dec.detach().float().contiguous()}
    arch = cfg.architecture()
    if arch == "jumprelu_transcoder":
        assert (sae.threshold > 0).all(), "circuit-tracer's JumpReLU is x * (x > t): needs t > 0"
        out["activation_function.threshold"] = sae.threshold.detach().float().contiguous()
    elif arch != "transcoder":
        raise SystemExit(f"unsupported SAELens architecture {arch!r}: want a (jumprelu_)transcoder")
    return out


def ct_transcoder_set(saes: list[SAE], input_hook: str, scan: str, tmp: Path,
                      enc_scales: list[torch.Tensor] | None = None) -> TranscoderSet:
    """Write the circuit-tracer files and load them with circuit-tracer's own loader."""
    paths = {}
    for layer, sae in enumerate(saes):
        hook_in = sae.cfg.metadata.hook_name
        hook_out = sae.cfg.metadata.hook_name_out
        assert hook_in == f"blocks.{layer}.{INPUT_HOOK}", hook_in
        assert hook_out == f"blocks.{layer}.{OUTPUT_HOOK}", hook_out
        p = tmp / f"{input_hook}_layer_{layer}.safetensors"
        save_file(ct_state(sae, None if enc_scales is None else enc_scales[layer]), str(p))
        paths[layer] = str(p)
    return load_transcoder_set(paths, scan=scan, feature_input_hook=input_hook,
                               feature_output_hook=OUTPUT_HOOK, device=torch.device("cpu"),
                               dtype=torch.float32, lazy_encoder=False, lazy_decoder=False)


def load_transcoder_folder(folder: Path) -> SAE:
    # float32 whatever the folder's dtype (saescope's transcoder runs save float16 weights):
    # circuit-tracer computes in the model's float32
    sae = SAE.load_from_disk(str(folder), dtype="float32").eval()
    meta = json.loads((folder / "cfg.json").read_text())["metadata"]
    # (folders without metadata.sae_lens_version lose the hook names on load)
    sae.cfg.metadata.hook_name = meta["hook_name"]
    sae.cfg.metadata.hook_name_out = meta.get("hook_name_out")
    for p in sae.parameters():
        p.requires_grad_(False)
    return sae


def check_transcoder_semantics(ct_model, processed, saes: list[SAE], tokens: torch.Tensor,
                               tol: float = 1e-5) -> float:
    """circuit-tracer's activations on the unprocessed model == SAELens's encode on the processed
    model's ln2.hook_normalized (circuit-tracer zeroes position 0). Also checks the premise: the
    two models' ln2.hook_normalized agree (the unprocessed one has no RMSNorm weight in it)."""
    names = [f"blocks.{layer}.{INPUT_HOOK}" for layer in range(len(saes))]
    with torch.no_grad():
        _, cache_p = processed.run_with_cache(tokens[None], names_filter=names)
        _, cache_u = ct_model.run_with_cache(tokens[None], names_filter=names)
        _, ct_acts = ct_model.get_activations(tokens)  # [n_layers, n_pos, d_sae]
    worst = 0.0
    for layer, (sae, name) in enumerate(zip(saes, names)):
        d = (cache_p[name] - cache_u[name]).abs().max().item()
        assert d < tol, f"{name}: processed vs unprocessed differ by {d}"
        ref = sae.encode(cache_p[name])[0]
        assert (ct_acts[layer, 0] == 0).all(), "circuit-tracer should zero position 0"
        # Relative to the largest activation (late layers' reach ~100 on SmolLM2).
        scale = max(1.0, ref[1:].abs().max().item())
        d = (ct_acts[layer, 1:] - ref[1:]).abs().max().item() / scale
        same_support = torch.equal(ct_acts[layer, 1:] > 0, ref[1:] > 0)
        assert d < tol and same_support, f"layer {layer}: activations differ by {d} (relative)"
        worst = max(worst, d)
    return worst


# ------------------------------------------------------------------------------------------
# graphs
# ------------------------------------------------------------------------------------------


def run_graph(model, tokens, *, max_feature_nodes, batch_size, update_interval=4):
    t0 = time.time()
    graph = attribute(tokens, model, max_n_logits=MAX_N_LOGITS,
                      desired_logit_prob=DESIRED_LOGIT_PROB, batch_size=batch_size,
                      max_feature_nodes=max_feature_nodes, update_interval=update_interval)
    pruned = prune_graph(graph, NODE_THRESHOLD, EDGE_THRESHOLD)
    scores = compute_graph_scores(graph)
    print(f"  attribute(max_feature_nodes={max_feature_nodes}, batch_size={batch_size}, "
          f"update_interval={update_interval}): {len(graph.active_features)} active, "
          f"{len(graph.selected_features)} selected, adjacency "
          f"{tuple(graph.adjacency_matrix.shape)}, {int(pruned.node_mask.sum())} nodes and "
          f"{int(pruned.edge_mask.sum())} edges after pruning, replacement "
          f"{scores[0]:.4f}, completeness {scores[1]:.4f} ({time.time() - t0:.1f} s)")
    return graph, pruned, scores


def graph_tensors(graph: Graph, pruned, scores, prefix: str = "") -> dict[str, torch.Tensor]:
    t = {
        "selected_features": graph.selected_features.to(torch.int64).clone(),
        "adjacency_matrix": msg.f32(graph.adjacency_matrix),
        "node_mask": pruned.node_mask.to(torch.uint8).clone(),
        "edge_mask": pruned.edge_mask.to(torch.uint8).contiguous().clone(),
        "cumulative_scores": msg.f32(pruned.cumulative_scores),
        "replacement_score": torch.tensor([scores[0]], dtype=torch.float32),
        "completeness_score": torch.tensor([scores[1]], dtype=torch.float32),
    }
    return {prefix + k: v for k, v in t.items()}


def common_tensors(model, graph: Graph, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    ids = graph.logit_token_ids
    w_u = model.unembed.W_U.detach()
    ctx = model.setup_attribution(tokens)
    return {
        "tokens": graph.input_tokens.to(torch.int64).clone(),
        "logit_targets": ids.to(torch.int64).clone(),
        "logit_probabilities": msg.f32(graph.logit_probabilities),
        "logit_vectors": msg.f32((w_u[:, ids] - w_u.mean(dim=-1, keepdim=True)).T),
        "logits": msg.f32(ctx.logits[0, -1]),
        "active_features": graph.active_features.to(torch.int64).contiguous().clone(),
        "activation_values": msg.f32(graph.activation_values),
        "error_vectors": msg.f32(ctx.error_vectors),
    }


def check_layout(graph: Graph, pruned, n_layers: int) -> dict[str, int]:
    """The node layout documented above, checked on the graph."""
    n_pos = len(graph.input_tokens)
    f = len(graph.selected_features)
    k = len(graph.logit_targets)
    n = graph.adjacency_matrix.shape[0]
    assert n == f + n_layers * n_pos + n_pos + k, (n, f, n_pos, k)
    a = graph.adjacency_matrix
    assert (a[f:n - k] == 0).all(), "error / token rows should be empty"
    assert (a[:, n - k:] == 0).all(), "logit columns should be empty"
    return {"n_features": f, "n_error": n_layers * n_pos, "n_token": n_pos, "n_logits": k,
            "n_nodes": n}


def write_graph_json(graph: Graph, tokenizer, slug: str, path: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp, graph_files_tokenizer(tokenizer):
        ct_graph_files.create_graph_files(graph, slug=slug, output_path=tmp,
                                          node_threshold=NODE_THRESHOLD,
                                          edge_threshold=EDGE_THRESHOLD)
        text = (Path(tmp) / f"{slug}.json").read_bytes()
    path.write_bytes(text)
    path.chmod(0o644)
    data = json.loads(text)
    print(f"wrote {msg.rel(path)} ({msg.human(path.stat().st_size)}): "
          f"{len(data['nodes'])} nodes, {len(data['links'])} links")


def graph_meta(graph: Graph, layout: dict[str, int], extra: dict) -> dict[str, str]:
    meta = {
        "node_order": "features (selected_features order), errors (layer-major: layer * n_pos + "
                      "pos), tokens (pos), logits (logit_targets order); adjacency[target, source]",
        "layout": json.dumps(layout),
        "input_string": graph.input_string,
        "scan": str(graph.scan),
        "feature_input_hook": INPUT_HOOK,
        "feature_output_hook": OUTPUT_HOOK,
        "max_n_logits": str(MAX_N_LOGITS),
        "desired_logit_prob": str(DESIRED_LOGIT_PROB),
        "node_threshold": str(NODE_THRESHOLD),
        "edge_threshold": str(EDGE_THRESHOLD),
        **{k: str(v) for k, v in extra.items()},
        **versions(),
    }
    return meta


def assert_graphs_close(a: Graph, b: Graph, what: str, rtol: float = 1e-4) -> float:
    assert torch.equal(a.active_features, b.active_features), what
    assert torch.equal(a.logit_token_ids, b.logit_token_ids), what
    scale = a.adjacency_matrix.abs().max().item()
    d = (a.adjacency_matrix - b.adjacency_matrix).abs().max().item()
    assert d <= rtol * scale, f"{what}: adjacency differs by {d} (max |A| {scale})"
    return d / scale


# ------------------------------------------------------------------------------------------
# tiny-llama
# ------------------------------------------------------------------------------------------


def calibration_acts(processed, n_layers: int):
    g = torch.Generator().manual_seed(CALIB_SEED)
    tokens = torch.randint(1, processed.cfg.d_vocab, CALIB_SHAPE, generator=g)
    tokens[:, 0] = 0
    names = [f"blocks.{layer}.{h}" for layer in range(n_layers) for h in (INPUT_HOOK, OUTPUT_HOOK)]
    with torch.no_grad():
        _, cache = processed.run_with_cache(tokens, names_filter=names)
    # position 0 (BOS) is left out: circuit-tracer zeroes it, and its activations are outliers
    return [(cache[f"blocks.{layer}.{INPUT_HOOK}"][:, 1:].reshape(-1, 64).double(),
             cache[f"blocks.{layer}.{OUTPUT_HOOK}"][:, 1:].reshape(-1, 64).double())
            for layer in range(n_layers)]


def tiny_transcoder(layer: int, x: torch.Tensor, y: torch.Tensor) -> tuple[SAE, float]:
    """Seeded encoder calibrated on the real inputs x; ridge-fitted decoder on the outputs y."""
    g = msg.gen(TC_SEEDS[layer])
    d = x.shape[1]
    w_enc = torch.randn(d, D_TC, generator=g, dtype=torch.float64) / math.sqrt(d)
    b0 = 0.3 * torch.randn(D_TC, generator=g, dtype=torch.float64)
    threshold = 0.2 + 0.4 * torch.rand(D_TC, generator=g, dtype=torch.float64)
    w_dec0 = torch.randn(D_TC, d, generator=g, dtype=torch.float64)
    pre = x @ w_enc + b0

    def frac(shift: float) -> float:
        return ((pre + shift) > threshold).double().mean().item()

    lo, hi = -10.0, 10.0  # frac is increasing in the shift
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if frac(mid) < FIRE_TARGET else (lo, mid)
    shift = round((lo + hi) / 2, 3)
    b_enc = b0 + shift
    h = x @ w_enc + b_enc
    acts = h * (h > threshold)
    # decoder: ridge regression of y on [acts, 1], pulled towards random rows scaled to y
    w_dec0 = w_dec0 / w_dec0.norm(dim=1, keepdim=True) * y.norm(dim=1).mean() / math.sqrt(
        FIRE_TARGET * D_TC)
    feats = torch.cat([acts, torch.ones(len(acts), 1, dtype=acts.dtype)], dim=1)
    prior = torch.cat([w_dec0, torch.zeros(1, d, dtype=acts.dtype)])
    lam = 1.0
    beta = torch.linalg.solve(feats.T @ feats + lam * torch.eye(D_TC + 1, dtype=acts.dtype),
                              feats.T @ y + lam * prior)
    cfg = JumpReLUTranscoderConfig(
        d_in=d, d_sae=D_TC, d_out=d, apply_b_dec_to_input=False,
        metadata=msg.meta_for(f"blocks.{layer}.{INPUT_HOOK}",
                              hook_name_out=f"blocks.{layer}.{OUTPUT_HOOK}"))
    sae = JumpReLUTranscoder(cfg)
    msg.set_params(sae, {"W_enc": w_enc.float(), "b_enc": b_enc.float(),
                         "threshold": threshold.float(), "W_dec": beta[:D_TC].float(),
                         "b_dec": beta[D_TC].float()})
    fit = 1 - ((feats @ beta - y).pow(2).sum() / (y - y.mean(0)).pow(2).sum()).item()
    print(f"  layer {layer}: b_enc shift {shift:+.3f}, {frac(shift):.1%} of latents fire on the "
          f"calibration batch, decoder fit R^2 {fit:.3f}")
    return sae, fit


def make_tiny() -> None:
    torch.set_num_threads(1)  # byte-stable sums on any machine
    t_start = time.time()
    hf = LlamaForCausalLM.from_pretrained(mg.FIXTURES / "tiny-llama", dtype=torch.float32).eval()
    cfg_dict = tl_cfg_dict(hf.config, "tiny-lm")
    processed = mg.build_tl_model(hf, cfg_dict, "tiny-llama", "processed")
    n_layers = processed.cfg.n_layers

    print("transcoders:")
    fits = {}
    for layer, (x, y) in enumerate(calibration_acts(processed, n_layers)):
        sae, fits[layer] = tiny_transcoder(layer, x, y)
        path = msg.fresh_dir(TINY_TC_DIR / f"layer_{layer}")
        sae.save_model(path)
        msg.finish_sae_folder(path)
    saes = [load_transcoder_folder(TINY_TC_DIR / f"layer_{layer}") for layer in range(n_layers)]

    g = torch.Generator().manual_seed(PROMPT_SEED)
    tokens = torch.randint(1, hf.config.vocab_size, (PROMPT_LEN,), generator=g)
    tokens[0] = 0  # BOS (a special id of the stub tokenizer: ensure_tokenized keeps it as is)
    tokenizer = StubTokenizer(hf.config.vocab_size, bos_id=0)

    with tempfile.TemporaryDirectory() as tmp:
        tcs = ct_transcoder_set(saes, INPUT_HOOK, TINY_SCAN, Path(tmp))
        model = build_replacement_model(hf, cfg_dict, "tiny-llama", tcs, tokenizer)
        w_ln2 = [model.blocks[layer].ln2.w.detach().clone() for layer in range(n_layers)]
        tcs_in = ct_transcoder_set(saes, MLP_IN_HOOK, TINY_SCAN, Path(tmp), enc_scales=w_ln2)
        model_in = build_replacement_model(hf, cfg_dict, "tiny-llama", tcs_in, tokenizer)

    act_err = check_transcoder_semantics(model, processed, saes, tokens)
    with torch.no_grad():  # the replacement model computes the same function as TL's
        lp_ct = model(tokens[None]).log_softmax(-1)
        lp_tl = processed(tokens[None]).log_softmax(-1)
    assert (lp_ct - lp_tl).abs().max() < 1e-4
    print(f"SAELens (processed TL) vs circuit-tracer activations: max |diff| {act_err:.2e}")

    print("full graph:")
    graph, pruned, scores = run_graph(model, tokens, max_feature_nodes=None,
                                      batch_size=FULL_BATCH)
    n_active = len(graph.active_features)
    per_pos = (graph.active_features[:, 1] > 0).sum().item() / (n_layers * (PROMPT_LEN - 1))
    print(f"  {per_pos:.1f} active latents per (layer, non-BOS position) of {D_TC} "
          f"({per_pos / D_TC:.1%})")
    layout = check_layout(graph, pruned, n_layers)

    print("mlp.hook_in variant (W_enc / w_ln2):")
    graph_in, _, _ = run_graph(model_in, tokens, max_feature_nodes=None, batch_size=FULL_BATCH)
    rel = assert_graphs_close(graph, graph_in, "mlp.hook_in variant")
    print(f"  same graph: max |diff| / max |A| = {rel:.2e}")

    half = n_active // 2
    print("partial graph:")
    graph_p, pruned_p, scores_p = run_graph(model, tokens, max_feature_nodes=half,
                                            batch_size=PARTIAL_BATCH,
                                            update_interval=PARTIAL_UPDATE_INTERVAL)
    assert torch.equal(graph_p.active_features, graph.active_features)
    layout_p = check_layout(graph_p, pruned_p, n_layers)

    t = {**common_tensors(model, graph, tokens), **graph_tensors(graph, pruned, scores),
         **graph_tensors(graph_p, pruned_p, scores_p, prefix="partial_")}
    meta = graph_meta(graph, layout, {
        "model": "tests/fixtures/tiny-llama (TransformerLens, unprocessed, as circuit-tracer "
                 "loads it)",
        "transcoders": f"{msg.rel(TINY_TC_DIR)}/layer_{{0,1}} (SAELens jumprelu_transcoder)",
        "tokenizer": "none; StubTokenizer: decode(0) = '<bos>', decode(i) = ' t<i>'",
        "full_max_feature_nodes": "None",
        "full_batch_size": FULL_BATCH,
        "full_update_interval": 4,
        "partial_max_feature_nodes": half,
        "partial_batch_size": PARTIAL_BATCH,
        "partial_update_interval": PARTIAL_UPDATE_INTERVAL,
        "partial_layout": json.dumps(layout_p),
        "replacement_score": repr(scores[0]),
        "completeness_score": repr(scores[1]),
        "partial_replacement_score": repr(scores_p[0]),
        "partial_completeness_score": repr(scores_p[1]),
        "decoder_fit_r2": json.dumps({k: round(v, 4) for k, v in fits.items()}),
        "graph_json": "graph_tiny.json",
        "graph_json_slug": GRAPH_SLUG,
        "torch_threads": 1,
    })
    msg.write_safetensors(OUT / "graph_tiny.safetensors", t, meta)
    write_graph_json(graph, tokenizer, GRAPH_SLUG, OUT / "graph_tiny.json")
    print(f"tiny-llama done in {time.time() - t_start:.1f} s")


# ------------------------------------------------------------------------------------------
# SmolLM2 (--smollm2 TRANSCODER_DIR)
# ------------------------------------------------------------------------------------------


def layer_folder(tc_dir: Path, layer: int) -> Path:
    """TRANSCODER_DIR/layer_LL (two digits, as saescope's transcoder runs name them) or
    TRANSCODER_DIR/layer_L."""
    for name in (f"layer_{layer:02d}", f"layer_{layer}"):
        if (tc_dir / name / "cfg.json").exists():
            return tc_dir / name
    raise SystemExit(f"no SAELens folder {tc_dir}/layer_{layer:02d} (or layer_{layer})")


def make_smollm2(tc_dir: Path, max_feature_nodes: int | None) -> None:
    t_start = time.time()
    tok = mg.load_smollm2_tokenizer()
    tok.padding_side = "right"  # the GGUF tokenizer says "left": TL would build attention masks
    print(f"loading {mg.GGUF_FILE} with transformers (dequantizes to float32; slow) ...")
    hf = mg.load_smollm2_hf()
    cfg_dict = tl_cfg_dict(hf.config, "smollm2")
    n_layers = hf.config.num_hidden_layers
    saes = [load_transcoder_folder(layer_folder(tc_dir, layer)) for layer in range(n_layers)]
    processed = mg.build_tl_model(hf, cfg_dict, "SmolLM2-135M-Instruct", "processed")

    ids = tok.encode(SMOLLM2_PROMPT, add_special_tokens=False)
    tokens = torch.tensor([tok.bos_token_id, *ids], dtype=torch.int64)
    assert len(tokens) == SMOLLM2_PROMPT_LEN, (len(tokens), [tok.decode(i) for i in ids])
    assert tokens[0].item() in tok.all_special_ids  # ensure_tokenized keeps it as given

    scan = f"saescope-smollm2-plt:{tc_dir.name}"
    with tempfile.TemporaryDirectory() as tmp:
        tcs = ct_transcoder_set(saes, INPUT_HOOK, scan, Path(tmp))
        model = build_replacement_model(hf, cfg_dict, "SmolLM2-135M-Instruct", tcs, tok)
    del hf
    act_err = check_transcoder_semantics(model, processed, saes, tokens, tol=1e-4)
    print(f"SAELens (processed TL) vs circuit-tracer activations: max |diff| {act_err:.2e}")
    del processed

    graph, pruned, scores = run_graph(model, tokens, max_feature_nodes=max_feature_nodes,
                                      batch_size=SMOLLM2_BATCH)
    layout = check_layout(graph, pruned, n_layers)
    t = {**common_tensors(model, graph, tokens), **graph_tensors(graph, pruned, scores)}
    meta = graph_meta(graph, layout, {
        "model": "SmolLM2-135M-Instruct (GGUF, dequantized; TransformerLens, unprocessed)",
        "transcoders": str(tc_dir),
        "full_max_feature_nodes": max_feature_nodes,
        "full_batch_size": SMOLLM2_BATCH,
        "full_update_interval": 4,
        "replacement_score": repr(scores[0]),
        "completeness_score": repr(scores[1]),
        "graph_json": "graph_smollm2.json",
        "graph_json_slug": "smollm2-graph",
    })
    msg.write_safetensors(OUT / "graph_smollm2.safetensors", t, meta)
    write_graph_json(graph, tok, "smollm2-graph", OUT / "graph_smollm2.json")
    print(f"SmolLM2 done in {time.time() - t_start:.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smollm2", metavar="TRANSCODER_DIR", type=Path,
                    help="SmolLM2 instead of tiny-llama: TRANSCODER_DIR/layer_LL (or layer_L) "
                         "SAELens folders")
    ap.add_argument("--max-feature-nodes", type=int, default=256,
                    help="--smollm2 only (0 = all active features)")
    args = ap.parse_args()
    torch.manual_seed(0)
    OUT.mkdir(parents=True, exist_ok=True)
    if args.smollm2 is not None:
        make_smollm2(args.smollm2.resolve(), args.max_feature_nodes or None)
    else:
        make_tiny()


if __name__ == "__main__":
    main()
