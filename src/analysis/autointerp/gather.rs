//! Gathering each latent's examples in one pass over a corpus: the top activating windows
//! (shown to the explainer), activating windows sampled across activation quantiles and random
//! windows where the latent never fires (shown to the scorers), as delphi's constructor and
//! sampler build a `LatentRecord`.
use candle_core::{DType, IndexOp, Tensor};
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};

use super::Example;
use crate::analysis::sae_acts;
use crate::error::{Error, Result};
use crate::model::HookedModel;
use crate::rng::{permutation, Draw, Rng};
use crate::sae::Sae;

/// How examples are gathered. Defaults are delphi's (`ConstructorConfig`, `SamplerConfig`)
/// except `n_explain` and `act_threshold_frac`, which are ARENA's / SAEBench's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GatherOptions {
    /// Tokens in each example window (delphi's `example_ctx_len`, 32). An activating window
    /// has its strongest token at position `window - window / 4`, as delphi centres them.
    pub window: usize,
    /// Top activating windows shown to the explainer (ARENA: 15).
    pub n_explain: usize,
    /// Activating windows for scoring, sampled evenly across `n_quantiles` activation
    /// quantiles (delphi's `n_examples_test`, 50). They never repeat an explainer window.
    pub n_test: usize,
    /// Activation quantiles the scoring windows are drawn from (delphi: 10).
    pub n_quantiles: usize,
    /// Random windows where the latent never fires (delphi's `n_non_activating`, 50).
    pub n_not_active: usize,
    /// Latents with fewer activating windows than this are skipped by the runner (delphi's
    /// `min_examples`, 200).
    pub min_examples: usize,
    /// Tokens above this fraction of the latent's largest activation are marked `<<…>>` in
    /// the explainer's examples (SAEBench / ARENA: 0.1).
    pub act_threshold_frac: f32,
    /// Seed of the quantile sampling and the random windows (delphi: 22).
    pub seed: u64,
    /// Corpus rows per model pass.
    pub batch_rows: usize,
    /// Show a progress bar over the corpus.
    pub progress: bool,
}

impl Default for GatherOptions {
    fn default() -> Self {
        GatherOptions {
            window: 32,
            n_explain: 15,
            n_test: 50,
            n_quantiles: 10,
            n_not_active: 50,
            min_examples: 200,
            act_threshold_frac: 0.1,
            seed: 22,
            batch_rows: 8,
            progress: false,
        }
    }
}

/// An activating example drawn from one activation quantile (0 = the strongest tenth).
#[derive(Clone, Debug, PartialEq)]
pub struct QuantileExample {
    /// The quantile it was drawn from (delphi's `distance` in score records).
    pub quantile: usize,
    /// The example.
    pub example: Example,
}

/// One latent's examples (delphi's `LatentRecord`).
#[derive(Clone, Debug, PartialEq)]
pub struct LatentRecord {
    /// The hook the SAE reads (delphi's module name).
    pub module: String,
    /// The latent.
    pub latent: usize,
    /// Its largest activation in the corpus.
    pub max_activation: f32,
    /// Activating windows found (one per `window`-token stretch of the corpus where it fires).
    pub n_windows: usize,
    /// The top windows, strongest first, for the explainer.
    pub explain: Vec<Example>,
    /// Activating windows across quantiles, for scoring.
    pub test: Vec<QuantileExample>,
    /// Windows where the latent never fires, for scoring.
    pub not_active: Vec<Example>,
}

impl LatentRecord {
    /// Delphi's name for the latent, `{module}_latent{index}`.
    pub fn name(&self) -> String {
        format!("{}_latent{}", self.module, self.latent)
    }
}

/// A window of the corpus where a latent fires: its row, strongest position and activation.
#[derive(Clone, Copy, Debug)]
struct Hit {
    row: usize,
    pos: usize,
    act: f32,
}

/// The examples of each of `latents` in `tokens [rows, ctx]` (u32 ids): one pass of the model
/// and SAE over the corpus, keeping only these latents' activations (special tokens such as
/// BOS count as zero, as delphi's `filter_bos` and SAEBench's masking do).
pub fn gather_records(
    model: &HookedModel,
    sae: &Sae,
    tokens: &Tensor,
    latents: &[usize],
    opts: &GatherOptions,
) -> Result<Vec<LatentRecord>> {
    check(tokens, latents, sae.d_sae(), opts)?;
    let (rows, ctx) = tokens.dims2()?;
    let ids: Vec<u32> = tokens.to_dtype(DType::U32)?.flatten_all()?.to_vec1()?;
    let acts = scan(model, sae, tokens, latents, opts)?;
    let special = model.tokenizer()?.special_ids();
    let corpus = Corpus {
        ids: &ids,
        rows,
        ctx,
        special: &special,
    };
    latents
        .iter()
        .enumerate()
        .map(|(j, &latent)| {
            let mut col = acts[j * rows * ctx..(j + 1) * rows * ctx].to_vec();
            for (a, id) in col.iter_mut().zip(&ids) {
                if special.contains(id) {
                    *a = 0.0;
                }
            }
            let seed = crate::rng::derive_seed(opts.seed, &[latent as u64]);
            corpus.record(model, sae.hook_name(), latent, &col, seed, opts)
        })
        .collect()
}

fn check(tokens: &Tensor, latents: &[usize], d_sae: usize, opts: &GatherOptions) -> Result<()> {
    let (rows, ctx) = tokens.dims2().map_err(|_| {
        Error::Invalid(format!(
            "gather_records: tokens must be [rows, ctx] token ids, got shape {:?}",
            tokens.dims()
        ))
    })?;
    if let Some(&l) = latents.iter().find(|&&l| l >= d_sae) {
        return Err(Error::Invalid(format!(
            "gather_records: latent {l} out of range (the SAE has {d_sae} latents)"
        )));
    }
    if opts.window == 0 || ctx < opts.window {
        return Err(Error::Invalid(format!(
            "gather_records: rows of {ctx} tokens are shorter than the example window of {}; \
             use longer rows or a smaller GatherOptions::window",
            opts.window
        )));
    }
    if opts.n_test > 0 && opts.n_test < opts.n_quantiles {
        return Err(Error::Invalid(format!(
            "gather_records: n_test = {} draws n_test / n_quantiles = 0 examples from each of \
             the {} quantiles; make n_test at least n_quantiles (or lower n_quantiles)",
            opts.n_test, opts.n_quantiles
        )));
    }
    if rows == 0 || opts.n_quantiles == 0 || opts.batch_rows == 0 {
        return Err(Error::Invalid(
            "gather_records: need at least one row, one quantile and batch_rows >= 1".into(),
        ));
    }
    Ok(())
}

/// The chosen latents' activations, latent-major: `[latent][row * ctx + pos]`.
fn scan(
    model: &HookedModel,
    sae: &Sae,
    tokens: &Tensor,
    latents: &[usize],
    opts: &GatherOptions,
) -> Result<Vec<f32>> {
    let (rows, ctx) = tokens.dims2()?;
    let idx = Tensor::from_vec(
        latents.iter().map(|&l| l as u32).collect::<Vec<_>>(),
        latents.len(),
        tokens.device(),
    )?;
    let mut out = vec![0f32; latents.len() * rows * ctx];
    let bar = if opts.progress {
        ProgressBar::new(rows as u64)
    } else {
        ProgressBar::hidden()
    };
    for r0 in (0..rows).step_by(opts.batch_rows) {
        let n = opts.batch_rows.min(rows - r0);
        let a = sae_acts(model, tokens.i(r0..r0 + n)?, sae)?;
        // [n, ctx, L] -> [L, n * ctx]
        let a = a.index_select(&idx, 2)?.reshape((n * ctx, latents.len()))?;
        let a: Vec<Vec<f32>> = a.t()?.contiguous()?.to_vec2()?;
        for (j, colj) in a.iter().enumerate() {
            let base = j * rows * ctx + r0 * ctx;
            out[base..base + n * ctx].copy_from_slice(colj);
        }
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    Ok(out)
}

struct Corpus<'a> {
    ids: &'a [u32],
    rows: usize,
    ctx: usize,
    special: &'a [u32],
}

impl Corpus<'_> {
    fn record(
        &self,
        model: &HookedModel,
        module: &str,
        latent: usize,
        acts: &[f32],
        seed: u64,
        opts: &GatherOptions,
    ) -> Result<LatentRecord> {
        let hits = self.hits(acts, opts.window);
        let max_activation = hits.first().map_or(0.0, |h| h.act);
        let threshold = opts.act_threshold_frac * max_activation;
        let ex = |h: &Hit| {
            self.example(
                model,
                acts,
                h.row,
                self.start(h.pos, opts.window),
                opts.window,
                threshold,
            )
        };
        let explain = hits
            .iter()
            .take(opts.n_explain)
            .map(ex)
            .collect::<Result<Vec<_>>>()?;
        let pool = &hits[explain.len()..];
        let mut rng = Rng::new(seed);
        let test = split_quantiles(pool, opts.n_quantiles, opts.n_test, &mut rng)
            .into_iter()
            .map(|(q, h)| {
                Ok(QuantileExample {
                    quantile: q,
                    example: ex(h)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let not_active = self
            .quiet_windows(acts, opts.window, opts.n_not_active, &mut rng)
            .into_iter()
            .map(|(row, start)| self.example(model, acts, row, start, opts.window, threshold))
            .collect::<Result<Vec<_>>>()?;
        Ok(LatentRecord {
            module: module.to_string(),
            latent,
            max_activation,
            n_windows: hits.len(),
            explain,
            test,
            not_active,
        })
    }

    /// One hit per `window`-token stretch of each row where the latent fires, strongest first.
    fn hits(&self, acts: &[f32], window: usize) -> Vec<Hit> {
        let mut hits = Vec::new();
        for row in 0..self.rows {
            let r = &acts[row * self.ctx..(row + 1) * self.ctx];
            for s in (0..self.ctx).step_by(window) {
                let seg = &r[s..(s + window).min(self.ctx)];
                let (i, &act) =
                    seg.iter()
                        .enumerate()
                        .fold((0, &f32::MIN), |b, x| if x.1 > b.1 { x } else { b });
                if act > 0.0 {
                    hits.push(Hit {
                        row,
                        pos: s + i,
                        act,
                    });
                }
            }
        }
        hits.sort_by(|a, b| b.act.total_cmp(&a.act));
        hits
    }

    /// The window's first position: the strongest token at `window - window / 4`, shifted to
    /// stay inside the row.
    fn start(&self, pos: usize, window: usize) -> usize {
        pos.saturating_sub(window - window / 4)
            .min(self.ctx - window)
    }

    /// Up to `n` random windows where the latent is zero throughout (and no special token).
    fn quiet_windows(
        &self,
        acts: &[f32],
        window: usize,
        n: usize,
        rng: &mut Rng,
    ) -> Vec<(usize, usize)> {
        let mut out: Vec<(usize, usize)> = Vec::new();
        for _ in 0..n.saturating_mul(50) {
            if out.len() == n {
                break;
            }
            let (row, start) = (rng.below(self.rows), rng.below(self.ctx - window + 1));
            let at = row * self.ctx + start;
            let quiet = acts[at..at + window].iter().all(|&a| a <= 0.0)
                && !self.ids[at..at + window]
                    .iter()
                    .any(|t| self.special.contains(t));
            if quiet && !out.contains(&(row, start)) {
                out.push((row, start));
            }
        }
        out
    }

    fn example(
        &self,
        model: &HookedModel,
        acts: &[f32],
        row: usize,
        start: usize,
        window: usize,
        act_threshold: f32,
    ) -> Result<Example> {
        let at = row * self.ctx + start;
        Ok(Example {
            str_tokens: model.tokenizer()?.str_tokens(&self.ids[at..at + window])?,
            acts: acts[at..at + window].to_vec(),
            act_threshold,
        })
    }
}

/// delphi's `split_quantiles`: the hits (strongest first) cut into `n_quantiles` equal slices,
/// `n / n_quantiles` drawn at random from each (all of a slice when it is smaller).
fn split_quantiles<'h>(
    hits: &'h [Hit],
    n_quantiles: usize,
    n: usize,
    rng: &mut Rng,
) -> Vec<(usize, &'h Hit)> {
    let size = hits.len() / n_quantiles;
    let per = n / n_quantiles;
    let mut out = Vec::new();
    for q in 0..n_quantiles {
        let slice = &hits[q * size..(q + 1) * size];
        let take = per.min(slice.len());
        let order = permutation(slice.len(), rng.next_u64());
        let mut chosen: Vec<usize> = order[..take].iter().map(|&i| i as usize).collect();
        chosen.sort_unstable();
        out.extend(chosen.into_iter().map(|i| (q, &slice[i])));
    }
    out
}
