//! Detection and fuzzing against EleutherAI's delphi (eai-delphi 0.1.3): the same synthetic
//! records scored by a scripted scorer that decides from each example's text alone. delphi's
//! texts, pooled balanced accuracy (its "Class-Balanced Accuracy"), precision, recall, F1 and
//! per-latent balanced accuracy come from `scripts/make_autointerp_goldens.py`.
use saescope::analysis::autointerp::{
    classification_metrics, samples, score_record, AutointerpOptions, Example, LatentRecord,
    QuantileExample, ScoreKind,
};
use saescope::error::Result;
use saescope::llm::{ChatBackend, ChatMessage, ChatOptions};
use serde_json::Value;

fn golden() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/autointerp/delphi_scores.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn example(v: &Value) -> Example {
    Example {
        str_tokens: serde_json::from_value(v["str_tokens"].clone()).unwrap(),
        acts: serde_json::from_value(v["acts"].clone()).unwrap(),
        act_threshold: 0.0,
    }
}

fn records(g: &Value) -> Vec<(LatentRecord, String)> {
    g["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let rec = LatentRecord {
                module: "layers.0".into(),
                latent: r["latent"].as_u64().unwrap() as usize,
                max_activation: 10.0,
                n_windows: 1000,
                explain: vec![],
                test: r["test"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| QuantileExample {
                        quantile: e["quantile"].as_u64().unwrap() as usize,
                        example: example(e),
                    })
                    .collect(),
                not_active: r["not_active"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(example)
                    .collect(),
            };
            (rec, r["explanation"].as_str().unwrap().to_string())
        })
        .collect()
}

/// The golden script's scripted client: 1 when the example holds the explanation's word
/// (fuzzing: inside a mark).
struct Scripted;

impl ChatBackend for Scripted {
    fn complete(&self, messages: &[ChatMessage], _: &ChatOptions) -> Result<String> {
        let user = &messages.last().unwrap().content;
        let expl = user
            .lines()
            .next()
            .unwrap()
            .trim_start_matches("Latent explanation: ");
        let word = expl.rsplit("word").next().unwrap().trim().trim_matches('"');
        let key = format!(" {word}");
        let fuzz = messages[0].content.contains("<<");
        let answers: Vec<u8> = user
            .lines()
            .filter(|l| l.starts_with("Example "))
            .map(|l| {
                let text = &l[l.find(':').unwrap() + 1..];
                let hit = if fuzz {
                    text.split("<<")
                        .skip(1)
                        .any(|s| s.split(">>").next().unwrap().contains(word))
                } else {
                    text.contains(&key)
                };
                u8::from(hit)
            })
            .collect();
        Ok(format!("{answers:?}"))
    }
}

fn check(kind: ScoreKind) {
    let g = golden();
    let want = &g[kind.name()];
    let opts = AutointerpOptions {
        n_examples_shown: g["n_examples_shown"].as_u64().unwrap() as usize,
        progress: false,
        ..Default::default()
    };
    let mut pooled = Vec::new();
    for (i, (rec, expl)) in records(&g).iter().enumerate() {
        // The texts delphi shows, as a set (it shuffles them).
        let mut texts: Vec<String> = samples(rec, kind, 1).into_iter().map(|s| s.text).collect();
        texts.sort();
        let want_texts: Vec<String> = serde_json::from_value(want["texts"][i].clone()).unwrap();
        assert_eq!(
            texts, want_texts,
            "{kind:?} latent {i}: texts differ from delphi's"
        );
        let outs = score_record(rec, expl, kind, &Scripted, &opts).unwrap();
        let ba = classification_metrics(&outs).balanced_accuracy;
        let want_ba = want["per_latent_balanced_accuracy"][i].as_f64().unwrap();
        assert!(
            (ba - want_ba).abs() <= 0.01,
            "{kind:?} latent {i}: {ba} vs delphi {want_ba}"
        );
        pooled.extend(outs);
    }
    let m = classification_metrics(&pooled);
    let p = &want["pooled"];
    for (ours, theirs, what) in [
        (
            m.balanced_accuracy,
            p["accuracy"].as_f64().unwrap(),
            "balanced accuracy",
        ),
        (m.precision, p["precision"].as_f64().unwrap(), "precision"),
        (m.recall, p["recall"].as_f64().unwrap(), "recall"),
        (m.f1, p["f1_score"].as_f64().unwrap(), "F1"),
    ] {
        println!("{kind:?} {what}: saescope {ours:.4}, delphi {theirs:.4}");
        assert!(
            (ours - theirs).abs() <= 0.01,
            "{kind:?} {what}: {ours} vs delphi {theirs}"
        );
    }
    assert_eq!(m.failed, 0);
}

#[test]
fn detection_matches_delphi() {
    check(ScoreKind::Detection);
}

#[test]
fn fuzzing_matches_delphi() {
    check(ScoreKind::Fuzz);
}
