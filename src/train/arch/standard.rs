//! `standard`: `f = ReLU(x̃ W_enc + b_enc)`, loss `mse + λ · mean_b ‖f ⊙ ‖W_dec‖‖_p`
//! (SAELens's `StandardTrainingSAE`).
use super::{l1_coefficient, w_dec_norm, Coefficient, Losses, Params, StepInput, TrainArch};
use crate::error::Result;
use crate::sae::Architecture;
use crate::train::config::TrainSaeConfig;
use candle_core::{DType, Device, Tensor, D};

pub struct Standard {
    lp_norm: f64,
}

impl Standard {
    pub fn new(cfg: &TrainSaeConfig) -> Self {
        Standard {
            lp_norm: cfg.lp_norm,
        }
    }
}

impl TrainArch for Standard {
    fn architecture(&self) -> Architecture {
        Architecture::Standard
    }
    fn init_params(&self, cfg: &TrainSaeConfig, p: &mut Params, device: &Device) -> Result<()> {
        p.push("b_enc", Tensor::zeros(cfg.d_sae, DType::F32, device)?)
    }
    fn coefficients(&self, cfg: &TrainSaeConfig) -> Vec<Coefficient> {
        l1_coefficient(cfg)
    }
    fn encode_with_hidden_pre(&self, p: &Params, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let h = x.matmul(p.get("W_enc")?)?.broadcast_add(p.get("b_enc")?)?;
        Ok((h.relu()?, h))
    }
    fn aux_losses(&self, p: &Params, input: &StepInput) -> Result<Losses> {
        let f = input.feature_acts;
        let n = w_dec_norm(p.get("W_dec")?)?;
        let weighted = f.broadcast_mul(&n)?;
        // torch's `norm(p)`: (Σ |v|^p)^(1/p); f ≥ 0 so |·| is the identity for p = 1.
        let sparsity = if self.lp_norm == 1.0 {
            weighted.sum(D::Minus1)?
        } else if self.lp_norm == 2.0 {
            weighted.sqr()?.sum(D::Minus1)?.sqrt()?
        } else {
            weighted
                .abs()?
                .powf(self.lp_norm)?
                .sum(D::Minus1)?
                .powf(1.0 / self.lp_norm)?
        };
        let c = input.coefficients.get("l1").copied().unwrap_or(0.0);
        Ok(vec![("l1_loss".into(), sparsity.affine(c, 0.0)?.mean(0)?)])
    }
    fn latent_biases(&self) -> Vec<(&'static str, f64)> {
        vec![("b_enc", 0.0)]
    }
}
