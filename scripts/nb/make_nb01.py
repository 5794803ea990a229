"""Writes notebooks/01-running-saes.ipynb."""
import json, sys

import os
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nbgen import Notebook

_nb = Notebook()
md, code = _nb.md, _nb.code

md(r"""
# Running SAEs

The SAELens workflow in Rust: load an SAE, splice it into the model, cache its latent
activations, and read what one latent does. We use the SAE shipped with saescope: a TopK SAE
(k = 48, 4608 latents) on SmolLM2-135M-Instruct's residual stream after layer 15.

1. load the SAE and look at its config (SAELens's `cfg.json`);
2. `run_with_saes` / `run_with_cache_with_saes` (HookedSAETransformer semantics) and the error term;
3. **find a latent** for a concept by scanning the corpus, and test a hypothesis about it.

**Hypothesis.** *The latent that best picks out Python's `raise` keyword is a "raising an
exception" latent: its strongest activations in the corpus are all on `raise` statements, and the
model uses it to predict that an exception class (`ValueError`, `TypeError`, …) comes next —
removing it on a `raise` line lowers the probability of exception-class tokens.* Evidence: top
examples from the corpus, its logit weights (which turn out *not* to show it directly), and an
ablation on a `raise` line.
""")
md("## Setup")
code(r""":dep saescope = { path = ".." }""")
code(r"""use saescope::prelude::*;
use saescope::{DType, HookedModel, Hooks, IndexOp, NamesFilter, Sae, Tensor, D};""")
code(r"""let model = HookedModel::from_pretrained("smollm2")?;
let sae = Sae::shipped()?;
println!("{}: {} -> {} latents, architecture {}, k = {:?}", sae.hook_name(), sae.cfg().d_in, sae.cfg().d_sae, sae.cfg().architecture, sae.k());
println!("{}", saescope::serde_json::to_string_pretty(&sae.cfg().to_json_value())?);""", contains=["blocks.15.hook_resid_post"])
md(r"""
## Splicing the SAE in

`run_with_saes` replaces the hook's activation by the SAE's reconstruction for the rest of the
forward pass. `run_with_cache_with_saes` also caches the SAE's own hook points:
`<hook>.hook_sae_input`, `.hook_sae_acts_pre`, `.hook_sae_acts_post` (the latents),
`.hook_sae_recons`, `.hook_sae_output`, and `.hook_sae_error` with the error term.
""")
code(r"""let prompt = "The capital of France is";
let tokens = model.to_tokens(prompt)?;
let last = tokens.dim(1)? - 1;
let (logits_sae, cache) = model.run_with_cache_with_saes(&tokens, &[&sae])?;
let sae_names: Vec<String> = cache.keys().filter(|k| k.contains("hook_sae")).map(|k| k.to_string()).collect();
println!("SAE hook points: {:?}", sae_names);
let acts_name = format!("{}.hook_sae_acts_post", sae.hook_name());
let acts: Tensor = cache.get(acts_name.as_str())?.clone();       // [batch, pos, d_sae]
let l0: Vec<f32> = acts.gt(0f32)?.to_dtype(DType::F32)?.sum(D::Minus1)?.i(0)?.to_vec1()?;
println!("active latents per token: {:?}", l0);
for (id, logit) in model.top_k(&logits_sae, last, 3)? {
    println!("with SAE: {:?} {logit:.2}", model.to_string(&[id])?);
};""", contains=["hook_sae_acts_post", "Paris"])
md(r"""
With `use_error_term` the spliced model adds back `x − SAE(x)`, so its output equals the clean
model's exactly, while every latent can still be read or edited — the setting for interventions.
""")
code(r"""let clean = model.forward(&tokens)?;
let with_err = model.run(&tokens).sae(&sae).error_term().logits()?;
let max_diff: f32 = (clean - &with_err)?.abs()?.max_all()?.to_scalar()?;
println!("max |clean − with error term| = {max_diff:.2e}");""", contains=["max |clean"])
md(r"""
## Finding a `raise` latent

We scan 16 Ki tokens of the corpus (shuffled; prose and Python code) and cache only the latents
(`stop_at_layer = 16`: nothing after layer 15 is needed). For each latent we ask how well its
firing pattern matches the set `S` of ` raise` tokens: *recall* = fraction of `S`
tokens it fires on, *precision* = fraction of its firings that are in `S`; the product ranks them.
""")
code(r"""let rows: Tensor = saescope::data::token_rows(model.tokenizer()?, "default", 128, 128, Some(3))?;
let mut chunks: Vec<Tensor> = Vec::new();
for b in 0..16 {
    let toks = rows.narrow(0, b * 8, 8)?;
    let (_, c) = model.run(&toks).sae(&sae).names(acts_name.as_str()).stop_at_layer(16).cache()?;
    chunks.push(c.get(acts_name.as_str())?.clone());
}
let corpus_acts: Tensor = Tensor::cat(&chunks, 0)?;                 // [128, 128, 4608]
println!("latents cached: {:?}", corpus_acts.dims());""", contains=["latents cached"])
code(r"""let d_sae = sae.cfg().d_sae;
let flat = corpus_acts.reshape(((), d_sae))?;                         // [tokens, d_sae]
let ids: Vec<u32> = rows.flatten_all()?.to_vec1()?;
let targets = [model.to_single_token(" raise")?];
let in_s: Vec<f32> = ids.iter().map(|t| if targets.contains(t) { 1.0 } else { 0.0 }).collect();
let n_s: f32 = in_s.iter().sum();
let in_s = Tensor::from_vec(in_s, (1, ids.len()), &saescope::Device::Cpu)?;
let fired = flat.gt(0f32)?.to_dtype(DType::F32)?;                     // [tokens, d_sae]
let on_s: Vec<f32> = in_s.matmul(&fired)?.squeeze(0)?.to_vec1()?;
let total: Vec<f32> = fired.sum(0)?.to_vec1()?;
let mut ranked: Vec<(usize, f32, f32)> = (0..d_sae)
    .map(|j| (j, on_s[j] / n_s, on_s[j] / total[j].max(1.0)))
    .collect();
ranked.sort_by(|a, b| (b.1 * b.2).total_cmp(&(a.1 * a.2)));
println!("{n_s} ` raise` tokens in the scan");
for (j, recall, precision) in &ranked[..5] {
    println!("latent {j:4}: recall {recall:.2}, precision {precision:.2}");
}
let latent = ranked[0].0;
println!("chosen latent: {latent}");""", contains=["chosen latent"])
md(r"""
### Evidence 1: its top activations in the corpus

The 8 strongest activations of the latent, each with 12 tokens of context; the token it fires on
is in `[[ ]]`.
""")
code(r"""let col: Vec<f32> = flat.i((.., latent))?.to_vec1()?;
let mut order: Vec<usize> = (0..col.len()).collect();
order.sort_by(|a, b| col[*b].total_cmp(&col[*a]));
let mut exception_keywords = 0;
for &p in order.iter().take(8) {
    let (row, pos) = (p / 128, p % 128);
    let row_ids = &ids[row * 128..(row + 1) * 128];
    let before = model.to_string(&row_ids[pos.saturating_sub(12)..pos])?;
    let tok = model.to_string(&row_ids[pos..pos + 1])?;
    let after = model.to_string(&row_ids[pos + 1..(pos + 4).min(128)])?;
    if tok == " raise" { exception_keywords += 1; }
    println!("{:6.1}  {:?} [[{}]] {:?}", col[p], before.replace('\n', "⏎"), tok, after.replace('\n', "⏎"));
}
println!("top examples on ` raise`: {exception_keywords} of 8");""", contains=["top examples on ` raise`"])
md(r"""
### Evidence 2: what it writes — logit weights

The latent's decoder direction `W_dec[i]` projected on the unembedding `W_U` (sae_vis's logits
table): the tokens whose logits it would raise most directly, and those it lowers. For a latent in
the middle of a 30-layer model this *direct* path is weak and often uninformative — the latent's
effect on the output goes through the later layers — so we count exception-like tokens at the
top and expect few.
""")
code(r"""let w_dec_row = sae.w_dec().i(latent)?.unsqueeze(0)?;               // [1, d_model]
let logit_w: Vec<f32> = w_dec_row.matmul(model.w_u())?.squeeze(0)?.to_vec1()?;
let mut by_logit: Vec<usize> = (0..logit_w.len()).collect();
by_logit.sort_by(|a, b| logit_w[*b].total_cmp(&logit_w[*a]));
let top: Vec<String> = by_logit[..12].iter().map(|&t| format!("{:?} {:.2}", model.to_string(&[t as u32]).unwrap(), logit_w[t])).collect();
let bottom: Vec<String> = by_logit[by_logit.len() - 8..].iter().map(|&t| format!("{:?} {:.2}", model.to_string(&[t as u32]).unwrap(), logit_w[t])).collect();
println!("top logits:    {top:?}");
println!("bottom logits: {bottom:?}");
let error_like = by_logit[..20].iter().filter(|&&t| { let s = model.to_string(&[t as u32]).unwrap(); s.contains("Error") || s.contains("Exception") || s.contains("Warning") }).count();
println!("exception-like tokens among the top 20 logits: {error_like}");""", contains=["top logits"])
md(r"""
### Evidence 3: an intervention

After `raise` the model has to predict an exception class. We ablate the latent at the ` raise`
position (set it to 0 with the error term on, so nothing else changes) and compare the
log-probabilities of the model's top predictions, and the total probability on exception-class
tokens (any token containing `Error` or `Exception`).
""")
code(r"""let code_prompt = "def parse_port(text):\n    port = int(text)\n    if port < 0:\n        raise";
let code_toks = model.to_tokens(code_prompt)?;
let pos = code_toks.dim(1)? - 1;
let clean_logits = model.forward(&code_toks)?;
/// Logits with the given latents set to 0 at position `pos` (error term on).
let top5_latents: Vec<usize> = ranked[..5].iter().map(|r| r.0).collect();
let (ablated_logits, ablated5_logits) = {
    let ablate = |latents: &[usize]| model.run(&code_toks).sae(&sae).error_term()
        .hooks(Hooks::new().ablate_latents(&sae, pos, latents, Ablation::Zero)).logits();
    (ablate(&[latent])?, ablate(&top5_latents)?)
};
let act_here: f32 = { let (_, c) = model.run(&code_toks).sae(&sae).names(acts_name.as_str()).stop_at_layer(16).cache()?; c.get(acts_name.as_str())?.i((0, pos, latent))?.to_scalar()? };
println!("latent {latent} activation at ` raise`: {act_here:.1}");
""", contains=["activation at"])
md(r"""
The latent along the whole snippet: it stays silent until ` raise`.
""")
code(r"""let (_, c) = model.run(&code_toks).sae(&sae).names(acts_name.as_str()).stop_at_layer(16).cache()?;
let along = c.get(acts_name.as_str())?.i((0, .., latent))?.to_f32_vec()?;
let labels = model.to_str_tokens(code_prompt)?;
let along_svg = viz::line_chart(&format!("Latent {latent} along the code snippet"), &labels, &[(format!("latent {latent}"), along)], "activation")?;""")
code(r"""along_svg""", expect=["image/svg+xml"])
code(r"""/// Log-probabilities of the next token at `pos`.
fn log_probs(logits: &Tensor, pos: usize) -> saescope::Result<Vec<f32>> { logits.i((0, pos))?.log_softmax()?.to_f32_vec() }
let (lp_clean, lp_ablated, lp_ablated5) = (log_probs(&clean_logits, pos)?, log_probs(&ablated_logits, pos)?, log_probs(&ablated5_logits, pos)?);
let mut order: Vec<usize> = (0..lp_clean.len()).collect();
order.sort_by(|a, b| lp_clean[*b].total_cmp(&lp_clean[*a]));
println!("{:>22} {:>8} {:>8} {:>10}", "next token", "clean", "ablated", "top-5 abl.");
for &t in order.iter().take(8) {
    println!("{:>22} {:8.3} {:8.3} {:10.3}", format!("{:?}", model.to_string(&[t as u32])?), lp_clean[t], lp_ablated[t], lp_ablated5[t]);
}
/// Total probability on tokens that contain `Error` or `Exception`.
fn exception_mass(model: &HookedModel, lp: &[f32]) -> f32 {
    lp.iter().enumerate().filter(|(t, _)| {
        let s = model.to_string(&[*t as u32]).unwrap_or_default();
        s.contains("Error") || s.contains("Exception")
    }).map(|(_, l)| l.exp()).sum()
}
let (m_clean, m_ablated, m_ablated5) = (exception_mass(&model, &lp_clean), exception_mass(&model, &lp_ablated), exception_mass(&model, &lp_ablated5));
println!("probability on exception-class tokens: clean {m_clean:.4}, latent {latent} ablated {m_ablated:.4}, top-5 `raise` latents {top5_latents:?} ablated {m_ablated5:.4}");""", contains=["probability on exception-class tokens"])

md(r"""
## Conclusion

* **Supported:** the latent that best separates ` raise` from other tokens fires on `raise` in 7 of
  its 8 strongest corpus activations — in code (`raise ValueError(...)`) and in docs ("should
  raise a TypeError").
* **Partly supported:** ablating this one latent on a `raise` line changes almost nothing — other
  latents carry the same information (the scan found five with recall ≥ 0.86). Ablating those five
  together lowers the probability of an exception class from 0.988 to 0.958, i.e. the rest of the
  distribution grows from 1.2 % to 4.2 %: the `raise` latents, as a group, feed the model's
  prediction that an exception class follows.
* **Not shown:** the latent's direct logit weights contain no exception tokens. At layer 15 of 30
  the latent acts through the later layers, not directly on the logits; attribution patching and
  ablation across positions (notebook 03) are the tools for that path.
""")

_nb.write(sys.argv[1])
