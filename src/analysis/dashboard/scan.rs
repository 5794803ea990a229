//! The streaming scan: the SAE's input activations chunk by chunk (a model pass with
//! `stop_at_layer`, or the activation cache's shards), encoded by the SAE; only the chosen
//! latents' firings (row, position, activation) and running correlation sums are kept.
use super::corr::CorrAcc;
use super::select::Firing;
use super::source::Source;
use super::{Correlations, DashboardConfig, Progress, Stage};
use crate::error::{Error, Result};
use crate::hooks::HookName;
use crate::model::HookedModel;
use crate::sae::Sae;
use crate::tokenizer::SpecialTokens;
use crate::train::act_cache::CachedActivations;
use candle_core::{DType, Device, Tensor};

/// Tokens per chunk when reading an activation cache.
const CACHE_CHUNK: usize = 4096;

/// Location of a scanned token: (row, position).
type Loc = (u32, u32);

/// Call `f` with the SAE input `[T, d_in]` (f32, on the SAE's device) of every scanned chunk and
/// the tokens' locations. Returns the number of tokens scanned (special tokens left out).
pub(crate) fn stream(
    model: &HookedModel,
    sae: &Sae,
    src: &Source,
    cfg: &DashboardConfig,
    stage: Stage,
    progress: &mut dyn FnMut(Progress),
    f: &mut dyn FnMut(&Tensor, &[Loc]) -> Result<()>,
) -> Result<u64> {
    let special: Vec<u32> = if cfg.exclude_special_tokens {
        model
            .tokenizer()
            .map(|t| SpecialTokens::Structural.ids(t))
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let d_in = sae.d_in();
    let mut done = 0u64;
    let mut scanned = 0u64;
    if let Some(c) = &src.cache {
        let reader = CachedActivations::open(&c.dir, None)?;
        let total = c.n_tokens;
        let (mut row, mut k) = (0usize, 0usize);
        'shards: for si in 0..c.manifest.shards.len() {
            let (acts, toks) = reader.read_shard(si)?;
            if toks.len() != acts.len() / d_in {
                return Err(Error::Invalid(format!(
                    "activation cache {}: shard {si} has {} token ids for {} activations; \
                     dashboards need the `token_ids` of every cached token (recreate the cache \
                     with `saescope cache-activations`)",
                    c.dir.display(),
                    toks.len(),
                    acts.len() / d_in
                )));
            }
            let n = toks.len();
            let mut start = 0;
            while start < n {
                if done >= total {
                    break 'shards;
                }
                let end = (start + CACHE_CHUNK)
                    .min(n)
                    .min(start + (total - done) as usize);
                let mut locs = Vec::with_capacity(end - start);
                let mut keep = Vec::with_capacity(end - start);
                for (i, &t) in toks[start..end].iter().enumerate() {
                    while k >= c.kept[row].len() {
                        row += 1;
                        k = 0;
                    }
                    let pos = c.kept[row][k];
                    if src.rows[row][pos as usize] != t {
                        return Err(Error::Invalid(format!(
                            "activation cache {}: token {} is id {t} but the rebuilt row {row} \
                             has {} at position {pos}; the cache was made from other data",
                            c.dir.display(),
                            done + i as u64,
                            src.rows[row][pos as usize]
                        )));
                    }
                    if !special.contains(&t) {
                        locs.push((row as u32, pos));
                        keep.push(start + i);
                    }
                    k += 1;
                }
                let mut x = Vec::with_capacity(keep.len() * d_in);
                for &i in &keep {
                    x.extend_from_slice(&acts[i * d_in..(i + 1) * d_in]);
                }
                done += (end - start) as u64;
                scanned += locs.len() as u64;
                if !locs.is_empty() {
                    let x = Tensor::from_vec(x, (locs.len(), d_in), &Device::Cpu)?
                        .to_device(sae.device())?;
                    f(&x, &locs)?;
                }
                progress(Progress { stage, done, total });
                start = end;
            }
        }
        return Ok(scanned);
    }
    let hook = sae.hook_name().to_string();
    let stop = HookName::parse(&hook).stop_at_layer();
    let total: u64 = src.rows.iter().map(|r| r.len() as u64).sum();
    let bs = cfg.batch_size.max(1);
    for (bi, chunk) in src.rows.chunks(bs).enumerate() {
        let p = chunk[0].len();
        let flat: Vec<u32> = chunk.iter().flatten().copied().collect();
        let t = Tensor::from_vec(flat.clone(), (chunk.len(), p), model.device())?;
        let (_, cache) = model
            .run(&t)
            .names(hook.as_str())
            .stop_at_layer(stop)
            .cache()?;
        let a = cache.get(hook.as_str())?;
        let n = chunk.len() * p;
        if a.elem_count() != n * d_in {
            return Err(Error::Invalid(format!(
                "hook `{hook}` has shape {:?}, which does not flatten to [{n}, {d_in}] (SAE d_in)",
                a.dims()
            )));
        }
        let x = a
            .contiguous()?
            .reshape((n, d_in))?
            .to_dtype(DType::F32)?
            .to_device(sae.device())?;
        let mut locs = Vec::with_capacity(n);
        let mut keep = Vec::with_capacity(n);
        for (i, &tok) in flat.iter().enumerate() {
            if !special.contains(&tok) {
                locs.push(((bi * bs + i / p) as u32, (i % p) as u32));
                keep.push(i as u32);
            }
        }
        let x = if keep.len() == n {
            x
        } else {
            x.index_select(&Tensor::from_vec(keep, locs.len(), x.device())?, 0)?
        };
        done += n as u64;
        scanned += locs.len() as u64;
        if !locs.is_empty() {
            f(&x, &locs)?;
        }
        progress(Progress { stage, done, total });
    }
    Ok(scanned)
}

/// Per-latent maximum activation and number of active tokens over the whole scan (for
/// choosing the top latents), and the number of tokens.
pub(crate) fn latent_totals(
    model: &HookedModel,
    sae: &Sae,
    src: &Source,
    cfg: &DashboardConfig,
    progress: &mut dyn FnMut(Progress),
) -> Result<(Vec<f32>, Vec<u64>, u64)> {
    let d = sae.d_sae();
    let (mut max, mut count) = (vec![0f32; d], vec![0u64; d]);
    let n = stream(
        model,
        sae,
        src,
        cfg,
        Stage::Select,
        progress,
        &mut |x, _| {
            let f = sae.encode(x)?.to_dtype(DType::F32)?;
            let m: Vec<f32> = f.max(0)?.to_vec1()?;
            let c: Vec<f32> = f.gt(0f32)?.to_dtype(DType::F32)?.sum(0)?.to_vec1()?;
            for j in 0..d {
                max[j] = max[j].max(m[j]);
                count[j] += c[j] as u64;
            }
            Ok(())
        },
    )?;
    Ok((max, count, n))
}

/// What the main scan keeps.
pub(crate) struct Scan {
    /// Per chosen latent, its firings (unsorted).
    pub firings: Vec<Vec<Firing>>,
    pub n_tokens: u64,
    /// Correlations with the other latents; columns are latents (all, or the chosen ones).
    pub corr_latents: Option<(CorrAcc, Vec<usize>)>,
    /// Correlations with the SAE's input neurons (MLP-neuron SAEs).
    pub corr_neurons: Option<CorrAcc>,
}

pub(crate) fn scan(
    model: &HookedModel,
    sae: &Sae,
    src: &Source,
    latents: &[usize],
    cfg: &DashboardConfig,
    neurons: bool,
    progress: &mut dyn FnMut(Progress),
) -> Result<Scan> {
    let k = latents.len();
    let idx = Tensor::from_vec(
        latents.iter().map(|&i| i as u32).collect::<Vec<_>>(),
        k,
        sae.device(),
    )?;
    let mut firings: Vec<Vec<Firing>> = vec![Vec::new(); k];
    let mut corr_latents = match cfg.correlations {
        Correlations::None => None,
        Correlations::AmongSelected => Some((
            CorrAcc::new(k, k, (0..k).map(Some).collect()),
            latents.to_vec(),
        )),
        Correlations::AllLatents => Some((
            CorrAcc::new(k, sae.d_sae(), latents.iter().map(|&i| Some(i)).collect()),
            (0..sae.d_sae()).collect(),
        )),
    };
    let among = cfg.correlations == Correlations::AmongSelected;
    let mut corr_neurons = neurons.then(|| CorrAcc::new(k, sae.d_in(), vec![None; k]));
    let n_tokens = stream(
        model,
        sae,
        src,
        cfg,
        Stage::Scan,
        progress,
        &mut |x, locs| {
            let f = sae.encode(x)?.to_dtype(DType::F32)?;
            let chosen = f.index_select(&idx, 1)?.contiguous()?;
            let v: Vec<f32> = chosen.flatten_all()?.to_vec1()?;
            for (t, &(row, pos)) in locs.iter().enumerate() {
                for (j, fj) in firings.iter_mut().enumerate() {
                    let a = v[t * k + j];
                    if a > 0.0 {
                        fj.push(Firing { row, pos, act: a });
                    }
                }
            }
            if let Some((acc, _)) = &mut corr_latents {
                if among {
                    acc.update(&chosen, &chosen)?
                } else {
                    acc.update(&chosen, &f)?
                }
            }
            if let Some(acc) = &mut corr_neurons {
                acc.update(&chosen, x)?;
            }
            Ok(())
        },
    )?;
    Ok(Scan {
        firings,
        n_tokens,
        corr_latents,
        corr_neurons,
    })
}
