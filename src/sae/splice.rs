//! Splicing SAEs into a [`HookedModel`](crate::HookedModel), with SAELens's `HookedSAETransformer` semantics
//! (spec §C): while an SAE is attached at a hook, that hook point is replaced by the SAE, whose
//! hook points `<hook>.hook_sae_{input,acts_pre,acts_post,recons,error,output}` fire instead;
//! with `use_error_term` the SAE's error (recomputed without hooks, detached) is added back so
//! that without interventions the model's output equals the clean model's.
use super::Sae;
use crate::error::{Error, Result};
use crate::hooks::{ActivationCache, HookCtx, Hooks, NamesFilter};
use crate::model::{GenerateOptions, Generation, HookedModel, Prompt};
use candle_core::Tensor;

/// Which token positions bypass the SAEs (SAELens's `exclude_special_tokens`).
#[derive(Clone, Debug, Default, PartialEq)]
pub enum ExcludeSpecialTokens {
    /// Every position goes through the SAE.
    #[default]
    None,
    /// Positions holding any of the tokenizer's special tokens (BOS, EOS, PAD, ...).
    Tokenizer,
    /// Positions holding any of these ids.
    Ids(Vec<u32>),
}

/// How SAEs are spliced in for one run (SAELens's `run_with_saes(..., use_error_term,
/// exclude_special_tokens)`).
#[derive(Clone, Debug, Default)]
pub struct SaeRunOptions {
    /// Add the SAE's reconstruction error back (`hook_sae_error`).
    pub use_error_term: bool,
    pub exclude_special_tokens: ExcludeSpecialTokens,
}

impl SaeRunOptions {
    pub fn with_error_term() -> Self {
        SaeRunOptions {
            use_error_term: true,
            ..Default::default()
        }
    }
}

/// One SAE attached for a pass.
pub(crate) struct Attached<'a> {
    pub sae: &'a Sae,
    pub use_error_term: bool,
    /// `[batch, pos]` u8, 1 where the position bypasses the SAE.
    pub mask: Option<Tensor>,
}

/// The six hook points of an SAE spliced at `hook`.
pub fn sae_hook_names(hook: &str) -> Vec<String> {
    [
        "input",
        "acts_pre",
        "acts_post",
        "recons",
        "error",
        "output",
    ]
    .iter()
    .map(|s| format!("{hook}.hook_sae_{s}"))
    .collect()
}

/// `[.., n_heads, d_head]` hooks whose SAEs flatten the head dims.
fn is_head_hook(name: &str) -> bool {
    [
        "attn.hook_z",
        "attn.hook_q",
        "attn.hook_k",
        "attn.hook_v",
        "attn.hook_rot_q",
        "attn.hook_rot_k",
    ]
    .iter()
    .any(|s| name.ends_with(s))
}

/// The SAE wrapper's forward at hook point `name` (called from `HookCtx::hp`).
pub(crate) fn splice(
    ctx: &mut HookCtx,
    a: &Attached,
    i: usize,
    name: &str,
    orig: Tensor,
) -> Result<Tensor> {
    let inp = ctx.captured[i].take().unwrap_or_else(|| orig.clone());
    let dims = inp.dims();
    let width = if is_head_hook(a.sae.hook_name()) && dims.len() >= 2 {
        dims[dims.len() - 2] * dims[dims.len() - 1]
    } else {
        dims.last().copied().unwrap_or(0)
    };
    if width != a.sae.d_in() {
        return Err(Error::Invalid(format!(
            "SAE d_in = {} does not match hook `{}`, whose activations have width {width} (shape {dims:?})",
            a.sae.d_in(),
            a.sae.hook_name()
        )));
    }
    let mut hp = |local: &str, t: Tensor| ctx.observe(&format!("{name}.{local}"), t);
    let (f, st) = a.sae.encode_hooked(&inp, &mut hp)?;
    let mut y = a.sae.decode_hooked(&f, &st, &mut hp)?;
    if y.dims() != orig.dims() {
        return Err(Error::Invalid(format!(
            "SAE output shape {:?} does not match hook `{name}` shape {:?}",
            y.dims(),
            orig.dims()
        )));
    }
    if a.use_error_term {
        // Recomputed without hooks and detached, as SAELens does under no_grad.
        let mut noop = |_: &str, t: Tensor| Ok(t);
        let (f0, st0) = a.sae.encode_hooked(&inp.detach(), &mut noop)?;
        let clean = a.sae.decode_hooked(&f0, &st0, &mut noop)?;
        let err = (orig.detach() - clean)?.detach();
        let err = hp("hook_sae_error", err)?;
        y = (y + err)?;
    }
    if let Some(mask) = &a.mask {
        let mut shape = mask.dims().to_vec();
        shape.resize(orig.rank(), 1);
        let m = mask.reshape(shape)?.broadcast_as(orig.shape())?;
        y = m.where_cond(&orig, &y)?;
    }
    hp("hook_sae_output", y)
}

impl HookedModel {
    /// Hook names valid while `saes` are attached: each replaced hook becomes its six SAE hook
    /// points, and `blocks.L.mlp.hook_in` exists (as in HookedSAETransformer).
    pub fn hook_names_with_saes(&self, saes: &[&Sae]) -> Vec<String> {
        let mut out = Vec::new();
        for n in self.hook_names() {
            if saes.iter().any(|s| s.hook_name_out() == n) {
                out.extend(sae_hook_names(n));
            } else {
                out.push(n.clone());
            }
            if let Some(l) = n
                .strip_prefix("blocks.")
                .and_then(|r| r.strip_suffix(".ln2.hook_normalized"))
            {
                out.push(format!("blocks.{l}.mlp.hook_in"));
            }
        }
        out
    }

    fn attach<'a>(
        &self,
        tokens: &Tensor,
        saes: &[&'a Sae],
        opts: &SaeRunOptions,
    ) -> Result<Vec<Attached<'a>>> {
        let valid = self.hook_names_with_saes(&[]);
        for (i, s) in saes.iter().enumerate() {
            for h in [s.hook_name(), s.hook_name_out()] {
                crate::hooks::check_name(h, &valid)?;
            }
            if saes[..i]
                .iter()
                .any(|o| o.hook_name_out() == s.hook_name_out())
            {
                return Err(Error::Invalid(format!(
                    "two SAEs are attached at `{}`; attach one SAE per hook",
                    s.hook_name_out()
                )));
            }
        }
        let mask = match &opts.exclude_special_tokens {
            ExcludeSpecialTokens::None => None,
            ExcludeSpecialTokens::Tokenizer => {
                Some(self.special_token_mask(tokens, &self.tokenizer()?.special_ids())?)
            }
            ExcludeSpecialTokens::Ids(ids) => Some(self.special_token_mask(tokens, ids)?),
        };
        Ok(saes
            .iter()
            .map(|s| Attached {
                sae: s,
                use_error_term: opts.use_error_term,
                mask: mask.clone(),
            })
            .collect())
    }

    /// `[batch, pos]` u8: 1 where `tokens` holds one of `ids`.
    fn special_token_mask(&self, tokens: &Tensor, ids: &[u32]) -> Result<Tensor> {
        let t = self.check_tokens(tokens)?;
        let (b, p) = t.dims2()?;
        let v: Vec<u8> = t
            .flatten_all()?
            .to_vec1::<u32>()?
            .iter()
            .map(|x| u8::from(ids.contains(x)))
            .collect();
        Ok(Tensor::from_vec(v, (b, p), t.device())?)
    }

    fn run_saes<'f>(
        &self,
        tokens: &Tensor,
        saes: &[&Sae],
        opts: &SaeRunOptions,
        hooks: Option<&mut Hooks<'f>>,
        filter: Option<&NamesFilter<'f>>,
        stop_at_layer: Option<usize>,
    ) -> Result<(Tensor, Option<ActivationCache>)> {
        let attached = self.attach(tokens, saes, opts)?;
        let valid = self.hook_names_with_saes(saes);
        if let Some(h) = &hooks {
            h.validate(&valid)?;
        }
        if let Some(f) = filter {
            f.validate(&valid)?;
        }
        let want_cache = filter.is_some();
        let mut ctx = HookCtx {
            hooks,
            filter,
            saes: &attached,
            captured: vec![None; attached.len()],
            ..Default::default()
        };
        let out = self.run(tokens, &mut ctx, stop_at_layer)?;
        Ok((out, want_cache.then(|| self.cache_from(ctx))))
    }

    /// SAELens's `run_with_saes`: logits with `saes` spliced in.
    pub fn run_with_saes(
        &self,
        tokens: &Tensor,
        saes: &[&Sae],
        opts: &SaeRunOptions,
    ) -> Result<Tensor> {
        Ok(self.run_saes(tokens, saes, opts, None, None, None)?.0)
    }

    /// SAELens's `run_with_cache_with_saes` (names filter, `stop_at_layer`). The cache holds the
    /// SAEs' `<hook>.hook_sae_*` activations; the replaced hook names are absent, as in SAELens.
    pub fn run_with_cache_with_saes<'f>(
        &self,
        tokens: &Tensor,
        saes: &[&Sae],
        opts: &SaeRunOptions,
        filter: impl Into<NamesFilter<'f>>,
        stop_at_layer: Option<usize>,
    ) -> Result<(Tensor, ActivationCache)> {
        let filter = filter.into();
        match self.run_saes(tokens, saes, opts, None, Some(&filter), stop_at_layer)? {
            (out, Some(cache)) => Ok((out, cache)),
            (_, None) => Err(Error::Invalid("internal: no cache was collected".into())),
        }
    }

    /// SAELens's `run_with_hooks_with_saes`: forward hooks may target the SAEs' hook points,
    /// e.g. `blocks.8.hook_resid_pre.hook_sae_acts_post` to ablate a latent.
    pub fn run_with_hooks_with_saes<'f>(
        &self,
        tokens: &Tensor,
        saes: &[&Sae],
        opts: &SaeRunOptions,
        mut hooks: Hooks<'f>,
    ) -> Result<Tensor> {
        Ok(self
            .run_saes(tokens, saes, opts, Some(&mut hooks), None, None)?
            .0)
    }

    /// Hooks and a cache with SAEs spliced in, in one pass.
    pub fn run_with_hooks_and_cache_with_saes<'f>(
        &self,
        tokens: &Tensor,
        saes: &[&Sae],
        opts: &SaeRunOptions,
        mut hooks: Hooks<'f>,
        filter: impl Into<NamesFilter<'f>>,
        stop_at_layer: Option<usize>,
    ) -> Result<(Tensor, ActivationCache)> {
        let filter = filter.into();
        match self.run_saes(
            tokens,
            saes,
            opts,
            Some(&mut hooks),
            Some(&filter),
            stop_at_layer,
        )? {
            (out, Some(cache)) => Ok((out, cache)),
            (_, None) => Err(Error::Invalid("internal: no cache was collected".into())),
        }
    }

    /// [`HookedModel::generate`] with `saes` spliced in on every forward pass (SAELens's
    /// `with model.saes(saes): model.generate(...)`), and `hooks`, which may target the SAEs'
    /// hook points (e.g. `<hook>.hook_sae_acts_post` to clamp a latent). With the KV cache each
    /// pass after the first runs only the new position, so the SAEs see `pos` = 1 then.
    pub fn generate_with_saes<'f>(
        &self,
        prompt: impl Into<Prompt>,
        saes: &[&Sae],
        sae_opts: &SaeRunOptions,
        opts: &GenerateOptions,
        mut hooks: Hooks<'f>,
    ) -> Result<Generation> {
        hooks.validate(&self.hook_names_with_saes(saes))?;
        self.generate_core(prompt.into(), opts, &mut |toks, kv| {
            let attached = self.attach(toks, saes, sae_opts)?;
            let mut ctx = HookCtx {
                hooks: Some(&mut hooks),
                saes: &attached,
                captured: vec![None; attached.len()],
                ..Default::default()
            };
            self.run_inner(toks, &mut ctx, None, kv, true)
        })
    }
}
