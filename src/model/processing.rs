//! TransformerLens's default weight processing (`process_weights`): `fold_ln`,
//! `center_writing_weights`, `center_unembed`, `fold_value_biases`, in TL's order. Gemma-2's
//! `ln1_post` / `ln2_post` norms are left as they are (TL never folds them).
//! See the spec, §D.2. Absent biases count as zero.
use super::config::{ModelConfig, Normalization, Positional, Processing};
use super::weights::StateDict;
use crate::error::Result;
use candle_core::{Tensor, D};

/// Apply the steps switched on in `p`, updating `cfg` (normalization type, `processing`).
pub(crate) fn process(sd: &mut StateDict, cfg: &mut ModelConfig, p: Processing) -> Result<()> {
    let mut done = Processing::none();
    if p.fold_ln && cfg.normalization.has_weights() {
        fold_ln(sd, cfg)?;
        cfg.normalization = cfg.normalization.folded();
        done.fold_ln = true;
    }
    // TL skips centring the writing weights of models without LayerNorm (RMS models).
    if p.center_writing_weights && cfg.normalization.is_layer_norm() {
        center_writing_weights(sd, cfg)?;
        done.center_writing_weights = true;
    }
    // TL's from_pretrained turns center_unembed off under logit soft-capping (not
    // shift-invariant).
    if p.center_unembed && cfg.output_logits_soft_cap.is_none() {
        center_unembed(sd)?;
        done.center_unembed = true;
    }
    if p.fold_value_biases {
        fold_value_biases(sd, cfg)?;
        done.fold_value_biases = true;
    }
    cfg.processing = done;
    Ok(())
}

fn mean_center(t: &Tensor, dim: usize) -> Result<Tensor> {
    Ok(t.broadcast_sub(&t.mean_keepdim(dim)?)?)
}

/// `b += Σ_d W[..., d, :] · ln_b[d]` where W's d_model axis is `d_axis`.
fn fold_bias(
    sd: &mut StateDict,
    b_name: &str,
    w: &Tensor,
    ln_b: &Tensor,
    d_axis: usize,
    out_shape: &[usize],
) -> Result<()> {
    let mut shape = vec![1usize; w.rank()];
    shape[d_axis] = ln_b.dim(0)?;
    let add = w.broadcast_mul(&ln_b.reshape(shape)?)?.sum(d_axis)?;
    let b = match sd.remove(b_name) {
        Some(b) => (b + add)?,
        None => add.reshape(out_shape)?,
    };
    sd.insert(b_name, b);
    Ok(())
}

fn fold_ln(sd: &mut StateDict, cfg: &ModelConfig) -> Result<()> {
    let ln = cfg.normalization == Normalization::LN;
    let (center, fold_biases) = (ln, ln);
    for l in 0..cfg.n_layers {
        let t = |s: &str| format!("blocks.{l}.{s}");
        // Attention inputs: W_{Q,K,V} [heads, d_model, d_head], ln1 weights on d_model (axis 1).
        let w1 = sd.take(&t("ln1.w"))?;
        let b1 = sd.remove(&t("ln1.b"));
        for x in ["Q", "K", "V"] {
            let wn = t(&format!("attn.W_{x}"));
            let w = sd.take(&wn)?;
            if let (true, Some(b1)) = (fold_biases, &b1) {
                let (n, _, dh) = w.dims3()?;
                fold_bias(sd, &t(&format!("attn.b_{x}")), &w, b1, 1, &[n, dh])?;
            }
            let mut w = w.broadcast_mul(&w1.reshape((1, (), 1))?)?;
            if center {
                w = mean_center(&w, 1)?;
            }
            sd.insert(wn, w);
        }
        // MLP inputs: W_in (and W_gate) [d_model, d_mlp], ln2 weights on axis 0.
        let w2 = sd.take(&t("ln2.w"))?;
        let b2 = sd.remove(&t("ln2.b"));
        for x in ["W_in", "W_gate"] {
            let wn = t(&format!("mlp.{x}"));
            let Some(w) = sd.remove(&wn) else { continue };
            if let (true, Some(b2), "W_in") = (fold_biases, &b2, x) {
                fold_bias(sd, &t("mlp.b_in"), &w, b2, 0, &[cfg.d_mlp])?;
            }
            let mut w = w.broadcast_mul(&w2.reshape(((), 1))?)?;
            if center && x == "W_in" {
                w = mean_center(&w, 0)?;
            }
            sd.insert(wn, w);
        }
    }
    // Unembedding: W_U [d_model, d_vocab].
    let wf = sd.take("ln_final.w")?;
    let bf = sd.remove("ln_final.b");
    let w_u_raw = sd.take("unembed.W_U")?;
    if let (true, Some(bf)) = (fold_biases, &bf) {
        fold_bias(sd, "unembed.b_U", &w_u_raw, bf, 0, &[cfg.d_vocab])?;
    }
    let mut w_u = w_u_raw.broadcast_mul(&wf.reshape(((), 1))?)?;
    drop(w_u_raw); // the largest tensor: free it before centring makes another copy
    if center {
        w_u = mean_center(&w_u, 0)?;
    }
    sd.insert("unembed.W_U", w_u);
    Ok(())
}

fn center_last(sd: &mut StateDict, name: &str) -> Result<()> {
    if let Some(t) = sd.remove(name) {
        sd.insert(name, mean_center(&t, t.rank() - 1)?);
    }
    Ok(())
}

fn center_writing_weights(sd: &mut StateDict, cfg: &ModelConfig) -> Result<()> {
    center_last(sd, "embed.W_E")?;
    if cfg.positional == Positional::Standard {
        center_last(sd, "pos_embed.W_pos")?;
    }
    for l in 0..cfg.n_layers {
        for n in ["attn.W_O", "attn.b_O", "mlp.W_out", "mlp.b_out"] {
            center_last(sd, &format!("blocks.{l}.{n}"))?;
        }
    }
    Ok(())
}

fn center_unembed(sd: &mut StateDict) -> Result<()> {
    let w_u = sd.take("unembed.W_U")?;
    let centered = mean_center(&w_u, 1)?;
    drop(w_u);
    sd.insert("unembed.W_U", centered);
    center_last(sd, "unembed.b_U")
}

fn fold_value_biases(sd: &mut StateDict, cfg: &ModelConfig) -> Result<()> {
    for l in 0..cfg.n_layers {
        let t = |s: &str| format!("blocks.{l}.{s}");
        let Some(b_v) = sd.remove(&t("attn.b_V")) else {
            continue;
        };
        // GQA: each query head reads the value bias of its key/value head.
        let b_v = if cfg.n_kv_heads != cfg.n_heads {
            let (hkv, dh) = b_v.dims2()?;
            b_v.unsqueeze(1)?
                .repeat((1, cfg.kv_repeat(), 1))?
                .reshape((hkv * cfg.kv_repeat(), dh))?
        } else {
            b_v
        };
        let w_o = sd.take(&t("attn.W_O"))?;
        let add = w_o.broadcast_mul(&b_v.unsqueeze(D::Minus1)?)?.sum((0, 1))?;
        sd.insert(t("attn.W_O"), w_o);
        let b_o = match sd.remove(&t("attn.b_O")) {
            Some(b) => (b + add)?,
            None => add,
        };
        sd.insert(t("attn.b_O"), b_o);
    }
    Ok(())
}
