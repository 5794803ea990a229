//! Autointerp's parsing and detection scoring, case by case as SAEBench's (and ARENA's)
//! `parse_explanation`, `parse_predictions`, `score_predictions` and `Example.to_str` behave.
use saescope::analysis::autointerp::{
    parse_explanation, parse_predictions, score_predictions, Example,
};

fn ex(acts: &[f32]) -> Example {
    Example {
        str_tokens: acts
            .iter()
            .enumerate()
            .map(|(i, _)| format!("t{i}"))
            .collect(),
        acts: acts.to_vec(),
        act_threshold: 1.0,
    }
}

#[test]
fn predictions_parse_as_saebench_parses_them() {
    assert_eq!(parse_predictions("1, 4, 7"), Some(vec![1, 4, 7]));
    assert_eq!(parse_predictions(" 2, 5 and 9. "), Some(vec![2, 5, 9]));
    assert_eq!(parse_predictions("None"), Some(vec![]));
    assert_eq!(parse_predictions("None."), Some(vec![]));
    assert_eq!(parse_predictions(""), Some(vec![]));
    assert_eq!(parse_predictions("3,,4"), Some(vec![3, 4]));
    assert_eq!(parse_predictions("Examples 1 and 2"), None);
    assert_eq!(parse_predictions("1 2"), None);
    assert_eq!(parse_predictions("-1"), None);
}

#[test]
fn scores_count_correct_classifications_of_both_kinds() {
    // Examples 1, 3 active; 2, 4 inactive.
    let exs = [ex(&[0.0, 2.0]), ex(&[0.5]), ex(&[3.0]), ex(&[1.0])];
    assert_eq!(score_predictions(&[1, 3], &exs), 1.0);
    assert_eq!(score_predictions(&[], &exs), 0.5);
    assert_eq!(score_predictions(&[1, 2, 3, 4], &exs), 0.5);
    assert_eq!(score_predictions(&[2, 4], &exs), 0.0);
    // Numbers beyond the examples are ignored, as in SAEBench.
    assert_eq!(score_predictions(&[1, 3, 12], &exs), 1.0);
    assert_eq!(score_predictions(&[1], &[]), 0.0);
}

#[test]
fn examples_mark_active_tokens_and_explanations_parse() {
    let e = Example {
        str_tokens: vec!["The".into(), " cat".into(), "\n".into(), "\u{FFFD}x".into()],
        acts: vec![0.0, 5.0, 0.05, 2.0],
        act_threshold: 0.5,
    };
    assert!(e.is_active());
    assert_eq!(e.to_text(true), "The<< cat>>↵<<x>>");
    assert_eq!(e.to_text(false), "The cat↵x");
    assert_eq!(e.max_act(), 5.0);
    // Exactly at the threshold is not active.
    assert!(!ex(&[1.0, 0.2]).is_active());
    assert_eq!(
        parse_explanation("This neuron activates on the word 'cat'."),
        "the word 'cat'"
    );
    assert_eq!(
        parse_explanation("  nouns after 'the'  "),
        "nouns after 'the'"
    );
}
