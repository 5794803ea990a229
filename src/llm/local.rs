//! The offline chat backend: a local instruct model run by saescope's own `generate`.
use super::{ChatBackend, ChatMessage, ChatOptions};
use crate::error::{Error, Result};
use crate::model::{GenerateOptions, HookedModel};

/// A chat backend that runs an instruct model in-process (greedy unless `temperature > 0`),
/// so that autointerp works offline with no key. The chat is formatted with the ChatML
/// template (`<|im_start|>role\n…<|im_end|>`) that SmolLM2, Qwen and other instruct models
/// use; a trailing assistant message is a prefill the answer continues.
///
/// ```no_run
/// use saescope::llm::{ChatBackend, ChatMessage, ChatOptions, LocalChat};
/// use saescope::HookedModel;
/// let chat = LocalChat::new(HookedModel::from_pretrained("smollm2")?)?;
/// let answer = chat.complete(&[ChatMessage::user("Name a colour.")], &ChatOptions::default())?;
/// # Ok::<(), saescope::Error>(())
/// ```
pub struct LocalChat {
    model: HookedModel,
    im_end: u32,
}

impl LocalChat {
    /// Chat with `model` (an instruct model whose tokenizer has ChatML's `<|im_start|>` and
    /// `<|im_end|>` tokens).
    pub fn new(model: HookedModel) -> Result<Self> {
        let tok = model.tokenizer()?;
        let (start, end) = (
            tok.token_to_id("<|im_start|>"),
            tok.token_to_id("<|im_end|>"),
        );
        let (Some(_), Some(im_end)) = (start, end) else {
            return Err(Error::Invalid(format!(
                "LocalChat needs an instruct model with the ChatML template (<|im_start|> and \
                 <|im_end|> tokens), such as smollm2; `{}` has none: use OpenAiClient with a \
                 server for it",
                model.cfg().model_name
            )));
        };
        Ok(LocalChat { model, im_end })
    }

    /// The model.
    pub fn model(&self) -> &HookedModel {
        &self.model
    }

    /// The chat in ChatML, ready for the answer (or continuing a final assistant prefill).
    pub fn format(messages: &[ChatMessage]) -> String {
        let mut s = String::new();
        let prefill = messages.last().filter(|m| m.role == "assistant");
        let n = messages.len() - usize::from(prefill.is_some());
        for m in &messages[..n] {
            s.push_str(&format!(
                "<|im_start|>{}\n{}<|im_end|>\n",
                m.role, m.content
            ));
        }
        s.push_str("<|im_start|>assistant\n");
        if let Some(p) = prefill {
            s.push_str(&p.content);
        }
        s
    }
}

impl ChatBackend for LocalChat {
    fn complete(&self, messages: &[ChatMessage], opts: &ChatOptions) -> Result<String> {
        if messages.is_empty() {
            return Err(Error::Invalid("LocalChat: the chat has no messages".into()));
        }
        let text = Self::format(messages);
        let gen = GenerateOptions {
            max_new_tokens: opts.max_tokens,
            do_sample: opts.temperature > 0.0,
            temperature: opts.temperature as f64,
            stop_at_eos: true,
            eos_token_ids: Some(vec![self.im_end]),
            prepend_bos: false,
            use_past_kv_cache: true,
            ..GenerateOptions::greedy(opts.max_tokens)
        };
        let out = self.model.generate(text.as_str(), &gen)?;
        let ids = out.ids()?;
        let new: Vec<u32> = ids[0][out.prompt_len..]
            .iter()
            .copied()
            .take_while(|&t| t != self.im_end)
            .collect();
        Ok(self.model.to_string(&new)?.trim().to_string())
    }
}
