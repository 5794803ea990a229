//! Brute-force reference computations for the dashboard tests (`tests/dashboard*.rs`), written
//! independently of `saescope::analysis::dashboard` (dense activations, plain loops, hook-based
//! ablations), and their shared fixture.
#![allow(dead_code)]
pub mod fixture;

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
            .run(&t)
            .names(vec![hook.as_str()])
            .stop_at_layer(layer + 1)
            .cache()
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

/// A random standard SAE on `blocks.2.attn.hook_z` of SmolLM2 (9 heads × 64 = 576).
pub fn hook_z_sae() -> Sae {
    let (d, n) = (576usize, 16usize);
    let cfg = saescope::SaeConfig::from_json_value(serde_json::json!({
        "architecture": "standard", "d_in": d, "d_sae": n, "dtype": "float32",
        "apply_b_dec_to_input": false, "normalize_activations": "none",
        "reshape_activations": "hook_z",
        "metadata": {"hook_name": "blocks.2.attn.hook_z"}
    }))
    .unwrap();
    let mut s: u64 = 11;
    let mut rnd = |shape: &[usize], scale: f32| {
        let v: Vec<f32> = (0..shape.iter().product::<usize>())
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * scale
            })
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    };
    let t = std::collections::HashMap::from([
        ("W_enc".to_string(), rnd(&[d, n], 1.0)),
        ("W_dec".to_string(), rnd(&[n, d], 0.2)),
        (
            "b_enc".to_string(),
            Tensor::zeros(n, saescope::DType::F32, &Device::Cpu).unwrap(),
        ),
        (
            "b_dec".to_string(),
            Tensor::zeros(d, saescope::DType::F32, &Device::Cpu).unwrap(),
        ),
    ]);
    Sae::from_config_and_tensors(cfg, t, &Device::Cpu).unwrap()
}

/// Chromium, or None (then the test is skipped unless CI is set).
pub fn chromium() -> Option<String> {
    for c in ["chromium", "chromium-browser", "google-chrome"] {
        if std::process::Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Some(c.to_string());
        }
    }
    if std::env::var_os("CI").is_some() {
        panic!("chromium is not installed but CI is set: run scripts/setup_chromium.sh");
    }
    eprintln!("skipping: chromium is not installed (scripts/setup_chromium.sh installs it)");
    None
}

pub fn dump_dom(chrome: &str, file: &std::path::Path) -> String {
    let out = std::process::Command::new(chrome)
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--virtual-time-budget=3000",
            "--dump-dom",
        ])
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Pixels in the right 3/5 of a PNG screenshot that look like the dashboards' orange token
/// highlights (`rgba(255,140,0,α)` over white).
pub fn orange_pixels(shot: &std::path::Path) -> usize {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let ch = info.color_type.samples();
    let (w, h) = (info.width as usize, info.height as usize);
    // Orange token highlights (rgba(255,140,0,α) on white) in the right-hand column.
    let mut orange = 0usize;
    for y in 0..h {
        for x in w * 2 / 5..w {
            let p = &buf[(y * w + x) * ch..(y * w + x) * ch + 3];
            if p[0] > 230 && p[1] > 120 && p[1] < 225 && p[2] < 150 {
                orange += 1;
            }
        }
    }
    orange
}
