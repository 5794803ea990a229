//! The OpenAI-compatible client against a mock chat-completions server on 127.0.0.1, written
//! here: answers, retries after errors, stalls and malformed bodies, clear errors when the
//! retries run out, the on-disk cache, the concurrency limit and the bearer key.
use saescope::llm::{ChatBackend, ChatMessage, ChatOptions, OpenAiClient};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the server does with one request.
#[derive(Clone, Debug)]
enum Reply {
    /// 200 with this assistant text (echoing the last user message after it).
    Ok(&'static str),
    /// This HTTP status with a short body.
    Status(u16),
    /// Wait this long before answering 200.
    Stall(Duration),
    /// 200 with a body that is not JSON.
    Garbage,
    /// 200 with JSON lacking `choices`.
    NoChoices,
}

struct Mock {
    url: String,
    hits: Arc<AtomicUsize>,
    in_flight_max: Arc<AtomicUsize>,
    auth: Arc<Mutex<Vec<Option<String>>>>,
}

/// A server answering the n-th request with `script[n]` (the last entry repeats).
fn serve(script: Vec<Reply>) -> Mock {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let in_flight_max = Arc::new(AtomicUsize::new(0));
    let auth = Arc::new(Mutex::new(Vec::new()));
    let (h, f, m, a) = (
        hits.clone(),
        in_flight.clone(),
        in_flight_max.clone(),
        auth.clone(),
    );
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let n = h.fetch_add(1, Ordering::SeqCst);
            let reply = script[n.min(script.len() - 1)].clone();
            let (f, m, a) = (f.clone(), m.clone(), a.clone());
            std::thread::spawn(move || {
                let now = f.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(now, Ordering::SeqCst);
                handle(stream, reply, &a);
                f.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    Mock {
        url,
        hits,
        in_flight_max,
        auth,
    }
}

fn handle(mut stream: TcpStream, reply: Reply, auth: &Mutex<Vec<Option<String>>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let (mut len, mut key) = (0usize, None);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("authorization:") {
            key = Some(line["authorization:".len()..].trim().to_string());
        }
    }
    auth.lock().unwrap().push(key);
    let mut body = vec![0u8; len];
    let _ = reader.read_exact(&mut body);
    let req: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let last = req["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_string();
    let ok = |text: String| {
        serde_json::json!({"choices": [{"message": {"role": "assistant", "content": text}}]})
            .to_string()
    };
    let (status, body) = match reply {
        Reply::Ok(t) => (200, ok(format!("{t} {last}"))),
        Reply::Status(s) => (s, "{\"error\": \"scripted\"}".to_string()),
        Reply::Stall(d) => {
            std::thread::sleep(d);
            (200, ok(format!("late {last}")))
        }
        Reply::Garbage => (200, "<html>not json".to_string()),
        Reply::NoChoices => (200, "{\"object\": \"chat.completion\"}".to_string()),
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn client(url: &str) -> OpenAiClient {
    OpenAiClient::new(url, "mock")
        .api_key_env("SAESCOPE_TEST_NO_SUCH_KEY")
        .timeout(Duration::from_millis(500))
        .retries(2, Duration::from_millis(10))
}

fn chat(s: &str) -> Vec<ChatMessage> {
    vec![ChatMessage::system("be brief"), ChatMessage::user(s)]
}

#[test]
fn answers_and_retries_through_errors_stalls_and_garbage() {
    let m = serve(vec![
        Reply::Status(500),
        Reply::Stall(Duration::from_secs(2)),
        Reply::Ok("fine"),
    ]);
    let got = client(&m.url)
        .complete(&chat("q1"), &ChatOptions::default())
        .unwrap();
    assert_eq!(got, "fine q1");
    assert_eq!(m.hits.load(Ordering::SeqCst), 3);

    let m = serve(vec![Reply::Garbage, Reply::NoChoices, Reply::Ok("ok")]);
    let got = client(&m.url)
        .complete(&chat("q2"), &ChatOptions::default())
        .unwrap();
    assert_eq!(got, "ok q2");
}

#[test]
fn clear_errors_when_retries_run_out_and_no_retry_on_a_client_error() {
    let m = serve(vec![Reply::Garbage]);
    let err = client(&m.url)
        .complete(&chat("q"), &ChatOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("malformed JSON") && err.contains("3 attempts"),
        "{err}"
    );
    assert_eq!(m.hits.load(Ordering::SeqCst), 3);

    let m = serve(vec![Reply::Status(404)]);
    let err = client(&m.url)
        .complete(&chat("q"), &ChatOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("HTTP 404") && err.contains("base_url"),
        "{err}"
    );
    assert_eq!(m.hits.load(Ordering::SeqCst), 1, "a 404 is not retried");

    let m = serve(vec![Reply::Status(401)]);
    let err = client(&m.url)
        .complete(&chat("q"), &ChatOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("SAESCOPE_TEST_NO_SUCH_KEY"), "{err}");

    let t = Instant::now();
    let m = serve(vec![Reply::Stall(Duration::from_secs(5))]);
    let err = client(&m.url)
        .complete(&chat("q"), &ChatOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("chat completion request to"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(4), "timeouts not applied");

    // Nothing listens: a connection error, not a panic.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = client(&format!("http://127.0.0.1:{port}/v1"))
        .complete(&chat("q"), &ChatOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("failed"), "{err}");
}

#[test]
fn the_cache_answers_a_rerun_without_requests() {
    let tmp = tempfile::tempdir().unwrap();
    let m = serve(vec![Reply::Ok("cached")]);
    let c = client(&m.url).cache_dir(tmp.path().join("cache"));
    let chats: Vec<_> = (0..5).map(|i| chat(&format!("q{i}"))).collect();
    let first: Vec<String> = c
        .complete_many(&chats, &ChatOptions::default())
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(m.hits.load(Ordering::SeqCst), 5);
    let again: Vec<String> = c
        .complete_many(&chats, &ChatOptions::default())
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(first, again);
    assert_eq!(
        m.hits.load(Ordering::SeqCst),
        5,
        "the rerun asked the server again"
    );
    // Other options are another request.
    let opts = ChatOptions {
        max_tokens: 5,
        ..Default::default()
    };
    c.complete(&chats[0], &opts).unwrap();
    assert_eq!(m.hits.load(Ordering::SeqCst), 6);
}

#[test]
fn many_requests_keep_order_and_the_concurrency_limit_and_send_the_key() {
    let m = serve(vec![Reply::Stall(Duration::from_millis(100))]);
    let chats: Vec<_> = (0..12).map(|i| chat(&format!("q{i}"))).collect();
    let c = client(&m.url).concurrency(3);
    let got = c.complete_many(&chats, &ChatOptions::default());
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.as_ref().unwrap(), &format!("late q{i}"));
    }
    let peak = m.in_flight_max.load(Ordering::SeqCst);
    assert!((2..=3).contains(&peak), "peak in flight {peak}");
    assert!(m.auth.lock().unwrap().iter().all(|k| k.is_none()));

    std::env::set_var("SAESCOPE_TEST_KEY_SET", "sk-test");
    let m = serve(vec![Reply::Ok("k")]);
    OpenAiClient::new(&m.url, "mock")
        .api_key_env("SAESCOPE_TEST_KEY_SET")
        .complete(&chat("q"), &ChatOptions::default())
        .unwrap();
    assert_eq!(m.auth.lock().unwrap()[0].as_deref(), Some("Bearer sk-test"));
}
