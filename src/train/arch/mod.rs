//! Training SAEs (SAELens's `*TrainingSAE` classes): one file per architecture behind
//! [`TrainArch`]. Parameters are candle [`Var`]s; the training forward pass builds a graph whose
//! `backward()` gives SAELens's gradients (JumpReLU / Step straight-through estimators are
//! differentiable constructions, see [`jumprelu`]).
use crate::dispatch::enum_dispatch;
use crate::error::{Error, Result};
use crate::rng::{Draw, Rng};
use crate::sae::Architecture;
use crate::train::config::TrainSaeConfig;
use candle_core::{DType, Device, Tensor, Var, D};
use std::collections::HashMap;

mod batchtopk;
pub(crate) mod fused;
mod gated;
pub mod jumprelu;
mod standard;
mod standard_fused;
mod topk;
pub(crate) mod topk_fused;

/// Named trainable parameters, in a fixed order (the order of the optimiser state).
#[derive(Clone, Debug)]
pub struct Params {
    /// Parameter names (SAELens state-dict keys: `W_enc`, `W_dec`, `b_dec`, ...).
    pub names: Vec<String>,
    /// The parameters, parallel to `names`.
    pub vars: Vec<Var>,
}

impl Params {
    /// An empty parameter list.
    pub fn new() -> Self {
        Params {
            names: vec![],
            vars: vec![],
        }
    }
    /// Append parameter `name` initialised to `t` (made contiguous).
    pub fn push(&mut self, name: &str, t: Tensor) -> Result<()> {
        self.names.push(name.to_string());
        self.vars.push(Var::from_tensor(&t.contiguous()?)?);
        Ok(())
    }
    /// The parameter named `name` (an error if there is none).
    pub fn var(&self, name: &str) -> Result<&Var> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| &self.vars[i])
            .ok_or_else(|| Error::Invalid(format!("training SAE has no parameter `{name}`")))
    }
    /// The parameter as a tensor that tracks gradients.
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        Ok(self.var(name)?.as_tensor())
    }
    /// Whether a parameter named `name` exists.
    pub fn has(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }
    /// Detached copies of every parameter.
    pub fn snapshot(&self) -> HashMap<String, Tensor> {
        self.names
            .iter()
            .zip(&self.vars)
            .map(|(n, v)| {
                (
                    n.clone(),
                    v.as_detached_tensor()
                        .copy()
                        .unwrap_or_else(|_| v.as_detached_tensor()),
                )
            })
            .collect()
    }
    /// `(name, var)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Var)> {
        self.names.iter().map(|s| s.as_str()).zip(&self.vars)
    }
}

impl Default for Params {
    fn default() -> Self {
        Self::new()
    }
}

/// A coefficient with linear warm-up (SAELens's `TrainCoefficientConfig`).
#[derive(Clone, Debug, PartialEq)]
pub struct Coefficient {
    /// Key of the coefficient in [`StepInput::coefficients`] (`l1`, `l0`).
    pub name: String,
    /// Value reached after warm-up.
    pub value: f64,
    /// Steps of linear warm-up from 0 to `value` (0 = none).
    pub warm_up_steps: usize,
}

/// What the auxiliary losses of one training step see: the input, the forward pass, the dead
/// latents and the coefficients.
pub struct StepInput<'a> {
    /// The (scaled) activations `[n, d_in]`.
    pub sae_in: &'a Tensor,
    /// What the decoder reconstructs `[n, d_out]`: `sae_in` for SAEs, the output hook's
    /// activations for transcoders.
    pub target: &'a Tensor,
    /// `sae_in − b_dec · apply_b_dec_to_input` (graph-tracked).
    pub sae_in_centered: &'a Tensor,
    /// The feature activations `f` (graph-tracked).
    pub feature_acts: &'a Tensor,
    /// The hidden pre-activations `h` (graph-tracked).
    pub hidden_pre: &'a Tensor,
    /// The reconstruction (graph-tracked).
    pub sae_out: &'a Tensor,
    /// Per latent: dead (not fired for more than `dead_feature_window` steps).
    pub dead: &'a [bool],
    /// Number of `true` entries in `dead`.
    pub n_dead: usize,
    /// Current coefficient values (after warm-up), by name.
    pub coefficients: &'a HashMap<String, f64>,
}

/// The result of [`TrainingSae::training_forward`].
pub struct StepOutput {
    /// `mse + Σ aux` (graph; call `backward()`).
    pub loss: Tensor,
    /// `mse_loss` and the architecture's auxiliary losses (SAELens's names).
    pub losses: Vec<(String, Tensor)>,
    /// The feature activations `[n, d_sae]` (graph-tracked).
    pub feature_acts: Tensor,
    /// The hidden pre-activations `[n, d_sae]` (graph-tracked).
    pub hidden_pre: Tensor,
    /// The reconstruction `[n, d_out]` (graph-tracked).
    pub sae_out: Tensor,
    /// Extra scalar metrics (`topk_threshold`).
    pub metrics: Vec<(String, f64)>,
}

/// Named loss terms (graph-tracked scalars).
pub type Losses = Vec<(String, Tensor)>;

/// SAELens's `l1` coefficient (standard and gated SAEs).
pub fn l1_coefficient(cfg: &TrainSaeConfig) -> Vec<Coefficient> {
    vec![Coefficient {
        name: "l1".into(),
        value: cfg.l1_coefficient,
        warm_up_steps: cfg.l1_warm_up_steps,
    }]
}

/// One training architecture.
pub trait TrainArch: Send + Sync {
    /// The architecture this implements (the config's `architecture`).
    fn architecture(&self) -> Architecture;
    /// Add the architecture's own parameters (biases, threshold, ...) after `W_enc`, `W_dec`,
    /// `b_dec`.
    fn init_params(&self, cfg: &TrainSaeConfig, p: &mut Params, device: &Device) -> Result<()>;
    /// Coefficients with warm-up (`l1`, `l0`), SAELens's `get_coefficients` (none by default).
    fn coefficients(&self, _cfg: &TrainSaeConfig) -> Vec<Coefficient> {
        vec![]
    }
    /// `(feature_acts, hidden_pre)` from the centred input.
    fn encode_with_hidden_pre(&self, p: &Params, x_centered: &Tensor) -> Result<(Tensor, Tensor)>;
    /// `f W_dec + b_dec`.
    fn decode(&self, p: &Params, f: &Tensor) -> Result<Tensor> {
        Ok(f.matmul(p.get("W_dec")?)?.broadcast_add(p.get("b_dec")?)?)
    }
    /// The architecture's auxiliary losses (SAELens's `calculate_aux_loss`).
    fn aux_losses(&self, p: &Params, input: &StepInput) -> Result<Losses>;
    /// Before each forward pass (JumpReLU: clamp θ ≥ 0).
    fn before_forward(&mut self, _p: &Params) -> Result<()> {
        Ok(())
    }
    /// After each forward pass (BatchTopK: threshold EMA). Returns metrics.
    fn after_forward(&mut self, _f: &Tensor) -> Result<Vec<(String, f64)>> {
        Ok(vec![])
    }
    /// After a fused step, which reports the smallest active feature activation `min_active`
    /// instead of `f` (BatchTopK: the same threshold EMA as [`TrainArch::after_forward`]).
    /// Returns metrics.
    fn after_fused_step(&mut self, _min_active: Option<f32>) -> Vec<(String, f64)> {
        vec![]
    }
    /// Non-parameter state (buffers) for checkpoints.
    fn buffers(&self) -> Vec<(String, f64)> {
        vec![]
    }
    /// Restore the buffers saved by [`TrainArch::buffers`] from a checkpoint.
    fn load_buffers(&mut self, _b: &HashMap<String, f64>) -> Result<()> {
        Ok(())
    }
    /// Called when the activation scaling factor `s` is folded into the weights.
    fn fold_activation_scale(&mut self, _s: f64) {}
    /// SAELens's `save_inference_model` state-dict processing: the inference architecture and
    /// its tensors (from detached parameter values).
    fn inference_tensors(
        &self,
        w: HashMap<String, Tensor>,
    ) -> Result<(Architecture, HashMap<String, Tensor>)> {
        Ok((self.architecture(), w))
    }
    /// Latent-indexed parameters other than `W_enc` columns / `W_dec` rows that resampling
    /// resets (name, value for a fresh latent).
    fn latent_biases(&self) -> Vec<(&'static str, f64)> {
        vec![]
    }
}

enum_dispatch! {
    /// The architecture of a [`TrainingSae`]: one of the training architectures, dispatched by a
    /// `match` (it derefs to its [`TrainArch`]; no trait object is kept, see `crate::dispatch`).
    pub enum AnyTrainArch: dyn TrainArch {
        /// `standard` (L1).
        Standard(standard::Standard),
        /// `gated`.
        Gated(gated::Gated),
        /// `jumprelu`.
        JumpRelu(jumprelu::JumpRelu),
        /// `topk`.
        TopK(topk::TopK),
        /// `batchtopk`.
        BatchTopK(batchtopk::BatchTopK),
    }
}

/// The training architecture of a config.
pub fn make_arch(cfg: &TrainSaeConfig) -> Result<AnyTrainArch> {
    Ok(match cfg.architecture {
        Architecture::Standard => AnyTrainArch::Standard(standard::Standard::new(cfg)),
        Architecture::Gated => AnyTrainArch::Gated(gated::Gated),
        Architecture::JumpRelu => AnyTrainArch::JumpRelu(jumprelu::JumpRelu::new(cfg)),
        Architecture::TopK => AnyTrainArch::TopK(topk::TopK::new(cfg)),
        Architecture::BatchTopK => AnyTrainArch::BatchTopK(batchtopk::BatchTopK::new(cfg)),
        a => {
            return Err(Error::Config(format!(
                "architecture `{a}` cannot be trained"
            )))
        }
    })
}

/// A training SAE: config, parameters, architecture.
pub struct TrainingSae {
    /// The training configuration.
    pub cfg: TrainSaeConfig,
    /// The trainable parameters (`W_enc`, `W_dec`, `b_dec`, then the architecture's own).
    pub params: Params,
    /// The architecture (encoder, auxiliary losses, buffers).
    pub arch: AnyTrainArch,
    /// Use the fused CPU step where one exists (the fused top-k step; default `true`). `false` forces
    /// the autograd graph (same maths; used to check the kernels).
    pub use_fused_kernels: bool,
}

/// `‖W_dec[i]‖` per latent (graph-tracked).
pub fn w_dec_norm(w_dec: &Tensor) -> Result<Tensor> {
    Ok(w_dec.sqr()?.sum(D::Minus1)?.sqrt()?)
}

/// `Σ_d (a − b)²` averaged over the batch.
pub fn sum_sq_mean(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Ok((a - b)?.sqr()?.sum(D::Minus1)?.mean(0)?)
}

impl TrainingSae {
    /// SAELens's initialisation: `W_dec` kaiming-uniform, rows rescaled to
    /// `decoder_init_norm`, `W_enc = W_decᵀ`, biases 0 (`b_dec` may be set later by the
    /// trainer's `b_dec_init_method`), then the architecture's own parameters. A transcoder
    /// whose `d_out` differs from `d_in` draws `W_enc` separately (`[d_sae, d_in]` the same way,
    /// transposed).
    pub fn new(cfg: &TrainSaeConfig, rng: &mut Rng, device: &Device) -> Result<Self> {
        cfg.validate()?;
        let arch = make_arch(cfg)?;
        let (d_in, d_sae, d_out) = (cfg.d_in, cfg.d_sae, cfg.d_out());
        let w_dec = Tensor::from_vec(kaiming_rows(rng, d_sae, d_out, cfg), (d_sae, d_out), device)?;
        let w_enc = if d_out == d_in {
            w_dec.t()?.contiguous()?
        } else {
            let w = kaiming_rows(rng, d_sae, d_in, cfg);
            Tensor::from_vec(w, (d_sae, d_in), device)?
                .t()?
                .contiguous()?
        };
        let mut params = Params::new();
        params.push("W_enc", w_enc)?;
        params.push("W_dec", w_dec)?;
        params.push("b_dec", Tensor::zeros(d_out, DType::F32, device)?)?;
        arch.init_params(cfg, &mut params, device)?;
        Ok(TrainingSae {
            cfg: cfg.clone(),
            params,
            arch,
            use_fused_kernels: true,
        })
    }

    /// SAELens's `training_forward_pass`: `mse = mean_b Σ_d (x̂ − x)²` plus the architecture's
    /// auxiliary losses.
    pub fn training_forward(
        &mut self,
        sae_in: &Tensor,
        dead: &[bool],
        coefficients: &HashMap<String, f64>,
    ) -> Result<StepOutput> {
        self.training_forward_to(sae_in, sae_in, dead, coefficients)
    }

    /// [`TrainingSae::training_forward`] reconstructing `target` `[n, d_out]` instead of the
    /// input (transcoders: `mse = mean_b Σ_d (x̂ − y)²`, AuxK on the residual `y − x̂`).
    pub fn training_forward_to(
        &mut self,
        sae_in: &Tensor,
        target: &Tensor,
        dead: &[bool],
        coefficients: &HashMap<String, f64>,
    ) -> Result<StepOutput> {
        // The parameters and the input may come from another evcxr cell.
        let held = self.params.vars.iter().map(|v| v.as_tensor());
        crate::tensor_ids::advance_past(held.chain([sae_in, target]));
        self.arch.before_forward(&self.params)?;
        let p = &self.params;
        let centered = if self.cfg.apply_b_dec_to_input {
            sae_in.broadcast_sub(p.get("b_dec")?)?
        } else {
            sae_in.clone()
        };
        let (f, h) = self.arch.encode_with_hidden_pre(p, &centered)?;
        let sae_out = self.arch.decode(p, &f)?;
        let mse = sum_sq_mean(&sae_out, target)?;
        let n_dead = dead.iter().filter(|d| **d).count();
        let input = StepInput {
            sae_in,
            target,
            sae_in_centered: &centered,
            feature_acts: &f,
            hidden_pre: &h,
            sae_out: &sae_out,
            dead,
            n_dead,
            coefficients,
        };
        let aux = self.arch.aux_losses(p, &input)?;
        let mut loss = mse.clone();
        for (_, l) in &aux {
            loss = (loss + l)?;
        }
        let mut losses = vec![("mse_loss".to_string(), mse)];
        losses.extend(aux);
        let metrics = self.arch.after_forward(&f)?;
        Ok(StepOutput {
            loss,
            losses,
            feature_acts: f,
            hidden_pre: h,
            sae_out,
            metrics,
        })
    }

    /// Inference-time encode of raw (already scaled) activations, without gradients.
    pub fn encode(&self, x: &Tensor) -> Result<Tensor> {
        let p = &self.params;
        let centered = if self.cfg.apply_b_dec_to_input {
            x.broadcast_sub(p.get("b_dec")?)?
        } else {
            x.clone()
        };
        Ok(self.arch.encode_with_hidden_pre(p, &centered)?.0.detach())
    }

    /// Overwrite parameters by name (e.g. from a checkpoint or a golden file); every name must
    /// be a parameter of this architecture, with its shape.
    pub fn set_params(&mut self, w: &HashMap<String, Tensor>) -> Result<()> {
        for (name, t) in w {
            let var = self.params.var(name)?;
            if var.shape() != t.shape() {
                return Err(Error::Invalid(format!(
                    "parameter `{name}` has shape {:?}, got {:?}",
                    var.shape().dims(),
                    t.dims()
                )));
            }
            var.set(&t.to_dtype(DType::F32)?.contiguous()?)?;
        }
        Ok(())
    }

    /// `W_dec [d_sae, d_in]` (detached).
    pub fn w_dec(&self) -> Result<Tensor> {
        Ok(self.params.get("W_dec")?.detach())
    }
}

/// `[rows, cols]` kaiming-uniform values (`a = 0`, `fan_in = cols`: bound `√2 · √(3 / cols)`),
/// each row rescaled to `decoder_init_norm` when that is set.
fn kaiming_rows(rng: &mut Rng, rows: usize, cols: usize, cfg: &TrainSaeConfig) -> Vec<f32> {
    let bound = (2.0f64).sqrt() * (3.0 / cols as f64).sqrt();
    let mut w: Vec<f32> = (0..rows * cols)
        .map(|_| rng.uniform_range(-bound, bound) as f32)
        .collect();
    if let Some(norm) = cfg.decoder_init_norm {
        for row in w.chunks_mut(cols) {
            let n = row.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt() as f32;
            for v in row.iter_mut() {
                *v = *v / n * norm as f32;
            }
        }
    }
    w
}

/// `(θ − sg(θ))` broadcast against `c`: a zero-valued tensor whose gradient w.r.t. `θ` is
/// `Σ_batch c · g` — the building block of the straight-through estimators.
pub fn ste_term(param: &Tensor, c: &Tensor) -> Result<Tensor> {
    let zero = (param - param.detach())?;
    Ok(c.broadcast_mul(&zero)?)
}
