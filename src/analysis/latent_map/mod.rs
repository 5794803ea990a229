//! Latent maps: UMAP and HDBSCAN over SAE decoder directions, as in Anthropic's feature maps
//! and SAELens / sae_vis notebooks. Each latent's decoder direction (unit norm) is embedded
//! with UMAP twice from one neighbour graph, in 2-D to display and in 10-D to cluster
//! (cosine metric), the 10-D embedding is clustered with HDBSCAN, and each latent carries its
//! top tokens (`W_dec[latent] @ W_U`) and optionally an explanation; the map renders as an
//! interactive HTML scatter (hover: latent, cluster, tokens, explanation) or a static SVG.
//! Several SAEs (e.g. widths of one hook) map together, one marker shape per SAE.
//!
//! ```no_run
//! use saescope::prelude::*;
//! # fn main() -> saescope::Result<()> {
//! let model = HookedModel::from_pretrained("smollm2")?;
//! let sae = Sae::shipped()?;
//! let map = LatentMap::build(&sae, &model, &LatentMapOptions::default())?;
//! println!("{} clusters", map.n_clusters());
//! map.plot()?.save("map.html")?;
//! # Ok(()) }
//! ```
//!
//! The pieces work on any row-major f32 matrix: [`umap`], [`hdbscan`], and the quality
//! measures [`trustworthiness`] and [`adjusted_rand_index`] (scikit-learn's definitions).
//! UMAP follows umap-learn 0.5 (exact neighbours rather than NN-descent; single-threaded
//! SGD, so a seed fixes the result); HDBSCAN follows the `hdbscan` package (EOM).
mod hdbscan;
mod knn;
mod plot;
mod quality;
mod spectral;
mod umap;

pub use hdbscan::{hdbscan, HdbscanOptions};
pub use knn::MapMetric;
pub use quality::{adjusted_rand_index, trustworthiness};
pub use umap::{umap, umap_ab_params, UmapInit, UmapOptions};

use super::dashboard::{feature_resid_dirs, latent_logits};
use super::geometry::unit_decoder_directions;
use crate::error::{Error, Result};
use crate::model::HookedModel;
use crate::sae::Sae;
use candle_core::{DType, Tensor};
use std::collections::HashMap;

/// What [`LatentMap::build`] computes.
#[derive(Clone, Debug, PartialEq)]
pub struct LatentMapOptions {
    /// UMAP parameters (its `n_components` is ignored: the map embeds in 2-D and in
    /// `cluster_dims`).
    pub umap: UmapOptions,
    /// Dimensions of the embedding HDBSCAN clusters; 10.
    pub cluster_dims: usize,
    /// HDBSCAN parameters (min_cluster_size 5).
    pub hdbscan: HdbscanOptions,
    /// Top tokens per latent (`W_dec @ W_U`); 8 (0: none).
    pub top_tokens: usize,
    /// Only these latents of each SAE (None: all).
    pub latents: Option<Vec<usize>>,
}

impl Default for LatentMapOptions {
    fn default() -> Self {
        LatentMapOptions {
            umap: UmapOptions::default(),
            cluster_dims: 10,
            hdbscan: HdbscanOptions::default(),
            top_tokens: 8,
            latents: None,
        }
    }
}

/// One latent on a [`LatentMap`].
#[derive(Clone, Debug, PartialEq)]
pub struct LatentPoint {
    /// Index of its SAE in [`LatentMap::groups`].
    pub group: usize,
    /// The latent's index in its SAE.
    pub latent: usize,
    /// 2-D UMAP position.
    pub xy: [f32; 2],
    /// HDBSCAN cluster (on the `cluster_dims`-D UMAP), `-1` for noise.
    pub cluster: i32,
    /// Tokens the decoder direction promotes most (`W_dec[latent] @ W_U`), best first.
    pub top_tokens: Vec<String>,
    /// An explanation, once given ([`LatentMap::with_explanations`]).
    pub explanation: Option<String>,
}

/// A map of SAE latents: positions, clusters, top tokens and explanations.
#[derive(Clone, Debug, PartialEq)]
pub struct LatentMap {
    /// Names of the SAEs mapped (one for [`LatentMap::build`]).
    pub groups: Vec<String>,
    /// One point per latent, grouped by SAE in the order given, latents ascending.
    pub points: Vec<LatentPoint>,
    /// The embedding HDBSCAN clustered, `points.len() × cluster_dims` row-major.
    pub cluster_embedding: Vec<f32>,
    /// Its width.
    pub cluster_dims: usize,
}

impl LatentMap {
    /// The map of one SAE's latents (named by its hook).
    pub fn build(sae: &Sae, model: &HookedModel, opts: &LatentMapOptions) -> Result<LatentMap> {
        Self::build_many(&[(sae, sae.hook_name_out())], model, opts)
    }

    /// One map of several SAEs' latents (e.g. SAEs of different widths on one hook), named
    /// `(sae, name)`; all must write to spaces of the same width.
    pub fn build_many(
        saes: &[(&Sae, &str)],
        model: &HookedModel,
        opts: &LatentMapOptions,
    ) -> Result<LatentMap> {
        let Some((first, _)) = saes.first() else {
            return Err(Error::Invalid(
                "LatentMap::build_many: no SAE given; pass at least one (sae, name)".into(),
            ));
        };
        if let Some((other, name)) = saes.iter().find(|(s, _)| s.d_out() != first.d_out()) {
            return Err(Error::Invalid(format!(
                "LatentMap::build_many: SAE `{name}` writes {} dimensions, the first SAE {}; map \
                 SAEs of the same hook point together",
                other.d_out(),
                first.d_out()
            )));
        }
        let mut dirs = Vec::new();
        let mut tokens = Vec::new();
        let mut ids = Vec::new();
        for (g, (sae, _)) in saes.iter().enumerate() {
            let latents: Vec<usize> = match &opts.latents {
                Some(l) => l.clone(),
                None => (0..sae.d_sae()).collect(),
            };
            dirs.push(unit_decoder_directions(sae, Some(&latents))?);
            tokens.extend(top_tokens(model, sae, &latents, opts.top_tokens)?);
            ids.extend(latents.into_iter().map(|l| (g, l)));
        }
        let names: Vec<String> = saes.iter().map(|(_, n)| n.to_string()).collect();
        let dirs = Tensor::cat(&dirs, 0)?;
        let mut map = Self::from_directions(&dirs, &ids, names, opts)?;
        for (p, t) in map.points.iter_mut().zip(tokens) {
            p.top_tokens = t;
        }
        Ok(map)
    }

    /// The map of arbitrary directions `[n, d]` (rows need not be unit), point `i` labelled
    /// `ids[i] = (group, latent)` with `groups` naming the groups; no top tokens.
    pub fn from_directions(
        dirs: &Tensor,
        ids: &[(usize, usize)],
        groups: Vec<String>,
        opts: &LatentMapOptions,
    ) -> Result<LatentMap> {
        let (n, d) = dirs.dims2()?;
        if ids.len() != n || ids.iter().any(|&(g, _)| g >= groups.len()) {
            return Err(Error::Invalid(format!(
                "LatentMap: {} ids for {n} directions (groups: {}); give one (group, latent) per \
                 row with group < the number of groups",
                ids.len(),
                groups.len()
            )));
        }
        let data: Vec<f32> = dirs.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let graph = umap::fuzzy_graph(&data, d, &opts.umap)?;
        let xy = umap::embed(&graph, &opts.umap.clone().with_n_components(2))?;
        let nd = opts.cluster_dims;
        let cluster_embedding = umap::embed(&graph, &opts.umap.clone().with_n_components(nd))?;
        let labels = hdbscan(&cluster_embedding, nd, &opts.hdbscan)?;
        let points = ids
            .iter()
            .enumerate()
            .map(|(i, &(group, latent))| LatentPoint {
                group,
                latent,
                xy: [xy[2 * i], xy[2 * i + 1]],
                cluster: labels[i],
                top_tokens: Vec::new(),
                explanation: None,
            })
            .collect();
        Ok(LatentMap {
            groups,
            points,
            cluster_embedding,
            cluster_dims: nd,
        })
    }

    /// The points (one per latent).
    pub fn points(&self) -> &[LatentPoint] {
        &self.points
    }

    /// How many clusters HDBSCAN found (noise not counted).
    pub fn n_clusters(&self) -> usize {
        self.points.iter().map(|p| p.cluster + 1).max().unwrap_or(0) as usize
    }

    /// The points of cluster `cluster` (`-1`: noise).
    pub fn cluster_members(&self, cluster: i32) -> Vec<&LatentPoint> {
        self.points
            .iter()
            .filter(|p| p.cluster == cluster)
            .collect()
    }

    /// The cluster labels, one per point.
    pub fn labels(&self) -> Vec<i32> {
        self.points.iter().map(|p| p.cluster).collect()
    }

    /// Attaches explanations (latent → text) to the latents of the first SAE.
    pub fn with_explanations(self, explanations: &HashMap<usize, String>) -> Self {
        let first = self.groups.first().cloned().unwrap_or_default();
        self.with_group_explanations(&first, explanations)
    }

    /// Attaches explanations (latent → text) to the latents of the SAE named `group`.
    pub fn with_group_explanations(
        mut self,
        group: &str,
        explanations: &HashMap<usize, String>,
    ) -> Self {
        if let Some(g) = self.groups.iter().position(|n| n == group) {
            for p in self.points.iter_mut().filter(|p| p.group == g) {
                if let Some(e) = explanations.get(&p.latent) {
                    p.explanation = Some(e.clone());
                }
            }
        }
        self
    }
}

/// The `k` tokens each latent's output direction promotes most (`feature_resid_dir @ W_U`,
/// as [`crate::analysis::logit_table`]), computed in blocks of latents.
fn top_tokens(
    model: &HookedModel,
    sae: &Sae,
    latents: &[usize],
    k: usize,
) -> Result<Vec<Vec<String>>> {
    if k == 0 {
        return Ok(vec![Vec::new(); latents.len()]);
    }
    let mut out = Vec::with_capacity(latents.len());
    for chunk in latents.chunks(256) {
        let logits = latent_logits(model, &feature_resid_dirs(model, sae, chunk)?)?;
        let vocab = logits.dim(1)?;
        let flat: Vec<f32> = logits.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        for row in flat.chunks(vocab) {
            out.push(
                knn::best_sorted(k, row)
                    .iter()
                    .map(|&id| model.to_string(&[id]))
                    .collect::<Result<Vec<_>>>()?,
            );
        }
    }
    Ok(out)
}
