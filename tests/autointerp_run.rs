//! The autointerp runner with scripted backends (no model): detection and fuzzing samples,
//! answer parsing, delphi's metrics, the JSONL output, resuming after a kill, and failures
//! that lose nothing.
use std::sync::atomic::{AtomicUsize, Ordering};

use saescope::analysis::autointerp::{
    classification_metrics, classifier_prompt, explanation_prompt, parse_classifier_answer,
    parse_explanation, random_baseline, run_autointerp, samples, top_tokens_baseline,
    AutointerpOptions, ClassifierOutput, Example, LatentRecord, QuantileExample, ScoreKind,
};
use saescope::error::{Error, Result};
use saescope::llm::{ChatBackend, ChatMessage, ChatOptions};

fn example(words: &[&str], peak: Option<usize>) -> Example {
    let mut acts = vec![0.0; words.len()];
    if let Some(p) = peak {
        acts[p] = 5.0;
    }
    Example {
        str_tokens: words.iter().map(|w| w.to_string()).collect(),
        acts,
        act_threshold: 0.5,
    }
}

/// A latent that fires on " cat": activating windows hold " cat" where it fires, quiet ones
/// never hold it.
fn record(latent: usize) -> LatentRecord {
    let on = |i: usize| {
        let mut w = vec![" a", " b", " c", " d", " e", " f", " g", " h"];
        w[i % 8] = " cat";
        example(&w, Some(i % 8))
    };
    let off = |i: usize| {
        let w: Vec<&str> = [" x", " y", " z", " w"]
            .iter()
            .cycle()
            .skip(i)
            .take(8)
            .copied()
            .collect();
        example(&w, None)
    };
    LatentRecord {
        module: "blocks.0.hook_resid_post".into(),
        latent,
        max_activation: 5.0,
        n_windows: 300,
        explain: (0..5).map(on).collect(),
        test: (0..10)
            .map(|i| QuantileExample {
                quantile: i,
                example: on(i),
            })
            .collect(),
        not_active: (0..10).map(off).collect(),
    }
}

/// Explains every latent as "the word cat"; answers detection by looking for " cat" in each
/// example line and fuzzing by looking for it inside marks. Counts calls; can fail on one
/// latent's explanation or answer garbage.
struct Scripted {
    calls: AtomicUsize,
    fail_on: Option<usize>,
    garbage: bool,
}

impl Scripted {
    fn new() -> Self {
        Scripted {
            calls: AtomicUsize::new(0),
            fail_on: None,
            garbage: false,
        }
    }
}

impl ChatBackend for Scripted {
    fn complete(&self, messages: &[ChatMessage], _: &ChatOptions) -> Result<String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let last = messages.last().unwrap();
        if last.role == "assistant" {
            // The explainer (prefilled).
            if let Some(bad) = self.fail_on {
                if messages[1].content.contains(&format!("MARK{bad}")) {
                    return Err(Error::Invalid("server down".into()));
                }
            }
            return Ok(" the word cat.".into());
        }
        if self.garbage {
            return Ok("I think some of them".into());
        }
        let fuzz = messages[0].content.contains("<<");
        let answers: Vec<u8> = last
            .content
            .lines()
            .filter_map(|l| l.strip_prefix("Example "))
            .map(|l| {
                let hit = if fuzz {
                    l.contains("<< cat>>")
                } else {
                    l.contains(" cat")
                };
                u8::from(hit)
            })
            .collect();
        Ok(format!("{answers:?}"))
    }
}

fn opts() -> AutointerpOptions {
    AutointerpOptions {
        min_examples: 10,
        progress: false,
        ..Default::default()
    }
}

#[test]
fn a_perfect_scorer_gets_balanced_accuracy_one() {
    let recs = vec![record(3), record(7)];
    let b = Scripted::new();
    let rep = run_autointerp(&recs, &b, &b, &opts()).unwrap();
    assert_eq!(rep.results.len(), 2);
    assert_eq!(rep.results[0].explanation, "the word cat");
    for k in [ScoreKind::Detection, ScoreKind::Fuzz] {
        let m = rep.metrics(k);
        assert_eq!((m.n, m.failed), (40, 0), "{k:?}");
        assert_eq!(m.balanced_accuracy, 1.0, "{k:?}: {m:?}");
    }
    // 20 samples in batches of 5 per scorer, plus one explanation, per latent.
    assert_eq!(b.calls.load(Ordering::SeqCst), 2 * (1 + 4 + 4));
    assert!(rep
        .to_string()
        .contains("detection: balanced accuracy 1.000"));
}

#[test]
fn unparseable_answers_are_counted_as_failed_not_guessed() {
    let b = Scripted {
        garbage: true,
        ..Scripted::new()
    };
    let rep = run_autointerp(&[record(1)], &b, &b, &opts()).unwrap();
    let m = rep.metrics(ScoreKind::Detection);
    assert_eq!((m.n, m.failed, m.balanced_accuracy), (0, 20, 0.0));
    let d = &rep.results[0].scores["detection"];
    assert!(d
        .iter()
        .all(|o| o.prediction.is_none() && o.correct.is_none()));
}

#[test]
fn jsonl_output_resumes_after_a_kill_and_retries_failures() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("runs/autointerp.jsonl");
    let recs: Vec<LatentRecord> = (0..4)
        .map(|l| {
            let mut r = record(l);
            r.explain[0].str_tokens[0] = format!("MARK{l}");
            r
        })
        .collect();
    let o = AutointerpOptions {
        out: Some(out.clone()),
        ..opts()
    };
    // The server fails on latent 2: the others are written, latent 2 is listed as failed.
    let failing = Scripted {
        fail_on: Some(2),
        ..Scripted::new()
    };
    let rep = run_autointerp(&recs, &failing, &failing, &o).unwrap();
    assert_eq!(rep.results.len(), 3);
    assert_eq!(rep.failed.len(), 1);
    assert_eq!(rep.failed[0].0, 2);
    assert!(rep.failed[0].1.contains("server down"));
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text.lines().count(), 3);
    // A kill in the middle of writing a line leaves half of it.
    std::fs::write(&out, format!("{text}{{\"module\": \"blocks.0.hook_re")).unwrap();
    // The rerun reads the three finished latents back and runs only latent 2.
    let b = Scripted::new();
    let rep2 = run_autointerp(&recs, &b, &b, &o).unwrap();
    assert_eq!(b.calls.load(Ordering::SeqCst), 1 + 4 + 4);
    assert!(rep2.failed.is_empty());
    let latents: Vec<usize> = rep2.results.iter().map(|r| r.latent).collect();
    assert_eq!(latents, vec![0, 1, 2, 3]);
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text.lines().count(), 4);
    assert!(text.ends_with('\n'));
    // A third run costs nothing.
    let b = Scripted::new();
    run_autointerp(&recs, &b, &b, &o).unwrap();
    assert_eq!(b.calls.load(Ordering::SeqCst), 0);
    // delphi's folder layout.
    rep2.write_delphi(dir.path().join("delphi")).unwrap();
    let f = dir
        .path()
        .join("delphi/scores/fuzz/blocks.0.hook_resid_post_latent2.txt");
    let outs: Vec<ClassifierOutput> =
        serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
    assert_eq!(outs.len(), 20);
}

#[test]
fn a_corrupt_output_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("a.jsonl");
    std::fs::write(&out, "not json\n").unwrap();
    let b = Scripted::new();
    let o = AutointerpOptions {
        out: Some(out),
        ..opts()
    };
    let e = run_autointerp(&[record(0)], &b, &b, &o)
        .unwrap_err()
        .to_string();
    assert!(e.contains("move the file away"), "{e}");
}

#[test]
fn too_rare_latents_are_skipped() {
    let mut r = record(0);
    r.n_windows = 5;
    let b = Scripted::new();
    let rep = run_autointerp(&[r], &b, &b, &opts()).unwrap();
    assert_eq!(rep.skipped, vec![(0, 5)]);
    assert_eq!(b.calls.load(Ordering::SeqCst), 0);
}

#[test]
fn fuzzing_marks_activations_and_false_marks_one_token_per_activation() {
    let s = samples(&record(0), ScoreKind::Fuzz, 1);
    assert_eq!(s.len(), 20);
    for x in &s {
        let marks = x.text.matches("<<").count();
        assert_eq!(marks, 1, "{}", x.text);
        assert_eq!(x.text.contains("<< cat>>"), x.data.activating, "{}", x.text);
    }
    // The non-activating example is marked where an activating one peaks (delphi).
    let quiet = &record(0).not_active[0].str_tokens;
    assert!(
        s[0].text.contains(&format!("<<{}>>", quiet[8 - 8 / 4])),
        "{}",
        s[0].text
    );
    let d = samples(&record(0), ScoreKind::Detection, 1);
    assert!(d.iter().all(|x| !x.text.contains("<<")));
    assert_eq!(d.iter().filter(|x| x.data.activating).count(), 10);
    assert!(d
        .iter()
        .all(|x| x.data.distance == -1.0 || x.data.activating));
}

#[test]
fn baselines_bracket_the_scores() {
    let recs = vec![record(0), record(1), record(2)];
    let top = top_tokens_baseline(&recs, 3, &opts()).unwrap();
    assert_eq!(top.results[0].explanation, "the tokens \" cat\"");
    assert_eq!(top.metrics(ScoreKind::Detection).balanced_accuracy, 1.0);
    let rnd = random_baseline(&recs, &opts()).unwrap();
    let b = rnd.metrics(ScoreKind::Detection).balanced_accuracy;
    assert!((0.2..0.8).contains(&b), "{b}");
}

#[test]
fn classifier_answers_parse_as_delphi_parses_them() {
    assert_eq!(
        parse_classifier_answer("[1,0,1]", 3),
        Some(vec![true, false, true])
    );
    assert_eq!(
        parse_classifier_answer("Sure: [1, 0] ok", 2),
        Some(vec![true, false])
    );
    assert_eq!(
        parse_classifier_answer("[true,false]", 2),
        Some(vec![true, false])
    );
    assert_eq!(parse_classifier_answer("[1,0,1]", 2), None);
    assert_eq!(parse_classifier_answer("1, 0", 2), None);
    assert_eq!(parse_classifier_answer("[1,x]", 2), None);
    assert_eq!(parse_classifier_answer("[2,0]", 2), Some(vec![true, false]));
}

#[test]
fn prompts_have_arenas_and_delphis_shape() {
    let ex = example(&[" the", " cat", " sat"], Some(1));
    let chat = explanation_prompt(std::slice::from_ref(&ex), "this neuron fires on");
    assert_eq!(chat.len(), 3);
    assert_eq!(
        chat[1].content,
        "The activating documents are given below:\n\n1.  the<< cat>> sat"
    );
    assert_eq!(chat[2].role, "assistant");
    let c = classifier_prompt(true, "cats", &["a<< b>>", "c"]);
    let last = &c.last().unwrap().content;
    assert_eq!(
        last,
        "Latent explanation: cats\n\nText examples:\n\nExample 0: a<< b>>\nExample 1: c\n"
    );
    // Few-shot turns show as many examples as the batch.
    assert!(c[1].content.contains("Example 1:") && !c[1].content.contains("Example 2:"));
    assert_eq!(
        parse_explanation(" cats and dogs.\nMore text"),
        "cats and dogs"
    );
    assert_eq!(parse_explanation("This neuron fires on verbs."), "verbs");
}

#[test]
fn metrics_follow_delphis_confusion() {
    let o = |activating: bool, prediction: Option<bool>| ClassifierOutput {
        str_tokens: vec![],
        activations: vec![],
        distance: 0.0,
        activating,
        prediction,
        probability: None,
        correct: prediction.map(|p| p == activating),
    };
    let outs = [
        o(true, Some(true)),
        o(true, Some(false)),
        o(true, Some(true)),
        o(false, Some(false)),
        o(false, None),
    ];
    let m = classification_metrics(&outs);
    assert_eq!((m.n, m.failed), (4, 1));
    // (2/3 + 1/1) / 2
    assert!((m.balanced_accuracy - 5.0 / 6.0).abs() < 1e-12);
    assert!((m.accuracy - 0.75).abs() < 1e-12);
    assert_eq!(m.precision, 1.0);
}
