//! HTML rendering of [`Dashboards`]: sae_vis's three-column layout (tables | histograms and
//! logits | example groups), tokens coloured by activation, loss effects as underlines, and
//! pure-CSS hover cards (so the page works where notebook front ends do not run scripts).
//! Scripts only add a latent selector and the `saescope-ready` / `saescope-error` markers.
use super::svg::{esc, histogram, num};
use super::types::{
    Correlated, Example, ExampleToken, FeatureDashboard, SequenceGroup, TokenScore,
};
use super::Dashboards;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

pub(crate) const CSS: &str = "\
.sscope{font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;font-size:13px;color:#222;line-height:1.35}\
.sscope h3{margin:14px 0 6px;font-size:16px}.sscope h4{margin:10px 0 4px;font-size:12px;color:#555;text-transform:uppercase}\
.sscope .ss-head{padding:4px 0;color:#444}.sscope .ss-nav a{margin-right:6px}\
.sscope .ss-grid{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}\
.sscope .ss-left{min-width:200px}.sscope .ss-mid{min-width:340px}.sscope .ss-right{flex:1;min-width:420px}\
.sscope table{border-collapse:collapse;margin-bottom:8px}.sscope td,.sscope th{padding:1px 6px;text-align:right;font-variant-numeric:tabular-nums}\
.sscope th{font-size:11px;color:#555;border-bottom:1px solid #ccc}.sscope td.ss-t{text-align:left;font-family:ui-monospace,Menlo,Consolas,monospace}\
.sscope .ss-seq{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;margin:2px 0;white-space:nowrap}\
.sscope .ss-act{display:inline-block;width:58px;color:#666;font-size:11px}\
.sscope .ss-tok{position:relative;white-space:pre;border-bottom:2px solid transparent;padding:0 0.5px}\
.sscope .ss-c{outline:1px solid #333}\
.sscope .ss-tip{display:none;position:absolute;left:0;top:1.5em;z-index:20;background:#fff;border:1px solid #999;box-shadow:0 2px 6px rgba(0,0,0,.25);padding:4px 6px;white-space:nowrap;font-size:11px;color:#222}\
.sscope .ss-tok:hover .ss-tip{display:block}.sscope .ss-tip b{font-weight:600}\
.sscope .ss-group{margin-bottom:10px}.sscope .ss-gt{font-size:11px;font-weight:bold;color:#444;margin:6px 0 2px}\
.sscope .ss-dfa{margin-left:58px;color:#555}\
.sscope .ss-prompt .ss-tok{cursor:pointer}.sscope .ss-ptab{display:inline-block;vertical-align:top;margin-right:16px}";

/// Token text for display: newlines and tabs made visible, replacement characters dropped.
pub(crate) fn tok_display(s: &str) -> String {
    let t: String = s
        .chars()
        .filter(|&c| c != '\u{FFFD}')
        .map(|c| match c {
            '\n' => '↵',
            '\t' => '⇥',
            '\r' => '␍',
            c => c,
        })
        .collect();
    if t.is_empty() {
        "·".into()
    } else {
        esc(&t)
    }
}

fn scores(v: &[TokenScore]) -> String {
    v.iter()
        .map(|s| format!("{} {:+.3}", tok_display(&s.token), s.value))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The orange background of an activation relative to `max`.
pub(crate) fn act_bg(act: f32, max: f32) -> String {
    if act <= 0.0 || max <= 0.0 {
        return String::new();
    }
    format!(
        "background:rgba(255,140,0,{:.2});",
        (act / max).clamp(0.05, 1.0)
    )
}

fn effect_border(delta: f32, scale: f32) -> String {
    if scale <= 0.0 || delta == 0.0 {
        return String::new();
    }
    let a = (delta.abs() / scale).clamp(0.15, 1.0);
    if delta < 0.0 {
        format!("border-bottom-color:rgba(30,90,230,{a:.2});")
    } else {
        format!("border-bottom-color:rgba(220,30,30,{a:.2});")
    }
}

/// One sequence line: the example's tokens, the centre outlined; each token's underline shows
/// the loss effect of removing the latent at the *previous* token (sae_vis's convention).
fn seq_line(s: &mut String, e: &Example, max: f32, effect_scale: f32, dfa: bool) {
    let toks: &[ExampleToken] = match (&e.dfa, dfa) {
        (Some(d), true) => &d.tokens,
        _ => &e.tokens,
    };
    let tmax = if dfa {
        toks.iter().map(|t| t.act.abs()).fold(0f32, f32::max)
    } else {
        max
    };
    if dfa {
        s.push_str("<div class=\"ss-seq ss-dfa\">DFA → pos ");
        let _ = write!(s, "{}: ", e.pos);
    } else {
        let _ = write!(
            s,
            "<div class=\"ss-seq\"><span class=\"ss-act\">{}</span>",
            num(e.act as f64)
        );
    }
    let mut prev_delta: Option<f32> = None;
    for t in toks {
        let mut style = if dfa {
            if t.act > 0.0 {
                format!(
                    "background:rgba(0,170,80,{:.2});",
                    (t.act / tmax.max(1e-9)).clamp(0.05, 1.0)
                )
            } else if t.act < 0.0 {
                format!(
                    "background:rgba(150,60,200,{:.2});",
                    (-t.act / tmax.max(1e-9)).clamp(0.05, 1.0)
                )
            } else {
                String::new()
            }
        } else {
            act_bg(t.act, max)
        };
        if let Some(d) = prev_delta {
            style.push_str(&effect_border(d, effect_scale));
        }
        let class = if !dfa && t.pos == e.pos {
            "ss-tok ss-c"
        } else {
            "ss-tok"
        };
        let _ = write!(
            s,
            "<span class=\"{class}\" style=\"{style}\">{}",
            tok_display(&t.token)
        );
        if t.act != 0.0 || t.next_logprob_delta.is_some() {
            let _ = write!(
                s,
                "<span class=\"ss-tip\"><b>{}</b> (pos {}, row {})<br>{}: {}",
                tok_display(&t.token),
                t.pos,
                e.row,
                if dfa { "DFA" } else { "activation" },
                num(t.act as f64)
            );
            if let (Some(d), Some(lp)) = (t.next_logprob_delta, t.next_logprob) {
                let _ = write!(
                    s,
                    "<br>removing it: Δ log p(next) = {d:+.4} (clean {lp:.3})<br>boosts: {}<br>suppresses: {}",
                    scores(&t.boosted),
                    scores(&t.suppressed)
                );
            }
            s.push_str("</span>");
        }
        s.push_str("</span>");
        prev_delta = if dfa { None } else { t.next_logprob_delta };
    }
    s.push_str("</div>");
}

fn group(s: &mut String, g: &SequenceGroup, max: f32, effect_scale: f32) {
    let _ = write!(
        s,
        "<div class=\"ss-group\"><div class=\"ss-gt\">{}</div>",
        esc(&g.title)
    );
    if g.examples.is_empty() {
        s.push_str("<div class=\"ss-seq\">(no eligible examples)</div>");
    }
    for e in &g.examples {
        seq_line(s, e, max, effect_scale, false);
        if e.dfa.is_some() {
            seq_line(s, e, max, effect_scale, true);
        }
    }
    s.push_str("</div>");
}

fn corr_table(s: &mut String, title: &str, label: &str, rows: &[Correlated]) {
    if rows.is_empty() {
        return;
    }
    let _ = write!(
        s,
        "<h4>{title}</h4><table><tr><th>{label}</th><th>Pearson</th><th>Cosine</th></tr>"
    );
    for r in rows {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{:+.3}</td><td>{:+.3}</td></tr>",
            r.index, r.pearson, r.cosine
        );
    }
    s.push_str("</table>");
}

fn logit_table(s: &mut String, f: &FeatureDashboard) {
    let m = f
        .top_logits
        .iter()
        .chain(&f.bottom_logits)
        .map(|t| t.value.abs())
        .fold(0f32, f32::max)
        .max(1e-9);
    s.push_str("<table class=\"ss-logits\"><tr><th>NEGATIVE LOGITS</th><th></th><th>POSITIVE LOGITS</th><th></th></tr>");
    for i in 0..f.top_logits.len().max(f.bottom_logits.len()) {
        s.push_str("<tr>");
        for (v, rgb) in [
            (f.bottom_logits.get(i), "30,90,230"),
            (f.top_logits.get(i), "220,30,30"),
        ] {
            match v {
                Some(t) => {
                    let _ = write!(
                        s,
                        "<td class=\"ss-t\" style=\"background:rgba({rgb},{:.2})\">{}</td><td>{:+.3}</td>",
                        (t.value.abs() / m).clamp(0.05, 1.0) * 0.6,
                        tok_display(&t.token),
                        t.value
                    );
                }
                None => s.push_str("<td></td><td></td>"),
            }
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>");
}

fn feature(s: &mut String, d: &Dashboards, f: &FeatureDashboard, uid: u64) {
    let _ = write!(
        s,
        "<section class=\"ss-feature\" id=\"ss-{uid}-f{}\" data-latent=\"{}\"><h3>Latent {} <small>({})</small></h3><div class=\"ss-grid\"><div class=\"ss-left\">",
        f.latent,
        f.latent,
        f.latent,
        esc(&d.hook_name)
    );
    if !f.neuron_alignment.is_empty() {
        s.push_str(
            "<h4>Neuron alignment</h4><table><tr><th>Index</th><th>Value</th><th>% of L1</th></tr>",
        );
        for n in &f.neuron_alignment {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{:+.3}</td><td>{:.1}%</td></tr>",
                n.index,
                n.value,
                100.0 * n.frac_l1
            );
        }
        s.push_str("</table>");
    }
    corr_table(s, "Correlated neurons", "Neuron", &f.correlated_neurons);
    corr_table(s, "Correlated latents", "Latent", &f.correlated_latents);
    let st = &f.stats;
    let _ = write!(
        s,
        "<h4>Statistics</h4><table><tr><td class=\"ss-t\">max</td><td>{}</td></tr><tr><td class=\"ss-t\">density</td><td>{:.4}%</td></tr><tr><td class=\"ss-t\">active / tokens</td><td>{} / {}</td></tr><tr><td class=\"ss-t\">mean when active</td><td>{}</td></tr></table>",
        num(st.max as f64),
        100.0 * st.frac_nonzero,
        st.n_active,
        st.n_tokens,
        num(st.mean_active as f64)
    );
    s.push_str("</div><div class=\"ss-mid\">");
    s.push_str(&histogram(
        &f.act_histogram,
        &format!("ACTIVATIONS — DENSITY = {:.3}%", 100.0 * st.frac_nonzero),
        &|_| "#ff8c00",
    ));
    logit_table(s, f);
    s.push_str(&histogram(
        &f.logit_histogram,
        "LOGITS (feature_resid_dir · W_U)",
        &|c| {
            if c < 0.0 {
                "#4a78e0"
            } else {
                "#e04a4a"
            }
        },
    ));
    s.push_str("</div><div class=\"ss-right\">");
    let effect_scale = std::iter::once(&f.top_examples)
        .chain(&f.quantile_groups)
        .flat_map(|g| &g.examples)
        .flat_map(|e| &e.tokens)
        .filter_map(|t| t.next_logprob_delta)
        .map(f32::abs)
        .fold(0f32, f32::max);
    group(s, &f.top_examples, st.max, effect_scale);
    for g in &f.quantile_groups {
        group(s, g, st.max, effect_scale);
    }
    s.push_str("</div></div></section>");
}

const SCRIPT: &str = "(function(){var root=document.getElementById('ROOT');try{\
var sel=root.querySelector('.ss-select');var secs=root.querySelectorAll('.ss-feature');\
if(sel&&secs.length>1){sel.style.display='';var show=function(){for(var i=0;i<secs.length;i++){secs[i].style.display=(secs[i].getAttribute('data-latent')===sel.value)?'':'none';}};sel.addEventListener('change',show);show();var nav=root.querySelector('.ss-nav');if(nav)nav.style.display='none';}\
root.setAttribute('data-ready','1');var m=document.createElement('div');m.id='saescope-ready';m.style.display='none';m.textContent='ready';root.appendChild(m);\
}catch(e){var d=document.createElement('div');d.id='saescope-error';d.textContent='saescope-error: '+e;root.appendChild(d);}})();";

/// The dashboards (or one latent's) as an HTML fragment.
pub(crate) fn fragment(d: &Dashboards, only: Option<usize>) -> String {
    let uid = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let feats: Vec<&FeatureDashboard> = d
        .features
        .iter()
        .filter(|f| only.is_none_or(|l| l == f.latent))
        .collect();
    let mut s = String::new();
    let _ = write!(
        s,
        "<div class=\"sscope\" id=\"ss-{uid}\"><style>{CSS}</style>"
    );
    let _ = write!(
        s,
        "<div class=\"ss-head\"><b>{}</b> · SAE on <code>{}</code> (d_sae {}) · {} tokens scanned ({})",
        esc(&d.model_name),
        esc(&d.hook_name),
        d.d_sae,
        d.n_tokens,
        esc(&d.source)
    );
    if feats.len() > 1 {
        s.push_str(" · latent <select class=\"ss-select\" style=\"display:none\">");
        for f in &feats {
            let _ = write!(s, "<option value=\"{0}\">{0}</option>", f.latent);
        }
        s.push_str("</select></div><div class=\"ss-nav\">");
        for f in &feats {
            let _ = write!(s, "<a href=\"#ss-{uid}-f{0}\">{0}</a>", f.latent);
        }
    }
    s.push_str("</div>");
    for f in feats {
        feature(&mut s, d, f, uid);
    }
    let _ = write!(
        s,
        "<script>{}</script></div>",
        SCRIPT.replace("ROOT", &format!("ss-{uid}"))
    );
    s
}

/// A complete HTML document; `window.onerror` writes a `saescope-error` marker.
pub(crate) fn document(d: &Dashboards) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>saescope dashboards — {}</title>\
         <script>window.onerror=function(m){{var e=document.createElement('div');e.id='saescope-error';e.textContent='saescope-error: '+m;(document.body||document.documentElement).appendChild(e);}};</script>\
         </head><body>{}</body></html>\n",
        esc(&d.hook_name),
        fragment(d, None)
    )
}
