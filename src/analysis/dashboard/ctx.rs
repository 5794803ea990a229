//! What the example-building passes share: the dashboard's context (model, SAE, source,
//! chosen latents and their directions) and one example to build.
use super::select::Firing;
use super::source::Source;
use super::weights::SaeSite;
use super::DashboardConfig;
use crate::model::HookedModel;
use crate::sae::Sae;
use candle_core::Tensor;

/// An example to build: the dashboard slot (index into the chosen latents) and its centre.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Request {
    pub slot: usize,
    pub firing: Firing,
}

pub(crate) struct Ctx<'a> {
    pub model: &'a HookedModel,
    pub sae: &'a Sae,
    pub src: &'a Source,
    pub latents: &'a [usize],
    /// `[k, d_model]`, the chosen latents' residual directions.
    pub dirs: &'a Tensor,
    pub vocab: &'a [String],
    pub cfg: &'a DashboardConfig,
    pub site: SaeSite,
    /// Token ids whose activations are shown as 0 (left out of the scan).
    pub special: Vec<u32>,
}

pub(crate) fn tok_text(vocab: &[String], id: u32) -> String {
    vocab
        .get(id as usize)
        .cloned()
        .unwrap_or_else(|| format!("<{id}>"))
}
