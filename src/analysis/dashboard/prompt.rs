//! sae_vis's prompt-centric view: for each token of a prompt, the strongest latents by
//! activation size, by activation quantile (against the scanned distribution of the latents
//! that have dashboards) and by loss effect (removing the latent's output at this token from the
//! final residual stream — the same definition as the dashboards' — and ranking by how much that
//! lowers the log-prob of the next prompt token; sae_vis keys this ranking by the predicted
//! token instead).
use super::effects::logprobs;
use super::render::{act_bg, tok_display, CSS};
use super::svg::{esc, num};
use super::weights::{feature_resid_dirs, SaeSite};
use super::Dashboards;
use crate::error::Result;
use crate::model::HookedModel;
use crate::sae::Sae;
use crate::viz::Html;
use candle_core::{DType, Tensor};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

/// A latent and its score in one ranking.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LatentScore {
    /// Latent index (`0..d_sae`).
    pub latent: usize,
    /// The latent's activation at this token.
    pub act: f32,
    /// The ranking's score: the activation, its quantile (0..1), or the Δlog-prob of the next
    /// token when the latent is removed here.
    pub score: f32,
}

/// One prompt token and its top latents.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PromptToken {
    /// Token id.
    pub id: u32,
    /// The token as a string.
    pub token: String,
    /// Position in the tokenized prompt (BOS at 0).
    pub pos: usize,
    /// Largest activation first.
    pub by_act: Vec<LatentScore>,
    /// Only latents with a dashboard (their quantiles come from the scan).
    pub by_quantile: Vec<LatentScore>,
    /// Most negative Δlog-prob of the next token first; empty at the last token.
    pub by_loss_effect: Vec<LatentScore>,
}

/// The prompt-centric view of a prompt.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PromptView {
    /// The prompt text (without the prepended BOS).
    pub prompt: String,
    /// The hook the SAE reads.
    pub hook_name: String,
    /// One entry per prompt token, BOS first.
    pub tokens: Vec<PromptToken>,
}

/// The `n` strongest latents per token of `prompt` (BOS prepended) by each metric.
/// `dashboards` (of the same SAE) supplies the quantile ranking; without it `by_quantile` is empty.
/// Special tokens (BOS, EOS, PAD) get empty rankings, as the dashboards' scans leave them out.
pub fn prompt_centric(
    model: &HookedModel,
    sae: &Sae,
    prompt: &str,
    dashboards: Option<&Dashboards>,
    n: usize,
) -> Result<PromptView> {
    SaeSite::of(model, sae)?;
    let tokens = model.to_tokens(prompt)?;
    let ids: Vec<u32> = tokens.flatten_all()?.to_vec1()?;
    let p = ids.len();
    let hook = sae.hook_name().to_string();
    let (resid, cache) = model
        .run(&tokens)
        .names(hook.as_str())
        .stop_at_layer(model.cfg().n_layers)
        .cache()?;
    let x = cache
        .get(hook.as_str())?
        .contiguous()?
        .reshape((p, sae.d_in()))?
        .to_dtype(DType::F32)?
        .to_device(sae.device())?;
    let f: Vec<Vec<f32>> = sae.encode(&x)?.to_dtype(DType::F32)?.to_vec2()?;
    // Special tokens (BOS/EOS/PAD) get no rankings, as they are left out of the dashboards'
    // scans (SAEs are trained without them; their activations are often huge).
    let special = crate::tokenizer::SpecialTokens::Structural.ids(model.tokenizer()?);
    let active: Vec<Vec<(usize, f32)>> = f
        .iter()
        .zip(&ids)
        .map(|(row, id)| {
            if special.contains(id) {
                return Vec::new();
            }
            row.iter()
                .enumerate()
                .filter(|(_, &a)| a > 0.0)
                .map(|(i, &a)| (i, a))
                .collect()
        })
        .collect();

    // Loss effects of every active (position, latent) with a next token.
    let mut uniq: BTreeMap<usize, usize> = BTreeMap::new();
    for row in active.iter().take(p.saturating_sub(1)) {
        for &(i, _) in row {
            let n = uniq.len();
            uniq.entry(i).or_insert(n);
        }
    }
    let mut loss: Vec<Vec<(usize, f32, f32)>> = vec![Vec::new(); p];
    if !uniq.is_empty() {
        let mut order = vec![0usize; uniq.len()];
        for (&l, &j) in &uniq {
            order[j] = l;
        }
        let dirs = feature_resid_dirs(model, sae, &order)?;
        let flat = resid.squeeze(0)?;
        let clean = logprobs(model, &flat)?;
        let dev = flat.device().clone();
        let jobs: Vec<(usize, usize, f32)> = active
            .iter()
            .enumerate()
            .take(p - 1)
            .flat_map(|(t, row)| row.iter().map(move |&(i, a)| (t, i, a)))
            .collect();
        for chunk in jobs.chunks(128) {
            let pos: Vec<u32> = chunk.iter().map(|j| j.0 as u32).collect();
            let slots: Vec<u32> = chunk.iter().map(|j| uniq[&j.1] as u32).collect();
            let a = Tensor::from_vec(
                chunk.iter().map(|j| j.2).collect::<Vec<_>>(),
                (chunk.len(), 1),
                &dev,
            )?;
            let base = flat.index_select(&Tensor::new(pos.as_slice(), &dev)?, 0)?;
            let d = dirs.index_select(&Tensor::new(slots.as_slice(), &dev)?, 0)?;
            let lp = logprobs(model, &(base - d.broadcast_mul(&a)?)?)?;
            let tgt: Vec<u32> = chunk.iter().map(|j| ids[j.0 + 1]).collect();
            let tgt = Tensor::from_vec(tgt, (chunk.len(), 1), &dev)?;
            let abl: Vec<f32> = lp.gather(&tgt, 1)?.flatten_all()?.to_vec1()?;
            let cl: Vec<f32> = clean
                .index_select(&Tensor::new(pos.as_slice(), &dev)?, 0)?
                .gather(&tgt, 1)?
                .flatten_all()?
                .to_vec1()?;
            for (k, j) in chunk.iter().enumerate() {
                loss[j.0].push((j.1, j.2, abl[k] - cl[k]));
            }
        }
    }

    let strs = model.ids_to_str_tokens(&ids)?;
    let mut out = Vec::with_capacity(p);
    for t in 0..p {
        let mut by_act: Vec<LatentScore> = active[t]
            .iter()
            .map(|&(latent, act)| LatentScore {
                latent,
                act,
                score: act,
            })
            .collect();
        by_act.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.latent.cmp(&b.latent)));
        by_act.truncate(n);
        let mut by_quantile: Vec<LatentScore> = match dashboards {
            Some(d) => active[t]
                .iter()
                .filter_map(|&(latent, act)| {
                    d.get(latent).map(|f| LatentScore {
                        latent,
                        act,
                        score: f.quantile_of(act),
                    })
                })
                .collect(),
            None => Vec::new(),
        };
        by_quantile.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(b.act.total_cmp(&a.act))
                .then(a.latent.cmp(&b.latent))
        });
        by_quantile.truncate(n);
        let mut by_loss: Vec<LatentScore> = loss[t]
            .iter()
            .map(|&(latent, act, d)| LatentScore {
                latent,
                act,
                score: d,
            })
            .collect();
        by_loss.sort_by(|a, b| a.score.total_cmp(&b.score).then(a.latent.cmp(&b.latent)));
        by_loss.truncate(n);
        out.push(PromptToken {
            id: ids[t],
            token: strs[t].clone(),
            pos: t,
            by_act,
            by_quantile,
            by_loss_effect: by_loss,
        });
    }
    Ok(PromptView {
        prompt: prompt.to_string(),
        hook_name: hook,
        tokens: out,
    })
}

fn ranking(s: &mut String, title: &str, v: &[LatentScore], pct: bool) {
    let _ = write!(
        s,
        "<div class=\"ss-ptab\"><table><tr><th>{title}</th><th>score</th></tr>"
    );
    for l in v {
        let score = if pct {
            format!("{:.3}%", 100.0 * l.score)
        } else {
            format!("{:+.4}", l.score)
        };
        let _ = write!(s, "<tr><td>{}</td><td>{score}</td></tr>", l.latent);
    }
    s.push_str("</table></div>");
}

impl PromptView {
    /// The prompt with hover cards listing each token's top latents by the three metrics.
    pub fn to_html(&self) -> Html {
        let max = self
            .tokens
            .iter()
            .filter_map(|t| t.by_act.first().map(|l| l.act))
            .fold(0f32, f32::max);
        let mut s = format!(
            "<div class=\"sscope ss-prompt\"><style>{CSS}</style><div class=\"ss-head\">Prompt-centric view · <code>{}</code> · background: the token's strongest activation</div><div class=\"ss-seq\">",
            esc(&self.hook_name)
        );
        for t in &self.tokens {
            let top = t.by_act.first().map_or(0.0, |l| l.act);
            let _ = write!(
                s,
                "<span class=\"ss-tok\" style=\"{}\">{}<span class=\"ss-tip\"><b>{}</b> (pos {}) max act {}<br>",
                act_bg(top, max),
                tok_display(&t.token),
                tok_display(&t.token),
                t.pos,
                num(top as f64)
            );
            ranking(&mut s, "act size", &t.by_act, false);
            ranking(&mut s, "act quantile", &t.by_quantile, true);
            ranking(&mut s, "loss effect", &t.by_loss_effect, false);
            s.push_str("</span></span>");
        }
        s.push_str("</div></div>");
        Html(s)
    }
    /// evcxr display hook.
    pub fn evcxr_display(&self) {
        self.to_html().evcxr_display()
    }
}
