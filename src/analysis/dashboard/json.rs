//! Neuronpedia-style JSON export: per feature, Neuronpedia's feature fields; per example, its
//! activation fields (see [`super::Dashboards::save_json`] for the list).
use super::types::{Example, FeatureDashboard, GroupKind};
use super::Dashboards;
use serde_json::{json, Value};

fn activation(e: &Example, g_lower: f32, g_upper: f32, contains: f64, top: bool) -> Value {
    let values: Vec<f32> = e.tokens.iter().map(|t| t.act).collect();
    let (max_i, max_v) =
        values.iter().enumerate().fold(
            (0, f32::NEG_INFINITY),
            |m, (i, &v)| if v > m.1 { (i, v) } else { m },
        );
    let mut o = json!({
        "tokens": e.tokens.iter().map(|t| t.token.clone()).collect::<Vec<_>>(),
        "tokenIds": e.tokens.iter().map(|t| t.id).collect::<Vec<_>>(),
        "values": values,
        "maxValue": max_v,
        "maxValueTokenIndex": max_i,
        "minValue": e.tokens.iter().map(|t| t.act).fold(f32::INFINITY, f32::min),
        "binMin": if top { -1.0 } else { g_lower },
        "binMax": if top { -1.0 } else { g_upper },
        "binContains": if top { -1.0 } else { contains },
        "lossValues": e.tokens.iter().map(|t| t.next_logprob_delta.unwrap_or(0.0)).collect::<Vec<_>>(),
        "dataIndex": e.row,
        "dataPosition": e.pos,
        "qualifyingTokenIndex": e.center_index(),
    });
    if let Some(d) = &e.dfa {
        let mut dfa = vec![0f32; e.tokens.len()];
        for t in &d.tokens {
            if let Some(i) = e.tokens.iter().position(|x| x.pos == t.pos) {
                dfa[i] = t.act;
            }
        }
        o["dfaValues"] = json!(dfa);
        o["dfaTargetIndex"] = json!(e.center_index());
        o["dfaMaxValue"] = json!(d
            .tokens
            .iter()
            .map(|t| t.act)
            .fold(f32::NEG_INFINITY, f32::max));
        o["dfaSourceTokens"] = json!(d.tokens.iter().map(|t| t.token.clone()).collect::<Vec<_>>());
        o["dfaSourceValues"] = json!(d.tokens.iter().map(|t| t.act).collect::<Vec<_>>());
        o["dfaSourcePositions"] = json!(d.tokens.iter().map(|t| t.pos).collect::<Vec<_>>());
    }
    o
}

fn feature(d: &Dashboards, f: &FeatureDashboard) -> Value {
    let mut acts = Vec::new();
    for e in &f.top_examples.examples {
        acts.push(activation(e, 0.0, 0.0, 0.0, true));
    }
    for g in &f.quantile_groups {
        debug_assert_eq!(g.kind, GroupKind::Interval);
        for e in &g.examples {
            acts.push(activation(e, g.lower, g.upper, g.share, false));
        }
    }
    json!({
        "modelId": d.model_name,
        "layer": d.neuronpedia_id.clone().unwrap_or_else(|| d.hook_name.clone()),
        "index": f.latent,
        "hookName": d.hook_name,
        "maxActApprox": f.stats.max,
        "frac_nonzero": f.stats.frac_nonzero,
        "pos_str": f.top_logits.iter().map(|t| t.token.clone()).collect::<Vec<_>>(),
        "pos_values": f.top_logits.iter().map(|t| t.value).collect::<Vec<_>>(),
        "neg_str": f.bottom_logits.iter().map(|t| t.token.clone()).collect::<Vec<_>>(),
        "neg_values": f.bottom_logits.iter().map(|t| t.value).collect::<Vec<_>>(),
        "freq_hist_data_bar_heights": f.act_histogram.counts,
        "freq_hist_data_bar_values": f.act_histogram.centers(),
        "logits_hist_data_bar_heights": f.logit_histogram.counts,
        "logits_hist_data_bar_values": f.logit_histogram.centers(),
        "neuron_alignment_indices": f.neuron_alignment.iter().map(|n| n.index).collect::<Vec<_>>(),
        "neuron_alignment_values": f.neuron_alignment.iter().map(|n| n.value).collect::<Vec<_>>(),
        "neuron_alignment_l1": f.neuron_alignment.iter().map(|n| n.frac_l1).collect::<Vec<_>>(),
        "correlated_neurons_indices": f.correlated_neurons.iter().map(|c| c.index).collect::<Vec<_>>(),
        "correlated_neurons_pearson": f.correlated_neurons.iter().map(|c| c.pearson).collect::<Vec<_>>(),
        "correlated_neurons_l1": f.correlated_neurons.iter().map(|c| c.cosine).collect::<Vec<_>>(),
        "correlated_features_indices": f.correlated_latents.iter().map(|c| c.index).collect::<Vec<_>>(),
        "correlated_features_pearson": f.correlated_latents.iter().map(|c| c.pearson).collect::<Vec<_>>(),
        "correlated_features_l1": f.correlated_latents.iter().map(|c| c.cosine).collect::<Vec<_>>(),
        "activations": acts,
    })
}

pub(crate) fn neuronpedia(d: &Dashboards) -> Value {
    json!({
        "format": "saescope-dashboards/1",
        "fields": "Neuronpedia feature and activation field names",
        "model": d.model_name,
        "hook_name": d.hook_name,
        "d_sae": d.d_sae,
        "source": d.source,
        "n_tokens": d.n_tokens,
        "features": d.features.iter().map(|f| feature(d, f)).collect::<Vec<_>>(),
    })
}
