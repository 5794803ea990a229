//! The map as a scatter drawn directly in SVG (no fonts needed: the browser draws the text):
//! colour by cluster (Tableau-10, cycling; noise light grey), marker shape by SAE. The HTML
//! version gives each marker a `<title>` (the browser's own hover tooltip: latent, SAE,
//! cluster, top tokens, explanation), so it needs no script and works wherever HTML shows,
//! evcxr included.
use super::{LatentMap, LatentPoint};
use crate::analysis::dashboard::esc;
use crate::error::{Error, Result};
use crate::viz::{Html, Svg, PALETTE};
use std::fmt::Write;

const W: f32 = 760.0;
const H: f32 = 600.0;
const PAD: f32 = 36.0;
const TOP: f32 = 44.0;
const NOISE: &str = "#c8c8c8";

impl LatentMap {
    /// The interactive map: an inline SVG whose markers show the latent, its SAE, cluster,
    /// top tokens and explanation on hover. Self-contained (no script, no network); displays
    /// inline in evcxr.
    pub fn plot(&self) -> Result<Html> {
        let svg = self.render(true)?;
        Ok(Html(format!(
            "<div class=\"saescope-latent-map\"><style>.saescope-latent-map .pt:hover\
             {{stroke:#000;stroke-width:1.5}}</style>{svg}<div style=\"font:12px sans-serif;\
             color:#555\">Hover a point for its latent, cluster, top tokens and explanation.\
             </div></div>"
        )))
    }

    /// The map as a static SVG (no tooltips).
    pub fn plot_svg(&self) -> Result<Svg> {
        Ok(Svg(self.render(false)?))
    }

    fn render(&self, tooltips: bool) -> Result<String> {
        if self.points.is_empty() {
            return Err(Error::Invalid(
                "LatentMap::plot: the map has no points; build it from at least one latent".into(),
            ));
        }
        let (lo, hi) = self.points.iter().fold(
            ([f32::INFINITY; 2], [f32::NEG_INFINITY; 2]),
            |(lo, hi), p| {
                (
                    [lo[0].min(p.xy[0]), lo[1].min(p.xy[1])],
                    [hi[0].max(p.xy[0]), hi[1].max(p.xy[1])],
                )
            },
        );
        let span = |a: usize| (hi[a] - lo[a]).max(1e-6);
        let sx = |x: f32| PAD + (x - lo[0]) / span(0) * (W - 2.0 * PAD);
        let sy = |y: f32| H - PAD - (y - lo[1]) / span(1) * (H - PAD - TOP);
        let r = match self.points.len() {
            0..=500 => 4.0,
            501..=5000 => 2.6,
            _ => 1.8,
        };
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" \
             viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\">\
             <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\
             <text x=\"{}\" y=\"22\" font-size=\"15\" text-anchor=\"middle\">{}</text>",
            W / 2.0,
            esc(&self.title())
        );
        // Noise first, so clusters draw on top.
        let mut order: Vec<&LatentPoint> = self.points.iter().collect();
        order.sort_by_key(|p| p.cluster >= 0);
        for p in order {
            let colour = cluster_colour(p.cluster);
            let title = if tooltips {
                format!("<title>{}</title>", esc(&self.tooltip(p)))
            } else {
                String::new()
            };
            marker(
                &mut s,
                p.group,
                sx(p.xy[0]),
                sy(p.xy[1]),
                r,
                &colour,
                &title,
            );
        }
        self.legend(&mut s);
        write!(
            s,
            "<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\">UMAP 1</text>\
             <text x=\"12\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\" \
             transform=\"rotate(-90 12 {})\">UMAP 2</text></svg>",
            W / 2.0,
            H - 10.0,
            H / 2.0,
            H / 2.0
        )
        .ok();
        Ok(s)
    }

    fn title(&self) -> String {
        format!(
            "Latent map: {} latents of {}, {} clusters ({} noise)",
            self.points.len(),
            self.groups.join(", "),
            self.n_clusters(),
            self.points.iter().filter(|p| p.cluster < 0).count()
        )
    }

    /// The hover text of one point.
    pub(crate) fn tooltip(&self, p: &LatentPoint) -> String {
        let cluster = if p.cluster < 0 {
            "noise".to_string()
        } else {
            p.cluster.to_string()
        };
        let mut t = format!(
            "latent {} ({}) · cluster {cluster}",
            p.latent,
            self.groups.get(p.group).map_or("", |g| g.as_str())
        );
        if !p.top_tokens.is_empty() {
            let toks: Vec<String> = p.top_tokens.iter().map(|t| format!("{t:?}")).collect();
            write!(t, "\ntop tokens: {}", toks.join(" ")).ok();
        }
        if let Some(e) = &p.explanation {
            write!(t, "\n{e}").ok();
        }
        t
    }

    /// Marker shapes per SAE (when several) and the noise colour.
    fn legend(&self, s: &mut String) {
        let mut y = TOP;
        let x = W - 170.0;
        let rows = 1 + if self.groups.len() > 1 {
            self.groups.len()
        } else {
            0
        };
        write!(
            s,
            "<rect x=\"{}\" y=\"{}\" width=\"160\" height=\"{}\" fill=\"white\" \
             fill-opacity=\"0.85\"/>",
            x - 8.0,
            y - 12.0,
            rows as f32 * 16.0 + 4.0
        )
        .ok();
        let mut item = |s: &mut String, group: usize, colour: &str, text: &str| {
            marker(s, group, x, y - 4.0, 4.0, colour, "");
            write!(
                s,
                "<text x=\"{}\" y=\"{y}\" font-size=\"11\">{}</text>",
                x + 10.0,
                esc(text)
            )
            .ok();
            y += 16.0;
        };
        if self.groups.len() > 1 {
            for (g, name) in self.groups.iter().enumerate() {
                item(s, g, "#444", name);
            }
        }
        item(s, 0, NOISE, "noise");
    }
}

fn cluster_colour(cluster: i32) -> String {
    if cluster < 0 {
        return NOISE.into();
    }
    let c = PALETTE[cluster as usize % PALETTE.len()];
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

/// A marker of SAE `group`: circle, square, triangle, diamond (cycling).
fn marker(s: &mut String, group: usize, x: f32, y: f32, r: f32, fill: &str, title: &str) {
    let class = "class=\"pt\"";
    let _ = match group % 4 {
        0 => write!(s, "<circle {class} cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"{r}\" fill=\"{fill}\">{title}</circle>"),
        1 => write!(
            s,
            "<rect {class} x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{fill}\">{title}</rect>",
            x - r,
            y - r,
            2.0 * r,
            2.0 * r
        ),
        2 => write!(
            s,
            "<path {class} d=\"M{x:.1} {:.1}L{:.1} {:.1}L{:.1} {:.1}Z\" fill=\"{fill}\">{title}</path>",
            y - 1.2 * r,
            x + 1.1 * r,
            y + 0.8 * r,
            x - 1.1 * r,
            y + 0.8 * r
        ),
        _ => write!(
            s,
            "<path {class} d=\"M{x:.1} {:.1}L{:.1} {y:.1}L{x:.1} {:.1}L{:.1} {y:.1}Z\" fill=\"{fill}\">{title}</path>",
            y - 1.3 * r,
            x + 1.3 * r,
            y + 1.3 * r,
            x - 1.3 * r
        ),
    };
}
