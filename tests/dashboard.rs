//! Feature dashboards (`saescope::analysis::dashboard`): every component against a brute-force
//! computation in `dashboard_support` (dense activations of a small corpus slice, plain loops,
//! hook-based ablations). Sources and views: `tests/dashboard_sources.rs`; HTML, JSON, errors
//! and the CLI: `tests/dashboard_output.rs`.
use saescope::analysis::dashboard::{
    feature_dashboards_with, select::histc, Correlations, DashboardConfig, DashboardInput,
    FeatureDashboard, LatentSelection,
};
use saescope::{Device, IndexOp, Tensor};

mod dashboard_support;
use dashboard_support as bf;
use dashboard_support::fixture::{act, cfg, eligible, fix, CTX, ROWS};

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
        feature_dashboards_with(
            &f.model,
            &f.sae,
            DashboardInput::Tokens(rows.clone()),
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
