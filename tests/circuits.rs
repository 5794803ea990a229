//! Latent gradients (ARENA [1.4.2] §1) against ARENA's `torch.func.jacrev` reference
//! (scripts/make_circuit_goldens.py → tests/fixtures/circuits/) and against finite differences.
use saescope::analysis::circuits::{
    latent_to_latent_gradients, latent_to_latent_gradients_attn, latent_to_latent_gradients_with,
    latent_to_logit_gradients, token_to_latent_gradients, GradientOptions, LatentGradients,
    SparseActs,
};
use saescope::prelude::*;
use std::collections::HashMap;
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn golden(name: &str) -> HashMap<String, Tensor> {
    let p = fixtures().join("circuits").join(name);
    candle_core::safetensors::load(&p, &Device::Cpu).unwrap()
}

fn tiny() -> HookedModel {
    HookedModel::from_pretrained(fixtures().join("tiny-llama").to_str().unwrap()).unwrap()
}

fn tiny_sae(name: &str) -> Sae {
    Sae::load(&fixtures().join("circuits/saes").join(name)).unwrap()
}

fn idx(g: &HashMap<String, Tensor>, key: &str) -> Vec<Vec<usize>> {
    g[key]
        .to_vec2::<i64>()
        .unwrap()
        .into_iter()
        .map(|r| r.into_iter().map(|v| v as usize).collect())
        .collect()
}

fn vals(g: &HashMap<String, Tensor>, key: &str) -> Vec<f32> {
    g[key].to_vec1::<f32>().unwrap()
}

fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let t = tol * (1.0 + y.abs());
        assert!((x - y).abs() <= t, "{what}[{i}]: {x} vs {y} (tol {t})");
    }
}

fn check_sparse(ours: &SparseActs, g: &HashMap<String, Tensor>, key: &str) {
    assert_eq!(
        ours.indices,
        idx(g, &format!("{key}_idx")),
        "{key}: active set differs"
    );
    close(&ours.values, &vals(g, &format!("{key}_val")), 1e-4, key);
}

/// Compare one result with the golden entries `<p>_*`: the active sets, the values and the
/// Jacobian (within 1e-4 of its largest entry).
fn check(r: &LatentGradients, g: &HashMap<String, Tensor>, p: &str, inputs_are_latents: bool) {
    if inputs_are_latents {
        check_sparse(&r.inputs, g, &format!("{p}_in"));
    }
    check_sparse(&r.outputs, g, &format!("{p}_out"));
    check_sparse(&r.clean_outputs, g, &format!("{p}_clean_out"));
    let want = &g[&format!("{p}_jac")];
    assert_eq!(r.gradients.dims(), want.dims(), "{p}: Jacobian shape");
    let scale = want
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let diff = (&r.gradients - want)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(
        diff <= 1e-4 * scale.max(1.0),
        "{p}: Jacobian differs from jacrev's by {diff} (largest entry {scale})"
    );
    assert_eq!(r.input_labels.len(), r.gradients.dim(1).unwrap());
    assert_eq!(r.output_labels.len(), r.gradients.dim(0).unwrap());
    assert!(r.outputs_per_sec > 0.0);
}

#[test]
fn tiny_latent_to_latent_matches_jacrev() {
    let g = golden("tiny.safetensors");
    let model = tiny();
    let (from, to) = (tiny_sae("tiny_resid0"), tiny_sae("tiny_resid1"));
    let toks = g["l2l_tokens"].to_dtype(DType::U32).unwrap();
    // Batch sizes that do and do not divide the number of outputs give the same Jacobian.
    for batch in [32, 5] {
        let opts = GradientOptions { batch_size: batch };
        let r = latent_to_latent_gradients_with(&model, &toks, &from, &to, &opts).unwrap();
        check(&r, &g, "l2l", true);
    }
    let r = latent_to_latent_gradients(&model, &toks, &from, &to).unwrap();
    assert!(r.heatmap().unwrap().as_str().contains("<svg"));
    // The strongest sub-Jacobian is a sub-matrix, with its labels.
    let top = r.strongest(6, 4).unwrap();
    assert_eq!(top.gradients.dims(), [4, 6]);
    let pos = |v: &[String], l: &String| v.iter().position(|x| x == l).unwrap();
    for (o, ol) in top.output_labels.iter().enumerate() {
        for (i, il) in top.input_labels.iter().enumerate() {
            let want = r
                .get(pos(&r.output_labels, ol), pos(&r.input_labels, il))
                .unwrap();
            assert_eq!(top.get(o, i).unwrap(), want);
        }
    }
    assert!(top.heatmap().unwrap().as_str().contains("<svg"));
    let edges = r.top_edges(3).unwrap();
    assert!(edges[0].2.abs() >= edges[2].2.abs());
    // Without BOS: no position-0 entries remain, the others keep their gradients.
    let nb = r.without_bos().unwrap();
    assert!(nb.inputs.indices.iter().all(|i| i[1] != 0));
    assert!(nb.outputs.indices.iter().all(|i| i[1] != 0));
    let n_in = r.inputs.indices.iter().filter(|i| i[1] != 0).count();
    let n_out = r.outputs.indices.iter().filter(|i| i[1] != 0).count();
    assert_eq!(nb.gradients.dims(), [n_out, n_in]);
    let (il, ol) = (&nb.input_labels[0], &nb.output_labels[0]);
    let want = r
        .get(pos(&r.output_labels, ol), pos(&r.input_labels, il))
        .unwrap();
    assert_eq!(nb.get(0, 0).unwrap(), want);
}

#[test]
fn tiny_attention_sae_gradients_match_jacrev() {
    let g = golden("tiny.safetensors");
    let model = tiny();
    let toks = g["attn_tokens"].to_dtype(DType::U32).unwrap();
    let r =
        latent_to_latent_gradients_attn(&model, &toks, &tiny_sae("tiny_z0"), &tiny_sae("tiny_z1"))
            .unwrap();
    check(&r, &g, "attn", true);
}

#[test]
fn tiny_token_and_logit_gradients_match_jacrev() {
    let g = golden("tiny.safetensors");
    let model = tiny();
    let toks = g["t2l_tokens"].to_dtype(DType::U32).unwrap();
    let r = token_to_latent_gradients(&model, &toks, &tiny_sae("tiny_resid1")).unwrap();
    check(&r, &g, "t2l", false);
    let toks = g["l2logit_tokens"].to_dtype(DType::U32).unwrap();
    let r = latent_to_logit_gradients(&model, &toks, &tiny_sae("tiny_resid0"), 5).unwrap();
    check(&r, &g, "l2logit", true);
}

/// Central differences of the recomputed outputs for every 7th input (f32, ε = 0.01).
#[test]
fn tiny_latent_to_latent_matches_finite_differences() {
    let model = tiny();
    let (from, to) = (tiny_sae("tiny_resid0"), tiny_sae("tiny_resid1"));
    let toks = Tensor::new(&[[0u32, 17, 250, 3, 99, 42, 7]], &Device::Cpu).unwrap();
    let r = latent_to_latent_gradients(&model, &toks, &from, &to).unwrap();
    // The later SAE's latents as a function of the earlier SAE's latents (dense).
    let out_of = |dense: &Tensor| -> Vec<f32> {
        let recon = from.decode(dense).unwrap();
        let mid = model
            .run(recon)
            .start_at_layer(1)
            .stop_at_layer(2)
            .logits()
            .unwrap();
        let f = to
            .encode(&mid)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let flat: Vec<usize> = r.outputs.flat_indices();
        flat.iter().map(|&i| f[i]).collect()
    };
    let base = r.inputs.to_dense(&Device::Cpu).unwrap();
    let eps = 1e-2f32;
    let in_flat = r.inputs.flat_indices();
    let mut checked = 0;
    let mut worst = 0f32;
    for (i, &fi) in in_flat.iter().enumerate().step_by(7) {
        let bump = |e: f32| {
            let mut v = base.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            v[fi] += e;
            Tensor::from_vec(v, base.shape(), &Device::Cpu).unwrap()
        };
        let (up, down) = (out_of(&bump(eps)), out_of(&bump(-eps)));
        for o in 0..r.outputs.len() {
            let fd = (up[o] - down[o]) / (2.0 * eps);
            let g = r.get(o, i).unwrap();
            worst = worst.max((fd - g).abs());
            checked += 1;
        }
    }
    assert!(checked > 100);
    assert!(worst < 1e-4, "finite differences differ by up to {worst}");
    eprintln!("finite differences: {checked} entries, worst |fd − grad| = {worst:.2e}");
}

#[test]
fn bad_sae_order_and_batch_are_errors() {
    let model = tiny();
    let (a, b) = (tiny_sae("tiny_resid0"), tiny_sae("tiny_resid1"));
    let toks = Tensor::new(&[[0u32, 5, 6]], &Device::Cpu).unwrap();
    let e = latent_to_latent_gradients(&model, &toks, &b, &a)
        .unwrap_err()
        .to_string();
    assert!(e.contains("swap the SAEs"), "{e}");
    let e = latent_to_latent_gradients_attn(&model, &toks, &a, &b)
        .unwrap_err()
        .to_string();
    assert!(e.contains("hook_z"), "{e}");
    let opts = GradientOptions { batch_size: 0 };
    let e = latent_to_latent_gradients_with(&model, &toks, &a, &b, &opts)
        .unwrap_err()
        .to_string();
    assert!(e.contains("batch"), "{e}");
}

#[test]
fn smollm2_latent_gradients_match_jacrev() {
    let dir = saescope::model::default_data_dir();
    if !dir.join("models").exists() {
        panic!("the SmolLM2 model is missing: run scripts/fetch_model.sh");
    }
    let g = golden("smollm2.safetensors");
    let model = HookedModel::from_pretrained("smollm2").unwrap();
    let shipped = Sae::shipped().unwrap();
    let l10 = Sae::load(&fixtures().join("sae/saes/smollm2_standard_l10")).unwrap();
    let toks = g["l2l_tokens"].to_dtype(DType::U32).unwrap();
    let r = latent_to_latent_gradients(&model, &toks, &l10, &shipped).unwrap();
    check(&r, &g, "l2l", true);
    eprintln!(
        "SmolLM2 L10 → L15: {} × {} Jacobian, {:.0} outputs/s",
        r.gradients.dim(0).unwrap(),
        r.gradients.dim(1).unwrap(),
        r.outputs_per_sec
    );
    let toks = g["l2logit_tokens"].to_dtype(DType::U32).unwrap();
    let r = latent_to_logit_gradients(&model, &toks, &shipped, 10).unwrap();
    check(&r, &g, "l2logit", true);
}

#[test]
fn transcoder_tools_match_arena() {
    use saescope::analysis::circuits::{
        de_embeddings, deembedding_table, extended_embedding, pullback, pullback_influence,
        TranscoderSet,
    };
    let g = golden("tiny.safetensors");
    let model = tiny();
    let tcs = TranscoderSet::load(fixtures().join("circuits/transcoders_tiny")).unwrap();
    let close_t = |a: &Tensor, b: &Tensor, what: &str| {
        let scale = b
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let d = (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(
            d <= 1e-4 * scale.max(1.0),
            "{what}: differs by {d} (scale {scale})"
        );
    };
    close_t(
        &de_embeddings(&model, tcs.layer(1), 7).unwrap(),
        &g["tools_deemb"],
        "de-embeddings",
    );
    close_t(
        &extended_embedding(&model).unwrap(),
        &g["tools_ext_emb"],
        "extended embedding",
    );
    let pb = pullback(tcs.layer(0), tcs.layer(1), 7).unwrap();
    close_t(&pb, &g["tools_pullback"], "pullback");
    let acts = Tensor::ones((3, 96), DType::F32, &Device::Cpu).unwrap();
    assert_eq!(pullback_influence(&acts, &pb).unwrap().dims(), [3, 96]);
    assert!(deembedding_table(&model, tcs.layer(1), 999, 5).is_err());
}
