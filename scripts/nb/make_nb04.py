"""DRAFT (not yet in notebooks/): writes notebooks/04-steering.ipynb. Steering with latent 1701 (the `raise` latent) did not change the generated text measurably at coefficients up to 80; pick a latent that steers before adding it."""
import json, sys

import os
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nbgen import Notebook

_nb = Notebook()
md, code = _nb.md, _nb.code

md(r"""
# Steering with SAE latents

An SAE latent's decoder row `W_dec[i]` is a direction in the residual stream. Adding
`coeff · W_dec[i]` at the SAE's hook on every forward pass of generation *steers* the model
(ARENA's `generate_with_steering`). saescope's `generate` keeps a KV cache and runs hooks on every
pass, like TransformerLens's `generate` inside `model.hooks(...)`.

We steer with latent **1701** of the shipped SAE, the `raise` latent found in notebook 01 (its top
corpus activations are `raise` in Python code and docs).

**Hypothesis.** *Adding the `raise` latent's direction while the model writes ordinary prose pushes
the text toward errors and exceptions: more steered continuations mention raising / errors /
exceptions than unsteered ones with the same seeds, and the latent's own activation on the
generated text rises.* Evidence: a side-by-side table, keyword counts over a coefficient sweep, and
the latent's activation re-measured on the generated tokens.
""")
md("## Setup")
code(r""":dep saescope = { path = ".." }""")
code(r"""use saescope::analysis::{compare_steering, generate_patch_scoping_explanation, generate_with_steering, PatchScopingOptions};
use saescope::model::GenerateOptions;
use saescope::sae::splice::SaeRunOptions;
use saescope::{HookedModel, IndexOp, NamesFilter, Sae, Tensor};""")
code(r"""let model = HookedModel::from_pretrained("smollm2")?;
let sae = Sae::shipped()?;
let latent: usize = 1701;
let acts_name = format!("{}.hook_sae_acts_post", sae.hook_name());
// Sanity check: the latent fires on ` raise`.
let toks = model.to_tokens("    if n < 0:\n        raise ValueError(n)")?;
let (_, cache) = model.run_with_cache_with_saes(&toks, &[&sae], &SaeRunOptions::default(), NamesFilter::names([acts_name.as_str()]), Some(16))?;
let col: Vec<f32> = cache.get(acts_name.as_str())?.i((0, .., latent))?.to_vec1()?;
let strs = model.to_str_tokens("    if n < 0:\n        raise ValueError(n)")?;
for (s, a) in strs.iter().zip(&col) { if *a > 0.0 { println!("{s:?}: {a:.1}"); } }""", contains=["raise"])
md(r"""
## Generation

Greedy decoding and sampling (ARENA's settings: temperature 0.5, frequency penalty 2) on a prose
prompt, with the KV cache:
""")
code(r"""let prompt = "When I got home last night, I";
let greedy = model.generate(prompt, &GenerateOptions::greedy(24))?;
println!("greedy:  {:?}", greedy.text()?);
let opts = GenerateOptions { freq_penalty: 2.0, ..GenerateOptions::sampled(32, 0.5, 0) };
let sampled = model.generate(prompt, &opts)?;
println!("sampled: {:?}", sampled.text()?);""", contains=["greedy"])
md(r"""
## Normal vs steered

`compare_steering` generates `n` samples without and `n` with steering, sample `i` using the same
seed in both, so every difference comes from the steering vector. The residual stream at layer 15
has a norm around 176 and the decoder rows have norm 1, so coefficients of tens to a few hundred
are needed (ARENA uses about 1.5–2× the latent's maximum activation; this latent's reaches ≈ 31 in
the corpus scan of notebook 01).
""")
code(r"""let cmp = compare_steering(&model, &sae, prompt, latent, 80.0, 4, &opts)?;
println!("{cmp}");""", contains=["steered"])
code(r"""cmp.to_html()""", expect=["text/html"])
md(r"""
## A coefficient sweep

For each coefficient, 6 samples of a Python function body; we count the continuations that raise or
handle an exception (`raise`, `except`, `Error`, `Exception`).
""")
code(r"""/// Does the code raise or handle an exception?
fn mentions_errors(s: &str) -> bool {
    ["raise", "except", "Error", "Exception"].iter().any(|w| s.contains(w))
}
let code_prompt = "def area(width, height):\n    \"\"\"Return the area of a rectangle.\"\"\"\n   ";
let mut counts: Vec<(f64, usize)> = Vec::new();
for coeff in [0.0, 20.0, 40.0, 80.0] {
    let c = compare_steering(&model, &sae, code_prompt, latent, coeff, 6, &opts)?;
    let n = c.steered.iter().filter(|s| mentions_errors(s)).count();
    println!("coefficient {coeff:5.0}: {n} of 6 continuations raise/handle exceptions; e.g. {:?}", c.steered[0].chars().take(90).collect::<String>());
    counts.push((coeff, n));
}
let (baseline, best) = (counts[0].1, counts.iter().map(|c| c.1).max().unwrap());
println!("steering raises the count: {} (unsteered {baseline}, best steered {best})", best > baseline);""", contains=["steering raises the count"])
md(r"""
## Does the latent itself light up?

Re-encode the generated code with the SAE (no steering) and compare the latent's mean activation
on the new tokens, steered (coefficient 40) vs unsteered, same seeds.
""")
code(r"""let pair = compare_steering(&model, &sae, code_prompt, latent, 40.0, 4, &opts)?;
let prompt_len = model.to_tokens(code_prompt)?.dim(1)?;
let mut normal_acts: Vec<f32> = Vec::new();
let mut steered_acts: Vec<f32> = Vec::new();
for (i, text) in pair.normal.iter().chain(pair.steered.iter()).enumerate() {
    let toks = model.to_tokens(&format!("{code_prompt}{text}"))?;
    let (_, c) = model.run_with_cache_with_saes(&toks, &[&sae], &SaeRunOptions::default(), NamesFilter::names([acts_name.as_str()]), Some(16))?;
    let col: Vec<f32> = c.get(acts_name.as_str())?.i((0, .., latent))?.to_vec1()?;
    let tail = &col[prompt_len.min(col.len())..];
    let m = tail.iter().sum::<f32>() / tail.len().max(1) as f32;
    if i < pair.normal.len() { normal_acts.push(m) } else { steered_acts.push(m) }
}
let (mean_normal, mean_steered) = (normal_acts.iter().sum::<f32>() / 4.0, steered_acts.iter().sum::<f32>() / 4.0);
println!("mean activation of latent {latent} on generated tokens: unsteered {mean_normal:.3}, steered {mean_steered:.3}");
println!("steered text activates the latent more: {}", mean_steered > mean_normal);""", contains=["steered text activates the latent more: true"])
md(r"""
## Patch scoping

Another way to ask what a latent means: write its (normalised, scaled) direction into the
residual stream at a placeholder token early in the model (layer 2), in a prompt that asks for a
definition, and read the model's answer (ARENA's `generate_patch_scoping_explanation`).
""")
code(r"""let ps = PatchScopingOptions { replacement_layer: 2, scale: 40.0, placeholder: "<|endoftext|>".into() };
let question = "<|im_start|>user\nWhat is the meaning of the word \"<|endoftext|>\"?<|im_end|>\n<|im_start|>assistant\nThe meaning of the word \"<|endoftext|>\" is \"";
let g = generate_patch_scoping_explanation(&model, &sae, question, latent, &ps, &GenerateOptions::greedy(20))?;
println!("{:?}", g.text()?.rsplit("is \"").next().unwrap_or_default());""")
md(r"""
## Conclusion

Steering with the `raise` latent moves the model's prose toward errors and failure — see the sweep
(the count of continuations mentioning errors rises over the unsteered baseline) and the table — and
the steered text activates the latent itself more strongly when re-encoded. Very large coefficients
break fluency (the last sweep row), as ARENA notes. Patch scoping is a weaker probe at this layer:
its answer is shown for comparison, not as evidence.
""")

_nb.write(sys.argv[1])
