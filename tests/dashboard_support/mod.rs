//! Brute-force reference computations for `tests/dashboard.rs`, written independently of
//! `saescope::analysis::dashboard` (dense activations, plain loops, hook-based ablations).
#![allow(dead_code)]
use saescope::{DType, Device, HookedModel, Hooks, IndexOp, Sae, Tensor};

/// Dense SAE activations `[rows * pos][d_sae]` of token rows, `batch` rows per model pass.
pub fn dense_acts(model: &HookedModel, sae: &Sae, ids: &[Vec<u32>], batch: usize) -> Vec<Vec<f32>> {
    let hook = sae.hook_name().to_string();
    let layer: usize = hook.split('.').nth(1).unwrap().parse().unwrap();
    let mut out = Vec::new();
    for chunk in ids.chunks(batch) {
        let p = chunk[0].len();
        let flat: Vec<u32> = chunk.iter().flatten().copied().collect();
        let t = Tensor::from_vec(flat, (chunk.len(), p), &Device::Cpu).unwrap();
        let (_, cache) = model
            .run_with_cache(&t, vec![hook.as_str()], Some(layer + 1))
            .unwrap();
        let x = cache.get(hook.as_str()).unwrap().flatten_to(1).unwrap();
        let x = x.reshape((chunk.len() * p, sae.d_in())).unwrap();
        let f: Vec<Vec<f32>> = sae.encode(&x).unwrap().to_vec2().unwrap();
        out.extend(f);
    }
    out
}

/// BOS / EOS / PAD ids of the model's tokenizer.
pub fn special_ids(model: &HookedModel) -> Vec<u32> {
    let t = model.tokenizer().unwrap();
    [t.bos_id, t.eos_id, t.pad_id]
        .into_iter()
        .flatten()
        .collect()
}

/// Pearson correlation of two equally long columns.
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let mx = x.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    let cov: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let vx: f64 = x.iter().map(|a| (a - mx).powi(2)).sum();
    let vy: f64 = y.iter().map(|b| (b - my).powi(2)).sum();
    if vx == 0.0 || vy == 0.0 {
        0.0
    } else {
        cov / (vx * vy).sqrt()
    }
}

/// Δ log p(row[t+1]) at position `t` when `a · dir` is subtracted from the final
/// `resid_post` at `t` (a hook on the real forward pass, so the model's own final norm runs),
/// and the clean log-prob.
pub fn ablation_delta(
    model: &HookedModel,
    row: &[u32],
    t: usize,
    a: f32,
    dir: &Tensor,
) -> (f32, f32) {
    let p = row.len();
    let toks = Tensor::from_vec(row.to_vec(), (1, p), &Device::Cpu).unwrap();
    let hook = format!("blocks.{}.hook_resid_post", model.cfg().n_layers - 1);
    let d = model.cfg().d_model;
    let dir = dir.reshape((1, 1, d)).unwrap();
    let mut hooks = Hooks::new();
    hooks.add(hook.as_str(), move |x: &Tensor, _: &str| {
        let mut mask = vec![0f32; x.dim(1)?];
        mask[t] = a;
        let m = Tensor::from_vec(mask, (1, x.dim(1)?, 1), x.device())?;
        Ok(Some(x.broadcast_sub(&m.broadcast_mul(&dir)?)?))
    });
    let abl = model.run_with_hooks(&toks, hooks).unwrap();
    let clean = model.forward(&toks).unwrap();
    let lp = |l: &Tensor| -> f32 {
        let l = candle_nn_log_softmax(&l.i((0, t)).unwrap());
        l[row[t + 1] as usize]
    };
    let (la, lc) = (lp(&abl), lp(&clean));
    (la - lc, lc)
}

/// log_softmax of a `[V]` tensor, on the host in f64.
pub fn candle_nn_log_softmax(x: &Tensor) -> Vec<f32> {
    let v: Vec<f32> = x.to_dtype(DType::F32).unwrap().to_vec1().unwrap();
    let m = v.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let lse = v.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln() + m;
    v.iter().map(|&x| (x as f64 - lse) as f32).collect()
}

/// The DFA of latent column `w [d_in]` at `dest` from a cache of `hook_v` `[1, P, Hkv, dh]` and
/// `hook_pattern` `[1, H, P, P]`, per source position, computed with tensor ops head by head.
pub fn dfa_reference(v: &Tensor, pattern: &Tensor, w: &Tensor, dest: usize) -> Vec<f32> {
    let (_, p, hkv, dh) = v.dims4().unwrap();
    let h = pattern.dim(1).unwrap();
    let mut total = Tensor::zeros(p, DType::F32, &Device::Cpu).unwrap();
    for hh in 0..h {
        let vh = v.i((0, .., hh / (h / hkv), ..)).unwrap(); // [P, dh]
        let wh = w.narrow(0, hh * dh, dh).unwrap().reshape((dh, 1)).unwrap();
        let u = vh.matmul(&wh).unwrap().squeeze(1).unwrap(); // [P]
        let a = pattern.i((0, hh, dest)).unwrap(); // [P]
        total = (total + (a * u).unwrap()).unwrap();
    }
    total.to_vec1().unwrap()
}

/// Top-`k` ids of a vector, largest first (ties: lower id first).
pub fn top_ids(v: &[f32], k: usize) -> Vec<u32> {
    let mut idx: Vec<u32> = (0..v.len() as u32).collect();
    idx.sort_by(|&a, &b| v[b as usize].total_cmp(&v[a as usize]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

/// `x @ y` of a `[1, d]` row and a matrix, as a host vector.
pub fn row_matmul(x: &Tensor, y: &Tensor) -> Vec<f32> {
    x.matmul(y)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}
