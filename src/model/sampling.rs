//! Choosing the next token from the final logits, as TransformerLens's `utils.sample_logits`
//! and `HookedTransformer.generate` do it.
use crate::error::{Error, Result};
use crate::rng::{Draw, SplitMix64};

/// Settings of [`HookedModel::generate`](super::HookedModel::generate), with TL's defaults (`max_new_tokens = 10`,
/// `do_sample = true`, `temperature = 1`, `stop_at_eos = true`, `use_past_kv_cache = true`).
/// [`GenerateOptions::greedy`] gives deterministic argmax decoding.
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    /// At most this many tokens are appended.
    pub max_new_tokens: usize,
    /// Sample from the distribution; false → the argmax of the raw logits, and the settings
    /// below (temperature to repetition_penalty) do nothing, as in TL.
    pub do_sample: bool,
    /// Logits are divided by it before sampling; 0 → argmax.
    pub temperature: f64,
    /// Sample only among the `k` largest logits (ties with the k-th kept).
    pub top_k: Option<usize>,
    /// Nucleus sampling: the smallest set of tokens whose probability reaches `top_p` (ignored
    /// when `top_k` is set, as in TL).
    pub top_p: Option<f64>,
    /// TL's `freq_penalty`: after the temperature, each logit loses `freq_penalty` times the
    /// number of times its token occurs in the sequence so far (prompt included).
    pub freq_penalty: f64,
    /// HF's repetition penalty (1 = none), applied before the temperature.
    pub repetition_penalty: f64,
    /// Stop a sequence once it emits a stop token (the token is kept); finished sequences of a
    /// batch are padded with the EOS token until all are done.
    pub stop_at_eos: bool,
    /// Stop tokens; None → the tokenizer's EOS.
    pub eos_token_ids: Option<Vec<u32>>,
    /// Reuse past keys and values so each step runs only the new position (TL's
    /// `use_past_kv_cache`). Without it every step runs the whole sequence.
    pub use_past_kv_cache: bool,
    /// Prepend BOS to a text prompt.
    pub prepend_bos: bool,
    /// Seed of the sampling RNG (SplitMix64): the same seed gives the same tokens. None → a
    /// fresh seed each call.
    pub seed: Option<u64>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_new_tokens: 10,
            do_sample: true,
            temperature: 1.0,
            top_k: None,
            top_p: None,
            freq_penalty: 0.0,
            repetition_penalty: 1.0,
            stop_at_eos: true,
            eos_token_ids: None,
            use_past_kv_cache: true,
            prepend_bos: true,
            seed: None,
        }
    }
}

impl GenerateOptions {
    /// Greedy decoding (`do_sample = false`) of up to `max_new_tokens` tokens.
    pub fn greedy(max_new_tokens: usize) -> Self {
        GenerateOptions {
            max_new_tokens,
            do_sample: false,
            ..Default::default()
        }
    }
    /// Sampling at `temperature` with a fixed `seed`.
    pub fn sampled(max_new_tokens: usize, temperature: f64, seed: u64) -> Self {
        GenerateOptions {
            max_new_tokens,
            temperature,
            seed: Some(seed),
            ..Default::default()
        }
    }
}

/// Check the sampling settings of `opts` (TL asserts the same conditions).
pub(crate) fn validate(opts: &GenerateOptions) -> Result<()> {
    if !(opts.temperature >= 0.0 && opts.temperature.is_finite()) {
        return Err(Error::Invalid(format!(
            "temperature must be finite and >= 0, got {}",
            opts.temperature
        )));
    }
    if opts.top_k == Some(0) {
        return Err(Error::Invalid("top_k must be > 0, got 0".into()));
    }
    if let Some(p) = opts.top_p {
        if !(p > 0.0 && p <= 1.0) {
            return Err(Error::Invalid(format!("top_p must be in (0, 1], got {p}")));
        }
    }
    if !opts.freq_penalty.is_finite() {
        return Err(Error::Invalid(format!(
            "freq_penalty must be finite, got {}",
            opts.freq_penalty
        )));
    }
    if !(opts.repetition_penalty > 0.0 && opts.repetition_penalty.is_finite()) {
        return Err(Error::Invalid(format!(
            "repetition_penalty must be finite and > 0, got {}",
            opts.repetition_penalty
        )));
    }
    Ok(())
}

/// The first index of the largest value (torch's `argmax`).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] || (logits[best].is_nan() && !v.is_nan()) {
            best = i;
        }
    }
    best as u32
}

/// HF's repetition penalty: for each token in `tokens`, a positive logit is divided by
/// `penalty` and a negative one multiplied by it.
fn repetition_penalty(logits: &mut [f32], tokens: &[u32], penalty: f32) {
    let mut seen = vec![false; logits.len()];
    for &t in tokens {
        if let Some(s) = seen.get_mut(t as usize) {
            *s = true;
        }
    }
    for (l, s) in logits.iter_mut().zip(seen) {
        if s {
            *l = if *l > 0.0 { *l / penalty } else { *l * penalty };
        }
    }
}

/// The next token for one sequence, given its final logits `[d_vocab]` and every token so far
/// (prompt included).
///
/// TL's `generate`: without `do_sample` it is the argmax of the raw logits (no penalty applies).
/// With `do_sample` it is TL's `sample_logits`: temperature 0 → argmax after the repetition
/// penalty; otherwise the repetition penalty, `logits / temperature`, then (when
/// `freq_penalty > 0`) `logits − freq_penalty · count(token in tokens)`, then top-k (ties with
/// the k-th logit kept) or else top-p (the smallest prefix of the sorted distribution whose mass
/// reaches `top_p`), then a draw from the softmax with `rng`.
pub fn sample_logits(
    final_logits: &[f32],
    tokens: &[u32],
    opts: &GenerateOptions,
    rng: &mut SplitMix64,
) -> Result<u32> {
    if final_logits.is_empty() {
        return Err(Error::Invalid("sample_logits: empty logits".into()));
    }
    if !opts.do_sample {
        return Ok(argmax(final_logits));
    }
    let mut l = final_logits.to_vec();
    if opts.repetition_penalty != 1.0 {
        repetition_penalty(&mut l, tokens, opts.repetition_penalty as f32);
    }
    if opts.temperature == 0.0 {
        return Ok(argmax(&l));
    }
    let temp = opts.temperature as f32;
    l.iter_mut().for_each(|v| *v /= temp);
    if opts.freq_penalty > 0.0 {
        let fp = opts.freq_penalty as f32;
        let mut count = vec![0u32; l.len()];
        for &t in tokens {
            if let Some(c) = count.get_mut(t as usize) {
                *c += 1;
            }
        }
        for (v, c) in l.iter_mut().zip(count) {
            if c > 0 {
                *v -= fp * c as f32;
            }
        }
    }
    if let Some(k) = opts.top_k {
        let k = k.min(l.len());
        let mut sorted = l.clone();
        sorted.sort_unstable_by(|a, b| b.total_cmp(a));
        let kth = sorted[k - 1];
        l.iter_mut()
            .filter(|v| **v < kth)
            .for_each(|v| *v = f32::NEG_INFINITY);
    } else if let Some(p) = opts.top_p {
        let mut order: Vec<usize> = (0..l.len()).collect();
        order.sort_by(|&a, &b| l[b].total_cmp(&l[a]));
        let probs = softmax(&order.iter().map(|&i| l[i]).collect::<Vec<_>>());
        // Remove where the cumulative mass *before* this token already exceeds top_p.
        let mut cum = 0f64;
        let mut remove = Vec::new();
        for (rank, (&i, pr)) in order.iter().zip(&probs).enumerate() {
            if rank > 0 && cum > p {
                remove.push(i);
            }
            cum += pr;
        }
        for i in remove {
            l[i] = f32::NEG_INFINITY;
        }
    }
    let probs = softmax(&l);
    let u = rng.uniform();
    let mut acc = 0f64;
    let mut last_ok = argmax(&l) as usize;
    for (i, &pr) in probs.iter().enumerate() {
        if pr > 0.0 {
            acc += pr;
            last_ok = i;
            if u < acc {
                return Ok(i as u32);
            }
        }
    }
    Ok(last_ok as u32)
}

/// Softmax in f64 (−inf → 0).
fn softmax(l: &[f32]) -> Vec<f64> {
    let max = l.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let e: Vec<f64> = l.iter().map(|&v| (v as f64 - max).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> GenerateOptions {
        GenerateOptions {
            do_sample: true,
            ..GenerateOptions::default()
        }
    }

    #[test]
    fn greedy_top_k_and_penalties() {
        let mut r = SplitMix64::new(1);
        let l = [1.0f32, 3.0, 2.0, 3.0];
        let greedy = GenerateOptions::greedy(1);
        assert_eq!(sample_logits(&l, &[], &greedy, &mut r).unwrap(), 1);
        let k1 = GenerateOptions {
            top_k: Some(1),
            ..opts()
        };
        // Ties with the k-th value are kept (TL keeps `logits >= kth`): 1 or 3.
        for s in 0..20 {
            let t = sample_logits(&l, &[], &k1, &mut SplitMix64::new(s)).unwrap();
            assert!(t == 1 || t == 3);
        }
        // freq_penalty: token 1 seen twice → 3/1 - 2·1 = 1 < 2 (token 2), token 3 seen once → 2.
        let fp = GenerateOptions {
            top_k: Some(1),
            freq_penalty: 1.0,
            ..opts()
        };
        for s in 0..10 {
            let t = sample_logits(&l, &[1, 1, 3], &fp, &mut SplitMix64::new(s)).unwrap();
            assert!(t == 2 || t == 3, "{t}");
        }
        // freq_penalty does nothing without do_sample (as in TL).
        let g = GenerateOptions {
            freq_penalty: 10.0,
            ..GenerateOptions::greedy(1)
        };
        assert_eq!(sample_logits(&l, &[1, 1], &g, &mut r).unwrap(), 1);
        // top_p: probs of [10, 0, 0, 0] put ~all mass on token 0.
        let tp = GenerateOptions {
            top_p: Some(0.5),
            ..opts()
        };
        for s in 0..10 {
            let t = sample_logits(&[10.0, 0.0, 0.0, 0.0], &[], &tp, &mut SplitMix64::new(s));
            assert_eq!(t.unwrap(), 0);
        }
        assert!(validate(&GenerateOptions {
            top_p: Some(1.5),
            ..opts()
        })
        .is_err());
    }

    #[test]
    fn sampling_follows_the_distribution() {
        let o = opts();
        let l = [0f32, (3f32).ln()]; // p = [0.25, 0.75]
        let mut r = SplitMix64::new(7);
        let n = 4000;
        let ones = (0..n)
            .filter(|_| sample_logits(&l, &[], &o, &mut r).unwrap() == 1)
            .count();
        let frac = ones as f64 / n as f64;
        assert!((frac - 0.75).abs() < 0.03, "{frac}");
    }
}
