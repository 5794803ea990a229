//! `jumprelu` (SAELens's `JumpReLUTrainingSAE`): `f = h · 1[h > θ]` with θ stored directly
//! (clamped ≥ 0 before each step) and straight-through estimators with bandwidth ε:
//!
//! - JumpReLU: `∂/∂θ = −Σ_b (θ/ε) · rect((h−θ)/ε) · g`, `∂/∂h = 1[h > θ] · g` (+ the STE term with
//!   `jumprelu_ste_to_input`);
//! - Step: `∂/∂θ = −Σ_b (1/ε) · rect((h−θ)/ε) · g` (and `+(1/ε) rect · g` to `h` with
//!   `jumprelu_ste_to_input`),
//!
//! with `rect(u) = 1[−½ < u < ½]`. They are built as differentiable expressions whose values
//! are exactly the forward values: `value + (θ − sg θ) · c` with `c` detached (`sg` = stop
//! gradient), so candle's autograd yields the estimator.
//!
//! Sparsity loss modes: `step` (`λ · mean_b Σ Step(h, θ)`), `quadratic`
//! (`λ · mean_b (2/T)(L0 − T)²`), `tanh` (`λ · mean_b Σ tanh(s · f ⊙ ‖W_dec‖)`); optional
//! `pre_act_loss = c · mean_b Σ ReLU(θ − h) · dead · ‖W_dec‖`.
use super::{ste_term, w_dec_norm, Coefficient, Losses, Params, StepInput, TrainArch};
use crate::error::Result;
use crate::sae::Architecture;
use crate::train::config::TrainSaeConfig;
use candle_core::{DType, Device, Tensor, D};

/// The `jumprelu` training architecture (SAELens's `JumpReLUTrainingSAE`): threshold θ, STE
/// bandwidth and sparsity-loss settings.
pub struct JumpRelu {
    bandwidth: f64,
    ste_to_input: bool,
    mode: String,
    tanh_scale: f64,
    target_l0: Option<f64>,
    pre_act_loss_coefficient: Option<f64>,
}

impl JumpRelu {
    /// Settings from the config (`jumprelu_bandwidth`, `jumprelu_sparsity_loss_mode`, `target_l0`,
    /// ...).
    pub fn new(cfg: &TrainSaeConfig) -> Self {
        JumpRelu {
            bandwidth: cfg.jumprelu_bandwidth,
            ste_to_input: cfg.jumprelu_ste_to_input,
            mode: cfg.jumprelu_sparsity_loss_mode.clone(),
            tanh_scale: cfg.jumprelu_tanh_scale,
            target_l0: cfg.target_l0,
            pre_act_loss_coefficient: cfg.pre_act_loss_coefficient,
        }
    }
}

/// `rect((h − θ)/ε)` as f32 (detached).
pub fn rectangle(h: &Tensor, theta: &Tensor, bandwidth: f64) -> Result<Tensor> {
    let u = (h.detach().broadcast_sub(&theta.detach())? / bandwidth)?;
    let r = (u.gt(-0.5f64)?.to_dtype(DType::F32)? * u.lt(0.5f64)?.to_dtype(DType::F32)?)?;
    Ok(r)
}

/// JumpReLU with SAELens's straight-through estimator: value `h · 1[h > θ]`.
pub fn jumprelu_ste(
    h: &Tensor,
    theta: &Tensor,
    bandwidth: f64,
    ste_to_input: bool,
) -> Result<Tensor> {
    let mask = h
        .detach()
        .broadcast_gt(&theta.detach())?
        .to_dtype(DType::F32)?;
    let rect = rectangle(h, theta, bandwidth)?;
    // (θ/ε) · rect, detached
    let ste = rect.broadcast_mul(&(theta.detach() / bandwidth)?)?;
    let mut out = (h * &mask)?;
    out = (out + ste_term(theta, &ste.neg()?)?)?;
    if ste_to_input {
        out = (out + ste_term(h, &ste)?)?;
    }
    Ok(out)
}

/// Heaviside step with SAELens's straight-through estimator: value `1[h > θ]`.
pub fn step_ste(h: &Tensor, theta: &Tensor, bandwidth: f64, ste_to_input: bool) -> Result<Tensor> {
    let mask = h
        .detach()
        .broadcast_gt(&theta.detach())?
        .to_dtype(DType::F32)?;
    let ste = (rectangle(h, theta, bandwidth)? / bandwidth)?;
    let mut out = (mask + ste_term(theta, &ste.neg()?)?)?;
    if ste_to_input {
        out = (out + ste_term(h, &ste)?)?;
    }
    Ok(out)
}

impl TrainArch for JumpRelu {
    fn architecture(&self) -> Architecture {
        Architecture::JumpRelu
    }
    fn init_params(&self, cfg: &TrainSaeConfig, p: &mut Params, device: &Device) -> Result<()> {
        p.push("b_enc", Tensor::zeros(cfg.d_sae, DType::F32, device)?)?;
        p.push(
            "threshold",
            Tensor::full(cfg.jumprelu_init_threshold as f32, cfg.d_sae, device)?,
        )
    }
    fn coefficients(&self, cfg: &TrainSaeConfig) -> Vec<Coefficient> {
        vec![Coefficient {
            name: "l0".into(),
            value: cfg.l0_coefficient,
            warm_up_steps: cfg.l0_warm_up_steps,
        }]
    }
    fn before_forward(&mut self, p: &Params) -> Result<()> {
        let th = p.var("threshold")?;
        let clamped = th.as_tensor().detach().relu()?.copy()?;
        th.set(&clamped)?;
        Ok(())
    }
    fn encode_with_hidden_pre(&self, p: &Params, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let h = x.matmul(p.get("W_enc")?)?.broadcast_add(p.get("b_enc")?)?;
        let f = jumprelu_ste(&h, p.get("threshold")?, self.bandwidth, self.ste_to_input)?;
        Ok((f, h))
    }
    fn aux_losses(&self, p: &Params, input: &StepInput) -> Result<Losses> {
        let (f, h) = (input.feature_acts, input.hidden_pre);
        let theta = p.get("threshold")?;
        let n = w_dec_norm(p.get("W_dec")?)?;
        let c = input.coefficients.get("l0").copied().unwrap_or(0.0);
        let l0_loss = match self.mode.as_str() {
            "tanh" => f
                .broadcast_mul(&n)?
                .affine(self.tanh_scale, 0.0)?
                .tanh()?
                .sum(D::Minus1)?
                .affine(c, 0.0)?
                .mean(0)?,
            mode => {
                let l0 = step_ste(h, theta, self.bandwidth, self.ste_to_input)?.sum(D::Minus1)?;
                let per_item = if mode == "quadratic" {
                    let t = self.target_l0.unwrap_or(1.0);
                    (l0 - t)?.sqr()?.affine(2.0 / t, 0.0)?
                } else {
                    l0
                };
                per_item.affine(c, 0.0)?.mean(0)?
            }
        };
        let mut out = vec![("l0_loss".to_string(), l0_loss)];
        if let Some(pc) = self.pre_act_loss_coefficient {
            let loss = if input.n_dead == 0 {
                Tensor::new(0f32, h.device())?
            } else {
                let dead: Vec<f32> = input.dead.iter().map(|d| *d as u8 as f32).collect();
                let dead = Tensor::from_vec(dead, input.dead.len(), h.device())?;
                theta
                    .broadcast_sub(h)?
                    .relu()?
                    .broadcast_mul(&(dead * n)?)?
                    .sum(D::Minus1)?
                    .mean(0)?
                    .affine(pc, 0.0)?
            };
            out.push(("pre_act_loss".into(), loss));
        }
        Ok(out)
    }
    fn latent_biases(&self) -> Vec<(&'static str, f64)> {
        vec![("b_enc", 0.0)]
    }
}
