//! Interventions on transcoder latents (circuit-tracer's `feature_intervention`): set a
//! latent's activation at a position (or scale it), add the change times its decoder row to
//! that layer's MLP output, and re-run the model — freely, with attention patterns and norm
//! scales frozen to the clean run's, or with every MLP output frozen too (direct effects only).
use crate::error::{Error, Result};
use crate::hooks::{HookName, Hooks};
use crate::model::{HookedModel, Prompt};
use crate::sae::TranscoderSet;
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
            |n: &str| frozen_names(n) && !n.ends_with(".hook_mlp_out"),
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
            let base = match (freeze, clean_ref) {
                (Freeze::AttentionAndMlps, Some(c)) => c.get(n)?,
                _ => x.clone(),
            };
            let mine: Vec<&Intervention> =
                interventions.iter().filter(|iv| iv.layer == l).collect();
            if mine.is_empty() {
                return Ok((freeze == Freeze::AttentionAndMlps).then_some(base));
            }
            let tc = transcoders.layer(l);
            let x_in = inputs.borrow()[l].clone().ok_or_else(|| {
                Error::Invalid(format!("internal: layer {l}'s MLP input was not seen"))
            })?;
            let acts = tc.encode(&x_in.i(0)?)?.to_dtype(DType::F32)?;
            let mut delta = vec![0f32; x.elem_count()];
            let d = x.dim(2)?;
            for iv in mine {
                let now = acts.i((iv.pos, iv.feature))?.to_scalar::<f32>()?;
                let target = match iv.change {
                    Change::Set(v) => v,
                    Change::Scale(s) => now * s,
                };
                let row = tc
                    .w_dec()
                    .i(iv.feature)?
                    .to_dtype(DType::F32)?
                    .to_vec1::<f32>()?;
                for (k, w) in row.iter().enumerate() {
                    delta[iv.pos * d + k] += (target - now) * w;
                }
            }
            let delta = Tensor::from_vec(delta, x.shape(), x.device())?.to_dtype(x.dtype())?;
            Ok(Some((base + delta)?))
        },
    );
    model.run(&tokens).hooks(hooks).logits()
}
