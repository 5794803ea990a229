//! `saescope autointerp` end to end against a chat-completions server on 127.0.0.1 written
//! here (it fails its first request, then explains every latent as code and answers each
//! scorer chat with a list of the right length): delphi's JSONL records and folder layout,
//! the baselines, and a rerun that sends no request.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

fn serve() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let n = h.fetch_add(1, Ordering::SeqCst);
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; len];
            let _ = reader.read_exact(&mut body);
            let req: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let msgs = req["messages"].as_array().cloned().unwrap_or_default();
            let text_of = |m: &serde_json::Value| m["content"].as_str().unwrap_or("").to_string();
            // The explainer's chat ends with the prefill, after the documents.
            let explaining = msgs
                .iter()
                .any(|m| text_of(m).starts_with("The activating documents"));
            let text = if explaining {
                "This neuron activates on program code.".to_string()
            } else {
                let content = msgs.last().map(text_of).unwrap_or_default();
                let k = content
                    .lines()
                    .filter(|l| l.starts_with("Example "))
                    .count();
                format!("{:?}", vec![1; k])
            };
            let (status, body) = if n == 0 {
                (500, "{\"error\": \"warming up\"}".to_string())
            } else {
                let c = serde_json::json!({"choices": [{"message": {"role": "assistant", "content": text}}]});
                (200, c.to_string())
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, hits)
}

fn run(url: &str, out: &std::path::Path, delphi: &std::path::Path) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_saescope"))
        .args(["autointerp", "--latents", "2989,192", "--tokens", "8192"])
        .args([
            "--n-test",
            "10",
            "--n-not-active",
            "10",
            "--min-examples",
            "5",
        ])
        .args([
            "--base-url",
            url,
            "--api-key-env",
            "SAESCOPE_TEST_NO_SUCH_KEY",
        ])
        .arg("--out")
        .arg(out)
        .arg("--delphi-dir")
        .arg(delphi)
        .args(["--baselines", "--quiet"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    stdout
}

#[test]
fn autointerp_against_a_server_writes_delphi_records_and_resumes() {
    let (url, hits) = serve();
    let dir = tempfile::tempdir().unwrap();
    let (out, delphi) = (dir.path().join("ai.jsonl"), dir.path().join("delphi"));
    let stdout = run(&url, &out, &delphi);
    // Per latent: one explanation and 4 + 4 scorer chats; plus the first, failed request.
    assert_eq!(hits.load(Ordering::SeqCst), 1 + 2 * 9, "{stdout}");
    assert!(stdout.contains("program code"), "{stdout}");
    // Answering "yes" to everything: balanced accuracy exactly 0.5.
    assert!(
        stdout.contains("detection: balanced accuracy 0.500"),
        "{stdout}"
    );
    assert!(stdout.contains("top-5-tokens baseline"), "{stdout}");
    assert!(stdout.contains("random baseline"), "{stdout}");
    let lines = std::fs::read_to_string(&out).unwrap();
    assert_eq!(lines.lines().count(), 2);
    let rec: serde_json::Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert_eq!(rec["module"], "blocks.15.hook_resid_post");
    assert_eq!(rec["scores"]["detection"].as_array().unwrap().len(), 20);
    assert!(delphi
        .join("explanations/blocks.15.hook_resid_post_latent2989.txt")
        .exists());
    assert!(delphi
        .join("scores/fuzz/blocks.15.hook_resid_post_latent192.txt")
        .exists());
    // The rerun reads the records back and asks the server nothing.
    run(&url, &out, &delphi);
    assert_eq!(hits.load(Ordering::SeqCst), 19);
}
