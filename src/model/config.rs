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
}

/// Normalization type, as TL names it. `LNPre`/`RMSPre` are what `fold_ln` leaves behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Normalization {
    LN,
    LNPre,
    RMS,
    RMSPre,
}

impl Normalization {
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
    Silu,
    Relu,
}

/// Positional embedding type.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Positional {
    /// Learned absolute positions (`pos_embed.W_pos`, `hook_pos_embed`).
    Standard,
    /// Rotary embeddings on Q and K (`hook_rot_q`, `hook_rot_k`), half-split (not adjacent pairs).
    Rotary { base: f64, dim: usize },
}

/// The model's shape and behaviour: what TL's `HookedTransformerConfig` holds for it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub model_name: String,
    pub architecture: Architecture,
    pub n_layers: usize,
    pub d_model: usize,
    pub n_heads: usize,
    /// Key/value heads (`n_key_value_heads`); equal to `n_heads` without grouped-query attention.
    pub n_kv_heads: usize,
    pub d_head: usize,
    pub d_mlp: usize,
    pub d_vocab: usize,
    pub n_ctx: usize,
    pub eps: f64,
    pub act_fn: ActFn,
    pub normalization: Normalization,
    pub positional: Positional,
    /// Gated MLP (`W_gate`, `mlp.hook_pre_linear`), as in llama.
    pub gated_mlp: bool,
    /// Whether the source model ties its unembedding to the embedding.
    pub tied_embeddings: bool,
    /// Which of TL's weight-processing steps have been applied to the loaded weights.
    pub processing: Processing,
}

/// TL's `from_pretrained` weight-processing switches (all on by default).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Processing {
    pub fold_ln: bool,
    pub center_writing_weights: bool,
    pub center_unembed: bool,
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

impl ModelConfig {
    /// Query heads per key/value head.
    pub fn kv_repeat(&self) -> usize {
        self.n_heads / self.n_kv_heads
    }
    /// Width of the concatenated heads (`n_heads * d_head`).
    pub fn d_attn(&self) -> usize {
        self.n_heads * self.d_head
    }
    /// Number of parameters of the weights as TL stores them (embedding and unembedding counted once
    /// each, as separate matrices).
    pub fn uses_rotary(&self) -> bool {
        matches!(self.positional, Positional::Rotary { .. })
    }
    pub(crate) fn validate(&self) -> crate::Result<()> {
        let bad = |m: String| Err(crate::Error::Config(m));
        if self.n_layers == 0 || self.d_model == 0 || self.n_heads == 0 || self.d_head == 0 {
            return bad(format!("zero-sized dimension in {self:?}"));
        }
        if self.n_kv_heads == 0 || self.n_heads % self.n_kv_heads != 0 {
            return bad(format!(
                "n_heads {} is not a multiple of n_kv_heads {}",
                self.n_heads, self.n_kv_heads
            ));
        }
        if let Positional::Rotary { dim, .. } = self.positional {
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
