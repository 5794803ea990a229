//! One seed of SAEBench's absorption pipeline on gathered first-letter data: the dense
//! 26-way probe (`common.train_and_save_probes` → `probing.train_linear_probe_for_task`), the
//! k-sparse probes (`k_sparse_probing.train_k_sparse_probes`, `build_metrics_df`,
//! `add_feature_splits_to_metrics_df`), and the absorption of each probe-true-positive test word
//! (`FeatureAbsorptionCalculator.calculate_absorption`, `main._aggregate_results_df`).
use super::prompts::FirstLetterData;
use super::{AbsorptionOptions, LetterResult};
use crate::error::Result;
use crate::eval::probing::{
    fit_logistic_regression, shuffle, train_probe, LogRegOptions, LogisticRegression, ProbeTrain,
};
use crate::rng::{derive_seed, Rng};
use crate::sae::Sae;
use candle_core::{Device, Tensor};

/// `feature_absorption_calculator.EPS`: a main latent counts as firing above this.
const EPS: f64 = 1e-8;

/// Per-seed figures.
pub(crate) struct SeedResult {
    pub f1_probe: Vec<f64>,
    /// `[k-1][letter]`.
    pub f1_sparse: Vec<Vec<f64>>,
    pub letters: Vec<LetterResult>,
}

fn f1(y: &[bool], pred: &[bool]) -> f64 {
    let tp = y.iter().zip(pred).filter(|(a, b)| **a && **b).count() as f64;
    let fp = y.iter().zip(pred).filter(|(a, b)| !**a && **b).count() as f64;
    let fneg = y.iter().zip(pred).filter(|(a, b)| **a && !**b).count() as f64;
    if tp == 0.0 {
        0.0 // sklearn's zero_division default (with a warning)
    } else {
        2.0 * tp / (2.0 * tp + fp + fneg)
    }
}

fn rows_of(t: &Tensor, idx: &[usize]) -> Result<Tensor> {
    let i: Vec<u32> = idx.iter().map(|v| *v as u32).collect();
    Ok(t.index_select(&Tensor::new(i.as_slice(), &Device::Cpu)?, 0)?)
}

fn one_hot(labels: &[usize]) -> Result<Tensor> {
    let mut v = vec![0f32; labels.len() * 26];
    for (i, l) in labels.iter().enumerate() {
        v[i * 26 + l] = 1.0;
    }
    Ok(Tensor::from_vec(v, (labels.len(), 26), &Device::Cpu)?)
}

/// `create_dataset_probe_training`'s split for one seed: the words shuffled, the first
/// `train_fraction` (rounded down) to train: `(train, test)` word indices.
pub fn absorption_split(n: usize, train_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut order: Vec<usize> = (0..n).collect();
    shuffle(&mut order, &mut Rng::new(derive_seed(seed, &[1])));
    let n_tr = (n as f64 * train_fraction) as usize;
    let te = order.split_off(n_tr);
    (order, te)
}

pub(crate) fn run_seed(
    data: &FirstLetterData,
    sae: &Sae,
    o: &AbsorptionOptions,
    seed: u64,
) -> Result<SeedResult> {
    let (tr, te) = absorption_split(data.words.len(), o.train_fraction, seed);
    let (tr, te) = (tr.as_slice(), te.as_slice());
    let ytr: Vec<usize> = tr.iter().map(|i| data.labels[*i]).collect();
    if let Some(l) = (0..26).find(|l| !ytr.contains(l)) {
        return Err(crate::error::Error::Invalid(format!(
            "absorption: seed {seed} leaves no word of letter {} in the train split; raise n_words",
            LETTERS_CHARS[l]
        )));
    }
    let yte: Vec<usize> = te.iter().map(|i| data.labels[*i]).collect();
    let (xtr, xte) = (rows_of(&data.acts, tr)?, rows_of(&data.acts, te)?);
    let (ftr, fte) = (rows_of(&data.latents, tr)?, rows_of(&data.latents, te)?);
    // train_and_save_probes: batch 64, 50 epochs, lr 1e-2 (→ end_lr 1e-5), weight decay 1e-4.
    let dense = ProbeTrain {
        epochs: 50,
        batch_size: 64,
        lr: 1e-2,
        end_lr: Some(1e-5),
        weight_decay: 1e-4,
        decoupled: false,
        l1: 0.0,
        pos_weight: true,
        patience: None,
        seed: derive_seed(seed, &[2]),
    };
    let (probe, _) = train_probe(&xtr, &one_hot(&ytr)?, &dense, None)?;
    // train_sparse_multi_probe: l1 0.01, batch 4096, 50 epochs, lr 1e-2 → 1e-5, l2 1e-6.
    let l1 = ProbeTrain {
        epochs: o.k_sparse_probe_num_epochs,
        batch_size: 4096,
        lr: 1e-2,
        end_lr: Some(1e-5),
        weight_decay: 1e-6,
        decoupled: false,
        l1: o.k_sparse_probe_l1_decay,
        pos_weight: true,
        patience: None,
        seed: derive_seed(seed, &[3]),
    };
    let (l1_probe, _) = train_probe(&ftr, &one_hot(&ytr)?, &l1, None)?;
    let l1_w = l1_probe.w.to_vec2::<f32>()?;
    let score = probe.logits(&xte)?.to_vec2::<f32>()?; // [n_te, 26]
    let ftr_v = ftr.to_vec2::<f32>()?;
    let fte_v = fte.to_vec2::<f32>()?;
    let mut f1_probe = vec![0.0; 26];
    let mut f1_sparse = vec![vec![0.0; 26]; o.max_k_value];
    let mut split_feats: Vec<Vec<usize>> = vec![vec![]; 26];
    for l in 0..26 {
        let y: Vec<bool> = yte.iter().map(|v| *v == l).collect();
        let pred: Vec<bool> = score.iter().map(|r| r[l] > 0.0).collect();
        f1_probe[l] = f1(&y, &pred);
        // topk (not abs) of the L1 probe's weights for the letter: nested in k.
        let mut order: Vec<usize> = (0..l1_w[l].len()).collect();
        order.sort_by(|a, b| l1_w[l][*b].total_cmp(&l1_w[l][*a]).then(a.cmp(b)));
        let ytr_l: Vec<bool> = ytr.iter().map(|v| *v == l).collect();
        let mut prev_best = -100.0;
        let mut splitting = true;
        for k in 1..=o.max_k_value {
            let feats = &order[..k];
            let pick = |rows: &[Vec<f32>]| -> Vec<f32> {
                rows.iter()
                    .flat_map(|r| feats.iter().map(|j| r[*j]))
                    .collect()
            };
            let lr = fit_logistic_regression(
                &pick(&ftr_v),
                &ytr_l,
                &LogRegOptions {
                    max_iter: 500,
                    balanced: true,
                    ..Default::default()
                },
            )
            .unwrap_or(LogisticRegression {
                coef: vec![0.0; k],
                intercept: -1.0,
                n_iter: 0,
            });
            f1_sparse[k - 1][l] = f1(&y, &lr.predict(&pick(&fte_v)));
            // add_feature_splits_to_metrics_df
            if splitting && f1_sparse[k - 1][l] > prev_best + o.f1_jump_threshold {
                prev_best = f1_sparse[k - 1][l];
                split_feats[l] = feats.to_vec();
            } else {
                splitting = false;
            }
        }
    }
    let letters = absorption_letters(
        data,
        sae,
        o,
        &probe.w.to_vec2::<f32>()?,
        te,
        &yte,
        &score,
        &split_feats,
        &f1_probe,
    )?;
    Ok(SeedResult {
        f1_probe,
        f1_sparse,
        letters,
    })
}

/// Absorption of the probe-true-positive test words of each letter, aggregated per letter.
#[allow(clippy::too_many_arguments)]
fn absorption_letters(
    data: &FirstLetterData,
    sae: &Sae,
    o: &AbsorptionOptions,
    probe_w: &[Vec<f32>],
    te: &[usize],
    yte: &[usize],
    score: &[Vec<f32>],
    split_feats: &[Vec<usize>],
    f1_probe: &[f64],
) -> Result<Vec<LetterResult>> {
    let w_dec = sae
        .w_dec()
        .to_dtype(candle_core::DType::F32)?
        .to_vec2::<f32>()?;
    let acts = data.acts.to_vec2::<f32>()?;
    let lat = data.latents.to_vec2::<f32>()?;
    let mut out = vec![];
    for l in 0..26 {
        let tps: Vec<usize> = (0..te.len())
            .filter(|i| yte[*i] == l && score[*i][l] > 0.0)
            .map(|i| te[i])
            .collect();
        if tps.is_empty() {
            continue; // no rows for the letter: absent from SAEBench's groupby
        }
        let norm = probe_w[l]
            .iter()
            .map(|v| (*v as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        let p: Vec<f64> = probe_w[l].iter().map(|v| *v as f64 / norm).collect();
        let cos: Vec<f64> = w_dec
            .iter()
            .map(|r| {
                let n = r.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
                r.iter().zip(&p).map(|(a, b)| *a as f64 * b).sum::<f64>() / n.max(1e-8)
            })
            .collect();
        let (mut frac_sum, mut n_full) = (0.0, 0usize);
        for w in tps.iter() {
            let act_proj: f64 = acts[*w].iter().zip(&p).map(|(a, b)| *a as f64 * b).sum();
            let (f, full) = word_absorption(&lat[*w], &cos, act_proj, &split_feats[l], o);
            frac_sum += f;
            n_full += full as usize;
        }
        let n = tps.len() as f64;
        out.push(LetterResult {
            letter: LETTERS_CHARS[l],
            f1_probe: f1_probe[l],
            mean_absorption_fraction: frac_sum / n,
            full_absorption_rate: n_full as f64 / n,
            num_full_absorption: n_full,
            num_probe_true_positives: tps.len(),
            num_split_features: split_feats[l].len(),
        });
    }
    Ok(out)
}

const LETTERS_CHARS: [char; 26] = [
    'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', 'p', 'q', 'r', 's',
    't', 'u', 'v', 'w', 'x', 'y', 'z',
];

/// `calculate_absorption` for one word: `(absorption_fraction, is_full_absorption)`.
fn word_absorption(
    sae_acts: &[f32],
    cos: &[f64],
    act_proj: f64,
    main: &[usize],
    o: &AbsorptionOptions,
) -> (f64, bool) {
    let proj: Vec<f64> = sae_acts
        .iter()
        .zip(cos)
        .map(|(a, c)| *a as f64 * c)
        .collect();
    let main_proj: f64 = main.iter().map(|j| proj[*j]).sum();
    let mut absorbers: Vec<f64> = (0..proj.len())
        .filter(|j| {
            !main.contains(j)
                && cos[*j] >= o.absorption_fraction_probe_cos_threshold
                && proj[*j] > 0.0
        })
        .map(|j| proj[j])
        .collect();
    absorbers.sort_by(|a, b| b.total_cmp(a));
    let top: f64 = absorbers
        .iter()
        .take(o.absorption_fraction_max_absorbing_latents)
        .sum();
    let frac = if main_proj >= act_proj || top / act_proj < o.probe_projection_proportion_threshold
    {
        0.0
    } else if main_proj <= 0.0 {
        1.0
    } else {
        let absorbed = top.min(act_proj - main_proj);
        (absorbed / (absorbed + main_proj)).clamp(0.0, 1.0)
    };
    // Full absorption: no main latent fires, the top-projecting latent is aligned with the probe
    // and carries enough of the probe projection.
    let mut by_proj: Vec<usize> = (0..proj.len()).collect();
    by_proj.sort_by(|a, b| proj[*b].total_cmp(&proj[*a]).then(a.cmp(b)));
    let top1 = by_proj[0];
    let full = main.iter().all(|j| (sae_acts[*j] as f64) < EPS)
        && cos[top1] >= o.full_absorption_probe_cos_threshold
        && act_proj >= 0.0
        && proj[top1] / act_proj >= o.probe_projection_proportion_threshold;
    (frac, full)
}
