//! HookedModel API behaviour beyond the golden values: hooks that replace activations,
//! names filters, stop_at_layer, cache helpers, loss, tokens, errors.
use saescope::{
    get_act_name, DType, Error, HookedModel, Hooks, IndexOp, LoadOptions, NamesFilter, Resid,
    Tensor, D,
};
use std::path::{Path, PathBuf};

mod common;
use common::tensors::max_abs_diff;

fn fixture(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(p)
}
fn tiny_gpt2() -> HookedModel {
    HookedModel::from_pretrained(fixture("tiny-gpt2").to_str().unwrap()).unwrap()
}
fn tiny_llama() -> HookedModel {
    HookedModel::from_pretrained(fixture("tiny-llama").to_str().unwrap()).unwrap()
}
fn toks(m: &HookedModel) -> Tensor {
    let ids: Vec<u32> = (0..14)
        .map(|i| (i * 37 + 5) % m.cfg().d_vocab as u32)
        .collect();
    Tensor::from_vec(ids, (2, 7), m.device()).unwrap()
}

#[test]
fn zero_ablating_a_head_propagates() {
    for m in [tiny_gpt2(), tiny_llama()] {
        let t = toks(&m);
        let clean = m.forward(&t).unwrap();
        let head = 1;
        let mut hooks = Hooks::new();
        hooks.add(("z", 0), |z: &Tensor, name: &str| {
            assert_eq!(name, "blocks.0.attn.hook_z");
            let (b, p, h, dh) = z.dims4()?;
            let mut mask = vec![1f32; h];
            mask[head] = 0.0;
            let mask = Tensor::from_vec(mask, (1, 1, h, 1), z.device())?;
            let _ = (b, p, dh);
            Ok(Some(z.broadcast_mul(&mask)?))
        });
        let (ablated, cache) = m.run(&t).hooks(hooks).cache().unwrap();
        assert!(
            max_abs_diff(&clean, &ablated) > 1e-3,
            "ablation must change the logits"
        );
        // The cache sees the replaced value, and attn_out is built from it.
        let z = cache.get(("z", 0)).unwrap();
        assert_eq!(
            z.i((.., .., head))
                .unwrap()
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap(),
            0.0
        );
        let (b, p, h, dh) = z.dims4().unwrap();
        let w_o = m
            .w_o(0)
            .unwrap()
            .reshape((h * dh, m.cfg().d_model))
            .unwrap();
        let attn_out = z
            .reshape((b * p, h * dh))
            .unwrap()
            .matmul(&w_o)
            .unwrap()
            .broadcast_add(&m.b_o(0).unwrap())
            .unwrap();
        let want = cache
            .get(("attn_out", 0))
            .unwrap()
            .reshape((b * p, m.cfg().d_model))
            .unwrap();
        assert!(max_abs_diff(&attn_out, &want) < 1e-4);
        // A hook returning None leaves everything unchanged (up to the fused kernels' rounding:
        // hooking every point takes the unfused path).
        let mut noop = Hooks::new();
        noop.add_filter(|_| true, |_, _| Ok(None));
        assert!(max_abs_diff(&m.run_with_hooks(&t, noop).unwrap(), &clean) < 1e-5);
    }
}

#[test]
fn hook_returning_wrong_shape_is_an_error() {
    let m = tiny_gpt2();
    let mut hooks = Hooks::new();
    hooks.add("blocks.0.hook_resid_pre", |x: &Tensor, _| {
        Ok(Some(x.narrow(1, 0, 1)?))
    });
    let err = m.run_with_hooks(toks(&m), hooks).unwrap_err().to_string();
    assert!(
        err.contains("blocks.0.hook_resid_pre") && err.contains("shape"),
        "{err}"
    );
}

#[test]
fn unknown_hook_names_list_the_nearest_valid_ones() {
    let m = tiny_gpt2();
    let err = m
        .run(toks(&m))
        .names("blocks.0.hook_resid_prre")
        .cache()
        .unwrap_err();
    match &err {
        Error::UnknownHook { name, suggestions } => {
            assert_eq!(name, "blocks.0.hook_resid_prre");
            assert_eq!(suggestions[0], "blocks.0.hook_resid_pre");
        }
        other => panic!("unexpected error {other}"),
    }
    assert!(err.to_string().contains("blocks.0.hook_resid_pre"));
    let mut hooks = Hooks::new();
    hooks.add("blocks.1.attn.hook_zz", |_, _| Ok(None));
    let err = m.run_with_hooks(toks(&m), hooks).unwrap_err().to_string();
    assert!(err.contains("blocks.1.attn.hook_z"), "{err}");
    // And on the cache.
    let (_, cache) = m.run_with_cache(toks(&m)).unwrap();
    assert!(cache
        .get("blocks.9.hook_resid_pre")
        .unwrap_err()
        .to_string()
        .contains("blocks.0.hook_resid_pre"));
}

#[test]
fn names_filter_and_stop_at_layer() {
    let m = tiny_llama();
    let t = toks(&m);
    let (_, full) = m.run_with_cache(&t).unwrap();
    assert_eq!(
        full.keys().collect::<Vec<_>>(),
        m.hook_names()
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
    );
    let (_, only) = m
        .run(&t)
        .names(NamesFilter::names([("resid_pre", 1), ("pattern", 0)]))
        .cache()
        .unwrap();
    assert_eq!(
        only.keys().collect::<Vec<_>>(),
        ["blocks.0.attn.hook_pattern", "blocks.1.hook_resid_pre"]
    );
    let (_, f) = m
        .run(&t)
        .names(NamesFilter::func(|n| n.ends_with("hook_rot_k")))
        .cache()
        .unwrap();
    assert_eq!(f.len(), m.cfg().n_layers);
    // stop_at_layer = 1 returns the residual stream before block 1 and caches nothing after it.
    let (resid, c) = m.run(&t).stop_at_layer(1).cache().unwrap();
    assert_eq!(
        max_abs_diff(&resid, &full.get(("resid_pre", 1)).unwrap()),
        0.0
    );
    assert!(c
        .keys()
        .all(|k| !k.starts_with("blocks.1") && !k.starts_with("ln_final")));
    assert!(c.contains("blocks.0.hook_resid_post"));
}

#[test]
fn cache_helpers_follow_tl() {
    let m = tiny_gpt2();
    let t = toks(&m);
    let (logits, cache) = m.run_with_cache(&t).unwrap();
    let n = m.cfg().n_layers;
    let (acc, labels) = cache
        .accumulated_resid(Resid::default().incl_mid())
        .unwrap();
    assert_eq!(labels, ["0_pre", "0_mid", "1_pre", "1_mid", "final_post"]);
    assert_eq!(acc.dim(0).unwrap(), 2 * n + 1);
    // decompose_resid sums to the final residual stream.
    let (parts, labels) = cache.decompose_resid(Resid::default()).unwrap();
    assert_eq!(labels[..2], ["embed", "pos_embed"]);
    let total = parts.sum(0).unwrap();
    assert!(max_abs_diff(&total, &cache.get(("resid_post", n - 1)).unwrap()) < 1e-4);
    // Logit attribution of the full residual stream, plus b_U, is the logit (processed model).
    let tok_id = 7u32;
    let attrs = cache
        .logit_attrs(&parts, &[tok_id], None)
        .unwrap()
        .sum(0)
        .unwrap();
    let b_u = m
        .b_u()
        .unwrap()
        .i(tok_id as usize)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap() as f64;
    let want = logits.i((.., .., tok_id as usize)).unwrap();
    assert!(max_abs_diff(&(attrs + b_u).unwrap(), &want) < 1e-3);
    // A logit difference.
    let diff = cache
        .logit_attrs(&parts, &[tok_id], Some(&[3]))
        .unwrap()
        .sum(0)
        .unwrap();
    let b3 = m.b_u().unwrap().i(3).unwrap().to_scalar::<f32>().unwrap() as f64;
    let want = (logits.i((.., .., 7)).unwrap() - logits.i((.., .., 3)).unwrap()).unwrap();
    assert!(max_abs_diff(&((diff + b_u).unwrap() - b3).unwrap(), &want) < 1e-3);
}

#[test]
fn per_token_loss_is_next_token_cross_entropy() {
    let m = tiny_llama();
    let t = toks(&m);
    let logits = m.forward(&t).unwrap();
    let loss = m.per_token_loss(&t, &logits).unwrap();
    assert_eq!(loss.dims(), [2, 6]);
    let lp = candle_nn_log_softmax(&logits);
    let want = -lp
        .i((1, 3))
        .unwrap()
        .i(t.i((1, 4)).unwrap().to_scalar::<u32>().unwrap() as usize)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let got = loss.i((1, 3)).unwrap().to_scalar::<f32>().unwrap();
    assert!((got - want).abs() < 1e-5);
    let mean = m.loss(&t, &logits).unwrap().to_scalar::<f32>().unwrap();
    assert!((mean - loss.mean_all().unwrap().to_scalar::<f32>().unwrap()).abs() < 1e-6);
}

fn candle_nn_log_softmax(x: &Tensor) -> Tensor {
    let lse = x
        .log_sum_exp(D::Minus1)
        .unwrap()
        .unsqueeze(D::Minus1)
        .unwrap();
    x.broadcast_sub(&lse).unwrap()
}

#[test]
fn get_act_name_matches_tl() {
    assert_eq!(get_act_name("k", Some(3), None), "blocks.3.attn.hook_k");
    assert_eq!(
        get_act_name("rot_q", Some(0), None),
        "blocks.0.attn.hook_rot_q"
    );
    assert_eq!(
        get_act_name("pre_linear", Some(2), None),
        "blocks.2.mlp.hook_pre_linear"
    );
    assert_eq!(
        get_act_name("mlp_post", Some(2), None),
        "blocks.2.mlp.hook_post"
    );
    assert_eq!(
        get_act_name("attn_logits", Some(1), None),
        "blocks.1.attn.hook_attn_scores"
    );
    assert_eq!(
        get_act_name("normalized", Some(1), Some("ln2")),
        "blocks.1.ln2.hook_normalized"
    );
    assert_eq!(get_act_name("scale", None, None), "ln_final.hook_scale");
    assert_eq!(
        get_act_name("resid_mid", Some(4), Some("b")),
        "blocks.4.hook_resid_mid"
    );
    assert_eq!(
        get_act_name("blocks.0.hook_resid_pre", Some(5), None),
        "blocks.0.hook_resid_pre"
    );
}

#[test]
fn bad_tokens_are_errors() {
    let m = tiny_gpt2();
    let too_big = Tensor::new(&[[1u32, 999]], m.device()).unwrap();
    assert!(m
        .forward(&too_big)
        .unwrap_err()
        .to_string()
        .contains("out of range"));
    let floats = Tensor::new(&[[1f32, 2.0]], m.device()).unwrap();
    assert!(m.forward(&floats).is_err());
    let long = Tensor::zeros((1, 40), DType::U32, m.device()).unwrap();
    assert!(m.forward(&long).unwrap_err().to_string().contains("n_ctx"));
    // i64 tokens (TL's dtype) work.
    let t64 = toks(&m).to_dtype(DType::I64).unwrap();
    assert_eq!(
        max_abs_diff(&m.forward(&t64).unwrap(), &m.forward(&toks(&m)).unwrap()),
        0.0
    );
}

#[test]
fn corrupt_model_files_give_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    // Truncated safetensors in an HF directory.
    let hf = dir.path().join("trunc");
    std::fs::create_dir(&hf).unwrap();
    std::fs::copy(fixture("tiny-gpt2/config.json"), hf.join("config.json")).unwrap();
    let bytes = std::fs::read(fixture("tiny-gpt2/model.safetensors")).unwrap();
    std::fs::write(hf.join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let err = HookedModel::from_pretrained(hf.to_str().unwrap())
        .err()
        .unwrap();
    let msg = err.to_string();
    assert!(
        matches!(err, Error::ModelFile { .. })
            && msg.contains("model.safetensors")
            && msg.contains("truncated"),
        "{msg}"
    );
    // Garbage safetensors.
    std::fs::write(
        hf.join("model.safetensors"),
        b"this is not a safetensors file at all",
    )
    .unwrap();
    let msg = HookedModel::from_pretrained(hf.to_str().unwrap())
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("model.safetensors"), "{msg}");
    // Broken config.json.
    std::fs::write(hf.join("config.json"), b"{ not json").unwrap();
    let msg = HookedModel::from_pretrained(hf.to_str().unwrap())
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("config.json"), "{msg}");
    // Truncated and garbage GGUF files.
    let gguf = saescope::model::default_data_dir().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(gguf.exists(), "run scripts/fetch_model.sh first");
    let head = {
        use std::io::Read;
        let mut v = vec![0u8; 8 << 20];
        std::fs::File::open(&gguf)
            .unwrap()
            .read_exact(&mut v)
            .unwrap();
        v
    };
    let cut = dir.path().join("cut.gguf");
    std::fs::write(&cut, &head).unwrap();
    let msg = HookedModel::from_gguf(&cut, &LoadOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("cut.gguf") && msg.contains("truncated"),
        "{msg}"
    );
    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, vec![7u8; 1000]).unwrap();
    let msg = HookedModel::from_pretrained(junk.to_str().unwrap())
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("junk.gguf"), "{msg}");
    // Unknown model names explain what is accepted.
    let msg = HookedModel::from_pretrained("no-such-model")
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("smollm2") && msg.contains("gpt2"), "{msg}");
}

#[test]
fn token_helpers_on_the_default_model() {
    let m = HookedModel::from_pretrained("smollm2").unwrap();
    let text = "The Golden Gate Bridge is in San Francisco. 12345";
    let ids: Vec<Vec<u32>> = m.to_tokens(text).unwrap().to_vec2().unwrap();
    assert_eq!(
        ids[0],
        [1, 504, 13578, 18447, 13480, 314, 281, 4653, 10463, 30, 216, 33, 34, 35, 36, 37]
    );
    let no_bos: Vec<Vec<u32>> = m.to_tokens_with(text, false).unwrap().to_vec2().unwrap();
    assert_eq!(no_bos[0], ids[0][1..]);
    let strs = m.to_str_tokens("The capital of France").unwrap();
    assert_eq!(strs, ["<|im_start|>", "The", " capital", " of", " France"]);
    assert_eq!(m.to_string(&ids[0][1..]).unwrap(), text);
    assert_eq!(m.to_single_token(" Paris").unwrap(), 7042);
    let err = m
        .to_single_token(" Parisian capitals")
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a single token"), "{err}");
    assert_eq!(
        m.get_token_position(" the", "the cat saw the dog and the bird", false)
            .unwrap(),
        4
    );
    assert_eq!(
        m.get_token_position(" the", "the cat saw the dog and the bird", true)
            .unwrap(),
        7
    );
    assert!(m
        .get_token_position(" Paris", "no such token here", false)
        .is_err());
    let batch = m.to_tokens_batch(&["a b c d", "a"], true).unwrap();
    assert_eq!(batch.dims(), [2, 5]);
    let r = m
        .test_prompt("The capital of France is", "Paris", true, 5)
        .unwrap();
    assert_eq!(r.ranks(), [0]);
    assert_eq!(r.rows[0].token, " Paris");
    assert_eq!(r.rows[0].top[0].0, " Paris");
    let text = r.to_string();
    assert!(
        text.contains("Rank: 0") && text.contains("Ranks of the answer tokens: [0]"),
        "{text}"
    );
}
