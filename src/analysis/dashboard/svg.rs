//! Small inline-SVG bar charts for the dashboards' histograms (no fonts or network needed: the
//! browser draws the text).
use super::types::Histogram;

pub(crate) fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// A compact number: 3 significant digits, scientific for very small or large magnitudes.
pub(crate) fn num(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e5).contains(&a) {
        format!("{v:.2e}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// A histogram as an SVG bar chart, `title` above; `color(bin_centre)` fills the bars. Each bar
/// has a `<title>` tooltip with its range and count.
pub(crate) fn histogram(h: &Histogram, title: &str, color: &dyn Fn(f32) -> &'static str) -> String {
    let (w, ht) = (340.0f64, 150.0f64);
    let (left, right, top, bottom) = (36.0, 8.0, 22.0, 22.0);
    let pw = w - left - right;
    let ph = ht - top - bottom;
    let n = h.counts.len().max(1);
    let max = h.counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let bw = pw / n as f64;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{ht}\" viewBox=\"0 0 {w} {ht}\" class=\"ss-hist\">\
         <text x=\"{}\" y=\"14\" text-anchor=\"middle\" font-size=\"11\" font-weight=\"bold\">{}</text>",
        w / 2.0,
        esc(title)
    );
    for (i, &c) in h.counts.iter().enumerate() {
        let bh = ph * c as f64 / max;
        let x = left + i as f64 * bw;
        let (lo, hi) = (h.edges[i], h.edges[i + 1]);
        s.push_str(&format!(
            "<rect x=\"{x:.2}\" y=\"{:.2}\" width=\"{:.2}\" height=\"{bh:.2}\" fill=\"{}\"><title>{} – {}: {c}</title></rect>",
            top + ph - bh,
            (bw - 0.5).max(0.5),
            color(0.5 * (lo + hi)),
            num(lo as f64),
            num(hi as f64)
        ));
    }
    let axis_y = top + ph;
    s.push_str(&format!(
        "<line x1=\"{left}\" y1=\"{axis_y}\" x2=\"{}\" y2=\"{axis_y}\" stroke=\"#888\"/>",
        left + pw
    ));
    if let (Some(lo), Some(hi)) = (h.edges.first(), h.edges.last()) {
        for (x, v, anchor) in [
            (left, *lo, "start"),
            (left + pw / 2.0, 0.5 * (lo + hi), "middle"),
            (left + pw, *hi, "end"),
        ] {
            s.push_str(&format!(
                "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\" font-size=\"10\" fill=\"#444\">{}</text>",
                axis_y + 14.0,
                num(v as f64)
            ));
        }
    }
    s.push_str(&format!(
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"10\" fill=\"#444\">{}</text>",
        left - 4.0,
        top + 8.0,
        max as u64
    ));
    s.push_str("</svg>");
    s
}
