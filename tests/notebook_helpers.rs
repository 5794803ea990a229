//! The helpers notebook cells reach for instead of hand-written loops: tensor extensions
//! (`diagonal`, `item`), reading latents off activations (`token_latents`, `top_examples`,
//! `logit_table`), comparing predictions (`next_token_table`, `prob_mass`, `top_tokens`,
//! `tokens_where`), toy geometry, eval reports and training logs. Each is checked against the
//! loop it replaces.
use saescope::prelude::*;
use saescope::toy::feature_geometry;

fn t(v: Vec<f32>, shape: &[usize]) -> Tensor {
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

#[test]
fn diagonal_matches_torch_offsets() {
    // [2, 3, 3]: x[b, q, k] = 100 b + 10 q + k.
    let v: Vec<f32> = (0..2)
        .flat_map(|b| (0..3).flat_map(move |q| (0..3).map(move |k| (100 * b + 10 * q + k) as f32)))
        .collect();
    let x = t(v, &[2, 3, 3]);
    let below = x.diagonal(-1).unwrap();
    assert_eq!(below.dims(), &[2, 2]);
    assert_eq!(below.to_f32_vec().unwrap(), vec![10., 21., 110., 121.]);
    assert_eq!(
        x.diagonal(0).unwrap().to_f32_vec().unwrap(),
        vec![0., 11., 22., 100., 111., 122.]
    );
    assert_eq!(x.diagonal(2).unwrap().to_f32_vec().unwrap(), vec![2., 102.]);
    // A non-square matrix and an offset past the edge.
    let r = t((0..6).map(|i| i as f32).collect(), &[2, 3]);
    assert_eq!(r.diagonal(1).unwrap().to_f32_vec().unwrap(), vec![1., 5.]);
    assert_eq!(r.diagonal(5).unwrap().dims(), &[0]);
    assert!(t(vec![1.0], &[1]).diagonal(0).is_err());
}

#[test]
fn item_reads_one_element_and_refuses_more() {
    assert_eq!(t(vec![2.5], &[1, 1]).item().unwrap(), 2.5);
    let err = t(vec![1.0, 2.0], &[2]).item().unwrap_err().to_string();
    assert!(err.contains("one element"), "{err}");
}

#[test]
fn token_latents_ranks_by_recall_times_precision() {
    // 4 positions, tokens [7, 1, 7, 2]; latent 0 fires on both 7s only, latent 1 on every
    // position, latent 2 on one 7.
    let acts = t(
        vec![1., 1., 3., 0., 1., 0., 2., 1., 0., 0., 1., 0.],
        &[1, 4, 3],
    );
    let ids = Tensor::new(&[[7u32, 1, 7, 2]], &Device::Cpu).unwrap();
    let r = token_latents(&acts, &ids, &[7]).unwrap();
    assert_eq!(r[0].latent, 0);
    assert_eq!((r[0].recall, r[0].precision), (1.0, 1.0));
    let l1 = r.iter().find(|x| x.latent == 1).unwrap();
    assert_eq!((l1.recall, l1.precision), (1.0, 0.5));
    let l2 = r.iter().find(|x| x.latent == 2).unwrap();
    assert_eq!((l2.recall, l2.precision), (0.5, 1.0));
    assert!(format!("{}", r[0]).contains("recall 1.00"));
    let wrong = Tensor::new(&[[7u32, 1]], &Device::Cpu).unwrap();
    assert!(token_latents(&acts, &wrong, &[7]).is_err());
}

#[test]
fn feature_geometry_of_a_regular_pentagon() {
    let (xs, ys): (Vec<f32>, Vec<f32>) = (0..5)
        .map(|i| {
            let a = (90.0 + 72.0 * i as f32).to_radians();
            (a.cos(), a.sin())
        })
        .unzip();
    let w = t([xs, ys].concat(), &[1, 2, 5]);
    let g = feature_geometry(&w, 0).unwrap();
    assert!(
        g.gaps.iter().all(|x| (x - 72.0).abs() < 1e-3),
        "{:?}",
        g.gaps
    );
    assert!(g.norms.iter().all(|n| (n - 1.0).abs() < 1e-5));
    assert!(g.is_regular(1.0, 0.9));
    assert!(!g.is_regular(1.0, 1.5));
    assert!(feature_geometry(&t(vec![0.0; 6], &[1, 3, 2]), 0).is_err());
}

#[test]
fn metrics_log_reads_a_run_folder() {
    let dir = std::env::temp_dir().join(format!("saescope-metricslog-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("metrics.jsonl"),
        "{\"step\": 4, \"losses/overall_loss\": 2.0, \"metrics/l0\": 32.0}\n\
         {\"step\": 8, \"details/current_learning_rate\": 1}\n\
         {\"step\": 8, \"losses/overall_loss\": 1.5, \"metrics/l0\": 31.0}\n",
    )
    .unwrap();
    let log = MetricsLog::load(&dir).unwrap();
    assert_eq!(log.steps(), vec!["4", "8"]);
    assert_eq!(log.series("metrics/l0"), vec![32.0, 31.0]);
    assert_eq!(log.last("losses/overall_loss"), Some(1.5));
    assert!(log.series("missing")[0].is_nan());
    assert!(log.plot("l0", &["metrics/l0"], "l0").is_ok());
    let err = MetricsLog::load(dir.join("nope")).unwrap_err().to_string();
    assert!(err.contains("nope"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn eval_report_loads_the_shipped_eval_and_prints_its_headlines() {
    let report = EvalReport::load(saescope::sae::shipped_sae_dir().join("eval.json")).unwrap();
    let text = report.to_string();
    for want in ["L0", "explained variance", "CE-loss score", "dead latents"] {
        assert!(text.contains(want), "{want} missing from\n{text}");
    }
    let hist = &report
        .feature_stats
        .as_ref()
        .unwrap()
        .log10_density_histogram;
    assert!(hist
        .plot("density", "latents")
        .unwrap()
        .as_str()
        .contains("<svg"));
    let bad = std::env::temp_dir().join(format!("saescope-badeval-{}.json", std::process::id()));
    std::fs::write(&bad, "[1, 2]").unwrap();
    let err = EvalReport::load(&bad).unwrap_err().to_string();
    assert!(err.contains("saescope eval"), "{err}");
    std::fs::remove_file(&bad).ok();
}

/// SmolLM2 (scripts/fetch_model.sh) and the shipped SAE.
fn model_and_sae() -> (HookedModel, Sae) {
    (
        HookedModel::from_pretrained("smollm2").unwrap(),
        Sae::shipped().unwrap(),
    )
}

#[test]
fn prediction_helpers_agree_with_the_hand_written_loops() {
    let (model, _) = model_and_sae();
    let logits = model.run("The capital of France is").logits().unwrap();
    let top = model.top_tokens(&logits, 3).unwrap();
    assert_eq!(top[0].0, " Paris");
    let last = logits.dim(1).unwrap() - 1;
    let by_hand = model.top_k(&logits, last, 3).unwrap();
    assert_eq!(top[1].1, by_hand[1].1);
    // prob_mass = the softmax summed by hand.
    let paris = model.to_single_token(" Paris").unwrap();
    let ids = model
        .tokens_where(|s| s == " Paris" || s == " Lyon")
        .unwrap();
    assert!(ids.contains(&paris) && ids.len() == 2, "{ids:?}");
    let p = logits
        .i((0, last))
        .unwrap()
        .softmax()
        .unwrap()
        .to_f32_vec()
        .unwrap();
    let want: f32 = ids.iter().map(|&i| p[i as usize]).sum();
    assert!((prob_mass(&logits, &ids).unwrap() - want).abs() < 1e-6);
    assert!(prob_mass(&logits, &[u32::MAX]).is_err());
    let table = next_token_table(&model, &[("a", &logits), ("b", &logits)], 4).unwrap();
    assert_eq!(table.rows.len(), 4);
    assert_eq!(table.rows[0].0, " Paris");
    assert_eq!(table.rows[0].1[0], table.rows[0].1[1]);
    assert!((table.rows[0].1[0] - p[paris as usize].ln()).abs() < 1e-4);
    assert!(table.to_string().contains("\" Paris\""));
}

#[test]
fn latent_helpers_on_the_shipped_sae() {
    let (model, sae) = model_and_sae();
    let rows = token_rows(model.tokenizer().unwrap(), "default", 10, 32, Some(3)).unwrap();
    // sae_acts runs many rows 8 at a time: the same as one pass per row.
    let acts = sae_acts(&model, &rows, &sae).unwrap();
    assert_eq!(acts.dims(), &[10, 32, sae.cfg().d_sae]);
    let row9 = sae_acts(&model, rows.narrow(0, 9, 1).unwrap(), &sae).unwrap();
    let diff = (acts.narrow(0, 9, 1).unwrap() - row9)
        .unwrap()
        .abs()
        .unwrap();
    assert!(diff.max_all().unwrap().item().unwrap() < 1e-3);
    // top_examples: the k largest activations of the latent, largest first, with their token.
    let latent = acts
        .i((0, 5))
        .unwrap()
        .argmax(0)
        .unwrap()
        .to_scalar::<u32>()
        .unwrap() as usize;
    let ex = top_examples(&model, &acts, &rows, latent, 3).unwrap();
    let col = acts.i((.., .., latent)).unwrap().to_f32_vec().unwrap();
    let max = col.iter().cloned().fold(f32::MIN, f32::max);
    assert_eq!(ex[0].act, max);
    assert!(ex[0].act >= ex[1].act && ex[1].act >= ex[2].act);
    let ids: Vec<u32> = rows
        .i((ex[0].row, ex[0].pos))
        .unwrap()
        .to_vec0::<u32>()
        .map(|i| vec![i])
        .unwrap();
    assert_eq!(ex[0].token, model.to_string(&ids).unwrap());
    assert!(ex[0].to_string().contains("[["));
    assert!(top_examples(&model, &acts, &rows, sae.cfg().d_sae, 3).is_err());
    // logit_table: W_dec[i] · W_U sorted.
    let lt = logit_table(&model, &sae, latent, 5).unwrap();
    let w = sae
        .w_dec()
        .i(latent)
        .unwrap()
        .unsqueeze(0)
        .unwrap()
        .matmul(model.w_u())
        .unwrap()
        .to_f32_vec()
        .unwrap();
    let max = w.iter().cloned().fold(f32::MIN, f32::max);
    let min = w.iter().cloned().fold(f32::MAX, f32::min);
    assert!((lt.top[0].value - max).abs() < 1e-4 && (lt.bottom[0].value - min).abs() < 1e-4);
    assert!(lt.top[0].value >= lt.top[4].value && lt.bottom[0].value <= lt.bottom[4].value);
}
