//! Feature dashboards (`saescope::analysis::dashboard`): every component against a brute-force
//! computation in `dashboard_support` (dense activations of a small corpus slice, plain loops,
//! hook-based ablations), the activation-cache path against the token path, the HTML in headless
//! Chromium, the JSON export and the CLI.
use saescope::analysis::dashboard::{
    corpus_rows, feature_dashboards, prompt_centric, select::histc, Correlations, DashboardConfig,
    DashboardInput, Dashboards, FeatureDashboard, LatentSelection, RankBy,
};
use saescope::{Device, HookedModel, IndexOp, Sae, Tensor};
use std::sync::OnceLock;

mod dashboard_support;
use dashboard_support as bf;

const ROWS: usize = 16;
const CTX: usize = 64;

struct Fix {
    model: HookedModel,
    sae: Sae,
    ids: Vec<Vec<u32>>,
    /// Dense activations `[ROWS * CTX][d_sae]`.
    acts: Vec<Vec<f32>>,
    /// Whether each flat position is a scanned (non-special) token.
    scanned: Vec<bool>,
    latents: Vec<usize>,
    dash: Dashboards,
}

fn cfg() -> DashboardConfig {
    DashboardConfig {
        batch_size: 4,
        ..Default::default()
    }
}

fn fix() -> &'static Fix {
    static F: OnceLock<Fix> = OnceLock::new();
    F.get_or_init(|| {
        let model = HookedModel::from_pretrained("smollm2").unwrap();
        let sae = Sae::shipped().unwrap();
        let rows = corpus_rows(&model, "default", ROWS * CTX, CTX).unwrap();
        let ids: Vec<Vec<u32>> = rows.to_vec2().unwrap();
        let acts = bf::dense_acts(&model, &sae, &ids, 4);
        let special = bf::special_ids(&model);
        let scanned: Vec<bool> = ids.iter().flatten().map(|t| !special.contains(t)).collect();
        // Latents: the three most frequent, two rarer ones, and one that never fires here.
        let mut count = vec![0usize; sae.d_sae()];
        for (i, row) in acts.iter().enumerate() {
            if scanned[i] {
                for (j, &a) in row.iter().enumerate() {
                    count[j] += (a > 0.0) as usize;
                }
            }
        }
        let mut order: Vec<usize> = (0..sae.d_sae()).collect();
        order.sort_by(|&a, &b| count[b].cmp(&count[a]).then(a.cmp(&b)));
        let dead = (0..sae.d_sae()).find(|&j| count[j] == 0).unwrap();
        let latents = vec![order[0], order[1], order[2], order[60], order[300], dead];
        let dash = feature_dashboards(
            &model,
            &sae,
            &DashboardInput::Tokens(rows),
            &LatentSelection::Indices(latents.clone()),
            &cfg(),
        )
        .unwrap();
        Fix {
            model,
            sae,
            ids,
            acts,
            scanned,
            latents,
            dash,
        }
    })
}

/// The brute-force activation of `latent` at (row, pos).
fn act(f: &Fix, latent: usize, row: usize, pos: usize) -> f32 {
    f.acts[row * CTX + pos][latent]
}

fn eligible(pos: usize, len: usize) -> bool {
    pos > 5 && pos + 5 < len
}

#[test]
fn stats_and_activation_histogram_match_brute_force() {
    let f = fix();
    let n_scanned = f.scanned.iter().filter(|&&s| s).count() as u64;
    assert_eq!(f.dash.n_tokens, n_scanned);
    for d in &f.dash.features {
        let vals: Vec<f32> = (0..ROWS * CTX)
            .filter(|&i| f.scanned[i] && f.acts[i][d.latent] > 0.0)
            .map(|i| f.acts[i][d.latent])
            .collect();
        assert_eq!(d.stats.n_active, vals.len() as u64, "latent {}", d.latent);
        assert_eq!(d.stats.n_tokens, n_scanned);
        let max = vals.iter().fold(0f32, |m, &v| m.max(v));
        assert!(
            (d.stats.max - max).abs() <= 1e-4 * max.max(1.0),
            "max {} vs {max}",
            d.stats.max
        );
        assert!((d.stats.frac_nonzero - vals.len() as f64 / n_scanned as f64).abs() < 1e-12);
        // torch.histc: bin = floor((x - min) / (max - min) * n), the max in the last bin.
        assert_eq!(d.act_histogram.counts.len(), 50);
        assert_eq!(d.act_histogram.total(), vals.len() as u64);
        if vals.len() > 1 {
            let lo = vals.iter().fold(f32::INFINITY, |m, &v| m.min(v)) as f64;
            let mut want = vec![0i64; 50];
            for &v in &vals {
                let b = ((v as f64 - lo) / (max as f64 - lo) * 50.0).floor() as usize;
                want[b.min(49)] += 1;
            }
            let moved: i64 = want
                .iter()
                .zip(&d.act_histogram.counts)
                .map(|(a, &b)| (a - b as i64).abs())
                .sum();
            assert!(
                moved <= 2,
                "histogram {:?} vs {want:?}",
                d.act_histogram.counts
            );
            assert!((d.act_histogram.edges[0] as f64 - lo).abs() < 1e-4);
        }
    }
    // The dead latent has an empty dashboard, not an error.
    let dead = f.dash.get(f.latents[5]).unwrap();
    assert_eq!(dead.stats.n_active, 0);
    assert!(dead.top_examples.examples.is_empty() && dead.quantile_groups.is_empty());
}

#[test]
fn histc_of_known_values() {
    let h = histc(&[1.0, 2.0, 2.5, 3.0], 2);
    assert_eq!(h.edges, vec![1.0, 2.0, 3.0]);
    assert_eq!(h.counts, vec![1, 3]);
    assert_eq!(h.centers(), vec![1.5, 2.5]);
}

#[test]
fn top_examples_are_the_greedy_non_overlapping_maxima() {
    let f = fix();
    for d in &f.dash.features[..5] {
        // Brute force: eligible scanned positions by activation, greedy ±5 exclusion per row.
        let mut cands: Vec<(f32, usize, usize)> = Vec::new();
        for r in 0..ROWS {
            for p in 0..CTX {
                let a = act(f, d.latent, r, p);
                if a > 0.0 && f.scanned[r * CTX + p] && eligible(p, CTX) {
                    cands.push((a, r, p));
                }
            }
        }
        cands.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut want: Vec<(f32, usize, usize)> = Vec::new();
        for c in cands {
            if want.len() < 20 && !want.iter().any(|w| w.1 == c.1 && w.2.abs_diff(c.2) <= 5) {
                want.push(c);
            }
        }
        let got = &d.top_examples.examples;
        assert_eq!(got.len(), want.len(), "latent {}", d.latent);
        for (e, w) in got.iter().zip(&want) {
            assert!(
                (e.act - w.0).abs() < 1e-3 * w.0.max(1.0),
                "latent {}: {} vs {}",
                d.latent,
                e.act,
                w.0
            );
        }
        // Windows: the row's tokens and the brute-force activations.
        for e in got {
            assert_eq!(e.tokens.len(), 11);
            assert_eq!(e.tokens[e.center_index()].pos, e.pos);
            for t in &e.tokens {
                assert_eq!(t.id, f.ids[e.row][t.pos]);
                // Special tokens (left out of the scan) show 0.
                let want = if f.scanned[e.row * CTX + t.pos] {
                    act(f, d.latent, e.row, t.pos)
                } else {
                    0.0
                };
                assert!(
                    (t.act - want).abs() < 1e-3 * want.max(1.0),
                    "window act {} vs {want}",
                    t.act
                );
            }
        }
    }
}

#[test]
fn interval_groups_follow_sae_vis() {
    let f = fix();
    for d in &f.dash.features[..5] {
        let max = d.stats.max;
        assert_eq!(d.quantile_groups.len(), 10);
        let active: Vec<f32> = (0..ROWS * CTX)
            .filter(|&i| f.scanned[i] && f.acts[i][d.latent] > 0.0)
            .map(|i| f.acts[i][d.latent])
            .collect();
        for (k, g) in d.quantile_groups.iter().enumerate() {
            let i = 9 - k; // highest interval first
            let lo = if i == 0 { 1e-6 } else { max * i as f32 / 10.0 };
            let hi = max * (i + 1) as f32 / 10.0;
            assert!(
                (g.lower - lo).abs() < 1e-5 * max.max(1.0)
                    && (g.upper - hi).abs() < 1e-5 * max.max(1.0)
            );
            let n = active
                .iter()
                .filter(|&&a| a >= g.lower && a <= g.upper)
                .count();
            assert!(
                (g.n_in_range as i64 - n as i64).abs() <= 1,
                "interval {i}: {} vs {n}",
                g.n_in_range
            );
            assert!((g.share - g.n_in_range as f64 / active.len() as f64).abs() < 1e-12);
            let eligible_n = (0..ROWS * CTX)
                .filter(|&j| {
                    let a = f.acts[j][d.latent];
                    f.scanned[j] && a >= g.lower && a <= g.upper && eligible(j % CTX, CTX)
                })
                .count();
            assert!(
                g.examples.len() == eligible_n.min(5)
                    || (g.examples.len() as i64 - eligible_n.min(5) as i64).abs() <= 1
            );
            for e in &g.examples {
                assert!(e.act >= g.lower - 1e-4 && e.act <= g.upper + 1e-4);
                assert!(eligible(e.pos, CTX));
            }
        }
    }
}

#[test]
fn interval_examples_are_seeded() {
    let f = fix();
    let rows = Tensor::from_vec(
        f.ids.iter().flatten().copied().collect::<Vec<u32>>(),
        (ROWS, CTX),
        &Device::Cpu,
    )
    .unwrap();
    let run = |seed| {
        let c = DashboardConfig {
            seed,
            loss_effect: false,
            correlations: Correlations::None,
            ..cfg()
        };
        let sel = LatentSelection::Indices(vec![f.latents[0]]);
        feature_dashboards(
            &f.model,
            &f.sae,
            &DashboardInput::Tokens(rows.clone()),
            &sel,
            &c,
        )
        .unwrap()
        .features
        .remove(0)
    };
    let picks = |d: &FeatureDashboard| -> Vec<(usize, usize)> {
        d.quantile_groups
            .iter()
            .flat_map(|g| g.examples.iter().map(|e| (e.row, e.pos)))
            .collect()
    };
    let a = run(0);
    assert_eq!(picks(&a), picks(f.dash.get(f.latents[0]).unwrap()));
    assert_ne!(picks(&a), picks(&run(12345)));
}

#[test]
fn logits_alignment_and_correlations_match_brute_force() {
    let f = fix();
    let w_u = f.model.w_u();
    for d in &f.dash.features {
        let row = f.sae.w_dec().i(d.latent).unwrap().unsqueeze(0).unwrap();
        let logits = bf::row_matmul(&row, w_u);
        let want = bf::top_ids(&logits, 10);
        let got: Vec<u32> = d.top_logits.iter().map(|t| t.id).collect();
        assert_eq!(got, want, "latent {}", d.latent);
        for t in &d.top_logits {
            assert!((t.value - logits[t.id as usize]).abs() < 1e-4);
        }
        let neg: Vec<f32> = logits.iter().map(|v| -v).collect();
        let got: Vec<u32> = d.bottom_logits.iter().map(|t| t.id).collect();
        assert_eq!(got, bf::top_ids(&neg, 10));
        assert_eq!(d.logit_histogram.total(), logits.len() as u64);
        // Neuron alignment: largest |W_dec[i]| components and their share of the L1 norm.
        let dec: Vec<f32> = row.flatten_all().unwrap().to_vec1().unwrap();
        let abs: Vec<f32> = dec.iter().map(|v| v.abs()).collect();
        let l1: f32 = abs.iter().sum();
        for (n, &j) in d.neuron_alignment.iter().zip(&bf::top_ids(&abs, 3)) {
            assert_eq!(n.index, j as usize);
            assert_eq!(n.value, dec[j as usize]);
            assert!((n.frac_l1 - abs[j as usize] / l1).abs() < 1e-6);
        }
    }
    // Correlations vs every latent, over all scanned tokens (zeros included), self excluded.
    let cols: Vec<usize> = (0..ROWS * CTX).filter(|&i| f.scanned[i]).collect();
    let column = |j: usize| -> Vec<f64> { cols.iter().map(|&i| f.acts[i][j] as f64).collect() };
    for d in &f.dash.features[..3] {
        let x = column(d.latent);
        let mut all: Vec<(usize, f64)> = (0..f.sae.d_sae())
            .filter(|&j| j != d.latent)
            .map(|j| (j, bf::pearson(&x, &column(j))))
            .collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1));
        assert_eq!(d.correlated_latents.len(), 3);
        for (c, w) in d.correlated_latents.iter().zip(&all) {
            assert!(
                (c.pearson as f64 - w.1).abs() < 2e-3,
                "pearson {} vs {}",
                c.pearson,
                w.1
            );
            if (c.pearson as f64 - w.1).abs() < 1e-6 {
                continue;
            }
            assert_eq!(c.index, w.0);
        }
        let y = column(d.correlated_latents[0].index);
        let dot: f64 = x.iter().zip(&y).map(|(a, b)| a * b).sum();
        let cos = dot
            / ((x.iter().map(|a| a * a).sum::<f64>() * y.iter().map(|b| b * b).sum::<f64>())
                .sqrt()
                + 1e-6);
        assert!((d.correlated_latents[0].cosine as f64 - cos).abs() < 2e-3);
    }
}

#[test]
fn loss_effect_equals_a_hooked_ablation() {
    let f = fix();
    let mut checked = 0;
    for d in &f.dash.features[..3] {
        let dir = f.sae.w_dec().i(d.latent).unwrap();
        for e in d.top_examples.examples.iter().take(2) {
            for t in &e.tokens {
                let Some(delta) = t.next_logprob_delta else {
                    assert!(t.act == 0.0 || t.pos + 1 >= CTX);
                    continue;
                };
                let (want, clean) = bf::ablation_delta(&f.model, &f.ids[e.row], t.pos, t.act, &dir);
                assert!(
                    (delta - want).abs() < 2e-3,
                    "Δ {delta} vs {want} (latent {}, row {}, pos {})",
                    d.latent,
                    e.row,
                    t.pos
                );
                assert!((t.next_logprob.unwrap() - clean).abs() < 2e-3);
                // The largest boost is positive and the largest suppression negative, ordered.
                assert!(t.boosted.windows(2).all(|w| w[0].value >= w[1].value));
                assert!(t.suppressed.windows(2).all(|w| w[0].value <= w[1].value));
                assert_eq!(t.boosted.len(), 5);
                checked += 1;
            }
        }
    }
    assert!(checked >= 6, "only {checked} loss effects checked");
}

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
    let dash = feature_dashboards(
        &f.model,
        &sae,
        &DashboardInput::Tokens(rows),
        &LatentSelection::Indices(vec![0, 3]),
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
            let (_, cache) = f.model.run_with_cache(&toks, names, Some(3)).unwrap();
            let want = bf::dfa_reference(
                cache.get("blocks.2.attn.hook_v").unwrap(),
                cache.get("blocks.2.attn.hook_pattern").unwrap(),
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
    use saescope::train::activations::{ActivationStoreConfig, ExcludeSpecialTokens};
    let f = fix();
    let dir = tempfile::tempdir().unwrap();
    let kept = f.scanned.iter().filter(|&&s| s).count() as u64;
    let store = ActivationStoreConfig {
        hook_name: "blocks.15.hook_resid_post".into(),
        dataset_path: "default".into(),
        context_size: CTX,
        store_batch_size_prompts: 4,
        exclude_special_tokens: ExcludeSpecialTokens::All(true),
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
    let cached = feature_dashboards(&f.model, &f.sae, &input, &sel, &cfg()).unwrap();
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
    let err = feature_dashboards(
        &f.model,
        &bf::hook_z_sae(),
        &input,
        &LatentSelection::Indices(vec![0]),
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
    let d = feature_dashboards(
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

#[test]
fn neuronpedia_json_has_parallel_arrays_and_every_example() {
    let f = fix();
    let j = f.dash.to_neuronpedia_json();
    let feats = j["features"].as_array().unwrap();
    assert_eq!(feats.len(), f.latents.len());
    for (fj, d) in feats.iter().zip(&f.dash.features) {
        assert_eq!(fj["index"], d.latent);
        for k in ["freq_hist_data", "logits_hist_data"] {
            let h = fj[format!("{k}_bar_heights")].as_array().unwrap();
            let v = fj[format!("{k}_bar_values")].as_array().unwrap();
            assert_eq!(h.len(), v.len(), "{k}: heights and values must be parallel");
        }
        assert_eq!(fj["pos_str"].as_array().unwrap().len(), 10);
        assert_eq!(fj["maxActApprox"].as_f64().unwrap() as f32, d.stats.max);
        let n_ex = d.top_examples.examples.len()
            + d.quantile_groups
                .iter()
                .map(|g| g.examples.len())
                .sum::<usize>();
        let acts = fj["activations"].as_array().unwrap();
        assert_eq!(acts.len(), n_ex);
        for a in acts {
            let n = a["tokens"].as_array().unwrap().len();
            assert_eq!(a["values"].as_array().unwrap().len(), n);
            assert_eq!(a["lossValues"].as_array().unwrap().len(), n);
        }
    }
}

#[test]
fn bad_arguments_name_the_fix() {
    let f = fix();
    let rows = corpus_rows(&f.model, "default", 128, 64).unwrap();
    let err = feature_dashboards(
        &f.model,
        &f.sae,
        &DashboardInput::Tokens(rows.clone()),
        &LatentSelection::Indices(vec![4608]),
        &cfg(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("d_sae = 4608"), "{err}");
    let err = feature_dashboards(
        &f.model,
        &f.sae,
        &DashboardInput::Tokens(rows),
        &LatentSelection::Indices(vec![]),
        &cfg(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("no latents"), "{err}");
    let err = feature_dashboards(
        &f.model,
        &f.sae,
        &DashboardInput::act_cache("/nonexistent"),
        &LatentSelection::Indices(vec![1]),
        &cfg(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("cache-activations"), "{err}");
    assert!(f.dash.feature_html(1_000_000).is_err());
}

#[test]
fn html_renders_in_headless_chromium_without_errors() {
    let Some(chrome) = bf::chromium() else { return };
    let f = fix();
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("dash.html");
    f.dash.save_html(&page).unwrap();
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        !html.contains("<link") && !html.contains("src=\"http"),
        "the page must not load anything"
    );
    let dom = bf::dump_dom(&chrome, &page);
    assert!(
        dom.contains("id=\"saescope-ready\""),
        "the page's script did not finish"
    );
    let err_marker = "id=\"saescope-error\"";
    if let Some(i) = dom.find(err_marker) {
        panic!("script error: {}", &dom[i..(i + 300).min(dom.len())]);
    }
    // The error detector works: a throwing script leaves the marker.
    let broken = dir.path().join("broken.html");
    std::fs::write(
        &broken,
        html.replace("</body>", "<script>throw new Error('boom')</script></body>"),
    )
    .unwrap();
    assert!(bf::dump_dom(&chrome, &broken).contains(err_marker));
    // Screenshot: the top-examples table is on screen, its tokens highlighted in orange.
    let shot = dir.path().join("shot.png");
    let out = std::process::Command::new(&chrome)
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--hide-scrollbars",
            "--window-size=1400,900",
        ])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&page)
        .output()
        .unwrap();
    assert!(
        out.status.success() && shot.exists(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let orange = bf::orange_pixels(&shot);
    assert!(
        orange > 2000,
        "only {orange} orange pixels: the top-examples table is not visible"
    );
}

#[test]
fn cli_writes_html_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let (html, json) = (dir.path().join("d.html"), dir.path().join("d.json"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_saescope"))
        .args([
            "dashboard",
            "--sae",
            "shipped",
            "--latents",
            "3,5-6",
            "--tokens",
            "512",
            "--context-size",
            "64",
            "--correlations",
            "selected",
            "--quiet",
        ])
        .arg("--out")
        .arg(&html)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let idx: Vec<u64> = j["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["index"].as_u64().unwrap())
        .collect();
    assert_eq!(idx, vec![3, 5, 6]);
    assert!(std::fs::read_to_string(&html)
        .unwrap()
        .starts_with("<!DOCTYPE html>"));
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_saescope"))
        .args([
            "dashboard",
            "--sae",
            "shipped",
            "--latents",
            "9999",
            "--tokens",
            "64",
            "--out",
        ])
        .arg(&html)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("d_sae = 4608"));
}
