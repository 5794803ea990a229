//! Feature dashboards from other sources and views: an attention (`hook_z`) SAE with direct
//! feature attribution, the activation-cache path against the token path, and the prompt-centric
//! view, against brute-force computations in `dashboard_support`.
use saescope::analysis::dashboard::{
    feature_dashboards_with, prompt_centric, Correlations, DashboardConfig, DashboardInput,
    FeatureDashboard, LatentSelection, RankBy,
};
use saescope::{Device, HookedModel, IndexOp, Tensor};

mod dashboard_support;
use dashboard_support as bf;
use dashboard_support::fixture::{cfg, fix, CTX};

#[test]
fn attention_sae_dfa_and_logits_match_an_independent_computation() {
    let f = fix();
    let sae = bf::hook_z_sae();
    let rows = Tensor::from_vec(
        f.ids[..8].iter().flatten().copied().collect::<Vec<u32>>(),
        (8, CTX),
        &Device::Cpu,
    )
    .unwrap();
    let c = DashboardConfig {
        correlations: Correlations::AmongSelected,
        top_group_size: 4,
        n_quantiles: 2,
        ..cfg()
    };
    let dash = feature_dashboards_with(
        &f.model,
        &sae,
        DashboardInput::Tokens(rows),
        LatentSelection::Indices(vec![0, 3]),
        &c,
    )
    .unwrap();
    let w_o = f.model.w_o(2).unwrap().reshape((576, 576)).unwrap();
    let mut checked = 0;
    for d in &dash.features {
        // feature_resid_dir = W_dec[i] @ W_O[2] (flattened heads).
        let dir = sae
            .w_dec()
            .i(d.latent)
            .unwrap()
            .unsqueeze(0)
            .unwrap()
            .matmul(&w_o)
            .unwrap();
        let logits = bf::row_matmul(&dir, f.model.w_u());
        let got: Vec<u32> = d.top_logits.iter().map(|t| t.id).collect();
        assert_eq!(got, bf::top_ids(&logits, 10));
        let w = sae.w_enc().i((.., d.latent)).unwrap().contiguous().unwrap();
        assert!(!d.top_examples.examples.is_empty());
        for e in &d.top_examples.examples {
            let dfa = e.dfa.as_ref().expect("hook_z SAEs get DFA");
            let toks = Tensor::from_vec(f.ids[e.row].clone(), (1, CTX), &Device::Cpu).unwrap();
            let names = vec![
                "blocks.2.attn.hook_v",
                "blocks.2.attn.hook_pattern",
                "blocks.2.attn.hook_z",
            ];
            let (_, cache) = f
                .model
                .run(&toks)
                .names(names)
                .stop_at_layer(3)
                .cache()
                .unwrap();
            let want = bf::dfa_reference(
                &cache.get("blocks.2.attn.hook_v").unwrap(),
                &cache.get("blocks.2.attn.hook_pattern").unwrap(),
                &w,
                e.pos,
            );
            for t in &dfa.tokens {
                assert!(t.pos <= e.pos);
                assert!(
                    (t.act - want[t.pos]).abs() < 1e-3 * want[t.pos].abs().max(1.0),
                    "dfa {} vs {}",
                    t.act,
                    want[t.pos]
                );
            }
            // The attributions sum to z[dest] · W_enc[:, i], which is the activation here
            // (b_enc = 0, no b_dec on the input, ReLU active).
            let z = cache
                .get("blocks.2.attn.hook_z")
                .unwrap()
                .i((0, e.pos))
                .unwrap()
                .flatten_all()
                .unwrap();
            let zw: f32 = (z * &w).unwrap().sum_all().unwrap().to_scalar().unwrap();
            assert!((dfa.total - zw).abs() < 1e-3 * zw.abs().max(1.0));
            assert!((e.act - zw).abs() < 1e-3 * zw.abs().max(1.0));
            let best = (0..=e.pos)
                .max_by(|&a, &b| want[a].total_cmp(&want[b]))
                .unwrap();
            assert_eq!(dfa.max_pos, best);
            checked += 1;
        }
        // Loss effect of an attention latent: its output through W_O, removed from the final
        // residual stream.
        let e = &d.top_examples.examples[0];
        let t = &e.tokens[e.center_index()];
        let (want, _) = bf::ablation_delta(
            &f.model,
            &f.ids[e.row],
            t.pos,
            t.act,
            &dir.squeeze(0).unwrap(),
        );
        assert!((t.next_logprob_delta.unwrap() - want).abs() < 2e-3);
    }
    assert!(checked >= 4);
}

#[test]
fn activation_cache_scan_equals_the_token_scan() {
    use saescope::train::act_cache::{cache_activations, CacheJob};
    use saescope::train::activations::ActivationStoreConfig;
    let f = fix();
    let dir = tempfile::tempdir().unwrap();
    let kept = f.scanned.iter().filter(|&&s| s).count() as u64;
    let store = ActivationStoreConfig {
        hook_name: "blocks.15.hook_resid_post".into(),
        dataset_path: "default".into(),
        context_size: CTX,
        store_batch_size_prompts: 4,
        exclude_special_tokens: saescope::SpecialTokens::Structural,
        ..Default::default()
    };
    let job = CacheJob {
        hooks: vec![(store.hook_name.clone(), None)],
        n_tokens: kept,
        out: dir.path().to_path_buf(),
        shard_tokens: 300,
        model_name: "smollm2".into(),
    };
    let model = std::sync::Arc::new(HookedModel::from_pretrained("smollm2").unwrap());
    cache_activations(model, &store, &job, &Default::default(), &mut |_| {}).unwrap();
    let input = DashboardInput::ActCache {
        dir: dir.path().to_path_buf(),
        max_tokens: None,
    };
    let sel = LatentSelection::Indices(f.latents[..3].to_vec());
    let cached = feature_dashboards_with(&f.model, &f.sae, &input, &sel, &cfg()).unwrap();
    assert_eq!(cached.n_tokens, f.dash.n_tokens);
    for c in &cached.features {
        let t = f.dash.get(c.latent).unwrap();
        assert_eq!(c.stats.n_active, t.stats.n_active);
        assert!((c.stats.max - t.stats.max).abs() < 1e-3);
        let loc = |d: &FeatureDashboard| -> Vec<(usize, usize)> {
            d.top_examples
                .examples
                .iter()
                .map(|e| (e.row, e.pos))
                .collect()
        };
        assert_eq!(loc(c), loc(t));
        let ids = |d: &FeatureDashboard| -> Vec<Vec<u32>> {
            d.top_examples
                .examples
                .iter()
                .map(|e| e.tokens.iter().map(|t| t.id).collect())
                .collect()
        };
        assert_eq!(ids(c), ids(t));
        // Loss effects from the cached rows (only the blocks after the hook are run) equal the
        // full passes' of the token scan.
        for (ec, et) in c.top_examples.examples.iter().zip(&t.top_examples.examples) {
            for (a, b) in ec.tokens.iter().zip(&et.tokens) {
                assert!((a.act - b.act).abs() < 1e-3 * b.act.max(1.0));
                match (a.next_logprob_delta, b.next_logprob_delta) {
                    (Some(x), Some(y)) => assert!((x - y).abs() < 1e-3, "{x} vs {y}"),
                    (x, y) => assert_eq!(x.is_some(), y.is_some()),
                }
            }
        }
        assert_eq!(
            c.correlated_latents
                .iter()
                .map(|x| x.index)
                .collect::<Vec<_>>(),
            t.correlated_latents
                .iter()
                .map(|x| x.index)
                .collect::<Vec<_>>()
        );
    }
    // The wrong SAE for a cache is refused with the fix in the message.
    let err = feature_dashboards_with(
        &f.model,
        &bf::hook_z_sae(),
        &input,
        LatentSelection::Indices(vec![0]),
        &cfg(),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("holds `blocks.15.hook_resid_post`"),
        "{err}"
    );
}

#[test]
fn the_shipped_cache_rows_are_rebuilt_from_its_dataset() {
    let f = fix();
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/cache/acts/smollm2-l15-2m");
    if !dir.join("manifest.json").exists() {
        eprintln!(
            "skipping: {} is absent (scripts/train_default_sae.sh makes it)",
            dir.display()
        );
        return;
    }
    let input = DashboardInput::ActCache {
        dir,
        max_tokens: Some(3000),
    };
    let c = DashboardConfig {
        loss_effect: false,
        correlations: Correlations::None,
        ..cfg()
    };
    let d = feature_dashboards_with(
        &f.model,
        &f.sae,
        &input,
        &LatentSelection::Top {
            n: 2,
            by: RankBy::Density,
        },
        &c,
    )
    .unwrap();
    assert_eq!(d.n_tokens, 3000);
    assert_eq!(d.features.len(), 2);
    assert!(d.features[0].stats.n_active >= d.features[1].stats.n_active);
    assert!(!d.features[0].top_examples.examples.is_empty());
}

#[test]
fn prompt_centric_view_ranks_latents_per_token() {
    let f = fix();
    let prompt = "def get(self, key):\n    return self.data[key]";
    let view = prompt_centric(&f.model, &f.sae, prompt, Some(&f.dash), 5).unwrap();
    let ids: Vec<u32> = f
        .model
        .to_tokens(prompt)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let acts = bf::dense_acts(&f.model, &f.sae, std::slice::from_ref(&ids), 1);
    assert_eq!(view.tokens.len(), ids.len());
    let mut checked_loss = 0;
    for (t, pt) in view.tokens.iter().enumerate() {
        assert_eq!(pt.id, ids[t]);
        if t == 0 {
            // BOS: left out, as in the dashboards' scan.
            assert!(pt.by_act.is_empty() && pt.by_loss_effect.is_empty());
            continue;
        }
        let n_active = acts[t].iter().filter(|&&a| a > 0.0).count();
        let want = bf::top_ids(&acts[t], 5.min(n_active));
        let got: Vec<u32> = pt.by_act.iter().map(|l| l.latent as u32).collect();
        assert_eq!(got, want, "token {t}");
        for l in &pt.by_quantile {
            assert!(f.latents.contains(&l.latent) && (0.0..=1.0).contains(&l.score));
        }
        assert!(pt
            .by_loss_effect
            .windows(2)
            .all(|w| w[0].score <= w[1].score));
        if t + 1 == ids.len() {
            assert!(pt.by_loss_effect.is_empty());
        } else if let Some(l) = pt.by_loss_effect.first().filter(|_| t % 4 == 1) {
            let dir = f.sae.w_dec().i(l.latent).unwrap();
            let (want, _) = bf::ablation_delta(&f.model, &ids, t, l.act, &dir);
            assert!((l.score - want).abs() < 2e-3, "{} vs {want}", l.score);
            checked_loss += 1;
        }
    }
    assert!(checked_loss >= 2);
    assert!(view.to_html().as_str().contains("act quantile"));
}
