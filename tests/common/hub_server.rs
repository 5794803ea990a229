//! Test support: a tiny model-hub HTTP server (std::net only) and a seeded tiny GPT-2 repo.
//!
//! The server serves `root/{repo_id}/{filename}` at `/{repo_id}/resolve/{revision}/{filename}`
//! the way the hub does for hf-hub's sync client:
//! - hf-hub first sends `GET` with `Range: bytes=0-0` through a client that does not follow
//!   redirects and needs `ETag` (or `X-Linked-Etag`), `X-Repo-Commit` and `Content-Range:
//!   bytes 0-0/{size}` (the size is read from after the `/`);
//! - then it downloads with `Range: bytes={start}-` (start > 0 when resuming a `.part` file)
//!   and writes the body as is, so a ranged request must get exactly that slice (206);
//! - 404 (with `X-Error-Code`) for a missing repo, revision or file.
//!
//! With [`ServerOptions::lfs_redirect`], `*.safetensors` files are answered like LFS files on
//! the hub: a `302` with an absolute `Location` (a `/__lfs/{etag}` URL on this server),
//! `X-Linked-Etag`, `X-Linked-Size` and `X-Repo-Commit`.
//!
//! Every request is logged ([`HubServer::requests`]) so tests can check whether the network
//! was used. The revision `main` and the repo's commit hash (see [`HubServer::commit_of`]) are
//! served; other revisions get 404.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct LoggedRequest {
    pub method: String,
    /// The raw request target (path and query).
    pub path: String,
    /// The `Range` header, if any.
    pub range: Option<String>,
    /// The status code answered.
    pub status: u16,
}

#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Answer `*.safetensors` with a 302 to an absolute `/__lfs/{etag}` URL, like LFS files.
    pub lfs_redirect: bool,
}

struct Shared {
    root: PathBuf,
    opts: ServerOptions,
    addr: SocketAddr,
    log: Mutex<Vec<LoggedRequest>>,
    /// etag → file, filled when a redirect is issued.
    lfs: Mutex<HashMap<String, PathBuf>>,
    stop: AtomicBool,
}

/// A running hub server; stopped on [`HubServer::stop`] or drop.
pub struct HubServer {
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl HubServer {
    /// Serve `root` (which holds one folder per repo id, e.g. `root/gpt2/config.json` or
    /// `root/org/name/config.json`) on 127.0.0.1 at a free port.
    pub fn start(root: impl Into<PathBuf>) -> Self {
        Self::start_with(root, ServerOptions::default())
    }

    pub fn start_with(root: impl Into<PathBuf>, opts: ServerOptions) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local_addr");
        let shared = Arc::new(Shared {
            root: root.into(),
            opts,
            addr,
            log: Mutex::new(Vec::new()),
            lfs: Mutex::new(HashMap::new()),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = conn else { continue };
                let s2 = s.clone();
                std::thread::spawn(move || {
                    let _ = handle_connection(&s2, stream);
                });
            }
            // The listener is dropped here: later connections are refused.
        });
        HubServer {
            shared,
            accept: Some(accept),
        }
    }

    /// The endpoint to give hf-hub (`http://127.0.0.1:{port}`, no trailing slash).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// All requests so far.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.log.lock().unwrap().clone()
    }

    pub fn request_count(&self) -> usize {
        self.shared.log.lock().unwrap().len()
    }

    pub fn clear_log(&self) {
        self.shared.log.lock().unwrap().clear();
    }

    /// The commit hash the server reports for a repo (derived from its files).
    pub fn commit_of(&self, repo_id: &str) -> Option<String> {
        repo_commit(&self.shared.root, repo_id)
    }

    /// Stop accepting connections and wait for the accept thread. Idempotent.
    pub fn stop(&mut self) {
        if let Some(h) = self.accept.take() {
            self.shared.stop.store(true, Ordering::SeqCst);
            // Wake the blocking accept().
            let _ = TcpStream::connect_timeout(&self.shared.addr, Duration::from_secs(1));
            let _ = h.join();
        }
    }
}

impl Drop for HubServer {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP handling

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn new(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
    fn header(mut self, k: &str, v: impl Into<String>) -> Self {
        self.headers.push((k.to_string(), v.into()));
        self
    }
    fn text(mut self, body: &str) -> Self {
        self.body = body.as_bytes().to_vec();
        self.header("Content-Type", "text/plain; charset=utf-8")
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        416 => "Range Not Satisfiable",
        _ => "Unknown",
    }
}

fn handle_connection(s: &Shared, stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line)? == 0 {
        return Ok(()); // e.g. the wake-up connection from stop()
    }
    let mut headers: HashMap<String, String> = HashMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    // Drain a request body if one was announced (hf-hub never sends one).
    if let Some(n) = headers
        .get("content-length")
        .and_then(|v| v.parse::<u64>().ok())
    {
        let mut sink = Vec::new();
        reader.by_ref().take(n).read_to_end(&mut sink)?;
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let range = headers.get("range").cloned();

    let resp = if method != "GET" && method != "HEAD" {
        Response::new(405).text("only GET and HEAD")
    } else {
        route(s, &target, range.as_deref())
    };
    s.log.lock().unwrap().push(LoggedRequest {
        method: method.clone(),
        path: target,
        range,
        status: resp.status,
    });

    let mut out = stream;
    let mut head = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
    for (k, v) in &resp.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        resp.body.len()
    ));
    out.write_all(head.as_bytes())?;
    if method != "HEAD" {
        out.write_all(&resp.body)?;
    }
    out.flush()?;
    let _ = out.shutdown(Shutdown::Write);
    Ok(())
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn safe_rel(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('/')
        && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

fn not_found(code: &str, msg: &str) -> Response {
    Response::new(404)
        .header("X-Error-Code", code)
        .header("X-Error-Message", msg)
        .text(msg)
}

fn route(s: &Shared, target: &str, range: Option<&str>) -> Response {
    let path = target.split('?').next().unwrap_or("");
    if let Some(etag) = path.strip_prefix("/__lfs/") {
        let file = s.lfs.lock().unwrap().get(etag).cloned();
        return match file {
            Some(f) => serve_file(&f, range, Vec::new()),
            None => not_found("EntryNotFound", "unknown LFS object"),
        };
    }
    let Some((repo_part, rest)) = path.trim_start_matches('/').split_once("/resolve/") else {
        return not_found(
            "RepoNotFound",
            "not a /{repo}/resolve/{revision}/{file} URL",
        );
    };
    let Some((rev_raw, file_raw)) = rest.split_once('/') else {
        return not_found("EntryNotFound", "missing file name");
    };
    let (Some(repo_id), Some(revision), Some(file)) = (
        percent_decode(repo_part),
        percent_decode(rev_raw),
        percent_decode(file_raw),
    ) else {
        return Response::new(400).text("bad percent-encoding");
    };
    if !safe_rel(&repo_id) || !safe_rel(&file) {
        return Response::new(400).text("bad path");
    }
    let repo_dir = s.root.join(&repo_id);
    let Some(commit) = repo_commit(&s.root, &repo_id) else {
        return not_found("RepoNotFound", "Repository not found");
    };
    if revision != "main" && revision != commit {
        return not_found("RevisionNotFound", "Invalid rev id").header("X-Repo-Commit", commit);
    }
    let f = repo_dir.join(&file);
    if !f.is_file() {
        return not_found("EntryNotFound", "Entry not found").header("X-Repo-Commit", commit);
    }
    let Ok(bytes) = std::fs::read(&f) else {
        return Response::new(404).text("unreadable");
    };
    let etag = etag_of(&bytes);
    if s.opts.lfs_redirect && file.ends_with(".safetensors") {
        s.lfs.lock().unwrap().insert(etag.clone(), f.clone());
        let location = format!("http://{}/__lfs/{}", s.addr, etag);
        return Response::new(302)
            .header("Location", location)
            .header("X-Repo-Commit", commit)
            .header("X-Linked-Etag", format!("\"{etag}\""))
            .header("X-Linked-Size", bytes.len().to_string())
            .header("ETag", format!("\"{}\"", &etag[..16]));
    }
    serve_bytes(
        bytes,
        range,
        vec![
            ("X-Repo-Commit".into(), commit),
            ("ETag".into(), format!("\"{etag}\"")),
        ],
    )
}

fn serve_file(f: &Path, range: Option<&str>, extra: Vec<(String, String)>) -> Response {
    match std::fs::read(f) {
        Ok(bytes) => {
            let etag = etag_of(&bytes);
            let mut extra = extra;
            extra.push(("ETag".into(), format!("\"{etag}\"")));
            serve_bytes(bytes, range, extra)
        }
        Err(_) => not_found("EntryNotFound", "unreadable"),
    }
}

/// 200 with the whole body, or 206 with the requested slice and `Content-Range`.
fn serve_bytes(bytes: Vec<u8>, range: Option<&str>, extra: Vec<(String, String)>) -> Response {
    let size = bytes.len() as u64;
    let mut resp = match range.and_then(parse_range) {
        None => {
            let mut r = Response::new(200);
            r.body = bytes;
            r
        }
        Some((start, end)) => {
            if size == 0 {
                Response::new(206).header("Content-Range", "bytes */0")
            } else if start >= size {
                Response::new(416).header("Content-Range", format!("bytes */{size}"))
            } else {
                let end = end.unwrap_or(size - 1).min(size - 1);
                if end < start {
                    Response::new(416).header("Content-Range", format!("bytes */{size}"))
                } else {
                    let mut r = Response::new(206)
                        .header("Content-Range", format!("bytes {start}-{end}/{size}"));
                    r.body = bytes[start as usize..=end as usize].to_vec();
                    r
                }
            }
        }
    };
    resp = resp
        .header("Accept-Ranges", "bytes")
        .header("Content-Type", "application/octet-stream");
    for (k, v) in extra {
        resp = resp.header(&k, v);
    }
    resp
}

/// `bytes=a-b` or `bytes=a-` → (a, Some(b) / None). Suffix and multi ranges are not supported.
fn parse_range(h: &str) -> Option<(u64, Option<u64>)> {
    let spec = h.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let start = a.trim().parse().ok()?;
    let end = if b.trim().is_empty() {
        None
    } else {
        Some(b.trim().parse().ok()?)
    };
    Some((start, end))
}

// ---------------------------------------------------------------------------------------------
// Hashes (not cryptographic; only need to be stable and distinct)

fn fnv1a(bytes: &[u8], seed: u64) -> u64 {
    let mut h = 0xcbf29ce484222325u64 ^ seed.wrapping_mul(0x9E3779B97F4A7C15);
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// A 64-hex-digit content hash (shaped like the hub's sha256 LFS etags).
pub fn etag_of(bytes: &[u8]) -> String {
    (0..4u64)
        .map(|i| format!("{:016x}", fnv1a(bytes, i + 1)))
        .collect()
}

/// A 40-hex-digit commit id for a repo folder, derived from its file names and contents.
pub fn repo_commit(root: &Path, repo_id: &str) -> Option<String> {
    let dir = root.join(repo_id);
    if !safe_rel(repo_id) || !dir.is_dir() {
        return None;
    }
    let mut files = Vec::new();
    collect_files(&dir, &dir, &mut files);
    files.sort();
    let mut acc = repo_id.as_bytes().to_vec();
    for rel in files {
        acc.extend_from_slice(rel.as_bytes());
        acc.push(0);
        acc.extend_from_slice(
            etag_of(&std::fs::read(dir.join(&rel)).unwrap_or_default()).as_bytes(),
        );
    }
    let h: String = (0..3u64)
        .map(|i| format!("{:016x}", fnv1a(&acc, 100 + i)))
        .collect();
    Some(h[..40].to_string())
}

fn collect_files(base: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_files(base, &p, out);
        } else if let Ok(rel) = p.strip_prefix(base) {
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A seeded tiny random GPT-2 repo in the HF layout

/// Shape of the tiny GPT-2 written by [`write_tiny_gpt2_repo`].
pub const TINY_N_EMBD: usize = 32;
pub const TINY_N_LAYER: usize = 2;
pub const TINY_N_HEAD: usize = 4;
pub const TINY_N_POSITIONS: usize = 16;
pub const TINY_VOCAB: usize = 260;

/// SplitMix64: a tiny deterministic PRNG.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    pub fn next_f32(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// GPT-2's byte → printable-char table, in GPT-2's vocabulary order.
pub fn gpt2_byte_chars() -> Vec<char> {
    let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    cs.into_iter().map(|c| char::from_u32(c).unwrap()).collect()
}

/// The tiny byte-level BPE: 256 byte tokens, 3 merges (`Ġt`, `he`, `Ġthe`) and `<|endoftext|>`
/// (id 259): 260 tokens.
pub fn tiny_tokenizer() -> tokenizers::Tokenizer {
    use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
    use tokenizers::models::bpe::BPE;
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::processors::byte_level::ByteLevel as ByteLevelProcessor;
    let mut vocab = tokenizers::models::bpe::Vocab::default();
    for (i, c) in gpt2_byte_chars().into_iter().enumerate() {
        vocab.insert(c.to_string(), i as u32);
    }
    let merges = vec![
        ("Ġ".to_string(), "t".to_string()),
        ("h".to_string(), "e".to_string()),
        ("Ġt".to_string(), "he".to_string()),
    ];
    vocab.insert("Ġt".into(), 256);
    vocab.insert("he".into(), 257);
    vocab.insert("Ġthe".into(), 258);
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .expect("tiny BPE");
    let mut tok = tokenizers::Tokenizer::new(bpe);
    tok.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tok.with_decoder(Some(ByteLevelDecoder::new(false, true, true)));
    tok.with_post_processor(Some(ByteLevelProcessor::new(false, false, true)));
    tok.add_special_tokens([tokenizers::AddedToken::from("<|endoftext|>", true)])
        .expect("special");
    tok
}

/// `(name, shape, data)` of every tensor of the tiny GPT-2, HF `GPT2LMHeadModel` naming
/// (Conv1D weights are `[in, out]`).
pub fn tiny_gpt2_tensors(seed: u64) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let d = TINY_N_EMBD;
    let mut rng = SplitMix64(seed);
    let mut out = Vec::new();
    let mut t = |name: String, shape: Vec<usize>, kind: u8| {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n)
            .map(|_| {
                let u = rng.next_f32();
                match kind {
                    b'w' => 0.2 * u,       // matrices
                    b'g' => 1.0 + 0.1 * u, // layer-norm gains
                    _ => 0.05 * u,         // biases
                }
            })
            .collect();
        out.push((name, shape, data));
    };
    t("wte.weight".into(), vec![TINY_VOCAB, d], b'w');
    t("wpe.weight".into(), vec![TINY_N_POSITIONS, d], b'w');
    for i in 0..TINY_N_LAYER {
        t(format!("h.{i}.ln_1.weight"), vec![d], b'g');
        t(format!("h.{i}.ln_1.bias"), vec![d], b'b');
        t(format!("h.{i}.attn.c_attn.weight"), vec![d, 3 * d], b'w');
        t(format!("h.{i}.attn.c_attn.bias"), vec![3 * d], b'b');
        t(format!("h.{i}.attn.c_proj.weight"), vec![d, d], b'w');
        t(format!("h.{i}.attn.c_proj.bias"), vec![d], b'b');
        t(format!("h.{i}.ln_2.weight"), vec![d], b'g');
        t(format!("h.{i}.ln_2.bias"), vec![d], b'b');
        t(format!("h.{i}.mlp.c_fc.weight"), vec![d, 4 * d], b'w');
        t(format!("h.{i}.mlp.c_fc.bias"), vec![4 * d], b'b');
        t(format!("h.{i}.mlp.c_proj.weight"), vec![4 * d, d], b'w');
        t(format!("h.{i}.mlp.c_proj.bias"), vec![d], b'b');
    }
    t("ln_f.weight".into(), vec![d], b'g');
    t("ln_f.bias".into(), vec![d], b'b');
    out
}

/// The tiny GPT-2's `config.json`.
pub fn tiny_gpt2_config() -> serde_json::Value {
    serde_json::json!({
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "activation_function": "gelu_new",
        "n_embd": TINY_N_EMBD,
        "n_layer": TINY_N_LAYER,
        "n_head": TINY_N_HEAD,
        "n_positions": TINY_N_POSITIONS,
        "n_ctx": TINY_N_POSITIONS,
        "n_inner": null,
        "vocab_size": TINY_VOCAB,
        "layer_norm_epsilon": 1e-5,
        "initializer_range": 0.02,
        "attn_pdrop": 0.1,
        "embd_pdrop": 0.1,
        "resid_pdrop": 0.1,
        "scale_attn_weights": true,
        "bos_token_id": 259,
        "eos_token_id": 259,
        "tie_word_embeddings": true,
        "torch_dtype": "float32"
    })
}

/// Write a seeded tiny random GPT-2 HF repo into `dir`: `config.json`, `model.safetensors`,
/// `tokenizer.json` and `tokenizer_config.json` (no `special_tokens_map.json`, like the real
/// `gpt2` repo). Same seed → same bytes.
pub fn write_tiny_gpt2_repo(dir: &Path, seed: u64) {
    std::fs::create_dir_all(dir).expect("create repo dir");
    let cfg = serde_json::to_string_pretty(&tiny_gpt2_config()).unwrap();
    std::fs::write(dir.join("config.json"), cfg).unwrap();

    let tensors = tiny_gpt2_tensors(seed);
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, d)| d.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| {
            (
                name.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), b)
                    .unwrap(),
            )
        })
        .collect();
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    let st = safetensors::tensor::serialize(views, Some(meta)).expect("serialize safetensors");
    std::fs::write(dir.join("model.safetensors"), st).unwrap();

    tiny_tokenizer()
        .save(dir.join("tokenizer.json"), false)
        .expect("save tokenizer.json");
    std::fs::write(
        dir.join("tokenizer_config.json"),
        r#"{"model_max_length": 16}"#,
    )
    .unwrap();
}
