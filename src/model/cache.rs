//! `ActivationCache`: the activations one forward pass kept, with TL's residual-stream helpers.
use super::blocks::Norm;
use super::ModelConfig;
use crate::error::{Error, Result};
use crate::hooks::{nearest_names, ActName};
use candle_core::{Tensor, D};
use std::collections::HashMap;
use std::sync::Arc;

/// Which residual stream [`ActivationCache::accumulated_resid`], `decompose_resid` and
/// `apply_ln_to_stack` use, with TL's keyword arguments by name (all off / `None` by default).
///
/// ```no_run
/// # use saescope::prelude::*;
/// # let model = HookedModel::from_pretrained("smollm2")?;
/// # let (_, cache) = model.run_with_cache("Hi")?;
/// let (stack, labels) = cache.accumulated_resid(Resid::default().apply_ln())?;
/// let (parts, labels) = cache.decompose_resid(Resid::at_layer(5).mlp_input())?;
/// # Ok::<(), saescope::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resid {
    /// The layer whose input is read (`None`: all layers, ending at the final residual).
    pub layer: Option<usize>,
    /// `accumulated_resid`: include each layer's `resid_mid`.
    pub incl_mid: bool,
    /// `decompose_resid` / `apply_ln_to_stack`: the stream the MLP reads (`ln2`).
    pub mlp_input: bool,
    /// Apply the norm that reads the stream at `layer` (TL's `apply_ln`).
    pub apply_ln: bool,
}

impl Resid {
    /// Up to layer `layer` (TL's `layer=`).
    pub fn at_layer(layer: usize) -> Self {
        Resid {
            layer: Some(layer),
            ..Default::default()
        }
    }
    /// With TL's `apply_ln=True`.
    pub fn apply_ln(self) -> Self {
        Resid {
            apply_ln: true,
            ..self
        }
    }
    /// With TL's `incl_mid=True`.
    pub fn incl_mid(self) -> Self {
        Resid {
            incl_mid: true,
            ..self
        }
    }
    /// With TL's `mlp_input=True`.
    pub fn mlp_input(self) -> Self {
        Resid {
            mlp_input: true,
            ..self
        }
    }
}

/// Activations by TL hook name, in the order the forward pass produced them.
#[derive(Clone)]
pub struct ActivationCache {
    order: Vec<String>,
    map: HashMap<String, Tensor>,
    cfg: Arc<ModelConfig>,
    /// The model's unembedding `W_U [d_model, d_vocab]` (shared, not copied), for `logit_attrs`.
    w_u: Tensor,
    /// The model's final norm, for TL's `recompute_ln` (logit lens on `accumulated_resid`).
    ln_final: Norm,
}

impl ActivationCache {
    pub(crate) fn new(
        order: Vec<String>,
        map: HashMap<String, Tensor>,
        cfg: Arc<ModelConfig>,
        w_u: Tensor,
        ln_final: Norm,
    ) -> Self {
        ActivationCache {
            order,
            map,
            cfg,
            w_u,
            ln_final,
        }
    }

    /// The activation `name`: a full hook name (`"blocks.5.hook_resid_pre"`) or a `get_act_name`
    /// tuple (`("resid_pre", 5)`). A missing name gives an error listing the nearest cached names.
    /// The tensor is returned by value (a cheap handle: candle tensors share their storage), so
    /// `let acts = cache.get(..)?;` can live on in a notebook cell after the cache.
    pub fn get<N: ActName>(&self, name: N) -> Result<Tensor> {
        let name = name.act_name();
        match self.map.get(&name) {
            Some(t) => Ok(t.clone()),
            None => Err(Error::UnknownHook {
                suggestions: nearest_names(&name, self.keys(), 5),
                name,
            }),
        }
    }
    /// Like [`get`](Self::get) but `None` when the activation was not cached.
    pub fn try_get<N: ActName>(&self, name: N) -> Option<&Tensor> {
        self.map.get(&name.act_name())
    }
    /// Whether the activation `name` was cached.
    pub fn contains<N: ActName>(&self, name: N) -> bool {
        self.map.contains_key(&name.act_name())
    }
    /// Cached names in forward order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.order.iter().map(|s| s.as_str())
    }
    /// `(name, tensor)` pairs in forward order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.order.iter().map(|n| (n.as_str(), &self.map[n]))
    }
    /// Number of cached activations.
    pub fn len(&self) -> usize {
        self.order.len()
    }
    /// `true` if nothing was cached.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
    /// The config of the model that produced the cache.
    pub fn cfg(&self) -> &ModelConfig {
        &self.cfg
    }
    /// Consume the cache into its `(name, tensor)` pairs in forward order.
    pub fn into_vec(mut self) -> Vec<(String, Tensor)> {
        let order = std::mem::take(&mut self.order);
        order
            .into_iter()
            .filter_map(|n| self.map.remove(&n).map(|t| (n, t)))
            .collect()
    }

    fn resolve_layer(&self, layer: Option<usize>) -> Result<usize> {
        let n = self.cfg.n_layers;
        match layer {
            None => Ok(n),
            Some(l) if l <= n => Ok(l),
            Some(l) => Err(Error::Invalid(format!(
                "layer {l} is out of range: the model has {n} layers (use 0..={n})"
            ))),
        }
    }

    /// TL's `accumulated_resid`: the residual stream before each layer up to `layer` (None = all,
    /// ending with the final `resid_post`, labelled `final_post`), stacked on a new leading dim.
    /// Returns `([n_components, ..., d_model], labels)`. With `apply_ln`, the norm reading the
    /// stream at `layer` is applied; at the final layer TL recomputes `ln_final` on each
    /// component (`recompute_ln`), elsewhere it divides by the cached scale.
    pub fn accumulated_resid(&self, opts: Resid) -> Result<(Tensor, Vec<String>)> {
        let Resid {
            layer,
            incl_mid,
            apply_ln,
            ..
        } = opts;
        let layer = self.resolve_layer(layer)?;
        let n = self.cfg.n_layers;
        let (mut comps, mut labels) = (Vec::new(), Vec::new());
        for l in 0..=layer {
            if l == n {
                comps.push(self.get(("resid_post", n - 1))?.clone());
                labels.push("final_post".to_string());
                continue;
            }
            comps.push(self.get(("resid_pre", l))?.clone());
            labels.push(format!("{l}_pre"));
            if incl_mid && l < layer {
                comps.push(self.get(("resid_mid", l))?.clone());
                labels.push(format!("{l}_mid"));
            }
        }
        let mut stack = Tensor::stack(&comps, 0)?;
        if apply_ln {
            let recompute = layer == self.cfg.n_layers;
            stack = self.apply_ln_with(&stack, Some(layer), false, recompute)?;
        }
        Ok((stack, labels))
    }

    /// TL's `decompose_resid`: the outputs of each component writing into the residual stream
    /// before `layer` (`embed`, `pos_embed`, then `{l}_attn_out`, `{l}_mlp_out`); with
    /// `mlp_input`, also `attn_out` of `layer` itself.
    pub fn decompose_resid(&self, opts: Resid) -> Result<(Tensor, Vec<String>)> {
        let Resid {
            layer,
            mlp_input,
            apply_ln,
            ..
        } = opts;
        let layer = self.resolve_layer(layer)?;
        let (mut comps, mut labels) = (Vec::new(), Vec::new());
        for (hook, label) in [("hook_embed", "embed"), ("hook_pos_embed", "pos_embed")] {
            if let Some(t) = self.try_get(hook) {
                comps.push(t.clone());
                labels.push(label.to_string());
            }
        }
        for l in 0..layer {
            comps.push(self.get(("attn_out", l))?.clone());
            labels.push(format!("{l}_attn_out"));
            comps.push(self.get(("mlp_out", l))?.clone());
            labels.push(format!("{l}_mlp_out"));
        }
        if mlp_input && layer < self.cfg.n_layers {
            comps.push(self.get(("attn_out", layer))?.clone());
            labels.push(format!("{layer}_attn_out"));
        }
        let mut stack = Tensor::stack(&comps, 0)?;
        if apply_ln {
            stack = self.apply_ln_with(&stack, Some(layer), mlp_input, false)?;
        }
        Ok((stack, labels))
    }

    /// TL's `apply_ln_to_stack`: centre (LayerNorm models) and divide by the *cached* scale of the
    /// norm that reads the residual stream at `layer` (`ln1`, or `ln2` with `mlp_input`;
    /// `ln_final` for None or `n_layers`). `stack` is `[..., batch, pos, d_model]`. Like TL, no
    /// weight or bias is applied (the model's weights are assumed folded).
    /// (`opts.layer` and `opts.mlp_input` are used.)
    pub fn apply_ln_to_stack(&self, stack: &Tensor, opts: Resid) -> Result<Tensor> {
        self.apply_ln_with(stack, opts.layer, opts.mlp_input, false)
    }

    /// `apply_ln_to_stack` with TL's `recompute_ln`: at the final layer, run the model's
    /// `ln_final` on each component with its own statistics (and its weights, if not folded)
    /// instead of dividing by the cached scale. `accumulated_resid(apply_ln)` does this at the
    /// final layer, so the logit lens sees each layer's residual as the unembedding would.
    fn apply_ln_with(
        &self,
        stack: &Tensor,
        layer: Option<usize>,
        mlp_input: bool,
        recompute_ln: bool,
    ) -> Result<Tensor> {
        let layer = self.resolve_layer(layer)?;
        if recompute_ln && layer == self.cfg.n_layers {
            return self.ln_final.apply(stack);
        }
        let mut stack = stack.clone();
        if self.cfg.normalization.is_layer_norm() {
            stack = stack.broadcast_sub(&stack.mean_keepdim(D::Minus1)?)?;
        }
        let scale_name = if layer == self.cfg.n_layers {
            "ln_final.hook_scale".to_string()
        } else {
            format!(
                "blocks.{layer}.ln{}.hook_scale",
                if mlp_input { 2 } else { 1 }
            )
        };
        let scale = self.get(scale_name.as_str())?;
        Ok(stack.broadcast_div(&scale)?)
    }

    /// TL's `logit_attrs`: each component's direct contribution to the logit of `tokens` (minus
    /// that of `incorrect`, if given), after the final LN's cached scale. `stack` is
    /// `[..., batch, pos, d_model]`; `tokens` holds one token (broadcast) or one per position of
    /// the trailing dims. Returns `stack`'s shape without `d_model`.
    pub fn logit_attrs(
        &self,
        stack: &Tensor,
        tokens: &[u32],
        incorrect: Option<&[u32]>,
    ) -> Result<Tensor> {
        let dirs = self.residual_directions(tokens)?;
        let dirs = match incorrect {
            Some(inc) => (dirs - self.residual_directions(inc)?)?,
            None => dirs,
        };
        let scaled = self.apply_ln_with(stack, None, false, false)?;
        Ok(scaled.broadcast_mul(&dirs)?.sum(D::Minus1)?)
    }

    /// `W_U[:, tokens]ᵀ`: `[d_model]` for one token, `[n, d_model]` for several.
    fn residual_directions(&self, tokens: &[u32]) -> Result<Tensor> {
        if tokens.is_empty() {
            return Err(Error::Invalid("logit_attrs: no tokens given".into()));
        }
        let ids = Tensor::new(tokens, self.w_u.device())?;
        let d = self.w_u.index_select(&ids, 1)?.t()?.contiguous()?;
        Ok(if tokens.len() == 1 { d.squeeze(0)? } else { d })
    }
}

impl std::fmt::Debug for ActivationCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ActivationCache with keys [")?;
        for (i, (n, t)) in self.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{n}: {:?}", t.dims())?;
        }
        write!(f, "]")
    }
}
