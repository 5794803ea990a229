"""Writes notebooks/04-steering.ipynb."""
import sys

import os
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nbgen import Notebook

_nb = Notebook()
md, code = _nb.md, _nb.code

md(r"""
# Steering with SAE latents

An SAE latent's decoder row `W_dec[i]` is a direction in the residual stream. Adding
`coeff · W_dec[i]` at the SAE's hook on every forward pass of generation *steers* the model
(ARENA's `steering_hook` / `generate_with_steering`). saescope's `generate` keeps a KV cache and
runs hooks on every pass, like TransformerLens's `generate` inside `model.hooks(...)`.

We steer with latent **3433** of the shipped SAE (layer 15 of SmolLM2-135M-Instruct). A scan like
notebook 01's (which latent best separates the token ` data` from all others in 32 Ki corpus
tokens) picks it: it fires on every ` data` token of the scan, and half of its firings are on
` data`. Notebook 02 shows its dashboard.

**Hypothesis.** *Latent 3433 is a "data" concept latent, and adding its direction while the model
writes unrelated prose pulls the text toward data: with the same sampling seeds, steered
continuations mention data where unsteered ones do not, and the latent's own activation on the
generated text rises.* Evidence: the latent's activations on a sentence, a side-by-side table of
normal vs steered samples, a coefficient sweep, and the latent re-measured on the generated
tokens. A control: the `raise` latent of notebook 01 does not steer prose the same way.
""")
md("## Setup")
code(r""":dep saescope = { path = ".." }""")
code(r"""use saescope::prelude::*;
let model = HookedModel::from_pretrained("smollm2")?;
let sae = Sae::shipped()?;
let latent: usize = 3433;
let sentence = "The survey collected data from 1000 people, and the data show a clear trend.";
let acts = sae_acts(&model, sentence, &sae)?.i((0, .., latent))?.to_f32_vec()?;
for (s, a) in model.to_str_tokens(sentence)?.iter().zip(acts) { if a > 0.0 { println!("{s:?}: {a:.1}"); } };""", contains=["data"])
md(r"""
## Generation

Greedy decoding and sampling (ARENA's settings: temperature 0.5, frequency penalty 2) on a prose
prompt, with the KV cache:
""")
code(r"""let prompt = "When I got home last night, I";
let greedy = model.generate(prompt, &GenerateOptions::greedy(24))?;
println!("greedy:  {:?}", greedy.text()?);
let opts = GenerateOptions { freq_penalty: 2.0, ..GenerateOptions::sampled(30, 0.5, 0) };
let sampled = model.generate(prompt, &opts)?;
println!("sampled: {:?}", sampled.text()?);""", contains=["greedy"])
md(r"""
## Normal vs steered

`compare_steering` generates `n` samples without and `n` with steering, sample `i` using the same
seed in both, so every difference comes from the steering vector. The residual stream at layer 15
has a norm around 176 and the decoder rows have norm 1, so coefficients of tens to a couple of
hundred are needed (ARENA uses about 1.5–2× a latent's maximum activation; this latent's reaches
≈ 39 in the corpus).
""")
code(r"""let cmp = compare_steering(&model, &sae, prompt, &SteerOptions { latent, coefficient: 120.0, n_samples: 4, generate: opts.clone() })?;
println!("{cmp}");""", contains=["steered"])
code(r"""cmp.to_html()""", expect=["text/html"])
md(r"""
## A coefficient sweep

For each coefficient, 6 samples with the same seeds (coefficient 0 is the unsteered model). Two
measures: how many continuations mention data, and the latent's own mean activation on the
generated tokens when the text is re-encoded by the SAE *without* steering.
""")
code(r"""/// Mean activation of `latent` over the tokens of `text` that follow `prompt`.
fn mean_on_continuation(model: &HookedModel, sae: &Sae, prompt: &str, text: &str, latent: usize) -> saescope::Result<f32> {
    let n = model.to_tokens(prompt)?.dim(1)?;
    sae_acts(model, format!("{prompt}{text}"), sae)?.i((0, n.., latent))?.mean_all()?.item()
}
let coeffs = [0.0, 40.0, 80.0, 120.0, 160.0];
let (mut counts, mut mean_acts) = (Vec::new(), Vec::new());
for coefficient in coeffs {
    let c = compare_steering(&model, &sae, prompt, &SteerOptions { latent, coefficient, n_samples: 6, generate: opts.clone() })?;
    let n = c.steered.iter().filter(|s| s.to_lowercase().contains("data")).count() as f32;
    let m = c.steered.iter().map(|t| mean_on_continuation(&model, &sae, prompt, t, latent)).sum::<saescope::Result<f32>>()? / 6.0;
    println!("coefficient {coefficient:5.0}: {n} of 6 mention data, mean latent activation {m:.2}; e.g. {:?}", c.steered[1].chars().take(90).collect::<String>());
    counts.push(n);
    mean_acts.push(m);
}
println!("from coefficient 80 on, more samples mention data than unsteered: {} ({counts:?})", counts[2..].iter().all(|&n| n > counts[0]));
println!("from coefficient 80 on, the steered text activates the latent more: {}", mean_acts[2..].iter().all(|&m| m > mean_acts[0]));""", contains=["more samples mention data than unsteered: true", "the steered text activates the latent more: true"])
code(r"""line_chart("Steering with latent 3433 (6 samples per coefficient)", &coeffs.map(|c| format!("{c:.0}")), &[("samples mentioning data".into(), counts.clone()), ("mean activation of the latent".into(), mean_acts.clone())], "count / activation")?""", expect=["image/svg+xml"])
md(r"""
## A control: the `raise` latent

Not every latent steers prose. Notebook 01's `raise` latent (1701) is about a syntactic position
in Python code; adding its direction to the same prose prompt with the same coefficient and
seeds:
""")
code(r"""let control = compare_steering(&model, &sae, prompt, &SteerOptions { latent: 1701, coefficient: 120.0, n_samples: 6, generate: opts.clone() })?;
println!("latent 1701 at 120: {} of 6 mention data, {} of 6 raise/handle errors; e.g. {:?}",
    control.steered.iter().filter(|s| s.to_lowercase().contains("data")).count(),
    control.steered.iter().filter(|s| ["raise", "Error", "except"].iter().any(|w| s.contains(w))).count(),
    control.steered[0].chars().take(100).collect::<String>());""", contains=["latent 1701 at 120"])
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

* **Supported:** steering with latent 3433 turns a story about coming home into one about data —
  "I had a crazy experiment where I collected data on 1000 people". With the same seeds, no
  unsteered sample mentions data; from coefficient 80 on, most steered samples do (6 of 6 at 160),
  and the latent's own activation on the generated tokens, measured without steering, rises from
  0 to between 0.6 and 1.8 on average (it fires on the new ` data` tokens).
* **Specific to the latent:** the `raise` latent (1701), added with the same coefficient and
  seeds, changes the text but mentions neither data nor exceptions: not every latent is a
  steerable concept; a latent that tracks a syntactic position in code has nothing to say about
  prose.
* **Patch scoping agrees:** the model, asked for the meaning of a placeholder that carries the
  latent's direction, answers with a definition about using data.
* **Limits:** the count is not monotonic in the coefficient with 6 samples (4 at 80, 3 at 120),
  and at 160 fluency starts to break ("200+ + 3"), as ARENA notes for large coefficients; a
  coefficient of about 2–3× the latent's maximum activation is the useful range here.
""")

_nb.write(sys.argv[1])
