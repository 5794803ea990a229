//! Plots for notebooks and reports: line charts, heatmaps and scatter charts rendered to SVG
//! with plotters.
//!
//! Every chart function returns an [`Svg`]; as the value of an evcxr notebook cell it shows
//! inline (an `image/svg+xml` output), and [`Svg::save`] writes it to a file.
//!
//! ```no_run
//! # fn main() -> saescope::Result<()> {
//! use saescope::viz;
//! let x: Vec<String> = (0..4).map(|i| format!("L{i}")).collect();
//! let chart = viz::line_chart("logit lens", &x, &[("Paris".into(), vec![0.1, 0.5, 2.0, 7.5])], "logit")?;
//! chart.save("lens.svg")?;
//! # Ok(()) }
//! ```
//!
//! Text is measured with the system's fonts (fontconfig); a machine without any TrueType font
//! gets an [`crate::Error::Invalid`] that says so.
use crate::error::Result;

mod charts;
mod scatter;
mod svg;

pub(crate) use charts::PALETTE;
pub use charts::{heatmap, heatmap_with, line_chart, ColorScale, HeatmapOptions};
pub use scatter::{scatter, ScatterOptions, ScatterSeries};
pub use svg::{Html, Svg};

/// A histogram as a line chart of `counts` over the bin `centres` (labels rounded to what the
/// bin width can tell apart).
pub fn histogram_chart(title: &str, centres: &[f64], counts: &[f64], y_label: &str) -> Result<Svg> {
    let width = centres
        .windows(2)
        .map(|w| (w[1] - w[0]).abs())
        .fold(f64::INFINITY, f64::min);
    let digits = if width.is_finite() && width > 0.0 {
        (-width.log10()).ceil().clamp(0.0, 4.0) as usize
    } else {
        1
    };
    let labels: Vec<String> = centres.iter().map(|c| format!("{c:.digits$}")).collect();
    let ys: Vec<f32> = counts.iter().map(|&c| c as f32).collect();
    line_chart(title, &labels, &[("count".to_string(), ys)], y_label)
}
