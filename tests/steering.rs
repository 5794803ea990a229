//! Steering generation with SAE latents and patch scoping (`saescope::analysis`).
use saescope::analysis::{
    compare_steering, generate_patch_scoping_explanation, generate_with_steering, steering_vector,
    PatchScopingOptions, SteerOptions,
};
use saescope::model::GenerateOptions;
use saescope::{Error, HookedModel, IndexOp, NamesFilter, Sae, SaeConfig, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

mod common;
use common::tensors::max_abs_diff;

fn fixture_sae() -> Sae {
    let p: PathBuf =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sae/saes/smollm2_standard_l10");
    Sae::load_from_disk(&p).unwrap()
}
fn smollm2() -> HookedModel {
    HookedModel::from_pretrained("smollm2").unwrap()
}

const HOOK: &str = "blocks.8.hook_resid_pre";
const DOG_TEXTS: [&str; 4] = [
    "My dog loves to fetch the ball and bark at the mailman.",
    "The puppy wagged its tail and licked my hand.",
    "Dogs are loyal pets; my golden retriever sleeps by the door.",
    "We walked the dog in the park and he chased a squirrel.",
];
const OTHER_TEXTS: [&str; 4] = [
    "The committee will publish the quarterly budget report on Monday.",
    "Add two cups of flour and stir the mixture until smooth.",
    "The train to the city leaves from platform four at noon.",
    "She studied mathematics and physics at the university.",
];

/// Mean of `HOOK` over the non-BOS positions of `texts`, `[d_model]`.
fn mean_resid(m: &HookedModel, texts: &[&str]) -> Tensor {
    let rows: Vec<Tensor> = texts
        .iter()
        .map(|t| {
            let toks = m.to_tokens(t).unwrap();
            let (_, cache) = m.run(&toks).names(HOOK).stop_at_layer(9).cache().unwrap();
            let a = cache.get(HOOK).unwrap().i(0).unwrap();
            let p = a.dim(0).unwrap();
            a.narrow(0, 1, p - 1).unwrap()
        })
        .collect();
    Tensor::cat(&rows, 0).unwrap().mean(0).unwrap()
}

/// A small standard SAE at `HOOK` whose latent 0 is a "dog" direction (difference of means of
/// the residual stream on dog sentences and other sentences), with encoder = decoder and
/// `b_dec` = the other sentences' mean; latents 1..3 are fixed unrelated directions.
fn dog_sae(m: &HookedModel) -> (Sae, f64) {
    let dog = mean_resid(m, &DOG_TEXTS);
    let other = mean_resid(m, &OTHER_TEXTS);
    let dir = (dog - &other).unwrap();
    let norm = dir.sqr().unwrap().sum_all().unwrap().sqrt().unwrap();
    let norm = norm.to_scalar::<f32>().unwrap() as f64;
    let d = dir.dims()[0];
    let mut rows = vec![(&dir / norm).unwrap()];
    for k in 1..4u32 {
        let v: Vec<f32> = (0..d as u32)
            .map(|i| (((i * 7919 + k * 104729) % 1000) as f32 / 500.0) - 1.0)
            .collect();
        let v = Tensor::new(v, dir.device()).unwrap();
        let n = v.sqr().unwrap().sum_all().unwrap().sqrt().unwrap();
        rows.push(v.broadcast_div(&n).unwrap());
    }
    let w_dec = Tensor::stack(&rows, 0).unwrap(); // [4, d]
    let cfg = SaeConfig::from_json_value(serde_json::json!({
        "architecture": "standard", "d_in": d, "d_sae": 4, "dtype": "float32",
        "device": "cpu", "apply_b_dec_to_input": true, "normalize_activations": "none",
        "metadata": {"hook_name": HOOK}
    }))
    .unwrap();
    let tensors = HashMap::from([
        (
            "W_enc".to_string(),
            w_dec.t().unwrap().contiguous().unwrap(),
        ),
        ("W_dec".to_string(), w_dec),
        (
            "b_enc".to_string(),
            Tensor::zeros(4, saescope::DType::F32, dir.device()).unwrap(),
        ),
        ("b_dec".to_string(), other),
    ]);
    let sae = Sae::from_config_and_tensors(cfg, tensors, dir.device()).unwrap();
    (sae, norm)
}

/// Mean activation of `latent` over the generated positions, read by splicing the SAE into an
/// unsteered forward pass over the generated tokens.
fn latent_activation(
    m: &HookedModel,
    sae: &Sae,
    tokens: &Tensor,
    from: usize,
    latent: usize,
) -> f32 {
    let name = format!("{HOOK}.hook_sae_acts_post");
    let (_, cache) = m
        .run(tokens)
        .sae(sae)
        .error_term()
        .names(NamesFilter::names([name.as_str()]))
        .cache()
        .unwrap();
    let acts = cache
        .get(name.as_str())
        .unwrap()
        .i((0, .., latent))
        .unwrap();
    let p = acts.dim(0).unwrap();
    acts.narrow(0, from, p - from)
        .unwrap()
        .mean_all()
        .unwrap()
        .to_scalar()
        .unwrap()
}

#[test]
fn steering_raises_the_latents_activation_in_generated_text() {
    let m = smollm2();
    let (sae, norm) = dog_sae(&m);
    let prompt = "My favourite thing to do at the weekend is";
    let opts = GenerateOptions {
        freq_penalty: 1.0,
        top_k: Some(1),
        do_sample: true,
        seed: Some(0),
        ..GenerateOptions::greedy(24)
    };
    let normal = m.generate(prompt, &opts).unwrap();
    let before = latent_activation(&m, &sae, &normal.tokens, normal.prompt_len, 0);
    let mut report = vec![format!(
        "normal ({before:.3}): {:?}",
        normal.text().unwrap()
    )];
    let mut acts = Vec::new();
    for coeff in [-2.0, 1.0, 2.0, 3.0] {
        let steered = generate_with_steering(&m, &sae, prompt, 0, coeff * norm, &opts).unwrap();
        let after = latent_activation(&m, &sae, &steered.tokens, steered.prompt_len, 0);
        report.push(format!(
            "steered ×{coeff} ({after:.3}): {:?}",
            steered.text().unwrap()
        ));
        acts.push(after);
    }
    let report = report.join("\n");
    // A negative coefficient lowers the latent; positive ones raise it, more for larger ones.
    assert!(acts[0] < before, "{report}");
    assert!(
        before < acts[1] && acts[1] < acts[2] && acts[2] < acts[3],
        "{report}"
    );
    assert!(
        acts[2] > before + 0.1 * norm as f32,
        "|dir| = {norm:.3}\n{report}"
    );
    eprintln!("{report}");
}

#[test]
fn steering_helpers_table_and_errors() {
    let m = smollm2();
    let sae = fixture_sae();
    // The vector is coeff · W_dec[i] and the hook adds it at every position of every pass.
    let v = steering_vector(&sae, 7, 3.0).unwrap();
    let want = (sae.w_dec().i(7).unwrap() * 3.0).unwrap();
    assert!(max_abs_diff(&v, &want) < 1e-6);
    let e = steering_vector(&sae, 256, 1.0).unwrap_err();
    assert!(matches!(e, Error::Invalid(_)));
    assert!(
        e.to_string().contains("256") && e.to_string().contains("d_sae = 256"),
        "{e}"
    );
    let e = generate_with_steering(&m, &sae, "Hi", 1000, 1.0, &GenerateOptions::greedy(2));
    assert!(e.unwrap_err().to_string().contains("latent index 1000"));

    let opts = GenerateOptions {
        temperature: 0.5,
        freq_penalty: 2.0,
        seed: Some(11),
        ..GenerateOptions::default()
    };
    let steer = SteerOptions {
        latent: 5,
        coefficient: 60.0,
        n_samples: 2,
        generate: opts.clone(),
    };
    let t = compare_steering(&m, &sae, "The weather today is", &steer).unwrap();
    assert_eq!((t.normal.len(), t.steered.len()), (2, 2));
    assert_ne!(
        t.normal, t.steered,
        "a large coefficient changes the samples"
    );
    // Seeds are per sample: the same call gives the same table.
    let again = compare_steering(&m, &sae, "The weather today is", &steer).unwrap();
    assert_eq!(
        (t.normal.clone(), t.steered.clone()),
        (again.normal, again.steered)
    );
    let text = t.to_string();
    assert!(
        text.contains("| normal") && text.contains("steered"),
        "{text}"
    );
    let html = t.to_html();
    assert!(html.as_str().contains("<table") && html.as_str().contains("blocks.10.hook_resid_pre"));
    eprintln!("{text}");
}

#[test]
fn patch_scoping_replaces_the_placeholder_positions() {
    let m = smollm2();
    let sae = fixture_sae();
    let prompt = "<|im_start|>user\nWhat is the meaning of the word \"<|endoftext|>\"?<|im_end|>\n\
                  <|im_start|>assistant\nThe meaning of the word \"<|endoftext|>\" is \"";
    let opts = PatchScopingOptions {
        replacement_layer: 2,
        scale: 40.0,
        placeholder: "<|endoftext|>".into(),
    };
    let greedy = GenerateOptions::greedy(12);
    let kv = generate_patch_scoping_explanation(&m, &sae, prompt, 5, &opts, &greedy).unwrap();
    let no_kv = GenerateOptions {
        use_past_kv_cache: false,
        ..greedy.clone()
    };
    let full = generate_patch_scoping_explanation(&m, &sae, prompt, 5, &opts, &no_kv).unwrap();
    // Patching the prompt pass only (with the cache) = patching every pass (without it).
    assert_eq!(kv.ids().unwrap(), full.ids().unwrap());
    let plain = m.generate(prompt, &greedy).unwrap();
    assert_ne!(kv.ids().unwrap(), plain.ids().unwrap());
    let other = generate_patch_scoping_explanation(&m, &sae, prompt, 9, &opts, &greedy).unwrap();
    assert_ne!(
        kv.ids().unwrap(),
        other.ids().unwrap(),
        "the latent matters"
    );
    eprintln!(
        "latent 5: {:?}\nlatent 9: {:?}",
        kv.text().unwrap(),
        other.text().unwrap()
    );

    let err = |o: &PatchScopingOptions, p: &str, latent: usize| {
        generate_patch_scoping_explanation(&m, &sae, p, latent, o, &greedy).unwrap_err()
    };
    let e = err(&opts, "no placeholder here", 5);
    assert!(e.to_string().contains("no placeholder"), "{e}");
    let e = err(
        &PatchScopingOptions {
            replacement_layer: 30,
            ..opts.clone()
        },
        prompt,
        5,
    );
    assert!(e.to_string().contains("replacement_layer 30"), "{e}");
    let e = err(
        &PatchScopingOptions {
            placeholder: "two words".into(),
            ..opts.clone()
        },
        prompt,
        5,
    );
    assert!(matches!(e, Error::Tokenizer(_)), "{e}");
    let e = err(&opts, prompt, 300);
    assert!(
        e.to_string().contains("300") && e.to_string().contains("256"),
        "{e}"
    );
}
