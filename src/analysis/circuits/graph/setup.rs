//! The clean pass an attribution graph starts from (circuit-tracer's `setup_attribution` and
//! `compute_salient_logits`): transcoder activations at every layer and position, the scaled
//! decoder and encoder vectors of the active features, the error vectors, the token vectors
//! and the logit targets.
use crate::error::{Error, Result};
use crate::model::HookedModel;
use crate::ops::to_vec_f32;
use crate::sae::NormalizeActivations;
use crate::sae::TranscoderSet;
use candle_core::{DType, IndexOp, Tensor, D};

/// One active transcoder latent: its layer, position, index and activation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ActiveFeature {
    /// The layer (block) of the transcoder.
    pub layer: usize,
    /// The token position.
    pub pos: usize,
    /// The latent's index in its transcoder.
    pub feature: usize,
    /// Its activation on the prompt.
    pub activation: f32,
}

/// What the clean pass gives the attribution (all `f32`, row-major, on the CPU).
pub(crate) struct Setup {
    pub tokens: Vec<u32>,
    pub n_layers: usize,
    pub n_pos: usize,
    pub d_model: usize,
    /// Active features in (layer, pos, feature) order; position 0 never has any.
    pub features: Vec<ActiveFeature>,
    /// `[n_features, d_model]`: each feature's encoder direction (what it reads).
    pub encoder_vecs: Vec<f32>,
    /// `[n_features, d_model]`: activation × decoder row (what it writes).
    pub decoder_vecs: Vec<f32>,
    /// `[n_layers, n_pos, d_model]`: MLP output minus the transcoder's reconstruction (0 at
    /// position 0).
    pub error_vecs: Vec<f32>,
    /// `[n_pos, d_model]`: the tokens' embedding rows.
    pub token_vecs: Vec<f32>,
    /// The logit targets: token ids, probabilities, demeaned unembedding columns `[k, d_model]`.
    pub logit_ids: Vec<u32>,
    pub logit_probs: Vec<f32>,
    pub logit_vecs: Vec<f32>,
}

/// Run the clean model on `tokens` (`[1, pos]`) and collect everything the graph needs.
pub(crate) fn setup(
    model: &HookedModel,
    tokens: &Tensor,
    tcs: &TranscoderSet,
    max_n_logits: usize,
    desired_logit_prob: f64,
) -> Result<Setup> {
    tcs.check_fits(model)?;
    for (l, t) in tcs.transcoders.iter().enumerate() {
        if !matches!(t.cfg().normalize_activations, NormalizeActivations::None) {
            return Err(Error::Invalid(format!(
                "transcoder {l} normalises its input activations; attribution graphs need \
                 transcoders whose encoder is linear in the input (normalize_activations none)"
            )));
        }
    }
    let cfg = model.cfg();
    let (n_layers, d) = (cfg.n_layers, cfg.d_model);
    let names: Vec<String> = (0..n_layers)
        .flat_map(|l| {
            [
                format!("blocks.{l}.ln2.hook_normalized"),
                format!("blocks.{l}.hook_mlp_out"),
            ]
        })
        .collect();
    let (logits, cache) = model.run(tokens).names(names).cache()?;
    let n_pos = tokens.dim(1)?;
    let mut features = Vec::new();
    let (mut encoder_vecs, mut decoder_vecs, mut error_vecs) = (vec![], vec![], vec![]);
    for (l, tc) in tcs.transcoders.iter().enumerate() {
        let x_in = cache.get(format!("blocks.{l}.ln2.hook_normalized"))?.i(0)?;
        let mlp_out = cache.get(format!("blocks.{l}.hook_mlp_out"))?.i(0)?;
        let acts = tc.encode(&x_in)?.to_dtype(DType::F32)?;
        // circuit-tracer zeroes position 0 (the BOS token's outsized activations).
        let keep = Tensor::ones((n_pos, 1), DType::F32, acts.device())?.slice_assign(
            &[0..1, 0..1],
            &Tensor::zeros((1, 1), DType::F32, acts.device())?,
        )?;
        let acts = acts.broadcast_mul(&keep)?;
        let mut recon = tc.decode(&acts.to_dtype(tc.dtype())?)?;
        if let Some(skip) = tc.skip_connection(&x_in)? {
            recon = (recon + skip)?;
        }
        let err =
            (mlp_out.to_dtype(DType::F32)? - recon.to_dtype(DType::F32)?)?.broadcast_mul(&keep)?;
        error_vecs.extend(to_vec_f32(&err)?);
        // Read each transcoder's weights once; rows are sliced per active feature.
        let w_enc_t = to_vec_f32(&tc.w_enc().t()?.contiguous()?)?;
        let w_dec = to_vec_f32(tc.w_dec())?;
        let a = acts.to_vec2::<f32>()?;
        for (pos, row) in a.iter().enumerate() {
            for (f, &v) in row.iter().enumerate() {
                if v != 0.0 {
                    features.push(ActiveFeature {
                        layer: l,
                        pos,
                        feature: f,
                        activation: v,
                    });
                    encoder_vecs.extend_from_slice(&w_enc_t[f * d..(f + 1) * d]);
                    decoder_vecs.extend(w_dec[f * d..(f + 1) * d].iter().map(|w| w * v));
                }
            }
        }
    }
    let ids = tokens.i(0)?.to_dtype(DType::U32)?;
    let token_vecs = to_vec_f32(&model.w_e().index_select(&ids, 0)?)?;
    let last = logits.i((0, n_pos - 1))?.to_dtype(DType::F32)?;
    let (logit_ids, logit_probs, logit_vecs) =
        salient_logits(model, &last, max_n_logits, desired_logit_prob)?;
    Ok(Setup {
        tokens: ids.to_vec1()?,
        n_layers,
        n_pos,
        d_model: d,
        features,
        encoder_vecs,
        decoder_vecs,
        error_vecs,
        token_vecs,
        logit_ids,
        logit_probs,
        logit_vecs,
    })
}

/// circuit-tracer's `compute_salient_logits`: the smallest set of the `max_n_logits` most
/// likely tokens whose cumulative probability reaches `desired` (plus the one that crosses it),
/// their probabilities, and their unembedding columns minus the mean column.
fn salient_logits(
    model: &HookedModel,
    logits: &Tensor,
    max_n_logits: usize,
    desired: f64,
) -> Result<(Vec<u32>, Vec<f32>, Vec<f32>)> {
    let probs = candle_nn::ops::softmax(logits, D::Minus1)?.to_vec1::<f32>()?;
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    order.truncate(max_n_logits.min(probs.len()));
    // torch.searchsorted(cumsum, desired) + 1: the count of cumulative sums below `desired`,
    // plus one.
    let mut cum = 0f32;
    let below = order
        .iter()
        .take_while(|&&i| {
            cum += probs[i];
            (cum as f64) < desired
        })
        .count();
    order.truncate((below + 1).min(order.len()));
    let w_u = model.w_u().to_dtype(DType::F32)?;
    let mean = w_u.mean_keepdim(1)?;
    let ids: Vec<u32> = order.iter().map(|&i| i as u32).collect();
    let cols = w_u.index_select(&Tensor::new(ids.as_slice(), w_u.device())?, 1)?;
    let vecs = cols.broadcast_sub(&mean)?.t()?.contiguous()?;
    Ok((
        ids,
        order.iter().map(|&i| probs[i]).collect(),
        to_vec_f32(&vecs)?,
    ))
}
