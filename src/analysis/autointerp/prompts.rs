//! The chats sent to the explainer and the scorers. Their structure follows ARENA (explaining:
//! a system prompt, the top documents numbered with active tokens marked `<<…>>`, and the
//! answer prefilled with "this neuron fires on"), SAEBench (detection as a numbered list answered
//! with "2, 5" or "None") and delphi (detection and fuzzing: few-shot chats, examples numbered
//! from 0, answered with a list such as `[1,0,0]`); the wording and the few-shot examples are
//! saescope's own, written in plain text so that small models read them easily.
use super::Example;
use crate::llm::ChatMessage;

/// ARENA's prefill of the explainer's answer.
pub const EXPLAIN_PREFILL: &str = "this neuron fires on";

const EXPLAIN_SYSTEM: &str = "We're studying neurons in a neural network. Each neuron activates \
on some particular word or concept in short documents. In each document below, the words the \
neuron activates on are marked with << and >>. Look at the marked words and their contexts, and \
say in one short sentence what the neuron activates on. Be specific enough that the explanation \
tells these documents apart from others, but cover all the examples. Mention capitalization or \
punctuation if it matters. Use 20 words or fewer, no formatting and no long lists of words.";

/// The explainer's chat (ARENA's `create_prompt`): the system prompt, the documents numbered
/// from 1 with their active tokens marked, and the answer prefilled with `prefill` (none when
/// empty).
pub fn explanation_prompt(examples: &[Example], prefill: &str) -> Vec<ChatMessage> {
    let docs: Vec<String> = examples
        .iter()
        .enumerate()
        .map(|(i, ex)| format!("{}. {}", i + 1, ex.to_text(true)))
        .collect();
    let mut chat = vec![
        ChatMessage::system(EXPLAIN_SYSTEM),
        ChatMessage::user(format!(
            "The activating documents are given below:\n\n{}",
            docs.join("\n")
        )),
    ];
    if !prefill.is_empty() {
        chat.push(ChatMessage::assistant(prefill));
    }
    chat
}

/// The explanation in an explainer's answer: the text after its last "activates on" or
/// "fires on" (SAEBench's `parse_explanation`, which also sees answers that restate the
/// prefill), its first line, without a trailing full stop or surrounding space.
pub fn parse_explanation(answer: &str) -> String {
    let tail = ["activates on", "fires on"]
        .iter()
        .filter_map(|k| answer.rfind(k).map(|i| i + k.len()))
        .max()
        .map_or(answer, |i| &answer[i..]);
    let line = tail.trim().lines().next().unwrap_or("");
    line.trim().trim_end_matches('.').trim().to_string()
}

/// SAEBench's (and ARENA's) detection chat: the explanation, then `examples` numbered from 1
/// without marks; the answer lists the numbers of those the latent should fire on, or "None".
/// `example_answer` is the sample answer shown in the instructions (SAEBench draws it at
/// random), e.g. `"2, 5"`.
pub fn saebench_scoring_prompt(
    explanation: &str,
    examples: &[Example],
    example_answer: &str,
) -> Vec<ChatMessage> {
    let docs: Vec<String> = examples
        .iter()
        .enumerate()
        .map(|(i, ex)| format!("{}. {}", i + 1, ex.to_text(false)))
        .collect();
    let system = format!(
        "We're studying neurons in a neural network. Each neuron activates on some particular \
         word or concept in short documents. You will read a short explanation of what a neuron \
         activates on, then {} example documents in random order. Reply with a comma-separated \
         list of the numbers of the documents on which the neuron should activate at least once, \
         for example \"{example_answer}\". Don't read the explanation too narrowly. If it should \
         activate on none of them, reply \"None\". Reply with nothing but the numbers or the word \
         None.",
        examples.len()
    );
    vec![
        ChatMessage::system(system),
        ChatMessage::user(format!(
            "Here is the explanation: this neuron fires on {explanation}.\n\nHere are the \
             examples:\n\n{}",
            docs.join("\n")
        )),
    ]
}

const DETECTION_SYSTEM: &str = "You are a careful linguist. You will read the explanation of \
a latent of a language model, such as \"male pronouns\" or \"text about cooking\", then several \
text examples. For each example in turn, answer 1 if the latent should be present somewhere in \
it and 0 if not. Reply with a Python list such as [1,0,1] and nothing else.";

const FUZZ_SYSTEM: &str = "You are a careful linguist. You will read the explanation of a \
latent of a language model, such as \"male pronouns\" or \"text about cooking\", then several \
text examples in which some tokens are marked with << and >>. Some marks may be wrong. For each \
example in turn, answer 1 if every marked token fits the explanation and 0 if any does not. \
Reply with a Python list such as [1,0,1] and nothing else.";

/// Few-shot turns: (explanation, examples, answer).
const DETECTION_SHOTS: [(&str, &[&str], &str); 2] = [
    (
        "names of days of the week",
        &[
            "We will meet again on Tuesday after the game.",
            "The cat slept on the warm windowsill all afternoon.",
            "Every Friday the shop closes early.",
        ],
        "[1,0,1]",
    ),
    (
        "the word \"not\" in negations",
        &[
            "Heat the oven to 200 degrees before baking.",
            "He did not want to leave so soon.",
            "The river flows north through the valley.",
        ],
        "[0,1,0]",
    ),
];

const FUZZ_SHOTS: [(&str, &[&str], &str); 2] = [
    (
        "names of days of the week",
        &[
            "We will meet again on<< Tuesday>> after the game.",
            "The cat<< slept>> on the warm windowsill all afternoon.",
            "Every<< Friday>> the shop closes early.",
        ],
        "[1,0,1]",
    ),
    (
        "the word \"not\" in negations",
        &[
            "Heat the<< oven>> to 200 degrees before baking.",
            "He did<< not>> want to leave so soon.",
            "The river flows<< north>> through the valley.",
        ],
        "[0,1,0]",
    ),
];

fn classifier_user(explanation: &str, texts: &[&str]) -> String {
    let examples: Vec<String> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| format!("Example {i}: {t}"))
        .collect();
    format!(
        "Latent explanation: {explanation}\n\nText examples:\n\n{}\n",
        examples.join("\n")
    )
}

/// delphi's detection (`fuzz == false`) or fuzzing chat for one batch of example texts: a
/// system prompt, few-shot turns, then the explanation and the examples numbered from 0. The
/// few-shot turns show as many examples as the batch holds (up to three), so that a small
/// model answers with a list of the right length.
pub fn classifier_prompt(fuzz: bool, explanation: &str, texts: &[&str]) -> Vec<ChatMessage> {
    let (system, shots) = if fuzz {
        (FUZZ_SYSTEM, &FUZZ_SHOTS)
    } else {
        (DETECTION_SYSTEM, &DETECTION_SHOTS)
    };
    let per_turn = texts.len().clamp(1, 3);
    let mut chat = vec![ChatMessage::system(system)];
    for (expl, ex, answer) in shots {
        let labels: Vec<&str> = answer.trim_matches(['[', ']']).split(',').collect();
        for (exs, labs) in ex.chunks(per_turn).zip(labels.chunks(per_turn)) {
            chat.push(ChatMessage::user(classifier_user(expl, exs)));
            chat.push(ChatMessage::assistant(format!("[{}]", labs.join(","))));
        }
    }
    chat.push(ChatMessage::user(classifier_user(explanation, texts)));
    chat
}

/// A classifier's answer as delphi parses it: the first `[…]` in the text read as a JSON list
/// of 0/1 (or booleans; any non-zero number counts as 1). `None` when there is no list, it is
/// not valid JSON, or it does not hold exactly `n` answers.
pub fn parse_classifier_answer(answer: &str, n: usize) -> Option<Vec<bool>> {
    let start = answer.find('[')?;
    let end = start + answer[start..].find(']')?;
    let list: Vec<serde_json::Value> = serde_json::from_str(&answer[start..=end]).ok()?;
    let preds: Option<Vec<bool>> = list
        .iter()
        .map(|v| match v {
            serde_json::Value::Bool(b) => Some(*b),
            serde_json::Value::Number(x) => x.as_f64().map(|f| f != 0.0),
            _ => None,
        })
        .collect();
    preds.filter(|p| p.len() == n)
}
