//! The course's first cell as a library call: the latents of an SAE most active at the last
//! token of a prompt, each with the tokens its decoder direction boosts most (sae_vis's logit
//! table, `W_dec[i] · W_U`). `saescope run` prints this for the shipped SAE.
use super::dashboard::{feature_resid_dirs, latent_logits, TokenScore};
use crate::error::Result;
use crate::model::{HookedModel, Prompt};
use crate::sae::{Sae, SaeHook};
use crate::tensor_ext::TensorExt;
use candle_core::IndexOp;

/// One latent of [`top_latents`].
#[derive(Clone, Debug)]
pub struct LatentSummary {
    /// The latent's index.
    pub latent: usize,
    /// Its activation at the prompt's last token.
    pub activation: f32,
    /// The tokens whose logits its decoder direction raises most, largest first.
    pub top_tokens: Vec<TokenScore>,
}

/// The `k` latents of `sae` most active at the last token of `prompt` (its first row), each
/// with its `n_tokens` most boosted tokens.
///
/// ```no_run
/// # use saescope::prelude::*;
/// # let model = HookedModel::from_pretrained("smollm2")?;
/// # let sae = Sae::shipped()?;
/// for l in saescope::analysis::top_latents(&model, &sae, "The Golden Gate Bridge", 5, 5)? {
///     println!("{:5} {:6.1} {:?}", l.latent, l.activation, l.top_tokens.iter().map(|t| &t.token).collect::<Vec<_>>());
/// }
/// # Ok::<(), saescope::Error>(())
/// ```
pub fn top_latents(
    model: &HookedModel,
    sae: &Sae,
    prompt: impl Into<Prompt>,
    k: usize,
    n_tokens: usize,
) -> Result<Vec<LatentSummary>> {
    let acts_hook = sae.hook_point(SaeHook::ActsPost);
    let (_, cache) = model
        .run(prompt)
        .sae(sae)
        .names(acts_hook.as_str())
        .cache()?;
    let last = cache.get(acts_hook.as_str())?.last_pos()?.i(0)?;
    let top = last.topk(k.min(sae.d_sae()))?;
    let latents: Vec<usize> = top
        .indices
        .to_vec1::<u32>()?
        .into_iter()
        .map(|i| i as usize)
        .collect();
    let acts = top.values.to_f32_vec()?;
    let logits = latent_logits(model, &feature_resid_dirs(model, sae, &latents)?)?;
    let boosted = logits.topk(n_tokens.min(model.cfg().d_vocab))?;
    let (ids, values) = (
        boosted.indices.to_vec2::<u32>()?,
        boosted.values.to_vec2::<f32>()?,
    );
    latents
        .iter()
        .enumerate()
        .map(|(r, &latent)| {
            let top_tokens = ids[r]
                .iter()
                .zip(&values[r])
                .map(|(&id, &value)| {
                    Ok(TokenScore {
                        id,
                        token: model.to_string(&[id])?,
                        value,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(LatentSummary {
                latent,
                activation: acts[r],
                top_tokens,
            })
        })
        .collect()
}
