//! Hooks for the common interventions of the ARENA exercises, usable in `run_with_hooks*`, the
//! model's `run(..)` builder and generation: ablate or set latents at positions, add a
//! steering vector, patch in an activation from another run, zero or scale an attention head.
//!
//! ```no_run
//! # use saescope::prelude::*;
//! # let model = HookedModel::from_pretrained("smollm2")?;
//! # let sae = Sae::shipped()?;
//! let hooks = Hooks::new().ablate_latents(&sae, Pos::Last, &[4159], Ablation::Zero);
//! let logits = model.run("The Golden Gate Bridge").saes(&[&sae]).error_term().hooks(hooks).logits()?;
//! # Ok::<(), saescope::Error>(())
//! ```
use super::{ActName, Hooks};
use crate::error::{Error, Result};
use candle_core::{DType, Tensor};

/// Sequence positions an intervention touches (dimension 1 of `[batch, pos, ...]`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Pos {
    /// Every position.
    #[default]
    All,
    /// One position.
    At(usize),
    /// The last position of each pass (with generation's KV cache: each new token).
    Last,
    /// These positions.
    List(Vec<usize>),
}

impl From<usize> for Pos {
    fn from(p: usize) -> Self {
        Pos::At(p)
    }
}
impl From<Vec<usize>> for Pos {
    fn from(v: Vec<usize>) -> Self {
        Pos::List(v)
    }
}
impl From<&[usize]> for Pos {
    fn from(v: &[usize]) -> Self {
        Pos::List(v.to_vec())
    }
}

impl Pos {
    /// `[pos]` f32 mask: 1 at the chosen positions of a sequence of length `p`.
    fn mask(&self, p: usize, dev: &candle_core::Device) -> Result<Tensor> {
        let mut m = vec![0f32; p];
        let check = |i: usize| -> Result<usize> {
            if i < p {
                Ok(i)
            } else {
                Err(Error::Invalid(format!(
                    "intervention at position {i}, but the pass has {p} positions"
                )))
            }
        };
        match self {
            Pos::All => m.iter_mut().for_each(|v| *v = 1.0),
            Pos::At(i) => m[check(*i)?] = 1.0,
            Pos::Last if p > 0 => m[p - 1] = 1.0,
            Pos::Last => {}
            Pos::List(v) => {
                for &i in v {
                    m[check(i)?] = 1.0;
                }
            }
        }
        Ok(Tensor::from_vec(m, p, dev)?)
    }
}

/// What an ablated latent becomes.
#[derive(Clone, Debug)]
pub enum Ablation {
    /// Zero.
    Zero,
    /// Its mean activation: a `[n_latents]` tensor (e.g. the mean over a dataset).
    Mean(Tensor),
    /// This value (ARENA's "set the latent to v"; steering by clamping).
    Value(f64),
}

/// Where a dictionary's latents live in a hooked run: implemented by `Sae`
/// (`<hook>.hook_sae_acts_post`, `d_sae` latents).
pub trait LatentSite {
    /// The full hook name of the latent activations `[batch, pos, n_latents]`.
    fn latent_hook(&self) -> String;
    /// The number of latents.
    fn n_latents(&self) -> usize;
}

/// `mask` (`[p]`) reshaped to broadcast over dimension 1 of an activation of rank `rank`.
fn along_pos(mask: &Tensor, rank: usize) -> Result<Tensor> {
    let mut shape = vec![1; rank.max(2)];
    shape[1] = mask.dim(0)?;
    Ok(mask.reshape(shape)?)
}

/// `x` where `m` is 0, `target` where `m` is 1 (`m` broadcasts to `x`).
fn blend(x: &Tensor, m: &Tensor, target: &Tensor) -> Result<Tensor> {
    let m = m.to_dtype(x.dtype())?.broadcast_as(x.shape())?;
    let keep = (1.0 - &m)?;
    let target = target.to_dtype(x.dtype())?.broadcast_as(x.shape())?;
    Ok(((x * keep)? + (target * m)?)?)
}

fn pos_len(x: &Tensor, what: &str) -> Result<usize> {
    if x.rank() < 2 {
        return Err(Error::Invalid(format!(
            "{what}: the activation must be [batch, pos, ...], got {:?}",
            x.dims()
        )));
    }
    Ok(x.dim(1)?)
}

impl<'a> Hooks<'a> {
    /// Ablate `latents` of `site` (an SAE spliced into the run) at `pos`: set them to zero,
    /// their mean, or a value. Run with the SAE attached (and usually its error term).
    pub fn ablate_latents(
        self,
        site: &impl LatentSite,
        pos: impl Into<Pos>,
        latents: &[usize],
        how: Ablation,
    ) -> Self {
        let (pos, n, latents) = (pos.into(), site.n_latents(), latents.to_vec());
        self.with(site.latent_hook(), move |x: &Tensor, name: &str| {
            let p = pos_len(x, name)?;
            let d = x.dim(x.rank() - 1)?;
            let mut fm = vec![0f32; d];
            for &l in &latents {
                if l >= n || l >= d {
                    return Err(Error::Invalid(format!(
                        "latent {l} is out of range: `{name}` has {d} latents"
                    )));
                }
                fm[l] = 1.0;
            }
            let fm = Tensor::from_vec(fm, d, x.device())?;
            let m = along_pos(&pos.mask(p, x.device())?, x.rank())?.broadcast_mul(&fm)?;
            let target = match &how {
                Ablation::Zero => Tensor::zeros(d, DType::F32, x.device())?,
                Ablation::Value(v) => Tensor::full(*v as f32, d, x.device())?,
                Ablation::Mean(t) => t.flatten_all()?.to_device(x.device())?,
            };
            if target.dim(0)? != d {
                return Err(Error::Invalid(format!(
                    "mean ablation of `{name}`: the mean has {} values, the activation {d} latents",
                    target.dim(0)?
                )));
            }
            Ok(Some(blend(x, &m, &target)?))
        })
    }

    /// Set `latents` of `site` to `value` at `pos` (ARENA's clamping / steering by latent).
    pub fn set_latents(
        self,
        site: &impl LatentSite,
        pos: impl Into<Pos>,
        latents: &[usize],
        value: f64,
    ) -> Self {
        self.ablate_latents(site, pos, latents, Ablation::Value(value))
    }

    /// Add `coeff · vector` (`[d]`, e.g. an SAE decoder row) to the activation `hook` at `pos`
    /// (activation steering).
    pub fn steer<N: ActName>(
        self,
        hook: N,
        vector: &Tensor,
        coeff: f64,
        pos: impl Into<Pos>,
    ) -> Self {
        let (vector, pos) = (vector.clone(), pos.into());
        self.with(hook, move |x: &Tensor, name: &str| {
            let v = vector
                .flatten_all()?
                .to_device(x.device())?
                .to_dtype(x.dtype())?;
            let d = x.dim(x.rank() - 1)?;
            if v.dim(0)? != d {
                return Err(Error::Invalid(format!(
                    "steering `{name}`: the vector has {} values, the activation width is {d}",
                    v.dim(0)?
                )));
            }
            let m = along_pos(&pos.mask(pos_len(x, name)?, x.device())?, x.rank())?
                .to_dtype(x.dtype())?;
            let add = (m.broadcast_mul(&v)? * coeff)?;
            Ok(Some(x.broadcast_add(&add)?))
        })
    }

    /// Replace the activation `hook` at `pos` by `source` (the same activation from another
    /// run, e.g. `clean_cache.get(hook)?`; batch 1 broadcasts) — activation patching.
    pub fn patch<N: ActName>(
        self,
        hook: N,
        source: impl std::borrow::Borrow<Tensor>,
        pos: impl Into<Pos>,
    ) -> Self {
        let (source, pos) = (source.borrow().clone(), pos.into());
        self.with(hook, move |x: &Tensor, name: &str| {
            let s = source.to_device(x.device())?;
            let fits = s.rank() == x.rank()
                && s.dims()[1..] == x.dims()[1..]
                && (s.dim(0)? == x.dim(0)? || s.dim(0)? == 1);
            if !fits {
                return Err(Error::Invalid(format!(
                    "patching `{name}`: the source has shape {:?}, the activation {:?}",
                    s.dims(),
                    x.dims()
                )));
            }
            let m = along_pos(&pos.mask(pos_len(x, name)?, x.device())?, x.rank())?;
            Ok(Some(blend(x, &m, &s)?))
        })
    }

    /// Multiply head `head` of layer `layer` by `scale` (its `hook_z`, so its output is
    /// scaled) at every position.
    pub fn scale_head(self, layer: usize, head: usize, scale: f64) -> Self {
        self.with(("z", layer), move |z: &Tensor, name: &str| {
            if z.rank() != 4 || head >= z.dim(2)? {
                return Err(Error::Invalid(format!(
                    "head {head} of `{name}` (shape {:?}) does not exist",
                    z.dims()
                )));
            }
            let h = z.dim(2)?;
            let mut s = vec![1f32; h];
            s[head] = scale as f32;
            let s = Tensor::from_vec(s, (1, 1, h, 1), z.device())?.to_dtype(z.dtype())?;
            Ok(Some(z.broadcast_mul(&s)?))
        })
    }

    /// Zero-ablate head `head` of layer `layer` (its `hook_z`) at every position.
    pub fn zero_head(self, layer: usize, head: usize) -> Self {
        self.scale_head(layer, head, 0.0)
    }
}
