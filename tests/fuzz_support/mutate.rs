//! Seeded mutations of whole files by kind. Each returns the mutant and a description that,
//! with the case seed, reproduces it.
use super::codecs::{self, GgufField, GgufMap, Safetensors};
use super::{Draw, SplitMix64};
use serde_json::{json, Value};
use std::path::Path;

pub trait Pick {
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T;
    fn chance(&mut self, one_in: u64) -> bool;
    fn upto(&mut self, n: usize) -> usize;
}

impl Pick for SplitMix64 {
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
    fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in as usize) == 0
    }
    /// Uniform in `0..n` (0 when `n == 0`).
    fn upto(&mut self, n: usize) -> usize {
        self.below(n)
    }
}

// ---------------------------------------------------------------------------------------------
// Bytes

/// Flip 1–4 bytes inside `lo..hi`.
pub fn flip(b: &mut [u8], lo: usize, hi: usize, r: &mut SplitMix64) -> String {
    let hi = hi.min(b.len());
    if lo >= hi {
        return "no flip (empty range)".into();
    }
    let k = 1 + r.upto(4);
    let mut at = Vec::new();
    for _ in 0..k {
        let i = lo + r.upto(hi - lo);
        let v = match r.below(4) {
            0 => 0x00,
            1 => 0xff,
            _ => b[i] ^ (1 + r.below(255) as u8),
        };
        b[i] = v;
        at.push(format!("{i:#x}={v:#04x}"));
    }
    format!("set bytes {}", at.join(","))
}

/// Cut to a random length (0, a few bytes, inside the header, anywhere, one short).
pub fn truncate(b: &mut Vec<u8>, header_end: usize, r: &mut SplitMix64) -> String {
    let len = b.len();
    let n = match r.below(6) {
        0 => 0,
        1 => r.upto(16),
        2 => r.upto(header_end.min(len) + 1),
        3 => len.saturating_sub(1 + r.upto(8)),
        _ => r.upto(len),
    };
    b.truncate(n);
    format!("truncate to {n} of {len} bytes")
}

// ---------------------------------------------------------------------------------------------
// JSON

/// Values that are wrong in one way or another for almost any field.
fn absurd_value(r: &mut SplitMix64) -> Value {
    match r.below(22) {
        0 => json!(-1),
        1 => json!(0),
        2 => json!(1),
        3 => json!(1e15),
        4 => json!(1e300),
        5 => json!(-1e300),
        6 => json!(u64::MAX),
        7 => json!(i64::MIN),
        8 => json!(1.5),
        9 => json!(4503599627370497u64),
        10 => json!("bogus"),
        11 => json!(""),
        12 => json!("F64"),
        13 => json!("I8"),
        14 => json!(null),
        15 => json!(true),
        16 => json!([]),
        17 => json!({}),
        18 => json!([1e12, 1e12]),
        19 => json!({"k": 1}),
        20 => json!(1u64 << 40),
        _ => json!("float64"),
    }
}

/// Values for fields we know by name.
fn value_for_key(key: &str, r: &mut SplitMix64) -> Option<Value> {
    let sizes = [
        json!(0),
        json!(-1),
        json!(1e15),
        json!(999999999999999u64),
        json!(1u64 << 40),
        json!(u64::MAX),
        json!(3),
        json!(100000),
    ];
    Some(match key {
        "dtype" => r
            .pick(&[
                json!("F64"),
                json!("I8"),
                json!("bogus"),
                json!("float64"),
                json!("torch.bfloat16"),
                json!("float16"),
                json!("int8"),
                json!(32),
            ])
            .clone(),
        "architecture" | "dict_class" => r
            .pick(&[
                json!("standard"),
                json!("gated"),
                json!("jumprelu"),
                json!("topk"),
                json!("batchtopk"),
                json!("matryoshka_batchtopk"),
                json!("transcoder"),
                json!("skip_transcoder"),
                json!("jumprelu_skip_transcoder"),
                json!("GatedAutoEncoder"),
                json!("AutoEncoderTopK"),
                json!("bogus"),
            ])
            .clone(),
        "normalize_activations" => r
            .pick(&[
                json!("layer_norm"),
                json!("constant_norm_rescale"),
                json!("expected_average_only_in"),
                json!(true),
                json!("bogus"),
            ])
            .clone(),
        "reshape_activations" => r.pick(&[json!("hook_z"), json!("bogus")]).clone(),
        "hook_name" | "hook_point" => r
            .pick(&[
                json!("blocks.0.attn.hook_z"),
                json!("blocks.99999999999.hook_resid_pre"),
                json!(""),
                json!(7),
            ])
            .clone(),
        "d_in"
        | "d_sae"
        | "d_out"
        | "k"
        | "num_latents"
        | "expansion_factor"
        | "activation_dim"
        | "dict_size"
        | "layer"
        | "context_size"
        | "hook_layer"
        | "n_tokens"
        | "shard_tokens"
        | "hook_head_index"
        | "training_context_size" => r.pick(&sizes).clone(),
        _ => return None,
    })
}

/// Every path to a value inside `v` (object keys and array indices).
fn paths(v: &Value, prefix: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                prefix.push(json!(k));
                out.push(prefix.clone());
                paths(x, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate().take(8) {
                prefix.push(json!(i));
                out.push(prefix.clone());
                paths(x, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

fn show_path(p: &[Value]) -> String {
    p.iter()
        .map(|s| match s {
            Value::String(k) => k.clone(),
            other => format!("[{other}]"),
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// Values of the wrong type, but no sizes.
fn wrong_type(r: &mut SplitMix64) -> Value {
    r.pick(&[
        json!("bogus"),
        json!(""),
        json!(null),
        json!(true),
        json!([]),
        json!({}),
        json!({"k": 1}),
        json!(-1),
        json!(1.5),
    ])
    .clone()
}

/// Mutate one field of a JSON document (set an absurd / wrong-typed value, or delete it);
/// with `sizes` false only wrong types (no big numbers, no deletions, which bring defaults).
pub fn json_value(v: &mut Value, r: &mut SplitMix64, sizes: bool) -> String {
    let mut all = Vec::new();
    paths(v, &mut Vec::new(), &mut all);
    if !sizes {
        if all.is_empty() {
            return "unchanged".into();
        }
        let path = r.pick(&all).clone();
        let new = wrong_type(r);
        let mut slot = &mut *v;
        for s in &path {
            slot = match s {
                Value::String(k) => slot.get_mut(k.as_str()).unwrap(),
                other => slot.get_mut(other.as_u64().unwrap() as usize).unwrap(),
            };
        }
        *slot = new.clone();
        return format!("set {} = {new}", show_path(&path));
    }
    if all.is_empty() || r.chance(20) {
        *v = absurd_value(r);
        return format!("replace the whole document with {v}");
    }
    let path = r.pick(&all).clone();
    let (last, parent_path) = path.split_last().unwrap();
    let mut parent = &mut *v;
    for s in parent_path {
        parent = match s {
            Value::String(k) => parent.get_mut(k.as_str()).unwrap(),
            other => parent.get_mut(other.as_u64().unwrap() as usize).unwrap(),
        };
    }
    let name = show_path(&path);
    if r.chance(6) {
        match (parent, last) {
            (Value::Object(m), Value::String(k)) => {
                m.remove(k);
            }
            (Value::Array(a), i) => {
                a.remove(i.as_u64().unwrap() as usize);
            }
            _ => {}
        }
        return format!("delete {name}");
    }
    let key = path
        .iter()
        .rev()
        .find_map(|s| s.as_str())
        .unwrap_or_default();
    let new = match value_for_key(key, r) {
        Some(x) if !r.chance(3) => x,
        _ => absurd_value(r),
    };
    let slot = match last {
        Value::String(k) => parent.get_mut(k.as_str()).unwrap(),
        i => parent.get_mut(i.as_u64().unwrap() as usize).unwrap(),
    };
    *slot = new.clone();
    format!("set {name} = {new}")
}

/// A JSON file: a field mutation (most of the time), or raw byte flips / truncation.
pub fn json_file(b: &mut Vec<u8>, r: &mut SplitMix64) -> String {
    json_file_with(b, r, true)
}

/// [`json_file`] with wrong types only (see [`json_value`]).
pub fn json_file_no_sizes(b: &mut Vec<u8>, r: &mut SplitMix64) -> String {
    json_file_with(b, r, false)
}

fn json_file_with(b: &mut Vec<u8>, r: &mut SplitMix64, sizes: bool) -> String {
    match (serde_json::from_slice::<Value>(b), r.below(8)) {
        (Ok(mut v), 0..=5) => {
            let d = json_value(&mut v, r, sizes);
            *b = serde_json::to_vec_pretty(&v).unwrap();
            d
        }
        (_, 6) => truncate(b, 0, r),
        _ => {
            let n = b.len();
            flip(b, 0, n, r)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// safetensors

const DTYPES: [&str; 12] = [
    "F64", "I8", "bogus", "BF16", "F16", "U8", "BOOL", "F8_E4M3", "I64", "U32", "F32", "I16",
];
const NAMES: [&str; 20] = [
    "W_enc",
    "W_dec",
    "b_enc",
    "b_dec",
    "threshold",
    "b_gate",
    "b_mag",
    "r_mag",
    "W_skip",
    "log_threshold",
    "scaling_factor",
    "topk_threshold",
    "sparsity",
    "activations",
    "token_ids",
    "w_enc",
    "encoder.weight",
    "decoder.weight",
    "bogus",
    "",
];

fn shape_of(v: &Value) -> Vec<u64> {
    v["shape"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_u64()).collect())
        .unwrap_or_default()
}

/// A wrong shape: absurd, or plausible but disagreeing with the data / the config.
fn wrong_shape(s: &[u64], r: &mut SplitMix64) -> Vec<u64> {
    let mut s = s.to_vec();
    match r.below(9) {
        0 => s = vec![1_000_000_000_000],
        1 => s = vec![1 << 32, 1 << 32],
        2 => s = vec![u64::MAX / 2, 4],
        3 => s.reverse(),
        4 => s.push(2),
        5 => {
            s.pop();
        }
        6 => s = vec![],
        7 => {
            if let Some(x) = s.first_mut() {
                *x = 0;
            }
        }
        _ => {
            if let Some(x) = s.last_mut() {
                *x *= 2;
            }
        }
    }
    s
}

fn elem_size(dtype: &str) -> usize {
    match dtype {
        "F64" | "I64" | "U64" => 8,
        "F32" | "I32" | "U32" => 4,
        "F16" | "BF16" | "I16" | "U16" => 2,
        _ => 1,
    }
}

/// Extreme element values for a tensor of `dtype`.
fn extreme(dtype: &str, r: &mut SplitMix64) -> Vec<u8> {
    match dtype {
        "F32" => r
            .pick(&[f32::NAN, f32::INFINITY, -f32::INFINITY, 3e38, 0.0, -1.0])
            .to_le_bytes()
            .to_vec(),
        "F64" => r
            .pick(&[f64::NAN, f64::INFINITY, 1e308, 0.0, -1.0])
            .to_le_bytes()
            .to_vec(),
        "I64" | "U64" => r
            .pick(&[i64::MAX, i64::MIN, -1, 1 << 40, 1 << 62, 0])
            .to_le_bytes()
            .to_vec(),
        "I32" | "U32" => r
            .pick(&[i32::MAX, i32::MIN, -1, 1 << 30])
            .to_le_bytes()
            .to_vec(),
        "F16" | "BF16" => r.pick(&[[0xff, 0x7f], [0x00, 0x7c], [0x00, 0xfc]]).to_vec(),
        _ => vec![*r.pick(&[0xffu8, 0x00, 0x80, b'{', b'"'])],
    }
}

/// One mutation of a safetensors file.
pub fn safetensors(b: &mut Vec<u8>, r: &mut SplitMix64) -> String {
    let Some(mut st) = Safetensors::parse(b) else {
        let n = b.len();
        return flip(b, 0, n, r);
    };
    let names = st.names();
    let hlen = b.len() - st.data.len();
    if names.is_empty() {
        return truncate(b, hlen, r);
    }
    let name = r.pick(&names).clone();
    let what = r.below(16);
    let d = match what {
        0 => {
            let v = *r.pick(&[
                1u64 << 60,
                u64::MAX,
                0,
                b.len() as u64,
                (hlen - 8) as u64 + 1,
            ]);
            b[..8].copy_from_slice(&v.to_le_bytes());
            return format!("header length field = {v}");
        }
        1 => {
            let t = *r.pick(&DTYPES);
            st.header[&name]["dtype"] = t.into();
            format!("`{name}` dtype = {t:?}")
        }
        2 => {
            let s = wrong_shape(&shape_of(&st.header[&name]), r);
            st.header[&name]["shape"] = json!(s);
            format!("`{name}` shape = {s:?} (data unchanged)")
        }
        3 => {
            let (s, e) = st.range(&name).unwrap();
            let o = match r.below(5) {
                0 => json!([0, u64::MAX]),
                1 => json!([s, e + 1]),
                2 => json!([e, s]),
                3 => json!([1u64 << 50, (1u64 << 50) + (e - s) as u64]),
                _ => json!([s as i64 - 1, e]),
            };
            st.header[&name]["data_offsets"] = o.clone();
            format!("`{name}` data_offsets = {o}")
        }
        4 => {
            let to = *r.pick(&NAMES);
            let v = st.header.remove(&name).unwrap();
            st.header.insert(to.to_string(), v);
            format!("rename `{name}` to `{to}`")
        }
        5 => {
            st.header.remove(&name);
            format!("drop `{name}` from the header (data kept)")
        }
        6 => {
            let m = r
                .pick(&[
                    json!({"format": 5}),
                    json!([1]),
                    json!("x"),
                    json!({"a": {"b": 1}}),
                ])
                .clone();
            st.header.insert("__metadata__".into(), m.clone());
            format!("__metadata__ = {m}")
        }
        7 | 8 => {
            // A consistent file whose tensor has another shape / dtype: reaches the loader's checks.
            let v = &st.header[&name];
            let dt = v["dtype"].as_str().unwrap_or("F32").to_string();
            let old = shape_of(v);
            let (new_dt, new_shape): (String, Vec<usize>) = if what == 7 {
                let s = match r.below(6) {
                    0 => vec![],
                    1 => vec![0],
                    2 => old.iter().rev().map(|&x| x as usize).collect(),
                    3 => old.iter().map(|&x| x as usize + 1).collect(),
                    4 => vec![old.iter().product::<u64>() as usize],
                    _ => {
                        let mut s: Vec<usize> = old.iter().map(|&x| x as usize).collect();
                        s.push(1);
                        s
                    }
                };
                (dt.clone(), s)
            } else {
                let t = *r.pick(&["F64", "F16", "BF16", "I64", "U8", "U32", "I32"]);
                (t.to_string(), old.iter().map(|&x| x as usize).collect())
            };
            let n: usize = new_shape.iter().product();
            let bytes = vec![0x3c; n * elem_size(&new_dt)];
            st.replace(&name, &new_dt, &new_shape, &bytes);
            format!("`{name}` rewritten as {new_dt} {new_shape:?} ({dt} {old:?} before)")
        }
        9 if name == "state/json" => {
            // The checkpoint's JSON state, stored as a U8 tensor.
            let (s, e) = st.range(&name).unwrap();
            let mut j = st.data[s..e].to_vec();
            let d = json_file(&mut j, r);
            let n = j.len();
            st.replace(&name, "U8", &[n], &j);
            format!("`state/json`: {d}")
        }
        9 | 10 => {
            let (s, e) = st.range(&name).unwrap();
            let dt = st.header[&name]["dtype"]
                .as_str()
                .unwrap_or("F32")
                .to_string();
            let x = extreme(&dt, r);
            let n = (e - s) / x.len().max(1);
            if n == 0 {
                return format!("`{name}` is empty; unchanged");
            }
            let i = r.upto(n);
            st.data[s + i * x.len()..s + (i + 1) * x.len()].copy_from_slice(&x);
            format!("`{name}`[{i}] = {x:?} (bytes)")
        }
        11 => {
            // Flip inside the JSON text, keeping its length.
            let mut out = st.to_bytes();
            let h = out.len() - st.data.len();
            let d = flip(&mut out, 8, h, r);
            *b = out;
            return format!("header text: {d}");
        }
        12 => {
            let n = st.data.len();
            let d = flip(&mut st.data, 0, n, r);
            format!("data: {d}")
        }
        13 => return truncate(b, hlen, r),
        _ => {
            let n = b.len();
            return flip(b, 0, n, r);
        }
    };
    *b = st.to_bytes();
    d
}

// ---------------------------------------------------------------------------------------------
// npz / .pt (stored zips)

fn npy_header(h: &str, r: &mut SplitMix64) -> (String, String) {
    let replace = |h: &str, key: &str, new: &str| -> String {
        // Replace the value after `'key': ` up to the next top-level `, '` or `}`.
        let Some(i) = h.find(&format!("'{key}':")) else {
            return h.to_string();
        };
        let start = i + key.len() + 3;
        let rest = &h[start..];
        let end = if key == "shape" {
            rest.find(')').map(|j| j + 1)
        } else {
            rest.find(',')
        }
        .unwrap_or(rest.len());
        format!("{} {new}{}", &h[..start], &rest[end..])
    };
    match r.below(4) {
        0 | 1 => {
            let s = *r.pick(&[
                "(1000000000000,)",
                "(1000000, 1000000)",
                "(4294967296, 4294967296)",
                "(18446744073709551615, 2)",
                "()",
                "(0,)",
                "(16, 48, 2)",
                "(-1, 48)",
                "(3,",
                "(48, 16)",
            ]);
            (replace(h, "shape", s), format!("shape = {s}"))
        }
        2 => {
            let d = *r.pick(&[
                "'<f8'", "'|i1'", "'<i8'", "'|b1'", "'<U4'", "'|O'", "'bogus'", "'>f4'", "'<f2'",
                "'<c8'", "3",
            ]);
            (replace(h, "descr", d), format!("descr = {d}"))
        }
        _ => (
            replace(h, "fortran_order", "True"),
            "fortran_order = True".into(),
        ),
    }
}

/// One mutation of a `.npz` archive (inside an array's `.npy`, or of the archive itself).
pub fn npz(b: &mut Vec<u8>, r: &mut SplitMix64) -> String {
    let Some(mut entries) = codecs::zip_read(b) else {
        let n = b.len();
        return flip(b, 0, n, r);
    };
    let what = r.below(10);
    if what >= 8 || entries.is_empty() {
        return if what == 8 {
            truncate(b, 0, r)
        } else {
            let n = b.len();
            format!("zip bytes (CRCs now stale): {}", flip(b, 0, n, r))
        };
    }
    let i = r.upto(entries.len());
    let name = entries[i].name.clone();
    let d = match (what, codecs::npy_split(&entries[i].data)) {
        (0..=3, Some((h, data))) => {
            let (h2, d) = npy_header(&h, r);
            entries[i].data = codecs::npy_join(&h2, &data);
            d
        }
        (4, Some((h, mut data))) => {
            let n = data.len();
            let cut = r.upto(n);
            data.truncate(cut);
            entries[i].data = codecs::npy_join(&h, &data);
            format!("data cut to {cut} of {n} bytes")
        }
        (5, _) => {
            let n = entries[i].data.len();
            flip(&mut entries[i].data, 0, n.min(128), r)
        }
        (6, _) => {
            entries.remove(i);
            "removed".into()
        }
        _ => {
            let to = format!("{}.npy", r.pick(&NAMES));
            entries[i].name = to.clone();
            format!("renamed to {to}")
        }
    };
    *b = codecs::zip_write(&entries);
    format!("{name}: {d}")
}

/// Offsets of the integer arguments of pickle opcodes (BININT1 `K`, BININT2 `M`, BININT `J`,
/// LONG1 `\x8a`) in a protocol-2 pickle: where shapes, strides and storage sizes live.
pub fn pickle_ints(p: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for i in 0..p.len() {
        match p[i] {
            b'K' if i + 1 < p.len() => out.push((i + 1, 1)),
            b'M' if i + 2 < p.len() => out.push((i + 1, 2)),
            b'J' if i + 4 < p.len() => out.push((i + 1, 4)),
            0x8a if i + 2 < p.len() && p[i + 1] <= 8 => out.push((i + 2, p[i + 1] as usize)),
            _ => {}
        }
    }
    out
}

/// Replace the integer opcode whose `w`-byte argument starts at `at` by LONG1 with 8 bytes
/// holding `v` (pickles have no offsets, so the stream may grow).
pub fn set_pickle_int(p: &mut Vec<u8>, at: usize, w: usize, v: u64) {
    let op_at = if p[at - 1] <= 8 && at >= 2 && p[at - 2] == 0x8a {
        at - 2
    } else {
        at - 1
    };
    let mut new = vec![0x8a, 8];
    new.extend_from_slice(&v.to_le_bytes());
    p.splice(op_at..at + w, new);
}

/// One mutation of a torch `.pt` (zip of a pickle and raw storages).
pub fn pt(b: &mut Vec<u8>, r: &mut SplitMix64) -> String {
    let Some(mut entries) = codecs::zip_read(b) else {
        let n = b.len();
        return flip(b, 0, n, r);
    };
    let what = r.below(10);
    let pkl = entries.iter().position(|e| e.name.ends_with("data.pkl"));
    let d = match (what, pkl) {
        (0..=2, Some(i)) => {
            let ints = pickle_ints(&entries[i].data);
            if ints.is_empty() {
                return "no pickle ints".into();
            }
            let (at, w) = *r.pick(&ints);
            let v: u64 = *r.pick(&[0, 1, 0xff, 0xffff, 0xffff_ffff, 1 << 40, u64::MAX >> 1]);
            set_pickle_int(&mut entries[i].data, at, w, v);
            format!("data.pkl: int at {at:#x} = {v:#x}")
        }
        (3 | 4, Some(i)) => {
            let n = entries[i].data.len();
            format!("data.pkl: {}", flip(&mut entries[i].data, 0, n, r))
        }
        (5, _) => {
            let storages: Vec<usize> = (0..entries.len())
                .filter(|&j| entries[j].name.contains("/data/"))
                .collect();
            let j = *r.pick(&storages);
            let n = entries[j].data.len();
            let cut = r.upto(n);
            entries[j].data.truncate(cut);
            format!("{}: cut to {cut} of {n} bytes", entries[j].name)
        }
        (6, _) => {
            let j = r.upto(entries.len());
            let e = entries.remove(j);
            format!("{}: removed", e.name)
        }
        (7, _) => return truncate(b, 0, r),
        _ => {
            let n = b.len();
            return format!("zip bytes (CRCs now stale): {}", flip(b, 0, n, r));
        }
    };
    *b = codecs::zip_write(&entries);
    d
}

// ---------------------------------------------------------------------------------------------
// GGUF

fn absurd_u64(orig: u64, file_len: u64, r: &mut SplitMix64) -> u64 {
    *r.pick(&[
        0,
        1,
        u64::MAX,
        1 << 40,
        1 << 62,
        1 << 32,
        file_len,
        orig.wrapping_add(1),
        orig.wrapping_sub(1),
        orig.wrapping_mul(2),
        orig.wrapping_mul(1 << 20),
    ])
}

/// One mutation of a GGUF header: a size / type / count / value field set to something absurd
/// (the field kind chosen uniformly), byte flips in the header, or a truncation.
pub fn gguf(b: &mut Vec<u8>, map: &GgufMap, r: &mut SplitMix64) -> String {
    let what = r.below(8);
    if what == 6 {
        return flip(b, 0, map.header_end, r);
    }
    if what == 7 {
        return truncate(b, map.header_end, r);
    }
    let mut kinds: Vec<&str> = map.fields.iter().map(|f| f.2.kind()).collect();
    kinds.dedup();
    kinds.sort();
    kinds.dedup();
    let kind = *r.pick(&kinds);
    let fields: Vec<&(usize, usize, GgufField)> =
        map.fields.iter().filter(|f| f.2.kind() == kind).collect();
    let (at, w, f) = (*r.pick(&fields)).clone();
    let orig = {
        let mut x = [0u8; 8];
        x[..w].copy_from_slice(&b[at..at + w]);
        u64::from_le_bytes(x)
    };
    let v: u64 = match &f {
        GgufField::ValueType(_) | GgufField::ArrayType(_) | GgufField::GgmlType(_) => {
            *r.pick(&[0, 1, 4, 6, 8, 9, 10, 12, 13, 14, 30, 99, u32::MAX as u64])
        }
        GgufField::NDims(_) => *r.pick(&[0, 1, 3, 4, 5, 64, u32::MAX as u64]),
        GgufField::Scalar(_, 6) => r
            .pick(&[f32::NAN, f32::INFINITY, 0.0, -1.0, 1e30, 1e-30])
            .to_bits() as u64,
        GgufField::Scalar(_, 12) => r
            .pick(&[f64::NAN, f64::INFINITY, 0.0, -1.0, 1e300])
            .to_bits(),
        GgufField::Scalar(..) if w <= 4 => *r.pick(&[
            0,
            1,
            u32::MAX as u64,
            1 << 31,
            1 << 20,
            orig + 1,
            orig.saturating_sub(1),
            orig * 2,
        ]),
        _ => absurd_u64(orig, b.len() as u64, r),
    };
    b[at..at + w].copy_from_slice(&v.to_le_bytes()[..w]);
    format!("{f:?} at {at:#x}: {orig} -> {v}")
}

/// Mutate the file at `p` by its kind; returns the description.
pub fn file(p: &Path, r: &mut SplitMix64) -> String {
    let mut b = std::fs::read(p).unwrap();
    let name = super::file_name(p);
    let d = if name.ends_with(".json") {
        json_file(&mut b, r)
    } else if name.ends_with(".safetensors") {
        safetensors(&mut b, r)
    } else if name.ends_with(".npz") {
        npz(&mut b, r)
    } else if name.ends_with(".pt") {
        pt(&mut b, r)
    } else {
        let n = b.len();
        flip(&mut b, 0, n, r)
    };
    super::write(p, &b);
    format!("{name}: {d}")
}
