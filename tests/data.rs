//! Datasets, SAELens packing, resumable row streams, hub datasets through the local hub server.
mod common;

use common::hub_server::HubServer;
use saescope::data::{
    default_corpus_dir, held_out_sources, pack, CorpusSplit, Document, PackOptions, RowStream,
    SeparatorToken, TextDataset, HELD_OUT_DOCUMENTS, HELD_OUT_SHUFFLE_SEED,
};
use saescope::{LoadOptions, Tok};
use std::path::Path;
use std::sync::Arc;

fn opts(ctx: usize, bbt: Option<u32>, bst: Option<u32>, sep: Option<u32>) -> PackOptions {
    PackOptions {
        context_size: ctx,
        begin_batch_token_id: bbt,
        begin_sequence_token_id: bst,
        sequence_separator_token_id: sep,
        disable_concat_sequences: false,
    }
}

fn docs() -> Vec<Vec<u32>> {
    vec![vec![1, 2, 3], vec![4, 5, 6, 7, 8, 9], vec![10, 11, 12, 13]]
}

/// Expected rows were produced by SAELens 6.x's `concat_and_batch_sequences` itself
/// (`.venv-golden`), and checked by hand for the first case.
#[test]
fn packing_matches_saelens() {
    // BOS = separator = 0 (SAELens's ActivationsStore default): every row starts with BOS,
    // documents are joined by BOS, a row may end with the separator.
    let rows = pack(
        vec![vec![1, 2, 3], vec![4, 5, 6, 7, 8, 9], vec![10]],
        &opts(5, Some(0), None, Some(0)),
    )
    .unwrap();
    assert_eq!(
        rows,
        vec![
            vec![0, 1, 2, 3, 0],
            vec![0, 4, 5, 6, 7],
            vec![0, 8, 9, 0, 10]
        ]
    );
    // Documents that already start with BOS get no extra BOS / separator; the partial last
    // row is dropped.
    let rows = pack(
        vec![vec![0, 1, 2], vec![0, 3]],
        &opts(4, Some(0), None, Some(0)),
    )
    .unwrap();
    assert_eq!(rows, vec![vec![0, 1, 2, 0]]);
    // No separator.
    let rows = pack(docs(), &opts(4, Some(0), None, None)).unwrap();
    assert_eq!(
        rows,
        vec![
            vec![0, 1, 2, 3],
            vec![0, 4, 5, 6],
            vec![0, 7, 8, 9],
            vec![0, 10, 11, 12]
        ]
    );
    // prepend_bos = false, separator 99.
    let rows = pack(docs(), &opts(4, None, None, Some(99))).unwrap();
    assert_eq!(
        rows,
        vec![vec![1, 2, 3, 99], vec![4, 5, 6, 7], vec![8, 9, 99, 10]]
    );
    // begin_sequence_token as well (the pending-sequence-start logic).
    let rows = pack(docs(), &opts(4, Some(0), Some(7), Some(99))).unwrap();
    assert_eq!(
        rows,
        vec![
            vec![0, 7, 1, 2],
            vec![0, 3, 99, 7],
            vec![0, 4, 5, 6],
            vec![0, 7, 8, 9],
            vec![0, 7, 10, 11]
        ]
    );
    // disable_concat_sequences: one BOS-prefixed row per long-enough document.
    let mut o = opts(4, Some(0), None, None);
    o.disable_concat_sequences = true;
    let mut d = docs();
    d.push(vec![]);
    let rows = pack(d, &o).unwrap();
    assert_eq!(
        rows,
        vec![vec![0, 1, 2, 3], vec![0, 4, 5, 6], vec![0, 10, 11, 12]]
    );
    // Too small a context is an error (SAELens would loop forever).
    assert!(pack(docs(), &opts(1, Some(0), Some(7), None)).is_err());
}

#[test]
fn row_stream_matches_pack_and_resumes() {
    // Text documents through a tiny word-level tokenizer.
    let tok = tiny_tok();
    let texts: Vec<String> = (0..40)
        .map(|i| {
            (0..(3 + (i * 7) % 11))
                .map(|j| format!("w{}", (i + j) % 20))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let ds = Arc::new(TextDataset::from_texts(texts.clone()));
    let o = PackOptions::saelens(&tok, 8, true, Some(SeparatorToken::Bos), false).unwrap();
    assert_eq!(o.begin_batch_token_id, tok.bos_id);
    let token_docs: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| tok.encode(t, false).unwrap())
        .collect();
    let expect = pack(token_docs, &o).unwrap();
    assert!(expect.len() > 10);

    let mut s = RowStream::new(ds.clone(), Some(tok.clone()), o.clone(), None).unwrap();
    let got: Vec<Vec<u32>> = (0..expect.len()).map(|_| s.next_row().unwrap()).collect();
    assert_eq!(got, expect);
    // The next epoch starts afresh (the partial row is dropped, as SAELens restarts).
    assert_eq!(s.next_row().unwrap(), expect[0]);
    assert_eq!(s.epoch(), 1);

    // Resume mid-document gives the identical continuation.
    let mut a = RowStream::new(ds.clone(), Some(tok.clone()), o.clone(), Some(3)).unwrap();
    for _ in 0..7 {
        a.next_row().unwrap();
    }
    let st = a.state();
    let st: saescope::data::RowStreamState =
        serde_json::from_str(&serde_json::to_string(&st).unwrap()).unwrap();
    let cont: Vec<Vec<u32>> = (0..60).map(|_| a.next_row().unwrap()).collect();
    let mut b = RowStream::new(ds.clone(), Some(tok.clone()), o.clone(), Some(3)).unwrap();
    b.restore(st).unwrap();
    let cont_b: Vec<Vec<u32>> = (0..60).map(|_| b.next_row().unwrap()).collect();
    assert_eq!(cont, cont_b);

    // Shuffling is seeded: same seed → same rows, other seed → other rows, no seed → pack().
    let rows = |seed| {
        let mut s = RowStream::new(ds.clone(), Some(tok.clone()), o.clone(), seed).unwrap();
        (0..10).map(|_| s.next_row().unwrap()).collect::<Vec<_>>()
    };
    assert_eq!(rows(Some(1)), rows(Some(1)));
    assert_ne!(rows(Some(1)), rows(Some(2)));
    assert_eq!(rows(None), expect[..10].to_vec());
}

/// A word-level tokenizer over `w0..w19` with `<bos>` = 0.
fn tiny_tok() -> Tok {
    let mut vocab = serde_json::Map::new();
    vocab.insert("<bos>".into(), 0.into());
    vocab.insert("[UNK]".into(), 1.into());
    for i in 0..20 {
        vocab.insert(format!("w{i}"), (i + 2).into());
    }
    let json = serde_json::json!({
        "version": "1.0",
        "truncation": null, "padding": null,
        "added_tokens": [{"id": 0, "content": "<bos>", "single_word": false, "lstrip": false,
                          "rstrip": false, "normalized": false, "special": true}],
        "normalizer": null,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"}
    });
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("tokenizer.json");
    std::fs::write(&p, json.to_string()).unwrap();
    let mut t = Tok::from_file(&p).unwrap();
    t.bos_id = Some(0);
    t.eos_id = Some(0);
    t
}

#[test]
fn loads_dirs_and_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("sub")).unwrap();
    std::fs::write(d.join("a.txt"), "alpha text").unwrap();
    std::fs::write(d.join("sub/b.md"), "beta").unwrap();
    std::fs::write(d.join(".hidden"), "skip me").unwrap();
    std::fs::write(
        d.join("c.jsonl"),
        "{\"text\": \"gamma\", \"id\": 1}\n\n{\"text\": \"delta\"}\n",
    )
    .unwrap();
    let ds = TextDataset::from_dir(d, None).unwrap();
    let texts: Vec<&str> = ds
        .docs()
        .iter()
        .map(|x| match x {
            Document::Text(s) => s.as_str(),
            _ => panic!(),
        })
        .collect();
    assert_eq!(texts, vec!["alpha text", "gamma", "delta", "beta"]);

    // A chosen field, token fields (SAELens's detection order), bad lines.
    let j = d.join("x.jsonl");
    std::fs::write(&j, "{\"body\": \"one\"}\n{\"body\": \"two\"}\n").unwrap();
    let ds = TextDataset::from_jsonl(&j, Some("body")).unwrap();
    assert_eq!(ds.len(), 2);
    let e = TextDataset::from_jsonl(&j, None).unwrap_err().to_string();
    assert!(
        e.contains("tokens / input_ids / text") && e.contains("body"),
        "{e}"
    );
    let e = TextDataset::from_jsonl(&j, Some("text"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no field `text`") && e.contains(":1"), "{e}");
    std::fs::write(&j, "{\"input_ids\": [5, 6, 7], \"text\": \"ignored\"}\n").unwrap();
    let ds = TextDataset::from_jsonl(&j, None).unwrap();
    assert_eq!(ds.docs(), &[Document::Tokens(vec![5, 6, 7])]);
    assert!(ds.is_tokenized());
    std::fs::write(&j, "{\"text\": \"ok\"}\nnot json\n").unwrap();
    let e = TextDataset::from_jsonl(&j, None).unwrap_err().to_string();
    assert!(
        e.contains("x.jsonl:2") && e.contains("not valid JSON"),
        "{e}"
    );

    // `load` dispatch.
    let o = LoadOptions::default();
    assert_eq!(
        TextDataset::load(d.join("a.txt").to_str().unwrap(), None, &o)
            .unwrap()
            .len(),
        1
    );
    let e = TextDataset::load("/no/such/place", None, &o)
        .unwrap_err()
        .to_string();
    assert!(e.contains("neither"), "{e}");
}

#[test]
fn missing_corpus_says_how_to_build_it() {
    let dir = tempfile::tempdir().unwrap();
    let e = TextDataset::from_corpus_dir(dir.path().join("corpus"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("scripts/setup_corpus.sh"), "{e}");
}

#[test]
fn pretokenized_rows_are_truncated() {
    let ds = Arc::new(TextDataset::from_token_rows(vec![
        vec![9, 1, 2, 3, 4],
        vec![9, 5, 6, 7, 8],
    ]));
    let o = opts(3, Some(9), None, Some(9));
    let mut s = RowStream::new(ds, None, o, None).unwrap();
    assert_eq!(s.next_row().unwrap(), vec![9, 1, 2]);
    assert_eq!(s.next_row().unwrap(), vec![9, 5, 6]);
    assert_eq!(s.next_row().unwrap(), vec![9, 1, 2]);
}

#[test]
fn hub_dataset_through_local_server() {
    let root = tempfile::tempdir().unwrap();
    let repo = root.path().join("datasets/someorg/tinytext");
    std::fs::create_dir_all(repo.join("data")).unwrap();
    std::fs::write(
        repo.join("data/train.jsonl"),
        "{\"text\": \"first doc\"}\n{\"text\": \"second doc\"}\n",
    )
    .unwrap();
    std::fs::write(repo.join("notes.txt"), "plain text file").unwrap();
    let mut server = HubServer::start(root.path());
    let cache = tempfile::tempdir().unwrap();
    let endpoint = server.endpoint();
    let lo = |offline: bool| LoadOptions {
        hub_cache_dir: Some(cache.path().to_path_buf()),
        hub_endpoint: Some(endpoint.clone()),
        offline: Some(offline),
        ..Default::default()
    };
    let ds = TextDataset::from_hub(
        "someorg/tinytext",
        &["data/train.jsonl", "notes.txt"],
        None,
        &lo(false),
    )
    .unwrap();
    assert_eq!(
        ds.docs(),
        &[
            Document::Text("first doc".into()),
            Document::Text("second doc".into()),
            Document::Text("plain text file".into())
        ]
    );
    assert!(cache
        .path()
        .join("datasets--someorg--tinytext/snapshots")
        .is_dir());
    assert!(server.request_count() > 0);
    // The spec form, then offline from the cache with the server gone.
    let ds2 = TextDataset::load("hub:someorg/tinytext:data/train.jsonl", None, &lo(false)).unwrap();
    assert_eq!(ds2.len(), 2);
    server.stop();
    let ds3 =
        TextDataset::from_hub("someorg/tinytext", &["data/train.jsonl"], None, &lo(true)).unwrap();
    assert_eq!(ds3.len(), 2);
    // Missing files: a clear error naming the file.
    let e = TextDataset::from_hub("someorg/tinytext", &["nope.jsonl"], None, &lo(true))
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope.jsonl") && e.contains("offline"), "{e}");
    let e = TextDataset::from_hub("bad repo!", &["x"], None, &lo(true))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a valid hub dataset id"), "{e}");
}

fn smollm2_tok() -> Option<Tok> {
    let p = saescope::model::default_data_dir().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !p.exists() {
        eprintln!("skipping: {} missing (scripts/fetch_model.sh)", p.display());
        return None;
    }
    Some(Tok::from_gguf_file(&p).unwrap())
}

/// The default corpus (when built) loads, is mixed, and packs to BOS-first rows with SmolLM2.
#[test]
fn default_corpus_packs_with_smollm2() {
    let (Some(tok), true) = (
        smollm2_tok(),
        default_corpus_dir().join(".complete").exists(),
    ) else {
        eprintln!("skipping: default corpus not built (scripts/setup_corpus.sh)");
        return;
    };
    let ds = Arc::new(TextDataset::default_corpus().unwrap());
    assert!(ds.len() > 10_000, "{}", ds.len());
    assert!(ds.text_bytes() > 20_000_000);
    let o = PackOptions::saelens(&tok, 128, true, Some(SeparatorToken::Bos), false).unwrap();
    let bos = tok.bos_id.unwrap();
    let mut s = RowStream::new(ds, Some(tok), o, None).unwrap();
    for _ in 0..50 {
        let r = s.next_row().unwrap();
        assert_eq!(r.len(), 128);
        assert_eq!(r[0], bos);
    }
}

/// The held-out slice is the tail of the shuffle the shipped SAE's activations were cached in
/// (seed 42, epoch 0), and the 2 M tokens it cached end long before it: the shipped SAE never
/// trained on a held-out document. The train and held-out splits partition the corpus.
/// `SAESCOPE_WRITE_HELDOUT=1` rewrites `data/corpus.heldout.txt` from the rule.
#[test]
fn held_out_slice_was_never_trained_on() {
    let (Some(tok), true) = (
        smollm2_tok(),
        default_corpus_dir().join(".complete").exists(),
    ) else {
        eprintln!("skipping: default corpus not built (scripts/setup_corpus.sh)");
        return;
    };
    let all = TextDataset::default_corpus().unwrap();
    let n = all.len();
    let perm =
        saescope::rng::permutation(n, saescope::rng::derive_seed(HELD_OUT_SHUFFLE_SEED, &[0]));
    let src = |i: u32| all.source(i as usize).unwrap().to_string();
    let mut tail: Vec<String> = perm[n - HELD_OUT_DOCUMENTS..]
        .iter()
        .map(|&i| src(i))
        .collect();
    tail.sort();
    if std::env::var_os("SAESCOPE_WRITE_HELDOUT").is_some() {
        let mut text = format!(
            "# The held-out slice of saescope's default corpus: the last {HELD_OUT_DOCUMENTS} documents of the corpus\n\
             # ({n} documents) shuffled with seed {HELD_OUT_SHUFFLE_SEED}, epoch 0 (saescope::data::CorpusSplit).\n\
             # Written by SAESCOPE_WRITE_HELDOUT=1 cargo test --release --test data held_out_slice\n"
        );
        for t in &tail {
            text.push_str(t);
            text.push('\n');
        }
        std::fs::write(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("data/corpus.heldout.txt"),
            text,
        )
        .unwrap();
    }
    let held = held_out_sources();
    assert_eq!(held.len(), HELD_OUT_DOCUMENTS);
    // Debian revisions of the same upstream release keep the source ids.
    let ids: std::collections::HashSet<String> = (0..n as u32).map(src).collect();
    let missing: Vec<_> = held.iter().filter(|h| !ids.contains(**h)).take(5).collect();
    assert!(
        missing.is_empty(),
        "held-out documents absent from this corpus: {missing:?}"
    );
    let reference_docs = 15446; // data/corpus.manifest.json
    if n == reference_docs {
        let listed: Vec<&str> = {
            let mut v: Vec<&str> = held.iter().copied().collect();
            v.sort();
            v
        };
        assert_eq!(
            tail, listed,
            "data/corpus.heldout.txt is not the rule's tail"
        );
    }
    // Replay the shipped SAE's cache order: rows of 128 (BOS first, BOS between documents),
    // 2 M tokens without special tokens need fewer than 2_000_000 / 100 rows.
    let first_held = perm
        .iter()
        .position(|&i| held.contains(all.source(i as usize).unwrap()))
        .unwrap();
    let o = PackOptions::saelens(&tok, 128, true, Some(SeparatorToken::Bos), false).unwrap();
    let mut s = RowStream::new(
        Arc::new(all.clone()),
        Some(tok),
        o,
        Some(HELD_OUT_SHUFFLE_SEED),
    )
    .unwrap();
    s.next_rows(2_000_000 / 100).unwrap();
    let read = s.state().next_doc;
    assert!(
        read < first_held,
        "the shipped SAE's stream read {read} documents; the first held-out one is at {first_held}"
    );
    eprintln!("shipped SAE's 2 M tokens read documents 0..{read} of the seed-42 order; held out: {first_held}..{n}");
    // The splits partition the corpus.
    let train = TextDataset::default_corpus_split(CorpusSplit::Train).unwrap();
    let heldout = TextDataset::load("default:heldout", None, &LoadOptions::default()).unwrap();
    assert_eq!(heldout.len(), HELD_OUT_DOCUMENTS);
    assert_eq!(train.len() + heldout.len(), n);
    assert!((0..heldout.len()).all(|i| held.contains(heldout.source(i).unwrap())));
    assert!((0..train.len()).all(|i| !held.contains(train.source(i).unwrap())));
}

/// Token count of the default corpus with the SmolLM2 tokenizer (slow: `--ignored`).
#[test]
#[ignore]
fn default_corpus_token_count() {
    let Some(tok) = smollm2_tok() else { return };
    let ds = TextDataset::default_corpus().unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("data/corpus.manifest.json"))
            .unwrap(),
    )
    .unwrap();
    let mut by_pkg: std::collections::BTreeMap<String, usize> = Default::default();
    let t0 = std::time::Instant::now();
    let mut total = 0usize;
    // Sources are in the JSONL `source` field; re-read the shards for them.
    for entry in std::fs::read_dir(default_corpus_dir()).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().and_then(|e| e.to_str()) != Some("jsonl") {
            continue;
        }
        for line in std::fs::read_to_string(&p).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let n = tok
                .encode(v["text"].as_str().unwrap(), false)
                .unwrap()
                .len();
            let pkg = v["source"]
                .as_str()
                .unwrap()
                .split(':')
                .next()
                .unwrap()
                .to_string();
            *by_pkg.entry(pkg).or_default() += n;
            total += n;
        }
    }
    eprintln!(
        "default corpus: {} documents, {total} SmolLM2 tokens ({:.1}s): {by_pkg:?}; manifest totals {}",
        ds.len(),
        t0.elapsed().as_secs_f64(),
        manifest["totals"]
    );
    assert!(total >= 5_000_000, "{total}");
}
