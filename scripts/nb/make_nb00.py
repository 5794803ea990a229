"""Writes notebooks/00-hooked-model-tour.ipynb."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nbgen import Notebook

_nb = Notebook()
md, code = _nb.md, _nb.code

md(r"""
# A tour of `HookedModel`

This notebook walks through the core of **saescope**: a TransformerLens-style hooked transformer
written in Rust. We will

1. load the default model (SmolLM2-135M-Instruct) with TransformerLens's weight processing,
2. tokenize a prompt and run it while caching every activation,
3. look at the hook points and their shapes,
4. draw a **logit lens**: how strongly each layer's residual stream already predicts the answer,
5. draw an **attention pattern** for one head,
6. **ablate** attention heads with a forward hook and see how the loss changes.

It runs on the evcxr Rust kernel (`evcxr_jupyter`). Set it up once with
`bash scripts/setup_notebooks.sh`, then either open it in Jupyter
(`JUPYTER_DATA_DIR=$PWD/.jupyter .venv-jupyter/bin/jupyter lab`) or run it headlessly with
`bash scripts/run_notebooks.sh notebooks/00-hooked-model-tour.ipynb`.

A few evcxr habits used below: each cell's last expression (without `;`) is displayed; `?` works at the
top level of a cell; and variables that live across cells get explicit types.
""")
md(r"""
## Setup

The first cell compiles saescope and its dependencies (candle, tokenizers, plotters, ...) inside
evcxr. On a fresh machine this takes a few minutes; afterwards the build is cached in `.evcxr/`
and the cell takes seconds.
""")
code(r""":dep saescope = { path = ".." }""")
md(r"""
## Load the model

`from_pretrained("smollm2")` loads SmolLM2-135M-Instruct from `data/models/` (fetched by
`scripts/fetch_model.sh`) and applies TransformerLens's default processing: folding the
RMSNorm weights into the following matrices, centring the unembedding, and so on. The logits are
unchanged up to a constant per position, but the weights become easier to interpret.
""")
code(r"""use saescope::prelude::*;
let model = HookedModel::from_pretrained("smollm2")?;
{
    let c = model.cfg();
    println!("{}: {} layers, d_model = {}, {} heads (d_head = {}), d_mlp = {}, d_vocab = {}", c.model_name, c.n_layers, c.d_model, c.n_heads, c.d_head, c.d_mlp, c.d_vocab);
};""", expect=["stdout"])
md(r"""
## Tokenize

`to_tokens` returns a `[batch, pos]` tensor of token ids with the beginning-of-sequence token
prepended, like TransformerLens. `to_str_tokens` gives the matching strings; note the leading
spaces, which are part of the tokens.
""")
code(r"""let prompt = "The capital of France is";
let tokens = model.to_tokens(prompt)?;
let str_toks = model.to_str_tokens(prompt)?;
println!("tokens {:?}: {:?}", tokens.dims(), tokens.to_vec2::<u32>()?);
str_toks""", contains=[" France"])
md(r"""
## Run with a cache

`run_with_cache` returns the logits `[batch, pos, d_vocab]` and an `ActivationCache` holding every
activation (`model.run(prompt).names([...]).cache()` keeps fewer). The last position's logits are
the model's prediction for the next token.
""")
code(r"""let (logits, cache) = model.run_with_cache(prompt)?;
let last = str_toks.len() - 1;
println!("logits {:?}; {} cached activations", logits.dims(), cache.len());
for (tok, logit) in model.top_tokens(&logits, 5)? { println!("{tok:>12?}  logit {logit:6.2}"); };""", contains=["Paris"])
md(r"""
## Hook points and their shapes

Every activation has a TransformerLens name. Here are the ones outside the blocks and those of
block 0 (every block has the same set). Shapes are `[batch, pos, ...]`; attention scores and
patterns are `[batch, head, query_pos, key_pos]`.
""")
code(r"""for name in cache.keys() {
    if !name.starts_with("blocks.") || name.starts_with("blocks.0.") {
        println!("{:32} {:?}", name, cache.get(name)?.dims());
    }
};""", contains=["hook_embed", "blocks.0.attn.hook_pattern"])
md(r"""
Like TransformerLens's `utils.get_act_name`, a `(name, layer)` pair is accepted wherever a hook
name is: `("resid_pre", 5)` means `blocks.5.hook_resid_pre`.
""")
code(r"""println!("{}", get_act_name("pattern", Some(0), None));
println!("resid_pre 5: {:?}", cache.get(("resid_pre", 5))?.dims());
println!("pattern 0:   {:?}", cache.get(("pattern", 0))?.dims());""", contains=["blocks.0.attn.hook_pattern"])
md(r"""
## Logit lens

The residual stream is a running sum: each layer adds its output to it. `accumulated_resid`
stacks the residual stream before every layer (plus the final one), and `logit_attrs` applies the
final norm's scale (taken from the cache) and projects onto the unembedding direction of a
token. The result is "how much would the model predict ` Paris` if it stopped here?".
""")
code(r"""let (stack, labels) = cache.accumulated_resid(Resid::default())?;
println!("stack {:?}: {} .. {}", stack.dims(), labels[0], labels[labels.len() - 1]);
let mut series = Vec::new();
for answer in [" Paris", " London", " Rome"] {
    let lens = cache.logit_attrs(&stack, &[model.to_single_token(answer)?], None)?;      // [n_layers + 1, batch, pos]
    series.push((answer.to_string(), lens.i((.., 0, last))?.to_f32_vec()?));
}
line_chart("Logit lens at the last position", &labels, &series, "logit")?""", expect=["image/svg+xml"])
md(r"""
## An attention pattern

`hook_pattern` of layer `L` is `[batch, head, query_pos, key_pos]`: row `q` says where the token at
position `q` looks. A simple kind of head to find is a *previous-token head*, which attends from
each token to the one before it. Let's score every head by its average attention to the previous
token and draw the best one (rows are queries, columns keys; the white upper triangle is the
causal mask: a query never sees later keys).
""")
code(r"""let per_layer = (0..model.cfg().n_layers).map(|l| Ok(cache.get(("pattern", l))?.i(0)?.diagonal(-1)?.mean(D::Minus1)?)).collect::<saescope::Result<Vec<_>>>()?;
let prev_scores = Tensor::stack(&per_layer, 0)?;          // [layer, head]: mean attention to the previous token
let best = prev_scores.flatten_all()?.argmax(0)?.to_scalar::<u32>()? as usize;
let (pt_layer, pt_head) = (best / model.cfg().n_heads, best % model.cfg().n_heads);
println!("best previous-token head: L{pt_layer}H{pt_head} (mean attention to the previous token {:.2})", prev_scores.i((pt_layer, pt_head))?.item()?);""", contains=["best previous-token head"])
code(r"""heatmap(&format!("Attention pattern of L{pt_layer}H{pt_head}"), &cache.get(("pattern", pt_layer))?.i((0, pt_head))?, &str_toks, &str_toks)?""", expect=["image/svg+xml"])
md(r"""
## Ablating a head with a hook

`run_with_hooks` runs the model with forward hooks. A hook gets the activation and its name and
returns `Ok(Some(new))` to replace it (or `Ok(None)` to leave it). `Hooks::new().zero_head(layer,
head)` is such a hook on `hook_z`, the per-head output of attention before the output projection
(`[batch, pos, head, d_head]`): it zeroes one head's slice, removing exactly that head's
contribution (*zero ablation*). We compare the mean next-token loss on the prompt before and
after.
""")
code(r"""/// The mean next-token loss on `tokens` with head `head` of layer `layer` zero-ablated.
fn loss_without_head(model: &HookedModel, tokens: &Tensor, layer: usize, head: usize) -> saescope::Result<f32> {
    let logits = model.run_with_hooks(tokens, Hooks::new().zero_head(layer, head))?;
    model.loss(tokens, &logits)?.item()
}""")
code(r"""let clean_loss = model.loss(&tokens, &logits)?.item()?;
let ablated_loss = loss_without_head(&model, &tokens, pt_layer, pt_head)?;
println!("clean loss:           {clean_loss:.4}");
println!("loss without L{pt_layer}H{pt_head}: {ablated_loss:.4} (change {:+.4})", ablated_loss - clean_loss);""", contains=["clean loss"])
md(r"""
Doing this for every head gives a map of which heads this prompt depends on (one forward pass per
head). Red cells are heads whose removal raises the loss, blue ones lower it.
""")
code(r"""let (n_layers, n_heads) = (model.cfg().n_layers, model.cfg().n_heads);
let mut delta = Vec::new();
for layer in 0..n_layers { for head in 0..n_heads { delta.push(loss_without_head(&model, &tokens, layer, head)? - clean_loss); } }
let delta_svg = heatmap("Loss change when zero-ablating each head", &Tensor::from_vec(delta, (n_layers, n_heads), &Device::Cpu)?,
    &(0..n_layers).map(|l| format!("L{l}")).collect::<Vec<_>>(), &(0..n_heads).map(|h| format!("H{h}")).collect::<Vec<_>>())?;""")
code(r"""delta_svg""", expect=["image/svg+xml"])
md(r"""
## Where next

* `cache.decompose_resid(...)` splits the residual stream into each layer's attention and MLP
  outputs; `logit_attrs` on that stack gives direct logit attribution per component.
* `model.run(prompt).hooks(h).cache()` combines hooks and a cache in one pass (the cache sees the patched
  activations), the basis of activation patching.
* Figures are plain SVG: `viz::line_chart(...)?.save("out/lens.svg")?` writes one to disk.
""")

_nb.write(sys.argv[1])
