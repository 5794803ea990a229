//! The files the fuzzer mutates (the repository's fixtures, the SmolLM2 GGUF, a miniature of
//! it, an activation cache and a training run written by the crate), and how each loaded
//! mutant is used.
use super::mutate::Pick;
use super::{link_tree, Draw, Fuzz, SplitMix64};
use saescope::train::act_cache::{ActCacheManifest, ActCacheWriter, CachedActivations};
use saescope::train::config::RunnerConfig;
use saescope::train::ActivationSource;
use saescope::{Device, HookedModel, Sae, Tensor};
use std::path::{Path, PathBuf};

pub fn sae_fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sae")
}

pub fn real_gguf() -> PathBuf {
    let p = saescope::model::default_data_dir().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(p.exists(), "run scripts/fetch_model.sh first");
    p
}

/// One candle thread per test (the fuzz tests run side by side).
pub fn one_thread() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
            std::env::set_var("CANDLE_NUM_THREADS", "1");
        }
    });
}

/// Use a loaded SAE: a forward pass on zeros (an error is fine, a panic is not).
pub fn use_sae(sae: &Sae) -> saescope::Result<()> {
    let x = Tensor::zeros((2, sae.d_in()), sae.dtype(), &Device::Cpu)?;
    let _ = sae.forward(&x);
    Ok(())
}

/// Use a loaded model: tokenize and run a forward pass.
pub fn use_model(m: &HookedModel) -> saescope::Result<()> {
    let t = m.to_tokens("The cat sat")?;
    let _ = m.forward(&t);
    Ok(())
}

/// The SmolLM2 GGUF's header and 64 KiB of tensor data after it.
pub fn real_gguf_prefix() -> Vec<u8> {
    use std::io::Read;
    let mut f = std::fs::File::open(real_gguf()).unwrap();
    let mut b = vec![0u8; 16 << 20];
    f.read_exact(&mut b).unwrap();
    let map = super::codecs::gguf_walk(&b).expect("the SmolLM2 GGUF header fits in 16 MiB");
    b.truncate(map.header_end + (64 << 10));
    b
}

/// A miniature of the SmolLM2 GGUF: the real metadata (the tokenizer cut to its first 400
/// tokens and the merges among them), one llama layer of width 64, Q4_1 weights.
pub fn miniature_gguf() -> Vec<u8> {
    use saescope::candle_core::quantized::gguf_file::{self, Value as V};
    use saescope::candle_core::quantized::{GgmlDType, QTensor};
    const VOCAB: usize = 400;
    let mut f = std::fs::File::open(real_gguf()).unwrap();
    let c = gguf_file::Content::read(&mut f).unwrap();
    let like = |orig: &V, n: u64| match orig {
        V::U64(_) => V::U64(n),
        V::I32(_) => V::I32(n as i32),
        _ => V::U32(n as u32),
    };
    let tokens: Vec<String> = match &c.metadata["tokenizer.ggml.tokens"] {
        V::Array(a) => a[..VOCAB]
            .iter()
            .map(|v| v.to_string().unwrap().clone())
            .collect(),
        _ => panic!("no tokens"),
    };
    let vocab: std::collections::HashSet<&str> = tokens.iter().map(|s| s.as_str()).collect();
    let mut keys: Vec<&String> = c.metadata.keys().collect();
    keys.sort();
    let mut md: Vec<(String, V)> = Vec::new();
    for k in keys {
        let v = &c.metadata[k];
        let nv = match k.as_str() {
            "llama.block_count" => like(v, 1),
            "llama.embedding_length" => like(v, 64),
            "llama.feed_forward_length" => like(v, 128),
            "llama.attention.head_count" => like(v, 4),
            "llama.attention.head_count_kv" => like(v, 2),
            "llama.rope.dimension_count"
            | "llama.attention.key_length"
            | "llama.attention.value_length" => like(v, 16),
            "llama.vocab_size" => like(v, VOCAB as u64),
            "tokenizer.ggml.merges" => match v {
                V::Array(a) => V::Array(
                    a.iter()
                        .filter(|m| {
                            let m = m.to_string().unwrap();
                            m.split_once(' ').is_some_and(|(x, y)| {
                                vocab.contains(x)
                                    && vocab.contains(y)
                                    && vocab.contains(format!("{x}{y}").as_str())
                            })
                        })
                        .cloned()
                        .collect(),
                ),
                _ => v.clone(),
            },
            "tokenizer.ggml.tokens" | "tokenizer.ggml.token_type" | "tokenizer.ggml.scores" => {
                match v {
                    V::Array(a) => V::Array(a[..VOCAB].to_vec()),
                    _ => v.clone(),
                }
            }
            k if k.starts_with("tokenizer.ggml.") && k.ends_with("_token_id") => match v.to_u32() {
                Ok(id) if id as usize >= VOCAB => like(v, 0),
                _ => v.clone(),
            },
            _ => v.clone(),
        };
        md.push((k.clone(), nv));
    }
    let mut r = SplitMix64::new(7);
    let mut t = |shape: &[usize], dtype: GgmlDType| {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| (r.uniform() as f32 - 0.5) * 0.2).collect();
        let x = Tensor::from_vec(v, shape, &Device::Cpu).unwrap();
        QTensor::quantize(&x, dtype).unwrap()
    };
    let (q, f32_) = (GgmlDType::Q4_1, GgmlDType::F32);
    let tensors: Vec<(&str, QTensor)> = vec![
        ("token_embd.weight", t(&[VOCAB, 64], q)),
        ("blk.0.attn_norm.weight", t(&[64], f32_)),
        ("blk.0.attn_q.weight", t(&[64, 64], q)),
        ("blk.0.attn_k.weight", t(&[32, 64], q)),
        ("blk.0.attn_v.weight", t(&[32, 64], q)),
        ("blk.0.attn_output.weight", t(&[64, 64], q)),
        ("blk.0.ffn_norm.weight", t(&[64], f32_)),
        ("blk.0.ffn_gate.weight", t(&[128, 64], q)),
        ("blk.0.ffn_up.weight", t(&[128, 64], q)),
        ("blk.0.ffn_down.weight", t(&[64, 128], q)),
        ("output_norm.weight", t(&[64], f32_)),
    ];
    let md_refs: Vec<(&str, &V)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (*k, v)).collect();
    let mut out = std::io::Cursor::new(Vec::new());
    gguf_file::write(&mut out, &md_refs, &t_refs).unwrap();
    out.into_inner()
}

pub const CACHE_D_IN: usize = 16;

/// A small activation cache (136 rows of width 16 in shards of 32) written by the crate's writer
/// (what `saescope cache-activations` uses).
pub fn write_cache(dir: &Path) {
    let m = ActCacheManifest {
        format: saescope::train::act_cache::FORMAT.into(),
        model: "fuzz".into(),
        hook_name: "blocks.0.hook_resid_post".into(),
        hook_head_index: None,
        d_in: CACHE_D_IN,
        dtype: "float32".into(),
        context_size: 8,
        training_context_size: 8,
        prepend_bos: true,
        dataset: "fuzz".into(),
        excluded_token_ids: vec![],
        n_tokens: 0,
        n_sequences: 0,
        shard_tokens: 32,
        shards: vec![],
        complete: false,
        store: Default::default(),
    };
    let mut w = ActCacheWriter::create(dir, m).unwrap();
    let mut r = SplitMix64::new(3);
    for _ in 0..17 {
        let acts: Vec<f32> = (0..8 * CACHE_D_IN)
            .map(|_| r.uniform() as f32 - 0.3)
            .collect();
        let toks: Vec<u32> = (0..8).map(|_| r.below(400) as u32).collect();
        w.push(&acts, &toks).unwrap();
        w.add_sequences(1);
    }
    w.finish().unwrap();
}

/// Read a cache as training does: every shard, a few batches, state and restore.
pub fn read_cache(dir: &Path, seed: u64) -> saescope::Result<()> {
    let mut c = CachedActivations::open(dir, Some(seed))?.with_window_shards(2);
    for i in 0..c.manifest().shards.len() {
        c.read_shard(i)?;
    }
    for _ in 0..6 {
        c.next_batch(24)?;
    }
    let st = c.state()?;
    let mut again = CachedActivations::open(dir, Some(seed))?;
    again.restore(&st)?;
    again.next_batch(24)?;
    Ok(())
}

/// A 10-step standard-SAE run on the cache (d_in 16, d_sae 48), checkpointing every 4 steps.
pub fn run_config(dir: &Path) -> RunnerConfig {
    let sae = serde_json::json!({
        "architecture": "standard", "d_in": CACHE_D_IN, "d_sae": 48,
        "normalize_activations": "expected_average_only_in", "l1_coefficient": 0.5,
    });
    RunnerConfig {
        sae: serde_json::from_value(sae).unwrap(),
        training_tokens: 32 * 10,
        store: saescope::train::activations::ActivationStoreConfig {
            train_batch_size_tokens: 32,
            ..Default::default()
        },
        lr: 3e-3,
        lr_warm_up_steps: 2,
        dead_feature_window: 4,
        feature_sampling_window: 5,
        n_batches_for_norm_estimate: 2,
        checkpoint_every_n_steps: 4,
        log_every_n_steps: 3,
        progress_bar: false,
        plots: false,
        output_path: Some(dir.to_string_lossy().into()),
        ..Default::default()
    }
}

/// A random SAE case: copy a fixture folder, mutate one of `files` (sometimes two, sometimes
/// delete one instead), load, use.
pub fn sae_case(fz: &mut Fuzz, i: usize, src: &Path, rel: &str, files: &[&str]) {
    let mut r = SplitMix64::new(fz.case_seed(i));
    let dir = fz.case_dir(rel);
    link_tree(src, &dir);
    let present: Vec<&str> = files
        .iter()
        .copied()
        .filter(|f| dir.join(f).is_file())
        .collect();
    let (mut descs, mut names) = (Vec::new(), Vec::new());
    let first = *r.pick(&present);
    if r.chance(12) {
        std::fs::remove_file(dir.join(first)).unwrap();
        descs.push(format!("delete {first}"));
    } else {
        descs.push(super::mutate::file(&dir.join(first), &mut r));
        let second = *r.pick(&present);
        if second != first && r.chance(6) {
            descs.push(super::mutate::file(&dir.join(second), &mut r));
            names.push(second.to_string());
        }
    }
    names.push(first.to_string());
    let desc = format!("{rel} case {i}: {}", descs.join("; "));
    fz.case(&desc, &names, || use_sae(&Sae::load(&dir)?));
}

pub fn load_sae(dir: &Path) -> saescope::Result<()> {
    use_sae(&Sae::load(dir)?)
}

pub fn sae_folders(root: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

pub fn load_gguf(dir: &Path, file: &str) -> saescope::Result<()> {
    let p = dir.join(file);
    use_model(&HookedModel::from_pretrained(p.to_str().unwrap())?)
}
