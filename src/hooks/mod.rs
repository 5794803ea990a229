//! Hook points, the bottom layer: forward hooks that read (and may replace) activations, name
//! filters for caching, hook names, and the [`Replacement`] trait through which SAEs splice in.
//! It knows nothing of models or SAEs.
mod interventions;
mod names;
mod replace;

pub use interventions::{Ablation, LatentSite, Pos};
pub(crate) use names::BlockHookNames;
pub use names::{get_act_name, nearest_names, ActName, HookName};
pub(crate) use replace::Attached;
pub use replace::{ObserveFn, Replacement, SpliceInput};

use crate::error::{Error, Result};
use candle_core::Tensor;
use std::collections::HashMap;

/// A forward hook: gets the activation and the hook's name; returns `Some(replacement)` to
/// replace the activation (same shape) or `None` to leave it unchanged.
pub type HookFn<'a> = Box<dyn FnMut(&Tensor, &str) -> Result<Option<Tensor>> + 'a>;

enum HookTarget<'a> {
    Name(String),
    Filter(Box<dyn Fn(&str) -> bool + 'a>),
}

/// A set of forward hooks for the model's `run_with_hooks` (TL's `fwd_hooks`).
///
/// ```no_run
/// # use saescope::*;
/// # let model = HookedModel::from_pretrained("smollm2").unwrap();
/// # let tokens = model.to_tokens("Hello").unwrap();
/// let mut hooks = Hooks::new();
/// // Zero-ablate head 4 of layer 3.
/// hooks.add("blocks.3.attn.hook_z", |z: &Tensor, _| {
///     let mask = Tensor::ones(z.dims(), z.dtype(), z.device())?;
///     let mask = mask.slice_assign(&[0..z.dim(0)?, 0..z.dim(1)?, 4..5, 0..z.dim(3)?],
///                                  &Tensor::zeros((z.dim(0)?, z.dim(1)?, 1, z.dim(3)?), z.dtype(), z.device())?)?;
///     Ok(Some(z.mul(&mask)?))
/// });
/// let logits = model.run_with_hooks(&tokens, hooks).unwrap();
/// ```
#[derive(Default)]
pub struct Hooks<'a> {
    hooks: Vec<(HookTarget<'a>, HookFn<'a>)>,
}

impl<'a> Hooks<'a> {
    /// No hooks.
    pub fn new() -> Self {
        Hooks { hooks: Vec::new() }
    }
    /// Hook the activation named `name` (a full TL name or a `get_act_name` tuple).
    pub fn add<N: ActName>(
        &mut self,
        name: N,
        f: impl FnMut(&Tensor, &str) -> Result<Option<Tensor>> + 'a,
    ) -> &mut Self {
        self.hooks
            .push((HookTarget::Name(name.act_name()), Box::new(f)));
        self
    }
    /// Hook every activation whose name satisfies `filter`.
    pub fn add_filter(
        &mut self,
        filter: impl Fn(&str) -> bool + 'a,
        f: impl FnMut(&Tensor, &str) -> Result<Option<Tensor>> + 'a,
    ) -> &mut Self {
        self.hooks
            .push((HookTarget::Filter(Box::new(filter)), Box::new(f)));
        self
    }
    /// [`Hooks::add`] by value, for chaining: `Hooks::new().with(name, f).with(..)`.
    pub fn with<N: ActName>(
        mut self,
        name: N,
        f: impl FnMut(&Tensor, &str) -> Result<Option<Tensor>> + 'a,
    ) -> Self {
        self.add(name, f);
        self
    }
    /// Append every hook of `other` (they run after this set's hooks on the same name).
    pub fn extend(&mut self, other: Hooks<'a>) {
        self.hooks.extend(other.hooks);
    }
    /// True when no hook is set.
    pub fn is_empty(&self) -> bool {
        self.hooks.is_empty()
    }
    /// The number of hooks.
    pub fn len(&self) -> usize {
        self.hooks.len()
    }
    /// Check every named hook against the model's hook names.
    pub(crate) fn validate(&self, valid: &[String]) -> Result<()> {
        for (t, _) in &self.hooks {
            if let HookTarget::Name(n) = t {
                check_name(n, valid)?;
            }
        }
        Ok(())
    }
}

/// Which activations `run_with_cache` keeps (TL's `names_filter`).
pub enum NamesFilter<'a> {
    /// Keep every activation (TL's `names_filter=None`).
    All,
    /// Keep exactly these full hook names.
    Names(Vec<String>),
    /// Keep the activations whose full hook name satisfies the predicate.
    Fn(Box<dyn Fn(&str) -> bool + 'a>),
}

impl<'a> NamesFilter<'a> {
    /// Keep exactly these activations (full names or `get_act_name` tuples).
    pub fn names<N: ActName>(names: impl IntoIterator<Item = N>) -> Self {
        NamesFilter::Names(names.into_iter().map(|n| n.act_name()).collect())
    }
    /// Keep the activations whose name satisfies `f`.
    pub fn func(f: impl Fn(&str) -> bool + 'a) -> Self {
        NamesFilter::Fn(Box::new(f))
    }
    pub(crate) fn matches(&self, name: &str) -> bool {
        match self {
            NamesFilter::All => true,
            NamesFilter::Names(v) => v.iter().any(|n| n == name),
            NamesFilter::Fn(f) => f(name),
        }
    }
    pub(crate) fn validate(&self, valid: &[String]) -> Result<()> {
        if let NamesFilter::Names(v) = self {
            for n in v {
                check_name(n, valid)?;
            }
        }
        Ok(())
    }
}

impl<N: ActName> From<N> for NamesFilter<'_> {
    fn from(name: N) -> Self {
        NamesFilter::names([name])
    }
}
impl<N: ActName, const K: usize> From<[N; K]> for NamesFilter<'_> {
    fn from(names: [N; K]) -> Self {
        NamesFilter::names(names)
    }
}
impl From<Vec<&str>> for NamesFilter<'_> {
    fn from(v: Vec<&str>) -> Self {
        NamesFilter::names(v)
    }
}
impl From<Vec<String>> for NamesFilter<'_> {
    fn from(v: Vec<String>) -> Self {
        NamesFilter::names(v)
    }
}

/// Error unless `name` is one of `valid`; the error lists the nearest valid names.
pub(crate) fn check_name(name: &str, valid: &[String]) -> Result<()> {
    if valid.iter().any(|v| v == name) {
        return Ok(());
    }
    Err(Error::UnknownHook {
        name: name.to_string(),
        suggestions: nearest_names(name, valid.iter().map(|s| s.as_str()), 5),
    })
}

/// What one forward pass does at each hook point: run user hooks, then maybe cache.
#[derive(Default)]
pub(crate) struct HookCtx<'h, 'f> {
    pub hooks: Option<&'h mut Hooks<'f>>,
    pub filter: Option<&'h NamesFilter<'f>>,
    pub cache: Vec<(String, Tensor)>,
    /// Replacements (SAEs) spliced into this pass (HookedSAETransformer semantics).
    pub saes: &'h [Attached<'h>],
    /// Inputs of replacements that read another hook (transcoders), by replacement index.
    pub captured: Vec<Option<Tensor>>,
}

impl HookCtx<'_, '_> {
    /// Whether a hook or the cache observes the hook point `name` (if not, the forward pass may
    /// fuse across it).
    #[inline]
    pub fn wants(&self, name: &str) -> bool {
        let hooked = self.hooks.as_deref().is_some_and(|h| {
            h.hooks.iter().any(|(t, _)| match t {
                HookTarget::Name(n) => n == name,
                HookTarget::Filter(p) => p(name),
            })
        });
        hooked
            || self.filter.is_some_and(|f| f.matches(name))
            || self
                .saes
                .iter()
                .any(|a| a.rep.hook_in() == name || a.rep.hook_out() == name)
    }

    /// The hook point `name`: returns the (possibly replaced) activation.
    #[inline]
    pub fn hp(&mut self, name: &str, x: Tensor) -> Result<Tensor> {
        if self.hooks.is_none() && self.filter.is_none() && self.saes.is_empty() {
            return Ok(x);
        }
        if !self.saes.is_empty() {
            let saes = self.saes;
            for (i, a) in saes.iter().enumerate() {
                if a.rep.hook_in() == name && a.rep.hook_out() != name {
                    self.captured[i] = Some(x.clone());
                }
            }
            if let Some(i) = saes.iter().position(|a| a.rep.hook_out() == name) {
                // The replacement takes this hook point's place: its own hook points fire.
                return replace::splice(self, &saes[i], i, name, x);
            }
        }
        self.observe(name, x)
    }

    /// A hook point that exists only while replacements are spliced in (HookedSAETransformer's
    /// `blocks.L.mlp.hook_in`).
    #[inline]
    pub fn hp_sae_only(&mut self, name: &str, x: Tensor) -> Result<Tensor> {
        if self.saes.is_empty() {
            return Ok(x);
        }
        self.hp(name, x)
    }

    /// Run the user hooks on `name`, then cache it if the filter asks.
    pub fn observe(&mut self, name: &str, x: Tensor) -> Result<Tensor> {
        let mut x = x;
        if let Some(hooks) = self.hooks.as_deref_mut() {
            for (target, f) in hooks.hooks.iter_mut() {
                let hit = match target {
                    HookTarget::Name(n) => n == name,
                    HookTarget::Filter(p) => p(name),
                };
                if !hit {
                    continue;
                }
                if let Some(new) = f(&x, name)? {
                    if new.dims() != x.dims() {
                        return Err(Error::Invalid(format!(
                            "hook on `{name}` returned shape {:?}, but the activation has shape {:?}",
                            new.dims(),
                            x.dims()
                        )));
                    }
                    x = new.to_dtype(x.dtype())?;
                }
            }
        }
        if let Some(filter) = self.filter {
            if filter.matches(name) {
                self.cache.push((name.to_string(), x.clone()));
            }
        }
        Ok(x)
    }

    pub fn into_map(self) -> (Vec<String>, HashMap<String, Tensor>) {
        let order = self.cache.iter().map(|(n, _)| n.clone()).collect();
        (order, self.cache.into_iter().collect())
    }
}
