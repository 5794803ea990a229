//! The geometry of SAE latents (ARENA §1.8 and feature splitting): cosine similarity between
//! decoder directions within one SAE and across two (e.g. a small and a large SAE on the same
//! hook), nearest neighbours of a latent, PCA of decoder rows or of activations reconstructed
//! from a few latents, and their plots.
use super::dla::check_latents;
use super::pca::Pca;
use crate::error::{Error, Result};
use crate::sae::Sae;
use crate::viz::{
    heatmap_with, scatter, ColorScale, HeatmapOptions, ScatterOptions, ScatterSeries, Svg,
};
use candle_core::{DType, Tensor, D};

/// The decoder rows of `latents` (None: all) scaled to unit norm, `[n, d_out]` f32 (an
/// all-zero row stays zero).
pub fn unit_decoder_directions(sae: &Sae, latents: Option<&[usize]>) -> Result<Tensor> {
    let w = sae.w_dec().to_dtype(DType::F32)?;
    let w = match latents {
        Some(l) => {
            check_latents(sae, l)?;
            let idx: Vec<u32> = l.iter().map(|&i| i as u32).collect();
            let n = idx.len();
            w.index_select(&Tensor::from_vec(idx, n, w.device())?, 0)?
        }
        None => w,
    };
    let norm = w
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12f64, f64::MAX)?;
    Ok(w.broadcast_div(&norm)?)
}

/// Cosine similarity between the decoder directions of `latents` of one SAE, `[n, n]` f32.
pub fn decoder_cosine_similarity(sae: &Sae, latents: &[usize]) -> Result<Tensor> {
    let u = unit_decoder_directions(sae, Some(latents))?;
    Ok(u.matmul(&u.t()?)?)
}

fn check_same_width(a: &Sae, b: &Sae) -> Result<()> {
    if a.d_out() != b.d_out() {
        return Err(Error::Invalid(format!(
            "the SAEs write to spaces of different width ({} at `{}`, {} at `{}`); compare SAEs \
             on the same hook point",
            a.d_out(),
            a.hook_name_out(),
            b.d_out(),
            b.hook_name_out()
        )));
    }
    Ok(())
}

/// Cosine similarity between decoder directions of two SAEs with the same output width
/// (feature splitting): `[latents_a.len(), latents_b.len()]` f32 (`latents_b` None: all of
/// `b`'s latents).
pub fn cross_decoder_cosine_similarity(
    a: &Sae,
    latents_a: &[usize],
    b: &Sae,
    latents_b: Option<&[usize]>,
) -> Result<Tensor> {
    check_same_width(a, b)?;
    let ua = unit_decoder_directions(a, Some(latents_a))?;
    let ub = unit_decoder_directions(b, latents_b)?.to_device(ua.device())?;
    Ok(ua.matmul(&ub.t()?)?)
}

/// The `k` latents of `other` whose decoder directions are closest (by cosine similarity) to
/// latent `latent` of `sae`, most similar first, as `(latent, cosine)`. With `other` = `sae`
/// the latent itself is left out.
pub fn nearest_neighbours_in(
    sae: &Sae,
    latent: usize,
    other: &Sae,
    k: usize,
) -> Result<Vec<(usize, f32)>> {
    let sims: Vec<f32> = cross_decoder_cosine_similarity(sae, &[latent], other, None)?
        .squeeze(0)?
        .to_vec1()?;
    let same = std::ptr::eq(sae, other);
    let mut idx: Vec<usize> = (0..sims.len())
        .filter(|&i| !(same && i == latent))
        .collect();
    idx.sort_by(|&x, &y| sims[y].total_cmp(&sims[x]).then(x.cmp(&y)));
    Ok(idx.into_iter().take(k).map(|i| (i, sims[i])).collect())
}

/// The `k` other latents of `sae` whose decoder directions are closest to `latent`'s.
pub fn nearest_neighbours(sae: &Sae, latent: usize, k: usize) -> Result<Vec<(usize, f32)>> {
    nearest_neighbours_in(sae, latent, sae, k)
}

/// A cosine-similarity heatmap (blue −1 … white 0 … red +1) with the latent indices as row
/// and column labels.
pub fn plot_cosine_similarity(
    title: &str,
    sims: &Tensor,
    row_latents: &[usize],
    col_latents: &[usize],
) -> Result<Svg> {
    let labels = |v: &[usize]| v.iter().map(|i| i.to_string()).collect::<Vec<_>>();
    heatmap_with(
        title,
        sims,
        &labels(row_latents),
        &labels(col_latents),
        &HeatmapOptions {
            scale: ColorScale::Diverging,
            vmin: Some(-1.0),
            vmax: Some(1.0),
        },
    )
}

/// The `k` nearest neighbours of `latent` of `sae` among `other`'s latents (pass `sae` again
/// for its own neighbours) as a cosine-similarity heatmap: the first row is `latent` against
/// its neighbours, the next `k` rows the neighbours against each other (a latent that split
/// into several similar ones in a larger SAE shows as a bright block). Returns the neighbours
/// `(latent of other, cosine)` and the figure.
pub fn plot_nearest_neighbours(
    title: &str,
    sae: &Sae,
    latent: usize,
    other: &Sae,
    k: usize,
) -> Result<(Vec<(usize, f32)>, Svg)> {
    let nn = nearest_neighbours_in(sae, latent, other, k)?;
    if nn.is_empty() {
        return Err(Error::Invalid(
            "plot_nearest_neighbours: no neighbours to plot (k = 0?)".into(),
        ));
    }
    let ids: Vec<usize> = nn.iter().map(|p| p.0).collect();
    let first = cross_decoder_cosine_similarity(sae, &[latent], other, Some(&ids))?;
    let within = decoder_cosine_similarity(other, &ids)?;
    let sims = Tensor::cat(&[first, within.to_device(&candle_core::Device::Cpu)?], 0)?;
    let same = std::ptr::eq(sae, other);
    let name = |prefix: &str, i: usize| {
        if same {
            i.to_string()
        } else {
            format!("{prefix}{i}")
        }
    };
    let mut rows = vec![name("A:", latent)];
    rows.extend(ids.iter().map(|&i| name("B:", i)));
    let cols: Vec<String> = ids.iter().map(|&i| name("B:", i)).collect();
    let svg = heatmap_with(
        title,
        &sims,
        &rows,
        &cols,
        &HeatmapOptions {
            scale: ColorScale::Diverging,
            vmin: Some(-1.0),
            vmax: Some(1.0),
        },
    )?;
    Ok((nn, svg))
}

/// PCA of the unit decoder directions of `latents` (None: all): the fitted [`Pca`] and each
/// latent's coordinates `[n, n_components]`.
pub fn decoder_pca(
    sae: &Sae,
    latents: Option<&[usize]>,
    n_components: usize,
) -> Result<(Pca, Tensor)> {
    let u = unit_decoder_directions(sae, latents)?;
    let pca = Pca::fit(&u, n_components)?;
    let coords = pca.transform(&u)?;
    Ok((pca, coords))
}

/// Scatter of two principal components (`x_pc`, `y_pc`, 0-based) of `coords` `[n, k]`, one
/// colour per distinct group (`groups`: one name per row, e.g. the day of the week or
/// "Other"; empty: one group), with optional per-point `labels` (empty: none).
pub fn plot_pca(
    title: &str,
    coords: &Tensor,
    x_pc: usize,
    y_pc: usize,
    groups: &[String],
    labels: &[String],
) -> Result<Svg> {
    let (n, k) = coords.dims2()?;
    if x_pc >= k || y_pc >= k {
        return Err(Error::Invalid(format!(
            "plot_pca: components {x_pc} and {y_pc} requested, but coords has {k} (0-based)"
        )));
    }
    for (what, v) in [("groups", groups), ("labels", labels)] {
        if !v.is_empty() && v.len() != n {
            return Err(Error::Invalid(format!(
                "plot_pca: {} {what} for {n} points; give one per point or none",
                v.len()
            )));
        }
    }
    let rows: Vec<Vec<f32>> = coords.to_dtype(DType::F32)?.to_vec2()?;
    let mut names: Vec<String> = Vec::new();
    for g in groups {
        if !names.contains(g) {
            names.push(g.clone());
        }
    }
    if names.is_empty() {
        names.push(String::new());
    }
    let series: Vec<ScatterSeries> = names
        .iter()
        .map(|name| {
            let members: Vec<usize> = (0..n)
                .filter(|&i| groups.is_empty() || &groups[i] == name)
                .collect();
            ScatterSeries {
                name: name.clone(),
                points: members
                    .iter()
                    .map(|&i| (rows[i][x_pc], rows[i][y_pc]))
                    .collect(),
                labels: if labels.is_empty() {
                    Vec::new()
                } else {
                    members.iter().map(|&i| labels[i].clone()).collect()
                },
            }
        })
        .collect();
    scatter(
        title,
        &series,
        &format!("PC{}", x_pc + 1),
        &format!("PC{}", y_pc + 1),
        &ScatterOptions::default(),
    )
}
