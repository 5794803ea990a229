"""Writes notebooks/03-finding-latents.ipynb."""
import sys

import os
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nbgen import Notebook

_nb = Notebook()
md, code = _nb.md, _nb.code

md(r"""
# Finding latents: direct logit attribution, ablation, attribution patching

Which SAE latents does the model use to answer *"The capital of France is" → " Paris"*? We follow
ARENA's §1.5 with the shipped SAE (TopK, 4608 latents on SmolLM2's `blocks.15.hook_resid_post`)
and the metric `logit(" Paris") − logit(" London")` at the last position:

1. **direct logit attribution** (DLA): each latent's direct contribution to the logit difference;
2. **ablation**: zero one latent at one position (with the SAE's error term, so nothing else
   changes) and measure the change in the metric;
3. **attribution patching**: `gradient × activation` at `hook_sae_acts_post`, one backward pass
   through candle's autograd, as a cheap estimate of every ablation at once;
4. **geometry**: the decoder neighbours of the latent we find.

**Hypothesis.** *The SAE has a "France" latent at the ` France` token that the model uses to
answer "Paris": it is among the latents whose ablation lowers the Paris − London difference most
(and attribution patching finds it without ablating anything); it fires on France-related tokens in
other contexts (the French Revolution, French food) but not on other countries; and writing it into
"The capital of Germany is" at ` Germany` pushes the answer toward Paris.* We also run a control
that the first tests do not: words that share something with "France" other than its meaning.

A second, methodological hypothesis: *attribution patching ranks the latents as true ablation
does* (Spearman correlation above 0.9 and the same signs), so it can replace one forward pass per
latent by a single backward pass.
""")
md("## Setup")
code(r""":dep saescope = { path = ".." }""")
code(r"""use saescope::prelude::*;
let model = HookedModel::from_pretrained("smollm2")?;
let sae = Sae::shipped()?;
let prompt = "The capital of France is";
let tokens = model.to_tokens(prompt)?;
let metric = Metric::logit_diff(&model, " Paris", " London")?;   // at the last position
println!("tokens: {:?}", model.to_str_tokens(prompt)?);
println!("logit(Paris) − logit(London) = {:.3}", metric.value(&model, &model.run(prompt).logits()?, &tokens)?);""", contains=["logit(Paris)"])
md(r"""
## 1. Direct logit attribution at the last position

`latent_dla` gives `f_i · (d_i · (W_U[:, Paris] − W_U[:, London]))` for every latent, divided by the
final norm's scale (TL's `apply_ln_to_stack`). Layer 15 is the middle of a 30-layer model, so the
direct path is expected to be small: most of what a latent does here goes through later layers.
""")
code(r"""let dla = latent_dla(&model, &tokens, &sae, &metric)?;
for (latent, v) in dla.top_k(6, TopBy::Abs)? { println!("latent {latent:5}: DLA {v:+.3}"); };""", contains=["DLA"])
md(r"""
## 2. Ablation and 3. attribution patching at the last position

`compare_attribution_ablation` ablates each of the 48 active latents at the position (batched) and
runs attribution patching; `.plot()` draws ARENA's scatter with the line `y = x`.
""")
code(r"""let at_last = compare_attribution_ablation(&model, &tokens, &sae, &metric, None)?;
for r in at_last.top_by_ablation(5) { println!("{r}"); }
println!("Spearman(attribution, ablation) over all {} active latents: {:.3}", at_last.latents.len(), AttributionVsAblation::spearman(&at_last.latents)?);""", contains=["Spearman"])
code(r"""at_last.plot("Last position: attribution patching vs ablation", 5)?""", expect=["image/svg+xml"])
md(r"""
Are these latents about France? We compare their activations at the last token of the same
template with other countries:
""")
code(r"""let top_last: Vec<usize> = at_last.top_by_ablation(5).iter().map(|r| r.latent).collect();
for c in ["France", "Germany", "Italy", "Japan"] {
    let p = format!("The capital of {c} is");
    let a = sae_acts(&model, &p, &sae)?.last_pos()?.i(0)?.to_f32_vec()?;
    println!("{p:28} {}", top_last.iter().map(|&l| format!("{l}: {:5.1}", a[l])).collect::<Vec<_>>().join("  "));
};""", contains=["The capital of Japan is"])
md(r"""
They fire the same for every country: at the last position the largest effects come from
latents of the *template* ("a capital city's name comes next"), not from France. The country has
to be read from its own token, so we repeat the analysis at ` France` (as ARENA ablates at S2 in
IOI). Effects there reach the last position through attention in layers 16–29.
""")
code(r"""let france_pos = model.get_token_position(" France", prompt, false)?;
let at_france = compare_attribution_ablation(&model, &tokens, &sae, &metric, Some(france_pos))?;
let top_france = at_france.top_by_ablation(8);
for r in &top_france { println!("{r}"); }
println!("Spearman over all {} active latents: {:.3}; signs agree for |ablation| ≥ 0.02: {:.0}%", at_france.latents.len(),
    AttributionVsAblation::spearman(&at_france.latents)?, 100.0 * AttributionVsAblation::sign_agreement(&at_france.latents, 0.02));""", contains=["Spearman over all"])
code(r"""at_france.plot("At ' France': attribution patching vs ablation", 6)?""", expect=["image/svg+xml"])
md(r"""
### Which of them are about France?

For each of those 8 latents, its strongest activation (over all tokens but BOS) in prompts about
France and about other countries. A France latent should fire in the first group and stay silent
in the second.
""")
code(r"""/// The largest activation of each latent in `ls` over the tokens of `text` (BOS excluded).
fn max_acts(model: &HookedModel, sae: &Sae, text: &str, ls: &[usize]) -> saescope::Result<Vec<f32>> {
    let m = sae_acts(model, text, sae)?.i((0, 1..))?.max(0)?.to_f32_vec()?;
    Ok(ls.iter().map(|&l| m[l]).collect())
}
let cand: Vec<usize> = top_france.iter().map(|r| r.latent).collect();
println!("{:34}{cand:6?}", "");
let (mut fr_min, mut other_max) = (vec![f32::INFINITY; 8], vec![0f32; 8]);
for (i, text) in ["The capital of France is", "In France, people speak", "The French Revolution", "I love French food, especially",
                  "The capital of Germany is", "The capital of Italy is", "The capital of Japan is", "In Spain, people speak"].iter().enumerate() {
    let m = max_acts(&model, &sae, text, &cand)?;
    println!("{text:34}{m:6.1?}");
    for j in 0..8 { if i < 4 { fr_min[j] = fr_min[j].min(m[j]) } else { other_max[j] = other_max[j].max(m[j]) } }
}
let specific: Vec<usize> = (0..8).filter(|&j| fr_min[j] > 0.0 && other_max[j] == 0.0).map(|j| cand[j]).collect();
println!("France-specific latents (fire on every France text, on no other): {specific:?}");
let candidate = specific[0];
let rank = cand.iter().position(|&l| l == candidate).unwrap();
println!("chosen: latent {candidate}, ablation effect at ' France' {:+.3} (rank {} of {} by |ablation|)", top_france[rank].ablation, rank + 1, at_france.latents.len());""", contains=["France-specific latents", "chosen: latent"])
md(r"""
### A control: other words that begin with "F"

"France" and "French" both start with *F*, and none of the other countries does. The latent's
activation on F-words that have nothing to do with France, and on two more countries without F:
""")
code(r"""let mut f_words_firing = 0;
for text in ["The capital of Finland is", "The capital of Fiji is", "See you on Friday", "I opened the file", "The Ford car", "The capital of Portugal is", "The capital of Belgium is"] {
    let a = sae_acts(&model, text, &sae)?.i((0, .., candidate))?.to_f32_vec()?;
    let fired: Vec<(String, f32)> = model.to_str_tokens(text)?.into_iter().zip(a).skip(1).filter(|(_, v)| *v > 0.0).collect();
    if fired.iter().any(|(s, _)| s.trim_start().to_lowercase().starts_with('f')) { f_words_firing += 1; }
    println!("{text:28} fires on: {fired:.1?}");
}
println!("F-words it fires on that are not about France: {f_words_firing} of 5");""", contains=["F-words it fires on"])
md(r"""
### An intervention: write the latent into another country

Whatever the latent means, is the model's answer sensitive to it? Take "The capital of Germany is"
and set the latent at ` Germany` to a value (its activation at ` France` is about 17), with the
error term on so nothing else changes; then read `logit(" Paris") − logit(" Berlin")` at the last
position, and the same for the first token of Helsinki, capital of another F-country. Then Italy /
Rome.
""")
code(r"""let values = [0.0, 17.0, 34.0, 50.0, 80.0];
let mut all_rise = true;
for (country, capital) in [("Germany", " Berlin"), ("Italy", " Rome")] {
    let p = format!("The capital of {country} is");
    let pos = model.get_token_position(&format!(" {country}"), &p, false)?;
    let (paris, own) = (model.to_single_token(" Paris")? as usize, model.to_single_token(capital)? as usize);
    let hel = model.to_tokens(" Helsinki")?.i((0, 1))?.to_scalar::<u32>()? as usize;   // its first token, after BOS
    let mut diffs = Vec::new();
    for v in values {
        let l = model.run(&p).sae(&sae).error_term().hooks(Hooks::new().set_latents(&sae, pos, &[candidate], v)).logits()?.last_pos()?.i(0)?.to_f32_vec()?;
        diffs.push((l[paris] - l[own], l[hel] - l[own]));
    }
    println!("{p}: (logit(Paris), logit({:?})) − logit({}) for value {values:?}: {diffs:.2?}", model.to_string(&[hel as u32])?, capital.trim());
    all_rise &= diffs.windows(2).all(|w| w[1].0 > w[0].0);
}
println!("adding the latent moves every answer toward Paris: {all_rise}");""", contains=["moves every answer toward Paris: true"])
md(r"""
## 4. Geometry: the latent's decoder neighbours

The latents whose decoder directions are closest to the candidate's (cosine similarity), and
the similarity matrix among them. If the SAE had split this feature into several latents (feature
splitting), they would show up here with high cosine and would also fire on "The French
Revolution".
""")
code(r"""let (nn, svg) = plot_nearest_neighbours(&format!("Latent {candidate} and its nearest decoder neighbours"), &sae, candidate, &sae, 6)?;
let nn_ids: Vec<usize> = nn.iter().map(|p| p.0).collect();
for ((l, cos), a) in nn.iter().zip(max_acts(&model, &sae, "The French Revolution", &nn_ids)?) { println!("latent {l:5}: cosine {cos:.3}, max activation on \"The French Revolution\" {a:.1}"); };""", contains=["cosine"])
code(r"""svg""", expect=["image/svg+xml"])
md(r"""
## Conclusion

* **The tools agree on which latents matter.** At the ` France` token, latent 1252 is the
  second-largest contributor to `logit(Paris) − logit(London)`: ablating it lowers the difference
  by 0.46 (of 5.21). Attribution patching, from one backward pass, ranks it the same way
  (attribution +0.33; Spearman 0.996 with the true ablations over all 48 active latents, every
  sign right). At the last position the largest effects come from template latents that fire the
  same for every country, and direct logit attribution is small everywhere (|DLA| ≤ 0.12): at
  layer 15 of 30 the latents act through later layers, so ablation and attribution patching, not
  DLA, are the tools that find them.
* **Refuted: it is not a France latent.** It passes the first test — it fires on every France
  prompt and on none of Germany, Italy, Japan, Spain — but the spelling control shows what it
  really tracks: it fires just as strongly on Finland, Fiji, Friday, file and Ford, and not on
  Portugal or Belgium. It is a "token starting with F" latent (notebook 02's dashboard of it shows
  the same in the corpus: `F`, `f`, `file`, `FILE`). Comparing France only with other countries
  confounded meaning with spelling.
* **But the answer is sensitive to it.** Writing it into "The capital of Germany is" at
  ` Germany` moves the answer toward Paris step by step (`Paris − Berlin` from −6.6 to −4.6 at
  4.7× its natural activation; Italy / Rome alike) — and toward Helsinki almost as much, as an
  "F-country" signal would. Berlin stays on top: the country's identity is carried by many other
  latents and by the error term. The model seems to use the spelling feature as one cue among
  many for "which capital".
* **Geometry.** The latent's nearest decoder neighbours have cosine ≤ 0.28 and none fires on "The
  French Revolution": the feature has not split into several latents in this 4608-latent SAE.
""")

_nb.write(sys.argv[1])
