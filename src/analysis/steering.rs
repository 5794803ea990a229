//! Steering generation with an SAE latent (ARENA's `steering_hook` and
//! `generate_with_steering`): add `coeff · W_dec[latent]` to the SAE's hook at every position
//! of every forward pass, and compare normal and steered samples side by side.
use crate::error::{Error, Result};
use crate::hooks::Hooks;
use crate::model::{GenerateOptions, Generation, HookedModel, Prompt};
use crate::sae::Sae;
use crate::viz::Html;
use candle_core::{IndexOp, Tensor};
use std::fmt;

/// Error unless `latent_idx < d_sae`.
pub(crate) fn check_latent(sae: &Sae, latent_idx: usize) -> Result<()> {
    if latent_idx >= sae.d_sae() {
        return Err(Error::Invalid(format!(
            "latent index {latent_idx} is out of range: the SAE at `{}` has d_sae = {}",
            sae.hook_name_out(),
            sae.d_sae()
        )));
    }
    Ok(())
}

/// Decoder row `W_dec[latent_idx]` as f32, `[d_out]`.
pub(crate) fn decoder_row(sae: &Sae, latent_idx: usize) -> Result<Tensor> {
    check_latent(sae, latent_idx)?;
    Ok(sae
        .w_dec()
        .i(latent_idx)?
        .to_dtype(candle_core::DType::F32)?)
}

/// `coeff · W_dec[latent_idx]` (`[d_out]`, f32): what ARENA's `steering_hook` adds.
pub fn steering_vector(sae: &Sae, latent_idx: usize, coeff: f64) -> Result<Tensor> {
    Ok((decoder_row(sae, latent_idx)? * coeff)?)
}

/// `v` shaped to broadcast over an activation `[batch, pos, ...]` whose trailing dims hold
/// `v.len()` numbers (e.g. `hook_z`'s `[n_heads, d_head]` for an SAE on `hook_z`).
pub(crate) fn fit_to(v: &Tensor, acts: &Tensor, hook: &str) -> Result<Tensor> {
    let dims = acts.dims();
    let trailing: usize = dims.iter().skip(2).product();
    if dims.len() < 3 || trailing != v.elem_count() {
        return Err(Error::Invalid(format!(
            "a vector of {} numbers does not fit hook `{hook}`, whose activations have shape {dims:?}",
            v.elem_count()
        )));
    }
    let mut shape = vec![1, 1];
    shape.extend_from_slice(&dims[2..]);
    Ok(v.reshape(shape)?
        .to_dtype(acts.dtype())?
        .to_device(acts.device())?)
}

/// Add ARENA's `steering_hook` to `hooks`: at the SAE's hook (`hook_name_out`, which is
/// `sae.cfg` `hook_name` for SAEs), `acts + coeff · W_dec[latent_idx]` at every position.
pub fn add_steering_hook(
    hooks: &mut Hooks,
    sae: &Sae,
    latent_idx: usize,
    coeff: f64,
) -> Result<()> {
    let v = steering_vector(sae, latent_idx, coeff)?;
    let hook = sae.hook_name_out().to_string();
    hooks.add(hook.as_str(), move |acts: &Tensor, name: &str| {
        Ok(Some(acts.broadcast_add(&fit_to(&v, acts, name)?)?))
    });
    Ok(())
}

/// ARENA's `generate_with_steering`: [`HookedModel::generate`] with the steering hook of
/// `latent_idx` (coefficient `steering_coefficient`) on every forward pass.
pub fn generate_with_steering(
    model: &HookedModel,
    sae: &Sae,
    prompt: impl Into<Prompt>,
    latent_idx: usize,
    steering_coefficient: f64,
    opts: &GenerateOptions,
) -> Result<Generation> {
    let mut hooks = Hooks::new();
    add_steering_hook(&mut hooks, sae, latent_idx, steering_coefficient)?;
    model.run(prompt).hooks(hooks).generate(opts)
}

/// Normal and steered samples of one prompt, side by side (ARENA's table of normal vs steered
/// generations). `Display` prints the text table; [`SteeringComparison::to_html`] renders it
/// for notebooks.
#[derive(Clone, Debug)]
pub struct SteeringComparison {
    /// The prompt generated from.
    pub prompt: String,
    /// The hook steered (the SAE's `hook_name_out`).
    pub hook: String,
    /// The latent whose decoder direction `W_dec[latent_idx]` was added.
    pub latent_idx: usize,
    /// The steering coefficient multiplying that direction.
    pub coefficient: f64,
    /// The generated continuations (prompt excluded, special tokens skipped) without steering.
    pub normal: Vec<String>,
    /// The continuations with steering; sample `i` used the same seed as `normal[i]`.
    pub steered: Vec<String>,
}

/// What [`compare_steering`] steers with, and how it samples.
#[derive(Clone, Debug)]
pub struct SteerOptions {
    /// The latent whose decoder direction is added.
    pub latent: usize,
    /// Its coefficient (ARENA's `steering_coefficient`; default 1).
    pub coefficient: f64,
    /// Normal and steered samples to draw (default 4).
    pub n_samples: usize,
    /// Generation settings (TL's defaults).
    pub generate: GenerateOptions,
}

impl Default for SteerOptions {
    fn default() -> Self {
        SteerOptions {
            latent: 0,
            coefficient: 1.0,
            n_samples: 4,
            generate: GenerateOptions::default(),
        }
    }
}

/// `n_samples` normal and `n_samples` steered generations of `prompt`. Sample `i` uses the
/// seed `generate.seed.unwrap_or(0) + i` for both, so a difference comes from the steering.
///
/// ```no_run
/// # use saescope::prelude::*;
/// # use saescope::analysis::{compare_steering, SteerOptions};
/// # let (model, sae) = (HookedModel::from_pretrained("smollm2")?, Sae::shipped()?);
/// let table = compare_steering(&model, &sae, "The weather today is",
///     &SteerOptions { latent: 3433, coefficient: 120.0, ..Default::default() })?;
/// # Ok::<(), saescope::Error>(())
/// ```
pub fn compare_steering(
    model: &HookedModel,
    sae: &Sae,
    prompt: &str,
    steer: &SteerOptions,
) -> Result<SteeringComparison> {
    let (latent_idx, steering_coefficient, n_samples, opts) = (
        steer.latent,
        steer.coefficient,
        steer.n_samples,
        &steer.generate,
    );
    check_latent(sae, latent_idx)?;
    let tok = model.tokenizer()?;
    let continuation = |g: &Generation| -> Result<String> {
        let ids = g.new_ids()?.swap_remove(0);
        tok.inner
            .decode(&ids, true)
            .map_err(|e| Error::Tokenizer(format!("cannot decode {} ids: {e}", ids.len())))
    };
    let (mut normal, mut steered) = (Vec::new(), Vec::new());
    let base = opts.seed.unwrap_or(0);
    for i in 0..n_samples {
        let o = GenerateOptions {
            seed: Some(base.wrapping_add(i as u64)),
            ..opts.clone()
        };
        normal.push(continuation(&model.generate(prompt, &o)?)?);
        let g = generate_with_steering(model, sae, prompt, latent_idx, steering_coefficient, &o)?;
        steered.push(continuation(&g)?);
    }
    Ok(SteeringComparison {
        prompt: prompt.to_string(),
        hook: sae.hook_name_out().to_string(),
        latent_idx,
        coefficient: steering_coefficient,
        normal,
        steered,
    })
}

/// Greedy word wrap to lines of at most `width` chars (longer words are split).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for para in text.split('\n') {
        let mut line = String::new();
        for word in para.split(' ') {
            let mut word: Vec<char> = word.chars().collect();
            while word.len() > width {
                if !line.is_empty() {
                    lines.push(std::mem::take(&mut line));
                }
                lines.push(word.drain(..width).collect());
            }
            let word: String = word.into_iter().collect();
            let n = line.chars().count();
            if n > 0 && n + 1 + word.chars().count() > width {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(&word);
        }
        lines.push(line);
    }
    lines
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl SteeringComparison {
    /// The table as text, each column wrapped to `width` characters.
    pub fn to_text(&self, width: usize) -> String {
        let width = width.max(8);
        let mut out = format!(
            "prompt: {:?}\nsteering: latent {} at {} × {}\n",
            self.prompt, self.latent_idx, self.hook, self.coefficient
        );
        let rule = format!("+-{}-+-{}-+\n", "-".repeat(width), "-".repeat(width));
        out.push_str(&rule);
        out.push_str(&format!(
            "| {:<width$} | {:<width$} |\n",
            "normal", "steered"
        ));
        out.push_str(&rule);
        for (a, b) in self.normal.iter().zip(&self.steered) {
            let (a, b) = (wrap(a, width), wrap(b, width));
            for i in 0..a.len().max(b.len()) {
                let cell = |v: &Vec<String>| v.get(i).cloned().unwrap_or_default();
                let (x, y) = (cell(&a), cell(&b));
                let pad = |s: &str| width - s.chars().count().min(width);
                out.push_str(&format!(
                    "| {x}{} | {y}{} |\n",
                    " ".repeat(pad(&x)),
                    " ".repeat(pad(&y))
                ));
            }
            out.push_str(&rule);
        }
        out
    }

    /// The table as HTML (one row per sample; text escaped, line breaks kept).
    pub fn to_html(&self) -> Html {
        let cell = "style=\"border:1px solid #ccc;padding:6px;vertical-align:top;white-space:pre-wrap;max-width:40em\"";
        let mut s = format!(
            "<div><p><b>Prompt:</b> {}<br><b>Steering:</b> latent {} at <code>{}</code> × {}</p>\
             <table style=\"border-collapse:collapse\"><tr><th {cell}>#</th><th {cell}>normal</th>\
             <th {cell}>steered</th></tr>",
            escape(&self.prompt),
            self.latent_idx,
            escape(&self.hook),
            self.coefficient
        );
        for (i, (a, b)) in self.normal.iter().zip(&self.steered).enumerate() {
            s.push_str(&format!(
                "<tr><td {cell}>{i}</td><td {cell}>{}</td><td {cell}>{}</td></tr>",
                escape(a),
                escape(b)
            ));
        }
        s.push_str("</table></div>");
        Html(s)
    }
}

impl fmt::Display for SteeringComparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text(40))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_and_escape() {
        assert_eq!(wrap("aa bb cc", 5), vec!["aa bb", "cc"]);
        assert_eq!(wrap("abcdefgh", 3), vec!["abc", "def", "gh"]);
        assert_eq!(wrap("a\nb", 10), vec!["a", "b"]);
        assert_eq!(escape("<b>&\""), "&lt;b&gt;&amp;&quot;");
        let c = SteeringComparison {
            prompt: "p".into(),
            hook: "h".into(),
            latent_idx: 3,
            coefficient: 2.0,
            normal: vec!["one two three".into()],
            steered: vec!["<x>".into()],
        };
        let t = c.to_text(8);
        assert!(t.contains("| one two  | <x>      |"), "{t}");
        assert!(t.contains("| three    |          |"), "{t}");
        assert!(c.to_html().as_str().contains("&lt;x&gt;"));
    }
}
