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
mod charts;
mod scatter;
mod svg;

pub use charts::{heatmap, heatmap_with, line_chart, ColorScale, HeatmapOptions};
pub use scatter::{scatter, ScatterOptions, ScatterSeries};
pub use svg::{Html, Svg};
