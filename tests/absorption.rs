//! First-letter absorption with SAEBench's definitions: prompts, bad input, and the shipped
//! SAE's absorption and k-sparse probing figures against `sae-bench` 0.6.0's on the same words,
//! prompts, splits and activations (tests/fixtures/probe/goldens.json, written by
//! scripts/make_probe_goldens.py), within SAEBench's reseed noise.
use saescope::eval::absorption::{absorption, first_letter_answer, icl_prompt, AbsorptionOptions};
use saescope::eval::probing::SeedStat;
use saescope::rng::Rng;
use saescope::{HookedModel, Sae};
use serde_json::Value;

fn within_noise(what: &str, ours: &SeedStat, theirs: &Value, floor: f64) {
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
fn icl_prompts_follow_saebench() {
    assert_eq!(first_letter_answer(" cat"), " C");
    assert_eq!(first_letter_answer("Dog"), " D");
    let pool: Vec<String> = ["apple", " bear", "cow"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let p = icl_prompt(
        " dog",
        &pool,
        "{word} has the first letter:",
        2,
        &mut Rng::new(1),
    );
    assert!(
        p.starts_with('\n') && p.ends_with("\n dog has the first letter:"),
        "{p:?}"
    );
    assert_eq!(p.matches(" has the first letter: ").count(), 2, "{p:?}");
}

#[test]
fn absorption_matches_saebench_within_reseed_noise() {
    let p = format!(
        "{}/tests/fixtures/probe/goldens.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let g: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    let opts: AbsorptionOptions = serde_json::from_value(g["absorption_options"].clone()).unwrap();
    let model = HookedModel::from_pretrained("smollm2").unwrap();
    let sae = Sae::shipped().unwrap();
    let t = std::time::Instant::now();
    let r = absorption(&model, &sae, &opts).unwrap();
    eprintln!("{r}\n({:.1} s)", t.elapsed().as_secs_f64());
    assert_eq!(r.n_words, g["n_words"].as_u64().unwrap() as usize);
    let sb = &g["saebench"]["absorption"];
    within_noise("probe F1", &r.probe_f1, &sb["probe_f1"], 0.05);
    for k in [1, 2, 5] {
        within_noise(
            &format!("k-sparse F1 k={k}"),
            &r.k_sparse_f1[k - 1],
            &sb["k_sparse_f1"][k - 1],
            0.05,
        );
    }
    within_noise(
        "mean absorption fraction",
        r.mean_absorption_fraction.as_ref().unwrap(),
        &sb["mean_absorption_fraction"],
        0.1,
    );
    within_noise(
        "mean full absorption",
        r.mean_full_absorption.as_ref().unwrap(),
        &sb["mean_full_absorption"],
        0.1,
    );
    // Bad options fail with a message.
    let bad = AbsorptionOptions {
        n_words: 10,
        ..opts.clone()
    };
    assert!(absorption(&model, &sae, &bad).is_err());
    let bad = AbsorptionOptions {
        prompt_token_pos: -500,
        n_words: 60,
        ..opts
    };
    assert!(absorption(&model, &sae, &bad).is_err());
}
