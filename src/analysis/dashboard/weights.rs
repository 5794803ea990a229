//! Weight-based dashboard parts: the latent's direction in the residual stream (sae_vis's
//! `to_resid_dir`), its logit table and histogram, and the neuron-alignment table.
use super::select::histc;
use super::types::{Histogram, NeuronAlignment, TokenScore};
use crate::error::{Error, Result};
use crate::hooks::HookName;
use crate::model::HookedModel;
use crate::sae::Sae;
use candle_core::{DType, Tensor};

/// Where an SAE's decoder writes, for mapping its directions to the residual stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaeSite {
    /// A `d_model`-wide hook (residual stream, `hook_attn_out`, `hook_mlp_out`, ...): identity.
    Resid,
    /// `blocks.L.mlp.hook_post` / `hook_pre`: through `W_out[L]`.
    MlpNeurons {
        /// The block index `L`.
        layer: usize,
    },
    /// `blocks.L.attn.hook_z`: through `W_O[L]` flattened to `[n_heads · d_head, d_model]`.
    HookZ {
        /// The block index `L`.
        layer: usize,
    },
}

impl SaeSite {
    /// The site of `sae`'s output hook on `model`; an error for hooks whose directions cannot
    /// be mapped to the residual stream.
    pub fn of(model: &HookedModel, sae: &Sae) -> Result<Self> {
        let hook = sae.hook_name_out();
        let c = model.cfg();
        let layer = HookName::parse(hook).layer;
        if hook.ends_with("attn.hook_z") {
            let layer =
                layer.ok_or_else(|| Error::Invalid(format!("no layer in hook `{hook}`")))?;
            if sae.d_out() != c.n_heads * c.d_head {
                return Err(Error::Invalid(format!(
                    "SAE on `{hook}` has d_out {} but the model's n_heads · d_head is {}",
                    sae.d_out(),
                    c.n_heads * c.d_head
                )));
            }
            return Ok(SaeSite::HookZ { layer });
        }
        if hook.ends_with("mlp.hook_post") || hook.ends_with("mlp.hook_pre") {
            let layer =
                layer.ok_or_else(|| Error::Invalid(format!("no layer in hook `{hook}`")))?;
            return Ok(SaeSite::MlpNeurons { layer });
        }
        if sae.d_out() == c.d_model {
            return Ok(SaeSite::Resid);
        }
        Err(Error::Invalid(format!(
            "dashboards need an SAE whose output is d_model-wide (residual stream, attn_out, \
             mlp_out), on mlp.hook_post / hook_pre, or on attn.hook_z; `{hook}` has d_out {} \
             (d_model = {})",
            sae.d_out(),
            c.d_model
        )))
    }
}

/// sae_vis's `feature_resid_dir`: `W_dec[latents]` mapped to the residual stream, `[k, d_model]`.
pub fn feature_resid_dirs(model: &HookedModel, sae: &Sae, latents: &[usize]) -> Result<Tensor> {
    check_latents(sae, latents)?;
    let idx = Tensor::from_vec(
        latents.iter().map(|&i| i as u32).collect::<Vec<_>>(),
        latents.len(),
        sae.w_dec().device(),
    )?;
    let dec = sae
        .w_dec()
        .index_select(&idx, 0)?
        .to_dtype(DType::F32)?
        .to_device(model.device())?;
    Ok(match SaeSite::of(model, sae)? {
        SaeSite::Resid => dec,
        SaeSite::MlpNeurons { layer } => dec.matmul(&model.w_out(layer)?)?,
        SaeSite::HookZ { layer } => {
            let c = model.cfg();
            let w_o = model
                .w_o(layer)?
                .reshape((c.n_heads * c.d_head, c.d_model))?;
            dec.matmul(&w_o)?
        }
    })
}

pub(crate) fn check_latents(sae: &Sae, latents: &[usize]) -> Result<()> {
    if let Some(&bad) = latents.iter().find(|&&i| i >= sae.d_sae()) {
        return Err(Error::Invalid(format!(
            "latent {bad} is out of range: the SAE has d_sae = {} (use 0..{})",
            sae.d_sae(),
            sae.d_sae()
        )));
    }
    Ok(())
}

/// `feature_resid_dir @ W_U` for each latent, `[k, d_vocab]` (no norm, no bias: sae_vis).
pub fn latent_logits(model: &HookedModel, dirs: &Tensor) -> Result<Tensor> {
    Ok(dirs.matmul(model.w_u())?)
}

/// Top and bottom `n` entries of a logit vector, and its `n_bins` histogram.
pub(crate) fn logit_tables(
    logits: &[f32],
    n: usize,
    n_bins: usize,
    vocab: &[String],
) -> (Vec<TokenScore>, Vec<TokenScore>, Histogram) {
    let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
    idx.sort_by(|&a, &b| {
        logits[b as usize]
            .total_cmp(&logits[a as usize])
            .then(a.cmp(&b))
    });
    let score = |&i: &u32| TokenScore {
        id: i,
        token: vocab.get(i as usize).cloned().unwrap_or_default(),
        value: logits[i as usize],
    };
    let n = n.min(idx.len());
    let top = idx[..n].iter().map(score).collect();
    let bottom = idx.iter().rev().take(n).map(score).collect();
    (top, bottom, histc(logits, n_bins))
}

/// The `n` largest components of `|row|` with their share of `Σ|row|`.
pub(crate) fn neuron_alignment(row: &[f32], n: usize) -> Vec<NeuronAlignment> {
    let l1: f32 = row.iter().map(|v| v.abs()).sum();
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| row[b].abs().total_cmp(&row[a].abs()).then(a.cmp(&b)));
    idx.into_iter()
        .take(n)
        .map(|i| NeuronAlignment {
            index: i,
            value: row[i],
            frac_l1: if l1 > 0.0 { row[i].abs() / l1 } else { 0.0 },
        })
        .collect()
}
