//! Chat backends for autointerp (explaining and scoring latents with a language model): one
//! trait, [`ChatBackend`], with an OpenAI-compatible HTTP client ([`OpenAiClient`]: any server
//! that speaks `POST {base_url}/chat/completions`, with timeouts, retries with backoff, a
//! concurrency limit and an on-disk response cache so that a rerun costs nothing), and an
//! in-process instruct model ([`LocalChat`], offline, no key).
mod local;
mod openai;

pub use local::LocalChat;
pub use openai::OpenAiClient;

use crate::error::Result;
use serde::{Deserialize, Serialize};

/// One chat message (`role` is `system`, `user` or `assistant`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl ChatMessage {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }
    /// An assistant message (e.g. a prefill the answer continues).
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
    fn new(role: &str, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// Sampling options of one completion.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatOptions {
    /// At most this many new tokens (default 200).
    pub max_tokens: usize,
    /// Sampling temperature (default 0: greedy, so that answers are reproducible).
    pub temperature: f32,
}

impl Default for ChatOptions {
    fn default() -> Self {
        ChatOptions {
            max_tokens: 200,
            temperature: 0.0,
        }
    }
}

/// Something that answers chats: a remote OpenAI-compatible server or a local model.
pub trait ChatBackend: Sync {
    /// The answer to one chat.
    fn complete(&self, messages: &[ChatMessage], opts: &ChatOptions) -> Result<String>;

    /// The answers to many chats, in order (a backend may run them concurrently); each is
    /// its own `Result`, so one failure loses none of the others.
    fn complete_many(&self, chats: &[Vec<ChatMessage>], opts: &ChatOptions) -> Vec<Result<String>> {
        chats.iter().map(|c| self.complete(c, opts)).collect()
    }
}

/// FNV-1a, 64 bits: a hash that is the same on every platform and Rust version (for cache
/// file names).
pub(crate) fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
