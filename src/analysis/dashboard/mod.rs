//! Feature dashboards — a "field microscope" for SAE latents, with sae_vis's semantics (spec §G,
//! ARENA [1.3.3] §1.3): for chosen latents, scanning a corpus or an activation cache,
//!
//! - the **top-activating examples** (context window `buffer = (5, 5)`; centres need
//!   `buffer.0 + 1` tokens before and `buffer.1` after them in their row, as sae_vis; no example's
//!   centre lies within `max(buffer)` tokens of another's in the same row, as ARENA's
//!   `no_overlap`) and **interval groups** (edges `linspace(0, max, n_quantiles + 1)` with the
//!   first set to 1e-6, highest interval first, `quantile_group_size` seeded random examples
//!   each, titled with the interval's share of the *active* tokens);
//! - the **activation histogram** (nonzero activations, `n_bins` bins, `torch.histc`) and the
//!   **density** (`frac_nonzero`, activation > 0);
//! - **top / bottom logits** `feature_resid_dir @ W_U` and their histogram over the vocabulary;
//!   `feature_resid_dir` is sae_vis's `to_resid_dir` ([`feature_resid_dirs`]: `W_dec[i]`, through
//!   `W_O[L]` for `hook_z` SAEs, through `W_out[L]` for `mlp.hook_post` / `hook_pre`);
//! - the **neuron-alignment** table (largest `|W_dec[i]|` components, % of L1 — sae_vis takes the
//!   largest *signed* values);
//! - the **most correlated latents** (streaming Pearson and cosine over all scanned tokens,
//!   self-correlation zeroed; against every latent by default) and, for MLP-neuron SAEs, neurons;
//! - the per-token **loss effect** of removing the latent: at each token where it is active,
//!   `act · feature_resid_dir` is subtracted from the final residual stream
//!   (`blocks.{n-1}.hook_resid_post`: the direct path only, as sae_vis), the model's own final
//!   norm is applied with statistics recomputed on the ablated vector (sae_vis's
//!   `resid_final_pre_layernorm_to_logits` divides by `mean(x²) + ε` without the square root;
//!   this is not copied), and the change in log-prob of the next token is reported
//!   ([`ExampleToken::next_logprob_delta`]; sae_vis's `loss_contribution` has the same value),
//!   with the most boosted / suppressed next tokens;
//! - **direct feature attribution** for attention (`hook_z`) SAEs ([`dfa_values`]);
//! - a **prompt-centric view** ([`prompt_centric`]): per token, the strongest latents by
//!   activation, by activation quantile and by loss effect.
//!
//! The scan streams: per chunk of tokens the SAE input is computed (a model pass with
//! `stop_at_layer = hook layer + 1`, or read from the cache), encoded, and only the chosen
//! latents' firings (row, position, activation: 12 bytes per active token) and the running
//! correlation sums are kept. Only the rows holding the shown examples then get a full model
//! pass (for the windows' activations, loss effects and DFA), cut after the last position
//! needed; from an activation cache of a residual-stream hook, those rows' activations are read
//! back from the cache and only the blocks after the hook run
//! ([`HookedModel::run_blocks`](crate::HookedModel::run_blocks)). Special tokens (BOS/EOS/PAD) are
//! left out of the statistics and examples by default, as SAELens trains (and activation
//! caches store) without them.
//!
//! Rendering: [`Dashboards::to_html`] (inline in evcxr), [`Dashboards::save_html`] (one
//! self-contained file: inline CSS/JS/SVG, no network), [`Dashboards::to_neuronpedia_json`].
//!
//! ```no_run
//! use saescope::analysis::dashboard::{feature_dashboards, corpus_rows};
//! use saescope::{HookedModel, Sae};
//! # fn main() -> saescope::Result<()> {
//! let model = HookedModel::from_pretrained("smollm2")?;
//! let sae = Sae::shipped()?;
//! let rows = corpus_rows(&model, "default", 32_768, 128)?;
//! let dash = feature_dashboards(&model, &sae, rows, [7, 42])?;   // feature_dashboards_with(.., &cfg)
//! dash.save_html("dashboards.html")?;
//! # Ok(()) }
//! ```
mod cached_rows;
mod compute;
mod corr;
mod ctx;
mod dfa;
mod effects;
mod json;
mod prompt;
mod render;
mod scan;
pub mod select;
mod source;
mod svg;
pub mod types;
mod weights;

pub use dfa::dfa_values;
pub use prompt::{prompt_centric, LatentScore, PromptToken, PromptView};
pub use source::{corpus_rows, DashboardInput};
pub(crate) use svg::esc;
pub use types::*;
pub use weights::{feature_resid_dirs, latent_logits, SaeSite};

use crate::error::Result;
use crate::model::HookedModel;
use crate::sae::Sae;
use crate::viz::Html;
use serde::Serialize;
use std::path::Path;

/// Which latents the correlation table compares against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Correlations {
    /// No correlation tables.
    None,
    /// Only the dashboard's latents (sae_vis's default).
    AmongSelected,
    /// Every latent of the SAE (`k × d_sae` running sums).
    AllLatents,
}

/// Settings, with sae_vis's defaults (`SeqMultiGroupConfig`, `LogitsTableConfig`, ...).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DashboardConfig {
    /// Tokens shown before / after each example's centre.
    pub buffer: (usize, usize),
    /// Source tokens shown around the strongest DFA source.
    pub dfa_buffer: (usize, usize),
    /// Examples in the top group.
    pub top_group_size: usize,
    /// Interval groups.
    pub n_quantiles: usize,
    /// Random examples per interval.
    pub quantile_group_size: usize,
    /// Bins of the activation and logit histograms.
    pub n_bins: usize,
    /// Rows of the top / bottom logit tables.
    pub n_logits: usize,
    /// Rows of the neuron-alignment and correlation tables.
    pub n_table_rows: usize,
    /// Boosted / suppressed tokens in each token's hover data.
    pub hover_top_tokens: usize,
    /// Which latents the correlated-latents table compares against (default all latents).
    pub correlations: Correlations,
    /// Compute the per-token loss effect (full passes on the example rows).
    pub loss_effect: bool,
    /// Leave BOS / EOS / PAD positions out of the scan.
    pub exclude_special_tokens: bool,
    /// Rows per model pass.
    pub batch_size: usize,
    /// Seed of the interval groups' random examples.
    pub seed: u64,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            buffer: (5, 5),
            dfa_buffer: (5, 5),
            top_group_size: 20,
            n_quantiles: 10,
            quantile_group_size: 5,
            n_bins: 50,
            n_logits: 10,
            n_table_rows: 3,
            hover_top_tokens: 5,
            correlations: Correlations::AllLatents,
            loss_effect: true,
            exclude_special_tokens: true,
            batch_size: 8,
            seed: 0,
        }
    }
}

/// How the top latents are ranked ([`LatentSelection::Top`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RankBy {
    /// Highest maximum activation on the scanned tokens first.
    MaxActivation,
    /// Most scanned tokens with a nonzero activation first.
    Density,
}

impl From<Vec<usize>> for LatentSelection {
    fn from(v: Vec<usize>) -> Self {
        LatentSelection::Indices(v)
    }
}
impl From<&[usize]> for LatentSelection {
    fn from(v: &[usize]) -> Self {
        LatentSelection::Indices(v.to_vec())
    }
}
impl<const N: usize> From<[usize; N]> for LatentSelection {
    fn from(v: [usize; N]) -> Self {
        LatentSelection::Indices(v.to_vec())
    }
}
impl From<usize> for LatentSelection {
    fn from(i: usize) -> Self {
        LatentSelection::Indices(vec![i])
    }
}
impl From<&LatentSelection> for LatentSelection {
    fn from(s: &LatentSelection) -> Self {
        s.clone()
    }
}

/// Which latents get dashboards.
#[derive(Clone, Debug, PartialEq)]
pub enum LatentSelection {
    /// These latent indices, in this order.
    Indices(Vec<usize>),
    /// The `n` latents with the highest maximum activation (or density) on the scanned tokens
    /// (an extra scan of the same tokens; latents that never fire are skipped).
    Top {
        /// How many latents (at least 1).
        n: usize,
        /// The ranking.
        by: RankBy,
    },
}

/// Stage of a dashboard computation, for progress reporting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Scanning all latents to choose the top ones (tokens).
    Select,
    /// The main scan (tokens).
    Scan,
    /// Full passes on the rows holding examples (rows).
    Examples,
}

/// Progress of a stage: `done` of `total` (tokens or rows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// The stage running.
    pub stage: Stage,
    /// Tokens or rows done so far.
    pub done: u64,
    /// Tokens or rows in the stage.
    pub total: u64,
}

/// Dashboards for several latents of one SAE.
#[derive(Clone, Debug, Serialize)]
pub struct Dashboards {
    /// The model's name (`ModelConfig::model_name`).
    pub model_name: String,
    /// The hook the SAE reads.
    pub hook_name: String,
    /// The SAE's number of latents.
    pub d_sae: usize,
    /// The SAE's Neuronpedia id, if known (for links).
    pub neuronpedia_id: Option<String>,
    /// What was scanned.
    pub source: String,
    /// Tokens scanned (after special-token exclusion).
    pub n_tokens: u64,
    /// The settings used.
    pub config: DashboardConfig,
    /// One dashboard per selected latent, in selection order.
    pub features: Vec<FeatureDashboard>,
}

/// Dashboards for `latents` of `sae` over `input` (token rows, or an activation cache), with
/// sae_vis's default settings: `feature_dashboards(&model, &sae, rows, [7, 42])`.
pub fn feature_dashboards(
    model: &HookedModel,
    sae: &Sae,
    input: impl Into<DashboardInput>,
    latents: impl Into<LatentSelection>,
) -> Result<Dashboards> {
    feature_dashboards_with(model, sae, input, latents, &DashboardConfig::default())
}

/// [`feature_dashboards`] with settings.
pub fn feature_dashboards_with(
    model: &HookedModel,
    sae: &Sae,
    input: impl Into<DashboardInput>,
    latents: impl Into<LatentSelection>,
    cfg: &DashboardConfig,
) -> Result<Dashboards> {
    let (input, latents) = (input.into(), latents.into());
    compute::feature_dashboards_impl(model, sae, &input, &latents, cfg, &mut |_| {})
}

/// [`feature_dashboards`] reporting progress (e.g. to a progress bar).
pub fn feature_dashboards_with_progress(
    model: &HookedModel,
    sae: &Sae,
    input: &DashboardInput,
    latents: &LatentSelection,
    cfg: &DashboardConfig,
    progress: &mut dyn FnMut(Progress),
) -> Result<Dashboards> {
    compute::feature_dashboards_impl(model, sae, input, latents, cfg, progress)
}

impl Dashboards {
    /// The dashboard of `latent`, if computed.
    pub fn get(&self, latent: usize) -> Option<&FeatureDashboard> {
        self.features.iter().find(|f| f.latent == latent)
    }
    /// The latents, in order.
    pub fn latents(&self) -> Vec<usize> {
        self.features.iter().map(|f| f.latent).collect()
    }
    /// Every dashboard as one HTML fragment (inline `<style>`, `<script>`, SVG), for notebooks.
    /// Without JavaScript all dashboards show one after the other; with it, a selector shows one.
    pub fn to_html(&self) -> Html {
        Html(render::fragment(self, None))
    }
    /// The dashboard of one latent as an HTML fragment; an error names the computed latents.
    pub fn feature_html(&self, latent: usize) -> Result<Html> {
        if self.get(latent).is_none() {
            return Err(crate::error::Error::Invalid(format!(
                "no dashboard for latent {latent}; computed: {:?}",
                self.latents()
            )));
        }
        Ok(Html(render::fragment(self, Some(latent))))
    }
    /// A complete, self-contained HTML document (no network access needed).
    pub fn to_html_document(&self) -> String {
        render::document(self)
    }
    /// Writes [`to_html_document`](Self::to_html_document) to `path`.
    pub fn save_html(&self, path: impl AsRef<Path>) -> Result<()> {
        Html(self.to_html_document()).save(path)
    }
    /// Neuronpedia-style JSON (field names listed at [`save_json`](Self::save_json)).
    pub fn to_neuronpedia_json(&self) -> serde_json::Value {
        json::neuronpedia(self)
    }
    /// Writes [`to_neuronpedia_json`](Self::to_neuronpedia_json) to `path`. Per feature it uses
    /// Neuronpedia's feature fields (`modelId`, `layer`, `index`, `maxActApprox`,
    /// `frac_nonzero`, `pos_str`/`pos_values`, `neg_str`/`neg_values`,
    /// `freq_hist_data_bar_heights`/`_values`, `logits_hist_data_bar_heights`/`_values`,
    /// `neuron_alignment_*`, `correlated_neurons_*`, `correlated_features_*` — whose `_l1`
    /// holds the cosine similarity, as SAEDashboard fills it), and per example Neuronpedia's
    /// activation fields (`tokens`, `values`, `maxValue`, `maxValueTokenIndex`, `minValue`,
    /// `binMin`, `binMax`, `binContains` — the interval and its share of active tokens, −1 for
    /// the top examples —, `lossValues` = per-token Δlog-prob of the next token when the latent
    /// is removed there, `dfaValues`, `dfaTargetIndex`, `dfaMaxValue`), plus `tokenIds`,
    /// `dataIndex` (row), `dataPosition` (centre position) and `qualifyingTokenIndex`.
    pub fn save_json(&self, path: impl AsRef<Path>) -> Result<()> {
        let p = path.as_ref();
        let s = serde_json::to_string(&self.to_neuronpedia_json()).map_err(|source| {
            crate::error::Error::Json {
                path: p.to_path_buf(),
                source,
            }
        })?;
        Html(s).save(p)
    }
    /// evcxr display hook: shows [`to_html`](Self::to_html).
    pub fn evcxr_display(&self) {
        self.to_html().evcxr_display()
    }
}
