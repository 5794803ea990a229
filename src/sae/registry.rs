//! Which code runs for which architecture: [`SaeArch`], built from the config and dispatched
//! by a `match` (see `crate::dispatch`).
use super::arch::ArchImpl;
use super::config::{Architecture, SaeConfig};
use super::{gated, jumprelu, standard, topk, transcoder};
use crate::dispatch::enum_dispatch;

enum_dispatch! {
    /// The inference architecture of an SAE; derefs to its [`ArchImpl`].
    #[derive(Clone, Copy, Debug)]
    pub(crate) enum SaeArch: dyn ArchImpl {
        Standard(standard::Standard),
        Gated(gated::Gated),
        JumpRelu(jumprelu::JumpRelu),
        TopK(topk::TopK),
        Transcoder(transcoder::Transcoder),
    }
}

impl SaeArch {
    /// The code for `cfg.architecture` (training-only variants load as JumpReLU, as SAELens).
    pub(crate) fn for_config(cfg: &SaeConfig) -> Self {
        match cfg.architecture {
            Architecture::Standard => SaeArch::Standard(standard::Standard),
            Architecture::Gated => SaeArch::Gated(gated::Gated),
            Architecture::JumpRelu
            | Architecture::BatchTopK
            | Architecture::MatryoshkaBatchTopK => SaeArch::JumpRelu(jumprelu::JumpRelu),
            Architecture::TopK | Architecture::AbsTopK => SaeArch::TopK(topk::TopK {
                k: cfg.k.unwrap_or(100),
                rescale_acts_by_decoder_norm: cfg.rescale_acts_by_decoder_norm,
                abs: cfg.architecture == Architecture::AbsTopK,
            }),
            a => SaeArch::Transcoder(transcoder::Transcoder {
                jumprelu: matches!(
                    a,
                    Architecture::JumpReluTranscoder | Architecture::JumpReluSkipTranscoder
                ),
                skip: matches!(
                    a,
                    Architecture::SkipTranscoder | Architecture::JumpReluSkipTranscoder
                ),
            }),
        }
    }
}
