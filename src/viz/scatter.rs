//! Scatter charts (attribution vs ablation, PCA projections) rendered to SVG with plotters.
use plotters::prelude::*;

use super::charts::{
    draw_legend, fmt_tick, plot_err, tidy_label, FONT, LABEL_PT, MARGIN, PALETTE, TITLE_PT,
};
use super::svg::Svg;
use crate::error::{Error, Result};

/// One group of points of a [`scatter`] chart, drawn in one colour with one legend entry.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScatterSeries {
    /// Legend label (a legend is drawn when there are several series or any has a name).
    pub name: String,
    /// `(x, y)` data points; non-finite ones are skipped.
    pub points: Vec<(f32, f32)>,
    /// Text drawn next to each point: empty for none, otherwise one per point (`""` skips
    /// a point).
    pub labels: Vec<String>,
}

impl ScatterSeries {
    /// A series without point labels.
    pub fn new(name: impl Into<String>, points: Vec<(f32, f32)>) -> Self {
        ScatterSeries {
            name: name.into(),
            points,
            labels: Vec::new(),
        }
    }
}

/// Optional extras of a [`scatter`] chart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScatterOptions {
    /// Draw the line `y = x` (e.g. attribution vs ablation: points on it agree).
    pub diagonal: bool,
    /// Draw the axes `x = 0` and `y = 0`.
    pub zero_lines: bool,
    /// Give both axes the same range.
    pub equal_axes: bool,
}

fn padded(lo: f64, hi: f64) -> (f64, f64) {
    let pad = if hi > lo {
        (hi - lo) * 0.06
    } else {
        lo.abs().max(1.0) * 0.1
    };
    (lo - pad, hi + pad)
}

/// A scatter chart of one or more point series, with a legend when there is more than one
/// named series. Series are drawn in order (later ones on top); non-finite points are skipped.
///
/// Errors ([`Error::Invalid`]) when there is no series, when a series' labels do not match its
/// points, or when no point is finite.
pub fn scatter(
    title: &str,
    series: &[ScatterSeries],
    x_label: &str,
    y_label: &str,
    opts: &ScatterOptions,
) -> Result<Svg> {
    if series.is_empty() {
        return Err(Error::Invalid("scatter: no series to plot".into()));
    }
    for s in series {
        if !s.labels.is_empty() && s.labels.len() != s.points.len() {
            return Err(Error::Invalid(format!(
                "scatter: series `{}` has {} labels for {} points; give one label per point or none",
                s.name,
                s.labels.len(),
                s.points.len()
            )));
        }
    }
    let finite = |p: &&(f32, f32)| p.0.is_finite() && p.1.is_finite();
    let pts = || series.iter().flat_map(|s| s.points.iter().filter(finite));
    if pts().next().is_none() {
        return Err(Error::Invalid(format!(
            "scatter: no finite point to plot (\"{title}\")"
        )));
    }
    let fold = |f: fn(&(f32, f32)) -> f32| {
        pts().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(f(p) as f64), hi.max(f(p) as f64))
        })
    };
    let (mut xl, mut xh) = fold(|p| p.0);
    let (mut yl, mut yh) = fold(|p| p.1);
    if opts.zero_lines {
        (xl, xh, yl, yh) = (xl.min(0.0), xh.max(0.0), yl.min(0.0), yh.max(0.0));
    }
    if opts.equal_axes || opts.diagonal {
        let (lo, hi) = (xl.min(yl), xh.max(yh));
        (xl, xh, yl, yh) = (lo, hi, lo, hi);
    }
    let (x0, x1) = padded(xl, xh);
    let (y0, y1) = padded(yl, yh);
    let legend = series.len() > 1 || series.iter().any(|s| !s.name.is_empty());
    // Smaller markers when there are many points.
    let radius = match pts().count() {
        0..=200 => 4,
        201..=1000 => 3,
        _ => 2,
    };

    let (width, height) = (720u32, 560u32);
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, TITLE_PT))
            .margin(MARGIN)
            .x_label_area_size(48)
            .y_label_area_size(72)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(plot_err)?;
        let (xs, ys) = (x1 - x0, y1 - y0);
        let fmt_x = |v: &f64| fmt_tick(*v, xs);
        let fmt_y = |v: &f64| fmt_tick(*v, ys);
        chart
            .configure_mesh()
            .x_label_formatter(&fmt_x)
            .y_label_formatter(&fmt_y)
            .x_desc(x_label)
            .y_desc(y_label)
            .label_style((FONT, LABEL_PT))
            .axis_desc_style((FONT, LABEL_PT + 1.0))
            .bold_line_style(BLACK.mix(0.12))
            .light_line_style(TRANSPARENT)
            .draw()
            .map_err(plot_err)?;
        let guide = BLACK.mix(0.45).stroke_width(1);
        if opts.zero_lines {
            for line in [vec![(x0, 0.0), (x1, 0.0)], vec![(0.0, y0), (0.0, y1)]] {
                chart
                    .draw_series(LineSeries::new(line, guide))
                    .map_err(plot_err)?;
            }
        }
        if opts.diagonal {
            let (lo, hi) = (x0.max(y0), x1.min(y1));
            chart
                .draw_series(LineSeries::new(vec![(lo, lo), (hi, hi)], guide))
                .map_err(plot_err)?
                .label("y = x")
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], guide));
        }
        for (k, s) in series.iter().enumerate() {
            let colour = PALETTE[k % PALETTE.len()];
            let drawn = chart
                .draw_series(
                    s.points
                        .iter()
                        .filter(finite)
                        .map(|&(x, y)| Circle::new((x as f64, y as f64), radius, colour.filled())),
                )
                .map_err(plot_err)?;
            if legend {
                drawn
                    .label(tidy_label(&s.name, 40))
                    .legend(move |(x, y)| Circle::new((x + 10, y), 4, colour.filled()));
            }
            let style = TextStyle::from((FONT, LABEL_PT - 2.0).into_font()).color(&BLACK);
            for (&(x, y), text) in s.points.iter().zip(&s.labels) {
                if text.is_empty() || !(x.is_finite() && y.is_finite()) {
                    continue;
                }
                let (px, py) = chart.backend_coord(&(x as f64, y as f64));
                root.draw_text(&tidy_label(text, 24), &style, (px + 6, py - 14))
                    .map_err(plot_err)?;
            }
        }
        if legend || opts.diagonal {
            draw_legend(&mut chart)?;
        }
        root.present().map_err(plot_err)?;
    }
    Ok(Svg(buf))
}
