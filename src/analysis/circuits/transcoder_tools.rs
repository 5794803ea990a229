//! ARENA [1.4.2] §2's transcoder tools: de-embeddings (which tokens a latent reads directly),
//! the extended embedding (the tokens after block 0's MLP, as a layer-0 transcoder sees them),
//! pullbacks (how much each earlier latent's decoder feeds a later latent's encoder) and their
//! influence on a prompt.
use crate::analysis::dashboard::types::LogitTable;
use crate::analysis::examples::token_score_table;
use crate::error::{Error, Result};
use crate::model::HookedModel;
use crate::sae::Sae;
use candle_core::{DType, IndexOp, Tensor, D};

fn encoder_column(tc: &Sae, latent: usize) -> Result<Tensor> {
    if latent >= tc.d_sae() {
        return Err(Error::Invalid(format!(
            "latent {latent} out of range: the transcoder has {} latents",
            tc.d_sae()
        )));
    }
    Ok(tc.w_enc().i((.., latent))?.to_dtype(DType::F32)?)
}

/// ARENA's de-embeddings: `W_E @ W_enc[:, latent]`, one score per vocabulary token `[d_vocab]`.
pub fn de_embeddings(model: &HookedModel, tc: &Sae, latent: usize) -> Result<Tensor> {
    let col = encoder_column(tc, latent)?;
    Ok(model
        .w_e()
        .to_dtype(DType::F32)?
        .matmul(&col.unsqueeze(1)?)?
        .squeeze(1)?)
}

/// ARENA's `show_top_deembeddings`: the `k` tokens whose embeddings drive `latent` most and
/// least.
pub fn deembedding_table(
    model: &HookedModel,
    tc: &Sae,
    latent: usize,
    k: usize,
) -> Result<LogitTable> {
    token_score_table(model, &de_embeddings(model, tc, latent)?, k)
}

/// ARENA's `create_extended_embedding`: `W_E + MLP₀(ln2₀(W_E))` per token, each row
/// standardised (minus its mean, over its standard deviation with Bessel's correction, as
/// torch's `std`). `[d_vocab, d_model]`.
pub fn extended_embedding(model: &HookedModel) -> Result<Tensor> {
    let w_e = model.w_e().to_dtype(DType::F32)?;
    let ext = (&w_e + model.mlp_on(0, &w_e)?)?;
    let d = ext.dim(D::Minus1)? as f64;
    let centred = ext.broadcast_sub(&ext.mean_keepdim(D::Minus1)?)?;
    let var = (centred.sqr()?.sum_keepdim(D::Minus1)? / (d - 1.0))?;
    Ok(centred.broadcast_div(&var.sqrt()?)?)
}

/// ARENA's `show_top_deembeddings_extended`: de-embeddings through the extended embedding
/// (pass [`extended_embedding`]'s result, which is costly to recompute per latent).
pub fn extended_deembedding_table(
    model: &HookedModel,
    extended: &Tensor,
    tc: &Sae,
    latent: usize,
    k: usize,
) -> Result<LogitTable> {
    let col = encoder_column(tc, latent)?;
    let scores = extended.matmul(&col.unsqueeze(1)?)?.squeeze(1)?;
    token_score_table(model, &scores, k)
}

/// ARENA's pullback: `W_dec_early @ W_enc_late[:, latent]`, one value per latent of the earlier
/// transcoder `[d_sae_early]` (how strongly each writes what `latent` reads).
pub fn pullback(early: &Sae, late: &Sae, latent: usize) -> Result<Tensor> {
    let col = encoder_column(late, latent)?;
    if early.d_out() != col.dim(0)? {
        return Err(Error::Invalid(format!(
            "pullback: the earlier transcoder writes width {}, the later one reads width {}",
            early.d_out(),
            col.dim(0)?
        )));
    }
    Ok(early
        .w_dec()
        .to_dtype(DType::F32)?
        .matmul(&col.unsqueeze(1)?)?
        .squeeze(1)?)
}

/// ARENA's influence: the earlier transcoder's activations `[..., d_sae_early]` times the
/// pullback — each earlier latent's direct contribution to the later latent's pre-activation
/// (ignoring the norm in between).
pub fn pullback_influence(early_acts: &Tensor, pullback: &Tensor) -> Result<Tensor> {
    Ok(early_acts.to_dtype(DType::F32)?.broadcast_mul(pullback)?)
}
