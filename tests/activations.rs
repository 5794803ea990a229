//! The activation store on SmolLM2 (mixing buffer, state/restore, hook handling) and the
//! on-disk activation cache (write → read round trip, shuffled exact-resume reading).
use saescope::data::{pack, PackOptions, SeparatorToken};
use saescope::hooks::HookName;
use saescope::train::act_cache::{
    cache_activations, ActCacheManifest, CacheJob, CachedActivations,
};
use saescope::train::activations::{slice_indices, ActivationStore, ActivationStoreConfig};
use saescope::train::ActivationSource;
use saescope::SpecialTokens;
use saescope::{HookedModel, IndexOp, LoadOptions, Tensor};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

fn model() -> Option<Arc<HookedModel>> {
    static M: OnceLock<Option<Arc<HookedModel>>> = OnceLock::new();
    M.get_or_init(|| {
        let p = saescope::model::default_data_dir().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
        if !p.exists() {
            eprintln!("skipping: {} missing (scripts/fetch_model.sh)", p.display());
            return None;
        }
        Some(Arc::new(HookedModel::from_pretrained("smollm2").unwrap()))
    })
    .clone()
}

/// A small text dataset (JSONL) in a temp dir.
fn dataset(dir: &Path) -> String {
    let words = [
        "the", "cat", "sat", "on", "a", "mat", "while", "Python", "code", "ran", "def", "return",
        "import", "numbers", "and", "letters", "flow", "through", "layers", "of", "models",
    ];
    let mut s = String::new();
    for i in 0..60 {
        let n = 5 + (i * 13) % 40;
        let text: Vec<&str> = (0..n)
            .map(|j| words[(i * 7 + j * 3) % words.len()])
            .collect();
        s.push_str(&serde_json::json!({ "text": text.join(" ") }).to_string());
        s.push('\n');
    }
    let p = dir.join("d.jsonl");
    std::fs::write(&p, s).unwrap();
    p.display().to_string()
}

fn cfg(ds: &str) -> ActivationStoreConfig {
    ActivationStoreConfig {
        hook_name: "blocks.1.hook_resid_post".into(),
        dataset_path: ds.into(),
        context_size: 16,
        n_batches_in_buffer: 8,
        store_batch_size_prompts: 4,
        train_batch_size_tokens: 32,
        ..Default::default()
    }
}

fn batches(s: &mut dyn ActivationSource, k: usize, n: usize) -> Vec<Vec<f32>> {
    (0..k)
        .map(|_| {
            let b = s.next_batch(n).unwrap();
            assert_eq!(b.dims(), &[n, s.d_in()]);
            b.flatten_all().unwrap().to_vec1().unwrap()
        })
        .collect()
}

#[test]
fn slices_and_layers_follow_python() {
    assert_eq!(slice_indices(&[None], 5).unwrap(), vec![0, 1, 2, 3, 4]);
    assert_eq!(slice_indices(&[Some(2)], 5).unwrap(), vec![0, 1]); // slice(2) = :2
    assert_eq!(
        slice_indices(&[Some(1), None], 5).unwrap(),
        vec![1, 2, 3, 4]
    );
    assert_eq!(slice_indices(&[Some(-2), None], 5).unwrap(), vec![3, 4]);
    assert_eq!(
        slice_indices(&[None, None, Some(2)], 5).unwrap(),
        vec![0, 2, 4]
    );
    assert_eq!(
        slice_indices(&[None, None, Some(-1)], 3).unwrap(),
        vec![2, 1, 0]
    );
    assert!(slice_indices(&[None, None, Some(0)], 3).is_err());
    assert_eq!(
        HookName::parse("blocks.15.hook_resid_post").stop_at_layer(),
        Some(16)
    );
    assert_eq!(
        HookName::parse("blocks.3.attn.hook_z").stop_at_layer(),
        Some(4)
    );
    assert_eq!(HookName::parse("hook_embed").stop_at_layer(), None);
    assert_eq!(HookName::parse("ln_final.hook_scale").stop_at_layer(), None);
    // serde mirrors SAELens's field names and value forms.
    let c: ActivationStoreConfig = serde_json::from_str(
        r#"{"hook_name": "blocks.2.hook_mlp_out", "exclude_special_tokens": [0, 2],
            "sequence_separator_token": null, "seqpos_slice": [1, null]}"#,
    )
    .unwrap();
    assert_eq!(c.exclude_special_tokens, SpecialTokens::Ids(vec![0, 2]));
    assert_eq!(c.sequence_separator_token, None);
    assert_eq!(c.training_context_size().unwrap(), 127);
    assert_eq!(c.n_batches_in_buffer, 20);
    let c: ActivationStoreConfig = serde_json::from_str(
        r#"{"exclude_special_tokens": true, "sequence_separator_token": "eos"}"#,
    )
    .unwrap();
    assert_eq!(c.exclude_special_tokens, SpecialTokens::Structural);
    assert_eq!(c.sequence_separator_token, Some(SeparatorToken::Eos));
    // saescope's names; written back as SAELens's values where SAELens has one.
    for (json, want, back) in [
        (r#""all""#, SpecialTokens::All, serde_json::json!("all")),
        (
            r#""structural""#,
            SpecialTokens::Structural,
            serde_json::json!(true),
        ),
        (r#""none""#, SpecialTokens::None, serde_json::json!(false)),
        ("false", SpecialTokens::None, serde_json::json!(false)),
    ] {
        let c: ActivationStoreConfig =
            serde_json::from_str(&format!(r#"{{"exclude_special_tokens": {json}}}"#)).unwrap();
        assert_eq!(c.exclude_special_tokens, want);
        assert_eq!(
            serde_json::to_value(&c).unwrap()["exclude_special_tokens"],
            back
        );
    }
    let bad =
        serde_json::from_str::<ActivationStoreConfig>(r#"{"exclude_special_tokens": "some"}"#);
    assert!(bad.unwrap_err().to_string().contains("a list of token ids"));
}

#[test]
fn store_batches_are_shaped_and_deterministic() {
    let Some(m) = model() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ds = dataset(dir.path());
    let mut a = ActivationStore::new(m.clone(), cfg(&ds)).unwrap();
    assert_eq!(a.d_in(), 576);
    assert_eq!(a.buffer_size(), 8 * 16);
    let xa = batches(&mut a, 6, 32);
    let mut b = ActivationStore::new(m.clone(), cfg(&ds)).unwrap();
    assert_eq!(batches(&mut b, 6, 32), xa);
    let mut c = ActivationStore::new(
        m.clone(),
        ActivationStoreConfig {
            seed: 7,
            ..cfg(&ds)
        },
    )
    .unwrap();
    assert_ne!(batches(&mut c, 6, 32), xa);
    // Buffer smaller than the batch: SAELens's error.
    let e = a.next_batch(1000).unwrap_err().to_string();
    assert!(
        e.contains("Buffer size must be greater than or equal to batch size"),
        "{e}"
    );
}

/// With mixing off the store serves the model's activations in corpus order: the first batches
/// equal `run_with_cache` on the packed rows.
#[test]
fn unmixed_store_equals_direct_forward() {
    let Some(m) = model() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ds = dataset(dir.path());
    let c = ActivationStoreConfig {
        activations_mixing_fraction: 0.0,
        ..cfg(&ds)
    };
    let mut s = ActivationStore::new(m.clone(), c).unwrap();
    let got = s.next_batch(64).unwrap();

    let tok = m.tokenizer().unwrap();
    let text = std::fs::read_to_string(&ds).unwrap();
    let docs: Vec<Vec<u32>> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            tok.encode(v["text"].as_str().unwrap(), false).unwrap()
        })
        .collect();
    let o = PackOptions::saelens(tok, 16, true, Some(SeparatorToken::Bos), false).unwrap();
    let rows = pack(docs, &o).unwrap();
    let flat: Vec<u32> = rows[..4].concat();
    let t = Tensor::from_vec(flat, (4, 16), m.device()).unwrap();
    let (_, cache) = m.run(&t).names("blocks.1.hook_resid_post").cache().unwrap();
    let want = cache
        .get("blocks.1.hook_resid_post")
        .unwrap()
        .reshape((64, 576))
        .unwrap();
    let diff: f32 = (got - want)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    assert!(diff < 1e-4, "{diff}");
}

#[test]
fn state_restore_continues_the_identical_stream() {
    let Some(m) = model() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ds = dataset(dir.path());
    let c = ActivationStoreConfig {
        dataset_shuffle_seed: Some(5),
        ..cfg(&ds)
    };
    let mut a = ActivationStore::new(m.clone(), c.clone()).unwrap();
    batches(&mut a, 5, 32);
    // Through a safetensors file, as a checkpoint would.
    let p = dir.path().join("state.safetensors");
    saescope::candle_core::safetensors::save(&a.state().unwrap(), &p).unwrap();
    let st: HashMap<String, Tensor> =
        saescope::candle_core::safetensors::load(&p, &saescope::Device::Cpu).unwrap();
    let cont = batches(&mut a, 12, 32);
    let mut b = ActivationStore::new(m.clone(), c.clone()).unwrap();
    b.restore(&st).unwrap();
    assert_eq!(batches(&mut b, 12, 32), cont);
    // A state from another hook is refused.
    let mut other = ActivationStore::new(
        m.clone(),
        ActivationStoreConfig {
            hook_name: "blocks.0.hook_resid_post".into(),
            ..c
        },
    )
    .unwrap();
    let e = other.restore(&st).unwrap_err().to_string();
    assert!(e.contains("blocks.1.hook_resid_post"), "{e}");
}

#[test]
fn hooks_heads_positions_and_special_tokens() {
    let Some(m) = model() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ds = dataset(dir.path());
    // Unknown hook: nearest names.
    let e = ActivationStore::new(
        m.clone(),
        ActivationStoreConfig {
            hook_name: "blocks.1.hook_resid_pots".into(),
            ..cfg(&ds)
        },
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("blocks.1.hook_resid_post"), "{e}");
    // Missing corpus.
    let e = ActivationStore::new(
        m.clone(),
        ActivationStoreConfig {
            dataset_path: dir.path().join("nothing").display().to_string(),
            ..cfg(&ds)
        },
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("nothing"), "{e}");

    // hook_z: heads flattened (9 × 64), or one head.
    let z = ActivationStoreConfig {
        hook_name: "blocks.0.attn.hook_z".into(),
        activations_mixing_fraction: 0.0,
        ..cfg(&ds)
    };
    let mut s = ActivationStore::new(m.clone(), z.clone()).unwrap();
    assert_eq!(s.d_in(), 9 * 64);
    let t = ActivationStore::new(m.clone(), z.clone())
        .unwrap()
        .get_batch_tokens(2)
        .unwrap();
    assert_eq!(t.dims(), &[2, 16]);
    let mut fresh = ActivationStore::new(m.clone(), z.clone()).unwrap();
    let (_, first) = fresh.get_filtered_llm_batch().unwrap();
    assert_eq!(
        t.flatten_all().unwrap().to_vec1::<u32>().unwrap(),
        first[..32].to_vec()
    );
    let all = s.next_batch(32).unwrap();
    let mut h = ActivationStore::new(
        m.clone(),
        ActivationStoreConfig {
            hook_head_index: Some(2),
            ..z.clone()
        },
    )
    .unwrap();
    assert_eq!(h.d_in(), 64);
    let head = h.next_batch(32).unwrap();
    let want = all.i((.., 128..192)).unwrap();
    let diff: f32 = (head - want)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    assert!(diff < 1e-6, "{diff}");

    // seqpos_slice and special-token exclusion shrink each LLM batch.
    let mut s = ActivationStore::new(
        m.clone(),
        ActivationStoreConfig {
            seqpos_slice: vec![Some(1), None],
            ..cfg(&ds)
        },
    )
    .unwrap();
    let (acts, toks) = s.get_filtered_llm_batch().unwrap();
    assert_eq!(toks.len(), 4 * 15);
    assert_eq!(acts.len(), 4 * 15 * 576);
    let mut s = ActivationStore::new(
        m.clone(),
        ActivationStoreConfig {
            exclude_special_tokens: SpecialTokens::Structural,
            ..cfg(&ds)
        },
    )
    .unwrap();
    let bos = m.tokenizer().unwrap().bos_id.unwrap();
    let ids = SpecialTokens::Structural.ids(m.tokenizer().unwrap());
    assert!(ids.contains(&bos) && ids.len() <= 3, "{ids:?}");
    let (acts, toks) = s.get_filtered_llm_batch().unwrap();
    assert!(toks.len() <= 4 * 15, "{}", toks.len());
    assert!(!toks.contains(&bos));
    assert_eq!(acts.len(), toks.len() * 576);
}

#[test]
fn cache_round_trip_and_shuffled_reading() {
    let Some(m) = model() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ds = dataset(dir.path());
    let out = dir.path().join("cache");
    let c = cfg(&ds);
    let job = CacheJob {
        hooks: vec![
            ("blocks.1.hook_resid_post".into(), None),
            ("blocks.0.attn.hook_z".into(), Some(1)),
        ],
        n_tokens: 300,
        out: out.clone(),
        shard_tokens: 64,
        model_name: "smollm2".into(),
    };
    let mut calls = 0;
    let ms = cache_activations(m.clone(), &c, &job, &LoadOptions::default(), &mut |_| {
        calls += 1
    })
    .unwrap();
    assert_eq!(ms.len(), 2);
    assert!(calls >= 5);
    let resid = out.join("blocks.1.hook_resid_post");
    let man = ActCacheManifest::read(&resid).unwrap();
    assert_eq!((man.n_tokens, man.d_in, man.shards.len()), (300, 576, 5));
    assert!(man.complete);
    assert_eq!(
        ActCacheManifest::read(&out.join("blocks.0.attn.hook_z"))
            .unwrap()
            .d_in,
        64
    );

    // File order = the unmixed store's order.
    let mut plain = CachedActivations::open(&resid, None).unwrap();
    let mut store = ActivationStore::new(
        m.clone(),
        ActivationStoreConfig {
            activations_mixing_fraction: 0.0,
            ..c.clone()
        },
    )
    .unwrap();
    let a = plain.next_batch(64).unwrap();
    let b = store.next_batch(64).unwrap();
    let diff: f32 = (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    assert_eq!(diff, 0.0);
    let (_, toks) = plain.read_shard(0).unwrap();
    assert_eq!(toks[0], m.tokenizer().unwrap().bos_id.unwrap());

    // Shuffled: one epoch (300 tokens) is a permutation of the rows; seeded; exact resume.
    let mut s = CachedActivations::open(&resid, Some(3))
        .unwrap()
        .with_window_shards(2);
    let epoch = s.next_batch(300).unwrap();
    let mut plain = CachedActivations::open(&resid, None).unwrap();
    let ordered = plain.next_batch(300).unwrap();
    let key = |t: &Tensor| {
        let v: Vec<Vec<f32>> = t.to_vec2().unwrap();
        let mut k: Vec<Vec<u32>> = v
            .into_iter()
            .map(|r| r.into_iter().map(f32::to_bits).collect())
            .collect();
        k.sort();
        k
    };
    assert_eq!(key(&epoch), key(&ordered));
    assert_ne!(
        epoch.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        ordered.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    );
    let mut s = CachedActivations::open(&resid, Some(3))
        .unwrap()
        .with_window_shards(2);
    batches(&mut s, 3, 50);
    let st = s.state().unwrap();
    let cont = batches(&mut s, 10, 50);
    let mut r = CachedActivations::open(&resid, Some(3)).unwrap();
    r.restore(&st).unwrap();
    assert_eq!(batches(&mut r, 10, 50), cont);

    // Errors: not a cache; incomplete.
    let e = CachedActivations::open(dir.path(), None)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("cache-activations"), "{e}");
}

/// Tokens/s of the live store on the default corpus at a middle layer (`--ignored --nocapture`).
#[test]
#[ignore]
fn store_throughput_mid_layer() {
    let Some(m) = model() else { return };
    let c = ActivationStoreConfig {
        hook_name: "blocks.15.hook_resid_post".into(),
        dataset_path: "default".into(),
        context_size: 128,
        store_batch_size_prompts: 16,
        n_batches_in_buffer: 32,
        train_batch_size_tokens: 4096,
        ..Default::default()
    };
    let t0 = std::time::Instant::now();
    let mut s = ActivationStore::new(m, c).unwrap();
    let setup = t0.elapsed().as_secs_f64();
    let t1 = std::time::Instant::now();
    let n = 8;
    for _ in 0..n {
        s.next_batch(4096).unwrap();
    }
    let secs = t1.elapsed().as_secs_f64();
    // The bare model pass on the same shape, for the store's overhead.
    let m = model().unwrap();
    let toks = Tensor::zeros((16, 128), saescope::DType::U32, m.device()).unwrap();
    let t2 = std::time::Instant::now();
    for _ in 0..4 {
        m.run(&toks)
            .names("blocks.15.hook_resid_post")
            .stop_at_layer(16)
            .cache()
            .unwrap();
    }
    let fwd = (4 * 16 * 128) as f64 / t2.elapsed().as_secs_f64();
    eprintln!("bare run_with_cache(stop_at_layer=16): {fwd:.0} tokens/s");
    eprintln!(
        "store: setup {setup:.2}s, {} tokens served in {secs:.1}s = {:.0} tokens/s ({} LLM batches of 16×128)",
        n * 4096,
        (n * 4096) as f64 / secs,
        s.llm_batches()
    );
}
