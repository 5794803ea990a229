//! Generation with a KV cache, hooks and spliced SAEs, against TransformerLens's `generate`
//! (`scripts/make_generate_goldens.py` → `tests/fixtures/generate/generate_goldens.json`).
use saescope::model::GenerateOptions;
use saescope::SaeRunOptions;
use saescope::{DType, Error, HookedModel, Hooks, LoadOptions, Tensor};
use serde_json::Value;
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

mod common;
use common::tensors::rel_err;

/// (hook name, activation shape) per firing.
type HookLog = Rc<RefCell<Vec<(String, Vec<usize>)>>>;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}
fn goldens() -> Value {
    let p = fixtures().join("generate/generate_goldens.json");
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}
fn smollm2() -> HookedModel {
    HookedModel::from_pretrained("smollm2").unwrap()
}
fn tiny(dir: &str) -> HookedModel {
    HookedModel::from_pretrained_with(
        fixtures().join(dir).to_str().unwrap(),
        &LoadOptions::default(),
    )
    .unwrap()
}
fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}
fn row_tokens(ids: &[u32]) -> Tensor {
    Tensor::from_vec(ids.to_vec(), (1, ids.len()), &saescope::Device::Cpu).unwrap()
}

/// The three golden settings of `make_generate_goldens.py`.
fn settings(max_new: usize, stop_at_eos: bool, fp: f64) -> Vec<(&'static str, GenerateOptions)> {
    let greedy = GenerateOptions {
        stop_at_eos,
        ..GenerateOptions::greedy(max_new)
    };
    vec![
        ("greedy_kv", greedy.clone()),
        (
            "greedy_no_kv",
            GenerateOptions {
                use_past_kv_cache: false,
                ..greedy.clone()
            },
        ),
        (
            "freq_penalty_top1_kv",
            GenerateOptions {
                do_sample: true,
                top_k: Some(1),
                freq_penalty: fp,
                seed: Some(3),
                ..greedy
            },
        ),
    ]
}

#[test]
fn smollm2_generate_matches_transformer_lens() {
    let g = goldens();
    let model = smollm2();
    let fp = g["freq_penalty"].as_f64().unwrap();
    let mut n = 0;
    for row in g["smollm2"].as_array().unwrap() {
        let prompt = row["prompt"].as_str().unwrap();
        let max_new = row["max_new_tokens"].as_u64().unwrap() as usize;
        let prompt_ids: Vec<u32> = model
            .to_tokens(prompt)
            .unwrap()
            .to_vec2()
            .unwrap()
            .remove(0);
        assert_eq!(
            prompt_ids,
            ids(&row["prompt_tokens"]),
            "to_tokens({prompt:?})"
        );
        assert_eq!(
            model.tokenizer().unwrap().eos_id,
            Some(row["eos_token_id"].as_u64().unwrap() as u32)
        );
        for (name, opts) in settings(max_new, true, fp) {
            let t0 = std::time::Instant::now();
            let out = model.generate(prompt, &opts).unwrap();
            let got = out.ids().unwrap().remove(0);
            let want = ids(&row[name]);
            assert_eq!(
                got,
                want,
                "{name} on {prompt:?}:\n ours {:?}\n TL   {:?}",
                model.to_string(&got).unwrap(),
                model.to_string(&want).unwrap()
            );
            eprintln!(
                "{name} {prompt:?}: {} new tokens equal TL's ({:.2?})",
                out.n_new(),
                t0.elapsed()
            );
            if name == "greedy_kv" {
                assert_eq!(out.text().unwrap(), row["greedy_kv_text"].as_str().unwrap());
            }
            n += 1;
        }
    }
    // The chat prompt stops at <|im_end|> before max_new_tokens (stop_at_eos).
    let chat = &g["smollm2"][2]["greedy_kv"];
    assert_eq!(ids(chat).last(), Some(&2), "the chat golden ends with EOS");
    assert_eq!(n, 9);
}

#[test]
fn tiny_models_generate_matches_transformer_lens() {
    let g = goldens();
    let fp = g["freq_penalty"].as_f64().unwrap();
    for row in g["tiny"].as_array().unwrap() {
        let model = tiny(row["dir"].as_str().unwrap());
        let prompt = row_tokens(&ids(&row["prompt_tokens"]));
        let max_new = row["max_new_tokens"].as_u64().unwrap() as usize;
        for (name, opts) in settings(max_new, false, fp) {
            let got = model
                .generate(&prompt, &opts)
                .unwrap()
                .ids()
                .unwrap()
                .remove(0);
            assert_eq!(got, ids(&row[name]), "{} {name}", row["model"]);
        }
        // The whole context is used: n_ctx positions.
        assert_eq!(ids(&row["greedy_kv"]).len(), model.cfg().n_ctx);
    }
}

/// Logits of an incremental pass (prefix, then single tokens, then a chunk) equal the full
/// pass's (max rel err < 1e-4).
fn check_cached_logits(model: &HookedModel, tokens: &[u32], what: &str) -> f32 {
    let full = model.forward(&row_tokens(tokens)).unwrap();
    let n = tokens.len();
    let mut cache = model.new_kv_cache();
    let mut parts = Vec::new();
    let mut at = 0;
    for len in [3, 1, 1, 1, 3, 1] {
        let len = len.min(n - at);
        if len == 0 {
            break;
        }
        let chunk = row_tokens(&tokens[at..at + len]);
        parts.push(model.forward_with_kv_cache(&chunk, &mut cache).unwrap());
        at += len;
        assert_eq!(cache.len(), at);
    }
    while at < n {
        let chunk = row_tokens(&tokens[at..at + 1]);
        parts.push(model.forward_with_kv_cache(&chunk, &mut cache).unwrap());
        at += 1;
    }
    let inc = Tensor::cat(&parts, 1).unwrap();
    let e = rel_err(&inc, &full);
    assert!(
        e < 1e-4,
        "{what}: cached vs full logits: relative error {e:.3e}"
    );
    // The unfused path (attention scores and norm scales observed by a hook) too.
    let mut cache = model.new_kv_cache();
    let mut parts = Vec::new();
    for (at, len) in [(0, 4), (4, 1), (5, 2)]
        .into_iter()
        .chain((7..n).map(|i| (i, 1)))
    {
        let mut hooks = Hooks::new();
        hooks.add_filter(
            |n: &str| n.ends_with("hook_attn_scores") || n.ends_with("hook_scale"),
            |_: &Tensor, _: &str| Ok(None),
        );
        let chunk = row_tokens(&tokens[at..at + len]);
        parts.push(
            model
                .run_with_hooks_with_kv_cache(&chunk, hooks, &mut cache)
                .unwrap(),
        );
    }
    let e2 = rel_err(&Tensor::cat(&parts, 1).unwrap(), &full);
    assert!(
        e2 < 1e-4,
        "{what}: unfused cached vs full: relative error {e2:.3e}"
    );
    eprintln!(
        "{what}: cached vs full logits over {n} positions: max rel err {e:.2e} (unfused {e2:.2e})"
    );
    e.max(e2)
}

#[test]
fn kv_cache_logits_equal_full_forward() {
    let pseudo = |n: usize, vocab: u32| -> Vec<u32> {
        (0..n as u32).map(|i| (i * 37 + 11) % vocab).collect()
    };
    // 14 positions: past Gemma-2's sliding window of 4 several times.
    for dir in ["tiny-gpt2", "tiny-llama", "tiny-gemma2"] {
        let m = tiny(dir);
        check_cached_logits(&m, &pseudo(14, 300), dir);
        let m = HookedModel::from_pretrained_with(
            fixtures().join(dir).to_str().unwrap(),
            &LoadOptions::no_processing(),
        )
        .unwrap();
        check_cached_logits(&m, &pseudo(14, 300), &format!("{dir} unprocessed"));
    }
    let m = smollm2();
    let toks: Vec<u32> = m
        .to_tokens("The quick brown fox jumps over the lazy dog, and then it runs away.")
        .unwrap()
        .to_vec2()
        .unwrap()
        .remove(0);
    check_cached_logits(&m, &toks, "smollm2");
}

#[test]
fn hooks_fire_on_every_pass_with_cached_shapes() {
    let m = tiny("tiny-gemma2");
    let prompt = row_tokens(&[5, 17, 99, 3, 42]);
    let p = 5;
    let max_new = 6;
    for use_kv in [true, false] {
        let log: HookLog = Rc::default();
        let mut hooks = Hooks::new();
        for name in [
            "hook_embed",
            "blocks.0.hook_resid_pre",
            "blocks.0.attn.hook_k",
            "blocks.0.attn.hook_rot_k",
            "blocks.0.attn.hook_rot_q",
            "blocks.0.attn.hook_pattern",
            "blocks.2.hook_resid_post",
        ] {
            let log = log.clone();
            hooks.add(name, move |t: &Tensor, n: &str| {
                log.borrow_mut().push((n.to_string(), t.dims().to_vec()));
                Ok(None)
            });
        }
        let opts = GenerateOptions {
            use_past_kv_cache: use_kv,
            stop_at_eos: false,
            ..GenerateOptions::greedy(max_new)
        };
        let out = m.run(&prompt).hooks(hooks).generate(&opts).unwrap();
        assert_eq!(out.n_new(), max_new);
        let log = log.borrow();
        assert_eq!(log.len(), 7 * max_new, "7 hooks × {max_new} passes");
        for (step, pass) in log.chunks(7).enumerate() {
            let total = p + step;
            let new = if use_kv && step > 0 { 1 } else { total };
            let shape = |name: &str| -> &Vec<usize> {
                &pass.iter().find(|(n, _)| n.ends_with(name)).unwrap().1
            };
            assert_eq!(shape("hook_embed"), &vec![1, new, 64], "step {step}");
            assert_eq!(shape("hook_resid_pre"), &vec![1, new, 64]);
            assert_eq!(shape("hook_resid_post"), &vec![1, new, 64]);
            assert_eq!(shape("hook_k"), &vec![1, new, 2, 16]);
            assert_eq!(shape("hook_rot_q"), &vec![1, new, 4, 16]);
            // TL rotates the whole cached key sequence: key length = total.
            assert_eq!(shape("hook_rot_k"), &vec![1, total, 2, 16]);
            assert_eq!(shape("hook_pattern"), &vec![1, 4, new, total]);
        }
    }
}

#[test]
fn hooks_change_generation_and_saes_splice_in() {
    let m = smollm2();
    let prompt = "The capital of France is";
    let greedy = GenerateOptions::greedy(8);
    let plain = m.generate(prompt, &greedy).unwrap();
    // A hook that zeroes the last layer's MLP output changes the text, on every pass.
    let passes = Rc::new(RefCell::new(0));
    let mut hooks = Hooks::new();
    let c = passes.clone();
    hooks.add("blocks.29.hook_mlp_out", move |t: &Tensor, _: &str| {
        *c.borrow_mut() += 1;
        Ok(Some(t.zeros_like()?))
    });
    let ablated = m.run(prompt).hooks(hooks).generate(&greedy).unwrap();
    assert_eq!(*passes.borrow(), ablated.n_new());
    assert_ne!(plain.ids().unwrap(), ablated.ids().unwrap());

    // An SAE with its error term changes nothing; its latents are seen on every pass.
    let sae =
        saescope::Sae::load_from_disk(&fixtures().join("sae/saes/smollm2_standard_l10")).unwrap();
    let seen: Rc<RefCell<Vec<Vec<usize>>>> = Rc::default();
    let mut hooks = Hooks::new();
    let s = seen.clone();
    hooks.add(
        "blocks.10.hook_resid_pre.hook_sae_acts_post",
        move |t: &Tensor, _: &str| {
            s.borrow_mut().push(t.dims().to_vec());
            Ok(None)
        },
    );
    let opts = SaeRunOptions::with_error_term();
    let spliced = m
        .run(prompt)
        .sae(&sae)
        .sae_options(&opts)
        .hooks(hooks)
        .generate(&greedy)
        .unwrap();
    assert_eq!(spliced.ids().unwrap(), plain.ids().unwrap());
    let seen = seen.borrow();
    assert_eq!(seen.len(), plain.n_new());
    assert_eq!(seen[0], vec![1, plain.prompt_len, 256]);
    assert!(seen[1..].iter().all(|s| s == &vec![1, 1, 256]));
    // Without the error term the reconstruction replaces the residual stream.
    let lossy = m
        .run(prompt)
        .sae(&sae)
        .hooks(Hooks::new())
        .generate(&greedy)
        .unwrap();
    assert_ne!(lossy.ids().unwrap(), plain.ids().unwrap());
}

#[test]
fn sampling_is_seeded_top_k_1_is_greedy_and_stop_tokens_stop() {
    let m = tiny("tiny-llama");
    let prompt = row_tokens(&[1, 2, 3, 4]);
    let sampled = |seed: u64, kv: bool| {
        let o = GenerateOptions {
            stop_at_eos: false,
            use_past_kv_cache: kv,
            top_p: Some(0.95),
            ..GenerateOptions::sampled(20, 1.5, seed)
        };
        m.generate(&prompt, &o).unwrap().ids().unwrap()
    };
    assert_eq!(sampled(7, true), sampled(7, true), "same seed, same tokens");
    assert_eq!(
        sampled(7, true),
        sampled(7, false),
        "the cache does not change sampling"
    );
    let distinct: std::collections::HashSet<_> = (0..5).map(|s| sampled(s, true)).collect();
    assert!(
        distinct.len() >= 3,
        "different seeds give different samples"
    );

    let greedy = GenerateOptions {
        stop_at_eos: false,
        ..GenerateOptions::greedy(20)
    };
    let g = m.generate(&prompt, &greedy).unwrap().ids().unwrap();
    for (seed, temperature) in [(1, 0.7), (2, 3.0)] {
        let o = GenerateOptions {
            stop_at_eos: false,
            top_k: Some(1),
            ..GenerateOptions::sampled(20, temperature, seed)
        };
        assert_eq!(m.generate(&prompt, &o).unwrap().ids().unwrap(), g);
    }

    // Stop at the 5th generated token: the output ends with it.
    let new = &g[0][4..];
    let stop = new[4];
    let first = new.iter().position(|&t| t == stop).unwrap();
    let o = GenerateOptions {
        eos_token_ids: Some(vec![stop]),
        ..GenerateOptions::greedy(20)
    };
    let out = m.generate(&prompt, &o).unwrap();
    assert_eq!(out.new_ids().unwrap()[0], new[..=first].to_vec());

    // A batch: the finished row is padded with the (first) stop token until all stop.
    let batch = Tensor::cat(&[&prompt, &row_tokens(&[9, 8, 7, 6])], 0).unwrap();
    let o = GenerateOptions {
        eos_token_ids: Some(vec![stop]),
        ..GenerateOptions::greedy(20)
    };
    let out = m.generate(&batch, &o).unwrap();
    let rows = out.new_ids().unwrap();
    assert_eq!(rows[0][..=first], new[..=first]);
    assert!(rows[0][first..].iter().all(|&t| t == stop));
    let solo = m.generate(row_tokens(&[9, 8, 7, 6]), &o).unwrap();
    let solo = solo.new_ids().unwrap().remove(0);
    assert_eq!(rows[1][..solo.len()], solo[..]);
}

#[test]
fn bad_input_is_a_typed_error() {
    let m = tiny("tiny-llama");
    let long = row_tokens(&[1; 40]);
    let e = m.generate(&long, &GenerateOptions::greedy(1)).unwrap_err();
    assert!(matches!(e, Error::Invalid(_)));
    let msg = e.to_string();
    assert!(msg.contains("40") && msg.contains("n_ctx = 32"), "{msg}");
    let e = m
        .generate(row_tokens(&[1; 30]), &GenerateOptions::greedy(5))
        .unwrap_err();
    assert!(e.to_string().contains("max_new_tokens 5"), "{e}");
    // The tiny model has no tokenizer: stop_at_eos needs explicit stop tokens.
    let opts = GenerateOptions {
        max_new_tokens: 3,
        ..GenerateOptions::default()
    };
    let e = m.generate(row_tokens(&[1, 2]), &opts).unwrap_err();
    assert!(e.to_string().contains("eos_token_ids"), "{e}");
    let e = m.generate("text", &GenerateOptions::greedy(1)).unwrap_err();
    assert!(matches!(e, Error::Tokenizer(_)), "{e}");
    for bad in [
        GenerateOptions {
            top_p: Some(0.0),
            ..GenerateOptions::default()
        },
        GenerateOptions {
            top_k: Some(0),
            ..GenerateOptions::default()
        },
        GenerateOptions {
            temperature: -1.0,
            ..GenerateOptions::default()
        },
    ] {
        let e = m.generate(row_tokens(&[1, 2]), &bad).unwrap_err();
        assert!(matches!(e, Error::Invalid(_)), "{e}");
    }
    let mut hooks = Hooks::new();
    hooks.add("blocks.0.hook_resid_typo", |_: &Tensor, _: &str| Ok(None));
    let e = m
        .run(row_tokens(&[1, 2]))
        .hooks(hooks)
        .generate(&GenerateOptions::greedy(1))
        .unwrap_err();
    assert!(matches!(e, Error::UnknownHook { .. }), "{e}");
    // KV cache misuse.
    let mut cache = m.new_kv_cache();
    m.forward_with_kv_cache(&row_tokens(&[1, 2, 3]), &mut cache)
        .unwrap();
    let two = Tensor::cat(&[row_tokens(&[1]), row_tokens(&[2])], 0).unwrap();
    let e = m.forward_with_kv_cache(&two, &mut cache).unwrap_err();
    assert!(e.to_string().contains("batch size 1"), "{e}");
    let e = m
        .forward_with_kv_cache(&row_tokens(&[1; 30]), &mut cache)
        .unwrap_err();
    assert!(e.to_string().contains("n_ctx"), "{e}");
    assert_eq!(cache.len(), 3, "a failed pass leaves the cache as it was");
    let _ = DType::U32;
}
