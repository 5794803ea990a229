//! Interventions on transcoder latents (circuit-tracer's `feature_intervention`): set a
//! latent's activation at a position (or scale it), add the change times its decoder row to
//! that layer's MLP output, and re-run the model — freely, with attention patterns and norm
//! scales frozen to the clean run's, or with every MLP output frozen too (direct effects only).
use crate::error::{Error, Result};
use crate::hooks::{HookName, Hooks};
use crate::model::{HookedModel, Prompt};
use crate::sae::{Sae, TranscoderSet};
use candle_core::{DType, IndexOp, Tensor};
use std::cell::RefCell;

/// One intervention: latent `feature` of layer `layer`'s transcoder at position `pos`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Intervention {
    /// The transcoder's layer.
    pub layer: usize,
    /// The token position.
    pub pos: usize,
    /// The latent.
    pub feature: usize,
    /// What to do to its activation.
    pub change: Change,
}

/// How an intervention changes a latent's activation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Change {
    /// Set it to this value (0 ablates it).
    Set(f32),
    /// Multiply it by this factor.
    Scale(f32),
}

/// What stays fixed at its clean value while the intervened model runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Freeze {
    /// Nothing: the model runs freely with the change added.
    #[default]
    Nothing,
    /// Attention patterns and norm scales (the local replacement model).
    Attention,
    /// Attention patterns, norm scales and every MLP output: only direct effects.
    AttentionAndMlps,
    /// The local replacement model the graph describes: attention patterns and norm scales
    /// frozen, every MLP replaced by its transcoder (recomputed from its current input, the
    /// interventions applied to its latents) plus the clean run's error, so that without
    /// interventions the run is the clean one. What [`super::AttributionGraph::predict`]
    /// predicts, up to latents crossing their thresholds.
    Replacement,
}

/// Run `prompt` with `interventions` applied (see the module docs) and return the logits
/// `[1, pos, d_vocab]`.
pub fn intervene(
    model: &HookedModel,
    prompt: impl Into<Prompt>,
    transcoders: &TranscoderSet,
    interventions: &[Intervention],
    freeze: Freeze,
) -> Result<Tensor> {
    transcoders.check_fits(model)?;
    let tokens = model.run(prompt).tokens()?;
    let n_pos = tokens.dim(1)?;
    for iv in interventions {
        let tc = transcoders.transcoders.get(iv.layer).ok_or_else(|| {
            Error::Invalid(format!(
                "intervention on layer {}: the model has {}",
                iv.layer,
                transcoders.len()
            ))
        })?;
        if iv.pos >= n_pos || iv.feature >= tc.d_sae() {
            return Err(Error::Invalid(format!(
                "intervention at position {} on latent {}: the prompt has {n_pos} positions and \
                 the transcoder {} latents",
                iv.pos,
                iv.feature,
                tc.d_sae()
            )));
        }
    }
    let frozen_names = |n: &str| match freeze {
        Freeze::Nothing => false,
        Freeze::Attention => n.ends_with(".hook_scale") || n.ends_with("attn.hook_pattern"),
        Freeze::Replacement => {
            n.ends_with(".hook_scale")
                || n.ends_with("attn.hook_pattern")
                || n.ends_with(".ln2.hook_normalized")
                || (n.starts_with("blocks.") && n.ends_with(".hook_mlp_out"))
        }
        Freeze::AttentionAndMlps => {
            n.ends_with(".hook_scale")
                || n.ends_with("attn.hook_pattern")
                || (n.starts_with("blocks.") && n.ends_with(".hook_mlp_out"))
        }
    };
    let clean = if freeze == Freeze::Nothing {
        None
    } else {
        Some(
            model
                .run(&tokens)
                .names(crate::hooks::NamesFilter::func(frozen_names))
                .cache()?
                .1,
        )
    };
    let inputs: RefCell<Vec<Option<Tensor>>> = RefCell::new(vec![None; transcoders.len()]);
    let mut hooks = Hooks::new();
    if let Some(cache) = &clean {
        hooks.add_filter(
            |n: &str| {
                frozen_names(n)
                    && !n.ends_with(".hook_mlp_out")
                    && !n.ends_with(".ln2.hook_normalized")
            },
            move |_: &Tensor, n: &str| Ok(Some(cache.get(n)?)),
        );
    }
    hooks.add_filter(
        |n: &str| n.ends_with(".ln2.hook_normalized"),
        |x: &Tensor, n: &str| {
            let l = HookName::parse(n).layer.unwrap_or(0);
            inputs.borrow_mut()[l] = Some(x.clone());
            Ok(None)
        },
    );
    let clean_ref = clean.as_ref();
    hooks.add_filter(
        |n: &str| n.starts_with("blocks.") && n.ends_with(".hook_mlp_out"),
        |x: &Tensor, n: &str| {
            let l = HookName::parse(n).layer.unwrap_or(0);
            let mine: Vec<&Intervention> =
                interventions.iter().filter(|iv| iv.layer == l).collect();
            let x_in = || {
                inputs.borrow()[l].clone().ok_or_else(|| {
                    Error::Invalid(format!("internal: layer {l}'s MLP input was not seen"))
                })
            };
            let tc = transcoders.layer(l);
            match (freeze, clean_ref) {
                (Freeze::Replacement, Some(c)) => {
                    let x_clean = c.get(format!("blocks.{l}.ln2.hook_normalized"))?;
                    let now = x_in()?;
                    let (a_clean, a_now) = (latents(tc, &x_clean)?, latents(tc, &now)?);
                    let a_new = changed(&a_now, &mine)?;
                    let mut out =
                        (c.get(n)?.to_dtype(DType::F32)? + write(tc, &(a_new - a_clean)?)?)?;
                    if let (Some(s_now), Some(s_clean)) =
                        (tc.skip_connection(&now)?, tc.skip_connection(&x_clean)?)
                    {
                        out = (out + (s_now - s_clean)?.to_dtype(DType::F32)?)?;
                    }
                    Ok(Some(out.to_dtype(x.dtype())?))
                }
                _ if mine.is_empty() => Ok(match (freeze, clean_ref) {
                    (Freeze::AttentionAndMlps, Some(c)) => Some(c.get(n)?),
                    _ => None,
                }),
                _ => {
                    let base = match (freeze, clean_ref) {
                        (Freeze::AttentionAndMlps, Some(c)) => c.get(n)?,
                        _ => x.clone(),
                    };
                    let acts = latents(tc, &x_in()?)?;
                    let delta = write(tc, &(changed(&acts, &mine)? - acts)?)?;
                    Ok(Some((base + delta.to_dtype(x.dtype())?)?))
                }
            }
        },
    );
    let logits = model.run(&tokens).hooks(hooks).logits()?;
    let finite = logits
        .to_dtype(DType::F32)?
        .abs()?
        .max_all()?
        .to_scalar::<f32>()?
        .is_finite();
    if !finite {
        return Err(Error::Invalid(format!(
            "the intervened run overflowed (non-finite logits) with {freeze:?}: the norm \
             scales frozen at their clean values do not absorb the change; use smaller \
             changes, fewer latents, or Freeze::Nothing"
        )));
    }
    Ok(logits)
}

/// A transcoder's latents `[1, pos, d_sae]` (f32) on its input `[1, pos, d_in]`.
fn latents(tc: &Sae, x: &Tensor) -> Result<Tensor> {
    Ok(tc.encode(x)?.to_dtype(DType::F32)?)
}

/// `f @ W_dec` for latent changes `f` `[1, pos, d_sae]` (no bias: a difference of decodes).
fn write(tc: &Sae, f: &Tensor) -> Result<Tensor> {
    let w = tc.w_dec().to_dtype(DType::F32)?;
    Ok(f.i(0)?.matmul(&w)?.unsqueeze(0)?)
}

/// `acts` `[1, pos, d_sae]` with the interventions `mine` applied.
fn changed(acts: &Tensor, mine: &[&Intervention]) -> Result<Tensor> {
    if mine.is_empty() {
        return Ok(acts.clone());
    }
    let (_, n_pos, d_sae) = acts.dims3()?;
    let mut v = acts.flatten_all()?.to_vec1::<f32>()?;
    for iv in mine {
        let k = iv.pos * d_sae + iv.feature;
        debug_assert!(iv.pos < n_pos);
        v[k] = match iv.change {
            Change::Set(t) => t,
            Change::Scale(s) => v[k] * s,
        };
    }
    Ok(Tensor::from_vec(v, acts.shape(), acts.device())?)
}
