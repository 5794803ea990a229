//! The offline chat backend: SmolLM2-135M-Instruct through saescope's own `generate`.
use saescope::llm::{ChatBackend, ChatMessage, ChatOptions, LocalChat};
use saescope::HookedModel;
use std::path::PathBuf;

#[test]
fn smollm2_answers_a_chat_and_continues_a_prefill() {
    let chat = LocalChat::new(HookedModel::from_pretrained("smollm2").unwrap()).unwrap();
    let opts = ChatOptions {
        max_tokens: 12,
        ..Default::default()
    };
    let q = [
        ChatMessage::system("You are a helpful assistant. Answer in one word."),
        ChatMessage::user("What is the capital of France?"),
    ];
    let a = chat.complete(&q, &opts).unwrap();
    assert!(a.contains("Paris"), "{a:?}");
    assert!(!a.contains("<|im_end|>"), "{a:?}");
    // Greedy by default: the same chat, the same answer.
    assert_eq!(chat.complete(&q, &opts).unwrap(), a);
    // A trailing assistant message is a prefill the answer continues.
    let text = LocalChat::format(&[
        ChatMessage::user("Hi"),
        ChatMessage::assistant("Hello! The capital of France is"),
    ]);
    assert_eq!(
        text,
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello! The capital of France is"
    );
    let a = chat
        .complete(
            &[
                ChatMessage::user("Tell me a fact about France."),
                ChatMessage::assistant("The capital of France is"),
            ],
            &opts,
        )
        .unwrap();
    assert!(a.starts_with("Paris"), "{a:?}");
}

#[test]
fn a_model_without_chatml_is_a_clear_error() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-llama");
    let err = LocalChat::new(HookedModel::from_pretrained(dir.to_str().unwrap()).unwrap())
        .err()
        .expect("tiny-llama has no tokenizer")
        .to_string();
    assert!(err.contains("tokenizer"), "{err}");
}
