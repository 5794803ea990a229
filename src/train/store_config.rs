//! The activation store's settings ([`ActivationStoreConfig`], SAELens's runner-config fields
//! for its `ActivationsStore`, embedded in [`super::config::RunnerConfig`]) and the two
//! derivation the store makes from them: the kept positions.
use crate::data::SeparatorToken;
use crate::error::{Error, Result};
use crate::tokenizer::SpecialTokens;
use serde::{Deserialize, Serialize};

/// The store's settings, with SAELens's `LanguageModelSAERunnerConfig` field names and defaults
/// (plus `dataset_text_field` and `dataset_shuffle_seed`, saescope extensions).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ActivationStoreConfig {
    /// Hook point the activations are read at (SAELens `hook_name`; default
    /// `blocks.0.hook_mlp_out`).
    pub hook_name: String,
    /// Transcoders: the hook whose activations are the training target (`hook_name` is the
    /// input); `null` for SAEs (saescope extension; SAELens's `metadata.hook_name_out`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hook_name_out: Option<String>,
    /// Keep only this head of a `[.., head, d_head]` hook; `null` flattens the heads (SAELens
    /// `hook_head_index`; default null).
    pub hook_head_index: Option<usize>,
    /// `""` / `default` → the default corpus; `hub:ORG/NAME[:FILES]`; a directory or a file.
    pub dataset_path: String,
    /// JSONL field holding the text (None → SAELens's detection: tokens, input_ids, text, problem).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataset_text_field: Option<String>,
    /// Shuffle the documents (a new seeded order each epoch); None → dataset order (SAELens).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataset_shuffle_seed: Option<u64>,
    /// Tokens per packed row fed to the model (SAELens `context_size`; default 128).
    pub context_size: usize,
    /// Mixing buffer size in units of `training_context_size` tokens (SAELens
    /// `n_batches_in_buffer`; default 20).
    pub n_batches_in_buffer: usize,
    /// Rows per model forward pass (SAELens `store_batch_size_prompts`; default 32).
    pub store_batch_size_prompts: usize,
    /// Activations per training step (SAELens `train_batch_size_tokens`; default 4096).
    pub train_batch_size_tokens: usize,
    /// Start each packed row with BOS (SAELens `prepend_bos`; default true).
    pub prepend_bos: bool,
    /// Python `slice(*seqpos_slice)` over positions: `[null]` = all, `[a]` = `:a`, `[a, b]`, `[a, b, step]`.
    pub seqpos_slice: Vec<Option<i64>>,
    /// SAELens's `exclude_special_tokens` (`true`: BOS, EOS and PAD).
    pub exclude_special_tokens: SpecialTokens,
    /// One row per document (truncated; shorter ones dropped) instead of concatenating (SAELens
    /// `disable_concat_sequences`; default false).
    pub disable_concat_sequences: bool,
    /// Token between concatenated documents; `null` = none (SAELens `sequence_separator_token`;
    /// default `"bos"`).
    pub sequence_separator_token: Option<SeparatorToken>,
    /// Fraction of the mixing buffer kept back for later batches at each refill, in `[0, 1]`; 0 =
    /// no shuffling (SAELens `activations_mixing_fraction`; default 0.5).
    pub activations_mixing_fraction: f64,
    /// Seed of the buffer shuffles, the SAE's initialisation and the cache reading order (SAELens
    /// `seed`; default 42).
    pub seed: u64,
}

impl Default for ActivationStoreConfig {
    fn default() -> Self {
        ActivationStoreConfig {
            hook_name: "blocks.0.hook_mlp_out".into(),
            hook_name_out: None,
            hook_head_index: None,
            dataset_path: String::new(),
            dataset_text_field: None,
            dataset_shuffle_seed: None,
            context_size: 128,
            n_batches_in_buffer: 20,
            store_batch_size_prompts: 32,
            train_batch_size_tokens: 4096,
            prepend_bos: true,
            seqpos_slice: vec![None],
            exclude_special_tokens: SpecialTokens::None,
            disable_concat_sequences: false,
            sequence_separator_token: Some(SeparatorToken::Bos),
            activations_mixing_fraction: 0.5,
            seed: 42,
        }
    }
}

impl ActivationStoreConfig {
    /// The positions `slice(*seqpos_slice)` keeps out of `0..context_size` (Python semantics).
    pub fn seqpos_indices(&self) -> Result<Vec<usize>> {
        slice_indices(&self.seqpos_slice, self.context_size)
    }
    /// SAELens's `training_context_size`.
    pub fn training_context_size(&self) -> Result<usize> {
        Ok(self.seqpos_indices()?.len())
    }
}

/// Python's `range(n)[slice(*spec)]`.
pub fn slice_indices(spec: &[Option<i64>], n: usize) -> Result<Vec<usize>> {
    let (start, stop, step) = match spec {
        [] => (None, None, None),
        [stop] => (None, *stop, None),
        [a, b] => (*a, *b, None),
        [a, b, c] => (*a, *b, *c),
        _ => {
            return Err(Error::Invalid(format!(
                "seqpos_slice has {} entries; expected 1 to 3 (Python slice arguments)",
                spec.len()
            )))
        }
    };
    let step = step.unwrap_or(1);
    if step == 0 {
        return Err(Error::Invalid("seqpos_slice step cannot be zero".into()));
    }
    let n = n as i64;
    let norm = |v: i64, lo: i64, hi: i64| -> i64 {
        let v = if v < 0 { v + n } else { v };
        v.clamp(lo, hi)
    };
    let mut out = Vec::new();
    if step > 0 {
        let s = start.map_or(0, |v| norm(v, 0, n));
        let e = stop.map_or(n, |v| norm(v, 0, n));
        let mut i = s;
        while i < e {
            out.push(i as usize);
            i += step;
        }
    } else {
        let s = start.map_or(n - 1, |v| norm(v, -1, n - 1));
        let e = stop.map_or(-1, |v| norm(v, -1, n - 1));
        let mut i = s;
        while i > e {
            out.push(i as usize);
            i += step;
        }
    }
    Ok(out)
}
