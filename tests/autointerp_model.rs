//! Gathering autointerp examples on SmolLM2 with the shipped SAE, and one latent explained and
//! scored by the offline backend (SmolLM2-135M-Instruct itself).
use saescope::analysis::autointerp::{
    gather_records, run_autointerp, AutointerpOptions, GatherOptions, ScoreKind,
};
use saescope::prelude::*;

fn setup() -> (HookedModel, Sae, Tensor) {
    let model = HookedModel::from_pretrained("smollm2").unwrap();
    let sae = Sae::shipped().unwrap();
    let tokens = token_rows(model.tokenizer().unwrap(), "default", 24, 96, Some(3)).unwrap();
    (model, sae, tokens)
}

fn small() -> GatherOptions {
    GatherOptions {
        n_explain: 5,
        n_test: 10,
        n_not_active: 6,
        ..Default::default()
    }
}

/// The latents by how often they fire in `tokens`, most often first.
fn by_frequency(acts: &Tensor) -> Vec<usize> {
    let fired = acts.gt(0f32).unwrap().to_dtype(DType::F32).unwrap();
    let freq: Vec<f32> = fired.sum((0, 1)).unwrap().to_vec1().unwrap();
    let mut order: Vec<usize> = (0..freq.len()).collect();
    order.sort_by(|&a, &b| freq[b].total_cmp(&freq[a]));
    order
}

#[test]
fn records_hold_the_latents_windows() {
    let (model, sae, tokens) = setup();
    let acts = sae_acts(&model, tokens.clone(), &sae).unwrap();
    let order = by_frequency(&acts);
    let latents = [order[20], order[40]];
    let recs = gather_records(&model, &sae, &tokens, &latents, &small()).unwrap();
    assert_eq!(recs.len(), 2);
    for (r, &l) in recs.iter().zip(&latents) {
        assert_eq!(r.latent, l);
        assert_eq!(r.module, "blocks.15.hook_resid_post");
        assert_eq!(r.name(), format!("blocks.15.hook_resid_post_latent{l}"));
        assert!(r.n_windows >= 15, "latent {l}: {} windows", r.n_windows);
        // The strongest activation is the latent's largest outside special tokens.
        let col: Vec<f32> = acts
            .i((.., 1.., l))
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let max = col.iter().copied().fold(0f32, f32::max);
        assert!(
            (r.max_activation - max).abs() < 1e-4 * max.max(1.0),
            "{} vs {max}",
            r.max_activation
        );
        assert_eq!(r.explain.len(), 5);
        for w in r.explain.windows(2) {
            assert!(w[0].max_act() >= w[1].max_act());
        }
        for ex in &r.explain {
            assert_eq!(ex.str_tokens.len(), 32);
            assert!((ex.act_threshold - 0.1 * r.max_activation).abs() < 1e-6);
        }
        // The top window has its peak where delphi centres it (unless it sits near a row edge).
        let top = &r.explain[0];
        let peak = (0..32)
            .max_by(|&a, &b| top.acts[a].total_cmp(&top.acts[b]))
            .unwrap();
        assert!(peak <= 24, "peak at {peak}");
        assert_eq!(r.test.len(), 10);
        assert!(r
            .test
            .iter()
            .all(|q| q.example.max_act() > 0.0 && q.quantile < 10));
        assert_eq!(r.not_active.len(), 6);
        assert!(r
            .not_active
            .iter()
            .all(|e| e.acts.iter().all(|&a| a == 0.0)));
    }
    // The same seed, the same records.
    let again = gather_records(&model, &sae, &tokens, &latents, &small()).unwrap();
    assert_eq!(again, recs);
}

#[test]
fn bad_requests_name_the_fix() {
    let (model, sae, tokens) = setup();
    let err = |o: &GatherOptions, l: &[usize]| {
        gather_records(&model, &sae, &tokens, l, o)
            .unwrap_err()
            .to_string()
    };
    assert!(err(&small(), &[4608]).contains("out of range"));
    let long = GatherOptions {
        window: 200,
        ..small()
    };
    assert!(err(&long, &[1]).contains("smaller GatherOptions::window"));
    let few = GatherOptions {
        n_test: 5,
        ..small()
    };
    assert!(err(&few, &[1]).contains("at least n_quantiles"));
}

#[test]
fn the_offline_backend_explains_and_scores_a_latent() {
    let (model, sae, tokens) = setup();
    let latent = by_frequency(&sae_acts(&model, tokens.clone(), &sae).unwrap())[30];
    let recs = gather_records(&model, &sae, &tokens, &[latent], &small()).unwrap();
    let chat = LocalChat::new(model.clone()).unwrap();
    let opts = AutointerpOptions {
        min_examples: 10,
        scorers: vec![ScoreKind::Detection],
        score_prefill: "[".into(),
        progress: false,
        ..Default::default()
    };
    let rep = run_autointerp(&recs, &chat, &chat, &opts).unwrap();
    assert_eq!(rep.results.len(), 1, "{rep}");
    let r = &rep.results[0];
    assert!(!r.explanation.is_empty());
    let m = r.metrics(ScoreKind::Detection);
    assert_eq!(m.n + m.failed, 16);
    println!("{rep}");
}
