//! One way into the forward pass: [`HookedModel::run`] returns a [`Run`] builder (SAEs, hooks,
//! names filter, `stop_at_layer`, `start_at_layer`, error term, special tokens), finished by
//! [`Run::logits`], [`Run::cache`] or [`Run::generate`]. TransformerLens's and SAELens's names
//! (`run_with_cache`, `run_with_hooks`, `run_with_saes`, `run_with_cache_with_saes`,
//! `run_with_hooks_with_saes`) are one-line wrappers with their defaults.
use super::{ActivationCache, GenerateOptions, Generation, HookedModel};
use crate::error::{Error, Result};
use crate::hooks::{ActName, Attached, HookCtx, Hooks, NamesFilter, Replacement};
use crate::tokenizer::SpecialTokens;
use candle_core::{DType, Device, Tensor};

/// What a run reads: text (tokenized with BOS prepended, as TL's `to_tokens`), several texts
/// (right-padded with the pad token, as TL pads by default: with causal attention the padding
/// after a prompt changes none of its positions), or a tensor — token ids `[batch, pos]` /
/// `[pos]`, or with [`Run::start_at_layer`] the residual stream `[batch, pos, d_model]`.
#[derive(Clone, Debug)]
pub enum Prompt {
    /// One text.
    Text(String),
    /// Several texts, one row each.
    Texts(Vec<String>),
    /// Token ids (or a residual stream for `start_at_layer`), used as they are.
    Tokens(Tensor),
}

impl From<&str> for Prompt {
    fn from(s: &str) -> Self {
        Prompt::Text(s.to_string())
    }
}
impl From<String> for Prompt {
    fn from(s: String) -> Self {
        Prompt::Text(s)
    }
}
impl From<&String> for Prompt {
    fn from(s: &String) -> Self {
        Prompt::Text(s.clone())
    }
}
impl From<&[&str]> for Prompt {
    fn from(v: &[&str]) -> Self {
        Prompt::Texts(v.iter().map(|s| s.to_string()).collect())
    }
}
impl<const N: usize> From<[&str; N]> for Prompt {
    fn from(v: [&str; N]) -> Self {
        Prompt::Texts(v.iter().map(|s| s.to_string()).collect())
    }
}
impl<const N: usize> From<&[&str; N]> for Prompt {
    fn from(v: &[&str; N]) -> Self {
        Prompt::Texts(v.iter().map(|s| s.to_string()).collect())
    }
}
impl From<Vec<&str>> for Prompt {
    fn from(v: Vec<&str>) -> Self {
        Prompt::from(v.as_slice())
    }
}
impl From<Vec<String>> for Prompt {
    fn from(v: Vec<String>) -> Self {
        Prompt::Texts(v)
    }
}
impl From<&[String]> for Prompt {
    fn from(v: &[String]) -> Self {
        Prompt::Texts(v.to_vec())
    }
}
impl From<Tensor> for Prompt {
    fn from(t: Tensor) -> Self {
        Prompt::Tokens(t)
    }
}
impl From<&Tensor> for Prompt {
    fn from(t: &Tensor) -> Self {
        Prompt::Tokens(t.clone())
    }
}
impl From<&[u32]> for Prompt {
    fn from(ids: &[u32]) -> Self {
        let n = ids.len();
        Prompt::Tokens(
            Tensor::from_vec(ids.to_vec(), (1, n), &Device::Cpu)
                .expect("a [1, n] tensor from n ids"),
        )
    }
}
impl From<Vec<u32>> for Prompt {
    fn from(ids: Vec<u32>) -> Self {
        Prompt::from(ids.as_slice())
    }
}

/// How SAEs are spliced in (SAELens's `use_error_term`, `exclude_special_tokens`), for code
/// that passes these settings around; in a cell, `.error_term()` on the [`Run`] is shorter.
#[derive(Clone, Debug, Default)]
pub struct SaeRunOptions {
    /// Add the SAE's reconstruction error back (`hook_sae_error`).
    pub use_error_term: bool,
    /// Positions holding these tokens bypass the SAEs.
    pub exclude_special_tokens: SpecialTokens,
}

impl SaeRunOptions {
    /// With the error term, no excluded tokens.
    pub fn with_error_term() -> Self {
        SaeRunOptions {
            use_error_term: true,
            ..Default::default()
        }
    }
}

/// A forward pass being set up: see [`HookedModel::run`]. Every option has TL's / SAELens's
/// default; nothing runs until [`Run::logits`], [`Run::cache`] or [`Run::generate`].
#[must_use = "a Run does nothing until .logits(), .cache() or .generate()"]
pub struct Run<'m, 'a> {
    model: &'m HookedModel,
    prompt: Prompt,
    saes: Vec<&'a dyn Replacement>,
    use_error_term: bool,
    exclude_special_tokens: SpecialTokens,
    hooks: Hooks<'a>,
    names: Option<NamesFilter<'a>>,
    stop_at_layer: Option<usize>,
    start_at_layer: Option<usize>,
    prepend_bos: bool,
}

impl<'a> Run<'_, 'a> {
    /// Splice these SAEs in (SAELens's `saes=[...]`): each replaces its hook point, whose
    /// `<hook>.hook_sae_*` hook points fire instead.
    pub fn saes<R: Replacement>(mut self, saes: &[&'a R]) -> Self {
        self.saes
            .extend(saes.iter().map(|s| *s as &'a dyn Replacement));
        self
    }
    /// Splice one SAE in.
    pub fn sae<R: Replacement>(self, sae: &'a R) -> Self {
        self.saes(&[sae])
    }
    /// Add each SAE's reconstruction error back (SAELens's `use_error_term=True`): without
    /// interventions the output equals the clean model's.
    pub fn error_term(self) -> Self {
        self.use_error_term(true)
    }
    /// Set SAELens's `use_error_term` (default false).
    pub fn use_error_term(mut self, on: bool) -> Self {
        self.use_error_term = on;
        self
    }
    /// Both SAE settings at once.
    pub fn sae_options(mut self, opts: &SaeRunOptions) -> Self {
        self.use_error_term = opts.use_error_term;
        self.exclude_special_tokens = opts.exclude_special_tokens.clone();
        self
    }
    /// Positions holding these tokens bypass the SAEs (SAELens's `exclude_special_tokens`;
    /// `SpecialTokens::All` is its `True`).
    pub fn exclude_special_tokens(mut self, which: SpecialTokens) -> Self {
        self.exclude_special_tokens = which;
        self
    }
    /// Add forward hooks (TL's `fwd_hooks`); several calls add up.
    pub fn hooks(mut self, hooks: Hooks<'a>) -> Self {
        self.hooks.extend(hooks);
        self
    }
    /// Add one forward hook on `name`.
    pub fn hook<N: ActName>(
        mut self,
        name: N,
        f: impl FnMut(&Tensor, &str) -> Result<Option<Tensor>> + 'a,
    ) -> Self {
        self.hooks.add(name, f);
        self
    }
    /// Cache only these activations (TL's `names_filter`): a name, a list, or
    /// `NamesFilter::func(..)`. Default: every hook point.
    pub fn names(mut self, filter: impl Into<NamesFilter<'a>>) -> Self {
        self.names = Some(filter.into());
        self
    }
    /// Stop before block `layer` and return the residual stream there instead of logits
    /// (`None`: run every block, TL's default).
    pub fn stop_at_layer(mut self, layer: impl Into<Option<usize>>) -> Self {
        self.stop_at_layer = layer.into();
        self
    }
    /// Start at block `layer`: the prompt is the residual stream `[batch, pos, d_model]`
    /// entering it (`blocks.{layer}.hook_resid_pre`), as TL's `forward(resid,
    /// start_at_layer=layer)`.
    pub fn start_at_layer(mut self, layer: usize) -> Self {
        self.start_at_layer = Some(layer);
        self
    }
    /// Prepend BOS to text prompts (default true, as TL).
    pub fn prepend_bos(mut self, on: bool) -> Self {
        self.prepend_bos = on;
        self
    }

    /// The prompt's token ids `[batch, pos]` on the model's device.
    pub fn tokens(&self) -> Result<Tensor> {
        self.model
            .prompt_tokens(self.prompt.clone(), self.prepend_bos)
    }

    /// Run and return the logits (or the residual stream with `stop_at_layer`).
    pub fn logits(self) -> Result<Tensor> {
        Ok(self.exec(false)?.0)
    }

    /// Run and return the logits (or residual stream) and an [`ActivationCache`] of the
    /// activations selected by [`Run::names`] (default: all), after the hooks ran.
    pub fn cache(mut self) -> Result<(Tensor, ActivationCache)> {
        if self.names.is_none() {
            self.names = Some(NamesFilter::All);
        }
        match self.exec(true)? {
            (out, Some(cache)) => Ok((out, cache)),
            (_, None) => Err(Error::Invalid("internal: no cache was collected".into())),
        }
    }

    /// TL's `generate` with these SAEs and hooks on every forward pass (SAELens's
    /// `with model.saes(saes): model.generate(...)`). With the KV cache each pass after the
    /// first runs only the new position, so hooks and SAEs see `pos` = 1 then
    /// (`hook_rot_k`, `hook_attn_scores` and `hook_pattern` span every key); without it each
    /// pass runs the whole sequence. `hook_embed` fires on each pass's new tokens, as in
    /// `run_with_hooks` (TL 3.9's `generate` embeds the tokens outside its hooked forward
    /// pass, so there `hook_embed` does not fire).
    pub fn generate(self, opts: &GenerateOptions) -> Result<Generation> {
        if self.names.is_some() || self.stop_at_layer.is_some() || self.start_at_layer.is_some() {
            return Err(Error::Invalid(
                "generate takes SAEs, hooks and the error term; names, stop_at_layer and start_at_layer apply to single passes"
                    .into(),
            ));
        }
        let model = self.model;
        model.check_saes(&self.saes)?;
        self.hooks.validate(&model.hook_names_with(&self.saes))?;
        let prompt = match self.prompt {
            Prompt::Texts(v) if v.len() > 1 => {
                return Err(Error::Invalid(format!(
                    "generate continues one text or a [batch, pos] token tensor, got {} texts; tokenize equal-length prompts with to_tokens_batch",
                    v.len()
                )))
            }
            Prompt::Texts(v) => Prompt::Text(v.into_iter().next().unwrap_or_default()),
            p => p,
        };
        let mut hooks = self.hooks;
        let (saes, err, special) = (
            &self.saes,
            self.use_error_term,
            &self.exclude_special_tokens,
        );
        model.generate_core(prompt, opts, &mut |toks, kv| {
            let attached = model.attach(toks, saes, err, special)?;
            let mut ctx = HookCtx {
                hooks: Some(&mut hooks),
                saes: &attached,
                captured: vec![None; attached.len()],
                ..Default::default()
            };
            model.run_inner(toks, &mut ctx, None, kv, true)
        })
    }

    /// The one path every run takes.
    fn exec(mut self, want_cache: bool) -> Result<(Tensor, Option<ActivationCache>)> {
        let model = self.model;
        model.check_saes(&self.saes)?;
        let valid = model.hook_names_with(&self.saes);
        self.hooks.validate(&valid)?;
        if let Some(f) = &self.names {
            f.validate(&valid)?;
        }
        let (tokens, resid) = match self.start_at_layer {
            None => (self.tokens()?, None),
            Some(_) => match &self.prompt {
                Prompt::Tokens(t) if t.dtype().is_float() => (placeholder_tokens(t)?, Some(t)),
                _ => {
                    return Err(Error::Invalid(
                        "start_at_layer needs the residual stream [batch, pos, d_model] (a float tensor) as the prompt".into(),
                    ))
                }
            },
        };
        // A residual-stream prompt has no tokens: no position is excluded.
        let special = match resid {
            Some(_) => &SpecialTokens::None,
            None => &self.exclude_special_tokens,
        };
        let attached = model.attach(&tokens, &self.saes, self.use_error_term, special)?;
        let names = if want_cache {
            self.names.as_ref()
        } else {
            None
        };
        let mut ctx = HookCtx {
            hooks: (!self.hooks.is_empty()).then_some(&mut self.hooks),
            filter: names,
            saes: &attached,
            captured: vec![None; attached.len()],
            ..Default::default()
        };
        let out = match (resid, self.start_at_layer) {
            (Some(r), Some(start)) => model.run_from(r, start, &mut ctx, self.stop_at_layer)?,
            _ => model.run_inner(&tokens, &mut ctx, self.stop_at_layer, None, false)?,
        };
        Ok((out, want_cache.then(|| model.cache_from(ctx))))
    }
}

/// `[batch, pos]` zeros standing in for the tokens of a residual-stream prompt.
fn placeholder_tokens(resid: &Tensor) -> Result<Tensor> {
    let (b, p, _) = resid.dims3().map_err(|_| {
        Error::Invalid(format!(
            "start_at_layer: the residual stream must be [batch, pos, d_model], got {:?}",
            resid.dims()
        ))
    })?;
    Ok(Tensor::zeros((b, p), DType::U32, resid.device())?)
}

impl HookedModel {
    /// Set up a forward pass on `prompt` (text, several texts, or a token tensor): add SAEs,
    /// hooks, a names filter, `stop_at_layer` … then call `.logits()`, `.cache()` or
    /// `.generate(&opts)`.
    ///
    /// ```no_run
    /// # use saescope::prelude::*;
    /// # let model = HookedModel::from_pretrained("smollm2")?;
    /// # let sae = Sae::shipped()?;
    /// let (resid, cache) = model
    ///     .run("The Golden Gate Bridge")
    ///     .saes(&[&sae])
    ///     .error_term()
    ///     .names(["blocks.15.hook_resid_post.hook_sae_acts_post"])
    ///     .stop_at_layer(16)
    ///     .cache()?;
    /// # Ok::<(), saescope::Error>(())
    /// ```
    pub fn run<'m, 'a>(&'m self, prompt: impl Into<Prompt>) -> Run<'m, 'a> {
        Run {
            model: self,
            prompt: prompt.into(),
            saes: Vec::new(),
            use_error_term: false,
            exclude_special_tokens: SpecialTokens::None,
            hooks: Hooks::new(),
            names: None,
            stop_at_layer: None,
            start_at_layer: None,
            prepend_bos: true,
        }
    }

    /// TL's `run_with_cache(prompt)`: logits and every activation. For a names filter or
    /// `stop_at_layer`, use `model.run(prompt).names(..).stop_at_layer(..).cache()`.
    pub fn run_with_cache(&self, prompt: impl Into<Prompt>) -> Result<(Tensor, ActivationCache)> {
        self.run(prompt).cache()
    }

    /// TL's `run_with_hooks(prompt, fwd_hooks=hooks)`: logits with forward hooks that may
    /// replace activations.
    pub fn run_with_hooks(&self, prompt: impl Into<Prompt>, hooks: Hooks) -> Result<Tensor> {
        self.run(prompt).hooks(hooks).logits()
    }

    /// SAELens's `run_with_saes(prompt, saes=[...])`: logits with `saes` spliced in.
    pub fn run_with_saes<R: Replacement>(
        &self,
        prompt: impl Into<Prompt>,
        saes: &[&R],
    ) -> Result<Tensor> {
        self.run(prompt).saes(saes).logits()
    }

    /// SAELens's `run_with_cache_with_saes(prompt, saes=[...])`: logits and every activation,
    /// including the SAEs' `<hook>.hook_sae_*`; the replaced hook names are absent, as in
    /// SAELens.
    pub fn run_with_cache_with_saes<R: Replacement>(
        &self,
        prompt: impl Into<Prompt>,
        saes: &[&R],
    ) -> Result<(Tensor, ActivationCache)> {
        self.run(prompt).saes(saes).cache()
    }

    /// SAELens's `run_with_hooks_with_saes(prompt, saes=[...], fwd_hooks=hooks)`: hooks may
    /// target the SAEs' hook points, e.g. `<hook>.hook_sae_acts_post` to ablate a latent.
    pub fn run_with_hooks_with_saes<'a, R: Replacement>(
        &self,
        prompt: impl Into<Prompt>,
        saes: &[&'a R],
        hooks: Hooks<'a>,
    ) -> Result<Tensor> {
        self.run(prompt).saes(saes).hooks(hooks).logits()
    }

    /// Hook names valid while `saes` are attached: each replaced hook becomes the
    /// replacement's hook points, and `blocks.L.mlp.hook_in` exists (as in
    /// HookedSAETransformer).
    pub fn hook_names_with(&self, saes: &[&dyn Replacement]) -> Vec<String> {
        let mut out = Vec::new();
        for n in self.hook_names() {
            match saes.iter().find(|s| s.hook_out() == n) {
                Some(s) => out.extend(s.local_hook_names().iter().map(|l| format!("{n}.{l}"))),
                None => out.push(n.clone()),
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

    /// Error unless every SAE's hooks exist and each hook has at most one SAE.
    fn check_saes(&self, saes: &[&dyn Replacement]) -> Result<()> {
        let valid = self.hook_names_with(&[]);
        for (i, s) in saes.iter().enumerate() {
            for h in [s.hook_in(), s.hook_out()] {
                crate::hooks::check_name(h, &valid)?;
            }
            if saes[..i].iter().any(|o| o.hook_out() == s.hook_out()) {
                return Err(Error::Invalid(format!(
                    "two SAEs are attached at `{}`; attach one SAE per hook",
                    s.hook_out()
                )));
            }
        }
        Ok(())
    }

    /// The (checked) replacements of one pass, with the positions that bypass them.
    fn attach<'a>(
        &self,
        tokens: &Tensor,
        saes: &[&'a dyn Replacement],
        use_error_term: bool,
        special: &SpecialTokens,
    ) -> Result<Vec<Attached<'a>>> {
        let bypass = match special {
            SpecialTokens::None => None,
            SpecialTokens::Ids(ids) => Some(self.token_mask(tokens, ids)?),
            which => Some(self.token_mask(tokens, &which.ids(self.tokenizer()?))?),
        };
        Ok(saes
            .iter()
            .map(|s| Attached {
                rep: *s,
                use_error_term,
                bypass: bypass.clone(),
            })
            .collect())
    }

    /// `[batch, pos]` u8: 1 where `tokens` holds one of `ids`.
    fn token_mask(&self, tokens: &Tensor, ids: &[u32]) -> Result<Tensor> {
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
}
