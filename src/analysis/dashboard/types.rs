//! The data of a feature dashboard (what sae_vis's `FeatureData` holds), as plain serialisable
//! structs. Token positions are positions in the scanned row (`row`, 0-based, BOS at 0).
use serde::Serialize;

/// A token with a score (logit tables, hover data).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TokenScore {
    /// Token id.
    pub id: u32,
    /// The token as a string.
    pub token: String,
    /// Its score: a logit-table value (`feature_resid_dir · W_U`) or a log-prob change (hover
    /// data).
    pub value: f32,
}

/// A histogram with `torch.histc` semantics: `counts.len()` equal-width bins between
/// `edges[0]` and `edges[n]`, the maximum counted in the last bin.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Histogram {
    /// `n_bins + 1` bin edges.
    pub edges: Vec<f32>,
    /// `n_bins` counts per bin.
    pub counts: Vec<u64>,
}

impl Histogram {
    /// The bin centres (sae_vis's `bar_values`, Neuronpedia's `*_hist_data_bar_values`).
    pub fn centers(&self) -> Vec<f32> {
        self.edges.windows(2).map(|w| 0.5 * (w[0] + w[1])).collect()
    }
    /// Total count.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
    /// The counts as a chart over the bin centres.
    pub fn plot(&self, title: &str, y_label: &str) -> crate::error::Result<crate::viz::Svg> {
        let centres: Vec<f64> = self.centers().iter().map(|&c| c as f64).collect();
        let counts: Vec<f64> = self.counts.iter().map(|&c| c as f64).collect();
        crate::viz::histogram_chart(title, &centres, &counts, y_label)
    }
}

/// Summary statistics of a latent over the scanned tokens.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FeatureStats {
    /// Tokens scanned (after special-token exclusion).
    pub n_tokens: u64,
    /// Tokens where the latent is active (activation > 0).
    pub n_active: u64,
    /// `n_active / n_tokens` (sae_vis's `frac_nonzero`, the dashboard's DENSITY).
    pub frac_nonzero: f64,
    /// Largest activation (0 when never active).
    pub max: f32,
    /// Mean activation over the active tokens.
    pub mean_active: f32,
}

/// A row of the neuron-alignment table: a component of the decoder row `W_dec[i]`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NeuronAlignment {
    /// Index into the SAE's output space (`d_out`; for `hook_z` SAEs `head · d_head + k`).
    pub index: usize,
    /// `W_dec[i, index]` (signed).
    pub value: f32,
    /// `|value| / Σ|W_dec[i]|`.
    pub frac_l1: f32,
}

/// A latent (or neuron) whose activations correlate with this latent's.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Correlated {
    /// Latent index (correlated latents) or input neuron index (correlated neurons).
    pub index: usize,
    /// Pearson correlation over all scanned tokens.
    pub pearson: f32,
    /// `Σxy / (√(Σx²·Σy²) + 1e-6)` (sae_vis's cosine similarity of activation vectors).
    pub cosine: f32,
}

/// One token of an example's context window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExampleToken {
    /// Token id.
    pub id: u32,
    /// The token as a string.
    pub token: String,
    /// Position in the row.
    pub pos: usize,
    /// The latent's activation here.
    pub act: f32,
    /// Change in the log-probability of the *next* token of the row (the one at `pos + 1`) when
    /// this token's `act · feature_resid_dir` is removed from the final residual stream
    /// (ablated − clean; negative: the latent helped predict it). `None` where the latent is
    /// inactive, at the last position of the row, or when the loss effect was not computed.
    pub next_logprob_delta: Option<f32>,
    /// The clean log-probability of the next token (where `next_logprob_delta` is set).
    pub next_logprob: Option<f32>,
    /// Tokens whose next-token log-prob the latent raises most here (clean − ablated).
    pub boosted: Vec<TokenScore>,
    /// Tokens whose next-token log-prob the latent lowers most here (clean − ablated, negative).
    pub suppressed: Vec<TokenScore>,
}

/// Direct feature attribution of an attention (`hook_z`) SAE latent at an example's centre:
/// per source position `s`, `Σ_h pattern[h, centre, s] · v[s, h] · W_enc[h, :, i]`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Dfa {
    /// The destination position (the example's centre).
    pub target_pos: usize,
    /// Source position with the largest attribution.
    pub max_pos: usize,
    /// Sum over all source positions (`= z[centre] · W_enc[:, i]`).
    pub total: f32,
    /// Source tokens in `dfa_buffer` around `max_pos` (never past the centre), with their
    /// attribution in `act`.
    pub tokens: Vec<ExampleToken>,
}

/// One example: a context window around a token where the latent fires.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Example {
    /// Index of the row among the scanned rows.
    pub row: usize,
    /// Position of the centre token in the row.
    pub pos: usize,
    /// The latent's activation at the centre.
    pub act: f32,
    /// The window `pos - buffer.0 ..= pos + buffer.1`.
    pub tokens: Vec<ExampleToken>,
    /// Direct feature attribution (attention SAEs only).
    pub dfa: Option<Dfa>,
}

impl Example {
    /// Index of the centre token in `tokens`.
    pub fn center_index(&self) -> usize {
        self.tokens
            .iter()
            .position(|t| t.pos == self.pos)
            .unwrap_or(0)
    }
    /// The window's tokens joined into one string.
    pub fn text(&self) -> String {
        self.tokens.iter().map(|t| t.token.as_str()).collect()
    }
}

/// Which group of examples.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupKind {
    /// The top-activating examples.
    Top,
    /// Random examples from one activation interval.
    Interval,
}

/// A group of examples: the top activations, or random ones from an interval.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SequenceGroup {
    /// Top group or interval group.
    pub kind: GroupKind,
    /// sae_vis's title, e.g. `TOP ACTIVATIONS (MAX = 12.345)` or
    /// `INTERVAL 1.234 - 2.468 (CONTAINS 12.345%)`.
    pub title: String,
    /// Activation range of the group (`[lower, upper]`, both inclusive): lower bound.
    pub lower: f32,
    /// Upper bound of the activation range (inclusive).
    pub upper: f32,
    /// Active tokens in `[lower, upper]` / all active tokens (1 for the top group).
    pub share: f64,
    /// Active tokens in `[lower, upper]` (all scanned positions, edges included).
    pub n_in_range: u64,
    /// The group's examples.
    pub examples: Vec<Example>,
}

impl SequenceGroup {
    /// The token each example is centred on (where the latent fires), in order.
    pub fn centre_tokens(&self) -> Vec<String> {
        self.examples
            .iter()
            .filter_map(|e| e.tokens.get(e.center_index()))
            .map(|t| t.token.clone())
            .collect()
    }
}

/// Everything a dashboard shows for one latent.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FeatureDashboard {
    /// Latent index (`0..d_sae`).
    pub latent: usize,
    /// Density, max and mean activation over the scanned tokens.
    pub stats: FeatureStats,
    /// Histogram of the nonzero activations (`n_bins` bins from their min to their max).
    pub act_histogram: Histogram,
    /// `feature_resid_dir @ W_U`: the largest values.
    pub top_logits: Vec<TokenScore>,
    /// ... and the smallest.
    pub bottom_logits: Vec<TokenScore>,
    /// Histogram of `feature_resid_dir @ W_U` over the whole vocabulary.
    pub logit_histogram: Histogram,
    /// Largest-magnitude components of the decoder row `W_dec[i]` (`n_table_rows` rows).
    pub neuron_alignment: Vec<NeuronAlignment>,
    /// Most correlated latents (by Pearson; self excluded).
    pub correlated_latents: Vec<Correlated>,
    /// Most correlated neurons of the SAE's input (MLP-neuron SAEs only, as sae_vis).
    pub correlated_neurons: Vec<Correlated>,
    /// The highest-activating examples (up to `top_group_size`, non-overlapping windows).
    pub top_examples: SequenceGroup,
    /// Interval groups, highest interval first (sae_vis's order).
    pub quantile_groups: Vec<SequenceGroup>,
    /// Activation quantiles over all scanned tokens (zeros included) at sae_vis's
    /// `FeatureStatistics` grid; used by the prompt-centric view. Not serialised.
    #[serde(skip)]
    pub quantiles: Vec<(f32, f32)>,
}

impl FeatureDashboard {
    /// The first `k` rows of the top and bottom logit tables, printable.
    pub fn logit_table(&self, k: usize) -> LogitTable {
        LogitTable {
            top: self.top_logits.iter().take(k).cloned().collect(),
            bottom: self.bottom_logits.iter().take(k).cloned().collect(),
        }
    }
    /// The fraction of scanned tokens with activation ≤ `act` (from `quantiles`; 0 ≤ q ≤ 1).
    pub fn quantile_of(&self, act: f32) -> f32 {
        let mut q = 0.0;
        for &(p, v) in &self.quantiles {
            if v <= act {
                q = p;
            } else {
                break;
            }
        }
        q
    }
}

/// The tokens a latent's decoder direction boosts and suppresses most, `W_dec[i] · W_U` (for
/// `hook_z` and transcoder SAEs the direction is first mapped to the residual stream).
#[derive(Clone, Debug, PartialEq)]
pub struct LogitTable {
    /// Largest first.
    pub top: Vec<TokenScore>,
    /// Smallest first.
    pub bottom: Vec<TokenScore>,
}

impl std::fmt::Display for LogitTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let line = |s: &[TokenScore]| {
            s.iter()
                .map(|t| format!("{:?} {:.2}", t.token, t.value))
                .collect::<Vec<_>>()
                .join(", ")
        };
        writeln!(f, "top:    {}", line(&self.top))?;
        write!(f, "bottom: {}", line(&self.bottom))
    }
}
