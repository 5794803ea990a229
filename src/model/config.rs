//! Model configuration, mirroring the fields of TransformerLens's `HookedTransformerConfig`
//! that saescope's architectures use.
use serde::{Deserialize, Serialize};

/// Which source architecture the weights came from (TL's `original_architecture`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Architecture {
    /// `GPT2LMHeadModel`: LayerNorm, learned positions, GELU (tanh) MLP.
    Gpt2,
    /// `LlamaForCausalLM`: RMSNorm, rotary, gated SiLU MLP, grouped-query attention.
    Llama,
    /// `Gemma2ForCausalLM`: llama-like, plus post-attention / post-MLP RMSNorms, √d_model-scaled
    /// embeddings, attention and final logit soft-capping, alternating sliding-window layers,
    /// gated tanh-GELU MLP.
    Gemma2,
}

/// Attention span of one layer (TL's `attn_types` entries).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttnType {
    /// Full causal attention.
    Global,
    /// Causal sliding window of `window_size` keys (the query's own position included).
    Local,
}

/// Normalization type, as TL names it. `LNPre`/`RMSPre` are what `fold_ln` leaves behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Normalization {
    /// LayerNorm with learned weight and bias (TL `LN`).
    LN,
    /// LayerNorm without weights: centre and scale only, weights folded away (TL `LNPre`).
    LNPre,
    /// RMSNorm with a learned weight (TL `RMS`).
    RMS,
    /// RMSNorm without weights, the weight folded away (TL `RMSPre`).
    RMSPre,
}

impl Normalization {
    /// Whether it is a LayerNorm (`LN` / `LNPre`) rather than an RMSNorm.
    pub fn is_layer_norm(self) -> bool {
        matches!(self, Normalization::LN | Normalization::LNPre)
    }
    /// The `...Pre` variant that remains after the weights are folded into the next layer.
    pub fn folded(self) -> Self {
        match self {
            Normalization::LN | Normalization::LNPre => Normalization::LNPre,
            Normalization::RMS | Normalization::RMSPre => Normalization::RMSPre,
        }
    }
    /// Whether it has learned weights (`LN` / `RMS`, i.e. not folded).
    pub fn has_weights(self) -> bool {
        matches!(self, Normalization::LN | Normalization::RMS)
    }
}

/// MLP activation function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActFn {
    /// GPT-2's tanh approximation (`gelu_new`).
    GeluNew,
    /// Exact erf GELU.
    Gelu,
    /// SiLU / swish `x·σ(x)` (llama's gated MLP).
    Silu,
    /// `max(x, 0)`.
    Relu,
}

/// Positional embedding type.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Positional {
    /// Learned absolute positions (`pos_embed.W_pos`, `hook_pos_embed`).
    Standard,
    /// Rotary embeddings on Q and K (`hook_rot_q`, `hook_rot_k`), half-split (not adjacent pairs).
    Rotary {
        /// Frequency base θ (TL `rotary_base`, HF `rope_theta`).
        base: f64,
        /// Rotated dims per head (TL `rotary_dim`); must equal `d_head` (no partial rotary).
        dim: usize,
    },
}

/// The model's shape and behaviour: what TL's `HookedTransformerConfig` holds for it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Name the model was loaded under (alias, hub repo id or path; TL `model_name`).
    pub model_name: String,
    /// Source architecture (TL `original_architecture`).
    pub architecture: Architecture,
    /// Number of transformer blocks (TL `n_layers`).
    pub n_layers: usize,
    /// Residual stream width (TL `d_model`).
    pub d_model: usize,
    /// Query heads per layer (TL `n_heads`).
    pub n_heads: usize,
    /// Key/value heads (`n_key_value_heads`); equal to `n_heads` without grouped-query attention.
    pub n_kv_heads: usize,
    /// Width of each attention head (TL `d_head`).
    pub d_head: usize,
    /// MLP hidden width (TL `d_mlp`).
    pub d_mlp: usize,
    /// Vocabulary size: the width of the logits (TL `d_vocab`).
    pub d_vocab: usize,
    /// Maximum context length in tokens (TL `n_ctx`).
    pub n_ctx: usize,
    /// Epsilon added to the variance (LayerNorm) or mean square (RMSNorm) before the sqrt
    /// (TL `eps`).
    pub eps: f64,
    /// MLP activation function (TL `act_fn`).
    pub act_fn: ActFn,
    /// Normalization layers as loaded (TL `normalization_type`; the `...Pre` form after `fold_ln`).
    pub normalization: Normalization,
    /// Positional embedding (TL `positional_embedding_type`).
    pub positional: Positional,
    /// Gated MLP (`W_gate`, `mlp.hook_pre_linear`), as in llama.
    pub gated_mlp: bool,
    /// Whether the source model ties its unembedding to the embedding.
    pub tied_embeddings: bool,
    /// Which of TL's weight-processing steps have been applied to the loaded weights.
    pub processing: Processing,
    /// What attention scores are divided by (TL's `attn_scale`); `None` → `sqrt(d_head)`, TL's
    /// default. Gemma-2: `sqrt(query_pre_attn_scalar)`.
    #[serde(default)]
    pub attn_scale: Option<f64>,
    /// TL's `attn_scores_soft_cap`: scores become `c·tanh(scores / c)` after scaling and before the
    /// causal mask (`None`: off).
    #[serde(default)]
    pub attn_scores_soft_cap: Option<f64>,
    /// TL's `output_logits_soft_cap`: the returned logits are `c·tanh(logits / c)`, applied after
    /// `unembed.hook_out` (which holds the uncapped logits).
    #[serde(default)]
    pub output_logits_soft_cap: Option<f64>,
    /// Sliding-window size of `Local` layers (TL's `window_size`).
    #[serde(default)]
    pub window_size: Option<usize>,
    /// Per-layer attention type (TL's `attn_types`); `None`: every layer global.
    #[serde(default)]
    pub attn_types: Option<Vec<AttnType>>,
    /// TL's `use_normalization_before_and_after`: RMSNorms `ln1_post` / `ln2_post` on the
    /// attention and MLP outputs (before `hook_attn_out` / `hook_mlp_out`), never folded.
    #[serde(default)]
    pub use_normalization_before_and_after: bool,
}

impl Default for ModelConfig {
    /// TL's `HookedTransformerConfig` defaults for the optional behaviour (every switch off);
    /// the dimensions are placeholders that each architecture's loader sets.
    fn default() -> Self {
        ModelConfig {
            model_name: String::new(),
            architecture: Architecture::Llama,
            n_layers: 0,
            d_model: 0,
            n_heads: 0,
            n_kv_heads: 0,
            d_head: 0,
            d_mlp: 0,
            d_vocab: 0,
            n_ctx: 0,
            eps: 1e-5,
            act_fn: ActFn::GeluNew,
            normalization: Normalization::LN,
            positional: Positional::Standard,
            gated_mlp: false,
            tied_embeddings: false,
            processing: Processing::none(),
            attn_scale: None,
            attn_scores_soft_cap: None,
            output_logits_soft_cap: None,
            window_size: None,
            attn_types: None,
            use_normalization_before_and_after: false,
        }
    }
}

/// TL's `from_pretrained` weight-processing switches (all on by default).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Processing {
    /// Norm weights (and LN biases) folded into the following linear layers (TL `fold_ln`).
    pub fold_ln: bool,
    /// Weights and biases writing to the residual stream (`W_E`, `W_pos`, `W_O`/`b_O`,
    /// `W_out`/`b_out`) made zero-mean over `d_model` (TL `center_writing_weights`).
    pub center_writing_weights: bool,
    /// `W_U` (and `b_U`) made zero-mean over the vocabulary (TL `center_unembed`).
    pub center_unembed: bool,
    /// Value biases `b_V` folded into the output bias `b_O` (TL `fold_value_biases`).
    pub fold_value_biases: bool,
}

impl Default for Processing {
    fn default() -> Self {
        Processing {
            fold_ln: true,
            center_writing_weights: true,
            center_unembed: true,
            fold_value_biases: true,
        }
    }
}

impl Processing {
    /// TL's `from_pretrained_no_processing`.
    pub fn none() -> Self {
        Processing {
            fold_ln: false,
            center_writing_weights: false,
            center_unembed: false,
            fold_value_biases: false,
        }
    }
}

/// The longest context a rotary model may declare (its cos/sin tables are `n_ctx × d_head / 2`).
pub const MAX_ROTARY_CTX: usize = 1 << 20;

impl ModelConfig {
    /// Query heads per key/value head.
    pub fn kv_repeat(&self) -> usize {
        self.n_heads / self.n_kv_heads
    }
    /// Width of the concatenated heads (`n_heads * d_head`).
    pub fn d_attn(&self) -> usize {
        self.n_heads * self.d_head
    }
    /// Whether Q and K are rotated (rotary positional embeddings).
    pub fn uses_rotary(&self) -> bool {
        matches!(self.positional, Positional::Rotary { .. })
    }
    /// What the attention scores are divided by (TL's `attn_scale`).
    pub fn attn_scale(&self) -> f64 {
        self.attn_scale.unwrap_or((self.d_head as f64).sqrt())
    }
    /// The sliding window of layer `layer`, if it is a local-attention layer.
    pub fn window(&self, layer: usize) -> Option<usize> {
        match self.attn_types.as_ref().and_then(|t| t.get(layer)) {
            Some(AttnType::Local) => self.window_size,
            _ => None,
        }
    }
    pub(crate) fn validate(&self) -> crate::Result<()> {
        let bad = |m: String| Err(crate::Error::Config(m));
        if self.n_layers == 0 || self.d_model == 0 || self.n_heads == 0 || self.d_head == 0 {
            return bad(format!("zero-sized dimension in {self:?}"));
        }
        if self.n_kv_heads == 0 || !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return bad(format!(
                "n_heads {} is not a multiple of n_kv_heads {}",
                self.n_heads, self.n_kv_heads
            ));
        }
        if let Some(types) = &self.attn_types {
            if types.len() != self.n_layers {
                return bad(format!(
                    "attn_types has {} entries for {} layers",
                    types.len(),
                    self.n_layers
                ));
            }
            if types.contains(&AttnType::Local) && self.window_size.is_none_or(|w| w == 0) {
                return bad("local attention layers need a window_size > 0".into());
            }
        }
        for (name, cap) in [
            ("attn_scores_soft_cap", self.attn_scores_soft_cap),
            ("output_logits_soft_cap", self.output_logits_soft_cap),
        ] {
            if cap.is_some_and(|c| c.is_nan() || c <= 0.0) {
                return bad(format!("{name} must be positive, got {cap:?}"));
            }
        }
        let scale = self.attn_scale();
        if scale.is_nan() || scale <= 0.0 {
            return bad(format!("attn_scale must be positive, got {scale}"));
        }
        if let Positional::Rotary { dim, .. } = self.positional {
            // The rotary tables hold every position up front.
            if self.n_ctx > MAX_ROTARY_CTX {
                return bad(format!(
                    "context length n_ctx = {} is more than the {MAX_ROTARY_CTX} positions saescope \
                     supports for rotary models (its rotary tables are computed up front)",
                    self.n_ctx
                ));
            }
            if dim != self.d_head {
                return bad(format!(
                    "partial rotary (rotary_dim {dim} < d_head {}) is not supported",
                    self.d_head
                ));
            }
        }
        Ok(())
    }
}
