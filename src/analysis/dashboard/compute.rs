//! Putting a dashboard together: choose the latents, scan, select the examples, run the
//! example rows through the model, and assemble every table and histogram.
use super::ctx::{Ctx, Request};
use super::effects::build_examples;
use super::scan::{latent_totals, scan};
use super::select::{histc, interval_groups, quantiles, stats, top_examples, Firing};
use super::source::{DashboardInput, Source};
use super::types::{Example, FeatureDashboard, GroupKind, SequenceGroup};
use super::weights::{
    check_latents, feature_resid_dirs, latent_logits, logit_tables, neuron_alignment, SaeSite,
};
use super::{DashboardConfig, Dashboards, LatentSelection, Progress, RankBy};
use crate::error::{Error, Result};
use crate::model::HookedModel;
use crate::rng::derive_seed;
use crate::sae::Sae;
use candle_core::{DType, Device, Tensor};

fn check_config(cfg: &DashboardConfig) -> Result<()> {
    if cfg.top_group_size == 0 && cfg.n_quantiles == 0 {
        return Err(Error::Invalid(
            "DashboardConfig: top_group_size and n_quantiles are both 0; no examples to show"
                .into(),
        ));
    }
    if cfg.n_bins == 0 {
        return Err(Error::Invalid(
            "DashboardConfig: n_bins must be positive".into(),
        ));
    }
    Ok(())
}

/// The whole vocabulary as strings (`<id>` for ids the tokenizer lacks).
pub(crate) fn vocab_strings(model: &HookedModel) -> Vec<String> {
    let n = model.cfg().d_vocab;
    match model.tokenizer() {
        Ok(tok) => (0..n as u32)
            .map(|i| {
                tok.str_tokens(&[i])
                    .ok()
                    .and_then(|mut v| v.pop())
                    .unwrap_or_else(|| format!("<{i}>"))
            })
            .collect(),
        Err(_) => (0..n).map(|i| format!("<{i}>")).collect(),
    }
}

fn choose(
    model: &HookedModel,
    sae: &Sae,
    src: &Source,
    sel: &LatentSelection,
    cfg: &DashboardConfig,
    progress: &mut dyn FnMut(Progress),
) -> Result<Vec<usize>> {
    match sel {
        LatentSelection::Indices(v) => {
            if v.is_empty() {
                return Err(Error::Invalid("no latents given".into()));
            }
            check_latents(sae, v)?;
            Ok(v.clone())
        }
        LatentSelection::Top { n, by } => {
            if *n == 0 {
                return Err(Error::Invalid("--top N needs N ≥ 1".into()));
            }
            let (max, count, _) = latent_totals(model, sae, src, cfg, progress)?;
            let mut idx: Vec<usize> = (0..sae.d_sae()).filter(|&i| count[i] > 0).collect();
            match by {
                RankBy::MaxActivation => idx.sort_by(|&a, &b| {
                    max[b]
                        .total_cmp(&max[a])
                        .then(count[b].cmp(&count[a]))
                        .then(a.cmp(&b))
                }),
                RankBy::Density => idx.sort_by(|&a, &b| {
                    count[b]
                        .cmp(&count[a])
                        .then(max[b].total_cmp(&max[a]))
                        .then(a.cmp(&b))
                }),
            }
            idx.truncate(*n);
            if idx.is_empty() {
                return Err(Error::Invalid(
                    "no latent fired on the scanned tokens; scan more tokens".into(),
                ));
            }
            Ok(idx)
        }
    }
}

pub(crate) fn feature_dashboards_impl(
    model: &HookedModel,
    sae: &Sae,
    input: &DashboardInput,
    sel: &LatentSelection,
    cfg: &DashboardConfig,
    progress: &mut dyn FnMut(Progress),
) -> Result<Dashboards> {
    check_config(cfg)?;
    if sae.cfg().metadata.hook_head_index.is_some() {
        return Err(Error::Invalid(
            "dashboards do not support SAEs on a single head (hook_head_index); use an SAE on \
             the whole hook"
                .into(),
        ));
    }
    if !model.hook_names().iter().any(|h| h == sae.hook_name()) {
        return Err(Error::UnknownHook {
            name: sae.hook_name().to_string(),
            suggestions: crate::hooks::nearest_names(
                sae.hook_name(),
                model.hook_names().iter().map(|s| s.as_str()),
                5,
            ),
        });
    }
    let site = SaeSite::of(model, sae)?;
    let src = Source::new(model, sae, input)?;
    let latents = choose(model, sae, &src, sel, cfg, progress)?;
    let hook = sae.hook_name();
    let neurons = hook.ends_with("mlp.hook_post") || hook.ends_with("mlp.hook_pre");
    let sc = scan(model, sae, &src, &latents, cfg, neurons, progress)?;

    let dirs = feature_resid_dirs(model, sae, &latents)?;
    let logits: Vec<Vec<f32>> = latent_logits(model, &dirs)?
        .to_dtype(DType::F32)?
        .to_vec2()?;
    let dec: Vec<Vec<f32>> = sae
        .w_dec()
        .index_select(
            &Tensor::from_vec(
                latents.iter().map(|&i| i as u32).collect::<Vec<_>>(),
                latents.len(),
                sae.w_dec().device(),
            )?,
            0,
        )?
        .to_dtype(DType::F32)?
        .to_device(&Device::Cpu)?
        .to_vec2()?;
    let vocab = vocab_strings(model);
    let row_len = |r: u32| src.row_len(r);

    // Per latent: sorted firings, groups, statistics.
    let mut requests = Vec::new();
    let mut parts = Vec::with_capacity(latents.len());
    for (slot, mut fires) in sc.firings.into_iter().enumerate() {
        fires.sort_by(|a, b| {
            b.act
                .total_cmp(&a.act)
                .then(a.row.cmp(&b.row))
                .then(a.pos.cmp(&b.pos))
        });
        let st = stats(&fires, sc.n_tokens);
        let acts: Vec<f32> = fires.iter().map(|f| f.act).collect();
        let act_histogram = histc(&acts, cfg.n_bins);
        let asc: Vec<f32> = acts.iter().rev().copied().collect();
        let q = quantiles(&asc, sc.n_tokens);
        let top = top_examples(&fires, cfg.top_group_size, cfg.buffer, &row_len);
        let seed = derive_seed(cfg.seed, &[latents[slot] as u64]);
        let ints = interval_groups(
            &fires,
            cfg.n_quantiles,
            cfg.quantile_group_size,
            cfg.buffer,
            &row_len,
            seed,
        );
        let mut push = |v: &[Firing]| -> Vec<usize> {
            v.iter()
                .map(|&firing| {
                    requests.push(Request { slot, firing });
                    requests.len() - 1
                })
                .collect()
        };
        let top_ids = push(&top);
        let int_ids: Vec<Vec<usize>> = ints.iter().map(|g| push(&g.picks)).collect();
        parts.push((st, act_histogram, q, top_ids, ints, int_ids));
    }
    let ctx = Ctx {
        model,
        sae,
        src: &src,
        latents: &latents,
        dirs: &dirs,
        vocab: &vocab,
        cfg,
        site,
        special: if cfg.exclude_special_tokens {
            model
                .tokenizer()
                .map(|t| crate::tokenizer::SpecialTokens::Structural.ids(t))
                .unwrap_or_default()
        } else {
            Vec::new()
        },
    };
    let examples = build_examples(&ctx, &requests, progress)?;
    let mut by_req: Vec<Option<Example>> = examples.into_iter().map(Some).collect();
    let mut take = |ids: &[usize]| -> Vec<Example> {
        ids.iter()
            .filter_map(|&i| by_req.get_mut(i).and_then(|e| e.take()))
            .collect()
    };

    let mut features = Vec::with_capacity(latents.len());
    for (slot, (st, act_histogram, q, top_ids, ints, int_ids)) in parts.into_iter().enumerate() {
        let latent = latents[slot];
        let (top_logits, bottom_logits, logit_histogram) =
            logit_tables(&logits[slot], cfg.n_logits, cfg.n_bins, &vocab);
        let correlated_latents = match &sc.corr_latents {
            Some((acc, cols)) => acc.top(slot, cfg.n_table_rows, &|j| cols[j]),
            None => Vec::new(),
        };
        let correlated_neurons = match &sc.corr_neurons {
            Some(acc) => acc.top(slot, cfg.n_table_rows, &|j| j),
            None => Vec::new(),
        };
        let top_examples = SequenceGroup {
            kind: GroupKind::Top,
            title: format!("TOP ACTIVATIONS (MAX = {:.3})", st.max),
            lower: top_ids.last().map_or(0.0, |&i| requests[i].firing.act),
            upper: st.max,
            share: 1.0,
            n_in_range: st.n_active,
            examples: take(&top_ids),
        };
        let quantile_groups = ints
            .into_iter()
            .zip(int_ids)
            .map(|(g, ids)| SequenceGroup {
                kind: GroupKind::Interval,
                title: format!(
                    "INTERVAL {:.3} - {:.3} (CONTAINS {:.3}%)",
                    g.lower,
                    g.upper,
                    100.0 * g.share
                ),
                lower: g.lower,
                upper: g.upper,
                share: g.share,
                n_in_range: g.n_in_range,
                examples: take(&ids),
            })
            .collect();
        features.push(FeatureDashboard {
            latent,
            stats: st,
            act_histogram,
            top_logits,
            bottom_logits,
            logit_histogram,
            neuron_alignment: neuron_alignment(&dec[slot], cfg.n_table_rows),
            correlated_latents,
            correlated_neurons,
            top_examples,
            quantile_groups,
            quantiles: q,
        });
    }
    Ok(Dashboards {
        model_name: model.cfg().model_name.clone(),
        hook_name: sae.hook_name().to_string(),
        d_sae: sae.d_sae(),
        neuronpedia_id: sae.neuronpedia_id().map(str::to_string),
        source: src.description.clone(),
        n_tokens: sc.n_tokens,
        config: cfg.clone(),
        features,
    })
}
