//! The course's first cell and the snippets a SAELens user writes, on the prelude only:
//! prompt strings straight into the SAELens-named entry points, `topk` on a tensor, `cache.get`
//! with a TL name, the run builder and the intervention hooks.
use saescope::prelude::*;

mod common;
use common::tensors::max_abs_diff;

/// SmolLM2 (scripts/fetch_model.sh) and the shipped SAE.
fn setup() -> Option<(HookedModel, Sae)> {
    Some((
        HookedModel::from_pretrained("smollm2").unwrap(),
        Sae::shipped().unwrap(),
    ))
}

#[test]
fn first_cell_prints_the_top_five_latents() {
    let Some((model, sae)) = setup() else { return };
    let (_, cache) = model
        .run_with_cache_with_saes("The Golden Gate Bridge", &[&sae])
        .unwrap();
    let acts = cache
        .get("blocks.15.hook_resid_post.hook_sae_acts_post")
        .unwrap();
    let last = acts.i((0, acts.dim(1).unwrap() - 1)).unwrap();
    let top = last.topk(5).unwrap();
    let ids: Vec<u32> = top.indices.to_vec1().unwrap();
    let vals: Vec<f32> = top.values.to_vec1().unwrap();
    // The same five as sorting every activation by hand, largest first.
    let mut all: Vec<(usize, f32)> = last.to_f32_vec().unwrap().into_iter().enumerate().collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1));
    assert_eq!(ids.len(), 5);
    let flat = last.to_f32_vec().unwrap();
    for (k, (_, v)) in all.iter().take(5).enumerate() {
        assert_eq!(vals[k], *v, "value {k}");
        assert_eq!(flat[ids[k] as usize], *v, "index {k}");
    }
    assert!(vals[0] > 0.0, "a TopK SAE has active latents: {vals:?}");
    // The Debug print a notebook shows lists the ids.
    let shown = format!("{:?}", top.indices);
    assert!(shown.contains(&ids[0].to_string()), "{shown}");
    // The typed hook point names the same activation.
    assert_eq!(
        sae.hook_point(SaeHook::ActsPost),
        "blocks.15.hook_resid_post.hook_sae_acts_post"
    );
}

#[test]
fn prompts_strings_batches_and_tokens_give_the_same_logits() {
    let Some((model, sae)) = setup() else { return };
    let p = "The capital of France is";
    let from_text = model.run_with_saes(p, &[&sae]).unwrap();
    let toks = model.to_tokens(p).unwrap();
    let from_tokens = model.run_with_saes(&toks, &[&sae]).unwrap();
    assert_eq!(
        from_text.to_f32_vec().unwrap(),
        from_tokens.to_f32_vec().unwrap()
    );
    // Two prompts, right-padded: each row's real positions equal its own run.
    let q = "Hello";
    let both = model.run_with_saes([p, q], &[&sae]).unwrap();
    let alone = model.run_with_saes(q, &[&sae]).unwrap();
    let n = alone.dim(1).unwrap();
    let row = both.i((1, 0..n)).unwrap();
    let d = max_abs_diff(&row, &alone.i(0).unwrap());
    assert!(d < 1e-3, "padded row differs by {d}");
    // The error term gives the clean logits.
    let clean = model.run(p).logits().unwrap();
    let with_err = model.run(p).saes(&[&sae]).error_term().logits().unwrap();
    let d = max_abs_diff(&clean, &with_err);
    assert!(d < 1e-3, "error term: {d}");
}

#[test]
fn intervention_hooks_do_what_their_names_say() {
    let Some((model, sae)) = setup() else { return };
    let p = "The Golden Gate Bridge";
    let acts_name = sae.hook_point(SaeHook::ActsPost);
    let (_, cache) = model.run_with_cache_with_saes(p, &[&sae]).unwrap();
    let acts = cache.get(acts_name.as_str()).unwrap();
    let top: Vec<u32> = acts
        .last_pos()
        .unwrap()
        .i(0)
        .unwrap()
        .topk(2)
        .unwrap()
        .indices
        .to_vec1()
        .unwrap();
    let latents: Vec<usize> = top.iter().map(|&i| i as usize).collect();
    // Zero the two latents at the last position: they read 0 there, nothing else changes.
    let hooks = Hooks::new().ablate_latents(&sae, Pos::Last, &latents, Ablation::Zero);
    let (_, ab) = model
        .run(p)
        .saes(&[&sae])
        .hooks(hooks)
        .names(acts_name.as_str())
        .cache()
        .unwrap();
    let ab = ab.get(acts_name.as_str()).unwrap();
    let last = ab.last_pos().unwrap().i(0).unwrap().to_f32_vec().unwrap();
    assert_eq!((last[latents[0]], last[latents[1]]), (0.0, 0.0));
    // Position 0 is untouched (up to the fused kernels a names filter allows).
    let before = acts.i((0, 0)).unwrap().to_f32_vec().unwrap();
    let after = ab.i((0, 0)).unwrap().to_f32_vec().unwrap();
    let worst = before
        .iter()
        .zip(&after)
        .map(|(a, b)| (a - b).abs() / a.abs().max(1.0))
        .fold(0f32, f32::max);
    assert!(worst < 1e-4, "position 0 changed by {worst}");
    // Set a latent to a value.
    let hooks = Hooks::new().set_latents(&sae, 1, &[7], 3.5);
    let (_, c) = model.run(p).saes(&[&sae]).hooks(hooks).cache().unwrap();
    assert_eq!(
        c.get(acts_name.as_str())
            .unwrap()
            .i((0, 1, 7))
            .unwrap()
            .to_scalar::<f32>()
            .unwrap(),
        3.5
    );
    // Steering adds coeff · vector at the chosen positions only.
    let v = sae.w_dec().i(latents[0]).unwrap();
    let hooks = Hooks::new().steer("blocks.15.hook_resid_post", &v, 2.0, Pos::Last);
    let (_, c0) = model
        .run(p)
        .names("blocks.15.hook_resid_post")
        .cache()
        .unwrap();
    let (_, c1) = model
        .run(p)
        .hooks(hooks)
        .names("blocks.15.hook_resid_post")
        .cache()
        .unwrap();
    let diff = (c1.get("blocks.15.hook_resid_post").unwrap()
        - c0.get("blocks.15.hook_resid_post").unwrap())
    .unwrap();
    let want = (v.clone() * 2.0).unwrap().to_f32_vec().unwrap();
    let got = diff.last_pos().unwrap().i(0).unwrap().to_f32_vec().unwrap();
    for (a, b) in got.iter().zip(&want) {
        assert!((a - b).abs() < 1e-4);
    }
    assert!(diff
        .i((0, 0))
        .unwrap()
        .to_f32_vec()
        .unwrap()
        .iter()
        .all(|&x| x == 0.0));
    // Patching the clean activation into a corrupted run restores the clean logits.
    let (clean_logits, clean) = model.run_with_cache(p).unwrap();
    let corrupt = model.to_tokens("The Golden Gate Tower").unwrap();
    assert_eq!(
        corrupt.dim(1).unwrap(),
        model.to_tokens(p).unwrap().dim(1).unwrap()
    );
    let src = clean.get(("resid_pre", 29)).unwrap();
    let hooks = Hooks::new().patch(("resid_pre", 29), src, Pos::All);
    let patched = model.run(&corrupt).hooks(hooks).logits().unwrap();
    let d = max_abs_diff(&patched, &clean_logits);
    assert!(d < 1e-3, "patched logits differ by {d}");
    // Zeroing a head zeroes its hook_z slice.
    let hooks = Hooks::new().zero_head(3, 4);
    let (_, c) = model.run(p).hooks(hooks).names(("z", 3)).cache().unwrap();
    let z = c.get(("z", 3)).unwrap();
    assert!(z
        .i((.., .., 4))
        .unwrap()
        .to_f32_vec()
        .unwrap()
        .iter()
        .all(|&x| x == 0.0));
    assert!(z
        .i((.., .., 3))
        .unwrap()
        .to_f32_vec()
        .unwrap()
        .iter()
        .any(|&x| x != 0.0));
    // Out-of-range requests are errors that say what is wrong.
    let e = model
        .run(p)
        .saes(&[&sae])
        .hooks(Hooks::new().ablate_latents(&sae, 99, &[0], Ablation::Zero))
        .logits()
        .unwrap_err();
    assert!(e.to_string().contains("position 99"), "{e}");
}

#[test]
fn start_and_stop_at_layer_compose_to_the_full_pass() {
    let Some((model, _)) = setup() else { return };
    let p = "The capital of France is";
    let full = model.run(p).logits().unwrap();
    let mid = model.run(p).stop_at_layer(10).logits().unwrap();
    let rest = model.run(&mid).start_at_layer(10).logits().unwrap();
    let d = max_abs_diff(&full, &rest);
    assert!(d < 1e-3, "{d}");
    // SAEs splice into a residual-stream run too; with no tokens no position is excluded.
    let sae = Sae::shipped().unwrap();
    let with_sae = model.run(p).saes(&[&sae]).logits().unwrap();
    let rest_sae = model
        .run(&mid)
        .start_at_layer(10)
        .saes(&[&sae])
        .exclude_special_tokens(SpecialTokens::All)
        .logits()
        .unwrap();
    let bos_excluded = model
        .run(p)
        .saes(&[&sae])
        .exclude_special_tokens(SpecialTokens::All)
        .logits()
        .unwrap();
    assert!(max_abs_diff(&with_sae, &rest_sae) < 1e-3);
    assert!(max_abs_diff(&bos_excluded, &rest_sae) > 1e-3);
    let e = model.run(p).start_at_layer(3).logits().unwrap_err();
    assert!(e.to_string().contains("residual stream"), "{e}");
}
