//! Attribution patching against true ablation, latent by latent (ARENA §1.5's scatter of
//! attribution vs ablation with a `y = x` line), and the rank statistics to judge it.
use super::ablation::ablation_effects;
use super::gradients::attribution_patching;
use super::metric::Metric;
use crate::error::{Error, Result};
use crate::model::HookedModel;
use crate::sae::Sae;
use crate::viz::{scatter, ScatterOptions, ScatterSeries, Svg};
use candle_core::Tensor;

/// One latent's attribution and ablation effect at one position (batch means).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LatentComparison {
    /// Latent index (`0..d_sae`).
    pub latent: usize,
    /// The latent's activation at the position, averaged over the batch.
    pub act: f32,
    /// `grad · act` (attribution patching).
    pub attribution: f64,
    /// `metric(clean) − metric(latent zeroed)`.
    pub ablation: f64,
}

impl std::fmt::Display for LatentComparison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "latent {:5}: act {:5.1}, ablation {:+.3}, attribution {:+.3}",
            self.latent, self.act, self.ablation, self.attribution
        )
    }
}

/// [`compare_attribution_ablation`]'s result.
#[derive(Clone, Debug)]
pub struct AttributionVsAblation {
    /// `<sae hook>.hook_sae_acts_post`.
    pub hook: String,
    /// The position compared at (the requested one, or the last if `None`).
    pub pos: usize,
    /// The metric with the SAE and its error term (= the clean model's).
    pub metric: f64,
    /// Every latent active at `pos`, ascending.
    pub latents: Vec<LatentComparison>,
}

/// Attribution patching and true ablation of every latent of `sae` active at `pos` (None =
/// last), both for `metric`, both with the SAE's error term.
pub fn compare_attribution_ablation(
    model: &HookedModel,
    tokens: &Tensor,
    sae: &Sae,
    metric: &Metric,
    pos: Option<usize>,
) -> Result<AttributionVsAblation> {
    let attr = attribution_patching(model, tokens, sae, metric)?;
    let abl = ablation_effects(model, tokens, sae, metric, pos, None)?;
    let at = attr.at_pos(Some(abl.pos))?;
    let latents = abl
        .effects
        .iter()
        .map(|e| LatentComparison {
            latent: e.latent,
            act: e.act,
            attribution: at[e.latent] as f64,
            ablation: e.effect,
        })
        .collect();
    Ok(AttributionVsAblation {
        hook: abl.hook,
        pos: abl.pos,
        metric: abl.metric,
        latents,
    })
}

impl AttributionVsAblation {
    /// The `k` latents with the largest `|ablation|`, largest first.
    pub fn top_by_ablation(&self, k: usize) -> Vec<LatentComparison> {
        let mut v = self.latents.clone();
        v.sort_by(|a, b| b.ablation.abs().total_cmp(&a.ablation.abs()));
        v.truncate(k);
        v
    }

    /// Spearman rank correlation of attribution and ablation over `rows`.
    pub fn spearman(rows: &[LatentComparison]) -> Result<f64> {
        let a: Vec<f64> = rows.iter().map(|r| r.attribution).collect();
        let b: Vec<f64> = rows.iter().map(|r| r.ablation).collect();
        spearman(&a, &b)
    }

    /// The fraction of `rows` with `|ablation| >= min_abs` whose attribution has the
    /// ablation's sign (1.0 when no row is that large).
    pub fn sign_agreement(rows: &[LatentComparison], min_abs: f64) -> f64 {
        let big: Vec<_> = rows
            .iter()
            .filter(|r| r.ablation.abs() >= min_abs)
            .collect();
        if big.is_empty() {
            return 1.0;
        }
        let same = big
            .iter()
            .filter(|r| r.attribution.signum() == r.ablation.signum())
            .count();
        same as f64 / big.len() as f64
    }

    /// ARENA's plot: ablation effect (x) against attribution (y), one point per latent, with
    /// the line `y = x`; the `label_top` latents with the largest `|ablation|` are labelled.
    pub fn plot(&self, title: &str, label_top: usize) -> Result<Svg> {
        plot_attribution_vs_ablation(title, &self.latents, label_top)
    }
}

/// Scatter of `rows`' ablation effects (x) against their attributions (y) with `y = x`,
/// labelling the `label_top` latents with the largest `|ablation|`.
pub fn plot_attribution_vs_ablation(
    title: &str,
    rows: &[LatentComparison],
    label_top: usize,
) -> Result<Svg> {
    if rows.is_empty() {
        return Err(Error::Invalid(
            "plot_attribution_vs_ablation: no latents to plot (none was active?)".into(),
        ));
    }
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by(|&a, &b| rows[b].ablation.abs().total_cmp(&rows[a].ablation.abs()));
    let mut labels = vec![String::new(); rows.len()];
    for &i in order.iter().take(label_top) {
        labels[i] = rows[i].latent.to_string();
    }
    let series = ScatterSeries {
        name: String::new(),
        points: rows
            .iter()
            .map(|r| (r.ablation as f32, r.attribution as f32))
            .collect(),
        labels,
    };
    let opts = ScatterOptions {
        diagonal: true,
        zero_lines: true,
        equal_axes: true,
    };
    scatter(
        title,
        &[series],
        "ablation effect (clean − ablated)",
        "attribution (grad × act)",
        &opts,
    )
}

/// Ranks `1..=n` of `v`, ties sharing their mean rank.
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let mean = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            r[k] = mean;
        }
        i = j + 1;
    }
    r
}

/// Pearson correlation of two equally long slices.
pub fn pearson(a: &[f64], b: &[f64]) -> Result<f64> {
    if a.len() != b.len() || a.len() < 2 {
        return Err(Error::Invalid(format!(
            "a correlation needs two equally long series of at least 2 values (got {} and {})",
            a.len(),
            b.len()
        )));
    }
    if a.iter().chain(b).any(|v| !v.is_finite()) {
        return Err(Error::Invalid(
            "a correlation of non-finite values (NaN or ±inf) is undefined".into(),
        ));
    }
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    if saa == 0.0 || sbb == 0.0 {
        return Err(Error::Invalid(
            "a correlation with a constant series is undefined".into(),
        ));
    }
    Ok(sab / (saa * sbb).sqrt())
}

/// Spearman rank correlation (Pearson correlation of the ranks; ties get their mean rank).
pub fn spearman(a: &[f64], b: &[f64]) -> Result<f64> {
    if a.iter().chain(b).any(|v| v.is_nan()) {
        return Err(Error::Invalid(
            "a rank correlation of NaN values is undefined".into(),
        ));
    }
    if a.len() != b.len() {
        return pearson(a, b);
    }
    pearson(&ranks(a), &ranks(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_statistics() {
        assert_eq!(ranks(&[3.0, 1.0, 2.0, 1.0]), vec![4.0, 1.5, 3.0, 1.5]);
        let a = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert!((spearman(&a, &[1.0, 4.0, 9.0, 16.0, 25.0]).unwrap() - 1.0).abs() < 1e-12);
        assert!((spearman(&a, &[5.0, 4.0, 3.0, 2.0, 1.0]).unwrap() + 1.0).abs() < 1e-12);
        // scipy.stats.spearmanr([1,2,3,4,5], [2,1,4,3,5]) = 0.8
        assert!((spearman(&a, &[2.0, 1.0, 4.0, 3.0, 5.0]).unwrap() - 0.8).abs() < 1e-12);
        assert!(spearman(&a, &[1.0; 5]).is_err());
        assert!(spearman(&a, &[1.0, 2.0]).is_err());
        assert!(pearson(&[1.0, f64::NAN], &[1.0, 2.0]).is_err());
    }

    #[test]
    fn sign_agreement_counts_large_rows() {
        let row = |attribution, ablation| LatentComparison {
            latent: 0,
            act: 1.0,
            attribution,
            ablation,
        };
        let rows = [row(1.0, 2.0), row(-1.0, 3.0), row(0.1, -0.01)];
        assert_eq!(AttributionVsAblation::sign_agreement(&rows, 1.0), 0.5);
        assert_eq!(AttributionVsAblation::sign_agreement(&rows, 10.0), 1.0);
    }
}
