"""Writes notebooks/07-circuits.ipynb."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nbgen import Notebook

_nb = Notebook()
md, code = _nb.md, _nb.code

md(r"""
# SAE circuits: latent gradients, transcoders and attribution graphs

ARENA's circuits section (1.4.2 §2) on SmolLM2-135M-Instruct, with the SAE and the per-layer
transcoders shipped with saescope:

1. **latent gradients**: how latents of an earlier SAE (or transcoder) drive latents of a later
   one, tokens drive latents, and latents drive logits — ARENA's `jacrev` functions;
2. **attribution graphs** as circuit-tracer builds them: the local replacement model (every MLP
   replaced by its transcoder, attention patterns and norm scales frozen, error nodes), the
   graph, pruning, and what it predicts about interventions;
3. **transcoder tools**: de-embeddings and pullbacks.

The prompt is a two-hop fact that the 135M model gets right: *"The capital of the country where
the Eiffel Tower stands is"* → " Paris".

**Hypothesis.** *SmolLM2 writes " Paris" at the last position mostly through a handful of
transcoder latents of the last layers at that position, which the attribution graph ranks first;
ablating the 10 latents the graph ranks highest at that position lowers the " Paris" logit by
about what the graph predicts (at least 3 logits, most of P(" Paris") gone), while ablating 10
latents of the same layers at the same position that the graph ranks lowest (the control)
changes it by under a quarter of that.* Evidence: the graph, its prediction, and the interventions run in the
replacement model and in the real model.
""")
md("## Setup")
code(r""":dep saescope = { path = ".." }""")
code(r"""use saescope::prelude::*;
let model = HookedModel::from_pretrained("smollm2")?;
let sae = Sae::shipped()?;               // TopK, 576 → 4608 on blocks.15.hook_resid_post
let tcs = TranscoderSet::shipped()?;     // 30 transcoders, ln2.hook_normalized → hook_mlp_out
let prompt = "The capital of the country where the Eiffel Tower stands is";
println!("{} transcoders of width {}; top logits {:?}", tcs.len(), tcs.layer(0).d_sae(), model.top_tokens(&model.run(prompt).logits()?, 3)?);""",
     contains=["30 transcoders of width 1152", "Paris"])
md(r"""
## 1. Latent gradients

`latent_to_latent_gradients(model, prompt, from, to)` is the Jacobian of the later SAE's active
latents with respect to the earlier one's active latents (sparse on both sides): the earlier
SAE's latents are spliced in at its output hook, the model runs from there to the later SAE's
hook. Here the earlier one is layer 10's transcoder (it writes `blocks.10.hook_mlp_out`) and the
later one the shipped SAE on layer 15's residual stream. Each backward pass seeds 64 outputs
through a batch dimension. The BOS position's latents have gradients that dwarf the rest (it is
an attention sink), so `without_bos()` leaves them out of the tables and heatmaps.
""")
code(r"""let grads = latent_to_latent_gradients(&model, prompt, tcs.layer(10), &sae)?;
println!("{} outputs × {} inputs, {:.0} outputs/s", grads.outputs.len(), grads.inputs.len(), grads.outputs_per_sec);
let grads = grads.without_bos()?;
for (from, to, g) in grads.top_edges(5)? { println!("{g:+8.3}  {from:>28} → {to}"); }
grads.strongest(12, 12)?.heatmap()?""", expect=["image/svg+xml"], contains=["outputs/s"])
md(r"""
Tokens → latents (a scale on each position's embedding) and latents → the top logits:
""")
code(r"""token_to_latent_gradients(&model, prompt, &sae)?.without_bos()?.strongest(12, 12)?.heatmap()?""", expect=["image/svg+xml"])
code(r"""latent_to_logit_gradients(&model, prompt, &sae, 5)?.without_bos()?.strongest(12, 5)?.heatmap()?""", expect=["image/svg+xml"])
md(r"""
## 2. The shipped transcoders

One BatchTopK (k = 32) transcoder per layer, 576 → 1152 → 576, trained on all 30 layers from one
streamed model pass (`scripts/train_transcoders.sh`) and stored in float16 as SAELens
`jumprelu_transcoder` folders. Their evals (`saescope eval --transcoders DIR`, on held-out
tokens) are in the set's `eval.json`: the fraction of `hook_mlp_out`'s variance left unexplained
(FVU), and the CE-loss score with each MLP replaced alone and with all 30 replaced at once.
""")
code(r"""let ev: saescope::eval::TranscoderSetEval = serde_json::from_str(&std::fs::read_to_string(saescope::sae::shipped_transcoders_dir().join("eval.json"))?).map_err(|e| Error::Invalid(e.to_string()))?;
println!("{} eval tokens; all 30 MLPs replaced at once: CE {:.3} (clean {:.3}, all zero-ablated {:.3}), CE-loss score {:.3}",
         ev.tokens, ev.ce_all_replaced, ev.ce_clean, ev.ce_all_zero_ablated, ev.ce_loss_score_all);
let layers: Vec<String> = ev.layers.iter().map(|l| l.layer.to_string()).collect();
line_chart("Shipped transcoders by layer", &layers, &[
    ("FVU of hook_mlp_out".into(), ev.layers.iter().map(|l| l.fvu as f32).collect()),
    ("CE-loss score, this MLP replaced".into(), ev.layers.iter().map(|l| l.ce_loss_score as f32).collect()),
], "")?""", expect=["image/svg+xml"], contains=["CE-loss score"])
md(r"""
## 3. The attribution graph

`attribute` builds circuit-tracer's graph: nodes for every active transcoder latent at every
position (BOS excluded), an error node per layer and position, the tokens, and the logits that
make up 95 % of the probability (at most 10); edges for every direct effect in the local
replacement model, by injected-gradient backward passes. The replacement score is the share of
the tokens' influence on the logits that flows through latents rather than error nodes.
""")
code(r"""let graph = attribute(&model, prompt, &tcs, &GraphOptions::default())?;
let (replacement, completeness) = graph.scores()?;
println!("{} feature nodes, {} nodes in all, {} logits {:?}", graph.selected_features.len(), graph.n_nodes(), graph.logit_strs.len(), graph.logit_strs);
println!("replacement score {replacement:.3}, completeness {completeness:.3}; built in {:.0} s", graph.seconds);
graph.save_json("out/nb07-eiffel.json", "eiffel-capital", "saescope-smollm2-transcoders")?;""",
     contains=["replacement score"])
md(r"""
The graph pruned for display (nodes up to 50 % of the influence, edges up to 90 %; at
circuit-tracer's defaults, 80 % and 98 %, about 1 500 nodes survive — `out/nb07-eiffel.json`
holds that graph in circuit-tracer's format, which its frontend and Neuronpedia load):
positions left to right, layers bottom to top, edges red (positive) or blue (negative). Hover a
latent for the tokens it writes and its top activating examples in 4 096 corpus tokens.
""")
code(r"""let corpus = corpus_rows(&model, "default", 4096, 64)?;
let notes = graph.feature_notes(&model, &tcs, &corpus, 3)?;
println!("notes for {} latents", notes.len());
graph.plot_with(0.5, 0.9, &notes)?""", expect=["image/svg+xml"], contains=["notes for"])
md(r"""
The latents at the last position ranked by their influence on the logits, with the tokens each
writes most (its decoder row through the unembedding):
""")
code(r"""let last = graph.tokens.len() - 1;
let at_last: Vec<FeatureNode> = graph.top_features(usize::MAX)?.into_iter().filter(|f| f.pos == last).collect();
fn writes(model: &HookedModel, tcs: &TranscoderSet, f: &FeatureNode) -> Result<String> {
    Ok(logit_table(model, tcs.layer(f.layer), f.feature, 5)?.top.iter().map(|t| format!("{:?}", t.token)).collect::<Vec<_>>().join(" "))
}
for f in &at_last[..10] { println!("{f}  writes {}", writes(&model, &tcs, f)?); };""", contains=["writes"])
md(r"""
## 4. Testing the hypothesis with interventions

`graph.predict(&interventions)` propagates the changes along the graph's edges (linear, no
latent crossing its threshold); `intervene` runs them in the model — `Freeze::Replacement` is
the local replacement model the graph describes, `Freeze::Nothing` the real model. The control
ablates, for each of the 10 top latents, the latent of the same layer at the same position with
the least influence.
""")
code(r"""let top: Vec<FeatureNode> = at_last[..10].to_vec();
let mut control: Vec<FeatureNode> = Vec::new();
for f in &top {
    let c = at_last.iter().rev().find(|c| c.layer == f.layer && !top.contains(c) && !control.contains(c)).expect("a control latent");
    control.push(c.clone());
}
fn ablate(fs: &[FeatureNode]) -> Vec<Intervention> {
    fs.iter().map(|f| Intervention { layer: f.layer, pos: f.pos, feature: f.feature, change: Change::Set(0.0) }).collect()
}
fn prob(logits: &Tensor, token: u32) -> Result<f32> { logits.last_pos()?.softmax()?.i((0, token as usize))?.item() }
let paris = graph.logit_tokens[0];
let clean_logits = model.run(prompt).logits()?;
let clean = graph.logit_values(&clean_logits)?;
println!("clean: P(\" Paris\") {:.3}", prob(&clean_logits, paris)?);
let mut drops: Vec<f32> = Vec::new();
for (name, set) in [("top 10", top.clone()), ("control", control.clone())] {
    let ivs = ablate(&set);
    let predicted = graph.predict(&ivs)?[0];
    let mut line = format!("{name:8} predicted Δ {predicted:+.2}");
    for freeze in [Freeze::Replacement, Freeze::Nothing] {
        let l = intervene(&model, prompt, &tcs, &ivs, freeze)?;
        let d = graph.logit_values(&l)?[0] - clean[0];
        line += &format!(" | {freeze:?}: Δ {d:+.2}, P {:.3}", prob(&l, paris)?);
        if freeze == Freeze::Nothing { drops.push(-d); }
    }
    println!("{line}");
}
println!("hypothesis holds: {}", drops[0] >= 3.0 && drops[1].abs() < 0.25 * drops[0]);""",
     contains=["hypothesis holds: true"])
md(r"""
## 5. Transcoder tools

ARENA's helpers work on any transcoder of the set. The **de-embedding** of a layer-0 latent
(`W_E @ W_enc[:, i]`) says which tokens it reads directly; the **pullback** of a late latent
(`W_dec_early @ W_enc_late[:, i]`) which earlier latents write what it reads, and its
**influence** on this prompt (the earlier latents' activations times the pullback).
""")
code(r"""{
// The active layer-0 latent at ' capital' that reads the token ' capital' most strongly.
let capital = graph.tokens[2];
let mut best = (0usize, f32::MIN);
for f in graph.top_features(usize::MAX)?.into_iter().filter(|f| f.layer == 0 && f.pos == 2) {
    let score = de_embeddings(&model, tcs.layer(0), f.feature)?.i(capital as usize)?.item()?;
    if score > best.1 { best = (f.feature, score); }
}
println!("L0/{} on {:?}:\n{}", best.0, graph.str_tokens[2], deembedding_table(&model, tcs.layer(0), best.0, 6)?);
let late = &top[0];
let early = tcs.layer(late.layer - 1);
let pb = pullback(early, tcs.layer(late.layer), late.feature)?;
let (_, cache) = model.run(prompt).names(vec![format!("blocks.{}.ln2.hook_normalized", late.layer - 1)]).cache()?;
let acts = early.encode(&cache.get(format!("blocks.{}.ln2.hook_normalized", late.layer - 1))?)?.i((0, last))?;
let inf = pullback_influence(&acts, &pb)?.topk(5)?;
println!("L{}/{}: the layer-{} latents feeding it most on this prompt {:?} (influence {:?})", late.layer, late.feature, late.layer - 1, inf.indices.to_vec1::<u32>()?, inf.values.to_vec1::<f32>()?);
};""",
     contains=["feeding it most"])
md(r"""
## Conclusion

The hypothesis holds. With every MLP replaced by its transcoder, the graph keeps 58 % of the
tokens' influence on the logits in latents (replacement score 0.58; the rest flows through
error nodes). At the last position its top-ranked latents are layer-28/29 output latents;
ablating the top 10 there, the graph predicts the " Paris" logit to fall by 5.6, the local
replacement model (frozen attention and norms) shows 5.6, and the real model 4.9 — P(" Paris")
goes from 0.55 to under 0.01 — while the 10 control latents of the same layers and position
move it by −0.1 (predicted and replacement) and +0.4 (real), with P(" Paris") at 0.57.

What the graph does *not* show is a clean two-hop chain. The top latents write name-like tokens
(" firstname", " surnames") and country names (" Poland", " Israel") rather than " Paris"
itself, so they look like generic "a proper name comes next" outputs; what selects Paris among
names must come from the paths the graph leaves in its error nodes, or from latents that each
carry too little influence to rank. Wider transcoders (the shipped ones explain 50–96 % of each
MLP's output variance) would be the first thing to try.
""")

_nb.write(sys.argv[1])
