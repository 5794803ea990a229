//! Golden checks shared by tests/sae.rs and tests/sae_loaders.rs: every tensor a golden file
//! (`tests/fixtures/sae/goldens/<name>.safetensors`, written by SAELens 6.54.12) holds is
//! recomputed with saescope and compared within 1e-4 relative error (`max|a-b| / max|b|`).
#![allow(dead_code)]

use saescope::sae::Sae;
use saescope::{Device, Tensor};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

pub const TOL: f32 = 1e-4;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sae")
}

pub fn golden_path(name: &str) -> PathBuf {
    fixtures()
        .join("goldens")
        .join(format!("{name}.safetensors"))
}

/// The tensors and the `__metadata__` of a golden file.
pub fn load_golden(name: &str) -> (HashMap<String, Tensor>, HashMap<String, String>) {
    let p = golden_path(name);
    let t = saescope::candle_core::safetensors::load(&p, &Device::Cpu)
        .unwrap_or_else(|e| panic!("load {}: {e}", p.display()));
    let bytes = std::fs::read(&p).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let meta = header
        .get("__metadata__")
        .and_then(|m| m.as_object())
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    (t, meta)
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.to_dtype(saescope::DType::F32)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1())
        .unwrap()
}

/// `max|a-b| / max|b|` (absolute when `b` is all zeros); `None` on a shape mismatch.
pub fn rel_err(a: &Tensor, b: &Tensor) -> Option<f32> {
    if a.dims() != b.dims() {
        return None;
    }
    let (a, b) = (flat(a), flat(b));
    let d = a
        .iter()
        .zip(&b)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    let s = b.iter().fold(0f32, |m, y| m.max(y.abs()));
    Some(if s > 0.0 { d / s } else { d })
}

/// Keys that are documentation only (not outputs of the loaded SAE).
fn skipped(key: &str) -> bool {
    key.starts_with("training.")
        || key.starts_with("reference.")
        || key == "gate_pre"
        || key.ends_with(".from_pretrained")
}

/// Compare every golden tensor of `name` with `sae`'s outputs. Returns one line per checked
/// key (`key: rel err`), and panics listing every failure.
pub fn check_golden(name: &str, sae: &Sae) -> Vec<String> {
    let (g, meta) = load_golden(name);
    let x = g.get("x").expect("golden has x");
    let mut got: HashMap<String, Tensor> = HashMap::new();
    let mut failures: Vec<String> = Vec::new();

    let (f, h) = sae.encode_with_hidden_pre(x).unwrap();
    got.insert("feature_acts".into(), f.clone());
    got.insert("hidden_pre".into(), h.clone());
    let (_, st) = sae.encode_with_state(x).unwrap();
    got.insert("recons".into(), sae.decode_with_state(&f, &st).unwrap());
    got.insert("forward".into(), sae.forward(x).unwrap());
    let (out, cache) = sae.run_with_cache(x).unwrap();
    assert_eq!(
        rel_err(&out, &got["forward"]),
        Some(0.0),
        "{name}: run_with_cache output differs from forward"
    );
    for (k, t) in cache.iter() {
        got.insert(k.to_string(), t.clone());
    }
    // The hooks SAELens's standalone forward fires.
    if let Some(hooks) = meta.get("hooks") {
        let want: BTreeSet<String> = serde_json::from_str::<Vec<String>>(hooks)
            .unwrap()
            .into_iter()
            .collect();
        let have: BTreeSet<String> = cache.names().iter().map(|s| s.to_string()).collect();
        if want != have {
            failures.push(format!("hooks fired: {have:?}, SAELens: {want:?}"));
        }
    }
    if g.contains_key("hidden_pre_rescaled") {
        let n = sae.w_dec_norms().unwrap();
        got.insert("hidden_pre_rescaled".into(), h.broadcast_mul(&n).unwrap());
    }
    if g.contains_key("error_term.forward") {
        let (o, c) = sae.run_with_cache_opts(x, true).unwrap();
        got.insert("error_term.forward".into(), o);
        got.insert(
            "error_term.hook_sae_error".into(),
            c.get("hook_sae_error").unwrap().clone(),
        );
        assert_eq!(
            rel_err(
                &sae.forward_with_error(x).unwrap(),
                &got["error_term.forward"]
            ),
            Some(0.0)
        );
    }
    // Folding.
    let fold = meta
        .get("fold_W_dec_norm")
        .map(String::as_str)
        .unwrap_or("ok");
    let mut folded = sae.clone();
    let r = folded.fold_w_dec_norm();
    if fold.starts_with("NotImplementedError") {
        match r {
            Err(e) => assert!(
                e.to_string().contains("rescale_acts_by_decoder_norm"),
                "{name}: fold error should explain why: {e}"
            ),
            Ok(()) => failures.push("fold_w_dec_norm should fail as in SAELens".into()),
        }
    } else {
        r.unwrap_or_else(|e| panic!("{name}: fold_w_dec_norm: {e}"));
        let (ff, st) = folded.encode_with_state(x).unwrap();
        got.insert("feature_acts_folded".into(), ff.clone());
        got.insert(
            "recons_folded".into(),
            folded.decode_with_state(&ff, &st).unwrap(),
        );
        got.insert("forward_folded".into(), folded.forward(x).unwrap());
        got.insert("W_dec_norm_folded".into(), folded.w_dec_norms().unwrap());
    }

    let mut report = Vec::new();
    let mut keys: Vec<&String> = g.keys().collect();
    keys.sort();
    for k in keys {
        if k == "x" || skipped(k) {
            continue;
        }
        let Some(a) = got.get(k.as_str()) else {
            failures.push(format!(
                "{k}: not computed by the test (unknown golden key)"
            ));
            continue;
        };
        match rel_err(a, &g[k.as_str()]) {
            None => failures.push(format!(
                "{k}: shape {:?}, golden {:?}",
                a.dims(),
                g[k.as_str()].dims()
            )),
            Some(e) if e > TOL || e.is_nan() => failures.push(format!("{k}: rel err {e:.3e}")),
            Some(e) => report.push(format!("{k}: {e:.1e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "golden `{name}` mismatches:\n  {}",
        failures.join("\n  ")
    );
    report
}
