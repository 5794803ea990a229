//! Probing with SAEBench's definitions: the logistic regression against sklearn on a tiny
//! fixture, bad input, and the corpus-package sparse probing of the shipped SAE against
//! `sae-bench` 0.6.0's figures on the same documents and splits (tests/fixtures/probe/, written
//! by scripts/make_probe_goldens.py), within SAEBench's reseed noise.
use saescope::eval::probing::{
    fit_logistic_regression, sparse_probing, LogRegOptions, ProbingOptions, SeedStat,
};
use saescope::{HookedModel, Sae};
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let p = format!("{}/tests/fixtures/probe/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}")))
        .unwrap()
}

/// Same minimiser (the objective is strictly convex); the two solvers' stopping rules leave
/// differences of order 1e-4.
#[test]
fn logistic_regression_matches_sklearn() {
    let g = fixture("logreg.json");
    let x: Vec<f32> = g["x"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
        })
        .collect();
    let y: Vec<bool> = g["y"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap() == 1)
        .collect();
    for fit in g["fits"].as_array().unwrap() {
        let opts = LogRegOptions {
            c: fit["c"].as_f64().unwrap(),
            balanced: fit["balanced"].as_bool().unwrap(),
            ..Default::default()
        };
        let m = fit_logistic_regression(&x, &y, &opts).unwrap();
        let want: Vec<f64> = fit["coef"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        for (a, b) in m.coef.iter().zip(&want) {
            assert!(
                (a - b).abs() <= 1e-3 * b.abs().max(1.0),
                "{opts:?}: coef {:?} vs sklearn {want:?}",
                m.coef
            );
        }
        let bi = fit["intercept"].as_f64().unwrap();
        assert!(
            (m.intercept - bi).abs() <= 1e-3 * bi.abs().max(1.0),
            "intercept {} vs {bi}",
            m.intercept
        );
        assert_eq!(m.accuracy(&x, &y), fit["accuracy"].as_f64().unwrap());
    }
}

#[test]
fn logistic_regression_rejects_bad_input() {
    assert!(
        fit_logistic_regression(&[1.0, 2.0], &[true, true], &LogRegOptions::default()).is_err()
    );
    assert!(
        fit_logistic_regression(&[1.0, 2.0, 3.0], &[true, false], &LogRegOptions::default())
            .is_err()
    );
    assert!(fit_logistic_regression(&[], &[], &LogRegOptions::default()).is_err());
    let bad_c = LogRegOptions {
        c: 0.0,
        ..Default::default()
    };
    assert!(fit_logistic_regression(&[1.0, 2.0], &[true, false], &bad_c).is_err());
}

/// |ours − SAEBench's| within twice SAEBench's reseed std (floor `floor`).
pub fn within_noise(what: &str, ours: &SeedStat, theirs: &Value, floor: f64) {
    let (m, s) = (
        theirs["mean"].as_f64().unwrap(),
        theirs["std"].as_f64().unwrap(),
    );
    let tol = (2.0 * s).max(floor);
    eprintln!("{what}: saescope {ours} | sae-bench {m:.4} ± {s:.4} | tol {tol:.4}");
    assert!(
        (ours.mean - m).abs() <= tol,
        "{what}: saescope {ours} vs sae-bench {m:.4} ± {s:.4} (tol {tol:.4})"
    );
}

#[test]
fn sparse_probing_matches_saebench_within_reseed_noise() {
    let g = fixture("goldens.json");
    let opts: ProbingOptions = serde_json::from_value(g["probing_options"].clone()).unwrap();
    let model = HookedModel::from_pretrained("smollm2").unwrap();
    let sae = Sae::shipped().unwrap();
    let t = std::time::Instant::now();
    let r = sparse_probing(&model, &sae, &opts).unwrap();
    eprintln!("{r}\n({:.1} s)", t.elapsed().as_secs_f64());
    let sb = &g["saebench"]["probing"];
    for (i, k) in opts.k_values.iter().enumerate() {
        within_noise(
            &format!("sae_top_{k}"),
            &r.sae_top_k[i].accuracy,
            &sb["sae_top_k"][i],
            0.06,
        );
        within_noise(
            &format!("llm_top_{k}"),
            &r.llm_top_k[i].accuracy,
            &sb["llm_top_k"][i],
            0.06,
        );
    }
    within_noise("llm (dense)", r.llm.as_ref().unwrap(), &sb["llm"], 0.06);
    // Bad options fail with a message, before any model pass.
    let bad = ProbingOptions {
        docs_per_class: 1,
        ..opts.clone()
    };
    assert!(sparse_probing(&model, &sae, &bad).is_err());
    let bad = ProbingOptions { n_seeds: 0, ..opts };
    assert!(sparse_probing(&model, &sae, &bad).is_err());
}
