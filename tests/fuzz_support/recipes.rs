//! Targeted mutations, run in every default run before the random ones: the cases issue 10
//! names (a GGUF count or string / array length claiming terabytes, a safetensors header length
//! of 2^60, an npy shape of 10^12, `d_in: -1`, `d_sae: 1e15`, `k: 0`, dtypes `F64` / `I8` /
//! `bogus`, shapes that disagree, deleted files, ...), so they never depend on the seed.
use super::codecs::{self, GgufField, GgufMap, Safetensors};
use serde_json::{json, Value};
use std::path::Path;

/// An edit of one file's bytes; `None` deletes the file.
pub type Edit = Box<dyn Fn(&[u8]) -> Option<Vec<u8>>>;

/// A targeted case: the files it changes and how.
pub struct Recipe {
    pub what: String,
    pub edits: Vec<(String, Edit)>,
}

impl Recipe {
    pub fn new(what: impl Into<String>) -> Self {
        Recipe {
            what: what.into(),
            edits: Vec::new(),
        }
    }
    pub fn edit(mut self, file: &str, f: impl Fn(&[u8]) -> Option<Vec<u8>> + 'static) -> Self {
        self.edits.push((file.to_string(), Box::new(f)));
        self
    }
    pub fn delete(self, file: &str) -> Self {
        self.edit(file, |_| None)
    }
    /// Set a JSON field (`a.b.0.c`; created if missing).
    pub fn json(self, file: &str, path: &str, v: Value) -> Self {
        let path = path.to_string();
        self.edit(file, move |b| Some(json_set(b, &path, v.clone())))
    }
    /// Edit a safetensors file's header / data.
    pub fn st(self, file: &str, f: impl Fn(&mut Safetensors) + 'static) -> Self {
        self.edit(file, move |b| {
            let mut st = Safetensors::parse(b).unwrap();
            f(&mut st);
            Some(st.to_bytes())
        })
    }
    /// Overwrite bytes at `at`.
    pub fn bytes(self, file: &str, at: usize, v: Vec<u8>) -> Self {
        self.edit(file, move |b| {
            let mut b = b.to_vec();
            b[at..at + v.len()].copy_from_slice(&v);
            Some(b)
        })
    }
    pub fn truncate(self, file: &str, keep: usize) -> Self {
        self.edit(file, move |b| Some(b[..keep.min(b.len())].to_vec()))
    }

    /// The names an error must mention (one of).
    pub fn files(&self) -> Vec<String> {
        self.edits.iter().map(|(f, _)| leaf(f)).collect()
    }

    /// Apply to the copy of a fixture in `dir`.
    pub fn apply(&self, dir: &Path) {
        for (f, e) in &self.edits {
            let p = dir.join(f);
            let b = std::fs::read(&p).unwrap();
            match e(&b) {
                Some(b) => super::write(&p, &b),
                None => std::fs::remove_file(&p).unwrap(),
            }
        }
    }
}

fn leaf(f: &str) -> String {
    f.rsplit('/').next().unwrap_or(f).to_string()
}

pub fn json_set(b: &[u8], path: &str, v: Value) -> Vec<u8> {
    let mut doc: Value = serde_json::from_slice(b).unwrap();
    let mut slot = &mut doc;
    for s in path.split('.') {
        slot = match s.parse::<usize>() {
            Ok(i) if slot.is_array() => &mut slot[i],
            _ => &mut slot[s],
        };
    }
    *slot = v;
    serde_json::to_vec_pretty(&doc).unwrap()
}

/// `data_offsets` of `name` set to `[a, b]`.
pub fn offsets(st: &mut Safetensors, name: &str, a: u64, b: u64) {
    st.header[name]["data_offsets"] = json!([a, b]);
}

/// Rename a tensor.
pub fn rename(st: &mut Safetensors, from: &str, to: &str) {
    let v = st.header.remove(from).unwrap();
    st.header.insert(to.into(), v);
}

/// The header length field of a safetensors file set to `n`.
pub fn st_header_len(file: &str, n: u64) -> Recipe {
    Recipe::new(format!("{file}: header length = {n}")).bytes(file, 0, n.to_le_bytes().to_vec())
}

/// Safetensors recipes common to every format: header length, dtype, shapes, offsets, cuts.
pub fn safetensors(file: &str, tensor: &'static str) -> Vec<Recipe> {
    let mut v = vec![
        st_header_len(file, 1 << 60),
        st_header_len(file, u64::MAX),
        Recipe::new(format!("{file}: truncated to 0 bytes")).truncate(file, 0),
        Recipe::new(format!("{file}: truncated to 7 bytes")).truncate(file, 7),
        Recipe::new(format!("{file}: truncated inside the header")).truncate(file, 40),
        Recipe::new(format!("{file}: `{tensor}` data_offsets = [0, 2^64-1]"))
            .st(file, move |st| offsets(st, tensor, 0, u64::MAX)),
        Recipe::new(format!(
            "{file}: `{tensor}` shape = [10^12] (data unchanged)"
        ))
        .st(file, move |st| {
            st.header[tensor]["shape"] = json!([1_000_000_000_000u64])
        }),
        Recipe::new(format!(
            "{file}: `{tensor}` shape = [2^32, 2^32] (data unchanged)"
        ))
        .st(file, move |st| {
            st.header[tensor]["shape"] = json!([1u64 << 32, 1u64 << 32])
        }),
        Recipe::new(format!("{file}: deleted")).delete(file),
    ];
    for dt in ["F64", "I8", "bogus", "U8", "I64"] {
        v.push(
            Recipe::new(format!(
                "{file}: `{tensor}` dtype = {dt:?} (data unchanged)"
            ))
            .st(file, move |st| st.header[tensor]["dtype"] = dt.into()),
        );
    }
    // Consistent files whose tensor has another shape / dtype.
    v.push(
        Recipe::new(format!("{file}: `{tensor}` rewritten transposed")).st(file, move |st| {
            let s: Vec<usize> = st.header[tensor]["shape"]
                .as_array()
                .unwrap()
                .iter()
                .rev()
                .map(|x| x.as_u64().unwrap() as usize)
                .collect();
            let (a, b) = st.range(tensor).unwrap();
            let data = st.data[a..b].to_vec();
            let dt = st.header[tensor]["dtype"].as_str().unwrap().to_string();
            st.replace(tensor, &dt, &s, &data);
        }),
    );
    v.push(
        Recipe::new(format!(
            "{file}: `{tensor}` rewritten as an empty [0] tensor"
        ))
        .st(file, move |st| st.replace(tensor, "F32", &[0], &[])),
    );
    v.push(
        Recipe::new(format!("{file}: `{tensor}` rewritten as I64")).st(file, move |st| {
            let s: Vec<usize> = st.header[tensor]["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as usize)
                .collect();
            let n: usize = s.iter().product();
            st.replace(tensor, "I64", &s, &vec![0xff; n * 8]);
        }),
    );
    v
}

/// JSON recipes: each `(field, value)` set, plus structural damage.
pub fn json_fields(file: &str, fields: &[(&str, Value)]) -> Vec<Recipe> {
    let mut v: Vec<Recipe> = fields
        .iter()
        .map(|(k, x)| Recipe::new(format!("{file}: {k} = {x}")).json(file, k, x.clone()))
        .collect();
    v.push(Recipe::new(format!("{file}: the document is []")).edit(file, |_| Some(b"[]".to_vec())));
    v.push(Recipe::new(format!("{file}: truncated to 0 bytes")).truncate(file, 0));
    v.push(Recipe::new(format!("{file}: truncated mid-document")).truncate(file, 20));
    v.push(Recipe::new(format!("{file}: deleted")).delete(file));
    v
}

/// `.npz` recipes: an array's npy header (shape 10^12, shapes that overflow, wrong descr),
/// its data cut, the archive cut.
pub fn npz(file: &str, entry: &'static str) -> Vec<Recipe> {
    let with_header = |what: &str, from: &'static str, to: &'static str| {
        Recipe::new(format!("{file}: {entry} {what}")).edit(file, move |b| {
            let mut es = codecs::zip_read(b).unwrap();
            let e = es.iter_mut().find(|e| e.name == entry).unwrap();
            let (h, data) = codecs::npy_split(&e.data).unwrap();
            assert!(h.contains(from), "{h}");
            e.data = codecs::npy_join(&h.replace(from, to), &data);
            Some(codecs::zip_write(&es))
        })
    };
    let mut v = vec![
        with_header("shape = (10^12,)", "(16, 48)", "(1000000000000,)"),
        with_header("shape = (10^6, 10^6)", "(16, 48)", "(1000000, 1000000)"),
        with_header(
            "shape = (2^64-1, 2)",
            "(16, 48)",
            "(18446744073709551615, 2)",
        ),
        with_header(
            "shape = (2^32, 2^32)",
            "(16, 48)",
            "(4294967296, 4294967296)",
        ),
        with_header("shape = (48, 16)", "(16, 48)", "(48, 16)"),
        with_header("descr = '<f8'", "'<f4'", "'<f8'"),
        with_header("descr = '|O'", "'<f4'", "'|O'"),
        with_header("descr = 'bogus'", "'<f4'", "'bogus'"),
        with_header("fortran_order = True", "False", "True"),
        Recipe::new(format!("{file}: {entry} data cut short")).edit(file, move |b| {
            let mut es = codecs::zip_read(b).unwrap();
            let e = es.iter_mut().find(|e| e.name == entry).unwrap();
            let n = e.data.len();
            e.data.truncate(n - 100);
            Some(codecs::zip_write(&es))
        }),
        Recipe::new(format!("{file}: truncated to 0 bytes")).truncate(file, 0),
        Recipe::new(format!("{file}: truncated mid-archive")).truncate(file, 3000),
        Recipe::new(format!("{file}: deleted")).delete(file),
    ];
    v.push(
        Recipe::new(format!("{file}: {entry} npy header length field = 65535")).edit(
            file,
            move |b| {
                let mut es = codecs::zip_read(b).unwrap();
                let e = es.iter_mut().find(|e| e.name == entry).unwrap();
                e.data[8] = 0xff;
                e.data[9] = 0xff;
                Some(codecs::zip_write(&es))
            },
        ),
    );
    v
}

/// `.pt` recipes: every integer in the pickle (shapes, strides, storage sizes) set to 2^32-1
/// in turn (up to 24 of them), a storage cut short, the archive cut.
pub fn pt(file: &str, bytes: &[u8]) -> Vec<Recipe> {
    let es = codecs::zip_read(bytes).unwrap();
    let pkl = es.iter().find(|e| e.name.ends_with("data.pkl")).unwrap();
    let mut v = Vec::new();
    for (at, w) in super::mutate::pickle_ints(&pkl.data).into_iter().take(24) {
        for x in [u64::MAX >> 1, 1 << 40] {
            let name = pkl.name.clone();
            v.push(
                Recipe::new(format!("{file}: data.pkl int at {at:#x} = {x}")).edit(
                    file,
                    move |b| {
                        let mut es = codecs::zip_read(b).unwrap();
                        let e = es.iter_mut().find(|e| e.name == name).unwrap();
                        super::mutate::set_pickle_int(&mut e.data, at, w, x);
                        Some(codecs::zip_write(&es))
                    },
                ),
            );
        }
    }
    v.push(
        Recipe::new(format!("{file}: storage data/1 cut short")).edit(file, |b| {
            let mut es = codecs::zip_read(b).unwrap();
            let e = es.iter_mut().find(|e| e.name.ends_with("data/1")).unwrap();
            e.data.truncate(e.data.len() / 2);
            Some(codecs::zip_write(&es))
        }),
    );
    v.push(Recipe::new(format!("{file}: truncated to 0 bytes")).truncate(file, 0));
    v.push(Recipe::new(format!("{file}: truncated mid-archive")).truncate(file, 2000));
    v.push(Recipe::new(format!("{file}: deleted")).delete(file));
    v
}

/// GGUF recipes: counts and lengths claiming terabytes, absurd config values, bad tensor infos.
pub fn gguf(file: &str, map: &GgufMap) -> Vec<Recipe> {
    let find = |pred: &dyn Fn(&GgufField) -> bool| {
        map.fields.iter().find(|f| pred(&f.2)).map(|f| (f.0, f.1))
    };
    let mut v = Vec::new();
    let mut set = |what: &str, at: Option<(usize, usize)>, x: u64| {
        if let Some((at, w)) = at {
            v.push(Recipe::new(format!("{file}: {what} = {x}")).bytes(
                file,
                at,
                x.to_le_bytes()[..w].to_vec(),
            ));
        }
    };
    let key = |k: &'static str| move |f: &GgufField| matches!(f, GgufField::Scalar(n, _) if n == k);
    set(
        "tensor_count",
        find(&|f| *f == GgufField::TensorCount),
        u64::MAX,
    );
    set(
        "tensor_count",
        find(&|f| *f == GgufField::TensorCount),
        1 << 40,
    );
    set("kv_count", find(&|f| *f == GgufField::KvCount), u64::MAX);
    set(
        "first key's length",
        find(&|f| matches!(f, GgufField::StrLen(w) if w.starts_with("key "))),
        1 << 40,
    );
    set(
        "tokenizer.ggml.tokens array length",
        find(&|f| matches!(f, GgufField::ArrayLen(k) if k == "tokenizer.ggml.tokens")),
        1 << 40,
    );
    set(
        "tokenizer.ggml.merges array length",
        find(&|f| matches!(f, GgufField::ArrayLen(k) if k == "tokenizer.ggml.merges")),
        u64::MAX,
    );
    set(
        "first token string length",
        find(&|f| matches!(f, GgufField::StrLen(k) if k == "tokenizer.ggml.tokens")),
        1 << 40,
    );
    set(
        "tokenizer.ggml.tokens element type",
        find(&|f| matches!(f, GgufField::ArrayType(k) if k == "tokenizer.ggml.tokens")),
        99,
    );
    set(
        "llama.context_length",
        find(&key("llama.context_length")),
        u32::MAX as u64,
    );
    set(
        "llama.context_length",
        find(&key("llama.context_length")),
        1 << 28,
    );
    set(
        "llama.embedding_length",
        find(&key("llama.embedding_length")),
        u32::MAX as u64,
    );
    set(
        "llama.attention.head_count",
        find(&key("llama.attention.head_count")),
        0,
    );
    set(
        "llama.attention.head_count_kv",
        find(&key("llama.attention.head_count_kv")),
        0,
    );
    set(
        "llama.block_count",
        find(&key("llama.block_count")),
        u32::MAX as u64,
    );
    set(
        "llama.feed_forward_length",
        find(&key("llama.feed_forward_length")),
        1 << 30,
    );
    set(
        "tokenizer.ggml.bos_token_id",
        find(&key("tokenizer.ggml.bos_token_id")),
        u32::MAX as u64,
    );
    set(
        "first tensor's n_dims",
        find(&|f| matches!(f, GgufField::NDims(_))),
        u32::MAX as u64,
    );
    set(
        "first tensor's first dim",
        find(&|f| matches!(f, GgufField::Dim(_))),
        1 << 62,
    );
    set(
        "first tensor's first dim",
        find(&|f| matches!(f, GgufField::Dim(_))),
        1 << 40,
    );
    set(
        "first tensor's ggml type",
        find(&|f| matches!(f, GgufField::GgmlType(_))),
        99,
    );
    set(
        "first tensor's offset",
        find(&|f| matches!(f, GgufField::TensorOffset(_))),
        u64::MAX,
    );
    v.push(Recipe::new(format!("{file}: truncated to 0 bytes")).truncate(file, 0));
    v.push(Recipe::new(format!("{file}: truncated to 20 bytes")).truncate(file, 20));
    v.push(Recipe::new(format!("{file}: truncated mid-header")).truncate(file, map.header_end / 2));
    v.push(
        Recipe::new(format!("{file}: truncated after the header"))
            .truncate(file, map.header_end + 10),
    );
    v
}

/// `cfg.json` values that are wrong for any SAELens config.
pub fn saelens_cfg_recipes() -> Vec<Recipe> {
    json_fields(
        "cfg.json",
        &[
            ("d_in", json!(-1)),
            ("d_in", json!(0)),
            ("d_in", json!("16")),
            ("d_sae", json!(1e15)),
            ("d_sae", json!(999_999_999_999_999u64)),
            ("d_sae", json!(u64::MAX)),
            ("dtype", json!("F64")),
            ("dtype", json!("I8")),
            ("dtype", json!("bogus")),
            ("architecture", json!("bogus")),
            ("architecture", json!(7)),
            ("normalize_activations", json!("bogus")),
            ("reshape_activations", json!("hook_z")),
            ("metadata", json!([])),
            ("metadata.hook_name", json!(null)),
            ("metadata.sae_lens_version", json!("bogus")),
        ],
    )
}

/// Checkpoint recipes: counters and the source position set absurdly inside `state/json` and
/// `source/act_cache.pos`, moments of the wrong size, and the usual safetensors damage.
pub fn checkpoint_recipes() -> Vec<Recipe> {
    let ck = saescope::train::trainer::CHECKPOINT;
    let state_json = |what: &str, key: &'static str, v: serde_json::Value| {
        Recipe::new(format!("{ck}: state/json {what}")).st(ck, move |st| {
            let (a, b) = st.range("state/json").unwrap();
            let j = json_set(&st.data[a..b], key, v.clone());
            let n = j.len();
            st.replace("state/json", "U8", &[n], &j);
        })
    };
    let pos = |what: &str, i: usize, v: i64| {
        Recipe::new(format!("{ck}: source/act_cache.pos[{i}] = {what}")).st(ck, move |st| {
            let (a, _) = st.range("source/act_cache.pos").unwrap();
            st.data[a + 8 * i..a + 8 * i + 8].copy_from_slice(&v.to_le_bytes());
        })
    };
    let mut rs = vec![
        state_json(
            "n_training_steps = 2^64-1",
            "n_training_steps",
            json!(u64::MAX),
        ),
        state_json(
            "n_training_steps = 2^40",
            "n_training_steps",
            json!(1u64 << 40),
        ),
        state_json("adam_step = 2^64-1", "adam_step", json!(u64::MAX)),
        state_json("rng = [1]", "rng", json!([1])),
        state_json(
            "checkpoint_thresholds = {}",
            "checkpoint_thresholds",
            json!({}),
        ),
        pos("i64::MAX (epoch)", 0, i64::MAX),
        pos("i64::MAX (window)", 1, i64::MAX),
        pos("i64::MAX (cursor)", 2, i64::MAX),
        pos("-1 (cursor)", 2, -1),
        pos("i64::MAX (window_shards)", 3, i64::MAX),
        pos("0 (window_shards)", 3, 0),
        Recipe::new(format!("{ck}: adam_m/W_enc rewritten as a [] tensor"))
            .st(ck, |st| st.replace("adam_m/W_enc", "F32", &[], &[0; 4])),
        Recipe::new(format!("{ck}: state/act_freq_scores rewritten as [49]")).st(ck, |st| {
            st.replace("state/act_freq_scores", "F32", &[49], &[0; 49 * 4])
        }),
        Recipe::new(format!("{ck}: param/W_dec rewritten transposed")).st(ck, |st| {
            let (a, b) = st.range("param/W_dec").unwrap();
            let d = st.data[a..b].to_vec();
            st.replace("param/W_dec", "F32", &[16, 48], &d)
        }),
        Recipe::new(format!("{ck}: state/json rewritten as F32"))
            .st(ck, |st| st.replace("state/json", "F32", &[1], &[0; 4])),
    ];
    rs.extend(safetensors(ck, "param/W_enc"));
    rs.extend(json_fields(
        saescope::train::trainer::RUNNER_CFG,
        &[
            ("sae.d_in", json!("sixteen")),
            ("sae.reshape_activations", json!("")),
        ],
    ));
    rs
}
