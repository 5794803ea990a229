//! Gradients of a metric at hook points through candle's autograd, and attribution patching of
//! SAE latents (ARENA §1.5: `get_cache_fwd_and_bwd`, `attr = grad ⊙ act` at
//! `<hook>.hook_sae_acts_post`).
//!
//! A hook point is differentiated by adding a zero [`Var`] to its activation, so the graph is
//! never cut and several hook points can be differentiated in one backward pass (the gradient
//! at an earlier point includes every path through the later ones). Downstream of the first
//! such point the forward pass runs on differentiable candle ops (the model's fused kernels are
//! used only where no gradient is tracked).
use super::metric::Metric;
use super::sites::resolve_pos;
use crate::error::{Error, Result};
use crate::hooks::Hooks;
use crate::model::HookedModel;
use crate::model::SaeRunOptions;
use crate::sae::Sae;
use crate::tensor_ids;
use candle_core::{DType, IndexOp, Tensor, Var};
use std::cell::RefCell;

/// What [`get_cache_fwd_and_bwd`] returns: the metric's value, the logits, and at each
/// requested hook point its activation (forward) and the metric's gradient with respect to it
/// (backward, what a TL backward hook sees), both detached, in forward order.
#[derive(Clone, Debug)]
pub struct FwdBwdCache {
    /// The metric's value on this forward pass.
    pub metric: f64,
    /// The logits `[batch, pos, d_vocab]` of the forward pass (detached).
    pub logits: Tensor,
    fwd: Vec<(String, Tensor)>,
    bwd: Vec<(String, Tensor)>,
}

impl FwdBwdCache {
    fn find<'a>(v: &'a [(String, Tensor)], name: &str) -> Result<&'a Tensor> {
        v.iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
            .ok_or_else(|| Error::UnknownHook {
                name: name.to_string(),
                suggestions: v.iter().map(|(n, _)| n.clone()).collect(),
            })
    }
    /// The activation at `name`.
    pub fn fwd(&self, name: &str) -> Result<&Tensor> {
        Self::find(&self.fwd, name)
    }
    /// `∂ metric / ∂ activation` at `name` (same shape as the activation).
    pub fn bwd(&self, name: &str) -> Result<&Tensor> {
        Self::find(&self.bwd, name)
    }
    /// The hook names, in forward order.
    pub fn names(&self) -> Vec<&str> {
        self.fwd.iter().map(|(n, _)| n.as_str()).collect()
    }
}

/// ARENA's `get_cache_fwd_and_bwd`: one forward pass with `saes` spliced in (`opts`; use
/// [`SaeRunOptions::with_error_term`] for attribution patching), then one backward pass of
/// `metric`, keeping the activation and the gradient at each of `hook_names` (any hook
/// point valid with those SAEs, e.g. `blocks.15.hook_resid_post.hook_sae_acts_post` or
/// `hook_embed`). A hook point the metric does not depend on gets a zero gradient.
pub fn get_cache_fwd_and_bwd(
    model: &HookedModel,
    tokens: &Tensor,
    saes: &[&Sae],
    opts: &SaeRunOptions,
    hook_names: &[&str],
    metric: &Metric,
) -> Result<FwdBwdCache> {
    if hook_names.is_empty() {
        return Err(Error::Invalid(
            "get_cache_fwd_and_bwd: no hook names given; name the hook points to differentiate"
                .into(),
        ));
    }
    for (i, n) in hook_names.iter().enumerate() {
        if hook_names[..i].contains(n) {
            return Err(Error::Invalid(format!(
                "get_cache_fwd_and_bwd: hook `{n}` is named twice"
            )));
        }
    }
    let toks = model.check_tokens(tokens)?;
    // The model and SAEs may come from another evcxr cell, with another tensor-id counter.
    let sae_tensors = saes
        .iter()
        .flat_map(|s| s.tensors().into_iter().map(|(_, t)| t));
    tensor_ids::advance_past(
        model
            .tensors()
            .into_iter()
            .chain(sae_tensors)
            .chain([&toks]),
    );
    let (mut logits, mut slots, mut m, foreign) =
        forward_and_metric(model, &toks, saes, opts, hook_names, metric)?;
    if foreign {
        // A custom metric from another evcxr cell made its tensors with that cell's counter,
        // whose ids may coincide with this pass's: this cell's ids now start far above it.
        (logits, slots, m, _) = forward_and_metric(model, &toks, saes, opts, hook_names, metric)?;
    }
    let value = m.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    if !value.is_finite() {
        return Err(Error::Invalid(format!(
            "the metric is {value}; gradients of a non-finite metric are meaningless"
        )));
    }
    let grads = m.backward()?;
    let mut fwd = Vec::with_capacity(slots.len());
    let mut bwd = Vec::with_capacity(slots.len());
    for (name, act, var) in slots {
        let g = match grads.get(var.as_tensor()) {
            Some(g) => g.detach(),
            None => act.zeros_like()?,
        };
        fwd.push((name.clone(), act));
        bwd.push((name, g));
    }
    Ok(FwdBwdCache {
        metric: value,
        logits: logits.detach(),
        fwd,
        bwd,
    })
}

/// Slots of the differentiated hook points: (name, activation, the zero [`Var`] added to it).
type Slots = Vec<(String, Tensor, Var)>;

/// One forward pass with a zero [`Var`] added at each of `hook_names`, and the metric. The last
/// value is `true` when a custom metric's result was not made by this copy of candle (see
/// `crate::tensor_ids`).
fn forward_and_metric(
    model: &HookedModel,
    toks: &Tensor,
    saes: &[&Sae],
    opts: &SaeRunOptions,
    hook_names: &[&str],
    metric: &Metric,
) -> Result<(Tensor, Slots, Tensor, bool)> {
    let slots: RefCell<Slots> = RefCell::new(Vec::new());
    let mut hooks = Hooks::new();
    for name in hook_names {
        let slots = &slots;
        hooks.add(*name, move |x: &Tensor, n: &str| {
            let zero = Var::zeros(x.shape(), x.dtype(), x.device())?;
            let y = (x + zero.as_tensor())?;
            slots.borrow_mut().push((n.to_string(), x.detach(), zero));
            Ok(Some(y))
        });
    }
    let logits = model
        .run(toks)
        .saes(saes)
        .sae_options(opts)
        .hooks(hooks)
        .logits()?;
    let slots = slots.into_inner();
    for n in hook_names {
        match slots.iter().filter(|(s, _, _)| s == n).count() {
            1 => {}
            0 => {
                return Err(Error::Invalid(format!(
                    "hook `{n}` did not fire in the forward pass (an SAE hook point needs its SAE \
                     in `saes`)"
                )))
            }
            k => {
                return Err(Error::Invalid(format!(
                    "hook `{n}` fired {k} times in one forward pass; differentiate it separately"
                )))
            }
        }
    }
    let (m, foreign) = match metric {
        Metric::Custom(f) => {
            let (raw, foreign) = tensor_ids::call_foreign(|| f(&logits, toks))?;
            (metric.check_scalar(raw)?, foreign)
        }
        _ => (metric.eval(model, &logits, toks)?, false),
    };
    Ok((logits, slots, m, foreign))
}

/// Attribution patching of one SAE's latents: activations, gradients and
/// `attribution = grad ⊙ act`, all `[batch, pos, d_sae]`, at `<hook>.hook_sae_acts_post`.
///
/// `attribution[b, p, i]` is the first-order estimate of `metric(clean) − metric(latent i
/// zeroed at position p of prompt b)`: ARENA's ablation effect, with the same sign. The metric
/// averages over the batch, so summing over the batch ([`LatentAttribution::at_pos`]) gives
/// the mean per-prompt attribution (ARENA's `.mean(0)` of a summed metric).
#[derive(Clone, Debug)]
pub struct LatentAttribution {
    /// `<sae hook>.hook_sae_acts_post`.
    pub hook: String,
    /// The metric's value with the SAE spliced in with its error term (= the clean model's).
    pub metric: f64,
    /// Latent activations at `hook_sae_acts_post`, `[batch, pos, d_sae]`.
    pub acts: Tensor,
    /// Gradient of the metric with respect to those activations, `[batch, pos, d_sae]`.
    pub grads: Tensor,
    /// `grads ⊙ acts`, `[batch, pos, d_sae]`: first-order estimate of each latent's ablation
    /// effect.
    pub attribution: Tensor,
}

impl LatentAttribution {
    /// The attribution of every latent at `pos` (None = last), summed over the batch:
    /// `[d_sae]` values.
    pub fn at_pos(&self, pos: Option<usize>) -> Result<Vec<f32>> {
        let p = resolve_pos(pos, self.attribution.dim(1)?)?;
        Ok(self
            .attribution
            .i((.., p))?
            .sum(0)?
            .to_dtype(DType::F32)?
            .to_vec1()?)
    }

    /// The `k` latents with the best attribution at `pos` (None = last), ranked by `by`, as
    /// `(latent, attribution)`.
    pub fn top_k(
        &self,
        pos: Option<usize>,
        k: usize,
        by: super::dla::TopBy,
    ) -> Result<Vec<(usize, f32)>> {
        Ok(super::dla::top_k_latents(&self.at_pos(pos)?, k, by))
    }
}

/// Attribution patching (ARENA §1.5): splice `sae` in with its error term, differentiate
/// `metric` at `<hook>.hook_sae_acts_post` and return `grad ⊙ act`. The error term is
/// detached, as in SAELens, so the gradient flows through the decoder and the rest of the
/// model only.
pub fn attribution_patching(
    model: &HookedModel,
    tokens: &Tensor,
    sae: &Sae,
    metric: &Metric,
) -> Result<LatentAttribution> {
    let hook = format!("{}.hook_sae_acts_post", sae.hook_name_out());
    let c = get_cache_fwd_and_bwd(
        model,
        tokens,
        &[sae],
        &SaeRunOptions::with_error_term(),
        &[hook.as_str()],
        metric,
    )?;
    let acts = c.fwd(&hook)?.to_dtype(DType::F32)?;
    let grads = c.bwd(&hook)?.to_dtype(DType::F32)?;
    let attribution = (&grads * &acts)?;
    Ok(LatentAttribution {
        hook,
        metric: c.metric,
        acts,
        grads,
        attribution,
    })
}
