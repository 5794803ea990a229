"""Writes tests/notebooks/evcxr-cross-cell.ipynb: a regression test, run by scripts/test.sh, for
autograd across evcxr cells. evcxr links each cell as its own library with its own copy of
candle's tensor-id counter; a model, SAE or trainer made in one cell and differentiated in
another used to fail with "shape mismatch" errors from candle's backward pass (see
src/tensor_ids.rs)."""
import sys

import os
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nbgen import Notebook

_nb = Notebook()
md, code = _nb.md, _nb.code

md(r"""
# Regression test: autograd across evcxr cells

Objects made in one cell, gradients computed in later cells. Every check prints `true`.
""")
code(r""":dep saescope = { path = "../.." }""")
code(r"""use saescope::analysis::{attribution_patching, Metric};
use saescope::train::config::RunnerConfig;
use saescope::train::synthetic::InMemorySource;
use saescope::train::trainer::Trainer;
use saescope::{Device, HookedModel, IndexOp, Sae, Tensor};
let model = HookedModel::from_pretrained("smollm2")?;
let sae = Sae::shipped()?;
let tokens = model.to_tokens("The capital of France is")?;
let metric = Metric::logit_diff(&model, " Paris", " London")?;
let model_ran = model.forward(&tokens)?;               // advances this cell's counter
// Reference: the attribution computed in the cell that loaded everything.
let reference: Vec<f32> = attribution_patching(&model, &tokens, &sae, &metric)?.at_pos(None)?;
/// A tiny training config with a given architecture.
fn cfg(arch: &str) -> saescope::Result<RunnerConfig> {
    RunnerConfig::from_value(saescope::serde_json::json!({
        "sae": {"architecture": arch, "d_in": 16, "d_sae": 32, "k": 4},
        "model_name": "toy", "hook_name": "blocks.0.hook_resid_post",
        "training_tokens": 2048, "train_batch_size_tokens": 256, "lr": 0.001,
        "checkpoint_every_n_steps": 0, "progress_bar": false, "verbose": false, "log_every_n_steps": 0,
        "output_path": std::env::temp_dir().join(format!("saescope-cross-cell-{arch}")).to_string_lossy()
    }))
}
let mut source = InMemorySource::new(Tensor::randn(0f32, 1.0, (4096, 16), &Device::Cpu)?)?;
let mut trainers: Vec<(String, Trainer)> = Vec::new();
for a in ["standard", "gated", "jumprelu", "topk", "batchtopk"] { trainers.push((a.to_string(), Trainer::new(&cfg(a)?, None)?)); }""")
code(r"""let again: Vec<f32> = attribution_patching(&model, &tokens, &sae, &metric)?.at_pos(None)?;
let diff = reference.iter().zip(&again).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
println!("attribution in a later cell matches the loading cell's (max |diff| {diff:.1e}): {}", diff < 1e-4);""", contains=["matches the loading cell's (max |diff|", ": true"])
code(r"""// The metric as a closure written in this cell: it makes its tensors with this cell's
// counter, which we move to where a later cell's forward pass will be making its own.
let (paris, london) = (model.to_single_token(" Paris")? as usize, model.to_single_token(" London")? as usize);
let custom = Metric::custom(move |logits: &Tensor, _tokens: &Tensor| {
    let row = logits.i((0, logits.dim(1)? - 1))?;
    Ok((row.i(paris)? - row.i(london)?)?)
});
for _ in 0..4000 { let _ = Tensor::zeros(1, saescope::DType::F32, &Device::Cpu)?; }""")
code(r"""let with_custom: Vec<f32> = attribution_patching(&model, &tokens, &sae, &custom)?.at_pos(None)?;
let diff = reference.iter().zip(&with_custom).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
println!("a custom metric from an earlier cell gives the same attribution (max |diff| {diff:.1e}): {}", diff < 1e-4);""", contains=["gives the same attribution (max |diff|", ": true"])
code(r"""let mut all_ok = true;
for (a, t) in trainers.iter_mut() {
    let r = t.fit(&mut source);
    println!("{a:10} {:?}", r.as_ref().map(|s| s.cfg().d_sae));
    all_ok &= r.is_ok();
}
println!("every architecture trains in a later cell: {all_ok}");""", contains=["every architecture trains in a later cell: true"])

_nb.write(sys.argv[1])
