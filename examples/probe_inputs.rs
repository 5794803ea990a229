//! Dump the inputs of the probing / absorption goldens (`scripts/make_probe_goldens.py`): the
//! first-letter words, prompts and hook activations, and the corpus-package documents' per-token
//! activations with their per-seed splits, for the shipped SAE, plus saescope's own reports.
//!
//! `cargo run --release --example probe_inputs -- OUT_DIR [n_words] [docs_per_class] [min_feats_for_eval]`
use saescope::eval::absorption::{absorption_on, absorption_split, first_letter_data};
use saescope::eval::probing::{pooled_activations, sparse_probing_pooled};
use saescope::prelude::*;
use std::collections::HashMap;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let out = std::path::PathBuf::from(args.get(1).cloned().unwrap_or("/tmp/probe_inputs".into()));
    std::fs::create_dir_all(&out)?;
    let model = HookedModel::from_pretrained("smollm2")?;
    let sae = Sae::shipped()?;
    let mut ao = AbsorptionOptions::default();
    if let Some(n) = args.get(2) {
        ao.n_words = n.parse()?;
    }
    if let Some(n) = args.get(4) {
        ao.min_feats_for_eval = n.parse()?;
    }
    let mut po = ProbingOptions::default();
    if let Some(n) = args.get(3) {
        po.docs_per_class = n.parse()?;
    }
    let t = std::time::Instant::now();
    let fl = first_letter_data(&model, &sae, &ao)?;
    let t_fl = t.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    let pooled = pooled_activations(&model, &sae, &po)?;
    let t_pool = t.elapsed().as_secs_f64();
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    tensors.insert("first_letter.acts".into(), fl.acts.clone());
    tensors.insert("corpus.token_acts".into(), pooled.token_acts.clone());
    saescope::candle_core::safetensors::save(&tensors, out.join("acts.safetensors"))?;
    let splits: Vec<_> = (0..po.n_seeds)
        .map(|s| pooled.split_rows(po.train_fraction, po.seed + s as u64))
        .collect();
    let abs_splits: Vec<_> = (0..ao.n_seeds)
        .map(|s| absorption_split(fl.words.len(), ao.train_fraction, ao.seed + s as u64))
        .collect();
    let t = std::time::Instant::now();
    let ar = absorption_on(&fl, &sae, &ao)?;
    let t_abs = t.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    let pr = sparse_probing_pooled(&pooled, &po)?;
    let t_probe = t.elapsed().as_secs_f64();
    println!("{ar}\n{pr}");
    println!("times: first-letter acts {t_fl:.1}s, corpus acts {t_pool:.1}s, absorption probes {t_abs:.1}s, sparse probing {t_probe:.1}s");
    let meta = json!({
        "absorption_options": ao, "probing_options": po,
        "words": fl.words, "absorption_splits": abs_splits, "labels": fl.labels, "prompts": fl.prompts,
        "corpus": {"classes": pooled.classes, "labels": pooled.labels, "splits": splits},
        "rust": {"absorption": ar, "probing": pr},
        "seconds": {"first_letter_acts": t_fl, "corpus_acts": t_pool, "absorption": t_abs, "probing": t_probe},
    });
    std::fs::write(out.join("meta.json"), serde_json::to_string(&meta)?)?;
    Ok(())
}
