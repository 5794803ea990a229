//! `gated` (SAELens's `GatedTrainingSAE`): gate `π_gate = x̃ W_enc + b_gate`, magnitude
//! `π_mag = x̃ (W_enc ⊙ exp(r_mag)) + b_mag`, `f = 1[π_gate > 0] · ReLU(π_mag)`; losses
//! `λ · mean_b Σ ReLU(π_gate) ⊙ ‖W_dec‖` and the auxiliary reconstruction
//! `mean_b ‖ReLU(π_gate) W_dec + b_dec − x‖²` (decoder not detached).
use super::{
    l1_coefficient, sum_sq_mean, w_dec_norm, Coefficient, Losses, Params, StepInput, TrainArch,
};
use crate::error::Result;
use crate::sae::Architecture;
use crate::train::config::TrainSaeConfig;
use candle_core::{DType, Device, Tensor, D};

pub struct Gated;

impl TrainArch for Gated {
    fn architecture(&self) -> Architecture {
        Architecture::Gated
    }
    fn init_params(&self, cfg: &TrainSaeConfig, p: &mut Params, device: &Device) -> Result<()> {
        for n in ["b_gate", "r_mag", "b_mag"] {
            p.push(n, Tensor::zeros(cfg.d_sae, DType::F32, device)?)?;
        }
        Ok(())
    }
    fn coefficients(&self, cfg: &TrainSaeConfig) -> Vec<Coefficient> {
        l1_coefficient(cfg)
    }
    fn encode_with_hidden_pre(&self, p: &Params, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let w_enc = p.get("W_enc")?;
        let gate = x.matmul(w_enc)?.broadcast_add(p.get("b_gate")?)?;
        let active = gate.gt(0f64)?.to_dtype(DType::F32)?;
        let w_mag = w_enc.broadcast_mul(&p.get("r_mag")?.exp()?)?;
        let mag = x.matmul(&w_mag)?.broadcast_add(p.get("b_mag")?)?;
        let f = (active * mag.relu()?)?;
        Ok((f, mag))
    }
    fn aux_losses(&self, p: &Params, input: &StepInput) -> Result<Losses> {
        let w_dec = p.get("W_dec")?;
        let pi_gate = input
            .sae_in_centered
            .matmul(p.get("W_enc")?)?
            .broadcast_add(p.get("b_gate")?)?
            .relu()?;
        let c = input.coefficients.get("l1").copied().unwrap_or(0.0);
        let l1 = pi_gate
            .broadcast_mul(&w_dec_norm(w_dec)?)?
            .sum(D::Minus1)?
            .mean(0)?
            .affine(c, 0.0)?;
        let via_gate = pi_gate.matmul(w_dec)?.broadcast_add(p.get("b_dec")?)?;
        let aux = sum_sq_mean(&via_gate, input.target)?;
        Ok(vec![
            ("l1_loss".into(), l1),
            ("auxiliary_reconstruction_loss".into(), aux),
        ])
    }
    fn latent_biases(&self) -> Vec<(&'static str, f64)> {
        vec![("b_gate", 0.0), ("b_mag", 0.0), ("r_mag", 0.0)]
    }
}
