//! Toy-model figures: features as arrows in 2-D, feature norms / superposition bars, and the
//! fraction of active SAE latents over training.
use super::sae::ToySaeLog;
use crate::error::{Error, Result};
use crate::viz::{line_chart, Svg};
use candle_core::{DType, Tensor};
use plotters::prelude::*;

const FONT: &str = "sans-serif";

fn plot_err<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> Error {
    Error::Invalid(format!("plotting failed: {e}"))
}

/// Viridis-like colour for `t ∈ [0, 1]`.
fn viridis(t: f32) -> RGBColor {
    const STOPS: [(f32, [u8; 3]); 5] = [
        (0.0, [68, 1, 84]),
        (0.25, [59, 82, 139]),
        (0.5, [33, 145, 140]),
        (0.75, [94, 201, 98]),
        (1.0, [253, 231, 37]),
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    for w in STOPS.windows(2) {
        let ((a, ca), (b, cb)) = (w[0], w[1]);
        if t <= b {
            let s = (t - a) / (b - a);
            let m = |i: usize| (ca[i] as f32 + s * (cb[i] as f32 - ca[i] as f32)) as u8;
            return RGBColor(m(0), m(1), m(2));
        }
    }
    RGBColor(253, 231, 37)
}

fn grid(n: usize) -> (usize, usize) {
    let cols = n.clamp(1, 4);
    (n.div_ceil(cols), cols)
}

/// ARENA's `plot_features_in_2d`: one panel per instance of `W [inst, 2, feats]`, each feature
/// drawn as an arrow from the origin to `W[:, i]`, coloured by `colors` (one value per
/// feature, e.g. the importance; default: the feature index).
pub fn plot_features_in_2d(w: &Tensor, colors: Option<&[f32]>, title: &str) -> Result<Svg> {
    let (ni, dh, nf) = w.dims3()?;
    if dh != 2 {
        return Err(Error::Invalid(format!(
            "plot_features_in_2d: W must be [inst, 2, feats], got {:?}",
            w.dims()
        )));
    }
    let v = w.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let cvals: Vec<f32> = match colors {
        Some(c) if c.len() == nf => c.to_vec(),
        Some(c) => {
            return Err(Error::Invalid(format!(
                "plot_features_in_2d: {} colours for {nf} features",
                c.len()
            )))
        }
        None => (0..nf).map(|i| i as f32).collect(),
    };
    let (lo, hi) = cvals
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), x| {
            (a.min(*x), b.max(*x))
        });
    let norm = |x: f32| if hi > lo { (x - lo) / (hi - lo) } else { 0.5 };
    let lim = v.iter().fold(1.0f32, |m, x| m.max(x.abs())).min(1e3) * 1.15;
    let (rows, cols) = grid(ni);
    let cell = 260u32;
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (cell * cols as u32, cell * rows as u32 + 40))
            .into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let root = root.titled(title, (FONT, 20)).map_err(plot_err)?;
        let panels = root.split_evenly((rows, cols));
        for (i, panel) in panels.iter().enumerate().take(ni) {
            let mut chart = ChartBuilder::on(panel)
                .caption(format!("instance {i}"), (FONT, 13))
                .margin(8)
                .x_label_area_size(18)
                .y_label_area_size(28)
                .build_cartesian_2d(-lim..lim, -lim..lim)
                .map_err(plot_err)?;
            chart
                .configure_mesh()
                .x_labels(5)
                .y_labels(5)
                .light_line_style(WHITE.mix(0.0))
                .label_style((FONT, 10))
                .draw()
                .map_err(plot_err)?;
            for f in 0..nf {
                let (x, y) = (v[(i * 2) * nf + f], v[(i * 2 + 1) * nf + f]);
                let c = viridis(norm(cvals[f]));
                chart
                    .draw_series(LineSeries::new(
                        vec![(0.0, 0.0), (x, y)],
                        ShapeStyle::from(&c).stroke_width(2),
                    ))
                    .map_err(plot_err)?;
                chart
                    .draw_series(std::iter::once(Circle::new((x, y), 4, c.filled())))
                    .map_err(plot_err)?;
            }
        }
    }
    Ok(Svg(buf))
}

/// ARENA's `plot_features_in_Nd` (bars half): per instance, `‖W_i‖` for each feature,
/// coloured by its superposition `√Σ_{j≠i}(Ŵ_i·W_j)²` (dark: orthogonal, bright: in
/// superposition). `W [inst, d_hidden, feats]`.
pub fn plot_features_in_nd(w: &Tensor, title: &str) -> Result<Svg> {
    let (ni, dh, nf) = w.dims3()?;
    let v = w.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let col =
        |i: usize, f: usize| -> Vec<f32> { (0..dh).map(|k| v[(i * dh + k) * nf + f]).collect() };
    let (rows, cols) = grid(ni);
    let (cw, ch) = (320u32, 240u32);
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (cw * cols as u32, ch * rows as u32 + 40))
            .into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let root = root.titled(title, (FONT, 20)).map_err(plot_err)?;
        let panels = root.split_evenly((rows, cols));
        for (i, panel) in panels.iter().enumerate().take(ni) {
            let cols_i: Vec<Vec<f32>> = (0..nf).map(|f| col(i, f)).collect();
            let norms: Vec<f32> = cols_i
                .iter()
                .map(|c| c.iter().map(|x| x * x).sum::<f32>().sqrt())
                .collect();
            let sup: Vec<f32> = (0..nf)
                .map(|a| {
                    let na = norms[a].max(1e-12);
                    (0..nf)
                        .filter(|b| *b != a)
                        .map(|b| {
                            let d: f32 = cols_i[a].iter().zip(&cols_i[b]).map(|(x, y)| x * y).sum();
                            (d / na).powi(2)
                        })
                        .sum::<f32>()
                        .sqrt()
                })
                .collect();
            let top = norms.iter().fold(1.0f32, |m, x| m.max(*x)) * 1.1;
            let mut chart = ChartBuilder::on(panel)
                .caption(format!("instance {i}"), (FONT, 13))
                .margin(8)
                .x_label_area_size(18)
                .y_label_area_size(30)
                .build_cartesian_2d(0f32..nf as f32, 0f32..top)
                .map_err(plot_err)?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .label_style((FONT, 10))
                .draw()
                .map_err(plot_err)?;
            chart
                .draw_series((0..nf).map(|f| {
                    let c = viridis(sup[f].min(1.0));
                    Rectangle::new(
                        [(f as f32 + 0.1, 0.0), (f as f32 + 0.9, norms[f])],
                        c.filled(),
                    )
                }))
                .map_err(plot_err)?;
        }
    }
    Ok(Svg(buf))
}

/// ARENA's `frac_active_line_plot`: the fraction of the batch on which each latent of
/// instance `inst` fires, at the logged steps.
pub fn frac_active_plot(log: &ToySaeLog, inst: usize, d_sae: usize, title: &str) -> Result<Svg> {
    if log.steps.is_empty() {
        return Err(Error::Invalid("frac_active_plot: the log is empty".into()));
    }
    let x: Vec<String> = log.steps.iter().map(|s| s.to_string()).collect();
    let series: Vec<(String, Vec<f32>)> = (0..d_sae)
        .map(|j| {
            let ys = log
                .frac_active
                .iter()
                .map(|f| f.get(inst * d_sae + j).copied().unwrap_or(f32::NAN))
                .collect();
            (format!("latent {j}"), ys)
        })
        .collect();
    line_chart(title, &x, &series, "fraction active")
}
