//! Attribution-graph wall time and peak memory on CPU: SmolLM2-135M-Instruct, a 16-token
//! prompt, transcoders on all 30 layers, at most `--max-features` feature nodes.
//!
//! `cargo bench --bench attribution -- [--transcoders DIR] [--max-features 7500]
//! [--batch 64] [--prompt TEXT] [--save DIR]`
//!
//! Without `--transcoders` (or when DIR does not exist), random JumpReLU transcoders of width
//! `--width` (default 1152) are made with thresholds that let about `--active` (default 24)
//! latents fire per token and layer on this prompt (the timing depends on the number of
//! nodes, not on what they mean); `--save DIR` writes them as SAELens folders `DIR/layer_L`
//! (what `scripts/bench_attribution.sh` hands circuit-tracer) and exits. Prints one JSON line
//! with `wall_s`, `peak_rss_mb` and the node counts.
use candle_core::{DType, Device, IndexOp, Tensor};
use saescope::analysis::circuits::{attribute, GraphOptions, TranscoderSet};
use saescope::sae::SaeConfig;
use saescope::{HookedModel, Sae};
use std::collections::HashMap;
use std::time::Instant;
mod common;
use common::{arg, is_bench_run, rss_mib};

const PROMPT: &str =
    "The Eiffel Tower is in the city of Paris, and the Colosseum is in the city of";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !is_bench_run(
        &args,
        "attribution benchmark: run with `cargo bench --bench attribution`",
    ) {
        return;
    }
    let dir: String = arg(&args, "--transcoders", String::new());
    let max_features = arg(&args, "--max-features", 7500usize);
    let batch = arg(&args, "--batch", 64usize);
    let width = arg(&args, "--width", 1152usize);
    let active = arg(&args, "--active", 24usize);
    let prompt: String = arg(&args, "--prompt", PROMPT.to_string());
    let model = HookedModel::from_pretrained("smollm2").expect("model");
    let tokens = model.to_tokens(&prompt).expect("tokens");
    let tokens = tokens.narrow(1, 0, tokens.dim(1).unwrap().min(16)).unwrap();
    let (tcs, kind) = if !dir.is_empty() && std::path::Path::new(&dir).exists() {
        (TranscoderSet::load(&dir).expect("transcoders"), dir.clone())
    } else {
        (
            random_transcoders(&model, &tokens, width, active),
            format!("random {width}"),
        )
    };
    let save: String = arg(&args, "--save", String::new());
    if !save.is_empty() {
        for (l, t) in tcs.transcoders.iter().enumerate() {
            t.save_to_disk(&std::path::Path::new(&save).join(format!("layer_{l}")))
                .expect("save");
        }
        println!("wrote {} transcoders to {save}", tcs.len());
        return;
    }
    let opts = GraphOptions {
        batch_size: batch,
        max_feature_nodes: Some(max_features),
        ..Default::default()
    };
    let t = Instant::now();
    let graph = attribute(&model, &tokens, &tcs, &opts).expect("attribute");
    let wall = t.elapsed().as_secs_f64();
    let pruned = graph.prune(0.8, 0.98).expect("prune");
    let (_, peak) = rss_mib();
    println!(
        "{{\"impl\":\"saescope\",\"transcoders\":\"{kind}\",\"n_pos\":{},\"active_features\":{},\"feature_nodes\":{},\"nodes\":{},\"kept_nodes\":{},\"batch\":{batch},\"wall_s\":{wall:.2},\"peak_rss_mb\":{peak:.0}}}",
        tokens.dim(1).unwrap(),
        graph.active_features.len(),
        graph.selected_features.len(),
        graph.n_nodes(),
        pruned.node_mask.iter().filter(|&&k| k).count(),
    );
}

/// Random JumpReLU transcoders whose thresholds let about `active` latents fire per position
/// on `tokens` (the `active`-th largest pre-activation of each latent column is not used:
/// one threshold per latent, the quantile over positions and latents that keeps `active` of
/// `width` per position on average).
fn random_transcoders(
    model: &HookedModel,
    tokens: &Tensor,
    width: usize,
    active: usize,
) -> TranscoderSet {
    let cfg = model.cfg();
    let d = cfg.d_model;
    let names: Vec<String> = (0..cfg.n_layers)
        .map(|l| format!("blocks.{l}.ln2.hook_normalized"))
        .collect();
    let (_, cache) = model.run(tokens).names(names).cache().expect("cache");
    let dev = Device::Cpu;
    let tcs = (0..cfg.n_layers)
        .map(|l| {
            let w_enc =
                (Tensor::randn(0f32, 1.0, (d, width), &dev).unwrap() / (d as f64).sqrt()).unwrap();
            let w_dec = (Tensor::randn(0f32, 1.0, (width, d), &dev).unwrap() * 0.05).unwrap();
            let x = cache
                .get(format!("blocks.{l}.ln2.hook_normalized"))
                .unwrap()
                .i(0)
                .unwrap();
            let pre = x
                .matmul(&w_enc)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let mut sorted = pre.clone();
            sorted.sort_by(|a, b| b.total_cmp(a));
            let k = (active * x.dim(0).unwrap()).min(sorted.len() - 1);
            let thr = sorted[k].max(1e-3);
            let cfg_json = serde_json::json!({
                "architecture": "jumprelu_transcoder", "d_in": d, "d_sae": width, "d_out": d,
                "dtype": "float32", "device": "cpu", "apply_b_dec_to_input": false,
                "normalize_activations": "none",
                "metadata": {"hook_name": format!("blocks.{l}.ln2.hook_normalized"),
                             "hook_name_out": format!("blocks.{l}.hook_mlp_out"),
                             "sae_lens_version": "6.54.12", "model_name": "smollm2"},
            });
            let sae_cfg = SaeConfig::from_json_value(cfg_json).expect("cfg");
            let t = HashMap::from([
                ("W_enc".to_string(), w_enc),
                ("W_dec".to_string(), w_dec),
                (
                    "b_enc".to_string(),
                    Tensor::zeros(width, DType::F32, &dev).unwrap(),
                ),
                (
                    "b_dec".to_string(),
                    Tensor::zeros(d, DType::F32, &dev).unwrap(),
                ),
                (
                    "threshold".to_string(),
                    Tensor::full(thr, width, &dev).unwrap(),
                ),
            ]);
            Sae::from_config_and_tensors(sae_cfg, t, &dev).expect("transcoder")
        })
        .collect();
    TranscoderSet::new(tcs)
}
