//! Hub resolution against a local hub server (tests/common/hub_server.rs): downloads into the
//! hub cache layout, cache reuse, offline mode, errors, and a hand-made cache.
//! No test touches process environment variables: every setting goes through `LoadOptions`.
mod common;

use common::hub_server::{self, HubServer, ServerOptions};
use saescope::model::hub::{fetch_model_files, resolve_alias};
use saescope::{Error, LoadOptions};
use std::path::Path;

fn opts(cache: &Path, endpoint: Option<String>, offline: bool) -> LoadOptions {
    LoadOptions {
        hub_cache_dir: Some(cache.to_path_buf()),
        hub_endpoint: endpoint,
        offline: Some(offline),
        revision: None,
        ..LoadOptions::default()
    }
}

/// A server root holding the tiny GPT-2 as repo `gpt2`.
fn tiny_root(seed: u64) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    hub_server::write_tiny_gpt2_repo(&root.path().join("gpt2"), seed);
    root
}

fn assert_same_bytes(a: &Path, b: &Path) {
    let x = std::fs::read(a).unwrap_or_else(|e| panic!("read {}: {e}", a.display()));
    let y = std::fs::read(b).unwrap_or_else(|e| panic!("read {}: {e}", b.display()));
    assert!(
        x == y,
        "{} and {} differ ({} vs {} bytes)",
        a.display(),
        b.display(),
        x.len(),
        y.len()
    );
}

/// hf-hub's HTTP client (ureq 2) takes ALL_PROXY / HTTPS_PROXY / HTTP_PROXY from the
/// environment and ignores NO_PROXY, so with a proxy set even 127.0.0.1 goes through it.
fn proxy_note() -> String {
    let set: Vec<&str> = [
        "ALL_PROXY",
        "all_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
    ]
    .into_iter()
    .filter(|k| std::env::var_os(k).is_some())
    .collect();
    if set.is_empty() {
        String::new()
    } else {
        format!(" (note: {set:?} set; hf-hub's ureq client ignores NO_PROXY and sends 127.0.0.1 requests to the proxy: unset them to run these tests)")
    }
}

fn resolve_requests(server: &HubServer) -> Vec<String> {
    server
        .requests()
        .into_iter()
        .map(|r| format!("{} {} {:?} -> {}", r.method, r.path, r.range, r.status))
        .collect()
}

#[test]
fn aliases() {
    for n in [
        "gpt2",
        "gpt2-small",
        "GPT2-Small",
        "gpt2_small",
        "openai-community/gpt2",
    ] {
        assert_eq!(resolve_alias(n), Some("gpt2"), "{n}");
    }
    assert_eq!(resolve_alias("gpt2-medium"), Some("gpt2-medium"));
    assert_eq!(resolve_alias("gpt2-large"), Some("gpt2-large"));
    assert_eq!(resolve_alias("gpt2-xl"), Some("gpt2-xl"));
    assert_eq!(resolve_alias("distilgpt2"), Some("distilgpt2"));
    assert_eq!(resolve_alias("distil-gpt2"), Some("distilgpt2"));
    assert_eq!(
        resolve_alias("smollm2-135m"),
        Some("HuggingFaceTB/SmolLM2-135M")
    );
    assert_eq!(
        resolve_alias("SmolLM2-135M-Instruct"),
        Some("HuggingFaceTB/SmolLM2-135M-Instruct")
    );
    assert_eq!(
        resolve_alias("huggingfacetb/smollm2-135m"),
        Some("HuggingFaceTB/SmolLM2-135M")
    );
    assert_eq!(resolve_alias("some-org/some-model"), None);
    assert_eq!(resolve_alias("gpt3"), None);
}

#[test]
fn download_cache_reuse_and_offline() {
    let root = tiny_root(7);
    let src = root.path().join("gpt2");
    let mut server = HubServer::start(root.path());
    let cache_tmp = tempfile::tempdir().unwrap();
    let cache = cache_tmp.path().join("hub");
    let online = opts(&cache, Some(server.endpoint()), false);

    // 1. First call downloads.
    let snap = fetch_model_files("gpt2", &online)
        .unwrap_or_else(|e| panic!("download from the local hub: {e}{}", proxy_note()));
    let commit = server.commit_of("gpt2").unwrap();
    assert_eq!(
        snap,
        cache.join("models--gpt2").join("snapshots").join(&commit)
    );
    assert_eq!(
        std::fs::read_to_string(cache.join("models--gpt2/refs/main"))
            .unwrap()
            .trim(),
        commit
    );
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        let p = snap.join(f);
        assert!(p.exists(), "{f} missing from {}", snap.display());
        assert!(
            std::fs::symlink_metadata(&p)
                .unwrap()
                .file_type()
                .is_symlink(),
            "{f} should link into blobs/"
        );
        let target = std::fs::canonicalize(&p).unwrap();
        assert!(
            target.starts_with(std::fs::canonicalize(cache.join("models--gpt2/blobs")).unwrap()),
            "{}",
            target.display()
        );
        assert_same_bytes(&p, &src.join(f));
    }
    assert!(
        !snap.join("special_tokens_map.json").exists(),
        "the repo has no special_tokens_map.json"
    );
    // hf-hub's protocol: a `bytes=0-0` metadata probe then a ranged download per file.
    let reqs = server.requests();
    let st: Vec<_> = reqs
        .iter()
        .filter(|r| r.path == "/gpt2/resolve/main/model.safetensors")
        .collect();
    assert_eq!(st.len(), 2, "{:#?}", resolve_requests(&server));
    assert_eq!(st[0].range.as_deref(), Some("bytes=0-0"));
    assert_eq!(st[0].status, 206);
    assert_eq!(st[1].range.as_deref(), Some("bytes=0-"));
    // The missing optional file was asked for once and answered 404.
    let missing: Vec<_> = reqs
        .iter()
        .filter(|r| r.path.ends_with("/special_tokens_map.json"))
        .collect();
    assert_eq!(missing.len(), 1);
    assert_eq!(missing[0].status, 404);
    assert!(cache
        .join("models--gpt2/.no_exist")
        .join(&commit)
        .join("special_tokens_map.json")
        .exists());

    // 2. Second call: everything comes from the cache, no request at all.
    server.clear_log();
    let snap2 = fetch_model_files("gpt2", &online).expect("second call");
    assert_eq!(snap2, snap);
    assert_eq!(
        server.request_count(),
        0,
        "cache not honoured: {:#?}",
        resolve_requests(&server)
    );

    // 3. Offline with the server stopped still resolves.
    server.stop();
    let snap3 = fetch_model_files("gpt2", &opts(&cache, Some(server.endpoint()), true))
        .expect("offline from cache");
    assert_eq!(snap3, snap);
    assert_same_bytes(
        &snap3.join("model.safetensors"),
        &src.join("model.safetensors"),
    );

    // 4. Offline, a repo that is not cached: the error names repo, file, cache dir and the fix.
    let err = fetch_model_files("gpt2-medium", &opts(&cache, None, true)).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Hub { .. }), "{err:?}");
    for want in [
        "gpt2-medium",
        "config.json",
        &cache.display().to_string(),
        "HF_HUB_OFFLINE",
    ] {
        assert!(
            msg.contains(want),
            "offline error should mention {want:?}: {msg}"
        );
    }

    // 5. Online with the server gone: a network error, not a panic, naming the repo/file.
    let fresh = cache_tmp.path().join("fresh");
    let err = fetch_model_files("gpt2", &opts(&fresh, Some(server.endpoint()), false)).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Hub { .. }), "{err:?}");
    assert!(
        msg.contains("gpt2/config.json") && msg.contains("offline"),
        "{msg}"
    );
}

#[test]
fn missing_repo_and_bad_names() {
    let root = tiny_root(1);
    let server = HubServer::start(root.path());
    let cache = tempfile::tempdir().unwrap();
    let o = opts(cache.path(), Some(server.endpoint()), false);
    let err = fetch_model_files("nobody/no-such-model", &o).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(&err, Error::Hub { repo, file, .. } if repo == "nobody/no-such-model" && file == "config.json"),
        "{err:?}"
    );
    assert!(
        msg.contains("404") && msg.contains("nobody/no-such-model"),
        "{msg}"
    );
    // Nothing half-made in the cache for the missing repo's snapshot.
    assert!(!cache
        .path()
        .join("models--nobody--no-such-model/snapshots")
        .exists());

    // A revision the server does not have.
    let mut o2 = o.clone();
    o2.revision = Some("v9.9".into());
    let err = fetch_model_files("gpt2", &o2).unwrap_err();
    assert!(err.to_string().contains("v9.9"), "{err}");

    for bad in ["", "../etc", "a/b/c", "has space", "/abs"] {
        let err = fetch_model_files(bad, &o).unwrap_err();
        assert!(
            matches!(err, Error::UnknownModel { .. }),
            "{bad:?}: {err:?}"
        );
    }
    assert_eq!(
        server
            .requests()
            .iter()
            .filter(|r| r.path.contains("etc"))
            .count(),
        0
    );
}

#[test]
fn repo_without_weights_is_a_clear_error() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("org/noweights");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), "{}").unwrap();
    std::fs::write(dir.join("pytorch_model.bin"), b"not used").unwrap();
    let server = HubServer::start(root.path());
    let cache = tempfile::tempdir().unwrap();
    let err = fetch_model_files(
        "org/noweights",
        &opts(cache.path(), Some(server.endpoint()), false),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("model.safetensors") && msg.contains("safetensors"),
        "{msg}"
    );
}

#[test]
fn sharded_weights_and_lfs_redirects() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("org/sharded");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), r#"{"model_type":"gpt2"}"#).unwrap();
    let shard1: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    let shard2: Vec<u8> = (0..3000u32).map(|i| (i * 13 % 253) as u8).collect();
    std::fs::write(dir.join("model-00001-of-00002.safetensors"), &shard1).unwrap();
    std::fs::write(dir.join("model-00002-of-00002.safetensors"), &shard2).unwrap();
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        r#"{"metadata":{"total_size":8000},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors","c":"model-00001-of-00002.safetensors"}}"#,
    )
    .unwrap();
    std::fs::write(dir.join("tokenizer.json"), "{}").unwrap();
    let server = HubServer::start_with(root.path(), ServerOptions { lfs_redirect: true });
    let cache = tempfile::tempdir().unwrap();
    let o = opts(cache.path(), Some(server.endpoint()), false);
    let snap = fetch_model_files("org/sharded", &o).unwrap_or_else(|e| {
        panic!(
            "sharded download through LFS redirects: {e}{}",
            proxy_note()
        )
    });
    assert!(snap.starts_with(cache.path().join("models--org--sharded/snapshots")));
    for f in [
        "config.json",
        "model.safetensors.index.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "tokenizer.json",
    ] {
        assert_same_bytes(&snap.join(f), &dir.join(f));
    }
    // The LFS blobs are named after the linked etag, like on the hub.
    let etag = hub_server::etag_of(&shard1);
    assert!(cache
        .path()
        .join("models--org--sharded/blobs")
        .join(&etag)
        .exists());
    let reqs = server.requests();
    assert!(
        reqs.iter()
            .any(|r| r.path.starts_with("/__lfs/") && r.status == 206),
        "{:#?}",
        resolve_requests(&server)
    );
    assert!(reqs
        .iter()
        .any(|r| r.path.ends_with("/model.safetensors") && r.status == 404));

    // Second call: no network, including the 404'd single-file weights (remembered in .no_exist).
    server.clear_log();
    assert_eq!(fetch_model_files("org/sharded", &o).unwrap(), snap);
    assert_eq!(
        server.request_count(),
        0,
        "{:#?}",
        resolve_requests(&server)
    );
    // Offline too.
    assert_eq!(
        fetch_model_files("org/sharded", &opts(cache.path(), None, true)).unwrap(),
        snap
    );
}

#[test]
fn resume_partial_download() {
    // hf-hub resumes a `.part` file with `Range: bytes={len}-`; the server must honour it.
    let root = tiny_root(3);
    let src = root.path().join("gpt2");
    let server = HubServer::start(root.path());
    let cache = tempfile::tempdir().unwrap();
    let o = opts(cache.path(), Some(server.endpoint()), false);
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let etag = hub_server::etag_of(&bytes);
    let blobs = cache.path().join("models--gpt2/blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(blobs.join(format!("{etag}.part")), &bytes[..1000]).unwrap();
    let snap = fetch_model_files("gpt2", &o).unwrap();
    assert_same_bytes(
        &snap.join("model.safetensors"),
        &src.join("model.safetensors"),
    );
    assert!(server
        .requests()
        .iter()
        .any(|r| r.range.as_deref() == Some("bytes=1000-") && r.status == 206));
}

/// A hub cache written by hand (refs/main + snapshots/<hash>/files), no server at all.
#[test]
fn hand_made_cache_resolves_offline() {
    let cache = tempfile::tempdir().unwrap();
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let repo_dir = cache.path().join("models--someorg--tiny");
    let snap = repo_dir.join("snapshots").join(commit);
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo_dir.join("refs")).unwrap();
    std::fs::write(repo_dir.join("refs/main"), commit).unwrap();
    hub_server::write_tiny_gpt2_repo(&snap, 11);
    std::fs::remove_file(snap.join("tokenizer_config.json")).unwrap();

    // Offline (no endpoint at all): resolves purely from the cache.
    let got = fetch_model_files("someorg/tiny", &opts(cache.path(), None, true)).unwrap();
    assert_eq!(got, snap);
    // Online with an unreachable endpoint also works: the required files are cached, and the
    // optional ones that cannot be fetched are skipped.
    let dead = "http://127.0.0.1:9".to_string();
    assert_eq!(
        fetch_model_files("someorg/tiny", &opts(cache.path(), Some(dead), false)).unwrap(),
        snap
    );

    // A revision given as the commit hash works without a refs/<hash> file.
    let mut o = opts(cache.path(), None, true);
    o.revision = Some(commit.to_string());
    assert_eq!(fetch_model_files("someorg/tiny", &o).unwrap(), snap);

    // Offline and a required file missing from the snapshot: a clear error.
    std::fs::remove_file(snap.join("model.safetensors")).unwrap();
    let err = fetch_model_files("someorg/tiny", &opts(cache.path(), None, true)).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("someorg/tiny")
            && msg.contains("model.safetensors")
            && msg.contains("HF_HUB_OFFLINE"),
        "{msg}"
    );
}

/// End to end: `from_pretrained_with("gpt2", ..)` downloads the tiny GPT-2 from the local hub
/// into a temp cache, loads it, and `forward` gives finite logits of shape [1, p, 260].
#[test]
fn from_pretrained_through_the_local_hub() {
    use saescope::HookedModel;
    let root = tiny_root(42);
    let mut server = HubServer::start_with(root.path(), ServerOptions { lfs_redirect: true });
    let cache = tempfile::tempdir().unwrap();
    let o = opts(cache.path(), Some(server.endpoint()), false);
    let model = HookedModel::from_pretrained_with("gpt2-small", &o)
        .unwrap_or_else(|e| panic!("load the tiny gpt2 through the hub: {e}{}", proxy_note()));
    assert!(server.request_count() > 0);

    let tok = model.tokenizer().expect("tokenizer.json came along");
    assert_eq!(tok.vocab_size(), hub_server::TINY_VOCAB);
    let ids = tok.encode(" the cat sat", true).unwrap();
    assert_eq!(ids[0], 259, "GPT-2 style BOS = <|endoftext|>");
    let p = ids.len();
    let tokens = saescope::Tensor::new(ids.as_slice(), &saescope::Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let logits = model.forward(&tokens).unwrap();
    assert_eq!(logits.dims(), &[1, p, hub_server::TINY_VOCAB]);
    let v: Vec<f32> = logits.flatten_all().unwrap().to_vec1().unwrap();
    assert!(v.iter().all(|x| x.is_finite()), "non-finite logits");
    assert!(v.iter().any(|x| *x != 0.0));

    // Offline with the server stopped: the same model loads from the cache alone.
    server.stop();
    let again = HookedModel::from_pretrained_with("gpt2", &opts(cache.path(), None, true))
        .expect("offline load");
    let logits2 = again.forward(&tokens).unwrap();
    let v2: Vec<f32> = logits2.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(v, v2);
}
