//! The examples' details, from full model passes on the rows that hold them: the latent's
//! activations over each context window, the per-token loss effect of removing the latent,
//! and direct feature attribution for attention (`hook_z`) SAEs.
//!
//! Loss effect (sae_vis's definition, without its bug): at a token `t` where the latent is
//! active with `a`, `a · feature_resid_dir` is subtracted from the final residual stream
//! (`blocks.{n-1}.hook_resid_post`, the direct path only), the model's own final norm is applied
//! with statistics recomputed on the ablated vector, then `W_U` and `b_U` (and Gemma-2's logit
//! soft cap). sae_vis's `resid_final_pre_layernorm_to_logits` divides by `mean(x²) + ε` without
//! the square root; here the norm is exactly the model's (`RMSNorm` / `LayerNorm`, folded or not).
use super::cached_rows::CachedRows;
use super::ctx::{tok_text, Ctx, Request};
use super::types::{Example, ExampleToken, TokenScore};
use super::weights::SaeSite;
use super::{Progress, Stage};
use crate::error::Result;
use crate::hooks::HookName;
use crate::model::ActivationCache;
use crate::model::HookedModel;
use candle_core::{DType, Tensor, D};
use std::collections::BTreeMap;

/// Ablation rows per log-softmax chunk.
const CHUNK: usize = 128;

/// Log-probabilities `[M, d_vocab]` after the final norm of residual vectors `x [M, d_model]`.
pub(crate) fn logprobs(model: &HookedModel, x: &Tensor) -> Result<Tensor> {
    let n = model.apply_ln_final(x)?;
    let mut logits = n.matmul(model.w_u())?.broadcast_add(&model.b_u()?)?;
    if let Some(c) = model.cfg().output_logits_soft_cap {
        logits = ((logits / c)?.tanh()? * c)?;
    }
    Ok(candle_nn::ops::log_softmax(&logits, D::Minus1)?)
}

/// The `n` largest (`largest`) or smallest entries of `row`, best first.
pub(crate) fn extreme(row: &[f32], n: usize, largest: bool, vocab: &[String]) -> Vec<TokenScore> {
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(n + 1);
    let better = |a: f32, b: f32| if largest { a > b } else { a < b };
    for (i, &v) in row.iter().enumerate() {
        if best.len() < n || better(v, best[best.len() - 1].1) {
            let at = best.partition_point(|&(_, b)| !better(v, b));
            best.insert(at, (i as u32, v));
            best.truncate(n);
        }
    }
    best.into_iter()
        .map(|(id, value)| TokenScore {
            id,
            token: tok_text(vocab, id),
            value,
        })
        .collect()
}

/// Build every requested example; `progress` counts rows.
pub(crate) fn build_examples(
    c: &Ctx,
    requests: &[Request],
    progress: &mut dyn FnMut(Progress),
) -> Result<Vec<Example>> {
    let b1 = c.cfg.buffer.1;
    let mut by_row: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, r) in requests.iter().enumerate() {
        by_row.entry(r.firing.row).or_default().push(i);
    }
    let need = |row: u32, reqs: &[usize]| -> usize {
        let m = reqs
            .iter()
            .map(|&i| requests[i].firing.pos as usize + b1 + 1)
            .max()
            .unwrap_or(1);
        m.min(c.src.row_len(row))
    };
    let rows: Vec<(u32, usize)> = by_row.iter().map(|(&r, v)| (r, need(r, v))).collect();
    // Cache scans: rows whose SAE inputs are all cached skip the layers up to the hook.
    let mut cached = match &c.src.cache {
        Some(cs) => {
            let start = HookName::parse(c.sae.hook_name()).resid_start_layer();
            let usable =
                !matches!(c.site, SaeSite::HookZ { .. }) && (!c.cfg.loss_effect || start.is_some());
            if usable {
                Some((CachedRows::open(cs)?, start))
            } else {
                None
            }
        }
        _ => None,
    };
    type Rows = Vec<(u32, usize)>;
    let (mut fast, mut slow): (Rows, Rows) = match &cached {
        Some((cr, _)) => rows.iter().partition(|&&(r, n)| cr.available(r, n)),
        None => (Vec::new(), rows),
    };
    for v in [&mut fast, &mut slow] {
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    }
    let mut out: Vec<Option<Example>> = vec![None; requests.len()];
    let total = (fast.len() + slow.len()) as u64;
    let mut done = 0u64;
    let bs = c.cfg.batch_size.max(1);
    for (is_fast, list) in [(true, &fast), (false, &slow)] {
        for batch in list.chunks(bs) {
            let res = match (&mut cached, is_fast) {
                (Some((cr, start)), true) => fast_batch(c, cr, *start, batch)?,
                _ => slow_batch(c, batch)?,
            };
            for (i, e) in assemble(c, batch, res, &by_row, requests)? {
                out[i] = Some(e);
            }
            done += batch.len() as u64;
            progress(Progress {
                stage: Stage::Examples,
                done,
                total,
            });
        }
    }
    Ok(out.into_iter().flatten().collect())
}

/// What one batch of example rows yields: positions per row, the SAE input `[B·l, d_in]`, the
/// final residual stream `[B, l, d_model]` (for loss effects) and the cache of `hook_v` /
/// `hook_pattern` (attention SAEs).
struct BatchOut {
    l: usize,
    x: Tensor,
    resid: Option<Tensor>,
    cache: Option<(ActivationCache, Vec<String>)>,
}

/// The chosen latents' activations `[rows.len(), k]` (flat) at rows `rows` of `x [n, d_in]`.
fn chosen_acts(c: &Ctx, x: &Tensor, rows: &[u32]) -> Result<Vec<f32>> {
    let k = c.latents.len();
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let idx = Tensor::from_vec(
        c.latents.iter().map(|&i| i as u32).collect::<Vec<_>>(),
        k,
        c.sae.device(),
    )?;
    let x = x
        .index_select(&Tensor::new(rows, x.device())?, 0)?
        .to_dtype(DType::F32)?
        .to_device(c.sae.device())?;
    Ok(c.sae
        .encode(&x)?
        .to_dtype(DType::F32)?
        .index_select(&idx, 1)?
        .flatten_all()?
        .to_vec1()?)
}

/// Rows from cached activations: no pass up to the hook, then blocks to the end if needed.
fn fast_batch(
    c: &Ctx,
    cr: &mut CachedRows,
    start: Option<usize>,
    batch: &[(u32, usize)],
) -> Result<BatchOut> {
    let l = batch[0].1;
    let x = cr.gather(c.model, c.sae, c.src, batch, l)?;
    let resid = match (c.cfg.loss_effect, start) {
        (true, Some(s)) => Some(c.model.run_blocks(&x, s, None)?),
        _ => None,
    };
    Ok(BatchOut {
        l,
        x: x.reshape((batch.len() * l, c.sae.d_in()))?,
        resid,
        cache: None,
    })
}

/// Rows through the model from their tokens.
fn slow_batch(c: &Ctx, batch: &[(u32, usize)]) -> Result<BatchOut> {
    let (model, sae, cfg) = (c.model, c.sae, c.cfg);
    let l = batch[0].1;
    let bsz = batch.len();
    let mut flat = Vec::with_capacity(bsz * l);
    for &(r, _) in batch {
        let row = &c.src.rows[r as usize];
        flat.extend((0..l).map(|p| row.get(p).copied().unwrap_or(0)));
    }
    let t = Tensor::from_vec(flat, (bsz, l), model.device())?;
    let hook = sae.hook_name().to_string();
    let mut names = vec![hook.clone()];
    if let SaeSite::HookZ { layer } = c.site {
        names.push(format!("blocks.{layer}.attn.hook_v"));
        names.push(format!("blocks.{layer}.attn.hook_pattern"));
    }
    let stop = if cfg.loss_effect {
        Some(model.cfg().n_layers)
    } else {
        HookName::parse(&hook).stop_at_layer()
    };
    let (resid, cache) = model
        .run(&t)
        .names(names.clone())
        .stop_at_layer(stop)
        .cache()?;
    let x = cache
        .get(hook.as_str())?
        .contiguous()?
        .reshape((bsz * l, sae.d_in()))?;
    Ok(BatchOut {
        l,
        x,
        resid: cfg.loss_effect.then_some(resid),
        cache: matches!(c.site, SaeSite::HookZ { .. }).then_some((cache, names)),
    })
}

/// The examples of a batch's rows from its [`BatchOut`].
fn assemble(
    c: &Ctx,
    batch: &[(u32, usize)],
    res: BatchOut,
    by_row: &BTreeMap<u32, Vec<usize>>,
    requests: &[Request],
) -> Result<Vec<(usize, Example)>> {
    let (b0, b1) = c.cfg.buffer;
    let (l, k) = (res.l, c.latents.len());
    // Encode only the window positions.
    let mut at: BTreeMap<u32, usize> = BTreeMap::new();
    for (b, &(r, _)) in batch.iter().enumerate() {
        let len = c.src.row_len(r).min(l);
        for &i in &by_row[&r] {
            let pos = requests[i].firing.pos as usize;
            for p in pos.saturating_sub(b0)..=(pos + b1).min(len - 1) {
                let n = at.len();
                at.entry((b * l + p) as u32).or_insert(n);
            }
        }
    }
    let mut rows = vec![0u32; at.len()];
    for (&fr, &n) in &at {
        rows[n] = fr;
    }
    let acts = chosen_acts(c, &res.x, &rows)?;
    let act = |b: usize, p: usize, slot: usize| acts[at[&((b * l + p) as u32)] * k + slot];

    // Windows.
    let mut built: Vec<(usize, Example)> = Vec::new();
    for (b, &(r, _)) in batch.iter().enumerate() {
        let row = &c.src.rows[r as usize];
        for &i in &by_row[&r] {
            let Request { slot, firing } = requests[i];
            let pos = firing.pos as usize;
            let lo = pos.saturating_sub(b0);
            let hi = (pos + b1).min(l - 1).min(row.len() - 1);
            let tokens = (lo..=hi)
                .map(|p| ExampleToken {
                    id: row[p],
                    token: tok_text(c.vocab, row[p]),
                    pos: p,
                    act: if c.special.contains(&row[p]) {
                        0.0
                    } else {
                        act(b, p, slot)
                    },
                    next_logprob_delta: None,
                    next_logprob: None,
                    boosted: Vec::new(),
                    suppressed: Vec::new(),
                })
                .collect();
            built.push((
                i,
                Example {
                    row: r as usize,
                    pos,
                    act: firing.act,
                    tokens,
                    dfa: None,
                },
            ));
        }
    }
    if let Some(resid) = &res.resid {
        loss_effects(c, resid, batch, &mut built, requests)?;
    }
    if let Some((cache, names)) = &res.cache {
        super::dfa::attach(c, cache, &names[1], &names[2], batch, &mut built, requests)?;
    }
    Ok(built)
}

/// Fill `next_logprob_delta`, `next_logprob`, `boosted`, `suppressed` of the active tokens.
fn loss_effects(
    c: &Ctx,
    resid: &Tensor,
    batch: &[(u32, usize)],
    built: &mut [(usize, Example)],
    requests: &[Request],
) -> Result<()> {
    let (bsz, l, d) = resid.dims3()?;
    let flat = resid.reshape((bsz * l, d))?;
    let b_of: BTreeMap<u32, usize> = batch
        .iter()
        .enumerate()
        .map(|(b, &(r, _))| (r, b))
        .collect();
    // Jobs: (built index, token index, flat row, slot, act, target).
    let mut jobs: Vec<(usize, usize, u32, u32, f32, u32)> = Vec::new();
    let mut clean_rows: BTreeMap<u32, usize> = BTreeMap::new();
    for (bi, (ri, e)) in built.iter().enumerate() {
        let b = b_of[&(e.row as u32)];
        let row = &c.src.rows[e.row];
        for (ti, tk) in e.tokens.iter().enumerate() {
            if tk.act > 0.0 && tk.pos + 1 < row.len() && tk.pos < l {
                let fr = (b * l + tk.pos) as u32;
                let n = clean_rows.len();
                clean_rows.entry(fr).or_insert(n);
                jobs.push((
                    bi,
                    ti,
                    fr,
                    requests[*ri].slot as u32,
                    tk.act,
                    row[tk.pos + 1],
                ));
            }
        }
    }
    if jobs.is_empty() {
        return Ok(());
    }
    let dev = flat.device();
    let mut clean_idx = vec![0u32; clean_rows.len()];
    for (&fr, &n) in &clean_rows {
        clean_idx[n] = fr;
    }
    let clean_x = flat.index_select(&Tensor::new(clean_idx.as_slice(), dev)?, 0)?;
    let mut parts = Vec::new();
    for s in (0..clean_idx.len()).step_by(CHUNK) {
        let n = CHUNK.min(clean_idx.len() - s);
        parts.push(logprobs(c.model, &clean_x.narrow(0, s, n)?)?);
    }
    let clean_lp = Tensor::cat(&parts, 0)?;
    for chunk in jobs.chunks(CHUNK) {
        let rows_idx: Vec<u32> = chunk.iter().map(|j| j.2).collect();
        let cl_idx: Vec<u32> = chunk.iter().map(|j| clean_rows[&j.2] as u32).collect();
        let slots: Vec<u32> = chunk.iter().map(|j| j.3).collect();
        let a: Vec<f32> = chunk.iter().map(|j| j.4).collect();
        let base = flat.index_select(&Tensor::new(rows_idx.as_slice(), dev)?, 0)?;
        let dirs = c
            .dirs
            .index_select(&Tensor::new(slots.as_slice(), dev)?, 0)?;
        let a = Tensor::from_vec(a, (chunk.len(), 1), dev)?;
        let abl = (base - dirs.broadcast_mul(&a)?)?;
        let lp_abl = logprobs(c.model, &abl)?;
        let lp_clean = clean_lp.index_select(&Tensor::new(cl_idx.as_slice(), dev)?, 0)?;
        let tgt: Vec<u32> = chunk.iter().map(|j| j.5).collect();
        let tgt = Tensor::from_vec(tgt, (chunk.len(), 1), dev)?;
        let clean_t: Vec<f32> = lp_clean.gather(&tgt, 1)?.flatten_all()?.to_vec1()?;
        let diff: Vec<f32> = (&lp_clean - &lp_abl)?.flatten_all()?.to_vec1()?;
        let v = diff.len() / chunk.len();
        for (j, job) in chunk.iter().enumerate() {
            let row = &diff[j * v..(j + 1) * v];
            let tk = &mut built[job.0].1.tokens[job.1];
            tk.next_logprob_delta = Some(-row[job.5 as usize]);
            tk.next_logprob = Some(clean_t[j]);
            tk.boosted = extreme(row, c.cfg.hover_top_tokens, true, c.vocab);
            tk.suppressed = extreme(row, c.cfg.hover_top_tokens, false, c.vocab);
        }
    }
    Ok(())
}
