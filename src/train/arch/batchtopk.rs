//! `batchtopk` (SAELens's `BatchTopKTrainingSAE`): keep the top `int(k · n)` ReLU'd
//! pre-activations of the whole batch; a float64 threshold buffer follows
//! `θ ← (1 − lr) θ + lr · min(f[f > 0])` after every forward pass. Saved as `jumprelu` with
//! `threshold = θ · 1` (after the topk norm fold; θ is divided by the activation scaling
//! factor when that is folded with rescaling on).
use super::topk::{fold_norm_topk, TopK};
use super::{Losses, Params, StepInput, TrainArch};
use crate::error::Result;
use crate::ops;
use crate::sae::Architecture;
use crate::train::config::TrainSaeConfig;
use candle_core::{Device, Tensor};
use std::collections::HashMap;

pub struct BatchTopK {
    inner: TopK,
    lr: f64,
    /// `topk_threshold` (float64 buffer).
    pub threshold: f64,
}

impl BatchTopK {
    pub fn new(cfg: &TrainSaeConfig) -> Self {
        let mut inner = TopK::new(cfg);
        inner.batch = true;
        BatchTopK {
            inner,
            lr: cfg.topk_threshold_lr,
            threshold: 0.0,
        }
    }
}

impl TrainArch for BatchTopK {
    fn architecture(&self) -> Architecture {
        Architecture::BatchTopK
    }
    fn init_params(&self, cfg: &TrainSaeConfig, p: &mut Params, device: &Device) -> Result<()> {
        self.inner.init_params(cfg, p, device)
    }
    fn encode_with_hidden_pre(&self, p: &Params, x: &Tensor) -> Result<(Tensor, Tensor)> {
        self.inner.encode_with_hidden_pre(p, x)
    }
    fn decode(&self, p: &Params, f: &Tensor) -> Result<Tensor> {
        self.inner.decode(p, f)
    }
    fn aux_losses(&self, p: &Params, input: &StepInput) -> Result<Losses> {
        self.inner.aux_losses(p, input)
    }
    fn after_forward(&mut self, f: &Tensor) -> Result<Vec<(String, f64)>> {
        Ok(self.after_fused_step(ops::min_positive(f)?))
    }
    fn after_fused_step(&mut self, min_active: Option<f32>) -> Vec<(String, f64)> {
        if let Some(m) = min_active {
            self.threshold = (1.0 - self.lr) * self.threshold + self.lr * m as f64;
        }
        vec![("topk_threshold".into(), self.threshold)]
    }
    fn buffers(&self) -> Vec<(String, f64)> {
        vec![("topk_threshold".into(), self.threshold)]
    }
    fn load_buffers(&mut self, b: &HashMap<String, f64>) -> Result<()> {
        if let Some(t) = b.get("topk_threshold") {
            self.threshold = *t;
        }
        Ok(())
    }
    fn fold_activation_scale(&mut self, s: f64) {
        if self.inner.rescale {
            self.threshold /= s;
        }
    }
    fn inference_tensors(
        &self,
        mut w: HashMap<String, Tensor>,
    ) -> Result<(Architecture, HashMap<String, Tensor>)> {
        if self.inner.rescale {
            fold_norm_topk(&mut w)?;
        }
        let b_enc = &w["b_enc"];
        let th = (b_enc.ones_like()? * self.threshold)?;
        w.insert("threshold".into(), th);
        Ok((Architecture::JumpRelu, w))
    }
    fn latent_biases(&self) -> Vec<(&'static str, f64)> {
        vec![("b_enc", 0.0)]
    }
}
