//! An OpenAI-compatible chat-completions client (blocking, on `ureq`).
use super::{stable_hash, ChatBackend, ChatMessage, ChatOptions};
use crate::error::{Error, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A client for any server that speaks OpenAI's `POST {base_url}/chat/completions`.
///
/// ```no_run
/// use saescope::llm::{ChatBackend, ChatMessage, ChatOptions, OpenAiClient};
/// let client = OpenAiClient::new("http://127.0.0.1:8000/v1", "my-model")
///     .cache_dir("out/llm-cache");
/// let answer = client.complete(&[ChatMessage::user("Say hi")], &ChatOptions::default())?;
/// # Ok::<(), saescope::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct OpenAiClient {
    base_url: String,
    model: String,
    api_key_env: String,
    timeout: Duration,
    retries: usize,
    backoff: Duration,
    concurrency: usize,
    cache_dir: Option<PathBuf>,
}

impl OpenAiClient {
    /// A client for `base_url` (e.g. `http://127.0.0.1:8000/v1`) and `model`. Defaults: the
    /// key from `OPENAI_API_KEY` if set (no key otherwise, as local servers expect), 60 s
    /// timeout, 3 retries with backoff from 1 s, 4 requests at a time, no cache.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        OpenAiClient {
            base_url: base_url.into().trim_end_matches('/').to_string(),
            model: model.into(),
            api_key_env: "OPENAI_API_KEY".into(),
            timeout: Duration::from_secs(60),
            retries: 3,
            backoff: Duration::from_secs(1),
            concurrency: 4,
            cache_dir: None,
        }
    }
    /// Read the API key from this environment variable (sent as a bearer token when set).
    pub fn api_key_env(mut self, name: impl Into<String>) -> Self {
        self.api_key_env = name.into();
        self
    }
    /// Give up on a request (connect or read) after this long.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }
    /// Retry failed requests (network errors, timeouts, 429 and 5xx answers, malformed
    /// bodies) this many times, waiting `backoff`, then twice that, and so on.
    pub fn retries(mut self, n: usize, backoff: Duration) -> Self {
        self.retries = n;
        self.backoff = backoff;
        self
    }
    /// At most this many requests in flight in [`ChatBackend::complete_many`].
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }
    /// Keep every answer in this folder, keyed by its request: asking again costs nothing.
    pub fn cache_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.cache_dir = Some(dir.as_ref().to_path_buf());
        self
    }

    fn url(&self) -> String {
        format!("{}/chat/completions", self.base_url)
    }

    fn fail(&self, reason: impl Into<String>) -> Error {
        Error::Llm {
            url: self.url(),
            reason: reason.into(),
        }
    }

    fn cache_file(&self, body: &str) -> Option<PathBuf> {
        let h = stable_hash(body.as_bytes());
        self.cache_dir
            .as_ref()
            .map(|d| d.join(format!("{h:016x}.json")))
    }

    /// One attempt: the answer, or `(retryable, reason)`.
    fn attempt(
        &self,
        agent: &ureq::Agent,
        body: &str,
    ) -> std::result::Result<String, (bool, String)> {
        let mut req = agent
            .post(&self.url())
            .set("Content-Type", "application/json");
        if let Ok(key) = std::env::var(&self.api_key_env) {
            if !key.is_empty() {
                req = req.set("Authorization", &format!("Bearer {key}"));
            }
        }
        let text = match req.send_string(body) {
            Ok(r) => r
                .into_string()
                .map_err(|e| (true, format!("reading the answer: {e}")))?,
            Err(ureq::Error::Status(code, r)) => {
                let detail: String = r
                    .into_string()
                    .unwrap_or_default()
                    .chars()
                    .take(300)
                    .collect();
                let retry = code == 429 || code >= 500;
                let hint = match code {
                    401 | 403 => format!(" (set the key in ${})", self.api_key_env),
                    404 => {
                        " (check base_url: it should end where /chat/completions begins, e.g. …/v1)"
                            .into()
                    }
                    _ => String::new(),
                };
                return Err((retry, format!("HTTP {code}{hint}: {detail}")));
            }
            Err(e) => return Err((true, format!("{e}"))),
        };
        let v: Value = serde_json::from_str(&text).map_err(|e| {
            let head: String = text.chars().take(200).collect();
            (
                true,
                format!("malformed JSON in the answer ({e}): {head:?}"),
            )
        })?;
        v["choices"][0]["message"]["content"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| {
                let head: String = text.chars().take(200).collect();
                (
                    true,
                    format!("the answer has no choices[0].message.content: {head:?}"),
                )
            })
    }
}

impl ChatBackend for OpenAiClient {
    fn complete(&self, messages: &[ChatMessage], opts: &ChatOptions) -> Result<String> {
        let body = json!({
            "model": self.model,
            "messages": messages,
            "max_tokens": opts.max_tokens,
            "temperature": opts.temperature,
        })
        .to_string();
        let cache = self.cache_file(&body);
        if let Some(p) = &cache {
            if let Ok(s) = std::fs::read_to_string(p) {
                if let Ok(v) = serde_json::from_str::<Value>(&s) {
                    if let Some(a) = v["answer"].as_str() {
                        return Ok(a.to_string());
                    }
                }
            }
        }
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(self.timeout)
            .timeout_read(self.timeout)
            .timeout_write(self.timeout)
            .build();
        let mut last = String::new();
        for attempt in 0..=self.retries {
            if attempt > 0 {
                std::thread::sleep(self.backoff * (1u32 << (attempt - 1).min(16)));
            }
            match self.attempt(&agent, &body) {
                Ok(answer) => {
                    if let Some(p) = &cache {
                        save_answer(p, &body, &answer)?;
                    }
                    return Ok(answer);
                }
                Err((retry, reason)) => {
                    last = reason;
                    if !retry {
                        break;
                    }
                }
            }
        }
        Err(self.fail(format!(
            "{last} (after {} attempt{})",
            self.retries + 1,
            if self.retries == 0 { "" } else { "s" }
        )))
    }

    fn complete_many(&self, chats: &[Vec<ChatMessage>], opts: &ChatOptions) -> Vec<Result<String>> {
        let next = AtomicUsize::new(0);
        let slots: Vec<std::sync::Mutex<Option<Result<String>>>> =
            chats.iter().map(|_| std::sync::Mutex::new(None)).collect();
        std::thread::scope(|s| {
            for _ in 0..self.concurrency.min(chats.len()) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= chats.len() {
                        break;
                    }
                    let r = self.complete(&chats[i], opts);
                    *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                });
            }
        });
        slots
            .into_iter()
            .map(|m| {
                m.into_inner()
                    .unwrap_or_else(|e| e.into_inner())
                    .unwrap_or_else(|| Err(self.fail("internal: a request was never sent")))
            })
            .collect()
    }
}

/// Write the cache entry atomically (a kill leaves either nothing or the whole file).
fn save_answer(path: &Path, request: &str, answer: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let request: Value = serde_json::from_str(request).unwrap_or(Value::Null);
    let text = json!({"request": request, "answer": answer}).to_string();
    let tmp = path.with_extension("json.part");
    std::fs::write(&tmp, text).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}
