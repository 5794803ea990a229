//! Line charts and heatmaps rendered to SVG with plotters.
use candle_core::{DType, Tensor};
use std::ops::Range;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, KeyPointWeight};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::svg::Svg;
use crate::error::{Error, Result};

/// Font family for all text (resolved through fontconfig when measuring text).
pub(super) const FONT: &str = "sans-serif";
pub(super) const TITLE_PT: f64 = 20.0;
pub(super) const LABEL_PT: f64 = 13.0;
pub(super) const MARGIN: u32 = 12;

/// Tableau-10, the default categorical palette of matplotlib and plotly.
pub(crate) const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// White to dark blue (matplotlib "Blues").
const SEQUENTIAL: [(f32, [u8; 3]); 5] = [
    (0.0, [247, 251, 255]),
    (0.25, [198, 219, 239]),
    (0.5, [107, 174, 214]),
    (0.75, [33, 113, 181]),
    (1.0, [8, 48, 107]),
];

/// Blue (negative) through white (zero) to red (positive): "RdBu" reversed, as TransformerLens
/// demos use for signed quantities.
const DIVERGING: [(f32, [u8; 3]); 5] = [
    (0.0, [5, 48, 97]),
    (0.25, [67, 147, 195]),
    (0.5, [247, 247, 247]),
    (0.75, [214, 96, 77]),
    (1.0, [103, 0, 31]),
];

/// Maps plotters' drawing errors into the crate error.
pub(super) fn plot_err<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> Error {
    let msg = e.to_string();
    let hint = if msg.contains("Font loading error") {
        " (no usable system font: install fontconfig and a TrueType font, e.g. the \
         fonts-dejavu-core package)"
    } else {
        ""
    };
    Error::Invalid(format!("plotting failed: {msg}{hint}"))
}

/// A linear f64 axis whose ticks sit exactly at the given positions (plotters'
/// `with_key_points` loses the default label formatting, so it cannot take a label formatter).
#[derive(Clone)]
struct TickAxis {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
}

impl TickAxis {
    fn new(range: Range<f64>, ticks: Vec<f64>) -> Self {
        TickAxis {
            lo: range.start,
            hi: range.end,
            ticks,
        }
    }
}

impl Ranged for TickAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        if self.hi == self.lo {
            return (limit.0 + limit.1) / 2;
        }
        let t = (v - self.lo) / (self.hi - self.lo);
        limit.0 + ((limit.1 - limit.0) as f64 * t + 1e-3).floor() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        match hint.weight() {
            KeyPointWeight::Bold => self.ticks.clone(),
            // No light (minor) grid lines.
            KeyPointWeight::Any => Vec::new(),
        }
    }

    fn range(&self) -> Range<f64> {
        self.lo..self.hi
    }
}

/// Tick labels are shown verbatim except that control characters become escapes (a newline
/// token shows as `\n`) and labels longer than `max_chars` are cut with an ellipsis.
pub(super) fn tidy_label(s: &str, max_chars: usize) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    if out.chars().count() > max_chars {
        let mut cut: String = out.chars().take(max_chars.saturating_sub(1)).collect();
        cut.push('…');
        cut
    } else {
        out
    }
}

/// Width and height in pixels of `text` at `pt`, from the font when one is available and from
/// a per-character estimate otherwise.
fn text_size(text: &str, pt: f64) -> (u32, u32) {
    match FontDesc::new(FontFamily::Name(FONT), pt, FontStyle::Normal).box_size(text) {
        Ok(size) => size,
        Err(_) => (
            (text.chars().count() as f64 * pt * 0.6).ceil() as u32,
            pt.ceil() as u32,
        ),
    }
}

fn max_text_width(labels: &[String], pt: f64) -> u32 {
    labels.iter().map(|l| text_size(l, pt).0).max().unwrap_or(0)
}

/// Formats an axis value with as many decimals as ticks about `span / 8` apart need, and
/// without a minus sign on zero.
pub(super) fn fmt_tick(v: f64, span: f64) -> String {
    let step = span / 8.0;
    let mut decimals = if step > 0.0 && step.is_finite() {
        (-step.log10().floor()).clamp(0.0, 6.0) as usize
    } else {
        2
    };
    // A tick such as 0.25 needs one more decimal than its spacing suggests.
    while decimals < 6
        && (format!("{v:.decimals$}").parse::<f64>().unwrap_or(v) - v).abs() > step * 1e-3
    {
        decimals += 1;
    }
    let s = format!("{v:.decimals$}");
    if s.trim_start_matches('-')
        .chars()
        .all(|c| c == '0' || c == '.')
    {
        s.trim_start_matches('-').to_string()
    } else {
        s
    }
}

/// Indices `0, k, 2k, ...` with `k` chosen so that at most `max_ticks` are shown.
fn tick_indices(n: usize, max_ticks: usize) -> Vec<usize> {
    let step = n.div_ceil(max_ticks.max(1)).max(1);
    (0..n).step_by(step).collect()
}

fn colour_at(stops: &[(f32, [u8; 3])], t: f32) -> RGBColor {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    for w in stops.windows(2) {
        let (t0, c0) = w[0];
        let (t1, c1) = w[1];
        if t <= t1 {
            let f = if t1 > t0 { (t - t0) / (t1 - t0) } else { 0.0 };
            let mix = |a: u8, b: u8| (a as f32 + (b as f32 - a as f32) * f).round() as u8;
            return RGBColor(mix(c0[0], c1[0]), mix(c0[1], c1[1]), mix(c0[2], c1[2]));
        }
    }
    let c = stops[stops.len() - 1].1;
    RGBColor(c[0], c[1], c[2])
}

/// Draws `labels` under the x axis at the given pixel x positions, rotated to read bottom to top
/// and hanging down from `y` (plotters' own rotated mesh labels are centred on the tick, which
/// makes them overlap the plot in SVG).
fn draw_rotated_labels<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    labels: &[(i32, String)],
    y: i32,
    pt: f64,
) -> Result<()> {
    let style = TextStyle::from((FONT, pt).into_font())
        .transform(FontTransform::Rotate270)
        .pos(Pos::new(HPos::Right, VPos::Center));
    for (x, text) in labels {
        root.draw_text(text, &style, (*x, y)).map_err(plot_err)?;
    }
    Ok(())
}

/// A line chart with one line per series, a legend and the x positions labelled.
///
/// * `x_labels`: one label per x position (e.g. `"0_pre"`, ..., `"final_post"` from
///   `accumulated_resid`, or the string tokens). Long labels are shortened; when there are many,
///   they are rotated and only every k-th one is shown.
/// * `series`: `(name, values)` pairs, each with `x_labels.len()` values. Non-finite values
///   (NaN, ±inf) leave a gap in the line.
/// * `y_label`: the y-axis description.
///
/// Errors ([`Error::Invalid`]) when there are no x labels or no series, when a series' length
/// differs from `x_labels.len()`, or when no value is finite.
pub fn line_chart(
    title: &str,
    x_labels: &[String],
    series: &[(String, Vec<f32>)],
    y_label: &str,
) -> Result<Svg> {
    let n = x_labels.len();
    if n == 0 {
        return Err(Error::Invalid(
            "line_chart: x_labels is empty; pass one label per x position".into(),
        ));
    }
    if series.is_empty() {
        return Err(Error::Invalid("line_chart: no series to plot".into()));
    }
    for (name, ys) in series {
        if ys.len() != n {
            return Err(Error::Invalid(format!(
                "line_chart: series `{name}` has {} values but there are {n} x labels",
                ys.len()
            )));
        }
    }
    let finite = series
        .iter()
        .flat_map(|(_, ys)| ys.iter().copied())
        .filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if lo > hi {
        return Err(Error::Invalid(format!(
            "line_chart: every value of every series is NaN or infinite (\"{title}\")"
        )));
    }
    let pad = if hi > lo {
        (hi - lo) * 0.06
    } else {
        lo.abs().max(1.0) * 0.1
    };
    let (y0, y1) = (lo - pad, hi + pad);

    // X tick labels: at most ~40, rotated when they would not fit side by side.
    let ticks = tick_indices(n, 40);
    let shown: Vec<String> = ticks
        .iter()
        .map(|&i| tidy_label(&x_labels[i], 18))
        .collect();
    let plot_w_guess = 820.0 - 90.0;
    let slot = plot_w_guess / ticks.len() as f64;
    let widest = max_text_width(&shown, LABEL_PT);
    let rotate = widest as f64 > slot * 0.9;
    let label_h = text_size("Ag", LABEL_PT).1;
    let x_area = if rotate { widest + 14 } else { label_h + 14 };

    let width = 820u32;
    let height = 440 + x_area;
    let legend_names: Vec<String> = series.iter().map(|(s, _)| tidy_label(s, 40)).collect();
    let markers = n <= 60;
    let x_pad = if n == 1 { 0.5 } else { 0.25 };
    let x_range = (-x_pad)..((n - 1) as f64 + x_pad);

    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, TITLE_PT))
            .margin(MARGIN)
            .x_label_area_size(x_area)
            .y_label_area_size(64)
            .build_cartesian_2d(
                TickAxis::new(x_range, ticks.iter().map(|&i| i as f64).collect()),
                y0..y1,
            )
            .map_err(plot_err)?;

        let fmt_x = |v: &f64| -> String {
            if rotate {
                return String::new();
            }
            let i = v.round();
            if i >= 0.0 && (i as usize) < n {
                tidy_label(&x_labels[i as usize], 18)
            } else {
                String::new()
            }
        };
        let y_span = (y1 - y0) as f64;
        let fmt_y = |v: &f32| fmt_tick(*v as f64, y_span);
        chart
            .configure_mesh()
            .x_label_formatter(&fmt_x)
            .y_label_formatter(&fmt_y)
            .y_desc(y_label)
            .label_style((FONT, LABEL_PT))
            .axis_desc_style((FONT, LABEL_PT + 1.0))
            .bold_line_style(BLACK.mix(0.12))
            .light_line_style(TRANSPARENT)
            .draw()
            .map_err(plot_err)?;

        if rotate {
            let base_y = chart.backend_coord(&(0.0, y0)).1 + 8;
            let placed: Vec<(i32, String)> = ticks
                .iter()
                .zip(shown.iter())
                .map(|(&i, s)| (chart.backend_coord(&(i as f64, y0)).0, s.clone()))
                .collect();
            draw_rotated_labels(&root, &placed, base_y, LABEL_PT)?;
        }

        for (k, (_, ys)) in series.iter().enumerate() {
            let colour = PALETTE[k % PALETTE.len()];
            let line_style = colour.stroke_width(2);
            // The legend entry (an empty series that only carries the label).
            chart
                .draw_series(std::iter::empty::<PathElement<(f64, f32)>>())
                .map_err(plot_err)?
                .label(legend_names[k].clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], line_style));
            // One polyline per run of finite values.
            let mut run: Vec<(f64, f32)> = Vec::new();
            for (i, &v) in ys.iter().enumerate() {
                if v.is_finite() {
                    run.push((i as f64, v));
                }
                if (!v.is_finite() || i + 1 == n) && !run.is_empty() {
                    let pts = std::mem::take(&mut run);
                    chart
                        .draw_series(LineSeries::new(pts, line_style))
                        .map_err(plot_err)?;
                }
            }
            if markers {
                chart
                    .draw_series(
                        ys.iter()
                            .enumerate()
                            .filter(|(_, v)| v.is_finite())
                            .map(|(i, &v)| Circle::new((i as f64, v), 3, colour.filled())),
                    )
                    .map_err(plot_err)?;
            }
        }

        draw_legend(&mut chart)?;
        root.present().map_err(plot_err)?;
    }
    Ok(Svg(buf))
}

/// The series legend in the upper left corner, as every chart here draws it.
pub(super) fn draw_legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> Result<()> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FONT, LABEL_PT))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()
        .map_err(plot_err)?;
    Ok(())
}

/// How heatmap values map to colours.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ColorScale {
    /// `Sequential` when no finite value is negative (e.g. attention patterns), else `Diverging`.
    #[default]
    Auto,
    /// White (low) to dark blue (high), over `[min(0, min value), max value]`.
    Sequential,
    /// Blue (negative), white (zero), red (positive), symmetric around zero.
    Diverging,
}

/// Optional settings for [`heatmap_with`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct HeatmapOptions {
    /// How values map to colours (default [`ColorScale::Auto`]).
    pub scale: ColorScale,
    /// Value mapped to the lowest colour (default: from the data and the scale).
    pub vmin: Option<f32>,
    /// Value mapped to the highest colour (default: from the data and the scale).
    pub vmax: Option<f32>,
}

/// A heatmap of a 2-D tensor (any dtype; converted to f32), with a colour-scale legend.
///
/// Made for attention patterns: rows are query positions and columns key positions, e.g.
/// `viz::heatmap("L0H3", &pattern.i((0, 3))?, &str_toks, &str_toks)`. Row 0 is at the top.
/// NaN and ±inf cells (a causal mask) are left blank. With the default [`ColorScale::Auto`],
/// non-negative data get a white-to-blue scale from 0 and signed data a blue-white-red scale
/// centred on 0.
///
/// `row_labels`/`col_labels` must have one label per row/column, or be empty for index labels.
/// Errors ([`Error::Invalid`]) for a tensor that is not 2-D or is empty, and for label counts
/// that do not match.
pub fn heatmap(
    title: &str,
    values: &Tensor,
    row_labels: &[String],
    col_labels: &[String],
) -> Result<Svg> {
    heatmap_with(
        title,
        values,
        row_labels,
        col_labels,
        &HeatmapOptions::default(),
    )
}

/// [`heatmap`] with an explicit colour scale and/or value range.
pub fn heatmap_with(
    title: &str,
    values: &Tensor,
    row_labels: &[String],
    col_labels: &[String],
    options: &HeatmapOptions,
) -> Result<Svg> {
    let dims = values.dims();
    if dims.len() != 2 {
        return Err(Error::Invalid(format!(
            "heatmap: expected a 2-D tensor [rows, cols], got shape {dims:?}; select a 2-D \
             slice first, e.g. pattern.i((0, head))? for one head's attention pattern"
        )));
    }
    let (rows, cols) = (dims[0], dims[1]);
    if rows == 0 || cols == 0 {
        return Err(Error::Invalid(format!(
            "heatmap: the tensor is empty (shape {dims:?})"
        )));
    }
    let labels_for = |given: &[String], n: usize, what: &str| -> Result<Vec<String>> {
        if given.is_empty() {
            Ok((0..n).map(|i| i.to_string()).collect())
        } else if given.len() == n {
            Ok(given.iter().map(|s| tidy_label(s, 18)).collect())
        } else {
            Err(Error::Invalid(format!(
                "heatmap: {} {what} labels for a tensor with {n} {what}s (shape {dims:?}); \
                 pass {n} labels or none",
                given.len()
            )))
        }
    };
    let row_labels = labels_for(row_labels, rows, "row")?;
    let col_labels = labels_for(col_labels, cols, "column")?;
    let data: Vec<Vec<f32>> = values.to_dtype(DType::F32)?.to_vec2::<f32>()?;

    // Colour range.
    let (lo, hi) = data
        .iter()
        .flatten()
        .filter(|v| v.is_finite())
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let (lo, hi) = if lo > hi { (0.0, 1.0) } else { (lo, hi) };
    let scale = match options.scale {
        ColorScale::Auto if lo >= 0.0 => ColorScale::Sequential,
        ColorScale::Auto => ColorScale::Diverging,
        s => s,
    };
    let (mut vmin, mut vmax) = match scale {
        ColorScale::Diverging => {
            let m = lo.abs().max(hi.abs());
            (-m, m)
        }
        _ => (lo.min(0.0), hi),
    };
    if let Some(v) = options.vmin {
        vmin = v;
    }
    if let Some(v) = options.vmax {
        vmax = v;
    }
    // Also catches NaN bounds.
    if vmax.partial_cmp(&vmin) != Some(std::cmp::Ordering::Greater) {
        vmax = vmin + 1.0;
    }
    let stops: &[(f32, [u8; 3])] = if scale == ColorScale::Diverging {
        &DIVERGING
    } else {
        &SEQUENTIAL
    };
    let colour = |v: f32| colour_at(stops, (v - vmin) / (vmax - vmin));

    // Layout: square cells sized to keep the map around 560 px, at least 120 px tall.
    let cell = (560.0 / rows.max(cols) as f64).clamp(6.0, 36.0);
    let plot_w = (cell * cols as f64).round() as u32;
    let plot_h = (cell * rows as f64).max(120.0).round() as u32;
    let cell_h = plot_h as f64 / rows as f64;
    let label_pt = cell.min(cell_h).clamp(9.0, LABEL_PT);
    let label_h = text_size("Ag", label_pt).1;
    let row_ticks = tick_indices(rows, (plot_h / label_h.max(1)).max(1) as usize);
    let col_ticks = tick_indices(cols, (plot_w / label_h.max(1)).max(1) as usize);
    let row_shown: Vec<String> = row_ticks.iter().map(|&i| row_labels[i].clone()).collect();
    let col_shown: Vec<String> = col_ticks.iter().map(|&i| col_labels[i].clone()).collect();
    let left = max_text_width(&row_shown, label_pt) + 14;
    let bottom = max_text_width(&col_shown, label_pt) + 16;
    let title_h = text_size(title, TITLE_PT).1 + 10 + MARGIN / 2;
    let legend_w = 110u32;
    let title_w = text_size(title, TITLE_PT).0 + 2 * MARGIN;
    let width = (2 * MARGIN + left + plot_w + legend_w)
        .max(title_w)
        .max(320);
    let height = title_h + 2 * MARGIN + plot_h + bottom;

    let (nr, nc) = (rows as f64, cols as f64);
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        // The title spans the whole figure (a chart caption would be centred over the map only).
        let body = root
            .margin(MARGIN / 2, 0, 0, 0)
            .titled(title, (FONT, TITLE_PT))
            .map_err(plot_err)?;
        let (main, legend) = body.split_horizontally(width - legend_w);
        let mut chart = ChartBuilder::on(&main)
            .margin(MARGIN)
            .x_label_area_size(bottom)
            .y_label_area_size(left)
            .build_cartesian_2d(
                TickAxis::new(0.0..nc, col_ticks.iter().map(|&c| c as f64 + 0.5).collect()),
                TickAxis::new(
                    0.0..nr,
                    row_ticks.iter().map(|&r| nr - r as f64 - 0.5).collect(),
                ),
            )
            .map_err(plot_err)?;
        let fmt_y = |v: &f64| -> String {
            let r = (nr - v).floor();
            if r >= 0.0 && (r as usize) < rows {
                row_labels[r as usize].clone()
            } else {
                String::new()
            }
        };
        let no_x = |_: &f64| String::new();
        chart
            .configure_mesh()
            .disable_mesh()
            .x_label_formatter(&no_x)
            .y_label_formatter(&fmt_y)
            .label_style((FONT, label_pt))
            .draw()
            .map_err(plot_err)?;
        let base_y = chart.backend_coord(&(0.0, 0.0)).1 + 8;
        let placed: Vec<(i32, String)> = col_ticks
            .iter()
            .zip(col_shown)
            .map(|(&c, s)| (chart.backend_coord(&(c as f64 + 0.5, 0.0)).0, s))
            .collect();
        draw_rotated_labels(&root, &placed, base_y, label_pt)?;

        chart
            .draw_series(data.iter().enumerate().flat_map(|(r, row)| {
                row.iter()
                    .enumerate()
                    .filter(|(_, v)| v.is_finite())
                    .map(move |(c, &v)| {
                        let y = nr - r as f64;
                        Rectangle::new(
                            [(c as f64, y - 1.0), (c as f64 + 1.0, y)],
                            colour(v).filled(),
                        )
                    })
            }))
            .map_err(plot_err)?;

        // Colour bar, aligned with the plot area.
        let plot_top = chart.backend_coord(&(0.0, nr)).1;
        let plot_bottom = chart.backend_coord(&(0.0, 0.0)).1;
        let legend_top = legend.get_base_pixel().1;
        let legend_bottom = legend_top + legend.dim_in_pixel().1 as i32;
        let steps = 64;
        let mut bar = ChartBuilder::on(&legend)
            .margin_top((plot_top - legend_top).max(0) as u32)
            .margin_bottom((legend_bottom - plot_bottom).max(0) as u32)
            .margin_left(8)
            .margin_right(6)
            .set_label_area_size(LabelAreaPosition::Right, 64)
            .build_cartesian_2d(0f32..1f32, vmin..vmax)
            .map_err(plot_err)?;
        let bar_span = (vmax - vmin) as f64;
        let fmt_bar = |v: &f32| fmt_tick(*v as f64, bar_span);
        bar.configure_mesh()
            .disable_mesh()
            .y_label_formatter(&fmt_bar)
            .disable_x_axis()
            .y_labels(6)
            .label_style((FONT, LABEL_PT - 1.0))
            .draw()
            .map_err(plot_err)?;
        let dv = (vmax - vmin) / steps as f32;
        bar.draw_series((0..steps).map(|i| {
            let a = vmin + dv * i as f32;
            Rectangle::new([(0.0, a), (1.0, a + dv)], colour(a + dv / 2.0).filled())
        }))
        .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(Svg(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_tidied() {
        assert_eq!(tidy_label("a\nb", 10), "a\\nb");
        assert_eq!(tidy_label("abcdefghij", 5), "abcd…");
        assert_eq!(tidy_label(" Paris", 18), " Paris");
    }

    #[test]
    fn ticks_are_thinned() {
        assert_eq!(tick_indices(5, 40), vec![0, 1, 2, 3, 4]);
        assert_eq!(
            tick_indices(100, 40),
            (0..100).step_by(3).collect::<Vec<_>>()
        );
    }

    #[test]
    fn tick_format() {
        assert_eq!(fmt_tick(-0.0001, 2.0), "0.0");
        assert_eq!(fmt_tick(35.0, 40.0), "35");
        assert_eq!(fmt_tick(0.25, 1.0), "0.25");
    }

    #[test]
    fn colour_scale_ends() {
        assert_eq!(colour_at(&SEQUENTIAL, 0.0), RGBColor(247, 251, 255));
        assert_eq!(colour_at(&SEQUENTIAL, 1.0), RGBColor(8, 48, 107));
        assert_eq!(colour_at(&DIVERGING, 0.5), RGBColor(247, 247, 247));
    }
}
