//! The shared fixture of the dashboard tests: 16 rows × 64 tokens of the default corpus, their
//! dense activations (brute force) and the dashboards of six latents, computed once per test
//! binary.
use super as bf;
use saescope::analysis::dashboard::{
    corpus_rows, feature_dashboards_with, DashboardConfig, DashboardInput, Dashboards,
    LatentSelection,
};
use saescope::{HookedModel, Sae};
use std::sync::OnceLock;

pub const ROWS: usize = 16;
pub const CTX: usize = 64;

pub struct Fix {
    pub model: HookedModel,
    pub sae: Sae,
    pub ids: Vec<Vec<u32>>,
    /// Dense activations `[ROWS * CTX][d_sae]`.
    pub acts: Vec<Vec<f32>>,
    /// Whether each flat position is a scanned (non-special) token.
    pub scanned: Vec<bool>,
    pub latents: Vec<usize>,
    pub dash: Dashboards,
}

pub fn cfg() -> DashboardConfig {
    DashboardConfig {
        batch_size: 4,
        ..Default::default()
    }
}

pub fn fix() -> &'static Fix {
    static F: OnceLock<Fix> = OnceLock::new();
    F.get_or_init(|| {
        let model = HookedModel::from_pretrained("smollm2").unwrap();
        let sae = Sae::shipped().unwrap();
        let rows = corpus_rows(&model, "default", ROWS * CTX, CTX).unwrap();
        let ids: Vec<Vec<u32>> = rows.to_vec2().unwrap();
        let acts = bf::dense_acts(&model, &sae, &ids, 4);
        let special = bf::special_ids(&model);
        let scanned: Vec<bool> = ids.iter().flatten().map(|t| !special.contains(t)).collect();
        // Latents: the three most frequent, two rarer ones, and one that never fires here.
        let mut count = vec![0usize; sae.d_sae()];
        for (i, row) in acts.iter().enumerate() {
            if scanned[i] {
                for (j, &a) in row.iter().enumerate() {
                    count[j] += (a > 0.0) as usize;
                }
            }
        }
        let mut order: Vec<usize> = (0..sae.d_sae()).collect();
        order.sort_by(|&a, &b| count[b].cmp(&count[a]).then(a.cmp(&b)));
        let dead = (0..sae.d_sae()).find(|&j| count[j] == 0).unwrap();
        let latents = vec![order[0], order[1], order[2], order[60], order[300], dead];
        let dash = feature_dashboards_with(
            &model,
            &sae,
            DashboardInput::Tokens(rows),
            LatentSelection::Indices(latents.clone()),
            &cfg(),
        )
        .unwrap();
        Fix {
            model,
            sae,
            ids,
            acts,
            scanned,
            latents,
            dash,
        }
    })
}

/// The brute-force activation of `latent` at (row, pos).
pub fn act(f: &Fix, latent: usize, row: usize, pos: usize) -> f32 {
    f.acts[row * CTX + pos][latent]
}

pub fn eligible(pos: usize, len: usize) -> bool {
    pos > 5 && pos + 5 < len
}
