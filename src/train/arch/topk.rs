//! `topk` (SAELens's `TopKTrainingSAE`): `h = x̃ W_enc + b_enc` (× `‖W_dec‖` with
//! `rescale_acts_by_decoder_norm`), `f` = the row's top-`k` of `h`, ReLU'd; decode
//! `(f / ‖W_dec‖) W_dec + b_dec`. AuxK on dead latents (EleutherAI style):
//! `e = sg(x − x̂)`, `k_aux = min(d_in/2, n_dead)`, `scale = min(n_dead / (d_in/2), 1)`,
//! `z` = top-`k_aux` of `h` among dead latents, `aux = coef · scale · mean_b ‖z W_dec − e‖²`
//! (`z / ‖W_dec‖` with rescaling; no `b_dec`).
//!
//! The selection is a detached 0/1 mask, so `f = h ⊙ mask` has torch's top-k gradient.
use super::{sum_sq_mean, w_dec_norm, Losses, Params, StepInput, TrainArch};
use crate::error::Result;
use crate::ops;
use crate::sae::Architecture;
use crate::train::config::TrainSaeConfig;
use crate::train::sparse::{sparse_decode, sparse_grad_matmul};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;

/// Shared by `topk` and `batchtopk`.
pub struct TopK {
    pub k: f64,
    pub rescale: bool,
    pub aux_coef: f64,
    /// BatchTopK selection (top `k · n` over the batch) instead of per row.
    pub batch: bool,
}

impl TopK {
    pub fn new(cfg: &TrainSaeConfig) -> Self {
        TopK {
            k: cfg.k,
            rescale: cfg.rescale_acts_by_decoder_norm,
            aux_coef: cfg.aux_loss_coefficient,
            batch: false,
        }
    }

    /// `act_times_W_dec`: `(f / ‖W_dec‖) W_dec` with rescaling, else `f W_dec`.
    pub fn act_times_w_dec(&self, p: &Params, f: &Tensor) -> Result<Tensor> {
        let w_dec = p.get("W_dec")?;
        let f = if self.rescale {
            f.broadcast_mul(&w_dec_norm(w_dec)?.recip()?)?
        } else {
            f.clone()
        };
        // f has k non-zeros per row: `f W_dec` and both its gradients use only the selected
        // rows of W_dec per token instead of dense [n, d_sae] × [d_sae, d_in] products.
        if f.device().is_cpu() && f.dtype() == DType::F32 {
            sparse_decode(&f, w_dec)
        } else {
            Ok(f.matmul(w_dec)?)
        }
    }

    /// SAELens's AuxK loss: the residual reconstructed from the top `d_in / 2` dead latents.
    pub fn topk_aux_loss(&self, p: &Params, input: &StepInput) -> Result<Tensor> {
        let (h, sae_out) = (input.hidden_pre, input.sae_out);
        if input.n_dead == 0 {
            return Ok(Tensor::new(0f32, h.device())?);
        }
        let residual = (input.target - sae_out)?.detach();
        // EleutherAI's `k_aux = d / 2` over the reconstructed width (d_out for transcoders).
        let d_out = input.target.dim(1)?;
        let k_aux = d_out / 2;
        let scale = (input.n_dead as f64 / k_aux as f64).min(1.0);
        let k_aux = k_aux.min(input.n_dead);
        let dead = ops::TopKSelect {
            allowed: Some(input.dead),
            ..Default::default()
        };
        let mask = ops::topk_mask(&h.detach(), k_aux, dead)?;
        let auxk_acts = (h * mask)?;
        let recons = self.act_times_w_dec(p, &auxk_acts)?;
        Ok(sum_sq_mean(&recons, &residual)?.affine(self.aux_coef * scale, 0.0)?)
    }
}

impl TrainArch for TopK {
    fn architecture(&self) -> Architecture {
        Architecture::TopK
    }
    fn init_params(&self, cfg: &TrainSaeConfig, p: &mut Params, device: &Device) -> Result<()> {
        p.push("b_enc", Tensor::zeros(cfg.d_sae, DType::F32, device)?)
    }
    fn encode_with_hidden_pre(&self, p: &Params, x: &Tensor) -> Result<(Tensor, Tensor)> {
        // Only the selected entries of h (top-k, AuxK) receive gradient, so the encoder's
        // backward visits just those (the forward product stays dense).
        let w_enc = p.get("W_enc")?;
        let xw = if x.device().is_cpu() && x.dtype() == DType::F32 {
            sparse_grad_matmul(x, w_enc)?
        } else {
            x.matmul(w_enc)?
        };
        let mut h = xw.broadcast_add(p.get("b_enc")?)?;
        if self.rescale {
            h = h.broadcast_mul(&w_dec_norm(p.get("W_dec")?)?)?;
        }
        let hd = h.detach();
        let mask = if self.batch {
            ops::batch_topk_mask(&hd, self.k)?
        } else {
            let positive = ops::TopKSelect {
                positive: true,
                ..Default::default()
            };
            ops::topk_mask(&hd, self.k as usize, positive)?
        };
        Ok(((&h * mask)?, h))
    }
    fn decode(&self, p: &Params, f: &Tensor) -> Result<Tensor> {
        Ok(self.act_times_w_dec(p, f)?.broadcast_add(p.get("b_dec")?)?)
    }
    fn aux_losses(&self, p: &Params, input: &StepInput) -> Result<Losses> {
        Ok(vec![(
            "auxiliary_reconstruction_loss".into(),
            self.topk_aux_loss(p, input)?,
        )])
    }
    /// `save_inference_model`: with rescaling, fold `‖W_dec‖` into `W_enc`, `b_enc`, `W_dec`.
    fn inference_tensors(
        &self,
        mut w: HashMap<String, Tensor>,
    ) -> Result<(Architecture, HashMap<String, Tensor>)> {
        if self.rescale {
            fold_norm_topk(&mut w)?;
        }
        Ok((Architecture::TopK, w))
    }
    fn latent_biases(&self) -> Vec<(&'static str, f64)> {
        vec![("b_enc", 0.0)]
    }
}

/// SAELens's `_fold_norm_topk` (norms clamped at 1e-8 as `get_W_dec_norm`).
pub fn fold_norm_topk(w: &mut HashMap<String, Tensor>) -> Result<()> {
    let w_dec = w["W_dec"].clone();
    let n = w_dec_norm(&w_dec)?.clamp(1e-8f64, f64::INFINITY)?;
    let b_enc = w["b_enc"].mul(&n)?;
    let w_dec = w_dec.broadcast_div(&n.unsqueeze(1)?)?;
    let w_enc = w["W_enc"].broadcast_mul(&n.unsqueeze(0)?)?;
    w.insert("b_enc".into(), b_enc);
    w.insert("W_dec".into(), w_dec);
    w.insert("W_enc".into(), w_enc);
    Ok(())
}
