//! Text generation with TransformerLens's `HookedTransformer.generate` semantics: greedy or
//! sampled (temperature, top-k, top-p, frequency and repetition penalties), stop tokens, a KV
//! cache, and hooks (or spliced SAEs) that fire on every forward pass of the generation.
use super::kv_cache::KvCache;
use super::sampling::{self, GenerateOptions};
use super::{HookedModel, Prompt};
use crate::error::{Error, Result};
use crate::hooks::{HookCtx, Hooks};
use crate::rng::SplitMix64;
use candle_core::{DType, IndexOp, Tensor};

/// The result of a generation: the prompt and the new tokens (TL's `return_type="tokens"`), and
/// their decoded text (TL's `return_type="str"`).
#[derive(Clone, Debug)]
pub struct Generation {
    /// `[batch, prompt_len + n_new]` u32: the prompt followed by the generated tokens.
    pub tokens: Tensor,
    /// Positions of the prompt (BOS included).
    pub prompt_len: usize,
    /// Each sequence decoded with special tokens skipped (as TL's `return_type="str"`); None
    /// when the model has no tokenizer.
    pub texts: Option<Vec<String>>,
}

impl Generation {
    /// Every sequence's ids, prompt included.
    pub fn ids(&self) -> Result<Vec<Vec<u32>>> {
        Ok(self.tokens.to_vec2()?)
    }
    /// Every sequence's generated ids only.
    pub fn new_ids(&self) -> Result<Vec<Vec<u32>>> {
        Ok(self
            .ids()?
            .into_iter()
            .map(|r| r[self.prompt_len..].to_vec())
            .collect())
    }
    /// Number of generated positions.
    pub fn n_new(&self) -> usize {
        self.tokens.dims()[1] - self.prompt_len
    }
    /// The first sequence's text.
    pub fn text(&self) -> Result<&str> {
        self.texts
            .as_ref()
            .and_then(|t| t.first())
            .map(|s| s.as_str())
            .ok_or_else(|| {
                Error::Tokenizer("this generation has no text: the model has no tokenizer".into())
            })
    }
}

impl HookedModel {
    /// An empty [`KvCache`] for this model.
    pub fn new_kv_cache(&self) -> KvCache {
        KvCache::new(self.cfg.n_layers)
    }

    /// TL's `forward(tokens, past_kv_cache=cache)`: logits `[batch, new, d_vocab]` of `tokens`,
    /// which continue the sequences held in `cache` (positions `cache.len()..`); their keys and
    /// values are appended to `cache`.
    pub fn forward_with_kv_cache(&self, tokens: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        self.run_inner(tokens, &mut HookCtx::default(), None, Some(cache), false)
    }

    /// [`HookedModel::forward_with_kv_cache`] with forward hooks; they see the new positions
    /// only (and `hook_rot_k`, `hook_attn_scores`, `hook_pattern` the whole key length).
    pub fn run_with_hooks_with_kv_cache(
        &self,
        tokens: &Tensor,
        mut hooks: Hooks,
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        hooks.validate(&self.hook_names)?;
        let mut ctx = HookCtx {
            hooks: Some(&mut hooks),
            ..Default::default()
        };
        self.run_inner(tokens, &mut ctx, None, Some(cache), false)
    }

    /// TL's `generate`: append up to `opts.max_new_tokens` tokens to `prompt`. With hooks or
    /// SAEs: `model.run(prompt).saes(..).hooks(..).generate(&opts)`.
    ///
    /// ```no_run
    /// # use saescope::*;
    /// # use saescope::model::GenerateOptions;
    /// let model = HookedModel::from_pretrained("smollm2")?;
    /// let out = model.generate("The capital of France is", &GenerateOptions::greedy(8))?;
    /// println!("{}", out.text()?);
    /// # Ok::<(), saescope::Error>(())
    /// ```
    pub fn generate(
        &self,
        prompt: impl Into<Prompt>,
        opts: &GenerateOptions,
    ) -> Result<Generation> {
        self.run(prompt).generate(opts)
    }

    /// The prompt as `[batch, pos]` u32 ids on the model's device.
    pub(crate) fn prompt_tokens(&self, prompt: Prompt, prepend_bos: bool) -> Result<Tensor> {
        match prompt {
            Prompt::Text(s) => self.to_tokens_with(&s, prepend_bos),
            Prompt::Texts(v) => {
                let refs: Vec<&str> = v.iter().map(|s| s.as_str()).collect();
                self.to_tokens_batch(&refs, prepend_bos)
            }
            Prompt::Tokens(t) => self.check_tokens(&t),
        }
    }

    /// The generation loop; `step` runs one forward pass over the given tokens (the new ones
    /// with a cache, the whole sequences without) and returns logits whose last position is
    /// the next-token distribution.
    pub(crate) fn generate_core(
        &self,
        prompt: Prompt,
        opts: &GenerateOptions,
        step: &mut dyn FnMut(&Tensor, Option<&mut KvCache>) -> Result<Tensor>,
    ) -> Result<Generation> {
        sampling::validate(opts)?;
        let prompt = self.prompt_tokens(prompt, opts.prepend_bos)?;
        let (b, p) = prompt.dims2()?;
        let n_ctx = self.cfg.n_ctx;
        if p > n_ctx {
            return Err(Error::Invalid(format!(
                "the prompt has {p} tokens, more than the model's context n_ctx = {n_ctx}"
            )));
        }
        if p + opts.max_new_tokens > n_ctx {
            return Err(Error::Invalid(format!(
                "prompt of {p} tokens + max_new_tokens {} exceeds the model's context n_ctx = {n_ctx}; lower max_new_tokens to at most {}",
                opts.max_new_tokens,
                n_ctx - p
            )));
        }
        let eos = self.tok.as_ref().and_then(|t| t.eos_id);
        let stop_tokens: Vec<u32> = match (&opts.eos_token_ids, opts.stop_at_eos) {
            (_, false) => Vec::new(),
            (Some(ids), true) => ids.clone(),
            (None, true) => vec![eos.ok_or_else(|| {
                Error::Invalid(
                    "stop_at_eos needs a stop token: the model has no tokenizer EOS; set eos_token_ids or stop_at_eos = false".into(),
                )
            })?],
        };
        let pad = eos.or(stop_tokens.first().copied()).unwrap_or(0);
        let mut rng = SplitMix64::new(opts.seed.unwrap_or_else(fresh_seed));
        let mut seqs: Vec<Vec<u32>> = prompt.to_vec2()?;
        let mut finished = vec![false; b];
        let mut cache = opts.use_past_kv_cache.then(|| self.new_kv_cache());
        let mut input = prompt.clone();
        for _ in 0..opts.max_new_tokens {
            let logits = step(&input, cache.as_mut())?;
            let q = logits.dim(1)?;
            let last: Vec<Vec<f32>> = logits.i((.., q - 1))?.to_dtype(DType::F32)?.to_vec2()?;
            let mut new = Vec::with_capacity(b);
            for ((row, seq), done) in last.iter().zip(&mut seqs).zip(&mut finished) {
                let mut t = sampling::sample_logits(row, seq, opts, &mut rng)?;
                if *done {
                    t = pad;
                } else if stop_tokens.contains(&t) {
                    *done = true;
                }
                seq.push(t);
                new.push(t);
            }
            input = if cache.is_some() {
                Tensor::from_vec(new, (b, 1), &self.device)?
            } else {
                let len = seqs[0].len();
                Tensor::from_vec(seqs.concat(), (b, len), &self.device)?
            };
            if opts.stop_at_eos && finished.iter().all(|&f| f) {
                break;
            }
        }
        let len = seqs[0].len();
        let texts = match &self.tok {
            Some(tok) => Some(
                seqs.iter()
                    .map(|s| {
                        tok.inner.decode(s, true).map_err(|e| {
                            Error::Tokenizer(format!("cannot decode {} ids: {e}", s.len()))
                        })
                    })
                    .collect::<Result<Vec<_>>>()?,
            ),
            None => None,
        };
        Ok(Generation {
            tokens: Tensor::from_vec(seqs.concat(), (b, len), &self.device)?,
            prompt_len: p,
            texts,
        })
    }
}

/// A seed from the clock and the process's hasher keys (for `seed: None`).
fn fresh_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.write_u128(nanos);
    h.finish()
}
