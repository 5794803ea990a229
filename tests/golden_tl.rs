//! Golden tests against TransformerLens itself: `scripts/make_goldens.py` ran TL on the same
//! weights and saved every hook, the logits and the log-probs under `tests/fixtures/tl/`.
//! Every tensor must match within 1e-4 relative error (`max|a-b| / max|b|`).
use saescope::{DType, Device, HookedModel, LoadOptions, Resid, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

mod common;
use common::tensors::flat;

const TOL: f64 = 1e-4;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn smollm2_path() -> PathBuf {
    let p = saescope::model::default_data_dir().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch_model.sh first",
        p.display()
    );
    p
}

struct Golden {
    tensors: HashMap<String, Tensor>,
    metadata: HashMap<String, String>,
}

fn load_golden(name: &str) -> Golden {
    let path = fixtures().join("tl").join(format!("{name}.safetensors"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let metadata = meta.metadata().clone().unwrap_or_default();
    let tensors = saescope::candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).unwrap();
    Golden { tensors, metadata }
}

/// `max|a-b| / max|b|` over finite entries; infinities must coincide exactly.
fn rel_err(name: &str, a: &Tensor, b: &Tensor) -> Result<f64, String> {
    if a.dims() != b.dims() {
        return Err(format!("{name}: shape {:?} != TL {:?}", a.dims(), b.dims()));
    }
    let (a, b) = (flat(a), flat(b));
    let (mut diff, mut scale) = (0f64, 0f64);
    for (x, y) in a.iter().zip(&b) {
        if y.is_infinite() || x.is_infinite() {
            if x != y {
                return Err(format!("{name}: {x} vs TL {y}"));
            }
            continue;
        }
        if x.is_nan() || y.is_nan() {
            return Err(format!("{name}: NaN (ours {x}, TL {y})"));
        }
        diff = diff.max((*x as f64 - *y as f64).abs());
        scale = scale.max((*y as f64).abs());
    }
    Ok(if scale == 0.0 { diff } else { diff / scale })
}

fn check(model: &HookedModel, golden: &Golden, expect_all_hooks: bool) {
    let tokens = golden.tensors["tokens"].to_dtype(DType::U32).unwrap();
    let (logits, cache) = model.run_with_cache(&tokens).unwrap();
    let mut failures = Vec::new();
    let mut worst = (0f64, String::new());
    let mut n = 0;
    for (name, want) in &golden.tensors {
        let got = match name.as_str() {
            "tokens" => continue,
            "logits" => logits.clone(),
            "log_probs" => saescope::candle_core::Tensor::log_sum_exp(&logits, saescope::D::Minus1)
                .and_then(|lse| logits.broadcast_sub(&lse.unsqueeze(2)?))
                .unwrap(),
            hook => match cache.get(hook) {
                Ok(t) => t.clone(),
                Err(e) => {
                    failures.push(format!("{hook}: {e}"));
                    continue;
                }
            },
        };
        n += 1;
        match rel_err(name, &got, want) {
            Ok(e) if e <= TOL => {
                if e > worst.0 {
                    worst = (e, name.clone());
                }
            }
            Ok(e) => failures.push(format!("{name}: relative error {e:.3e} > {TOL:e}")),
            Err(m) => failures.push(m),
        }
    }
    // The plain forward pass (fused kernels where no hook point is observed) matches TL too.
    let fast = model.forward(&tokens).unwrap();
    match rel_err("forward logits", &fast, &golden.tensors["logits"]) {
        Ok(e) if e <= TOL => {}
        Ok(e) => failures.push(format!(
            "forward() logits: relative error {e:.3e} > {TOL:e}"
        )),
        Err(m) => failures.push(m),
    }
    // A cache of one early hook takes the fused path everywhere else.
    let (part_logits, part) = model
        .run(&tokens)
        .names("blocks.0.hook_resid_post")
        .cache()
        .unwrap();
    assert_eq!(part.len(), 1);
    if let Ok(e) = rel_err(
        "partial-cache logits",
        &part_logits,
        &golden.tensors["logits"],
    ) {
        if e > TOL {
            failures.push(format!(
                "logits with a one-hook cache: relative error {e:.3e}"
            ));
        }
    }
    if expect_all_hooks {
        let golden_hooks: Vec<&String> = golden
            .tensors
            .keys()
            .filter(|k| !matches!(k.as_str(), "tokens" | "logits" | "log_probs"))
            .collect();
        for h in model.hook_names() {
            if !golden.tensors.contains_key(h) {
                failures.push(format!(
                    "{h}: saescope has this hook but TL's cache does not"
                ));
            }
        }
        assert_eq!(
            golden_hooks.len(),
            model.hook_names().len(),
            "hook count differs from TL"
        );
    }
    failures.sort();
    assert!(
        failures.is_empty(),
        "{} of {n} tensors differ from TL:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!(
        "{n} tensors match TL; worst relative error {:.2e} at {}",
        worst.0, worst.1
    );
}

fn opts(processed: bool) -> LoadOptions {
    if processed {
        LoadOptions::default()
    } else {
        LoadOptions::no_processing()
    }
}

fn run_hf(dir: &str, golden: &str, processed: bool) {
    let model =
        HookedModel::from_pretrained_with(fixtures().join(dir).to_str().unwrap(), &opts(processed))
            .unwrap();
    check(&model, &load_golden(golden), true);
}

#[test]
fn tiny_gpt2_processed_matches_tl() {
    run_hf("tiny-gpt2", "tiny_gpt2_processed", true);
}
#[test]
fn tiny_gpt2_unprocessed_matches_tl() {
    run_hf("tiny-gpt2", "tiny_gpt2_unprocessed", false);
}
#[test]
fn tiny_llama_processed_matches_tl() {
    run_hf("tiny-llama", "tiny_llama_processed", true);
}
#[test]
fn tiny_llama_unprocessed_matches_tl() {
    run_hf("tiny-llama", "tiny_llama_unprocessed", false);
}

fn run_smollm2(processed: bool) {
    let golden = load_golden(if processed {
        "smollm2_processed"
    } else {
        "smollm2_unprocessed"
    });
    let model = HookedModel::from_gguf(&smollm2_path(), &opts(processed)).unwrap();
    // TL's to_tokens (BOS prepended) gives the same ids as ours.
    let prompt = golden
        .metadata
        .get("prompt")
        .expect("golden has the prompt in its metadata");
    let ours: Vec<Vec<u32>> = model.to_tokens(prompt).unwrap().to_vec2().unwrap();
    let tl: Vec<Vec<u32>> = golden.tensors["tokens"]
        .to_dtype(DType::U32)
        .unwrap()
        .to_vec2()
        .unwrap();
    assert_eq!(ours, tl, "to_tokens({prompt:?}) differs from TL");
    check(&model, &golden, processed);
}

#[test]
fn smollm2_processed_matches_tl() {
    run_smollm2(true);
}
#[test]
fn smollm2_unprocessed_matches_tl() {
    run_smollm2(false);
}

/// TL's cache helpers, loss and a `run_with_hooks` head ablation (`*_extras.safetensors`).
fn check_extras(model: &HookedModel, name: &str) {
    let g = load_golden(&format!("{name}_extras"));
    let m = |k: &str| -> usize { g.metadata[k].parse().unwrap() };
    let (mid, tok, inc) = (
        m("mid_layer"),
        m("token") as u32,
        m("incorrect_token") as u32,
    );
    let (layer, head) = (m("ablate_layer"), m("ablate_head"));
    let tokens = g.tensors["tokens"].to_dtype(DType::U32).unwrap();
    let (logits, cache) = model.run_with_cache(&tokens).unwrap();
    let mut got: Vec<(String, Tensor)> = vec![
        (
            "accumulated_resid.incl_mid.apply_ln".into(),
            cache
                .accumulated_resid(Resid::default().incl_mid().apply_ln())
                .unwrap()
                .0,
        ),
        (
            format!("accumulated_resid.layer{mid}.apply_ln"),
            cache
                .accumulated_resid(Resid::at_layer(mid).apply_ln())
                .unwrap()
                .0,
        ),
        (
            "decompose_resid.apply_ln".into(),
            cache
                .decompose_resid(Resid::default().apply_ln())
                .unwrap()
                .0,
        ),
        (
            format!("decompose_resid.layer{mid}.mlp_input.apply_ln"),
            cache
                .decompose_resid(Resid::at_layer(mid).mlp_input().apply_ln())
                .unwrap()
                .0,
        ),
        (
            "per_token_loss".into(),
            model.per_token_loss(&tokens, &logits).unwrap(),
        ),
    ];
    let stack = cache.decompose_resid(Resid::default()).unwrap().0;
    got.push((
        "logit_attrs.decompose_resid".into(),
        cache.logit_attrs(&stack, &[tok], Some(&[inc])).unwrap(),
    ));
    let mut hooks = saescope::Hooks::new();
    hooks.add(("z", layer), |z: &Tensor, _| {
        let mut keep = vec![1f32; z.dim(2)?];
        keep[head] = 0.0;
        Ok(Some(z.broadcast_mul(&Tensor::from_vec(
            keep,
            (1, 1, z.dim(2)?, 1),
            z.device(),
        )?)?))
    });
    got.push((
        "ablated.logits".into(),
        model.run_with_hooks(&tokens, hooks).unwrap(),
    ));
    assert_eq!(
        got.len() + 1,
        g.tensors.len(),
        "every extra golden is checked"
    );
    for (k, t) in got {
        let e = rel_err(&k, &t, &g.tensors[&k]).unwrap();
        assert!(e <= TOL, "{name} {k}: relative error {e:.3e} > {TOL:e}");
    }
}

#[test]
fn tiny_gpt2_cache_helpers_loss_and_ablation_match_tl() {
    let model =
        HookedModel::from_pretrained(fixtures().join("tiny-gpt2").to_str().unwrap()).unwrap();
    check_extras(&model, "tiny_gpt2");
}
#[test]
fn tiny_llama_cache_helpers_loss_and_ablation_match_tl() {
    let model =
        HookedModel::from_pretrained(fixtures().join("tiny-llama").to_str().unwrap()).unwrap();
    check_extras(&model, "tiny_llama");
}
#[test]
fn smollm2_cache_helpers_loss_and_ablation_match_tl() {
    let model = HookedModel::from_gguf(&smollm2_path(), &LoadOptions::default()).unwrap();
    check_extras(&model, "smollm2");
}

// --- Gemma-2 -------------------------------------------------------------------------------

#[test]
fn tiny_gemma2_processed_matches_tl() {
    run_hf("tiny-gemma2", "tiny_gemma2_processed", true);
}
#[test]
fn tiny_gemma2_unprocessed_matches_tl() {
    run_hf("tiny-gemma2", "tiny_gemma2_unprocessed", false);
}

/// Gemma-2's specifics, seen from outside: local layers attend to at most `window_size` keys
/// (global layers further back), scores stay within the attention soft cap, the returned logits
/// are the soft-capped `unembed.hook_out`, processing leaves `W_U` uncentred (TL turns
/// `center_unembed` off under a logit soft cap), and the post-norm hook points are live.
#[test]
fn tiny_gemma2_window_soft_caps_and_post_norms() {
    let dir = fixtures().join("tiny-gemma2");
    let model = HookedModel::from_pretrained(dir.to_str().unwrap()).unwrap();
    let cfg = model.cfg().clone();
    assert_eq!(cfg.architecture, saescope::model::Architecture::Gemma2);
    let (w, attn_cap, logit_cap) = (
        cfg.window_size.unwrap(),
        cfg.attn_scores_soft_cap.unwrap() as f32,
        cfg.output_logits_soft_cap.unwrap() as f32,
    );
    let tokens = load_golden("tiny_gemma2_processed").tensors["tokens"]
        .to_dtype(DType::U32)
        .unwrap();
    let p = tokens.dim(1).unwrap();
    assert!(p > w, "the golden prompt must be longer than the window");
    let (logits, cache) = model.run_with_cache(&tokens).unwrap();
    let mut local_layers = 0;
    for l in 0..cfg.n_layers {
        let local = cfg.window(l).is_some();
        local_layers += usize::from(local);
        let pattern = cache.get(("pattern", l)).unwrap();
        let (b, h) = (pattern.dim(0).unwrap(), pattern.dim(1).unwrap());
        let v = flat(&pattern);
        let mut far = 0f32; // attention to keys at least `w` back
        for (r, row) in v.chunks(p).enumerate() {
            let i = r % p;
            for (j, &x) in row.iter().enumerate() {
                if j > i {
                    assert_eq!(x, 0.0, "layer {l}: query {i} attends to future key {j}");
                } else if i - j >= w {
                    far = far.max(x);
                }
            }
        }
        assert_eq!(v.len(), b * h * p * p);
        if local {
            assert_eq!(far, 0.0, "local layer {l} attends outside its window");
        } else {
            assert!(
                far > 0.0,
                "global layer {l} never attends beyond the window"
            );
        }
        let scores = flat(&cache.get(("attn_scores", l)).unwrap());
        assert!(scores
            .iter()
            .all(|x| *x == f32::NEG_INFINITY || x.abs() <= attn_cap));
    }
    assert!(local_layers > 0 && local_layers < cfg.n_layers);
    // logits = cap * tanh(hook_out / cap).
    let out = cache.get("unembed.hook_out").unwrap();
    let capped = ((&out / logit_cap as f64).unwrap().tanh().unwrap() * logit_cap as f64).unwrap();
    assert!(common::tensors::rel_err(&logits, &capped) < 1e-6);
    assert!(common::tensors::max_abs(&logits) < logit_cap);
    assert!(common::tensors::max_abs(&out) > 0.0);
    let row_means = model.w_u().mean(1).unwrap();
    assert!(
        common::tensors::max_abs(&row_means) > 1e-4,
        "W_U was centred"
    );
    // Zeroing the last post-MLP norm's output zeroes the MLP's contribution.
    let last = cfg.n_layers - 1;
    let mut hooks = saescope::Hooks::new();
    hooks.add(("normalized", last, "ln2_post"), |x: &Tensor, _| {
        Ok(Some(x.zeros_like()?))
    });
    let (_, c) = model
        .run(&tokens)
        .hooks(hooks)
        .names(vec![format!("blocks.{last}.hook_mlp_out")])
        .cache()
        .unwrap();
    assert_eq!(
        common::tensors::max_abs(&c.get(("mlp_out", last)).unwrap()),
        0.0
    );
}
#[test]
fn tiny_gemma2_cache_helpers_loss_and_ablation_match_tl() {
    let model =
        HookedModel::from_pretrained(fixtures().join("tiny-gemma2").to_str().unwrap()).unwrap();
    check_extras(&model, "tiny_gemma2");
}
